//! The event bus port: each job's ordered, persisted event stream with live fan-out.
//!
//! Adapters: [`embedded::EmbeddedEventLog`] (SQLite + in-process broadcast) and
//! [`redis::RedisEventBus`] (Redis Streams, shared by several backend instances and written to
//! by workers directly). Every adapter passes the same conformance suite
//! (`tests/bus_conformance.rs`).
//!
//! **Invariant:** per job, ids are 1, 2, 3, ... in append order; [`EventBus::subscribe`]
//! yields every event after `after` exactly once, in order, replay first and live after,
//! and ends after the terminal status event.

pub mod embedded;
mod follow;
pub mod redis;

use async_trait::async_trait;
use futures::stream::BoxStream;
use orca_core::{AgentEvent, EventId, EventRecord, JobId};

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    #[error("event log data is corrupt: {0}")]
    Corrupt(String),
}

/// A job's events: stored history first, then live, ending after the terminal status event.
pub type EventStream = BoxStream<'static, Result<EventRecord, BusError>>;

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// A short name for health reports: `embedded`, `redis`.
    fn kind(&self) -> &'static str;

    /// Appends one event, assigning the job's next id and the timestamp.
    async fn append(&self, job: JobId, event: AgentEvent) -> Result<EventRecord, BusError>;

    /// Appends `event` as the job's first event (id 1) if the job has none yet; `None` if it
    /// already has events (nothing is written). Of several concurrent callers, one appends.
    /// Used for `queued`, which the submitter announces after answering and whoever moves the
    /// job out of the queue writes first if the announcement has not landed yet.
    async fn append_first(&self, job: JobId, event: AgentEvent) -> Result<Option<EventRecord>, BusError>;

    /// [`EventBus::append_first`] for many jobs at once (an adapter may send them together).
    async fn append_first_many(&self, items: &[(JobId, AgentEvent)]) -> Result<(), BusError> {
        let all = futures::future::join_all(items.iter().map(|(job, event)| self.append_first(*job, event.clone()))).await;
        all.into_iter().find_map(Result::err).map_or(Ok(()), Err)
    }

    /// Stored events with id > `after`, at most `limit`, in order.
    async fn read(&self, job: JobId, after: EventId, limit: usize) -> Result<Vec<EventRecord>, BusError>;

    /// The job's last stored event, if any.
    async fn last(&self, job: JobId) -> Result<Option<EventRecord>, BusError>;

    /// Every event with id > `after`: history, then live, with no gap and no duplicate.
    async fn subscribe(&self, job: JobId, after: EventId) -> Result<EventStream, BusError>;

    /// A cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), BusError>;
}
