//! The variables that choose where jobs and events live, and how instances share them:
//!
//! | variable | default | |
//! |---|---|---|
//! | `DATABASE_URL` | unset: SQLite in the data dir | `postgres://` / `postgresql://` → PostgreSQL; `sqlite:PATH` → SQLite at PATH |
//! | `ORCA_DATABASE_POOL_SIZE` | 16 | PostgreSQL pool connections per instance (1–1000), plus 3 kept apart (heartbeats, a lone insert) |
//! | `REDIS_URL` | unset: the embedded event log | `redis://…` (or `redis+unix://`) → Redis Streams |
//! | `ORCA_REDIS_PREFIX` | `orca` | prefix of every Redis key (letters, digits, `-_.:`) |
//! | `ORCA_EVENTS_MAXLEN` | 100000 | events kept per job stream (approximate trim; 0: unbounded) |
//! | `ORCA_EVENTS_TTL_SECONDS` | 604800 (7 days) | a finished job's events expire this long after its end (0: never) |
//! | `ORCA_INSTANCE_ID` | `<host>-<pid>-<random>` | this instance's name in job leases |
//! | `ORCA_LEASE_SECONDS` | 30 | how long a claimed job stays with an instance that stopped heartbeating (2–3600) |
//!
//! Connection URLs carry passwords: they are kept as [`Secret`] and never echoed in errors.

use super::{ConfigError, StoreBackend};
use crate::manager::ClusterConfig;
use orca_core::Secret;
use orca_core::redis_events::DEFAULT_PREFIX;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which event bus to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsBackend {
    /// `events.db` beside the embedded job store (REDIS_URL unset).
    Embedded,
    /// Redis Streams.
    Redis(RedisEvents),
}

/// Where and how events are kept in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisEvents {
    pub url: Secret,
    pub prefix: String,
    /// Approximate number of events kept per job (0: unbounded).
    pub maxlen: u64,
    /// How long a finished job's events are kept (zero: forever).
    pub ttl: Duration,
}

type Parsed = (StoreBackend, EventsBackend, ClusterConfig);

/// Reads the variables in the module doc.
pub(super) fn parse<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    bad: &impl Fn(&'static str, &str) -> ConfigError,
    data_dir: &Path,
) -> Result<Parsed, ConfigError> {
    // Never echo a connection URL: it may hold a password.
    let bad_url = |var: &'static str, problem: &str| ConfigError { var, value: "[redacted]".into(), problem: problem.to_owned() };
    let number = |var: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| -> Result<u64, ConfigError> {
        match get(var) {
            None => Ok(default),
            Some(v) => v.trim().parse().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                bad(var, &format!("must be a whole number from {} to {}", range.start(), range.end()))
            }),
        }
    };
    let pool_size = number("ORCA_DATABASE_POOL_SIZE", 16, 1..=1000)? as u32;
    let store = match get("DATABASE_URL") {
        None => StoreBackend::Embedded { path: data_dir.join("orca.db") },
        Some(u) if u.starts_with("sqlite:") => {
            let path = u.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            StoreBackend::Embedded { path: PathBuf::from(path) }
        }
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            if url::Url::parse(u).ok().and_then(|p| p.host_str().map(|h| !h.is_empty())) != Some(true) {
                return Err(bad_url("DATABASE_URL", "is not a valid URL, e.g. postgresql://orca:orca@localhost:5432/orca"));
            }
            StoreBackend::Postgres { url: Secret::new(u), pool_size }
        }
        Some(_) => {
            return Err(bad_url("DATABASE_URL", "must be a postgres:// or postgresql:// URL, a sqlite: URL, or unset (embedded SQLite)"));
        }
    };
    let events = match get("REDIS_URL") {
        None => EventsBackend::Embedded,
        Some(u) if u.starts_with("rediss://") => {
            return Err(bad_url("REDIS_URL", "TLS (rediss://) is not supported by this build; use redis:// on a trusted network"));
        }
        Some(u) if u.starts_with("redis://") || u.starts_with("redis+unix://") || u.starts_with("unix://") => {
            if ::redis::Client::open(u).is_err() {
                return Err(bad_url("REDIS_URL", "is not a valid Redis URL, e.g. redis://localhost:6379"));
            }
            let prefix = get("ORCA_REDIS_PREFIX").unwrap_or(DEFAULT_PREFIX).to_owned();
            let prefix_ok = (1..=64).contains(&prefix.len())
                && prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
            if !prefix_ok {
                return Err(bad("ORCA_REDIS_PREFIX", "must be 1 to 64 letters, digits or - _ . :"));
            }
            let maxlen = number("ORCA_EVENTS_MAXLEN", 100_000, 0..=1_000_000_000)?;
            if maxlen != 0 && maxlen < 100 {
                return Err(bad("ORCA_EVENTS_MAXLEN", "must be 0 (unbounded) or at least 100"));
            }
            let ttl = Duration::from_secs(number("ORCA_EVENTS_TTL_SECONDS", 7 * 24 * 3600, 0..=10 * 365 * 24 * 3600)?);
            EventsBackend::Redis(RedisEvents { url: Secret::new(u), prefix, maxlen, ttl })
        }
        Some(_) => return Err(bad_url("REDIS_URL", "must be a redis:// URL, e.g. redis://localhost:6379, or unset (embedded event log)")),
    };
    let instance_id = match get("ORCA_INSTANCE_ID") {
        None => ClusterConfig::default_instance_id(),
        Some(id) if id.len() <= 128 && !id.chars().any(|c| c.is_whitespace() || c.is_control()) => id.to_owned(),
        Some(_) => return Err(bad("ORCA_INSTANCE_ID", "must be at most 128 characters without spaces")),
    };
    let lease = Duration::from_secs(number("ORCA_LEASE_SECONDS", 30, 2..=3600)?);
    let exclusive_store = matches!(store, StoreBackend::Embedded { .. });
    Ok((store, events, ClusterConfig { instance_id, lease, exclusive_store }))
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.entry("ORCA_DATA_DIR".into()).or_insert("/tmp/orca-test".into());
        Config::from_vars(&env)
    }

    #[test]
    fn unset_means_embedded_and_alone() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.events, EventsBackend::Embedded);
        assert!(c.cluster.exclusive_store);
        assert_eq!(c.cluster.lease, Duration::from_secs(30));
        assert!(!c.cluster.instance_id.is_empty());
    }

    #[test]
    fn postgres_and_redis_urls_choose_the_shared_backends() {
        let c = cfg(&[
            ("DATABASE_URL", "postgresql://orca:pw@db:5432/orca"),
            ("REDIS_URL", "redis://cache:6379"),
            ("ORCA_DATABASE_POOL_SIZE", "4"),
            ("ORCA_EVENTS_MAXLEN", "500"),
            ("ORCA_EVENTS_TTL_SECONDS", "60"),
            ("ORCA_REDIS_PREFIX", "team-a"),
            ("ORCA_INSTANCE_ID", "api-1"),
            ("ORCA_LEASE_SECONDS", "5"),
        ])
        .unwrap();
        assert!(matches!(&c.store, StoreBackend::Postgres { url, pool_size: 4 } if url.expose() == "postgresql://orca:pw@db:5432/orca"));
        let EventsBackend::Redis(r) = &c.events else { panic!("redis") };
        assert_eq!((r.url.expose(), r.prefix.as_str(), r.maxlen, r.ttl), ("redis://cache:6379", "team-a", 500, Duration::from_secs(60)));
        assert_eq!((c.cluster.instance_id.as_str(), c.cluster.lease, c.cluster.exclusive_store), ("api-1", Duration::from_secs(5), false));
        assert!(!format!("{c:?}").contains("pw@"), "Debug never shows the password");
        let d = cfg(&[("REDIS_URL", "redis://cache")]).unwrap();
        let EventsBackend::Redis(r) = &d.events else { panic!("redis") };
        assert_eq!((r.prefix.as_str(), r.maxlen, r.ttl), ("orca", 100_000, Duration::from_secs(604_800)));
    }

    #[test]
    fn bad_values_name_the_variable_and_never_echo_a_url() {
        for (k, v) in [
            ("DATABASE_URL", "mysql://root:hunter2@db/orca"),
            ("DATABASE_URL", "postgres://hunter2@"),
            ("REDIS_URL", "rediss://:hunter2@cache"),
            ("REDIS_URL", "http://hunter2@cache"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert_eq!(e.var, k);
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        for (k, v) in [
            ("ORCA_DATABASE_POOL_SIZE", "0"),
            ("ORCA_LEASE_SECONDS", "1"),
            ("ORCA_INSTANCE_ID", "has space"),
        ] {
            assert_eq!(cfg(&[(k, v)]).unwrap_err().var, k);
        }
        for (k, v) in [("ORCA_REDIS_PREFIX", "{x}"), ("ORCA_EVENTS_MAXLEN", "10"), ("ORCA_EVENTS_TTL_SECONDS", "soon")] {
            assert_eq!(cfg(&[("REDIS_URL", "redis://c"), (k, v)]).unwrap_err().var, k);
        }
    }
}
