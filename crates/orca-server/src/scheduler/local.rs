//! The local scheduler: each worker is a child process of the server, in its own process
//! group and its own directory under `<data dir>/work/<job id>/`.
//!
//! Events travel over the child's stdout (one JSON event per line): no port, no token, the
//! pipe keeps them in order and applies back-pressure, and when the server dies the worker's
//! next write fails and it exits. The child's stderr goes to the server log at debug level.
//!
//! The child gets a clean environment: the worker contract plus PATH, LANG, a per-job HOME and
//! the agent variables ([`crate::agent_env`]: model keys and endpoints), nothing else of the
//! server's (no DATABASE_URL).
//! Stopping sends SIGTERM to the whole group, waits the grace period, then SIGKILLs it; once
//! the worker itself exits, whatever it left in its group is killed too.
//!
//! Sandbox ([`super::isolation`]): when bubblewrap is installed the worker runs inside it
//! (only its job directory writable, a private /tmp, its own PID namespace, the home dirs and
//! the data dir hidden; see [`super::bwrap`] for what it does and does not isolate), and with a
//! writable cgroup hierarchy under pids and memory limits. Without bubblewrap the server says
//! so at start-up, in one warning line.

use super::{Scheduler, SchedulerError, StartedWorker, WorkerControl, WorkerExit, WorkerSpec};
use async_trait::async_trait;
use futures::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Longest event line accepted from a worker; longer lines are dropped with a warning line.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

pub struct LocalScheduler {
    worker_bin: PathBuf,
    work_root: PathBuf,
    agent_env: crate::agent_env::AgentEnv,
    /// Bubblewrap and cgroups, when set up (see [`super::isolation`]).
    isolation: super::isolation::Isolation,
}

impl LocalScheduler {
    /// `worker_bin`: explicit path (ORCA_WORKER_BIN), else `orca-worker` beside the running
    /// executable, else on PATH.
    pub fn new(worker_bin: Option<PathBuf>, data_dir: &Path) -> Result<Self, SchedulerError> {
        let worker_bin = match worker_bin {
            Some(p) if p.is_file() => p,
            Some(p) => return Err(SchedulerError::Unavailable(format!("ORCA_WORKER_BIN={} is not a file", p.display()))),
            None => find_worker().ok_or_else(|| {
                SchedulerError::Unavailable(
                    "cannot find the orca-worker binary beside this executable or on PATH; build it (cargo build --release) or set ORCA_WORKER_BIN".into(),
                )
            })?,
        };
        Ok(Self { worker_bin, work_root: data_dir.join("work"), agent_env: Default::default(), isolation: Default::default() })
    }

    /// Runs workers in bubblewrap and cgroups as `mode` says (see [`super::bwrap`]); without
    /// this call they run unsandboxed.
    pub fn with_sandbox(mut self, mode: crate::config::LocalSandbox, limits: super::limits::LimitsPolicy, data_dir: &Path) -> Result<Self, SchedulerError> {
        self.isolation = super::isolation::Isolation::setup(mode, limits, data_dir, &self.worker_bin)?;
        Ok(self)
    }

    /// Hands `env` (model keys, base URLs, CLI paths) to every worker.
    pub fn with_agent_env(mut self, env: crate::agent_env::AgentEnv) -> Self {
        self.agent_env = env;
        self
    }

    pub fn worker_bin(&self) -> &Path {
        &self.worker_bin
    }
}

fn find_worker() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok()?.parent()?.join("orca-worker");
    if beside.is_file() {
        return Some(beside);
    }
    // Test binaries live in target/<profile>/deps; the worker is one level up.
    let up = std::env::current_exe().ok()?.parent()?.parent()?.join("orca-worker");
    if up.is_file() {
        return Some(up);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("orca-worker")).find(|p| p.is_file()))
}

struct GroupControl {
    pgid: Pid,
    exited: watch::Receiver<Option<WorkerExit>>,
}

#[async_trait]
impl WorkerControl for GroupControl {
    async fn stop(&self, grace: Duration) {
        let _ = killpg(self.pgid, Signal::SIGTERM);
        let mut exited = self.exited.clone();
        let graceful = tokio::time::timeout(grace, exited.wait_for(Option::is_some)).await;
        if graceful.is_err() {
            tracing::warn!(pgid = %self.pgid, "worker ignored SIGTERM for {grace:?}; sending SIGKILL");
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

#[async_trait]
impl Scheduler for LocalScheduler {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn start(&self, spec: WorkerSpec) -> Result<StartedWorker, SchedulerError> {
        let dir = self.work_root.join(spec.job_id.to_string());
        let (work_dir, home) = (dir.join("workspace"), dir.join("home"));
        for d in [&work_dir, &home] {
            tokio::fs::create_dir_all(d).await.map_err(|e| SchedulerError::Start(format!("cannot create {}: {e}", d.display())))?;
        }
        // The agent CLIs (ORCA_*_BIN) and the files beside them stay visible, read-only, inside
        // bubblewrap.
        let agent_bins = self
            .agent_env
            .vars()
            .iter()
            .filter(|(k, _)| k.ends_with("_BIN"))
            .filter_map(|(_, v)| Path::new(v.expose()).parent().map(Path::to_path_buf))
            .collect();
        let mut cmd = self.isolation.command(&self.worker_bin, &dir, &work_dir, agent_bins);
        let cgroup = self.isolation.cgroup(spec.job_id, &spec.config_json);
        if let Some((cg, _)) = &cgroup {
            // SAFETY: the hook only makes raw system calls (open, write) on prepared paths.
            unsafe { cmd.pre_exec(cg.hook()) };
        }
        cmd.env_clear()
            .envs(spec.env(&work_dir.to_string_lossy()))
            .env("HOME", &home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
            .env("LANG", "C.UTF-8")
            .envs(self.agent_env.vars().iter().map(|(k, v)| (*k, v.expose())))
            .current_dir(&work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| SchedulerError::Start(format!("cannot run {}: {e}", self.worker_bin.display())))?;
        let pid = child.id().ok_or_else(|| SchedulerError::Start("worker exited before it could be observed".into()))?;
        let pgid = Pid::from_raw(pid as i32);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let job_id = spec.job_id;
        tokio::spawn(async move {
            let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(64 * 1024));
            while let Some(line) = lines.next().await {
                if let Ok(line) = line {
                    tracing::debug!(job_id = %job_id, "worker: {line}");
                }
            }
        });
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(st) => match (st.code(), st.signal()) {
                    (Some(c), _) => WorkerExit::Exited(c),
                    (None, Some(s)) => WorkerExit::Signaled(s),
                    (None, None) => WorkerExit::Lost("unknown exit status".into()),
                },
                Err(e) => WorkerExit::Lost(format!("cannot wait for the worker: {e}")),
            };
            // Whatever the worker left behind in its group goes with it.
            let _ = killpg(pgid, Signal::SIGKILL);
            let exit = match cgroup {
                Some((cg, res)) => {
                    let exit = if cg.oom_killed() { WorkerExit::OutOfMemory { limit_mb: Some(res.memory_mb.into()) } } else { exit };
                    let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
                    exit
                }
                None => exit,
            };
            let _ = tx.send(Some(exit));
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
                tracing::warn!(job_id = %job_id, "could not remove {}: {e}", dir.display());
            }
        });
        let output = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES)).filter_map(|line| async move {
            match line {
                Ok(l) if l.trim().is_empty() => None,
                Ok(l) => Some(l),
                Err(LinesCodecError::MaxLineLengthExceeded) => Some(
                    serde_json::json!({"type": "warning", "message": format!("dropped an output line longer than {MAX_LINE_BYTES} bytes")}).to_string(),
                ),
                Err(LinesCodecError::Io(_)) => None,
            }
        });
        let mut exit_rx = rx.clone();
        let exit = Box::pin(async move {
            match exit_rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone().expect("checked is_some"),
                Err(_) => WorkerExit::Lost("exit watcher dropped".into()),
            }
        });
        Ok(StartedWorker { output: Some(output.boxed()), exit, control: Arc::new(GroupControl { pgid, exited: rx }) })
    }

    fn validate(&self, config: &orca_core::JobConfig) -> Result<(), orca_core::ValidationErrors> {
        self.isolation.limits().check(config)
    }

    async fn health(&self) -> Result<(), SchedulerError> {
        if self.worker_bin.is_file() {
            Ok(())
        } else {
            Err(SchedulerError::Unavailable(format!("{} is gone", self.worker_bin.display())))
        }
    }
}
