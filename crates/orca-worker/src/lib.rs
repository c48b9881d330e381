//! The worker as a library: everything `orca-worker` does, so tests can reach the parts.
//!
//! Flow: [`env`] parses the contract into a [`env::Config`]; [`run`] clones the repository
//! ([`git`]), runs the agent ([`agents`]) and enforces timeouts and signals, while every event
//! goes through one [`sink::Emitter`] to the NDJSON [`sink::EventSink`] on stdout, or, with
//! `REDIS_URL` set, to the job's Redis stream ([`sink_redis`]).

pub mod agents;
pub mod env;
pub mod git;
pub mod log;
pub mod probe;
pub mod proc;
pub mod run;
pub mod secrets;
pub mod sink;
pub mod sink_redis;

/// The worker's exit codes (the table is in the binary's documentation).
pub mod exit_code {
    pub const SUCCESS: i32 = 0;
    pub const AGENT_FAILED: i32 = 1;
    pub const BAD_ENV: i32 = 2;
    pub const CLONE_FAILED: i32 = 3;
    /// The agent succeeded but committing or pushing its changes failed.
    pub const PUSH_FAILED: i32 = 4;
    pub const TIMEOUT: i32 = 124;
    pub const SIGINT: i32 = 130;
    pub const SIGTERM: i32 = 143;
    /// Nobody reads the events any more (the backend went away): 128 + SIGPIPE.
    pub const SINK_LOST: i32 = 141;
}

/// The whole worker: parse the environment, run the job, return the process exit code.
pub fn main_entry() -> i32 {
    // Started by git as its credential helper (see `git::auth`): answer and leave.
    if git::auth::is_askpass_invocation() {
        return git::auth::askpass_main();
    }
    // Secrets sent on stdin (Docker scheduler) become environment variables first.
    if let Err(e) = secrets::load() {
        eprintln!("orca-worker: bad environment: {e}");
        sink::write_line_blocking(&orca_core::AgentEvent::Error { message: format!("bad environment: {e}") });
        return exit_code::BAD_ENV;
    }
    let config = match env::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("orca-worker: bad environment: {e}");
            // Also tell the backend why, as an event: it shows the last error as the reason.
            let ev = orca_core::AgentEvent::Error { message: format!("bad environment: {e}") };
            sink::write_line_blocking(&ev);
            return exit_code::BAD_ENV;
        }
    };
    log::set_level(config.log_level);
    // Still single-threaded here, so changing the environment is sound. Children (git, agents)
    // must not inherit the token; whoever needs it gets it explicitly from `config`.
    // SAFETY: no other thread exists yet that could read the environment concurrently.
    unsafe { std::env::remove_var("GIT_TOKEN") };
    // With REDIS_URL the events go to Redis directly (see `sink_redis`); the URL may hold a
    // password, so children do not inherit it either.
    let redis = match sink_redis::Settings::from_env() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("orca-worker: bad environment: {e}");
            sink::write_line_blocking(&orca_core::AgentEvent::Error { message: format!("bad environment: {e}") });
            return exit_code::BAD_ENV;
        }
    };
    // SAFETY: as above, still single-threaded.
    unsafe { std::env::remove_var("REDIS_URL") };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("orca-worker: cannot start the async runtime: {e}");
            return exit_code::AGENT_FAILED;
        }
    };
    let code = match redis {
        None => runtime.block_on(run::run(config, sink::NdjsonSink::stdout())),
        Some(settings) => runtime.block_on(async {
            match sink_redis::RedisSink::connect(&settings, &config.job_id).await {
                Ok(redis_sink) => run::run(config, redis_sink).await,
                Err(e) => {
                    log::error(&e);
                    exit_code::SINK_LOST
                }
            }
        }),
    };
    // Do not wait for blocking threads (e.g. a write to a stuck stdout): the process exits now.
    runtime.shutdown_background();
    code
}
