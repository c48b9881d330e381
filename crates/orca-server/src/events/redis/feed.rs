//! Live events from Redis: one reader task per job per backend instance, however many
//! subscribers watch that job.
//!
//! The [`Hub`] maps a job to its [`Feed`]; subscribers share the feed through an `Arc` and
//! the feed's reader stops (its task is aborted) when the last subscriber goes away. The reader
//! owns a dedicated connection (a blocking `XREAD` would hold up any other command on a shared
//! one; it is named `orca-feed-<job id>`), reads after the last id it saw, and broadcasts each record. On a connection error it
//! reconnects with backoff and goes on from the same id: a Redis restart costs latency, never
//! an event. It ends after the job's terminal event.

use super::decode;
use ::redis::AsyncConnectionConfig;
use ::redis::aio::MultiplexedConnection;
use ::redis::streams::StreamReadReply;
use orca_core::redis_events::{JobKeys, entry_id, parse_entry_id};
use orca_core::{EventId, EventRecord, JobId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// Live records buffered per job before a slow subscriber must re-read from Redis.
const CHANNEL_CAPACITY: usize = 1024;
/// How long one `XREAD` blocks on the server.
const BLOCK_MS: u64 = 5000;
/// Entries per `XREAD`.
const READ_COUNT: usize = 512;
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

pub(super) struct Hub {
    client: ::redis::Client,
    prefix: String,
    feeds: Mutex<HashMap<JobId, Weak<Feed>>>,
}

/// One job's live records; dropping the last handle stops the reader.
pub(crate) struct Feed {
    tx: broadcast::Sender<EventRecord>,
    task: tokio::task::AbortHandle,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hub {
    pub(super) fn new(client: ::redis::Client, prefix: String) -> Self {
        Self { client, prefix, feeds: Mutex::new(HashMap::new()) }
    }

    /// Subscribes to the job's feed, starting its reader after event `from` if none runs.
    ///
    /// The caller must have seen (or be about to replay) every event up to `from`: a new reader
    /// delivers only what comes after it.
    pub(super) fn join(&self, job: JobId, from: EventId) -> (Arc<Feed>, broadcast::Receiver<EventRecord>) {
        let mut feeds = self.feeds.lock().expect("feeds poisoned");
        if let Some(feed) = feeds.get(&job).and_then(Weak::upgrade) {
            let rx = feed.tx.subscribe();
            return (feed, rx);
        }
        if feeds.len() >= 64 {
            feeds.retain(|_, f| f.strong_count() > 0);
        }
        let (tx, rx) = broadcast::channel(CHANNEL_CAPACITY);
        let key = JobKeys::new(&self.prefix, &job.to_string()).events;
        let task = tokio::spawn(read_live(self.client.clone(), key, job, from, tx.clone()));
        let feed = Arc::new(Feed { tx, task: task.abort_handle() });
        feeds.insert(job, Arc::downgrade(&feed));
        (feed, rx)
    }

    /// Jobs with a running reader (for tests and metrics).
    #[allow(dead_code)]
    pub(super) fn readers(&self) -> usize {
        self.feeds.lock().expect("feeds poisoned").values().filter(|f| f.strong_count() > 0).count()
    }
}

/// A dedicated connection, named `orca-feed-<job id>` in `CLIENT LIST`.
async fn connect(client: &::redis::Client, config: &AsyncConnectionConfig, job: JobId) -> ::redis::RedisResult<MultiplexedConnection> {
    let mut c = client.get_multiplexed_async_connection_with_config(config).await?;
    ::redis::cmd("CLIENT").arg("SETNAME").arg(format!("orca-feed-{job}")).query_async::<()>(&mut c).await?;
    Ok(c)
}

async fn read_live(client: ::redis::Client, key: String, job: JobId, mut cursor: EventId, tx: broadcast::Sender<EventRecord>) {
    // The server holds the reply for up to BLOCK_MS; allow for that plus a slow network.
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_millis(BLOCK_MS) + Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    let mut conn = None;
    let mut delay = RECONNECT_MIN;
    loop {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&client, &config, job).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(job_id = %job, "event reader cannot reach Redis ({e}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RECONNECT_MAX);
                    continue;
                }
            },
        };
        let mut cmd = ::redis::cmd("XREAD");
        cmd.arg("COUNT").arg(READ_COUNT).arg("BLOCK").arg(BLOCK_MS).arg("STREAMS").arg(&key).arg(entry_id(cursor));
        match cmd.query_async::<Option<StreamReadReply>>(c).await {
            Ok(reply) => {
                delay = RECONNECT_MIN;
                for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                    match decode(job, &entry) {
                        Ok(rec) => {
                            cursor = rec.id;
                            let end = rec.event.is_terminal();
                            let _ = tx.send(rec); // nobody listening right now is fine
                            if end {
                                return;
                            }
                        }
                        Err(e) => {
                            // Subscribers see the gap and read the entry themselves (and fail).
                            tracing::error!(job_id = %job, "skipping an unreadable event: {e}");
                            cursor = parse_entry_id(&entry.id).unwrap_or(cursor);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(job_id = %job, "event reader lost Redis ({e}); reconnecting in {delay:?}");
                conn = None;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        }
    }
}
