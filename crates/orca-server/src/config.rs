//! Server configuration: the spec's environment variables, their defaults, and validation.
//!
//! Every variable is read once at start-up into [`Config`]; a bad value stops the server with a
//! message naming the variable. Nothing else in the server reads the environment.

mod backends;
mod k8s;
mod sandbox;

pub use k8s::K8sConfig;
pub use backends::{EventsBackend, RedisEvents};
pub use sandbox::{DockerConfig, LocalSandbox, SandboxConfig};

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which job store and event log to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// SQLite files in the data dir (DATABASE_URL unset, or a `sqlite:` URL).
    Embedded { path: PathBuf },
    /// PostgreSQL (DATABASE_URL=postgres://…), shared by several instances.
    Postgres { url: orca_core::Secret, pool_size: u32 },
}

/// Which scheduler runs workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// The worker binary as a child process of the server.
    Local,
    /// One container per job (`ORCA_SCHEDULER=docker`).
    Docker,
    /// One Kubernetes Job per job (`ORCA_SCHEDULER=k8s`).
    K8s,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub log_level: String,
    pub log_format: LogFormat,
    pub data_dir: PathBuf,
    pub store: StoreBackend,
    /// Where events live (REDIS_URL).
    pub events: EventsBackend,
    /// This instance's id and lease (ORCA_INSTANCE_ID, ORCA_LEASE_SECONDS).
    pub cluster: crate::manager::ClusterConfig,
    pub scheduler: SchedulerKind,
    /// Path of the `orca-worker` binary for the local scheduler.
    pub worker_bin: Option<PathBuf>,
    pub max_concurrent_jobs: usize,
    /// ORCA_MAX_JOBS_PER_REPO: jobs of one repository running at once (unset: no limit).
    pub max_jobs_per_repo: Option<u32>,
    /// How long a stopped worker gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Webhook signing, targets and retries.
    pub webhooks: crate::webhooks::WebhookConfig,
    /// Model keys, base URLs and CLI paths handed to workers (see [`crate::agent_env`]).
    pub agent_env: crate::agent_env::AgentEnv,
    /// Worker image, network, resource limits, local sandbox (see `config/sandbox.rs`).
    pub sandbox: SandboxConfig,
    /// Namespace, kubeconfig and workers' Redis URL of `ORCA_SCHEDULER=k8s` (see `config/k8s.rs`).
    pub k8s: K8sConfig,
}

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}={value:?}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub problem: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads the given variables (the environment, or a test's map).
    pub fn from_vars(env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let get = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let bad = |var: &'static str, problem: &str| ConfigError {
            var,
            value: get(var).unwrap_or_default().to_owned(),
            problem: problem.to_owned(),
        };
        let host = match get("HOST") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(h) if h == "localhost" => IpAddr::from([127, 0, 0, 1]),
            Some(h) => h.parse().map_err(|_| bad("HOST", "must be an IP address such as 0.0.0.0 or 127.0.0.1"))?,
        };
        let port = match get("PORT") {
            None => 3000,
            Some(p) => p.parse().map_err(|_| bad("PORT", "must be a port number from 0 to 65535"))?,
        };
        let log_level = get("LOG_LEVEL").unwrap_or("info").to_owned();
        if !["trace", "debug", "info", "warn", "error", "fatal", "silent"].contains(&log_level.as_str()) {
            return Err(bad("LOG_LEVEL", "must be one of trace, debug, info, warn, error, fatal, silent"));
        }
        let log_format = match get("LOG_FORMAT") {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(bad("LOG_FORMAT", "must be text or json")),
        };
        let data_dir = match get("ORCA_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => default_data_dir().ok_or_else(|| bad("ORCA_DATA_DIR", "is unset and no home directory was found; set it"))?,
        };
        let (store, events, cluster) = backends::parse(&get, &bad, &data_dir)?;
        let scheduler = match get("ORCA_SCHEDULER") {
            None | Some("local") => SchedulerKind::Local,
            Some("docker") => SchedulerKind::Docker,
            Some("k8s") => SchedulerKind::K8s,
            Some(_) => return Err(bad("ORCA_SCHEDULER", "must be local, docker or k8s")),
        };
        let worker_bin = get("ORCA_WORKER_BIN").map(PathBuf::from);
        let max_jobs_per_repo = match get("ORCA_MAX_JOBS_PER_REPO") {
            None => None,
            Some(n) => Some(n.parse().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| bad("ORCA_MAX_JOBS_PER_REPO", "must be a whole number from 1 to 10000"))?),
        };
        let max_concurrent_jobs = match get("ORCA_MAX_CONCURRENT_JOBS") {
            None => 4,
            Some(n) => n.parse().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| bad("ORCA_MAX_CONCURRENT_JOBS", "must be a whole number from 1 to 10000"))?,
        };
        let stop_grace = match get("ORCA_STOP_GRACE_SECONDS") {
            None => Duration::from_secs(10),
            Some(n) => Duration::from_secs(n.parse().ok().filter(|n| *n <= 3600).ok_or_else(|| bad("ORCA_STOP_GRACE_SECONDS", "must be a whole number from 0 to 3600"))?),
        };
        let webhooks = webhook_config(&get, &bad)?;
        let agent_env = crate::agent_env::AgentEnv::from_vars(env)
            .map_err(|e| ConfigError { var: e.var, value: "[not shown]".into(), problem: e.problem })?;
        Ok(Config { host, port, log_level, log_format, data_dir, store, events, cluster, scheduler, worker_bin, max_concurrent_jobs, max_jobs_per_repo, stop_grace, webhooks, agent_env, sandbox: sandbox::parse(&get)?, k8s: k8s::parse(&get)? })
    }
}

fn webhook_config<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    bad: &impl Fn(&'static str, &str) -> ConfigError,
) -> Result<crate::webhooks::WebhookConfig, ConfigError> {
    let mut w = crate::webhooks::WebhookConfig::default();
    // The secret is never echoed back in an error.
    w.secret = get("ORCA_WEBHOOK_SECRET").map(orca_core::Secret::new);
    w.allow_private = match get("ORCA_WEBHOOK_ALLOW_PRIVATE") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => return Err(bad("ORCA_WEBHOOK_ALLOW_PRIVATE", "must be true or false")),
    };
    if let Some(n) = get("ORCA_WEBHOOK_MAX_ATTEMPTS") {
        w.policy.max_attempts =
            n.parse().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| bad("ORCA_WEBHOOK_MAX_ATTEMPTS", "must be a whole number from 1 to 100"))?;
    }
    if let Some(n) = get("ORCA_WEBHOOK_TIMEOUT_SECONDS") {
        w.timeout = Duration::from_secs(
            n.parse().ok().filter(|n| (1..=300).contains(n)).ok_or_else(|| bad("ORCA_WEBHOOK_TIMEOUT_SECONDS", "must be a whole number from 1 to 300"))?,
        );
    }
    if let Some(n) = get("ORCA_WEBHOOK_INITIAL_DELAY_MS") {
        w.policy.initial_delay = Duration::from_millis(
            n.parse().ok().filter(|n| (1..=600_000).contains(n)).ok_or_else(|| bad("ORCA_WEBHOOK_INITIAL_DELAY_MS", "must be a whole number from 1 to 600000"))?,
        );
    }
    Ok(w)
}

/// `$XDG_DATA_HOME/orca`, usually `~/.local/share/orca`.
fn default_data_dir() -> Option<PathBuf> {
    dirs::data_local_dir().map(|d| d.join("orca"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.entry("ORCA_DATA_DIR".into()).or_insert("/tmp/orca-test".into());
        Config::from_vars(&env)
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = cfg(&[]).unwrap();
        assert_eq!((c.port, c.host.to_string(), c.log_level.as_str()), (3000, "0.0.0.0".into(), "info"));
        assert_eq!(c.store, StoreBackend::Embedded { path: "/tmp/orca-test/orca.db".into() });
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [("PORT", "http"), ("HOST", "nowhere"), ("LOG_LEVEL", "loud"), ("ORCA_SCHEDULER", "nomad"), ("ORCA_MAX_CONCURRENT_JOBS", "0")] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert_eq!(e.var, k);
            assert!(e.to_string().contains(k), "{e}");
        }
    }
}

impl Config {
    /// The store's short name, for logs.
    pub fn store_kind(&self) -> &'static str {
        match self.store {
            StoreBackend::Embedded { .. } => "sqlite",
            StoreBackend::Postgres { .. } => "postgres",
        }
    }
}
