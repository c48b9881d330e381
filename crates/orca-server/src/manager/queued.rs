//! A job's `queued` event: announced after the submitter has its answer, and written first by
//! whoever moves the job out of the queue if the announcement has not landed by then.
//!
//! Submitting stores the job (that is what makes it accepted) and answers at once; appending
//! `queued` to the event stream runs beside it, off the request's path. Every move out of
//! `queued` (a claim, a cancel) first calls [`JobManager::announce_queued`], an
//! [`EventBus::append_first`](crate::events::EventBus::append_first): the event is written
//! exactly once, by whichever comes first, so `queued` is always event 1 even when the
//! announcing instance died in between.
//!
//! **Invariant:** the `queued` event of a job is a pure function of the stored job
//! ([`queued_event`]), so it does not matter who writes it.

use super::{JobManager, ManagerError};
use orca_core::{AgentEvent, Job, JobStatus};
use std::sync::Arc;

/// The first event of `job`: `queued`, with the job it retries as the reason.
pub fn queued_event(job: &Job) -> AgentEvent {
    AgentEvent::status(JobStatus::Queued, job.retry_of.map(|r| format!("retry of {r}")), None)
}

impl JobManager {
    /// Stores a new job, then announces it in the background (see the module doc).
    pub(super) async fn enqueue(self: &Arc<Self>, job: &Job) -> Result<(), ManagerError> {
        self.store.insert(job).await?;
        let (this, job) = (self.clone(), job.clone());
        self.tasks.spawn(async move {
            if let Err(e) = this.announce_queued(&job).await {
                tracing::warn!(job_id = %job.id, "cannot announce the queued job (its first mover will): {e}");
            }
        });
        Ok(())
    }

    /// Makes sure the job's stream starts with its `queued` event.
    pub(super) async fn announce_queued(&self, job: &Job) -> Result<(), ManagerError> {
        self.bus.append_first(job.id, queued_event(job)).await?;
        Ok(())
    }
}
