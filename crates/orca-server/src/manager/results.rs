//! What a run produced, gathered from the job's events:
//! usage and cost, turns, the session id, the recorded diff, the pushed branch and commit, and
//! the last error (the precise reason a failed worker gives).
//!
//! When the worker has ended, the supervisor reads the job's events back from the bus
//! ([`JobManager::collect_results`], so it works however the events travelled: the local
//! scheduler's pipe or a worker writing to Redis) and stores the results on the job
//! ([`JobManager::record_results`]) before and after its terminal transition, so
//! `GET /api/v1/jobs/:id` and the list show them.

use super::{JobManager, ManagerError};
use orca_core::{AgentEvent, EventRecord, Job, JobId, JobOutcome, JobStatus, StatusChange};

/// Bound on compare-and-set retries when recording.
const ATTEMPTS: usize = 8;
/// Events read per page, and the most pages read, when gathering a job's results.
const PAGE: usize = 1000;
const MAX_PAGES: usize = 200;

/// The results seen so far in one job's events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResults {
    pub outcome: JobOutcome,
    /// The message of the last `error` event.
    pub last_error: Option<String>,
}

impl RunResults {
    /// Takes note of one stored event.
    pub fn observe(&mut self, rec: &EventRecord) {
        let o = &mut self.outcome;
        match &rec.event {
            AgentEvent::Session { session_id: Some(s), .. } => o.session_id = Some(s.clone()),
            AgentEvent::Usage(u) => o.usage = Some(u.clone()),
            AgentEvent::Result { num_turns, usage, session_id, .. } => {
                if num_turns.is_some() {
                    o.num_turns = *num_turns;
                }
                if let Some(u) = usage {
                    o.usage = Some(u.clone());
                }
                if let Some(s) = session_id {
                    o.session_id = Some(s.clone());
                }
            }
            AgentEvent::Changes(c) => o.changes = Some(c.summary(rec.id)),
            AgentEvent::Pushed { branch, commit } => {
                o.result_branch = Some(branch.clone());
                o.result_commit = Some(commit.clone());
            }
            AgentEvent::Error { message } => self.last_error = Some(message.clone()),
            _ => {}
        }
    }

    /// Whether anything worth storing was seen.
    pub fn is_empty(&self) -> bool {
        self.outcome == JobOutcome::default()
    }

    /// A failed worker's exit explained by its own last error:
    /// `clone failed, … (worker exited with status 3)`.
    pub fn explain(&self, change: StatusChange) -> StatusChange {
        match (&self.last_error, change.to, &change.reason) {
            (Some(err), Some(JobStatus::Failed), Some(reason)) if reason.starts_with("worker exited with status") => {
                let why = format!("{err} ({reason})");
                StatusChange { reason: Some(why), ..change }
            }
            _ => change,
        }
    }
}

/// Copies `from` into `job`'s outcome (fields `from` has override).
fn merge(job: &mut Job, from: &JobOutcome) {
    fn keep<T: Clone>(mine: &mut Option<T>, theirs: &Option<T>) {
        if theirs.is_some() {
            mine.clone_from(theirs);
        }
    }
    let o = &mut job.outcome;
    keep(&mut o.usage, &from.usage);
    keep(&mut o.num_turns, &from.num_turns);
    keep(&mut o.session_id, &from.session_id);
    keep(&mut o.result_branch, &from.result_branch);
    keep(&mut o.result_commit, &from.result_commit);
    keep(&mut o.changes, &from.changes);
}

impl JobManager {
    /// Reads the job's events (however they reached the bus) and gathers its results.
    pub(crate) async fn collect_results(&self, id: JobId) -> RunResults {
        let mut results = RunResults::default();
        let mut after = 0;
        for _ in 0..MAX_PAGES {
            match self.bus.read(id, after, PAGE).await {
                Ok(page) => {
                    for rec in &page {
                        results.observe(rec);
                    }
                    match page.last() {
                        Some(last) if page.len() == PAGE => after = last.id,
                        _ => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(job_id = %id, "cannot read the job's events to record its results: {e}");
                    break;
                }
            }
        }
        results
    }

    /// Stores `results` on the job (whatever its status), unless it already holds them.
    pub(crate) async fn record_results(&self, id: JobId, results: &RunResults) -> Result<(), ManagerError> {
        if results.is_empty() {
            return Ok(());
        }
        for _ in 0..ATTEMPTS {
            let job = self.get(id).await?;
            let mut next = job.clone();
            merge(&mut next, &results.outcome);
            if next == job || self.store.update_if_status(&next, job.status).await? {
                return Ok(());
            }
        }
        tracing::warn!(job_id = %id, "could not record the run's results: the job kept changing");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_core::event::Usage;
    use orca_core::{Changes, EVENT_SCHEMA_VERSION};

    fn rec(id: u64, event: AgentEvent) -> EventRecord {
        EventRecord {
            id,
            job_id: JobId(uuid::Uuid::nil()),
            timestamp: time::OffsetDateTime::UNIX_EPOCH,
            v: EVENT_SCHEMA_VERSION,
            event,
        }
    }

    #[test]
    fn gathers_the_outcome_from_events() {
        let mut r = RunResults::default();
        let usage = Usage { input_tokens: 5, output_tokens: 2, cost_usd: Some(0.01), ..Default::default() };
        r.observe(&rec(1, AgentEvent::Session { session_id: Some("s".into()), model: None }));
        r.observe(&rec(2, AgentEvent::Usage(Usage { input_tokens: 1, ..Default::default() })));
        r.observe(&rec(
            3,
            AgentEvent::Result {
                success: true,
                text: None,
                num_turns: Some(3),
                duration_ms: None,
                usage: Some(usage.clone()),
                session_id: None,
                reason: None,
            },
        ));
        r.observe(&rec(4, AgentEvent::Changes(Changes { truncated: true, ..Default::default() })));
        r.observe(&rec(5, AgentEvent::Pushed { branch: "orca/x".into(), commit: "abc".into() }));
        r.observe(&rec(6, AgentEvent::Error { message: "push failed: no".into() }));
        let o = &r.outcome;
        assert_eq!((o.session_id.as_deref(), o.num_turns, o.usage.as_ref()), (Some("s"), Some(3), Some(&usage)));
        assert_eq!(o.changes.map(|c| (c.event_id, c.truncated)), Some((4, true)));
        assert_eq!((o.result_branch.as_deref(), o.result_commit.as_deref()), (Some("orca/x"), Some("abc")));
        let failed = StatusChange::to(JobStatus::Failed).with_reason("worker exited with status 4");
        assert_eq!(r.explain(failed).reason.as_deref(), Some("push failed: no (worker exited with status 4)"));
        let cancelled = StatusChange::to(JobStatus::Cancelled).with_reason("cancelled by user");
        assert_eq!(r.explain(cancelled.clone()), cancelled);
    }
}
