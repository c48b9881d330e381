//! Orchestration: one job from start to exit code.
//!
//! [`run`] starts the event writer, then supervises the work (clone, then agent) against the
//! hard timeout, the soft-timeout warning at 80 %, SIGTERM and SIGINT. Whatever ends the job,
//! the work future is dropped first (which kills any child process group), then the
//! supervisor's own event is queued after everything the agent said, and the writer is given a
//! bounded time to flush before the exit code is returned.

use crate::agents::{self, Agent, AgentContext, AgentFailure};
use crate::env::Config;
use crate::exit_code;
use crate::git::{self, CloneSpec};
use crate::log;
use crate::sink::{self, Emitter, EventSink};
use orca_core::AgentEvent;
use std::future::pending;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;

/// Events buffered between the agent and the sink; a slow reader slows the agent down.
const EVENT_BUFFER: usize = 256;
/// How long the supervisor waits to queue its last event, and the writer to flush.
const FINAL_WRITE_LIMIT: Duration = Duration::from_secs(5);
/// The soft timeout, as a fraction of `TIMEOUT_SECONDS`.
const SOFT_TIMEOUT_FRACTION: f64 = 0.8;

/// Runs the job described by `cfg`, writing events to `sink`; returns the exit code.
pub async fn run<S: EventSink>(cfg: Config, sink: S) -> i32 {
    let started = Instant::now();
    // First thing: from now on SIGTERM and SIGINT are handled, not fatal.
    let signals = Signals::install();
    let (events, rx) = Emitter::channel(EVENT_BUFFER);
    let writer = tokio::spawn(sink::drain(sink, rx));
    let code = supervise(&cfg, &events, started, signals).await;
    drop(events);
    if tokio::time::timeout(FINAL_WRITE_LIMIT, writer).await.is_err() {
        log::error("events were not all written within 5s; exiting anyway");
    }
    log::info(&format!("exiting with code {code}"));
    code
}

enum Ending {
    Finished(i32),
    HardTimeout,
    SinkLost,
    Signal(&'static str, i32),
}

async fn supervise(cfg: &Config, events: &Emitter, started: Instant, mut signals: Signals) -> i32 {
    let limit = cfg.timeout();
    let hard = tokio::time::sleep_until(started + limit);
    let soft = tokio::time::sleep_until(started + limit.mul_f64(SOFT_TIMEOUT_FRACTION));
    tokio::pin!(hard, soft);
    let mut work = Box::pin(work(cfg, events.clone()));
    let mut warned = false;
    let ending = loop {
        tokio::select! {
            biased;
            code = &mut work => break Ending::Finished(code),
            () = recv(&mut signals.term) => break Ending::Signal("SIGTERM", exit_code::SIGTERM),
            () = recv(&mut signals.int) => break Ending::Signal("SIGINT", exit_code::SIGINT),
            () = &mut hard => break Ending::HardTimeout,
            () = events.closed() => break Ending::SinkLost,
            () = &mut soft, if !warned => {
                warned = true;
                let message = format!("soft timeout: 80% of {}s used", cfg.timeout_seconds);
                log::warn(&message);
                events.emit_within(AgentEvent::Warning { message }, FINAL_WRITE_LIMIT).await;
            }
        }
    };
    // Stop the agent (and kill its processes) before saying why.
    drop(work);
    let (event, code) = match ending {
        Ending::Finished(code) => return code,
        Ending::HardTimeout => {
            let message = format!("hard timeout after {}s", cfg.timeout_seconds);
            log::error(&message);
            (AgentEvent::Error { message }, exit_code::TIMEOUT)
        }
        Ending::SinkLost => {
            log::error("the event reader went away (the backend stopped?); stopping the agent");
            return exit_code::SINK_LOST;
        }
        Ending::Signal(name, code) => {
            let message = format!("worker received {name}; stopping");
            log::warn(&message);
            (AgentEvent::Warning { message }, code)
        }
    };
    if !events.emit_within(event, FINAL_WRITE_LIMIT).await {
        log::error("could not queue the final event");
    }
    code
}

/// Clone (if asked), then run the agent. Returns the exit code; failures are emitted as events.
async fn work(cfg: &Config, events: Emitter) -> i32 {
    events.log(format!("worker started (agent {})", cfg.agent_type)).await;
    let agent = match agents::select(&cfg.agent_type) {
        Ok(a) => a,
        Err(f) => return fail(&events, f).await,
    };
    if let Err(e) = tokio::fs::create_dir_all(&cfg.work_dir).await {
        let message = format!("cannot create WORK_DIR {}: {e}", cfg.work_dir.display());
        return fail(&events, AgentFailure::new(message, exit_code::BAD_ENV)).await;
    }
    let dir = match &cfg.repo_url {
        None => cfg.work_dir.clone(),
        Some(url) => {
            let dest = cfg.work_dir.join("repo");
            let shown = git::redact(url, cfg.git_token.as_ref().map(|t| t.expose()));
            let branch = cfg.branch.as_deref().map(|b| format!(" (branch {b})")).unwrap_or_default();
            events.log(format!("cloning {shown}{branch} into {}", dest.display())).await;
            let spec = CloneSpec { url, branch: cfg.branch.as_deref(), dest: &dest, token: cfg.git_token.as_ref() };
            if let Err(e) = git::clone(spec).await {
                return fail(&events, AgentFailure::new(e.0, exit_code::CLONE_FAILED)).await;
            }
            events.log(format!("cloned {shown}{branch} into {}", dest.display())).await;
            dest
        }
    };
    let ctx = AgentContext { job_id: cfg.job_id.clone(), prompt: cfg.prompt.clone(), dir, config: cfg.job.clone() };
    log::info(&format!("running agent {} in {}", cfg.agent_type, ctx.dir.display()));
    match agent.run(&ctx, &events).await {
        Ok(()) => exit_code::SUCCESS,
        Err(f) => fail(&events, f).await,
    }
}

async fn fail(events: &Emitter, failure: AgentFailure) -> i32 {
    log::error(&failure.message);
    events.emit(AgentEvent::Error { message: failure.message }).await;
    failure.exit_code
}

struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl Signals {
    fn install() -> Signals {
        let get = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| log::error(&format!("cannot handle {name}: {e}"))).ok()
        };
        Signals { term: get(SignalKind::terminate(), "SIGTERM"), int: get(SignalKind::interrupt(), "SIGINT") }
    }
}

/// Completes when the signal arrives; never, if its handler could not be installed.
async fn recv(sig: &mut Option<Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => pending().await,
    }
}
