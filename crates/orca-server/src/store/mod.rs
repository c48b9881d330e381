//! The job store port: where jobs live between requests and across restarts.
//!
//! Adapters: [`sqlite::SqliteJobStore`] (embedded). Every adapter passes the same conformance
//! suite (`tests/store_conformance.rs`).
//!
//! **Invariant:** a stored job only changes through [`JobStore::update_if_status`] or
//! [`JobStore::claim_next`], both compare-and-set on the status, with the new job computed by
//! the domain state machine (`Job::transition`). Two writers can never both win one transition.

pub mod sqlite;

use async_trait::async_trait;
use orca_core::{Job, JobFilter, JobId, JobPage, JobStatus};
use time::OffsetDateTime;

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

    /// Atomically moves the oldest queued job to `scheduled` and returns it.
    async fn claim_next(&self, now: OffsetDateTime) -> Result<Option<Job>, StoreError>;

    /// Jobs in `scheduled` or `running`, for reconciliation at start-up.
    async fn active(&self) -> Result<Vec<Job>, StoreError>;

    /// A cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;
}
