//! `orca-worker`: runs one job inside its sandbox and streams what happens as NDJSON events.
//!
//! The backend starts this binary with the job in its environment (see [`orca_worker::env`])
//! and reads one [`orca_core::AgentEvent`] per line from stdout; logs go to stderr. With
//! `REDIS_URL` set the worker appends its events to the job's Redis stream instead
//! ([`orca_worker::sink_redis`]).
//!
//! Exit codes:
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | the agent finished and reported success |
//! | 1    | the agent failed (or is not available in this worker) |
//! | 2    | bad environment: a required variable is missing or a value is invalid |
//! | 3    | `git clone` of `REPO_URL` failed |
//! | 4    | the agent succeeded, but committing or pushing its changes (`pushBranch`) failed |
//! | 124  | timeout: `TIMEOUT_SECONDS` elapsed, or the agent stopped without success after the soft timeout asked it to wrap up |
//! | 130  | stopped by SIGINT |
//! | 141  | nobody reads the events any more (the backend went away, or Redis stayed unreachable with `REDIS_URL` set) |
//! | 143  | stopped by SIGTERM |
//!
//! The echo agent may also exit with the code its job asked for (`echoExitCode`).

fn main() {
    std::process::exit(orca_worker::main_entry());
}
