//! The Redis sink: with `REDIS_URL` set the worker appends its events to the job's Redis
//! stream itself (the spec's contract), instead of writing them to stdout.
//!
//! It runs the very script the backend's `RedisEventBus` runs
//! ([`orca_core::redis_events::APPEND_SCRIPT`]), so worker and backend appends interleave with
//! consecutive ids. Variables: `REDIS_URL` (may hold a password: never printed, and removed
//! from the environment before any child starts), `ORCA_REDIS_PREFIX` (default `orca`),
//! `ORCA_EVENTS_MAXLEN` (default 100000; 0: unbounded).
//!
//! Each append is numbered under this worker's writer id and retried with backoff for up to
//! [`RETRY_FOR`] while Redis is unreachable; the script drops a retry whose first try landed,
//! so a Redis restart neither loses nor duplicates an event. Status events belong to the
//! backend: one from an agent is written as `raw`, as the backend does with stdout.

use crate::sink::EventSink;
use backon::{ExponentialBuilder, Retryable};
use orca_core::AgentEvent;
use orca_core::redis_events::{APPEND_SCRIPT, DEFAULT_PREFIX, JobKeys};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::io;
use std::time::Duration;
use time::OffsetDateTime;

/// How long one append keeps retrying while Redis is unreachable.
pub const RETRY_FOR: Duration = Duration::from_secs(60);

/// Where to write, from the environment.
#[derive(Clone)]
pub struct Settings {
    url: String,
    pub prefix: String,
    pub maxlen: u64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings").field("url", &"[redacted]").field("prefix", &self.prefix).field("maxlen", &self.maxlen).finish()
    }
}

impl Settings {
    /// `None` without `REDIS_URL`; an error names the bad variable (never its value).
    pub fn from_env() -> Result<Option<Settings>, String> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Settings>, String> {
        let Some(url) = get("REDIS_URL") else { return Ok(None) };
        if redis::Client::open(url.as_str()).is_err() {
            return Err("REDIS_URL: is not a valid redis:// URL".into());
        }
        let prefix = get("ORCA_REDIS_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        let maxlen = match get("ORCA_EVENTS_MAXLEN") {
            None => 100_000,
            Some(v) => v.trim().parse().map_err(|_| "ORCA_EVENTS_MAXLEN: must be a whole number".to_owned())?,
        };
        Ok(Some(Settings { url, prefix, maxlen }))
    }
}

pub struct RedisSink {
    conn: ConnectionManager,
    script: redis::Script,
    keys: JobKeys,
    maxlen: u64,
    writer: String,
    seq: u64,
}

fn backoff(budget: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(budget))
}

fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() || e.is_unrecoverable_error()
}

impl RedisSink {
    /// Connects (retrying for up to [`RETRY_FOR`]) to append `job_id`'s events.
    pub async fn connect(settings: &Settings, job_id: &str) -> Result<RedisSink, String> {
        let client = redis::Client::open(settings.url.as_str()).map_err(|_| "REDIS_URL: is not a valid redis:// URL".to_owned())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let conn = (|| ConnectionManager::new_with_config(client.clone(), config.clone()))
            .retry(backoff(RETRY_FOR))
            .when(transient)
            .await
            .map_err(|e| format!("cannot reach Redis: {e}"))?;
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Ok(RedisSink {
            conn,
            script: redis::Script::new(APPEND_SCRIPT),
            keys: JobKeys::new(&settings.prefix, job_id),
            maxlen: settings.maxlen,
            writer: format!("worker-{}-{nanos}", std::process::id()),
            seq: 0,
        })
    }
}

impl EventSink for RedisSink {
    async fn write(&mut self, event: &AgentEvent) -> io::Result<()> {
        let body = match event {
            AgentEvent::Status { .. } => {
                let data = serde_json::to_value(event)?;
                serde_json::to_string(&AgentEvent::Raw { source: Some("worker".into()), data })?
            }
            e => serde_json::to_string(e)?,
        };
        let micros = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
        self.seq += 1;
        let mut call = self.script.prepare_invoke();
        call.key(&self.keys.events).key(&self.keys.seq).key(&self.keys.writers);
        call.arg(&body).arg(micros).arg(self.maxlen).arg(&self.writer).arg(self.seq).arg(0);
        let conn = &self.conn;
        (|| async { call.invoke_async::<u64>(&mut conn.clone()).await })
            .retry(backoff(RETRY_FOR))
            .when(transient)
            .notify(|e, d| crate::log::warn(&format!("Redis append failed ({e}); retrying in {d:?}")))
            .await
            .map(|_| ())
            .map_err(|e| io::Error::other(format!("Redis append failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_need_redis_url_and_never_show_it() {
        let none = Settings::from_lookup(|_| None).unwrap();
        assert!(none.is_none());
        let s = Settings::from_lookup(|k| (k == "REDIS_URL").then(|| "redis://:hunter2@127.0.0.1:6379".into())).unwrap().unwrap();
        assert_eq!((s.prefix.as_str(), s.maxlen), ("orca", 100_000));
        assert!(!format!("{s:?}").contains("hunter2"));
        let bad = Settings::from_lookup(|k| match k {
            "REDIS_URL" => Some("redis://127.0.0.1".into()),
            "ORCA_EVENTS_MAXLEN" => Some("lots".into()),
            _ => None,
        });
        assert!(bad.unwrap_err().contains("ORCA_EVENTS_MAXLEN"));
        let err = Settings::from_lookup(|k| (k == "REDIS_URL").then(|| "http://secret@h".into())).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }
}
