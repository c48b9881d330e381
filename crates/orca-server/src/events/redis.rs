//! The Redis Streams event bus: one stream per job, shared by every backend instance and
//! appended to by workers directly.
//!
//! Key layout, entry format and the append script are in [`orca_core::redis_events`]:
//! `<prefix>:job:{<job id>}:events` (a stream whose entry ids are `<n>-0` for event id `n`),
//! `<prefix>:job:{<job id>}:seq` (the id counter) and `<prefix>:job:{<job id>}:writers`
//! (idempotency records). Ids clients see stay 1, 2, 3, … because the script `INCR`s the
//! counter and `XADD`s with that explicit id, whoever appends (backend or worker).
//!
//! - **Append**: one script call (`EVALSHA`, re-loaded after a restart), retried with backoff
//!   while Redis is unreachable. Each append carries (writer id, sequence number); appends of
//!   one writer to one job are serialised, so a retry whose first try did land (reply lost) is
//!   recognised by the script and not written twice.
//! - **Replay**: `XRANGE <after+1> +` in batches.
//! - **Live**: one reader task per job per backend instance ([`feed`]), on its own connection,
//!   with blocking `XREAD` from the last id it saw, fanned out to every subscriber through a
//!   broadcast channel. A subscriber joins the feed *before* replaying, skips ids it already
//!   has, and re-reads with `XRANGE` when it sees a gap (it lagged behind the channel), so the
//!   seam between replay and live has no gap and no duplicate. The reader reconnects with
//!   backoff and resumes from its last id, so a Redis restart loses nothing either.
//! - **Retention**: every append trims the stream to about `ORCA_EVENTS_MAXLEN` entries; the
//!   terminal event sets `ORCA_EVENTS_TTL_SECONDS` on the job's keys.

mod feed;

use super::follow::{OnClose, replay_then_live};
use super::{BusError, EventBus, EventStream};
use crate::config::RedisEvents;
use crate::retry::{backoff, backoff_for, redis_transient};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::streams::{StreamId, StreamRangeReply};
use async_trait::async_trait;
use backon::Retryable;
use orca_core::redis_events::{APPEND_SCRIPT, FIELD_EVENT, FIELD_TIME, JobKeys, entry_id, parse_entry_id};
use orca_core::{AgentEvent, EVENT_SCHEMA_VERSION, EventId, EventRecord, JobId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{Mutex, broadcast};

/// How long start-up waits for Redis to answer.
const CONNECT_BUDGET: Duration = Duration::from_secs(30);
/// Per-job writer records kept in memory before idle ones are dropped.
const WRITERS_KEPT: usize = 1024;

pub struct RedisEventBus {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) settings: RedisEvents,
    conn: ConnectionManager,
    script: ::redis::Script,
    /// This bus's writer id prefix; each job gets `<writer>.<n>` (see [`Writer`]).
    writer: String,
    incarnations: AtomicU64,
    writers: StdMutex<HashMap<JobId, Arc<Mutex<Writer>>>>,
    feeds: feed::Hub,
}

/// This process's appends to one job: one at a time, numbered, under a writer id that is new
/// whenever the record is (re)created, so forgetting an idle record is always safe.
struct Writer {
    id: String,
    seq: u64,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// Environment for a worker that should XADD its events itself, reaching Redis at `url`
/// (which may differ from the backend's own address, e.g. a cluster-internal name): the same
/// key prefix and retention as this backend, so it reads what the worker writes.
pub fn worker_env(settings: &RedisEvents, url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", url.to_owned()),
        ("ORCA_REDIS_PREFIX", settings.prefix.clone()),
        ("ORCA_EVENTS_MAXLEN", settings.maxlen.to_string()),
    ]
}

impl RedisEventBus {
    /// Connects (waiting, bounded, for Redis to answer) and loads the append script.
    pub async fn connect(settings: RedisEvents) -> Result<Self, BusError> {
        let client = ::redis::Client::open(settings.url.expose()).map_err(|e| unavailable(format!("bad REDIS_URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = (|| ConnectionManager::new_with_config(client.clone(), config.clone()))
            .retry(backoff_for(CONNECT_BUDGET))
            .when(redis_transient)
            .notify(|e, d| tracing::warn!("Redis not reachable yet ({e}); retrying in {d:?}"))
            .await
            .map_err(unavailable)?;
        let writer = uuid::Uuid::now_v7().simple().to_string();
        let feeds = feed::Hub::new(client.clone(), settings.prefix.clone());
        let inner = Inner {
            settings,
            conn,
            script: ::redis::Script::new(APPEND_SCRIPT),
            writer,
            incarnations: AtomicU64::new(0),
            writers: StdMutex::new(HashMap::new()),
            feeds,
        };
        Ok(Self { inner: Arc::new(inner) })
    }
}

impl Inner {
    fn keys(&self, job: JobId) -> JobKeys {
        JobKeys::new(&self.settings.prefix, &job.to_string())
    }

    fn writer_for(&self, job: JobId) -> Arc<Mutex<Writer>> {
        let mut map = self.writers.lock().expect("writers poisoned");
        if map.len() >= WRITERS_KEPT {
            // Forget every record no append holds right now (a later append to that job simply
            // starts a new writer id); this runs once per WRITERS_KEPT new jobs at most.
            map.retain(|_, w| Arc::strong_count(w) > 1);
        }
        map.entry(job)
            .or_insert_with(|| {
                let n = self.incarnations.fetch_add(1, Ordering::Relaxed);
                Arc::new(Mutex::new(Writer { id: format!("{}.{n}", self.writer), seq: 0 }))
            })
            .clone()
    }

    fn forget_writer(&self, job: JobId) {
        self.writers.lock().expect("writers poisoned").remove(&job);
    }

    /// Appends each event as its job's first one, if the job has none yet (the script with
    /// `first`), in one pipeline: one write and one read for the whole batch. Returns the
    /// timestamp given to them and, per item, its event id or -1 (the job had events).
    ///
    /// No writer record: a retry whose first attempt landed finds the job no longer empty and
    /// answers -1, which is true enough (the event is there, written once).
    async fn append_firsts(&self, items: &[(JobId, AgentEvent)]) -> Result<(OffsetDateTime, Vec<i64>), BusError> {
        let (timestamp, micros) = now_micros();
        if items.is_empty() {
            return Ok((timestamp, vec![]));
        }
        let mut pipe = ::redis::pipe();
        for (job, event) in items {
            let keys = self.keys(*job);
            let body = serde_json::to_string(event).map_err(|e| BusError::Corrupt(e.to_string()))?;
            pipe.cmd("EVALSHA").arg(self.script.get_hash()).arg(3).arg(&keys.events).arg(&keys.seq).arg(&keys.writers);
            pipe.arg(&body).arg(micros).arg(self.settings.maxlen).arg("").arg(0).arg(0).arg("first");
        }
        let send = || async {
            match pipe.query_async::<Vec<i64>>(&mut self.conn.clone()).await {
                Err(e) if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) => {
                    // Redis restarted and forgot the script: load it, then send again.
                    self.script.prepare_invoke().load_async(&mut self.conn.clone()).await?;
                    pipe.query_async::<Vec<i64>>(&mut self.conn.clone()).await
                }
                other => other,
            }
        };
        let ids = send
            .retry(backoff())
            .when(redis_transient)
            .notify(|e, d| tracing::warn!("Redis append: {e}; retrying in {d:?}"))
            .await
            .map_err(unavailable)?;
        Ok((timestamp, ids))
    }

    /// Runs a read command, retrying while Redis is unreachable.
    async fn range(&self, cmd: &::redis::Cmd) -> Result<StreamRangeReply, BusError> {
        (|| async { cmd.query_async::<StreamRangeReply>(&mut self.conn.clone()).await })
            .retry(backoff())
            .when(redis_transient)
            .notify(|e, d| tracing::warn!("Redis: {e}; retrying in {d:?}"))
            .await
            .map_err(unavailable)
    }

    pub(crate) async fn read(&self, job: JobId, after: EventId, limit: usize) -> Result<Vec<EventRecord>, BusError> {
        let mut cmd = ::redis::cmd("XRANGE");
        cmd.arg(self.keys(job).events).arg(entry_id(after + 1)).arg("+").arg("COUNT").arg(limit);
        let reply = self.range(&cmd).await?;
        reply.ids.iter().map(|e| decode(job, e)).collect()
    }

    async fn last(&self, job: JobId) -> Result<Option<EventRecord>, BusError> {
        let mut cmd = ::redis::cmd("XREVRANGE");
        cmd.arg(self.keys(job).events).arg("+").arg("-").arg("COUNT").arg(1);
        let reply = self.range(&cmd).await?;
        reply.ids.first().map(|e| decode(job, e)).transpose()
    }
}

/// Now, cut to the microseconds a stream entry keeps, and as µs since the Unix epoch.
fn now_micros() -> (OffsetDateTime, i64) {
    let now = OffsetDateTime::now_utc();
    let timestamp = now.replace_nanosecond(now.nanosecond() / 1000 * 1000).expect("valid nanosecond");
    (timestamp, (timestamp.unix_timestamp_nanos() / 1000) as i64)
}

/// A stream entry as an event record.
pub(crate) fn decode(job: JobId, e: &StreamId) -> Result<EventRecord, BusError> {
    let id = parse_entry_id(&e.id).ok_or_else(|| BusError::Corrupt(format!("stream entry id {} is not <n>-0", e.id)))?;
    let body: String = e.get(FIELD_EVENT).ok_or_else(|| BusError::Corrupt(format!("entry {} has no `{FIELD_EVENT}`", e.id)))?;
    let micros: i64 = e.get(FIELD_TIME).ok_or_else(|| BusError::Corrupt(format!("entry {} has no `{FIELD_TIME}`", e.id)))?;
    let event: AgentEvent = serde_json::from_str(&body).map_err(|err| BusError::Corrupt(format!("entry {}: {err}", e.id)))?;
    let timestamp = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).map_err(|err| BusError::Corrupt(err.to_string()))?;
    Ok(EventRecord { id, job_id: job, timestamp, v: EVENT_SCHEMA_VERSION, event })
}

#[async_trait]
impl EventBus for RedisEventBus {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn append(&self, job: JobId, event: AgentEvent) -> Result<EventRecord, BusError> {
        let inner = &self.inner;
        let keys = inner.keys(job);
        let (timestamp, micros) = now_micros();
        let body = serde_json::to_string(&event).map_err(|e| BusError::Corrupt(e.to_string()))?;
        let terminal = event.is_terminal();
        let ttl = if terminal { inner.settings.ttl.as_secs() } else { 0 };
        let writer = inner.writer_for(job);
        let mut w = writer.lock().await;
        w.seq += 1;
        let mut call = inner.script.prepare_invoke();
        call.key(&keys.events).key(&keys.seq).key(&keys.writers);
        call.arg(&body).arg(micros).arg(inner.settings.maxlen).arg(&w.id).arg(w.seq).arg(ttl);
        let id: u64 = (|| async { call.invoke_async(&mut inner.conn.clone()).await })
            .retry(backoff())
            .when(redis_transient)
            .notify(|e, d| tracing::warn!(job_id = %job, "Redis append: {e}; retrying in {d:?}"))
            .await
            .map_err(unavailable)?;
        drop(w);
        if terminal {
            inner.forget_writer(job);
        }
        Ok(EventRecord { id, job_id: job, timestamp, v: EVENT_SCHEMA_VERSION, event })
    }

    async fn append_first(&self, job: JobId, event: AgentEvent) -> Result<Option<EventRecord>, BusError> {
        let items = [(job, event)];
        let (timestamp, ids) = self.inner.append_firsts(&items).await?;
        let [(_, event)] = items;
        Ok(ids.first().filter(|id| **id > 0).map(|id| EventRecord { id: *id as EventId, job_id: job, timestamp, v: EVENT_SCHEMA_VERSION, event }))
    }

    async fn append_first_many(&self, items: &[(JobId, AgentEvent)]) -> Result<(), BusError> {
        self.inner.append_firsts(items).await.map(drop)
    }

    async fn read(&self, job: JobId, after: EventId, limit: usize) -> Result<Vec<EventRecord>, BusError> {
        self.inner.read(job, after, limit).await
    }

    async fn last(&self, job: JobId) -> Result<Option<EventRecord>, BusError> {
        self.inner.last(job).await
    }

    async fn subscribe(&self, job: JobId, after: EventId) -> Result<EventStream, BusError> {
        let last = self.inner.last(job).await?;
        if last.as_ref().is_some_and(|l| l.event.is_terminal()) {
            // Finished: everything is stored, no live part (and nothing at all after the end).
            let done = last.is_some_and(|l| l.id <= after);
            return Ok(Box::pin(follow(self.inner.clone(), job, after, None, done)));
        }
        let joined = self.inner.feeds.join(job, last.map_or(0, |l| l.id));
        Ok(Box::pin(follow(self.inner.clone(), job, after, Some(joined), false)))
    }

    async fn ping(&self) -> Result<(), BusError> {
        ::redis::cmd("PING").query_async::<String>(&mut self.inner.conn.clone()).await.map(|_| ()).map_err(unavailable)
    }
}

/// Replay, then live from the job's feed (see the module doc).
fn follow(
    inner: Arc<Inner>,
    job: JobId,
    after: EventId,
    feed: Option<(Arc<feed::Feed>, broadcast::Receiver<EventRecord>)>,
    done: bool,
) -> impl futures::Stream<Item = Result<EventRecord, BusError>> + Send + 'static {
    async_stream::try_stream! {
        if done {
            return;
        }
        let (_feed, mut rx) = match feed {
            Some((f, rx)) => (Some(f), Some(rx)),
            None => (None, None),
        };
        // Without a feed: a finished job whose stored events end without the terminal one
        // (trimmed or expired); nothing more will come.
        let store: &Inner = &inner;
        let events = replay_then_live(move |from, n| store.read(job, from, n), after, rx.as_mut(), OnClose::Fail("the job's event reader stopped"));
        futures::pin_mut!(events);
        while let Some(rec) = futures::StreamExt::next(&mut events).await {
            yield rec?;
        }
    }
}
