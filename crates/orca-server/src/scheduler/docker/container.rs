//! The container a job's worker runs in: its sandbox, limits, labels and environment.
//!
//! Sandbox by default (every container, no opt-out per job):
//! - user 10001:10001, never root; all capabilities dropped; `no-new-privileges`;
//! - read-only root filesystem; tmpfs `/tmp` and `/home/orca`; the workspace `/workspace` is
//!   an anonymous volume removed with the container;
//! - memory (= memory+swap, so no swap), CPU and pids limits ([`Resources`]);
//! - an init process (Docker's `--init`) as PID 1 that forwards signals and reaps orphans;
//! - no Docker socket and no host path: the only named volume is the Claude credentials
//!   volume, mounted at `/home/orca/.claude`, and only when the backend has no
//!   `ANTHROPIC_API_KEY` (the key takes precedence, so the login is not exposed needlessly);
//! - private IPC, the configured network (`DOCKER_NETWORK`), the default seccomp profile.
//!
//! Secrets (`GIT_TOKEN`, the backend's agent API keys, a `REDIS_URL` with a password) are not
//! put into the container's environment, which `docker inspect` shows to anyone with access to
//! the Docker socket. They travel once over the container's stdin at start (see `secrets`),
//! and the worker puts them into its own environment (a URL with user info, such as a
//! `REPO_URL` of `https://user:token@host/repo`, counts as a secret too). What stays visible
//! in `docker inspect`: the job id, prompt, agent type, repository URL without credentials,
//! branch, timeout, log level and the public job config, plus the labels and limits.

use super::super::WorkerSpec;
use super::super::limits::Resources;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType};
use orca_core::JobId;
use std::collections::HashMap;

/// Label every Orca worker container carries, with the job id as value.
pub const LABEL_JOB_ID: &str = "orca.job-id";
/// Label marking containers (and networks) Orca created.
pub const LABEL_MANAGED: &str = "orca.managed";
/// The user the worker runs as (the image's `orca` user).
pub const WORKER_USER: &str = "10001:10001";
pub const WORKSPACE: &str = "/workspace";
pub const HOME: &str = "/home/orca";
/// Where the Claude Code login lives inside the container (`CLAUDE_CONFIG_DIR`).
pub const CLAUDE_DIR: &str = "/home/orca/.claude";

/// Worker environment variables that carry secrets and so go over stdin instead.
const SECRET_VARS: &[&str] = &["GIT_TOKEN"];
/// Host paths meant for the local runner only: in the image the agent CLIs are on PATH.
const HOST_ONLY_VARS: &[&str] = &["ORCA_CLAUDE_BIN", "ORCA_CODEX_BIN", "ORCA_WORKER_BIN"];

/// The container's name for a job.
pub fn name(job_id: JobId) -> String {
    format!("orca-job-{job_id}")
}

/// What the scheduler needs to know to build a container, besides the job.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub image: &'a str,
    pub network: &'a str,
    /// The Claude credentials volume to mount, if any.
    pub creds_volume: Option<&'a str>,
    pub resources: Resources,
    /// Whether secrets will be written to stdin at start (the worker then waits for them).
    pub secrets_on_stdin: bool,
}

/// Environment variables as name/value pairs.
pub type Vars = Vec<(String, String)>;

/// Splits the worker's variables (the contract, the agent variables) into the public
/// environment and the secrets.
pub fn split_env<'a>(vars: impl IntoIterator<Item = (&'a str, String)>) -> (Vars, Vars) {
    let mut public = Vec::new();
    let mut secret = Vec::new();
    for (k, v) in vars {
        if HOST_ONLY_VARS.contains(&k) {
            continue;
        }
        if is_secret(k, &v) {
            secret.push((k.to_owned(), v));
        } else {
            public.push((k.to_owned(), v));
        }
    }
    (public, secret)
}

fn is_secret(key: &str, value: &str) -> bool {
    SECRET_VARS.contains(&key)
        || key.ends_with("_TOKEN")
        || key.ends_with("_KEY")
        || key.ends_with("_SECRET")
        || key.ends_with("PASSWORD")
        || (key.ends_with("_URL") && has_userinfo(value))
}

/// A URL with credentials in its authority (`redis://:pass@host`, `https://user:tok@host/r`).
fn has_userinfo(url: &str) -> bool {
    url.split_once("://").is_some_and(|(_, rest)| rest.split(['/', '?', '#']).next().is_some_and(|a| a.contains('@')))
}

/// The create request for a job's container.
pub fn body(spec: &WorkerSpec, public_env: &[(String, String)], plan: &Plan<'_>) -> ContainerCreateBody {
    let mut env: Vec<String> = public_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("HOME={HOME}"));
    env.push(format!("CLAUDE_CONFIG_DIR={CLAUDE_DIR}"));
    env.push("LANG=C.UTF-8".into());
    if plan.secrets_on_stdin {
        env.push("ORCA_SECRETS=stdin".into());
    }
    let labels = HashMap::from([
        (LABEL_JOB_ID.to_owned(), spec.job_id.to_string()),
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        ("orca.agent".to_owned(), spec.agent_type.clone()),
    ]);
    let tmpfs = HashMap::from([
        ("/tmp".to_owned(), "rw,nosuid,nodev,size=256m".to_owned()),
        (HOME.to_owned(), "rw,nosuid,nodev,size=256m,uid=10001,gid=10001,mode=0700".to_owned()),
    ]);
    let mut mounts = vec![Mount {
        target: Some(WORKSPACE.into()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        ..Default::default()
    }];
    if let Some(vol) = plan.creds_volume {
        mounts.push(Mount {
            target: Some(CLAUDE_DIR.into()),
            source: Some(vol.into()),
            typ: Some(MountType::VOLUME),
            read_only: Some(false),
            ..Default::default()
        });
    }
    let mib = i64::from(plan.resources.memory_mb) * 1024 * 1024;
    let host = HostConfig {
        init: Some(true),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        memory: Some(mib),
        memory_swap: Some(mib),
        nano_cpus: Some(i64::from(plan.resources.cpu_millis) * 1_000_000),
        pids_limit: Some(i64::from(plan.resources.pids)),
        tmpfs: Some(tmpfs),
        mounts: Some(mounts),
        network_mode: Some(plan.network.into()),
        ipc_mode: Some("private".into()),
        // json-file keeps the whole output, so a restarted backend can replay what it missed.
        log_config: Some(HostConfigLogConfig { typ: Some("json-file".into()), config: Some(HashMap::new()) }),
        privileged: Some(false),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(plan.image.into()),
        user: Some(WORKER_USER.into()),
        working_dir: Some(WORKSPACE.into()),
        hostname: Some(format!("orca-{}", &spec.job_id.to_string()[..8])),
        env: Some(env),
        labels: Some(labels),
        tty: Some(false),
        open_stdin: Some(plan.secrets_on_stdin),
        stdin_once: Some(plan.secrets_on_stdin),
        attach_stdin: Some(plan.secrets_on_stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        stop_signal: Some("SIGTERM".into()),
        host_config: Some(host),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_core::{NewJob, Secret};

    fn spec() -> WorkerSpec {
        let job = NewJob::parse(&serde_json::json!({"prompt": "p", "repoUrl": "https://h/r.git", "config": {"gitToken": "ghp_x"}}))
            .unwrap()
            .into_job(time::OffsetDateTime::now_utc());
        let mut s = WorkerSpec::for_job(&job, "info");
        s.git_token = Some(Secret::new("ghp_supersecret"));
        s
    }

    #[test]
    fn secrets_leave_the_environment() {
        let s = spec();
        let (public, secret) = split_env(s.env(WORKSPACE));
        assert!(public.iter().all(|(k, v)| k != "GIT_TOKEN" && !v.contains("supersecret")));
        assert_eq!(secret, vec![("GIT_TOKEN".to_owned(), "ghp_supersecret".to_owned())]);
        assert!(public.iter().any(|(k, v)| k == "REPO_URL" && v == "https://h/r.git"));
        assert!(is_secret("REDIS_URL", "redis://:pw@redis:6379"));
        assert!(!is_secret("REDIS_URL", "redis://redis:6379"));
        assert!(is_secret("REPO_URL", "https://u:tok@h/r.git"));
        assert!(!is_secret("REPO_URL", "git@github.com:a/b.git"));
        assert!(!is_secret("REPO_URL", "https://h/r@v2"));
        assert!(is_secret("ANTHROPIC_API_KEY", "k"));
    }

    #[test]
    fn the_sandbox_is_on() {
        let s = spec();
        let (public, _) = split_env(s.env(WORKSPACE).into_iter().chain([("ORCA_CLAUDE_BIN", "/root/x".to_owned())]));
        assert!(public.iter().all(|(k, _)| k != "ORCA_CLAUDE_BIN"));
        let resources = Resources { memory_mb: 64, cpu_millis: 500, pids: 32 };
        let plan = Plan { image: "img", network: "net", creds_volume: Some("creds"), resources, secrets_on_stdin: true };
        let b = body(&s, &public, &plan);
        let h = b.host_config.as_ref().unwrap();
        assert_eq!((h.init, h.readonly_rootfs, h.privileged), (Some(true), Some(true), Some(false)));
        assert_eq!(h.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!((h.memory, h.memory_swap, h.nano_cpus, h.pids_limit), (Some(64 << 20), Some(64 << 20), Some(500_000_000), Some(32)));
        assert!(h.binds.is_none(), "no host paths");
        let mounts = h.mounts.as_ref().unwrap();
        assert!(mounts.iter().all(|m| m.typ == Some(MountType::VOLUME)));
        assert_eq!(mounts.iter().filter_map(|m| m.source.as_deref()).collect::<Vec<_>>(), ["creds"]);
        assert_eq!(b.user.as_deref(), Some(WORKER_USER));
        assert_eq!(b.labels.as_ref().unwrap()[LABEL_JOB_ID], s.job_id.to_string());
        let env = b.env.unwrap();
        assert!(env.contains(&"ORCA_SECRETS=stdin".to_owned()));
        assert!(!env.iter().any(|e| e.contains("supersecret")));
        assert_eq!((b.open_stdin, b.stdin_once), (Some(true), Some(true)));
    }
}
