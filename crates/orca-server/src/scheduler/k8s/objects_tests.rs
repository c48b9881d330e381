//! The exact Job and Secret objects, compared as JSON (what the API server receives).

use super::*;
use crate::scheduler::k8s::DEFAULT_CREDS_CLAIM;
use crate::scheduler::limits::LimitsPolicy;
use orca_core::Secret as OrcaSecret;
use serde_json::{Value, json};
use std::time::Duration;

const ID: &str = "0193a000-0000-7000-8000-00000000abcd";

fn spec(token: Option<&str>) -> WorkerSpec {
    WorkerSpec {
        job_id: JobId::parse(ID).unwrap(),
        prompt: "fix the test".into(),
        agent_type: "claude-code".into(),
        repo_url: Some("https://git.example/r.git".into()),
        git_token: token.map(OrcaSecret::new),
        branch: Some("dev".into()),
        timeout_seconds: 600,
        config_json: "{}".into(),
        log_level: "info".into(),
    }
}

pub(crate) fn settings() -> Settings {
    Settings {
        namespace: "orca".into(),
        image: "orca-worker:latest".into(),
        limits: LimitsPolicy::default(),
        stop_grace: Duration::from_secs(10),
        worker_redis_env: vec![],
        agent_env: Vec::new(),
        creds_claim: DEFAULT_CREDS_CLAIM.into(),
        kubeconfig: None,
        keep_workers_on_shutdown: true,
    }
}

fn plan(mount_creds: bool) -> Plan {
    Plan { resources: Resources { memory_mb: 2048, cpu_millis: 1500, pids: 512 }, mount_creds }
}

fn labels_json() -> Value {
    json!({
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "orca",
        "app.kubernetes.io/name": "orca-worker",
        "orca.dev/job-id": ID,
    })
}

fn secret_ref(key: &str) -> Value {
    json!({"name": key, "valueFrom": {"secretKeyRef": {"name": format!("orca-job-{ID}"), "key": key, "optional": false}}})
}

/// The Job as the API server receives it, with the env and volumes given.
fn expected_job(env: Vec<Value>, creds: bool) -> Value {
    let mut volumes = vec![
        json!({"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}),
        json!({"name": "home", "emptyDir": {}}),
        json!({"name": "workspace", "emptyDir": {}}),
    ];
    let mut mounts = vec![
        json!({"name": "tmp", "mountPath": "/tmp"}),
        json!({"name": "home", "mountPath": "/home/orca"}),
        json!({"name": "workspace", "mountPath": "/workspace"}),
    ];
    if creds {
        volumes.push(json!({"name": "claude-creds", "persistentVolumeClaim": {"claimName": "orca-claude-creds", "readOnly": false}}));
        mounts.push(json!({"name": "claude-creds", "mountPath": "/home/orca/.claude"}));
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": format!("orca-job-{ID}"), "namespace": "orca", "labels": labels_json()},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 660,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": labels_json()},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                        "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "containers": [{
                        "name": "worker",
                        "image": "orca-worker:latest",
                        "imagePullPolicy": "IfNotPresent",
                        "workingDir": "/workspace",
                        "env": env,
                        "resources": {"limits": {"cpu": "1500m", "memory": "2048Mi"}, "requests": {"cpu": "1500m", "memory": "2048Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": false, "privileged": false, "readOnlyRootFilesystem": true,
                            "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}
                        },
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                }
            }
        }
    })
}

fn plain_env(extra: &[(&str, &str)]) -> Vec<Value> {
    let mut env = vec![
        json!({"name": "JOB_ID", "value": ID}),
        json!({"name": "PROMPT", "value": "fix the test"}),
        json!({"name": "AGENT_TYPE", "value": "claude-code"}),
        json!({"name": "WORK_DIR", "value": "/workspace"}),
        json!({"name": "TIMEOUT_SECONDS", "value": "600"}),
        json!({"name": "LOG_LEVEL", "value": "info"}),
        json!({"name": "ORCA_JOB_CONFIG", "value": "{}"}),
        json!({"name": "REPO_URL", "value": "https://git.example/r.git"}),
        json!({"name": "BRANCH", "value": "dev"}),
        json!({"name": "HOME", "value": "/home/orca"}),
    ];
    env.extend(extra.iter().map(|(k, v)| json!({"name": k, "value": v})));
    env
}

fn as_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

#[test]
fn job_with_secrets_references_them_and_never_holds_them() {
    let mut s = settings();
    s.agent_env = vec![
        ("ANTHROPIC_API_KEY".into(), OrcaSecret::new("sk-ant-SECRET")),
        ("ANTHROPIC_BASE_URL".into(), OrcaSecret::new("http://gateway.local")),
        ("ORCA_CLAUDE_BIN".into(), OrcaSecret::new("/opt/claude")),
    ];
    assert!(has_claude_key(&s));
    let job = worker_job(&spec(Some("ghp_SECRET")), &s, &plan(true));
    let mut env = plain_env(&[("ANTHROPIC_BASE_URL", "http://gateway.local")]);
    env.extend([secret_ref("ANTHROPIC_API_KEY"), secret_ref("GIT_TOKEN")]);
    assert_eq!(as_json(&job), expected_job(env, true));
    let text = serde_json::to_string(&job).unwrap();
    assert!(!text.contains("SECRET"), "a secret value leaked into the Job: {text}");
}

#[test]
fn job_without_secrets_or_creds() {
    let mut s = settings();
    s.worker_redis_env = vec![
        ("REDIS_URL".into(), "redis://redis.orca.svc:6379".into()),
        ("ORCA_REDIS_PREFIX".into(), "team-a".into()),
        ("ORCA_EVENTS_MAXLEN".into(), "500".into()),
    ];
    assert!(!has_claude_key(&s));
    let job = worker_job(&spec(None), &s, &plan(false));
    let env = plain_env(&[("REDIS_URL", "redis://redis.orca.svc:6379"), ("ORCA_REDIS_PREFIX", "team-a"), ("ORCA_EVENTS_MAXLEN", "500")]);
    assert_eq!(as_json(&job), expected_job(env, false));
    assert!(!has_secrets(&spec(None), &s));
    let owner = Job { metadata: ObjectMeta { name: Some("x".into()), uid: Some("u".into()), ..Default::default() }, ..Default::default() };
    assert!(worker_secret(&spec(None), &s, &owner).is_none());
}

#[test]
fn secret_is_owned_by_the_job_and_holds_exactly_the_secret_vars() {
    let mut s = settings();
    s.agent_env = vec![("ANTHROPIC_API_KEY".into(), OrcaSecret::new("sk-ant-1"))];
    let mut created = worker_job(&spec(Some("ghp_1")), &s, &plan(false));
    created.metadata.uid = Some("5f1c-uid".into());
    let secret = worker_secret(&spec(Some("ghp_1")), &s, &created).unwrap();
    assert_eq!(
        as_json(&secret),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": format!("orca-job-{ID}"),
                "namespace": "orca",
                "labels": labels_json(),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": format!("orca-job-{ID}"), "uid": "5f1c-uid"}]
            },
            "type": "Opaque",
            "immutable": true,
            "stringData": {"ANTHROPIC_API_KEY": "sk-ant-1", "GIT_TOKEN": "ghp_1"}
        })
    );
}

#[test]
fn whole_cpus_and_secret_names() {
    assert_eq!(cpu_quantity(2000).0, "2");
    assert_eq!(cpu_quantity(250).0, "250m");
    for name in ["GIT_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "ORCA_WEBHOOK_SECRET", "PGPASSWORD"] {
        assert!(is_secret(name, "x"), "{name}");
    }
    for name in ["PROMPT", "JOB_ID", "REPO_URL", "ORCA_JOB_CONFIG", "TIMEOUT_SECONDS", "ANTHROPIC_BASE_URL"] {
        assert!(!is_secret(name, "https://host/x"), "{name}");
    }
    assert!(is_secret("REDIS_URL", "redis://:pw@redis:6379"));
    assert!(is_secret("REPO_URL", "https://user:tok@git.example/r.git"));
    assert!(!is_secret("REDIS_URL", "redis://redis.orca.svc:6379"));
    assert_eq!(selector(JobId::parse(ID).unwrap()), format!("orca.dev/job-id={ID}"));
}
