//! Follows one job's Kubernetes Job and pod by watching them (never polling) and decides how
//! the worker ended.
//!
//! Two `kube::runtime::watcher` streams, both selected by the label `orca.dev/job-id=<id>`,
//! feed a [`Tracker`]; [`Tracker::verdict`] turns what it has seen into one [`WorkerExit`]:
//!
//! | Kubernetes reports | exit |
//! |---|---|
//! | container terminated, reason `OOMKilled` | `OutOfMemory` |
//! | container terminated with a code | `Exited(code)` (or `Signaled` when the runtime names one) |
//! | container waiting: `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`, `ErrImageNeverPull` | `Failed("cannot pull the worker image …")`, and the Job is deleted |
//! | Job condition `Failed`/`FailureTarget` with reason `DeadlineExceeded` | `DeadlineExceeded` |
//! | pod phase `Failed` without a container end (e.g. evicted) | `Failed("the worker pod failed …")` |
//! | Job `Complete` | the container's exit, else (after [`SETTLE`]) `Exited(0)` |
//! | Job deleted (or absent) before any of the above | `Lost` |
//!
//! A container end is confirmed by the Job's own condition (which names a deadline that killed
//! the container) or, failing that, after [`SETTLE`]. Once decided, the exit is sent, the job's
//! Secret is deleted (the owner reference is the safety net) and the watches end.

use super::objects::{object_name, selector};
use super::{CONTAINER, Settings, delete_job};
use crate::scheduler::WorkerExit;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod, Secret};
use kube::api::{Api, DeleteParams};
use kube::runtime::{WatchStreamExt, watcher};
use orca_core::JobId;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch as channel;
use tokio_util::sync::CancellationToken;

/// How long a container's end waits for the Job's condition before it is taken as final.
pub const SETTLE: Duration = Duration::from_secs(5);
/// Waiting reasons that mean the worker image cannot be pulled.
pub const IMAGE_PULL_FAILURES: &[&str] = &["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"];

/// What one job's watch needs.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub settings: Arc<Settings>,
    pub id: JobId,
    /// The job's memory limit, for the out-of-memory reason.
    pub memory_mb: u32,
    /// Cancelled when the backend lets go of the worker (it keeps running for the next one).
    pub detached: CancellationToken,
    /// Timestamp of the last log line handed on (the resume point after a detach).
    pub cursor: Arc<Mutex<Option<k8s_openapi::jiff::Timestamp>>>,
}

/// Records the worker's exit unless one is already recorded; true if this call recorded it.
pub fn settle(tx: &channel::Sender<Option<WorkerExit>>, exit: WorkerExit) -> bool {
    tx.send_if_modified(|cur| {
        if cur.is_some() {
            return false;
        }
        *cur = Some(exit);
        true
    })
}

/// How the Job object says it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JobEnd {
    Complete,
    Failed { reason: String, message: String },
}

/// Everything seen so far of one job's Job and pod.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The pod whose worker container has started (its log can be read).
    pub started_pod: Option<String>,
    container_end: Option<WorkerExit>,
    /// A failure waiting will not cure (the image cannot be pulled).
    fatal: Option<WorkerExit>,
    job_end: Option<JobEnd>,
    job_gone: bool,
    job_name: String,
}

/// The decision on a job: its exit, and whether the scheduler must delete the Job itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub exit: WorkerExit,
    pub delete_job: bool,
}

impl Tracker {
    pub fn new(id: JobId) -> Self {
        Self { job_name: object_name(id), ..Default::default() }
    }

    /// A pod was added or changed. `memory_mb`: the job's limit, for the out-of-memory reason.
    pub fn on_pod(&mut self, pod: &Pod, settings: &Settings, memory_mb: u32) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(status) = &pod.status else { return };
        let container = status.container_statuses.iter().flatten().find(|c| c.name == CONTAINER);
        if let Some(state) = container.and_then(|c| c.state.as_ref()) {
            if state.running.is_some() {
                self.started_pod.get_or_insert(name.clone());
            }
            if let Some(t) = &state.terminated {
                self.started_pod.get_or_insert(name.clone());
                self.container_end.get_or_insert_with(|| container_exit(t, memory_mb));
            }
            if let Some(w) = &state.waiting {
                let reason = w.reason.as_deref().unwrap_or_default();
                if IMAGE_PULL_FAILURES.contains(&reason) {
                    let message = w.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
                    let why = format!("cannot pull the worker image {} ({reason}{message})", settings.image);
                    self.fatal.get_or_insert(WorkerExit::Failed(why));
                }
            }
        }
        if status.phase.as_deref() == Some("Failed") && self.container_end.is_none() {
            let reason = status.reason.as_deref().unwrap_or("Failed");
            let message = status.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            self.container_end = Some(WorkerExit::Failed(format!("the worker pod {name} failed ({reason}{message})")));
        }
    }

    /// The Job was added or changed.
    pub fn on_job(&mut self, job: &Job) {
        let conditions = job.status.iter().flat_map(|s| s.conditions.iter().flatten()).filter(|c| c.status == "True");
        for c in conditions {
            let end = match c.type_.as_str() {
                "Complete" | "SuccessCriteriaMet" => JobEnd::Complete,
                "Failed" | "FailureTarget" => JobEnd::Failed {
                    reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
                    message: c.message.clone().unwrap_or_default(),
                },
                _ => continue,
            };
            self.job_end.get_or_insert(end);
        }
    }

    /// The Job was deleted, or a fresh list does not contain it.
    pub fn on_job_gone(&mut self) {
        self.job_gone = true;
    }

    /// The exit, if what was seen decides it. `settled`: [`SETTLE`] has passed since a container
    /// end or a Job failure was seen, so stop waiting for the other half.
    pub fn verdict(&self, settled: bool) -> Option<Verdict> {
        let exit = |exit: WorkerExit| Some(Verdict { exit, delete_job: false });
        if let Some(f) = &self.fatal {
            return Some(Verdict { exit: f.clone(), delete_job: true });
        }
        match (&self.job_end, &self.container_end) {
            (Some(JobEnd::Failed { reason, .. }), _) if reason == "DeadlineExceeded" => exit(WorkerExit::DeadlineExceeded),
            (Some(_), Some(end)) => exit(end.clone()),
            (_, Some(end)) if self.job_gone || settled => exit(end.clone()),
            // The pod's own report may trail the Job's (and the log needs the pod's name).
            (Some(JobEnd::Complete), None) if self.job_gone || settled => exit(WorkerExit::Exited(0)),
            (Some(JobEnd::Failed { reason, message }), None) if self.job_gone || settled => {
                let message = if message.is_empty() { String::new() } else { format!(": {message}") };
                exit(WorkerExit::Failed(format!("the Kubernetes Job {} failed ({reason}{message})", self.job_name)))
            }
            (None, None) if self.job_gone => {
                exit(WorkerExit::Lost(format!("the Kubernetes Job {} was deleted before the worker ended", self.job_name)))
            }
            _ => None,
        }
    }
}

/// Exit codes above 128 the worker itself uses after SIGINT, SIGPIPE or SIGTERM (as Docker).
const WORKER_SIGNAL_CODES: [i32; 3] = [130, 141, 143];

/// The exit a terminated worker container reports (the same reading as the Docker scheduler's:
/// 128+N is signal N unless the worker exits with that code itself).
fn container_exit(t: &ContainerStateTerminated, memory_mb: u32) -> WorkerExit {
    match (t.reason.as_deref(), t.signal, t.exit_code) {
        (Some("OOMKilled"), _, _) => WorkerExit::OutOfMemory { limit_mb: Some(u64::from(memory_mb)) },
        (_, Some(sig), _) if sig > 0 => WorkerExit::Signaled(sig),
        (_, _, c) if c > 128 && c <= 128 + 64 && !WORKER_SIGNAL_CODES.contains(&c) => WorkerExit::Signaled(c - 128),
        (_, _, c) => WorkerExit::Exited(c),
    }
}

/// Watches the job until its exit is decided, then cleans up. `ready` gets the pod name once
/// the worker container has started.
pub async fn run(ctx: Context, ready: channel::Sender<Option<String>>, exit: Arc<channel::Sender<Option<WorkerExit>>>) {
    let ns = &ctx.settings.namespace;
    let config = watcher::Config::default().labels(&selector(ctx.id));
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let mut job_events = watcher(jobs.clone(), config.clone()).default_backoff().boxed();
    let mut pod_events = watcher(pods, config).default_backoff().boxed();
    let mut tracker = Tracker::new(ctx.id);
    let mut job_listed = false;
    let mut pods_open = true;
    let mut settle_at: Option<tokio::time::Instant> = None;
    let verdict = loop {
        if exit.borrow().is_some() {
            break None; // decided elsewhere (stop gave up waiting)
        }
        let settled = settle_at.is_some_and(|t| tokio::time::Instant::now() >= t);
        if let Some(v) = tracker.verdict(settled) {
            break Some(v);
        }
        if settle_at.is_none() && tracker.verdict(true).is_some() {
            settle_at = Some(tokio::time::Instant::now() + SETTLE);
        }
        let settle_sleep = async {
            match settle_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let mut exit_rx = exit.subscribe();
        tokio::select! {
            ev = job_events.try_next() => match ev {
                Ok(Some(watcher::Event::Init)) => job_listed = false,
                Ok(Some(watcher::Event::InitApply(j) | watcher::Event::Apply(j))) => {
                    job_listed = true;
                    tracker.on_job(&j);
                }
                Ok(Some(watcher::Event::InitDone)) if !job_listed => tracker.on_job_gone(),
                Ok(Some(watcher::Event::InitDone)) => {}
                Ok(Some(watcher::Event::Delete(_))) => tracker.on_job_gone(),
                Ok(None) => tracker.on_job_gone(),
                Err(e) => tracing::warn!(job_id = %ctx.id, "watching the Kubernetes Job: {e}"),
            },
            ev = pod_events.try_next(), if pods_open => match ev {
                Ok(Some(watcher::Event::InitApply(p) | watcher::Event::Apply(p))) => {
                    tracker.on_pod(&p, &ctx.settings, ctx.memory_mb);
                    if let Some(name) = &tracker.started_pod
                        && ready.borrow().is_none()
                    {
                        let _ = ready.send(Some(name.clone()));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => pods_open = false,
                Err(e) => tracing::warn!(job_id = %ctx.id, "watching the worker pod: {e}"),
            },
            _ = settle_sleep => {}
            _ = exit_rx.wait_for(Option::is_some) => {}
            _ = ctx.detached.cancelled() => return, // the worker runs on; its Secret stays
        }
    };
    drop((job_events, ready));
    if let Some(v) = verdict {
        tracing::debug!(job_id = %ctx.id, exit = %v.exit, "Kubernetes reported the worker's end");
        settle(&exit, v.exit);
        if v.delete_job
            && let Err(e) = delete_job(&jobs, &object_name(ctx.id), DeleteParams::background()).await
        {
            tracing::warn!(job_id = %ctx.id, "cannot delete the failed Kubernetes Job: {e}");
        }
    }
    delete_secret(&ctx).await;
}

/// Deletes the job's Secret as soon as the worker is done (it is also owned by the Job).
async fn delete_secret(ctx: &Context) {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    match secrets.delete(&object_name(ctx.id), &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::warn!(job_id = %ctx.id, "cannot delete the job's Secret (its Job owns it): {e}"),
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
