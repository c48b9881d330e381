//! Webhook deliveries in the embedded SQLite database (tables `webhook_deliveries` and
//! `webhook_attempts`, migration `0002_webhooks.sql`).

use super::store::{Attempt, Delivery, DeliveryStatus, DeliveryStore};
use crate::store::StoreError;
use async_trait::async_trait;
use orca_core::JobId;
use sqlx::{Row, SqlitePool};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

pub struct SqliteDeliveryStore {
    pool: SqlitePool,
}

impl SqliteDeliveryStore {
    /// Uses the job store's pool (its migrations create the tables).
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(m: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(m as i128 * 1000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn decode(r: &sqlx::sqlite::SqliteRow) -> Result<Delivery, StoreError> {
    let id: String = r.get("id");
    let job: String = r.get("job_id");
    let status: String = r.get("status");
    Ok(Delivery {
        id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        job_id: JobId::parse(&job).ok_or_else(|| StoreError::Corrupt(format!("job id {job}")))?,
        event: r.get("event"),
        url: r.get("url"),
        payload: r.get("payload"),
        status: DeliveryStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
        attempts: r.get::<i64, _>("attempts") as u32,
        next_attempt_at: r.get::<Option<i64>, _>("next_attempt_at").map(from_micros),
        created_at: from_micros(r.get("created_at")),
        last_error: r.get("last_error"),
    })
}

macro_rules! columns {
    () => {
        "id, job_id, event, url, payload, status, attempts, next_attempt_at, created_at, last_error"
    };
}

#[async_trait]
impl DeliveryStore for SqliteDeliveryStore {
    async fn enqueue(&self, d: &Delivery) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "INSERT INTO webhook_deliveries (id, job_id, event, url, payload, status, attempts, next_attempt_at, created_at, last_error)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, event) DO NOTHING",
        )
        .bind(d.id.to_string())
        .bind(d.job_id.to_string())
        .bind(&d.event)
        .bind(&d.url)
        .bind(&d.payload)
        .bind(d.status.as_str())
        .bind(d.attempts as i64)
        .bind(d.next_attempt_at.map(micros))
        .bind(micros(d.created_at))
        .bind(&d.last_error)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(res.rows_affected() == 1)
    }

    async fn claim_due(&self, now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let until = micros(now + lease);
        let rows = sqlx::query(concat!(
            "UPDATE webhook_deliveries SET next_attempt_at = ?
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?
                          ORDER BY next_attempt_at LIMIT ?)
             RETURNING ",
            columns!()
        ))
        .bind(until)
        .bind(micros(now))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(decode).collect()
    }

    async fn record(&self, id: Uuid, a: &Attempt, status: DeliveryStatus, next: Option<OffsetDateTime>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("INSERT INTO webhook_attempts (delivery_id, n, at, status_code, latency_ms, error) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(id.to_string())
            .bind(a.n as i64)
            .bind(micros(a.at))
            .bind(a.status_code.map(|c| c as i64))
            .bind(a.latency_ms as i64)
            .bind(&a.error)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query("UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(a.n as i64)
            .bind(next.map(micros))
            .bind(&a.error)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn for_job(&self, job: JobId) -> Result<Vec<(Delivery, Vec<Attempt>)>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", columns!(), " FROM webhook_deliveries WHERE job_id = ? ORDER BY created_at, event"))
            .bind(job.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let mut out = vec![];
        for r in &rows {
            let d = decode(r)?;
            let attempts = sqlx::query("SELECT n, at, status_code, latency_ms, error FROM webhook_attempts WHERE delivery_id = ? ORDER BY n")
                .bind(d.id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(|a| Attempt {
                    n: a.get::<i64, _>("n") as u32,
                    at: from_micros(a.get("at")),
                    status_code: a.get::<Option<i64>, _>("status_code").map(|c| c as u16),
                    latency_ms: a.get::<i64, _>("latency_ms") as u64,
                    error: a.get("error"),
                })
                .collect();
            out.push((d, attempts));
        }
        Ok(out)
    }

    async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let m: Option<i64> = sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(m.map(from_micros))
    }
}
