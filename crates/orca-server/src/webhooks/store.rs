//! The delivery store port: webhook deliveries waiting, done or given up, and every attempt.
//!
//! Adapters: [`crate::webhooks::sqlite::SqliteDeliveryStore`]. A delivery is unique per
//! (job, event type), so enqueueing twice (say after a crash and a retry of the same step)
//! sends once. Claiming a due delivery pushes its `next_attempt_at` forward by a lease, so
//! concurrent senders never send the same attempt twice.

use crate::store::StoreError;
use async_trait::async_trait;
use orca_core::JobId;
use serde::Serialize;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed].into_iter().find(|d| d.as_str() == s)
    }
}

/// One webhook delivery (the body is fixed when it is enqueued).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: Uuid,
    pub job_id: JobId,
    /// `job.started`, `job.succeeded`, ...
    pub event: String,
    pub url: String,
    #[serde(skip)]
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub last_error: Option<String>,
}

/// One try at sending a delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub n: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Stores a new pending delivery; `false` if one for (job, event) exists already.
    async fn enqueue(&self, d: &Delivery) -> Result<bool, StoreError>;

    /// Pending deliveries due at `now` (at most `limit`), leased for `lease`.
    async fn claim_due(&self, now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<Delivery>, StoreError>;

    /// Records an attempt and the delivery's new state (`next` = when to try again).
    async fn record(
        &self,
        id: Uuid,
        attempt: &Attempt,
        status: DeliveryStatus,
        next: Option<OffsetDateTime>,
    ) -> Result<(), StoreError>;

    /// A job's deliveries with their attempts, oldest first.
    async fn for_job(&self, job: JobId) -> Result<Vec<(Delivery, Vec<Attempt>)>, StoreError>;

    /// The earliest `next_attempt_at` among pending deliveries.
    async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError>;
}
