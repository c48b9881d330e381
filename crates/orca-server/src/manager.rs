//! The job manager: the one place that moves jobs through their lifecycle.
//!
//! It owns submission, cancel and retry (called by the API), the dispatcher (claims queued
//! jobs while a slot is free), and one supervisor task per started job (starts the worker,
//! pumps its output into the event bus, enforces the timeout, records the outcome).
//!
//! **Invariant:** every status change is computed by `Job::transition` and stored with a
//! compare-and-set on the previous status; the event bus gets a `status` event for each.
//! **Invariant:** a job's terminal `status` event is its last event. For a started job the
//! supervisor writes it, after the worker's output is drained; for a job cancelled while
//! queued, `cancel` writes it.

mod cluster;
mod leftovers;
mod queued;
mod results;

pub use cluster::ClusterConfig;

use crate::events::EventBus;
use crate::scheduler::{Scheduler, WorkerExit, WorkerSpec};
use crate::store::{JobStore, StoreError};
use futures::StreamExt;
use orca_core::{AgentEvent, FailureClass, Job, JobFilter, JobId, JobPage, JobStatus, NewJob, StatusChange};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Worker exit code meaning "the worker's own hard timeout fired".
pub const WORKER_EXIT_TIMEOUT: i32 = 124;
/// Extra time the backend allows past `timeoutSeconds` before it stops a worker itself
/// (the worker enforces the limit first; this catches a hung or lost worker).
pub const BACKEND_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// How long the supervisor waits for a worker's output to drain after it exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on compare-and-set retries when others move a job concurrently.
const CAS_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("no job with id {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] crate::events::BusError),
    /// The job asks for something this server's scheduler refuses (e.g. limits above its maxima).
    #[error("{0}")]
    Invalid(orca_core::ValidationErrors),
}

/// Tunables of the manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub max_concurrent_jobs: usize,
    /// Jobs of one repository scheduled or running at once, across instances (None: no limit).
    pub max_jobs_per_repo: Option<u32>,
    pub stop_grace: Duration,
    pub log_level: String,
    /// Instance id and lease, for sharing the store with other instances.
    pub cluster: ClusterConfig,
}

/// Why the supervisor stopped a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillReason {
    Cancelled,
    TimedOut,
    Shutdown,
}

/// The handles of one supervised job.
#[derive(Clone)]
struct Supervision {
    /// Stops the worker (cancel, shutdown, the job ended elsewhere).
    cancel: CancellationToken,
    /// Set when another instance took the job over: from then on this one writes nothing of
    /// the job's, not even the output its stopping worker still prints.
    lost: CancellationToken,
}

pub struct JobManager {
    store: Arc<dyn JobStore>,
    bus: Arc<dyn EventBus>,
    scheduler: Arc<dyn Scheduler>,
    config: ManagerConfig,
    wake: Notify,
    /// The jobs this process supervises.
    supervised: Mutex<HashMap<JobId, Supervision>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Heartbeat state (see [`cluster`]).
    cluster: cluster::ClusterState,
    /// Notified when a job starts or ends (set once at start-up).
    webhooks: std::sync::OnceLock<Arc<crate::webhooks::Webhooks>>,
    /// `queued` events to append (see [`queued`]).
    announcements: queued::Announcements,
}

impl JobManager {
    pub fn new(store: Arc<dyn JobStore>, bus: Arc<dyn EventBus>, scheduler: Arc<dyn Scheduler>, config: ManagerConfig) -> Arc<Self> {
        Arc::new(Self {
            store,
            bus,
            scheduler,
            config,
            wake: Notify::new(),
            supervised: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            cluster: cluster::ClusterState::default(),
            webhooks: std::sync::OnceLock::new(),
            announcements: queued::Announcements::default(),
        })
    }

    /// Sends webhooks for jobs that ask for them.
    pub fn set_webhooks(&self, webhooks: Arc<crate::webhooks::Webhooks>) {
        let _ = self.webhooks.set(webhooks);
    }

    /// Tells the webhook sender about a job's new status. A failure is logged, not fatal: the
    /// job's own state is already stored.
    async fn notify(&self, job: &Job) {
        if let Some(w) = self.webhooks.get() {
            if let Err(e) = w.job_changed(job).await {
                tracing::warn!(job_id = %job.id, "cannot queue webhook: {e}");
            }
        }
    }

    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    pub fn scheduler(&self) -> &Arc<dyn Scheduler> {
        &self.scheduler
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    pub async fn submit(&self, new: NewJob) -> Result<Job, ManagerError> {
        self.scheduler.validate(&new.config).map_err(ManagerError::Invalid)?;
        let job = new.into_job(Self::now());
        self.enqueue(&job).await?;
        tracing::info!(job_id = %job.id, agent = %job.agent_type, "job queued");
        self.wake_dispatcher();
        Ok(job)
    }

    pub async fn get(&self, id: JobId) -> Result<Job, ManagerError> {
        self.store.get(id).await?.ok_or_else(|| ManagerError::NotFound(id.to_string()))
    }

    /// Why a queued job waits: its place in the FIFO queue (1 = next) and the limit it waits
    /// on. `None` for a job that is not queued.
    pub async fn queue_info(&self, job: &Job) -> Result<Option<serde_json::Value>, ManagerError> {
        if job.status != JobStatus::Queued {
            return Ok(None);
        }
        let ahead = self.store.queued_before(job).await?;
        let running = JobFilter { status: vec![JobStatus::Scheduled, JobStatus::Running], limit: 1, ..JobFilter::default() };
        let active = self.store.list(&running).await?.total;
        let limit = self.config.max_concurrent_jobs;
        let repo_busy = match (self.config.max_jobs_per_repo, &job.repo_url) {
            (Some(max), Some(repo)) => {
                let f = JobFilter { status: vec![JobStatus::Scheduled, JobStatus::Running], repo_url: Some(repo.clone()), limit: 1, ..JobFilter::default() };
                let n = self.store.list(&f).await?.total;
                (n >= u64::from(max)).then(|| format!("ORCA_MAX_JOBS_PER_REPO={max}: {n} job(s) of {repo} running"))
            }
            _ => None,
        };
        let waiting_on = if let Some(repo) = repo_busy {
            repo
        } else if ahead > 0 {
            format!("{ahead} job(s) queued before it")
        } else if active as usize >= limit {
            format!("ORCA_MAX_CONCURRENT_JOBS={limit}: {active} job(s) running")
        } else {
            "a free slot: it starts within a second".to_owned()
        };
        Ok(Some(serde_json::json!({ "position": ahead + 1, "waitingOn": waiting_on, "maxConcurrentJobs": limit, "activeJobs": active })))
    }

    pub async fn list(&self, filter: &JobFilter) -> Result<JobPage, ManagerError> {
        Ok(self.store.list(filter).await?)
    }

    /// Cancels a job in any non-terminal state. Cancelling a cancelled job is a no-op.
    pub async fn cancel(&self, id: JobId) -> Result<Job, ManagerError> {
        for attempt in 0..CAS_ATTEMPTS {
            let job = self.get(id).await?;
            if job.status == JobStatus::Cancelled {
                return Ok(job);
            }
            if job.status.is_terminal() {
                return Err(ManagerError::Conflict(format!(
                    "job {id} already finished ({}); only queued, scheduled or running jobs can be cancelled",
                    job.status
                )));
            }
            let change = StatusChange::to(JobStatus::Cancelled).with_reason("cancelled by user");
            let next = job.transition(&change, Self::now()).expect("non-terminal jobs can be cancelled");
            // A queued job has no supervisor to write its end: this call does, holding a lease
            // meanwhile so that the reaper finishes the work if this process dies halfway.
            let moved = if job.status == JobStatus::Queued {
                self.store.update_and_lease(&next, job.status, &self.lease_terms()).await?
            } else {
                self.store.update_if_status(&next, job.status).await?
            };
            if !moved {
                // Moved under us, or held for a moment (a takeover requeueing it): look again.
                tokio::time::sleep(Duration::from_millis(5 * attempt as u64)).await;
                continue;
            }
            tracing::info!(job_id = %id, from = %job.status, "job cancelled");
            if job.status == JobStatus::Queued {
                self.announce_queued(&job).await?;
                self.bus.append(id, AgentEvent::status(JobStatus::Cancelled, next.failure_reason.clone(), None)).await?;
                self.notify(&next).await;
                self.release(id).await;
            } else if let Some(s) = self.supervised.lock().expect("poisoned").get(&id) {
                s.cancel.cancel();
            }
            return Ok(next);
        }
        Err(ManagerError::Conflict(format!("job {id} is changing too fast; try again")))
    }

    /// Creates a new job from a finished one, linked by `retryOf`.
    pub async fn retry(&self, id: JobId) -> Result<Job, ManagerError> {
        let job = self.get(id).await?;
        if !job.status.is_terminal() {
            return Err(ManagerError::Conflict(format!("job {id} is still {}; only finished jobs can be retried", job.status)));
        }
        let new = job.retry(Self::now());
        self.enqueue(&new).await?;
        tracing::info!(job_id = %new.id, retry_of = %id, "job queued (retry)");
        self.wake_dispatcher();
        Ok(new)
    }

    /// Reconciles jobs a previous process left active, then dispatches until shutdown.
    pub fn start(self: &Arc<Self>) {
        let this = self.clone();
        self.tasks.spawn(async move {
            if let Err(e) = this.recover().await {
                tracing::error!("recovery at start-up failed: {e}");
            }
            this.dispatch_loop().await;
        });
        self.tasks.spawn(self.clone().cluster_loop());
        self.tasks.spawn(self.clone().announcer_loop());
    }

    /// Stops dispatching, stops supervised workers (their jobs fail as interrupted) and waits.
    pub async fn shutdown(&self, deadline: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(deadline, self.tasks.wait()).await.is_err() {
            tracing::warn!("some jobs did not finish shutting down within {deadline:?}");
        }
    }

    /// Takes over what dead instances (or this store's previous process) left active; see
    /// [`cluster`].
    async fn recover(self: &Arc<Self>) -> Result<(), ManagerError> {
        self.reclaim(true).await?;
        self.remove_leftovers().await;
        Ok(())
    }

    /// Wakes the dispatcher for a new job, unless every slot is taken (a slot's end wakes it).
    fn wake_dispatcher(&self) {
        if self.active_count() < self.config.max_concurrent_jobs {
            self.wake.notify_one();
        }
    }

    fn active_count(&self) -> usize {
        self.supervised.lock().expect("poisoned").len()
    }

    async fn dispatch_loop(self: &Arc<Self>) {
        loop {
            while self.active_count() < self.config.max_concurrent_jobs && !self.shutdown.is_cancelled() {
                match self.store.claim_next(&self.lease_terms()).await {
                    Ok(Some(job)) => self.clone().spawn_supervisor(job, None),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("cannot claim jobs: {e}");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn spawn_supervisor(self: Arc<Self>, job: Job, adopted: Option<crate::scheduler::StartedWorker>) {
        let handles = Supervision { cancel: self.shutdown.child_token(), lost: CancellationToken::new() };
        self.supervised.lock().expect("poisoned").insert(job.id, handles.clone());
        let this = self.clone();
        self.tasks.spawn(async move {
            let id = job.id;
            if let Err(e) = this.supervise(job, adopted, handles).await {
                tracing::error!(job_id = %id, "supervisor failed: {e}");
            }
            this.supervised.lock().expect("poisoned").remove(&id);
            this.wake.notify_one();
        });
    }

    /// Runs one claimed job to its end.
    async fn supervise(&self, job: Job, adopted: Option<crate::scheduler::StartedWorker>, handles: Supervision) -> Result<(), ManagerError> {
        let id = job.id;
        let Supervision { cancel, lost } = handles;
        let worker = match adopted {
            Some(w) => w,
            None => {
                self.announce_queued(&job).await?;
                self.bus.append(id, AgentEvent::status(JobStatus::Scheduled, None, None)).await?;
                if cancel.is_cancelled() {
                    return self.finish(id, StatusChange::to(JobStatus::Cancelled)).await;
                }
                match self.scheduler.start(WorkerSpec::for_job(&job, &self.config.log_level)).await {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!(job_id = %id, "{e}");
                        return self.finish(id, StatusChange::to(JobStatus::Failed).with_reason(e.to_string())).await;
                    }
                }
            }
        };
        if job.status == JobStatus::Scheduled {
            let running = job.transition(&StatusChange::to(JobStatus::Running), Self::now()).expect("scheduled → running");
            if self.store.update_if_owned(&running, JobStatus::Scheduled, self.instance_id()).await? {
                self.bus.append(id, AgentEvent::status(JobStatus::Running, None, None)).await?;
                self.notify(&running).await;
            } else {
                // Cancelled while starting, or the claim was taken over (our lease ran out):
                // either way this worker must not run; `finish` leaves a taken-over job alone,
                // and nothing the worker prints is written to a stream that is not ours.
                if !self.owns(id).await.unwrap_or(true) {
                    lost.cancel();
                }
                cancel.cancel();
            }
        }
        let mut pump = worker.output.map(|out| {
            let bus = self.bus.clone();
            tokio::spawn(async move { pump_output(bus, id, out, lost).await })
        });
        let deadline = job.started_at.map_or(OffsetDateTime::now_utc(), |s| s)
            + Duration::from_secs(job.timeout_seconds as u64)
            + BACKEND_TIMEOUT_MARGIN;
        let left = (deadline - OffsetDateTime::now_utc()).try_into().unwrap_or(Duration::ZERO);
        let mut exit_fut = worker.exit;
        let mut kill = None;
        let exit = tokio::select! {
            biased;
            exit = &mut exit_fut => exit,
            _ = cancel.cancelled() => {
                if self.shutdown.is_cancelled() && self.scheduler.keeps_workers_on_shutdown() {
                    // The worker outlives this process; the next backend adopts it. The line in
                    // hand is stored first, so the next backend resumes right after it.
                    worker.control.detach().await;
                    if let Some(p) = pump.take() {
                        let _ = tokio::time::timeout(DRAIN_TIMEOUT, p).await;
                    }
                    tracing::info!(job_id = %id, "leaving the worker running for the next backend to adopt");
                    return Ok(());
                }
                kill = Some(if self.shutdown.is_cancelled() { KillReason::Shutdown } else { KillReason::Cancelled });
                worker.control.stop(self.config.stop_grace).await;
                exit_fut.await
            }
            _ = tokio::time::sleep(left) => {
                kill = Some(KillReason::TimedOut);
                worker.control.stop(self.config.stop_grace).await;
                exit_fut.await
            }
        };
        if let Some(pump) = pump {
            if tokio::time::timeout(DRAIN_TIMEOUT, pump).await.is_err() {
                tracing::warn!(job_id = %id, "worker output did not close within {DRAIN_TIMEOUT:?} of its exit");
            }
        }
        let results = self.collect_results(id).await;
        let change = results.explain(outcome(&job, kill, &exit));
        tracing::info!(job_id = %id, %exit, status = ?change.to, "worker ended");
        self.record_results(id, &results).await?;
        self.finish(id, change).await?;
        self.record_results(id, &results).await // again, in case a cancel raced the first
    }

    /// Records a job's end (unless someone, e.g. cancel, already did) and writes its final
    /// status event, which reflects what is stored.
    async fn finish(&self, id: JobId, change: StatusChange) -> Result<(), ManagerError> {
        for _ in 0..CAS_ATTEMPTS {
            let job = self.get(id).await?;
            if !self.owns(id).await? {
                tracing::warn!(job_id = %id, "another instance took the job over; leaving its end to that instance");
                return Ok(());
            }
            if job.status.is_terminal() {
                self.bus.append(id, AgentEvent::status(job.status, job.failure_reason.clone(), job.exit_code)).await?;
                self.notify(&job).await;
                self.release(id).await;
                return Ok(());
            }
            let next = match job.transition(&change, Self::now()) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(job_id = %id, "{e}; failing the job instead");
                    job.transition(&StatusChange::to(JobStatus::Failed).with_reason(e.to_string()), Self::now()).expect("active → failed")
                }
            };
            if self.store.update_if_owned(&next, job.status, self.instance_id()).await? {
                self.bus.append(id, AgentEvent::status(next.status, next.failure_reason.clone(), next.exit_code)).await?;
                self.notify(&next).await;
                self.release(id).await;
                return Ok(());
            }
        }
        Err(ManagerError::Conflict(format!("job {id} could not be finished: it kept changing")))
    }
}

/// Turns the way a worker ended into the job's final status change.
fn outcome(job: &Job, kill: Option<KillReason>, exit: &WorkerExit) -> StatusChange {
    let code = match exit {
        WorkerExit::Exited(c) => Some(*c),
        _ => None,
    };
    let change = match kill {
        Some(KillReason::Cancelled) => StatusChange::to(JobStatus::Cancelled).with_reason("cancelled by user"),
        Some(KillReason::TimedOut) => StatusChange::to(JobStatus::TimedOut)
            .with_reason(format!("exceeded timeoutSeconds={} and was stopped by the backend", job.timeout_seconds)),
        Some(KillReason::Shutdown) => StatusChange::to(JobStatus::Failed).with_reason("interrupted: the Orca server shut down while the job ran"),
        None => match exit {
            WorkerExit::Exited(0) => StatusChange::to(JobStatus::Succeeded),
            WorkerExit::Exited(WORKER_EXIT_TIMEOUT) => {
                StatusChange::to(JobStatus::TimedOut).with_reason(format!("exceeded timeoutSeconds={}", job.timeout_seconds))
            }
            WorkerExit::DeadlineExceeded => StatusChange::to(JobStatus::TimedOut)
                .with_reason(format!("exceeded timeoutSeconds={} and was stopped by Kubernetes (activeDeadlineSeconds)", job.timeout_seconds)),
            WorkerExit::OutOfMemory { .. } => StatusChange::to(JobStatus::Failed).with_reason(exit.to_string()).with_class(FailureClass::Limit),
            WorkerExit::Exited(c) => StatusChange::to(JobStatus::Failed).with_reason(exit.to_string()).with_class(class_of_exit(*c)),
            other => StatusChange::to(JobStatus::Failed).with_reason(other.to_string()).with_class(FailureClass::Infrastructure),
        },
    };
    change.with_exit_code(code)
}

/// Whose failure a worker's exit code means (the worker's exit-code table, see orca-worker).
fn class_of_exit(code: i32) -> FailureClass {
    match code {
        // bad environment, clone failed, push failed, stopped by a signal, event reader gone
        2 | 3 | 4 | 130 | 141 | 143 => FailureClass::Infrastructure,
        WORKER_EXIT_TIMEOUT => FailureClass::Limit,
        // 1: the agent failed; anything else is the agent's own exit status
        _ => FailureClass::Agent,
    }
}

/// Copies a worker's event lines into the bus. Workers may not write `status` events: those
/// are the backend's, so one coming from a worker is kept as `raw`.
async fn pump_output(bus: Arc<dyn EventBus>, id: JobId, mut out: futures::stream::BoxStream<'static, String>, lost: CancellationToken) {
    while let Some(line) = out.next().await {
        if lost.is_cancelled() {
            // Another instance owns the job now; its stream is not ours to write. Keep reading
            // so the worker is never blocked on a full pipe while it stops.
            continue;
        }
        let event = match AgentEvent::from_json_line(&line) {
            AgentEvent::Status { .. } => AgentEvent::Raw { source: Some("worker".into()), data: serde_json::Value::String(line) },
            e => e,
        };
        if let Err(e) = bus.append(id, event).await {
            tracing::error!(job_id = %id, "dropping worker event: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        NewJob::parse(&serde_json::json!({"prompt": "p", "timeoutSeconds": 7})).unwrap().into_job(OffsetDateTime::now_utc())
    }

    #[test]
    fn outcomes() {
        let j = job();
        assert_eq!(outcome(&j, None, &WorkerExit::Exited(0)).to, Some(JobStatus::Succeeded));
        let f = outcome(&j, None, &WorkerExit::Exited(3));
        assert_eq!((f.to, f.exit_code, f.reason.as_deref()), (Some(JobStatus::Failed), Some(3), Some("worker exited with status 3")));
        let k = outcome(&j, None, &WorkerExit::Signaled(9));
        assert_eq!(k.reason.as_deref(), Some("worker was killed by signal 9 (SIGKILL)"));
        assert_eq!(outcome(&j, None, &WorkerExit::Exited(124)).to, Some(JobStatus::TimedOut));
        assert_eq!(outcome(&j, Some(KillReason::Cancelled), &WorkerExit::Exited(143)).to, Some(JobStatus::Cancelled));
        assert_eq!(outcome(&j, Some(KillReason::TimedOut), &WorkerExit::Signaled(9)).to, Some(JobStatus::TimedOut));
        let class = |exit: WorkerExit| outcome(&j, None, &exit).class;
        assert_eq!(class(WorkerExit::Exited(1)), Some(FailureClass::Agent));
        assert_eq!(class(WorkerExit::Exited(42)), Some(FailureClass::Agent));
        assert_eq!(class(WorkerExit::Exited(3)), Some(FailureClass::Infrastructure));
        assert_eq!(class(WorkerExit::Signaled(9)), Some(FailureClass::Infrastructure));
        assert_eq!(class(WorkerExit::Lost("gone".into())), Some(FailureClass::Infrastructure));
        assert_eq!(class(WorkerExit::OutOfMemory { limit_mb: Some(64) }), Some(FailureClass::Limit));
    }
}
