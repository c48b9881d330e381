//! Orca's domain: what a job is, how its lifecycle moves, and what its events look like.
//!
//! This crate owns the vocabulary every other crate speaks: [`Job`], [`JobStatus`] and its one
//! state machine ([`JobStatus::can_transition_to`], [`Job::transition`]), the validated request
//! types ([`NewJob`], [`JobFilter`]) and the versioned event schema ([`AgentEvent`],
//! [`EventRecord`]).
//!
//! **Invariant:** nothing here does I/O, reads the clock or the environment. Callers pass `now`.

pub mod agent;
pub mod agent_options;
pub mod changes;
pub mod event;
pub mod filter;
pub mod job;
pub mod new_job;
pub mod redis_events;
pub mod sandbox;
pub mod state;
pub mod validation;

pub use agent::AgentType;
pub use event::{AgentEvent, EventId, EventRecord, EVENT_SCHEMA_VERSION};
pub use filter::{JobFilter, JobPage};
pub use changes::{Changes, ChangesSummary};
pub use job::{Job, JobConfig, JobId, JobOutcome, Secret};
pub use new_job::NewJob;
pub use state::{FailureClass, IllegalTransition, JobStatus, StatusChange};
pub use validation::{FieldError, ValidationErrors};
