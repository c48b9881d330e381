//! The job store port: where jobs live between requests and across restarts.
//!
//! Adapters: [`sqlite::SqliteJobStore`] (embedded) and [`postgres::PgJobStore`] (shared by
//! several backend instances). Every adapter passes the same conformance suite
//! (`tests/store_conformance.rs`).
//!
//! **Invariant:** a stored job only changes through [`JobStore::update_if_status`] or
//! [`JobStore::claim_next`], both compare-and-set on the status, with the new job computed by
//! the domain state machine (`Job::transition`). Two writers can never both win one transition.
//!
//! **Leases.** Besides the job itself the store keeps who is responsible for it: a claimed job
//! gets an `owner` (a backend instance id) and a `lease_until`. The owner renews the lease with
//! [`JobStore::heartbeat`] while it supervises the job and gives it up with
//! [`JobStore::release`] once the job's terminal event is written. A lease that ran out means
//! its owner died: [`JobStore::reclaim_expired`] hands such jobs to another instance, which
//! finishes what the dead one left (requeue, fail, or write the missing terminal event).
//! **Invariant:** a job in `scheduled` or `running` always has an owner.

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use orca_core::{Job, JobFilter, JobId, JobPage, JobStatus};
use time::OffsetDateTime;

/// Who takes a lease, when, and until when.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTerms<'a> {
    /// The backend instance id (`ORCA_INSTANCE_ID`).
    pub owner: &'a str,
    /// Leases that ended before this instant have expired.
    pub now: OffsetDateTime,
    /// The new lease's end.
    pub until: OffsetDateTime,
    /// Skip queued jobs whose repository already has this many jobs scheduled or running
    /// (ORCA_MAX_JOBS_PER_REPO; `None`: no limit). Jobs without a repository are not limited.
    pub max_per_repo: Option<u32>,
}

/// A job's current lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until: OffsetDateTime,
}

/// A job taken over from an instance whose lease ran out.
#[derive(Debug, Clone)]
pub struct Reclaimed {
    pub job: Job,
    pub previous_owner: String,
}

/// A failure of the storage itself (not of the request).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store unavailable: {0}")]
    Unavailable(String),
    #[error("job store data is corrupt: {0}")]
    Corrupt(String),
    #[error("job {0} already exists")]
    Duplicate(JobId),
}

#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// A short name for health reports: `sqlite`, `postgres`.
    fn kind(&self) -> &'static str;

    /// Stores a new job (secrets included). Fails with `Duplicate` if the id exists.
    async fn insert(&self, job: &Job) -> Result<(), StoreError>;

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// One page, newest first (createdAt desc, then id desc), plus the total matching count.
    async fn list(&self, filter: &JobFilter) -> Result<JobPage, StoreError>;

    /// Replaces `job` if its stored status is still `expected`; `false` if someone moved it first.
    async fn update_if_status(&self, job: &Job, expected: JobStatus) -> Result<bool, StoreError>;

    /// Like [`JobStore::update_if_status`], and only while `owner` holds the job's lease: a
    /// supervisor whose claim was taken over can never move the new owner's job.
    async fn update_if_owned(&self, job: &Job, expected: JobStatus, owner: &str) -> Result<bool, StoreError>;

    /// Like [`JobStore::update_if_status`] for a job nobody holds (a queued one), leasing it to
    /// `terms.owner` until `terms.until` in the same statement. For a move whose events are
    /// written after it (cancelling a queued job): if the process dies in between, the lease
    /// expires and the reaper writes what is missing.
    async fn update_and_lease(&self, job: &Job, expected: JobStatus, terms: &LeaseTerms<'_>) -> Result<bool, StoreError>;

    /// Atomically moves the oldest queued job that nobody holds to `scheduled`, leased to
    /// `terms.owner` until `terms.until`, and returns it. Under any number of concurrent
    /// claimers a job is claimed once. A queued job with a lease (being requeued, or taken
    /// over) waits until its holder releases it, so a late release never undoes a new claim.
    async fn claim_next(&self, terms: &LeaseTerms<'_>) -> Result<Option<Job>, StoreError>;

    /// Extends the leases `terms.owner` holds on `ids` to `terms.until`; returns the ids it
    /// still holds (a missing id was taken over by another instance).
    async fn heartbeat(&self, terms: &LeaseTerms<'_>, ids: &[JobId]) -> Result<Vec<JobId>, StoreError>;

    /// Takes over (at most `limit`) jobs whose lease ended before `terms.now`, leasing them to
    /// `terms.owner`; each is returned once to one caller, with the owner it had.
    async fn reclaim_expired(&self, terms: &LeaseTerms<'_>, limit: u32) -> Result<Vec<Reclaimed>, StoreError>;

    /// Gives up `owner`'s lease on a job; `false` if `owner` did not hold it.
    async fn release(&self, id: JobId, owner: &str) -> Result<bool, StoreError>;

    /// The job's lease, if someone holds one.
    async fn lease(&self, id: JobId) -> Result<Option<Lease>, StoreError>;

    /// The stored status of each of `ids` that exists (one round trip, for cancel polling).
    async fn statuses(&self, ids: &[JobId]) -> Result<Vec<(JobId, JobStatus)>, StoreError>;

    /// How many queued jobs are ahead of `job` in the queue (claim order: `createdAt`, then id);
    /// one indexed count, however long the queue.
    async fn queued_before(&self, job: &Job) -> Result<u64, StoreError>;

    /// Jobs in `scheduled` or `running`, for reconciliation at start-up.
    async fn active(&self) -> Result<Vec<Job>, StoreError>;

    /// A cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;
}
