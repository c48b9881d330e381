//! Riding out a restart of PostgreSQL or Redis: the one backoff policy the adapters retry
//! with, and the classification of errors that mean "not reachable right now".
//!
//! Only errors of the connection are retried (refused, reset, timed out, the server shutting
//! down or starting up), never a query's own error. Retries are bounded by [`RETRY_BUDGET`], so
//! a request waits through a short restart and fails with `Unavailable` after a long outage.
//! Non-idempotent writes are made safe to retry by their adapter (see `store::postgres` and
//! `events::redis`).

use backon::ExponentialBuilder;
use std::time::Duration;

/// Longest total sleep between attempts of one call.
pub const RETRY_BUDGET: Duration = Duration::from_secs(30);

/// Exponential backoff with jitter: 50 ms, doubling, at most 2 s apart, for [`RETRY_BUDGET`].
pub fn backoff() -> ExponentialBuilder {
    backoff_for(RETRY_BUDGET)
}

/// Like [`backoff`], bounded by `budget` instead.
pub fn backoff_for(budget: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(budget))
}

/// Whether a PostgreSQL (sqlx) error means the database is unreachable for now.
pub fn sqlx_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => true,
        sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 57P01-03: admin shutdown, crash shutdown, cannot connect
            // now (starting up); 53300: too many connections; 40001/40P01: serialization
            // failure, deadlock (the transaction may simply be run again).
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01")
        }),
        _ => false,
    }
}

/// Whether a Redis error means the server is unreachable for now (or is loading its data).
pub fn redis_transient(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::TryAgain | ServerErrorKind::MasterDown)
        )
}
