//! Webhook notifications: a delivery when a job starts and when it ends, signed, retried,
//! persisted and visible.
//!
//! [`Webhooks::job_changed`] enqueues a delivery (one per job and event type) when a job with a
//! `webhookUrl` enters `running` or a terminal state. A sender loop claims due deliveries from
//! the [`store::DeliveryStore`], POSTs them, records every attempt (status, latency, error) and
//! schedules the next one by the [`policy::RetryPolicy`]. Pending deliveries live in the store,
//! so a restart resumes them.
//!
//! Body: `{"id": <delivery id>, "type": "job.started" | "job.succeeded" | "job.failed" |
//! "job.cancelled" | "job.timed_out", "timestamp": <RFC 3339>, "job": <the job object>}`.
//! Headers: `X-Orca-Delivery`, `X-Orca-Event`, and with ORCA_WEBHOOK_SECRET set,
//! `X-Orca-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` (see [`sign`]).

pub mod policy;
pub mod postgres;
pub mod sign;
pub mod sqlite;
pub mod store;
pub mod target;

use orca_core::{Job, JobStatus, Secret};
use policy::{AttemptOutcome, RetryPolicy};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Attempt, Delivery, DeliveryStatus, DeliveryStore};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Deliveries sent at once by one backend.
const BATCH: u32 = 16;
/// How long a claimed delivery is reserved for its sender.
const LEASE: Duration = Duration::from_secs(60);
/// Longest the sender sleeps before looking for due deliveries again.
const IDLE_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub secret: Option<Secret>,
    /// Allow loopback and private targets (ORCA_WEBHOOK_ALLOW_PRIVATE).
    pub allow_private: bool,
    pub policy: RetryPolicy,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self { secret: None, allow_private: false, policy: RetryPolicy::default(), timeout: Duration::from_secs(10) }
    }
}

pub struct Webhooks {
    store: Arc<dyn DeliveryStore>,
    config: WebhookConfig,
    http: reqwest::Client,
    wake: Notify,
}

/// The event type a status change announces, if any.
pub fn event_for(status: JobStatus) -> Option<&'static str> {
    match status {
        JobStatus::Running => Some("job.started"),
        JobStatus::Succeeded => Some("job.succeeded"),
        JobStatus::Failed => Some("job.failed"),
        JobStatus::Cancelled => Some("job.cancelled"),
        JobStatus::TimedOut => Some("job.timed_out"),
        JobStatus::Queued | JobStatus::Scheduled => None,
    }
}

impl Webhooks {
    pub fn new(store: Arc<dyn DeliveryStore>, config: WebhookConfig) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .dns_resolver(Arc::new(target::GuardedResolver { allow_private: config.allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("orca-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Self { store, config, http, wake: Notify::new() }))
    }

    pub fn allow_private(&self) -> bool {
        self.config.allow_private
    }

    pub fn store(&self) -> &Arc<dyn DeliveryStore> {
        &self.store
    }

    /// Enqueues the delivery for this job's current status (idempotent per job and event).
    pub async fn job_changed(&self, job: &Job) -> Result<(), crate::store::StoreError> {
        let (Some(url), Some(event)) = (&job.webhook_url, event_for(job.status)) else { return Ok(()) };
        let now = OffsetDateTime::now_utc();
        let id = Uuid::now_v7();
        let body = serde_json::json!({
            "id": id,
            "type": event,
            "timestamp": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "job": job,
        });
        let d = Delivery {
            id,
            job_id: job.id,
            event: event.to_owned(),
            url: url.clone(),
            payload: body.to_string(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            created_at: now,
            last_error: None,
        };
        if self.store.enqueue(&d).await? {
            tracing::debug!(job_id = %job.id, event, "webhook queued");
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Sends due deliveries until `shutdown`.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match this.store.claim_due(OffsetDateTime::now_utc(), LEASE, BATCH).await {
                    Ok(batch) if !batch.is_empty() => {
                        futures::future::join_all(batch.into_iter().map(|d| this.attempt(d))).await;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("webhook store: {e}"),
                }
                let sleep = match this.store.next_due().await {
                    Ok(Some(t)) => (t - OffsetDateTime::now_utc()).try_into().unwrap_or(Duration::ZERO).min(IDLE_POLL),
                    _ => IDLE_POLL,
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = this.wake.notified() => {}
                    _ = tokio::time::sleep(sleep) => {}
                }
            }
        })
    }

    async fn attempt(&self, d: Delivery) {
        let n = d.attempts + 1;
        let at = OffsetDateTime::now_utc();
        let started = Instant::now();
        let sent = self.send(&d, at).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (status_code, error, status, next) = match sent {
            Ok((code, AttemptOutcome::Delivered)) => (Some(code), None, DeliveryStatus::Delivered, None),
            Ok((code, outcome)) => {
                let error = match &outcome {
                    AttemptOutcome::Transport => "no answer (connection failed or timed out)".to_owned(),
                    _ => format!("HTTP {code}"),
                };
                let code = (code != 0).then_some(code);
                match self.config.policy.next_delay(n, &outcome, fastrand::f64()) {
                    Some(delay) => (code, Some(error), DeliveryStatus::Pending, Some(OffsetDateTime::now_utc() + delay)),
                    None => (code, Some(error), DeliveryStatus::Failed, None),
                }
            }
            Err(refused) => (None, Some(refused), DeliveryStatus::Failed, None), // final
        };
        let attempt = Attempt { n, at, status_code, latency_ms, error };
        tracing::info!(job_id = %d.job_id, event = %d.event, attempt = n, ?status, latency_ms, error = attempt.error.as_deref(), "webhook attempt");
        if let Err(e) = self.store.record(d.id, &attempt, status, next).await {
            tracing::warn!("cannot record webhook attempt: {e}");
        }
    }

    /// One POST: the HTTP status (0 without an answer) and what it means for retries.
    /// `Err` means the target is refused and will never be tried.
    async fn send(&self, d: &Delivery, at: OffsetDateTime) -> Result<(u16, AttemptOutcome), String> {
        target::check_url(&d.url, self.config.allow_private)?;
        let ts = at.unix_timestamp();
        let mut req = self
            .http
            .post(&d.url)
            .header("content-type", "application/json")
            .header("x-orca-delivery", d.id.to_string())
            .header("x-orca-event", &d.event)
            .header("x-orca-timestamp", ts.to_string());
        if let Some(secret) = &self.config.secret {
            req = req.header("x-orca-signature", sign::signature_header(secret.expose().as_bytes(), ts, d.payload.as_bytes()));
        }
        match req.body(d.payload.clone()).send().await {
            Ok(resp) if resp.status().is_success() => Ok((resp.status().as_u16(), AttemptOutcome::Delivered)),
            Ok(resp) => {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let code = resp.status().as_u16();
                Ok((code, AttemptOutcome::Status { code, retry_after }))
            }
            Err(e) if is_refused(&e) => Err(format!("refused: {}", root_cause(&e))),
            Err(_) => Ok((0, AttemptOutcome::Transport)),
        }
    }
}

/// True when the guarded resolver refused the target (not worth retrying).
fn is_refused(e: &reqwest::Error) -> bool {
    root_cause(e).contains(target::REFUSED_MARKER)
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
