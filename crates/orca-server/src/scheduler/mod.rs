//! The scheduler port: start a job's worker somewhere, observe its output and its exit, stop it.
//!
//! Adapters: [`local::LocalScheduler`] (a child process, in bubblewrap when installed) and
//! [`docker::DockerScheduler`] (one container per job), [`k8s::K8sScheduler`] (one Kubernetes Job per job).
//! A scheduler knows nothing about job states or events; the job manager turns what it
//! reports (output lines, an exit) into transitions and events.

pub mod bwrap;
pub mod cgroup;
pub mod docker;
pub mod isolation;
pub mod k8s;
pub mod limits;
pub mod local;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use orca_core::{Job, JobConfig, JobId, Secret, ValidationErrors};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Everything a worker needs: the worker env contract, as data.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub job_id: JobId,
    pub prompt: String,
    pub agent_type: String,
    pub repo_url: Option<String>,
    pub git_token: Option<Secret>,
    pub branch: Option<String>,
    pub timeout_seconds: u32,
    /// The job's public config as JSON (`ORCA_JOB_CONFIG`).
    pub config_json: String,
    pub log_level: String,
}

impl WorkerSpec {
    pub fn for_job(job: &Job, log_level: &str) -> Self {
        WorkerSpec {
            job_id: job.id,
            prompt: job.prompt.clone(),
            agent_type: job.agent_type.as_str().to_owned(),
            repo_url: job.repo_url.clone(),
            git_token: job.config.git_token.clone(),
            branch: job.branch.clone(),
            timeout_seconds: job.timeout_seconds,
            config_json: serde_json::to_string(&job.config).unwrap_or_else(|_| "{}".into()),
            log_level: log_level.to_owned(),
        }
    }

    /// The worker env contract (spec: "Worker Environment Variables"), secrets included.
    pub fn env(&self, work_dir: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("JOB_ID", self.job_id.to_string()),
            ("PROMPT", self.prompt.clone()),
            ("AGENT_TYPE", self.agent_type.clone()),
            ("WORK_DIR", work_dir.to_owned()),
            ("TIMEOUT_SECONDS", self.timeout_seconds.to_string()),
            ("LOG_LEVEL", self.log_level.clone()),
            ("ORCA_JOB_CONFIG", self.config_json.clone()),
        ];
        if let Some(r) = &self.repo_url {
            env.push(("REPO_URL", r.clone()));
        }
        if let Some(b) = &self.branch {
            env.push(("BRANCH", b.clone()));
        }
        if let Some(t) = &self.git_token {
            env.push(("GIT_TOKEN", t.expose().to_owned()));
        }
        env
    }
}

/// How a worker ended, as far as the scheduler can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// The worker exited with this status code.
    Exited(i32),
    /// The worker was killed by this signal.
    Signaled(i32),
    /// The worker vanished or could not be observed.
    Lost(String),
    /// The worker was killed for using more memory than its limit (the kernel's OOM killer).
    OutOfMemory { limit_mb: Option<u64> },
    /// The platform could not run the worker, or ended it, for this reason (e.g. an image
    /// that cannot be pulled, an evicted pod); the text is the whole reason.
    Failed(String),
    /// The platform's own deadline for the worker passed (Kubernetes `activeDeadlineSeconds`).
    DeadlineExceeded,
}

impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(c) => write!(f, "worker exited with status {c}"),
            Self::Signaled(s) => {
                let name = nix::sys::signal::Signal::try_from(*s).map(|s| s.as_str()).unwrap_or("unknown");
                write!(f, "worker was killed by signal {s} ({name})")
            }
            Self::Lost(why) => write!(f, "worker lost: {why}"),
            Self::OutOfMemory { limit_mb: Some(mb) } => {
                write!(f, "worker ran out of memory (limit {mb} MiB) and was killed")
            }
            Self::OutOfMemory { limit_mb: None } => write!(f, "worker ran out of memory and was killed"),
            Self::Failed(why) => f.write_str(why),
            Self::DeadlineExceeded => write!(f, "worker passed its deadline and was stopped by the platform"),
        }
    }
}

/// Stops a running worker: SIGTERM (or the platform's equivalent), a grace period, then a kill.
#[async_trait]
pub trait WorkerControl: Send + Sync {
    async fn stop(&self, grace: Duration);

    /// Stops delivering the worker's output (the output stream ends after the line in hand)
    /// and leaves the worker running, for another backend to adopt.
    async fn detach(&self) {}
}

/// A started worker.
pub struct StartedWorker {
    /// The worker's event lines (its stdout), when this scheduler carries them.
    pub output: Option<BoxStream<'static, String>>,
    /// Resolves once when the worker has ended.
    pub exit: BoxFuture<'static, WorkerExit>,
    pub control: Arc<dyn WorkerControl>,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("could not start the worker: {0}")]
    Start(String),
    #[error("scheduler unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Scheduler: Send + Sync + 'static {
    /// A short name for health reports: `local`, `docker`, `k8s`.
    fn kind(&self) -> &'static str;

    /// Starts the worker for one job.
    async fn start(&self, spec: WorkerSpec) -> Result<StartedWorker, SchedulerError>;

    /// Re-attaches to the worker of a job a previous backend process started, if it still runs.
    async fn adopt(&self, _job: &Job) -> Result<Option<StartedWorker>, SchedulerError> {
        Ok(None)
    }

    /// Whether workers can be started right now.
    async fn health(&self) -> Result<(), SchedulerError>;

    /// Checks a submitted job's scheduler-specific settings (e.g. resource limits against the
    /// server's maxima); errors name the fields (`config.memoryMb`).
    fn validate(&self, _config: &JobConfig) -> Result<(), ValidationErrors> {
        Ok(())
    }

    /// Jobs whose workers (running or not) this scheduler still holds, e.g. containers left
    /// by a previous backend process. Called once at start-up, after [`Scheduler::adopt`].
    async fn leftovers(&self) -> Result<Vec<JobId>, SchedulerError> {
        Ok(Vec::new())
    }

    /// Stops and removes whatever is left of a job's worker (the job is finished).
    async fn discard(&self, _job_id: JobId) -> Result<(), SchedulerError> {
        Ok(())
    }

    /// Whether workers keep running when the backend shuts down, for the next backend to
    /// [`Scheduler::adopt`] (instead of being stopped, failing their jobs as interrupted).
    fn keeps_workers_on_shutdown(&self) -> bool {
        false
    }
}
