//! Settings of the sandboxes workers run in.
//!
//! | variable | default | |
//! |---|---|---|
//! | `WORKER_IMAGE` | `orca-worker:latest` | image of worker containers (`ORCA_SCHEDULER=docker`) |
//! | `DOCKER_NETWORK` | `orca_default` | network of worker containers; created when missing |
//! | `ORCA_CLAUDE_CREDS_VOLUME` | `orca-claude-creds` | volume with the Claude Code login (`orca auth`) |
//! | `ORCA_LOCAL_SANDBOX` | `auto` | local runner: `auto` (bubblewrap when installed), `bwrap` (required), `none` |
//! | `ORCA_SHUTDOWN_WORKERS` | `keep` | on shutdown, `keep` worker containers running for the next backend to adopt, or `stop` them (their jobs fail as interrupted); the local runner always stops its workers |
//! | `ORCA_WORKER_MEMORY_MB`, `ORCA_WORKER_CPUS`, `ORCA_WORKER_PIDS` and their `_MAX_` forms | | see `scheduler::limits` |
//!
//! `DOCKER_HOST` (the Docker client's own variable) picks the engine; default the local socket.

use super::ConfigError;
use crate::scheduler::limits::LimitsPolicy;

/// Docker scheduler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    pub image: String,
    pub network: String,
    pub creds_volume: String,
}

/// How the local runner isolates workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalSandbox {
    /// Bubblewrap when `bwrap` is installed and works, else none (with a warning).
    Auto,
    /// Bubblewrap or refuse to start.
    Bwrap,
    /// Plain child processes.
    None,
}

/// Everything about sandboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    pub docker: DockerConfig,
    pub limits: LimitsPolicy,
    pub local: LocalSandbox,
    /// `ORCA_SHUTDOWN_WORKERS=keep` (default) or `stop`.
    pub keep_workers_on_shutdown: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            docker: DockerConfig {
                image: "orca-worker:latest".into(),
                network: "orca_default".into(),
                creds_volume: "orca-claude-creds".into(),
            },
            limits: LimitsPolicy::default(),
            local: LocalSandbox::Auto,
            keep_workers_on_shutdown: true,
        }
    }
}

/// Docker object names: what `docker` accepts for images, networks and volumes.
fn valid_name(s: &str, image: bool) -> bool {
    let extra: &[char] = if image { &['.', '_', '-', '/', ':', '@'] } else { &['.', '_', '-'] };
    !s.is_empty() && s.len() <= 255 && !s.starts_with(['-', '.']) && s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

pub(super) fn parse<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<SandboxConfig, ConfigError> {
    let bad = |var: &'static str, problem: &str| ConfigError {
        var,
        value: get(var).unwrap_or_default().to_owned(),
        problem: problem.to_owned(),
    };
    let mut c = SandboxConfig::default();
    if let Some(v) = get("WORKER_IMAGE") {
        if !valid_name(v, true) {
            return Err(bad("WORKER_IMAGE", "must be an image reference such as orca-worker:latest"));
        }
        c.docker.image = v.to_owned();
    }
    for (var, slot) in [("DOCKER_NETWORK", &mut c.docker.network), ("ORCA_CLAUDE_CREDS_VOLUME", &mut c.docker.creds_volume)] {
        if let Some(v) = get(var) {
            if !valid_name(v, false) {
                return Err(bad(var, "must be a Docker object name: letters, digits, '.', '_' and '-'"));
            }
            *slot = v.to_owned();
        }
    }
    c.local = match get("ORCA_LOCAL_SANDBOX") {
        None | Some("auto") => LocalSandbox::Auto,
        Some("bwrap") => LocalSandbox::Bwrap,
        Some("none") => LocalSandbox::None,
        Some(_) => return Err(bad("ORCA_LOCAL_SANDBOX", "must be auto, bwrap or none")),
    };
    c.keep_workers_on_shutdown = match get("ORCA_SHUTDOWN_WORKERS") {
        None | Some("keep") => true,
        Some("stop") => false,
        Some(_) => return Err(bad("ORCA_SHUTDOWN_WORKERS", "must be keep or stop")),
    };
    c.limits = LimitsPolicy::from_vars(get)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn p(pairs: &[(&str, &str)]) -> Result<SandboxConfig, ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        parse(&|k: &str| env.get(k).copied())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = p(&[]).unwrap();
        assert_eq!((c.docker.image.as_str(), c.docker.network.as_str()), ("orca-worker:latest", "orca_default"));
        assert_eq!((c.docker.creds_volume.as_str(), c.local), ("orca-claude-creds", LocalSandbox::Auto));
        let c = p(&[("WORKER_IMAGE", "registry.local:5000/orca/worker:1.2"), ("ORCA_LOCAL_SANDBOX", "none")]).unwrap();
        assert_eq!((c.docker.image.as_str(), c.local), ("registry.local:5000/orca/worker:1.2", LocalSandbox::None));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [("WORKER_IMAGE", "bad image"), ("DOCKER_NETWORK", "a/b"), ("ORCA_CLAUDE_CREDS_VOLUME", "-x"), ("ORCA_LOCAL_SANDBOX", "yes"), ("ORCA_WORKER_PIDS", "0"), ("ORCA_SHUTDOWN_WORKERS", "x")] {
            assert_eq!(p(&[(k, v)]).unwrap_err().var, k);
        }
    }
}
