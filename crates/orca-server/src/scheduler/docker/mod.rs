//! The Docker scheduler: one container per job, through the Docker Engine API (bollard).
//!
//! Life of a job's container `orca-job-<job id>` (label `orca.job-id=<job id>`):
//! 1. create it from `WORKER_IMAGE` on `DOCKER_NETWORK`, sandboxed ([`container`]);
//! 2. attach to its stdin/stdout/stderr, start it, write the secrets to stdin as one JSON
//!    line ([`secrets`]) and close stdin;
//! 3. read its stdout as the worker's NDJSON event lines ([`output`]);
//! 4. wait for it to stop; `State.OOMKilled` makes the outcome [`WorkerExit::OutOfMemory`],
//!    exit code 137 (SIGKILL through the init process) [`WorkerExit::Signaled`];
//! 5. remove it, with its workspace volume.
//!
//! Cancel and the backend's hard timeout call `docker stop` with the grace period: SIGTERM to
//! the init process, which forwards it to the worker, then SIGKILL when the grace is over.
//!
//! **Restarts:** a backend that stops (or dies) leaves its containers running. At start-up
//! the job manager calls [`Scheduler::adopt`] for every job still marked active: a container
//! that exists is followed again (its log replayed from the output cursor, see [`output`]), even
//! one that finished meanwhile (its real exit status is used); no container means the worker
//! is lost. Containers whose jobs are finished are removed ([`Scheduler::leftovers`]).
//! Containers of jobs this backend's store does not know are left alone, so several backends
//! (or test servers) can share one engine.
//!
//! The network `DOCKER_NETWORK` is created (bridge, label `orca.managed`) when missing, so
//! `orca dev` works without compose; under compose it already exists.

pub mod container;
pub mod creds;
pub mod output;
pub mod secrets;
mod watch;

use super::limits::LimitsPolicy;
use super::{Scheduler, SchedulerError, StartedWorker, WorkerSpec};
use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerStateStatusEnum, NetworkCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
};
use orca_core::{Job, JobConfig, JobId, ValidationErrors};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Timeout of ordinary Engine API calls.
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of calls that last as long as a job (wait, logs, attach, stop).
const STREAM_TIMEOUT: Duration = Duration::from_secs(3 * 24 * 3600);
/// Lines buffered between the container's output and the job manager.
const LINE_BUFFER: usize = 256;

/// What the Docker scheduler is configured with.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// `WORKER_IMAGE`.
    pub image: String,
    /// `DOCKER_NETWORK`.
    pub network: String,
    /// The Claude Code login volume (`ORCA_CLAUDE_CREDS_VOLUME`, default `orca-claude-creds`).
    pub creds_volume: String,
    pub limits: LimitsPolicy,
    /// Where output cursors are kept (`<data dir>/docker`).
    pub state_dir: PathBuf,
    /// Leave containers running when the backend shuts down (`ORCA_SHUTDOWN_WORKERS=keep`).
    pub keep_on_shutdown: bool,
}

pub struct DockerScheduler {
    api: Docker,
    long: Docker,
    settings: DockerSettings,
    agent_env: crate::agent_env::AgentEnv,
}

/// Connects to the engine named by `DOCKER_HOST` (default: the local socket).
pub async fn connect() -> Result<Docker, SchedulerError> {
    let unavailable = |e: DockerError| SchedulerError::Unavailable(format!("cannot reach the Docker engine: {e}"));
    let docker = Docker::connect_with_defaults().map_err(unavailable)?.with_timeout(API_TIMEOUT);
    let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
        .await
        .map_err(|_| SchedulerError::Unavailable("the Docker engine did not answer within 10s".into()))?
        .map_err(unavailable)?;
    docker.ping().await.map_err(unavailable)?;
    Ok(docker)
}

/// Whether a Docker engine is reachable and has `image`; the reason when not.
pub async fn check_engine(image: &str) -> Result<(), String> {
    let docker = connect().await.map_err(|e| match e {
        SchedulerError::Unavailable(m) | SchedulerError::Start(m) => m,
    })?;
    match docker.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Err(format!("the worker image {image} is not on the Docker engine")),
        Err(e) => Err(format!("cannot inspect the worker image {image}: {e}")),
    }
}

fn is_status(e: &DockerError, code: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

impl DockerSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        let d = &config.sandbox.docker;
        DockerSettings {
            image: d.image.clone(),
            network: d.network.clone(),
            creds_volume: d.creds_volume.clone(),
            limits: config.sandbox.limits,
            state_dir: config.data_dir.join("docker"),
            keep_on_shutdown: config.sandbox.keep_workers_on_shutdown,
        }
    }
}

impl DockerScheduler {
    /// Connects, makes sure the network and the state dir exist, and warns when the image is
    /// missing (jobs would fail to start until it is built).
    pub async fn new(settings: DockerSettings) -> Result<Self, SchedulerError> {
        let api = connect().await?;
        let long = api.clone().with_timeout(STREAM_TIMEOUT);
        tokio::fs::create_dir_all(&settings.state_dir)
            .await
            .map_err(|e| SchedulerError::Unavailable(format!("cannot create {}: {e}", settings.state_dir.display())))?;
        let this = Self { api, long, settings, agent_env: Default::default() };
        this.ensure_network().await?;
        if let Err(e) = this.api.inspect_image(&this.settings.image).await {
            tracing::warn!(image = %this.settings.image, "worker image not usable yet ({e}); build it with scripts/build-worker-image.sh or set WORKER_IMAGE");
        }
        Ok(this)
    }

    /// Hands `env` (model keys, base URLs) to every worker: keys over stdin, the rest in the
    /// environment; host paths of the CLIs are dropped (the image has them on PATH).
    pub fn with_agent_env(mut self, env: crate::agent_env::AgentEnv) -> Self {
        self.agent_env = env;
        self
    }

    async fn ensure_network(&self) -> Result<(), SchedulerError> {
        let net = &self.settings.network;
        if ["bridge", "host", "none"].contains(&net.as_str()) {
            if net == "host" {
                tracing::warn!("DOCKER_NETWORK=host: workers share the host's network stack");
            }
            return Ok(());
        }
        // Docker 20.10 allows two networks of one name; backends starting together must not
        // create two (containers could not name it then).
        static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = CREATING.lock().await;
        let unavailable = |e: DockerError| SchedulerError::Unavailable(format!("cannot set up the Docker network {net} (DOCKER_NETWORK): {e}"));
        if self.networks_named(net).await.map_err(unavailable)?.is_empty() {
            let req = NetworkCreateRequest {
                name: net.clone(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([(container::LABEL_MANAGED.to_owned(), "true".to_owned())])),
                ..Default::default()
            };
            self.api.create_network(req).await.map_err(unavailable)?;
            tracing::info!(network = %net, "created the Docker network for workers");
        }
        // Another process may have created it at the same moment: keep the lowest id.
        let mut found = self.networks_named(net).await.map_err(unavailable)?;
        found.sort();
        for (id, managed) in found.iter().skip(1) {
            if *managed {
                let _ = self.api.remove_network(id).await;
            }
        }
        Ok(())
    }

    /// Ids of the networks named exactly `name`, and whether Orca created them.
    async fn networks_named(&self, name: &str) -> Result<Vec<(String, bool)>, DockerError> {
        let filters = HashMap::from([("name".to_owned(), vec![name.to_owned()])]);
        let opts = bollard::query_parameters::ListNetworksOptions { filters: Some(filters) };
        let list = self.api.list_networks(Some(opts)).await?;
        Ok(list
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| {
                let managed = n.labels.as_ref().is_some_and(|l| l.contains_key(container::LABEL_MANAGED));
                Some((n.id?, managed))
            })
            .collect())
    }

    async fn remove(&self, name: &str) {
        watch::remove_container(&self.api, name).await;
    }

    fn cursor(&self, id: JobId) -> PathBuf {
        output::cursor_path(&self.settings.state_dir, id)
    }

    /// Creates the container, replacing a stale one of the same name (a start interrupted
    /// by a crash).
    async fn create(&self, name: &str, body: bollard::models::ContainerCreateBody) -> Result<(), SchedulerError> {
        for attempt in 0..2 {
            let opts = CreateContainerOptions { name: Some(name.to_owned()), ..Default::default() };
            match self.api.create_container(Some(opts), body.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 409) && attempt == 0 => self.remove(name).await,
                Err(e) if is_status(&e, 404) => {
                    return Err(SchedulerError::Start(format!(
                        "the worker image {} is not on the Docker engine; build it (scripts/build-worker-image.sh --tag {0}) or set WORKER_IMAGE",
                        self.settings.image
                    )));
                }
                Err(e) => return Err(SchedulerError::Start(format!("cannot create the worker container: {e}"))),
            }
        }
        Err(SchedulerError::Start(format!("container name {name} stays in use")))
    }

    /// Output and exit of a container, from `frames`, skipping the first `skip` lines.
    fn follow<S>(&self, id: JobId, name: String, frames: S, skip: u64, limit_mb: Option<u64>) -> StartedWorker
    where
        S: futures::Stream<Item = Result<bollard::container::LogOutput, DockerError>> + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(LINE_BUFFER);
        let reader = tokio::spawn(output::split_lines(frames, skip, tx, id));
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let cursor = self.cursor(id);
        let detach = tokio_util::sync::CancellationToken::new();
        let stream = output::manager_stream(rx, cursor.clone(), done_tx, Some(reader.abort_handle()), detach.clone());
        let exit = watch::exit(watch::ExitWatch { api: self.api.clone(), long: self.long.clone(), name: name.clone(), limit_mb, done: done_rx, cursor });
        let control = watch::Control { long: self.long.clone(), name, detach };
        StartedWorker { output: Some(stream), exit: Box::pin(exit), control: Arc::new(control) }
    }
}

#[async_trait]
impl Scheduler for DockerScheduler {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn start(&self, spec: WorkerSpec) -> Result<StartedWorker, SchedulerError> {
        let name = container::name(spec.job_id);
        let agent_vars: Vec<(&str, String)> = self.agent_env.vars().iter().map(|(k, v)| (*k, v.expose().to_owned())).collect();
        let (public, secret_env) = container::split_env(spec.env(container::WORKSPACE).into_iter().chain(agent_vars));
        // An API key for Claude takes precedence over the login volume, which then stays out.
        let api_key = secret_env.iter().any(|(k, _)| k == "ANTHROPIC_API_KEY" || k == "ANTHROPIC_AUTH_TOKEN");
        let job_config: JobConfig = serde_json::from_str(&spec.config_json).unwrap_or_default();
        let resources = self.settings.limits.resolve(&job_config);
        let plan = container::Plan {
            image: &self.settings.image,
            network: &self.settings.network,
            creds_volume: (!api_key).then_some(self.settings.creds_volume.as_str()),
            resources,
            secrets_on_stdin: !secret_env.is_empty(),
        };
        self.create(&name, container::body(&spec, &public, &plan)).await?;
        let fail = |what: &str, e: &dyn std::fmt::Display| SchedulerError::Start(format!("cannot {what} the worker container: {e}"));
        let attach = AttachContainerOptions {
            stream: true,
            stdin: plan.secrets_on_stdin,
            stdout: true,
            stderr: true,
            logs: false,
            detach_keys: None,
        };
        let started = async {
            let io = self.long.attach_container(&name, Some(attach)).await.map_err(|e| fail("attach to", &e))?;
            self.api.start_container(&name, None).await.map_err(|e| fail("start", &e))?;
            let mut input = io.input;
            if plan.secrets_on_stdin {
                let line = secrets::encode(&secret_env);
                input.write_all(line.as_bytes()).await.map_err(|e| fail("send secrets to", &e))?;
                input.flush().await.map_err(|e| fail("send secrets to", &e))?;
            }
            // Closing stdin: the worker sees EOF, and with StdinOnce Docker closes its stdin.
            let _ = input.shutdown().await;
            Ok::<_, SchedulerError>(io.output)
        };
        let frames = match started.await {
            Ok(f) => f,
            Err(e) => {
                self.remove(&name).await;
                return Err(e);
            }
        };
        tracing::info!(job_id = %spec.job_id, container = %name, memory_mb = resources.memory_mb, cpu_millis = resources.cpu_millis, pids = resources.pids, "worker container started");
        Ok(self.follow(spec.job_id, name, frames, 0, Some(u64::from(resources.memory_mb))))
    }

    async fn adopt(&self, job: &Job) -> Result<Option<StartedWorker>, SchedulerError> {
        let name = container::name(job.id);
        let info = match self.api.inspect_container(&name, None).await {
            Ok(i) => i,
            Err(e) if is_status(&e, 404) => return Ok(None),
            Err(e) => return Err(SchedulerError::Unavailable(format!("cannot inspect {name}: {e}"))),
        };
        let status = info.state.as_ref().and_then(|s| s.status);
        if matches!(status, Some(ContainerStateStatusEnum::CREATED) | None) {
            // Never started (the backend stopped while starting it): nothing to follow.
            self.remove(&name).await;
            return Ok(None);
        }
        let limit_mb = info.host_config.as_ref().and_then(|h| h.memory).filter(|m| *m > 0).map(|m| (m as u64) >> 20);
        let skip = match output::read_cursor(&self.cursor(job.id)).await {
            Some(n) => n,
            None => {
                let existing = self.long.logs(&name, Some(logs_options(false)));
                let (tx, _rx) = mpsc::channel(1);
                let n = output::split_lines(existing, u64::MAX, tx, job.id).await;
                tracing::warn!(job_id = %job.id, "no output cursor for {name}; skipping the {n} lines already in its log");
                n
            }
        };
        let frames = self.long.logs(&name, Some(logs_options(true)));
        tracing::info!(job_id = %job.id, container = %name, ?status, skip, "adopted a worker container");
        Ok(Some(self.follow(job.id, name, frames, skip, limit_mb)))
    }

    async fn health(&self) -> Result<(), SchedulerError> {
        self.api.ping().await.map_err(|e| SchedulerError::Unavailable(format!("Docker engine: {e}")))?;
        self.api
            .inspect_image(&self.settings.image)
            .await
            .map(|_| ())
            .map_err(|e| SchedulerError::Unavailable(format!("worker image {}: {e}", self.settings.image)))
    }

    fn validate(&self, config: &JobConfig) -> Result<(), ValidationErrors> {
        self.settings.limits.check(config)
    }

    async fn leftovers(&self) -> Result<Vec<JobId>, SchedulerError> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{}=true", container::LABEL_MANAGED)])]);
        let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let list = self.api.list_containers(Some(opts)).await.map_err(|e| SchedulerError::Unavailable(format!("cannot list containers: {e}")))?;
        Ok(list
            .iter()
            .filter_map(|c| c.labels.as_ref()?.get(container::LABEL_JOB_ID).and_then(|id| JobId::parse(id)))
            .collect())
    }

    fn keeps_workers_on_shutdown(&self) -> bool {
        self.settings.keep_on_shutdown
    }

    async fn discard(&self, job_id: JobId) -> Result<(), SchedulerError> {
        self.remove(&container::name(job_id)).await;
        let _ = tokio::fs::remove_file(self.cursor(job_id)).await;
        Ok(())
    }
}

fn logs_options(follow: bool) -> LogsOptions {
    LogsOptions { follow, stdout: true, stderr: true, tail: "all".into(), ..Default::default() }
}

/// Keeps `RemoveContainerOptions` in one place: force (kills a running one), with volumes.
fn remove_options() -> RemoveContainerOptions {
    RemoveContainerOptions { force: true, v: true, ..Default::default() }
}
