//! Settings of the Kubernetes scheduler (`ORCA_SCHEDULER=k8s`).
//!
//! | variable | default | |
//! |---|---|---|
//! | `ORCA_NAMESPACE` | `orca` | namespace of the worker Jobs (the backend's Role must be there) |
//! | `KUBECONFIG` | in-cluster service account, else `~/.kube/config` | kubeconfig file of the cluster (the client's own variable) |
//! | `ORCA_WORKER_REDIS_URL` | unset | the Redis URL as workers reach it: when set, workers write their events to Redis themselves and the scheduler reads no pod log |
//!
//! Shared with the Docker scheduler (`config/sandbox.rs`): `WORKER_IMAGE`, the worker limits,
//! `ORCA_CLAUDE_CREDS_VOLUME` (here: the name of the PersistentVolumeClaim) and
//! `ORCA_SHUTDOWN_WORKERS`. A claim named other than `orca-claude-creds` must also be named in
//! `k8s/rbac.yaml` (`resourceNames`).

use super::ConfigError;
use orca_core::Secret;
use std::path::PathBuf;

/// Kubernetes scheduler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sConfig {
    pub namespace: String,
    pub kubeconfig: Option<PathBuf>,
    /// May hold a password: kept as a secret.
    pub worker_redis_url: Option<Secret>,
}

/// A DNS-1123 label, as namespaces are named.
fn valid_namespace(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn parse<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<K8sConfig, ConfigError> {
    let bad = |var: &'static str, problem: &str| ConfigError { var, value: get(var).unwrap_or_default().to_owned(), problem: problem.to_owned() };
    let namespace = get("ORCA_NAMESPACE").unwrap_or("orca").to_owned();
    if !valid_namespace(&namespace) {
        return Err(bad("ORCA_NAMESPACE", "must be a Kubernetes namespace name: lowercase letters, digits and '-', at most 63"));
    }
    // Only the first of several colon-separated files is used.
    let kubeconfig = get("KUBECONFIG").and_then(|k| k.split(':').find(|p| !p.is_empty())).map(PathBuf::from);
    let worker_redis_url = match get("ORCA_WORKER_REDIS_URL") {
        None => None,
        Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => Some(Secret::new(u)),
        Some(_) => {
            // The value may hold a password: not echoed.
            return Err(ConfigError { var: "ORCA_WORKER_REDIS_URL", value: "[not shown]".into(), problem: "must be a redis:// or rediss:// URL".into() });
        }
    };
    Ok(K8sConfig { namespace, kubeconfig, worker_redis_url })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn p(pairs: &[(&str, &str)]) -> Result<K8sConfig, ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        parse(&|k: &str| env.get(k).copied())
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(p(&[]).unwrap(), K8sConfig { namespace: "orca".into(), kubeconfig: None, worker_redis_url: None });
        let c = p(&[("ORCA_NAMESPACE", "team-a"), ("KUBECONFIG", "/k/one:/k/two"), ("ORCA_WORKER_REDIS_URL", "redis://redis.orca.svc:6379")]).unwrap();
        assert_eq!((c.namespace.as_str(), c.kubeconfig), ("team-a", Some(PathBuf::from("/k/one"))));
        assert_eq!(c.worker_redis_url.unwrap().expose(), "redis://redis.orca.svc:6379");
    }

    #[test]
    fn bad_values_name_the_variable_and_hide_passwords() {
        for ns in ["Orca", "-a", "a_b", &"x".repeat(64)] {
            assert_eq!(p(&[("ORCA_NAMESPACE", ns)]).unwrap_err().var, "ORCA_NAMESPACE");
        }
        let e = p(&[("ORCA_WORKER_REDIS_URL", "http://:hunter2@x")]).unwrap_err();
        assert_eq!(e.var, "ORCA_WORKER_REDIS_URL");
        assert!(!e.to_string().contains("hunter2"));
    }
}
