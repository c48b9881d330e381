//! Webhook deliveries in PostgreSQL (tables `webhook_deliveries` and `webhook_attempts`,
//! migration `migrations/postgres/0002_webhooks.sql`), shared by every backend instance.
//!
//! Claiming due deliveries locks them with `FOR UPDATE SKIP LOCKED` and pushes their
//! `next_attempt_at` forward by the lease in the same statement, so two instances never send
//! the same attempt.

use super::store::{Attempt, Delivery, DeliveryStatus, DeliveryStore};
use crate::store::StoreError;
use async_trait::async_trait;
use orca_core::JobId;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

pub struct PgDeliveryStore {
    pool: PgPool,
}

impl PgDeliveryStore {
    /// Uses the job store's pool (its migrations create the tables).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(r: &PgRow) -> Result<Delivery, StoreError> {
    let status: String = r.try_get("status").map_err(unavailable)?;
    Ok(Delivery {
        id: r.try_get("id").map_err(unavailable)?,
        job_id: JobId(r.try_get("job_id").map_err(unavailable)?),
        event: r.try_get("event").map_err(unavailable)?,
        url: r.try_get("url").map_err(unavailable)?,
        payload: r.try_get("payload").map_err(unavailable)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
        attempts: r.try_get::<i32, _>("attempts").map_err(unavailable)? as u32,
        next_attempt_at: r.try_get("next_attempt_at").map_err(unavailable)?,
        created_at: r.try_get("created_at").map_err(unavailable)?,
        last_error: r.try_get("last_error").map_err(unavailable)?,
    })
}

macro_rules! columns {
    () => {
        "id, job_id, event, url, payload, status, attempts, next_attempt_at, created_at, last_error"
    };
}

#[async_trait]
impl DeliveryStore for PgDeliveryStore {
    async fn enqueue(&self, d: &Delivery) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "INSERT INTO webhook_deliveries (id, job_id, event, url, payload, status, attempts, next_attempt_at, created_at, last_error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (job_id, event) DO NOTHING",
        )
        .bind(d.id)
        .bind(d.job_id.0)
        .bind(&d.event)
        .bind(&d.url)
        .bind(&d.payload)
        .bind(d.status.as_str())
        .bind(d.attempts as i32)
        .bind(d.next_attempt_at)
        .bind(d.created_at)
        .bind(&d.last_error)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(res.rows_affected() == 1)
    }

    async fn claim_due(&self, now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(concat!(
            "UPDATE webhook_deliveries SET next_attempt_at = $1
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2
                          ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            columns!()
        ))
            .bind(now + lease)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(decode).collect()
    }

    async fn record(&self, id: Uuid, a: &Attempt, status: DeliveryStatus, next: Option<OffsetDateTime>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("INSERT INTO webhook_attempts (delivery_id, n, at, status_code, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(a.n as i32)
            .bind(a.at)
            .bind(a.status_code.map(i32::from))
            .bind(a.latency_ms as i64)
            .bind(&a.error)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query("UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, last_error = $4 WHERE id = $5")
            .bind(status.as_str())
            .bind(a.n as i32)
            .bind(next)
            .bind(&a.error)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn for_job(&self, job: JobId) -> Result<Vec<(Delivery, Vec<Attempt>)>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", columns!(), " FROM webhook_deliveries WHERE job_id = $1 ORDER BY created_at, event")).bind(job.0).fetch_all(&self.pool).await.map_err(unavailable)?;
        let mut out = vec![];
        for r in &rows {
            let d = decode(r)?;
            let attempts = sqlx::query("SELECT n, at, status_code, latency_ms, error FROM webhook_attempts WHERE delivery_id = $1 ORDER BY n")
                .bind(d.id)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(|a| {
                    Ok(Attempt {
                        n: a.try_get::<i32, _>("n").map_err(unavailable)? as u32,
                        at: a.try_get("at").map_err(unavailable)?,
                        status_code: a.try_get::<Option<i32>, _>("status_code").map_err(unavailable)?.map(|c| c as u16),
                        latency_ms: a.try_get::<i64, _>("latency_ms").map_err(unavailable)? as u64,
                        error: a.try_get("error").map_err(unavailable)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.push((d, attempts));
        }
        Ok(out)
    }

    async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }
}
