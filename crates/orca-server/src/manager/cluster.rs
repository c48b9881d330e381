//! Several backend instances on one store: leases, heartbeats, the reaper, cancel polling.
//!
//! Every instance has an id (`ORCA_INSTANCE_ID`). Claiming a job leases it to the instance
//! (see [`crate::store`]); one loop per instance then, every [`POLL`]:
//! - reads the stored status of the jobs it supervises and stops the worker of any job that
//!   became terminal elsewhere (a cancel through another instance), so cancel works from any
//!   instance within about half a second;
//! - every third of the lease, renews its leases (one `heartbeat` for all its jobs) and stops
//!   the workers of jobs whose lease it lost;
//! - runs the reaper: jobs whose lease ran out belonged to an instance that died. A job still
//!   `scheduled` goes back to `queued` (the legal `scheduled → queued` edge) and runs again; a
//!   `running` job is re-adopted when the scheduler can find its worker, else it fails with
//!   "worker lost: instance X stopped heartbeating"; a job already terminal (cancelled while
//!   its owner was dead) gets its missing terminal event.
//!
//! The reaper runs only after this instance itself has been in touch with the store for a whole
//! lease (a heartbeat that failed, or that only got through after retrying through an outage,
//! starts the count again): after an outage of the database every live instance renews its
//! leases within a third of a lease, so nobody mistakes a live instance for a dead one. With the embedded store the
//! instance is alone by construction: at start-up every lease left behind is expired at once.
//!
//! A new job is stored and its `queued` event appended at once ([`JobManager::enqueue`]); the
//! supervisor of a claimed job waits (bounded) for that event before writing `scheduled`, so
//! `queued` is always a job's first event whichever instance claims it.
//!
//! **Invariant:** the owner of a job writes its terminal event and then releases the lease; an
//! instance that finds the job taken over leaves both to the new owner.

use super::{JobManager, ManagerError};
use crate::store::{LeaseTerms, Reclaimed};
use orca_core::{AgentEvent, JobId, JobStatus, StatusChange};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// How often the stored status of supervised jobs is checked (cancel latency across instances).
pub const POLL: Duration = Duration::from_millis(500);
/// Jobs taken over per reaper pass.
const RECLAIM_BATCH: u32 = 100;

/// How this instance shares the store with others.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This instance's id, recorded as the owner of the jobs it claims.
    pub instance_id: String,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// The store belongs to this instance alone (embedded SQLite): leases left by an earlier
    /// process are reclaimed at start-up without waiting for them to run out.
    pub exclusive_store: bool,
}

impl ClusterConfig {
    /// `<host>-<pid>-<random>`: unique per process, even for pid 1 in containers.
    pub fn default_instance_id() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "orca".into());
        let random = uuid::Uuid::now_v7().simple().to_string();
        format!("{host}-{}-{}", std::process::id(), &random[random.len() - 6..])
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { instance_id: Self::default_instance_id(), lease: Duration::from_secs(30), exclusive_store: true }
    }
}

/// What the cluster loop remembers between ticks.
#[derive(Debug, Default)]
pub(super) struct ClusterState {
    /// Since when every round trip to the store succeeded (None: not in touch now).
    connected_since: Mutex<Option<Instant>>,
}

impl JobManager {
    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.config.cluster.instance_id
    }

    /// A lease for this instance from now on.
    pub(super) fn lease_terms(&self) -> LeaseTerms<'_> {
        let now = OffsetDateTime::now_utc();
        LeaseTerms { owner: self.instance_id(), now, until: now + self.config.cluster.lease, max_per_repo: self.config.max_jobs_per_repo }
    }

    /// Whether this instance still holds the job's lease.
    pub(super) async fn owns(&self, id: JobId) -> Result<bool, ManagerError> {
        Ok(self.store.lease(id).await?.is_some_and(|l| l.owner == self.instance_id()))
    }

    /// Gives up this instance's lease (the job's terminal event is written).
    pub(super) async fn release(&self, id: JobId) {
        if let Err(e) = self.store.release(id, self.instance_id()).await {
            tracing::warn!(job_id = %id, "cannot release the job's lease (it will expire): {e}");
        }
    }

    fn supervised_ids(&self) -> Vec<JobId> {
        self.supervised.lock().expect("poisoned").keys().copied().collect()
    }

    /// Stops the worker of a supervised job; with `lost` (another instance took the job over),
    /// also stops writing its events.
    fn stop_supervised(&self, id: JobId, lost: bool) {
        if let Some(s) = self.supervised.lock().expect("poisoned").get(&id) {
            if lost {
                s.lost.cancel();
            }
            s.cancel.cancel();
        }
    }

    /// Heartbeats, cancel polling and the reaper, until shutdown (see the module doc).
    pub(super) async fn cluster_loop(self: Arc<Self>) {
        let lease = self.config.cluster.lease;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let ids = self.supervised_ids();
            if !ids.is_empty() {
                match self.store.statuses(&ids).await {
                    Ok(statuses) => {
                        for (id, status) in statuses.into_iter().filter(|(_, s)| s.is_terminal()) {
                            tracing::info!(job_id = %id, %status, "job ended elsewhere (e.g. cancelled through another instance); stopping its worker");
                            self.stop_supervised(id, false);
                        }
                    }
                    Err(e) => tracing::warn!("cannot poll job statuses: {e}"),
                }
            }
            if last_beat.is_some_and(|t| t.elapsed() < lease / 3) {
                continue;
            }
            let started = Instant::now();
            last_beat = Some(started);
            let beat = if ids.is_empty() { self.store.ping().await.map(|()| vec![]) } else { self.store.heartbeat(&self.lease_terms(), &ids).await };
            match beat {
                Ok(kept) => {
                    {
                        let mut since = self.cluster.connected_since.lock().expect("poisoned");
                        if started.elapsed() > lease / 3 {
                            // The store answered only after retrying through an outage: others
                            // may not have renewed their leases yet either; count again.
                            *since = Some(Instant::now());
                        } else {
                            since.get_or_insert_with(Instant::now);
                        }
                    }
                    let kept: HashSet<JobId> = kept.into_iter().collect();
                    for id in ids.iter().filter(|id| !kept.contains(id)) {
                        // Usually the job just ended (and its lease was released); stop the
                        // worker only if another instance holds the lease now, or the reaper
                        // put the job back in the queue.
                        let holder = self.store.lease(*id).await.ok().flatten().map(|l| l.owner);
                        let requeued = matches!(self.store.get(*id).await, Ok(Some(j)) if j.status == JobStatus::Queued);
                        if requeued || holder.as_deref().is_some_and(|h| h != self.instance_id()) {
                            tracing::warn!(job_id = %id, holder = ?holder, "lost the job's lease to another instance; stopping its worker");
                            self.stop_supervised(*id, true);
                        }
                    }
                }
                Err(e) => {
                    *self.cluster.connected_since.lock().expect("poisoned") = None;
                    tracing::warn!("cannot renew leases: {e}");
                }
            }
            let in_touch = self.cluster.connected_since.lock().expect("poisoned").is_some_and(|t| t.elapsed() >= lease);
            if in_touch {
                if let Err(e) = self.reclaim(false).await {
                    tracing::warn!("reaper: {e}");
                }
            }
        }
    }

    /// Takes over the jobs of instances that stopped heartbeating. At start-up on an exclusive
    /// store, every lease left behind counts as expired.
    pub(super) async fn reclaim(self: &Arc<Self>, at_start: bool) -> Result<(), ManagerError> {
        let exclusive_start = at_start && self.config.cluster.exclusive_store;
        loop {
            let mut terms = self.lease_terms();
            if exclusive_start {
                terms.now = OffsetDateTime::now_utc() + Duration::from_secs(100 * 365 * 24 * 3600);
            }
            let batch = self.store.reclaim_expired(&terms, RECLAIM_BATCH).await?;
            let n = batch.len();
            for r in batch {
                let id = r.job.id;
                if let Err(e) = self.take_over(r, exclusive_start).await {
                    tracing::error!(job_id = %id, "cannot take the job over: {e}");
                }
            }
            if n < RECLAIM_BATCH as usize {
                return Ok(());
            }
        }
    }

    async fn take_over(self: &Arc<Self>, r: Reclaimed, restarted: bool) -> Result<(), ManagerError> {
        let Reclaimed { job, previous_owner } = r;
        let id = job.id;
        if previous_owner == self.instance_id() && self.supervised.lock().expect("poisoned").contains_key(&id) {
            return Ok(()); // our own job, whose lease we just renewed
        }
        let why = if restarted {
            "the backend restarted while the job was active".to_owned()
        } else {
            format!("instance {previous_owner} stopped heartbeating")
        };
        tracing::warn!(job_id = %id, status = %job.status, %previous_owner, "taking over the job: {why}");
        match job.status {
            JobStatus::Queued => self.release(id).await,
            JobStatus::Scheduled | JobStatus::Running => match self.scheduler.adopt(&job).await {
                Ok(Some(worker)) => {
                    tracing::info!(job_id = %id, "re-adopted the job's worker");
                    self.clone().spawn_supervisor(job, Some(worker));
                }
                Ok(None) | Err(_) if job.status == JobStatus::Scheduled => {
                    let queued = job.transition(&StatusChange::to(JobStatus::Queued), OffsetDateTime::now_utc()).expect("scheduled → queued");
                    if self.store.update_if_status(&queued, JobStatus::Scheduled).await? {
                        self.bus.append(id, AgentEvent::status(JobStatus::Queued, Some(format!("requeued: {why}")), None)).await?;
                        self.release(id).await;
                        self.wake.notify_one();
                    } else {
                        // Moved meanwhile (cancelled): finish it as stored.
                        self.finish(id, StatusChange::to(JobStatus::Failed).with_reason(format!("worker lost: {why}"))).await?;
                    }
                }
                Ok(None) | Err(_) => {
                    self.finish(id, StatusChange::to(JobStatus::Failed).with_reason(format!("worker lost: {why}"))).await?;
                }
            },
            _ => {
                // Terminal while its owner was dead: write the events the owner did not (a job
                // cancelled while queued may lack even its `queued` event).
                self.announce_queued(&job).await?;
                let last = self.bus.last(id).await?;
                if !last.is_some_and(|e| e.event.is_terminal()) {
                    self.bus.append(id, AgentEvent::status(job.status, job.failure_reason.clone(), job.exit_code)).await?;
                }
                self.notify(&job).await; // webhooks are sent once per (job, event) however often asked
                self.release(id).await;
            }
        }
        Ok(())
    }
}
