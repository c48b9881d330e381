//! Orchestration: one job from start to exit code.
//!
//! [`run`] starts the event writer, then supervises the work (clone, agent, then the diff and
//! the push) against the hard timeout, the soft timeout at 80 % (a warning, and the agent is
//! asked to wrap up: [`Stop::WrapUp`], SIGINT for CLI agents), SIGTERM and SIGINT (the agent
//! is asked to stop, [`Stop::Terminate`], and gets [`STOP_GRACE`] to flush its last events).
//! Whatever ends the job, the work future is then dropped (which kills any child process
//! group), the supervisor's own event is queued after everything the agent said, and the
//! writer is given a bounded time to flush before the exit code is returned.
//!
//! After the agent, with a repository: the `changes` event (always, even when the agent
//! failed), then, if the job asked and the agent succeeded, the commit, the push and the
//! `pushed` event. An agent stopped at the soft timeout exits 124 like a hard timeout, but its
//! changes are recorded.

use crate::agents::{self, Agent, AgentContext, AgentFailure, AgentSettings, Stop, StopSignal};
use crate::env::Config;
use crate::exit_code;
use crate::git::push::PushSpec;
use crate::git::{self, CloneSpec};
use crate::log;
use crate::sink::{self, Emitter, EventSink};
use orca_core::{AgentEvent, Secret};
use std::future::pending;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;

/// Events buffered between the agent and the sink; a slow reader slows the agent down.
const EVENT_BUFFER: usize = 256;
/// How long the supervisor waits to queue its last event, and the writer to flush.
const FINAL_WRITE_LIMIT: Duration = Duration::from_secs(5);
/// The soft timeout, as a fraction of `TIMEOUT_SECONDS`.
const SOFT_TIMEOUT_FRACTION: f64 = 0.8;
/// How long an agent gets to stop after the worker forwards SIGTERM or SIGINT to it (well
/// under the backend's grace period between its SIGTERM and SIGKILL).
const STOP_GRACE: Duration = Duration::from_secs(2);

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
    let (stop, stop_rx) = watch::channel(Stop::No);
    let mut work = Box::pin(work(cfg, events.clone(), stop_rx));
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
                let message = format!("soft timeout: 80% of {}s used; asking the agent to wrap up", cfg.timeout_seconds);
                log::warn(&message);
                events.emit_within(AgentEvent::Warning { message }, FINAL_WRITE_LIMIT).await;
                stop.send_replace(Stop::WrapUp);
            }
        }
    };
    if let Ending::Signal(name, _) = ending {
        // Ask the agent to stop (its CLI gets the signal) and let it say its last words.
        log::warn(&format!("worker received {name}; stopping the agent"));
        stop.send_replace(Stop::Terminate);
        let _ = tokio::time::timeout(STOP_GRACE, &mut work).await;
    }
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

/// The job's repository once cloned.
struct Repo {
    dir: PathBuf,
    /// The remote, without credentials.
    url: String,
    token: Option<Secret>,
    /// The commit checked out.
    base: Option<String>,
}

/// Clone (if asked), run the agent, then record the changes and push them (if asked).
/// Returns the exit code; failures are emitted as events.
async fn work(cfg: &Config, events: Emitter, stop: StopSignal) -> i32 {
    events.log(format!("worker started (agent {})", cfg.agent_type)).await;
    let agent = match agents::select(&cfg.agent_type) {
        Ok(a) => a,
        Err(f) => return fail(&events, f).await,
    };
    let settings = match AgentSettings::from_env() {
        Ok(s) => s,
        Err(e) => return fail(&events, AgentFailure::new(format!("bad environment: {e}"), exit_code::BAD_ENV)).await,
    };
    if let Err(e) = tokio::fs::create_dir_all(&cfg.work_dir).await {
        let message = format!("cannot create WORK_DIR {}: {e}", cfg.work_dir.display());
        return fail(&events, AgentFailure::new(message, exit_code::BAD_ENV)).await;
    }
    let repo = match &cfg.repo_url {
        None => None,
        Some(url) => match checkout(cfg, url, &events).await {
            Ok(r) => Some(r),
            Err(f) => return fail(&events, f).await,
        },
    };
    let dir = repo.as_ref().map_or_else(|| cfg.work_dir.clone(), |r| r.dir.clone());
    let ctx = AgentContext {
        job_id: cfg.job_id.clone(),
        prompt: cfg.prompt.clone(),
        dir,
        config: cfg.job.clone(),
        settings,
        stop: stop.clone(),
    };
    log::info(&format!("running agent {} in {}", cfg.agent_type, ctx.dir.display()));
    let outcome = agent.run(&ctx, &events).await;
    let mut code = match outcome {
        Ok(()) => exit_code::SUCCESS,
        Err(f) => fail(&events, f).await,
    };
    if *stop.borrow() == Stop::Terminate {
        return code; // no time for git now
    }
    if let Some(repo) = &repo {
        match git::changes::collect(&repo.dir, repo.base.as_deref()).await {
            Ok(changes) => {
                let d = changes.diffstat;
                log::info(&format!("changes: {} files, +{} -{}", d.files_changed, d.insertions, d.deletions));
                events.emit(AgentEvent::Changes(changes)).await;
            }
            Err(e) => events.emit(AgentEvent::Warning { message: format!("could not record the changes: {e}") }).await,
        }
        let target = cfg.job.push_branch.as_ref().and_then(|p| p.target(&cfg.job_id));
        if let (Some(branch), exit_code::SUCCESS) = (target, code) {
            code = push(cfg, repo, &branch, &events).await;
        }
    }
    code
}

/// Clones the job's repository into `WORK_DIR/repo`.
async fn checkout(cfg: &Config, url: &str, events: &Emitter) -> Result<Repo, AgentFailure> {
    let (url, token) = git::auth::split_credentials(url, cfg.git_token.as_ref());
    let token = match token {
        Some(_) if !git::auth::token_applies(&url) => {
            let message = "the git token is only used for http(s) repositories; cloning without it".to_owned();
            events.emit(AgentEvent::Warning { message }).await;
            None
        }
        t => t,
    };
    let dest = cfg.work_dir.join("repo");
    let shown = git::redact(&url, token.as_ref().map(Secret::expose));
    let branch = cfg.branch.as_deref().map(|b| format!(" (branch {b})")).unwrap_or_default();
    events.log(format!("cloning {shown}{branch} into {}", dest.display())).await;
    let spec = CloneSpec { url: &url, branch: cfg.branch.as_deref(), dest: &dest, token: token.as_ref() };
    let cloned = git::clone(spec).await.map_err(|e| AgentFailure::new(e.message, exit_code::CLONE_FAILED))?;
    let at = cloned.head.as_deref().map(|h| format!(" at {}", &h[..h.len().min(12)])).unwrap_or_default();
    events.log(format!("cloned {shown}{branch}{at}")).await;
    Ok(Repo { dir: dest, url, token, base: cloned.head })
}

/// Commits and pushes the agent's work to `branch`; returns the exit code.
async fn push(cfg: &Config, repo: &Repo, branch: &str, events: &Emitter) -> i32 {
    let message = git::push::message(&cfg.job_id, cfg.agent_type.as_str(), &cfg.prompt);
    let scratch = cfg.work_dir.join(".orca");
    let spec = PushSpec {
        repo: &repo.dir,
        scratch: &scratch,
        url: &repo.url,
        token: repo.token.as_ref().filter(|_| git::auth::token_applies(&repo.url)),
        branch,
        base: repo.base.as_deref(),
        message: &message,
    };
    events.log(format!("pushing the changes to branch {branch}")).await;
    match git::push::commit_and_push(spec).await {
        Ok(Some(p)) => {
            events.log(format!("pushed {} to branch {}", p.commit, p.branch)).await;
            events.emit(AgentEvent::Pushed { branch: p.branch, commit: p.commit }).await;
            exit_code::SUCCESS
        }
        Ok(None) => {
            events.emit(AgentEvent::Warning { message: format!("nothing to push to {branch}: the agent changed nothing") }).await;
            exit_code::SUCCESS
        }
        Err(e) => fail(events, AgentFailure::new(format!("push failed: {e}"), exit_code::PUSH_FAILED)).await,
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
