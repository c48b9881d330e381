//! The manifests in `k8s/`: every document parses into its k8s-openapi type without losing a
//! field (a typo'd or misplaced key would be dropped, and the round trip would differ), and the
//! backend's Role grants exactly the API calls the Kubernetes scheduler makes.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use orca_server::scheduler::k8s::{API_CALLS, DEFAULT_CREDS_CLAIM};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn k8s_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../k8s")
}

/// The documents of one manifest file, as JSON values.
fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(k8s_dir().join(file)).unwrap_or_else(|e| panic!("k8s/{file}: {e}"));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("k8s/{file} is not YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Parses a document as `T` and checks that nothing was lost on the way.
fn typed<T: DeserializeOwned + Serialize>(file: &str, doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("k8s/{file}: {} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(&back, doc, "k8s/{file}: {} {} has fields its type does not know", doc["kind"], doc["metadata"]["name"]);
    t
}

fn all_docs() -> Vec<(String, Value)> {
    let mut files: Vec<String> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    files.sort();
    assert_eq!(files, ["backend.yaml", "infra.yaml", "namespace.yaml", "rbac.yaml"]);
    files.iter().flat_map(|f| docs(f).into_iter().map(move |d| (f.clone(), d))).collect()
}

#[test]
fn every_manifest_parses_into_its_type() {
    let mut kinds = Vec::new();
    for (file, doc) in all_docs() {
        let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("k8s/{file}: a document without kind")).to_owned();
        match kind.as_str() {
            "Namespace" => drop(typed::<Namespace>(&file, &doc)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(&file, &doc)),
            "Role" => drop(typed::<Role>(&file, &doc)),
            "RoleBinding" => drop(typed::<RoleBinding>(&file, &doc)),
            "Secret" => drop(typed::<Secret>(&file, &doc)),
            "Deployment" => drop(typed::<Deployment>(&file, &doc)),
            "Service" => drop(typed::<Service>(&file, &doc)),
            other => panic!("k8s/{file}: unexpected kind {other}"),
        }
        if kind != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], "orca", "k8s/{file}: {kind} {} is not in the orca namespace", doc["metadata"]["name"]);
        }
        kinds.push(format!("{file}:{kind}/{}", doc["metadata"]["name"].as_str().unwrap()));
    }
    for expected in [
        "namespace.yaml:Namespace/orca",
        "rbac.yaml:ServiceAccount/orca-backend",
        "rbac.yaml:Role/orca-scheduler",
        "rbac.yaml:RoleBinding/orca-scheduler",
        "infra.yaml:Deployment/postgres",
        "infra.yaml:Service/postgres",
        "infra.yaml:Deployment/redis",
        "infra.yaml:Service/redis",
        "backend.yaml:Deployment/orca-backend",
        "backend.yaml:Service/orca-backend",
    ] {
        assert!(kinds.iter().any(|k| k == expected), "missing {expected} in {kinds:?}");
    }
}

fn find<T: DeserializeOwned + Serialize>(file: &str, kind: &str) -> T {
    let doc = docs(file).into_iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in k8s/{file}"));
    typed(file, &doc)
}

#[test]
fn the_role_grants_exactly_what_the_scheduler_calls() {
    let role: Role = find("rbac.yaml", "Role");
    let mut granted = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert!(rule.non_resource_urls.is_none(), "no non-resource URLs");
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(![group, resource, verb].contains(&&"*".to_owned()), "no wildcards: {rule:?}");
                    assert!(granted.insert((group.clone(), resource.clone(), verb.clone())), "granted twice: {group}/{resource} {verb}");
                }
            }
        }
        if rule.resources.iter().flatten().any(|r| r == "persistentvolumeclaims") {
            assert_eq!(rule.resource_names.as_deref(), Some(&[DEFAULT_CREDS_CLAIM.to_owned()][..]), "only the credentials claim");
        } else {
            assert!(rule.resource_names.is_none());
        }
    }
    let called: BTreeSet<_> = API_CALLS.iter().map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string())).collect();
    let missing: Vec<_> = called.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&called).collect();
    assert!(missing.is_empty(), "the scheduler calls these but rbac.yaml does not grant them: {missing:?}");
    assert!(extra.is_empty(), "rbac.yaml grants these but the scheduler never calls them: {extra:?}");
}

#[test]
fn the_backend_runs_as_the_bound_service_account_with_the_k8s_scheduler() {
    let binding: RoleBinding = find("rbac.yaml", "RoleBinding");
    let role: Role = find("rbac.yaml", "Role");
    let account: ServiceAccount = find("rbac.yaml", "ServiceAccount");
    assert_eq!((binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()), ("Role", role.metadata.name.as_deref().unwrap()));
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!((subject.kind.as_str(), Some(subject.name.as_str())), ("ServiceAccount", account.metadata.name.as_deref()));

    let backend: Deployment = find("backend.yaml", "Deployment");
    let pod = backend.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name, account.metadata.name);
    let env = pod.containers[0].env.clone().unwrap();
    let value = |name: &str| env.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("backend env {name}")).clone();
    assert_eq!(value("ORCA_SCHEDULER").value.as_deref(), Some("k8s"));
    assert!(value("DATABASE_URL").value_from.unwrap().secret_key_ref.is_some(), "DATABASE_URL comes from a Secret");
    assert!(value("REDIS_URL").value.unwrap().starts_with("redis://"));
    let key = value("ANTHROPIC_API_KEY").value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!(key.optional, Some(true));
    let ns = value("ORCA_NAMESPACE").value_from.unwrap().field_ref.unwrap();
    assert_eq!(ns.field_path, "metadata.namespace");
    // The Secret the backend reads its DATABASE_URL from exists in the dev infrastructure.
    let secrets: Vec<Value> = docs("infra.yaml").into_iter().filter(|d| d["kind"] == "Secret").collect();
    let db = value("DATABASE_URL").value_from.unwrap().secret_key_ref.unwrap();
    assert!(secrets.iter().any(|s| s["metadata"]["name"] == db.name.as_str() && s["stringData"][&db.key].is_string()));
}
