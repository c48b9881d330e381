//! Pure builders of the Kubernetes objects one Orca job needs: a `batch/v1` Job running the
//! worker image, and a per-job Secret holding the worker's secret environment variables.
//!
//! No I/O here: the builders take a [`WorkerSpec`] and the scheduler's [`Settings`] and return
//! k8s-openapi values, so the exact objects are unit-tested (see `tests` below).
//!
//! **Invariant:** a secret value (`GIT_TOKEN`, any `*_KEY` / `*_TOKEN` / `*_SECRET` /
//! `*PASSWORD`, a `*_URL` with credentials in it, as the Docker scheduler) never appears in
//! the Job; the Job's container reads it through `secretKeyRef` from the Secret
//! `orca-job-<job id>`, which the Job owns (`ownerReferences`), so Kubernetes' garbage
//! collector deletes it with the Job.

use super::{CONTAINER, CREDS_MOUNT, LABEL_JOB_ID, Settings, WORK_DIR};
use crate::scheduler::WorkerSpec;
use crate::scheduler::limits::Resources;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use orca_core::JobId;
use std::collections::BTreeMap;

/// The uid and gid the worker runs as (the worker image's `orca` user; same as Docker).
pub const WORKER_UID: i64 = 10001;
/// Seconds a finished Job (and, through ownership, its Secret) is kept for `kubectl logs`.
pub const TTL_SECONDS_AFTER_FINISHED: i32 = 600;
/// Kubernetes' `activeDeadlineSeconds` is the job's timeout plus this margin: the worker's own
/// hard timeout (exit 124) and the backend's timer fire first; the deadline is the backstop
/// for a worker whose backend is gone. It also covers scheduling and image pulls.
pub const DEADLINE_MARGIN_SECONDS: i64 = 60;
/// Size of the memory-backed `/tmp` (counted against the memory limit, like Docker's tmpfs).
pub const TMP_SIZE: &str = "256Mi";
/// The worker image's home directory (writable, empty per job).
pub const HOME_DIR: &str = "/home/orca";

/// The name of a job's Kubernetes Job and Secret.
pub fn object_name(id: JobId) -> String {
    format!("orca-job-{id}")
}

/// Labels on the Job, its pods and its Secret.
pub fn labels(id: JobId) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "orca-worker".to_owned()),
        ("app.kubernetes.io/component".to_owned(), "worker".to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), "orca".to_owned()),
        (LABEL_JOB_ID.to_owned(), id.to_string()),
    ])
}

/// The label selector matching one job's objects.
pub fn selector(id: JobId) -> String {
    format!("{LABEL_JOB_ID}={id}")
}

/// Whether a variable of the worker's environment is a secret (the Docker scheduler's rule).
pub fn is_secret(name: &str, value: &str) -> bool {
    ["_TOKEN", "_KEY", "_SECRET", "PASSWORD"].iter().any(|s| name.ends_with(s)) || (name.ends_with("_URL") && has_userinfo(value))
}

/// A URL with credentials in its authority (`redis://:pass@host`, `https://user:tok@host/r`).
fn has_userinfo(url: &str) -> bool {
    url.split_once("://").is_some_and(|(_, rest)| rest.split(['/', '?', '#']).next().is_some_and(|a| a.contains('@')))
}

/// What varies per job besides the spec: its resources and whether the login claim is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub resources: Resources,
    /// Mount the Claude Code credentials claim (it exists, and no API key takes precedence).
    pub mount_creds: bool,
}

/// Whether the worker gets a Claude API key or token, which takes precedence over the login.
pub fn has_claude_key(s: &Settings) -> bool {
    s.agent_env.iter().any(|(k, _)| k == "ANTHROPIC_API_KEY" || k == "ANTHROPIC_AUTH_TOKEN")
}

/// The worker's environment split into plain values and secret values (sorted by name).
fn split_env(spec: &WorkerSpec, s: &Settings) -> (Vec<(String, String)>, BTreeMap<String, String>) {
    let mut all: Vec<(String, String)> = spec.env(WORK_DIR).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    all.push(("HOME".into(), HOME_DIR.into()));
    all.extend(s.worker_redis_env.iter().cloned());
    // Model keys and endpoints; CLI locations are the image's business.
    all.extend(s.agent_env.iter().filter(|(k, _)| !k.ends_with("_BIN")).map(|(k, v)| (k.clone(), v.expose().to_owned())));
    let (mut plain, mut secret) = (Vec::new(), BTreeMap::new());
    for (k, v) in all {
        if is_secret(&k, &v) {
            secret.insert(k, v);
        } else if !plain.iter().any(|(p, _): &(String, String)| *p == k) {
            plain.push((k, v));
        }
    }
    (plain, secret)
}

/// The Secret with the worker's secret variables, or `None` when the job has none.
/// `owner` is the created Job (its `uid` is set by the API server).
pub fn worker_secret(spec: &WorkerSpec, s: &Settings, owner: &Job) -> Option<Secret> {
    let (_, secret) = split_env(spec, s);
    if secret.is_empty() {
        return None;
    }
    let owner_ref = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: owner.metadata.name.clone().unwrap_or_default(),
        uid: owner.metadata.uid.clone().unwrap_or_default(),
        ..Default::default()
    };
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(object_name(spec.job_id)),
            namespace: Some(s.namespace.clone()),
            labels: Some(labels(spec.job_id)),
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        immutable: Some(true),
        string_data: Some(secret),
        ..Default::default()
    })
}

/// Whether the job has secret variables (and so needs a Secret before its pod can start).
pub fn has_secrets(spec: &WorkerSpec, s: &Settings) -> bool {
    !split_env(spec, s).1.is_empty()
}

fn quantity(s: impl Into<String>) -> Quantity {
    Quantity(s.into())
}

fn cpu_quantity(millis: u32) -> Quantity {
    if millis.is_multiple_of(1000) { quantity((millis / 1000).to_string()) } else { quantity(format!("{millis}m")) }
}

fn empty_dir(name: &str, medium: Option<&str>, size: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource { medium: medium.map(Into::into), size_limit: size.map(quantity) }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), ..Default::default() }
}

/// The worker's Job. `plan.mount_creds`: mount the credentials PersistentVolumeClaim at
/// `/home/orca/.claude` (the scheduler checks that the claim exists; a pod naming a missing
/// claim would stay pending).
pub fn worker_job(spec: &WorkerSpec, s: &Settings, plan: &Plan) -> Job {
    let name = object_name(spec.job_id);
    let (plain, secret) = split_env(spec, s);
    let mut env: Vec<EnvVar> = plain.into_iter().map(|(k, v)| EnvVar { name: k, value: Some(v), ..Default::default() }).collect();
    env.extend(secret.into_keys().map(|k| EnvVar {
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: name.clone(), key: k.clone(), optional: Some(false) }),
            ..Default::default()
        }),
        name: k,
        ..Default::default()
    }));
    let limits = BTreeMap::from([
        ("cpu".to_owned(), cpu_quantity(plan.resources.cpu_millis)),
        ("memory".to_owned(), quantity(format!("{}Mi", plan.resources.memory_mb))),
    ]);
    let mut volumes = vec![
        empty_dir("tmp", Some("Memory"), Some(TMP_SIZE)),
        empty_dir("home", None, None),
        empty_dir("workspace", None, None),
    ];
    let mut mounts = vec![mount("tmp", "/tmp"), mount("home", HOME_DIR), mount("workspace", WORK_DIR)];
    if plan.mount_creds {
        volumes.push(Volume {
            name: "claude-creds".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: s.creds_claim.clone(), read_only: Some(false) }),
            ..Default::default()
        });
        mounts.push(mount("claude-creds", CREDS_MOUNT));
    }
    let container = Container {
        name: CONTAINER.into(),
        image: Some(s.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        working_dir: Some(WORK_DIR.into()),
        env: Some(env),
        resources: Some(ResourceRequirements { limits: Some(limits.clone()), requests: Some(limits), ..Default::default() }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let pod = PodSpec {
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(s.stop_grace.as_secs() as i64),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(WORKER_UID),
            run_as_group: Some(WORKER_UID),
            fs_group: Some(WORKER_UID),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
            ..Default::default()
        }),
        containers: vec![container],
        volumes: Some(volumes),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(s.namespace.clone()),
            labels: Some(labels(spec.job_id)),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(spec.timeout_seconds as i64 + DEADLINE_MARGIN_SECONDS),
            ttl_seconds_after_finished: Some(TTL_SECONDS_AFTER_FINISHED),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(spec.job_id)), ..Default::default() }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "objects_tests.rs"]
pub(crate) mod tests;
