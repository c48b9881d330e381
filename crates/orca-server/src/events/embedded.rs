//! The embedded event log: events persisted in `events.db` (SQLite, WAL) and fanned out live
//! through one `tokio::sync::broadcast` channel per job.
//!
//! Appends for one job are serialized by that job's lock: the id is assigned, the row is
//! written, then the record is broadcast, all under the lock. A subscriber first subscribes
//! to the channel, then replays stored rows, then takes live records, skipping ids it has
//! already sent. A record is always stored before it is broadcast, so the replay and the live
//! part overlap but never leave a gap. A subscriber that lags behind the channel's buffer
//! falls back to reading the rows it missed.

use super::follow::{OnClose, replay_then_live};
use super::{BusError, EventBus, EventStream};
use async_trait::async_trait;
use orca_core::{AgentEvent, EVENT_SCHEMA_VERSION, EventId, EventRecord, JobId};
use sqlx::{Row, SqlitePool};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex};
use time::OffsetDateTime;
use tokio::sync::{Mutex, broadcast};

/// Live records buffered per job before a slow subscriber must re-read from disk.
const CHANNEL_CAPACITY: usize = 1024;

struct JobChannel {
    /// Last id written, or `None` before it was loaded from disk.
    last_id: Mutex<Option<EventId>>,
    tx: broadcast::Sender<EventRecord>,
}

pub struct EmbeddedEventLog {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    channels: StdMutex<HashMap<JobId, Arc<JobChannel>>>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl EmbeddedEventLog {
    pub async fn open(path: &Path) -> Result<Self, BusError> {
        let pool = crate::store::sqlite::open_pool(path).await.map_err(unavailable)?;
        sqlx::migrate!("./migrations/sqlite-events").run(&pool).await.map_err(|e| unavailable(format!("migration failed: {e}")))?;
        Ok(Self { inner: Arc::new(Inner { pool, channels: StdMutex::new(HashMap::new()) }) })
    }
}

impl Inner {
    fn channel(&self, job: JobId) -> Arc<JobChannel> {
        let mut map = self.channels.lock().expect("channel map poisoned");
        map.entry(job)
            .or_insert_with(|| Arc::new(JobChannel { last_id: Mutex::new(None), tx: broadcast::channel(CHANNEL_CAPACITY).0 }))
            .clone()
    }

    /// Drops a job's channel once its stream ended and nobody listens, so the map stays small.
    /// The next append or subscribe recreates it (reloading the last id from disk).
    fn release(&self, job: JobId) {
        let mut map = self.channels.lock().expect("channel map poisoned");
        if map.get(&job).is_some_and(|c| c.tx.receiver_count() == 0 && Arc::strong_count(c) == 1) {
            map.remove(&job);
        }
    }

    async fn last(&self, job: JobId) -> Result<Option<EventRecord>, BusError> {
        let row = sqlx::query("SELECT id, ts, body FROM events WHERE job_id = ? ORDER BY id DESC LIMIT 1")
            .bind(job.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(|r| decode(job, r)).transpose()
    }

    async fn read(&self, job: JobId, after: EventId, limit: usize) -> Result<Vec<EventRecord>, BusError> {
        let rows = sqlx::query("SELECT id, ts, body FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?")
            .bind(job.to_string())
            .bind(after as i64)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(|r| decode(job, r)).collect()
    }
}

fn decode(job: JobId, row: &sqlx::sqlite::SqliteRow) -> Result<EventRecord, BusError> {
    let id: i64 = row.get("id");
    let ts: i64 = row.get("ts");
    let body: String = row.get("body");
    let event: AgentEvent = serde_json::from_str(&body).map_err(|e| BusError::Corrupt(e.to_string()))?;
    let timestamp = OffsetDateTime::from_unix_timestamp_nanos(ts as i128 * 1000).map_err(|e| BusError::Corrupt(e.to_string()))?;
    Ok(EventRecord { id: id as EventId, job_id: job, timestamp, v: EVENT_SCHEMA_VERSION, event })
}

impl EmbeddedEventLog {
    /// Appends `event` as the job's next (with `only_first`: first, if none exists) event.
    async fn append_as(&self, job: JobId, event: AgentEvent, only_first: bool) -> Result<Option<EventRecord>, BusError> {
        let inner = &self.inner;
        let ch = inner.channel(job);
        let mut last = ch.last_id.lock().await;
        let prev = match *last {
            Some(id) => id,
            None => {
                let max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events WHERE job_id = ?")
                    .bind(job.to_string())
                    .fetch_one(&inner.pool)
                    .await
                    .map_err(unavailable)?;
                max.unwrap_or(0) as EventId
            }
        };
        if only_first && prev > 0 {
            *last = Some(prev);
            drop(last);
            drop(ch);
            inner.release(job); // unless someone follows the job, as if this call never came
            return Ok(None);
        }
        // Stored with microsecond precision; live copies must carry the very same value.
        let now = OffsetDateTime::now_utc();
        let timestamp = now.replace_nanosecond(now.nanosecond() / 1000 * 1000).expect("valid nanosecond");
        let record = EventRecord { id: prev + 1, job_id: job, timestamp, v: EVENT_SCHEMA_VERSION, event };
        let body = serde_json::to_string(&record.event).map_err(|e| BusError::Corrupt(e.to_string()))?;
        sqlx::query("INSERT INTO events (job_id, id, ts, body) VALUES (?, ?, ?, ?)")
            .bind(job.to_string())
            .bind(record.id as i64)
            .bind((record.timestamp.unix_timestamp_nanos() / 1000) as i64)
            .bind(body)
            .execute(&inner.pool)
            .await
            .map_err(unavailable)?;
        *last = Some(record.id);
        let terminal = record.event.is_terminal();
        let _ = ch.tx.send(record.clone()); // no receivers is fine
        drop(last);
        drop(ch);
        if terminal {
            inner.release(job);
        }
        Ok(Some(record))
    }
}

#[async_trait]
impl EventBus for EmbeddedEventLog {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn append(&self, job: JobId, event: AgentEvent) -> Result<EventRecord, BusError> {
        Ok(self.append_as(job, event, false).await?.expect("an unconditional append appends"))
    }

    async fn append_first(&self, job: JobId, event: AgentEvent) -> Result<Option<EventRecord>, BusError> {
        self.append_as(job, event, true).await
    }

    async fn read(&self, job: JobId, after: EventId, limit: usize) -> Result<Vec<EventRecord>, BusError> {
        self.inner.read(job, after, limit).await
    }

    async fn last(&self, job: JobId) -> Result<Option<EventRecord>, BusError> {
        self.inner.last(job).await
    }

    async fn subscribe(&self, job: JobId, after: EventId) -> Result<EventStream, BusError> {
        let rx = self.inner.channel(job).tx.subscribe();
        Ok(Box::pin(follow(self.inner.clone(), job, after, rx)))
    }

    async fn ping(&self) -> Result<(), BusError> {
        sqlx::query("SELECT 1").execute(&self.inner.pool).await.map(|_| ()).map_err(unavailable)
    }
}

/// Releases the job's channel when the subscriber's stream is dropped or ends.
struct Release(Arc<Inner>, JobId, Option<broadcast::Receiver<EventRecord>>);
impl Drop for Release {
    fn drop(&mut self) {
        drop(self.2.take());
        self.0.release(self.1);
    }
}

/// Replay then live, as described in the module doc.
fn follow(
    inner: Arc<Inner>,
    job: JobId,
    after: EventId,
    rx: broadcast::Receiver<EventRecord>,
) -> impl futures::Stream<Item = Result<EventRecord, BusError>> + Send + 'static {
    async_stream::try_stream! {
        let mut guard = Release(inner.clone(), job, Some(rx));
        // A finished job's stream has nothing after its terminal event: end at once.
        if let Some(last) = inner.last(job).await? {
            if last.event.is_terminal() && last.id <= after {
                return;
            }
        }
        let store: &Inner = &inner;
        let events = replay_then_live(move |from, n| store.read(job, from, n), after, guard.2.as_mut(), OnClose::End);
        futures::pin_mut!(events);
        while let Some(rec) = futures::StreamExt::next(&mut events).await {
            yield rec?;
        }
    }
}
