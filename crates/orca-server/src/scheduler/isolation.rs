//! How the local runner isolates its workers: bubblewrap ([`super::bwrap`]) for files,
//! processes and privileges, cgroups ([`super::cgroup`]) for the pids and memory limits.
//! Chosen once at start-up from `ORCA_LOCAL_SANDBOX`; whatever is missing is said in one
//! warning line each.

use super::SchedulerError;
use super::bwrap::Bwrap;
use super::cgroup::{Cgroups, JobCgroup};
use super::limits::{LimitsPolicy, Resources};
use crate::config::LocalSandbox;
use orca_core::{JobConfig, JobId};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// The local runner's sandbox (possibly none).
#[derive(Debug, Clone, Default)]
pub struct Isolation {
    bwrap: Option<Bwrap>,
    cgroups: Option<Cgroups>,
    limits: LimitsPolicy,
}

impl Isolation {
    /// Detects bubblewrap and cgroups per `mode`; `bwrap` mode fails without bubblewrap.
    pub fn setup(mode: LocalSandbox, limits: LimitsPolicy, data_dir: &Path, worker_bin: &Path) -> Result<Isolation, SchedulerError> {
        if mode == LocalSandbox::None {
            tracing::warn!("local runner: ORCA_LOCAL_SANDBOX=none: workers run unsandboxed, as the server's user, with its files");
            return Ok(Isolation { limits, ..Default::default() });
        }
        let bwrap = match Bwrap::detect(data_dir, worker_bin) {
            Ok(b) => Some(b),
            Err(why) if mode == LocalSandbox::Bwrap => {
                return Err(SchedulerError::Unavailable(format!("ORCA_LOCAL_SANDBOX=bwrap but {why}")));
            }
            Err(why) => {
                tracing::warn!("local runner: {why}: workers run unsandboxed, as the server's user, with its files (install bubblewrap, or use ORCA_SCHEDULER=docker)");
                None
            }
        };
        let cgroups = match Cgroups::detect() {
            Ok(c) => Some(c),
            Err(why) => {
                tracing::warn!("local runner: no writable cgroup ({why}): pids and memory limits are not enforced");
                None
            }
        };
        Ok(Isolation { bwrap, cgroups, limits })
    }

    pub fn is_sandboxed(&self) -> bool {
        self.bwrap.is_some()
    }

    /// The command that runs the worker: inside bubblewrap (with `job_dir` writable and the
    /// agent CLIs in `read_only` visible) or directly.
    ///
    /// Stopping sends SIGTERM to the whole process group. bubblewrap does not forward signals
    /// and dies of SIGTERM, killing the sandbox before the worker could say why it stops; so
    /// bubblewrap is started with SIGTERM ignored. The worker installs its own SIGTERM handler
    /// (which also gives its children the default disposition back when they exec), so it still
    /// gets the signal; SIGKILL after the grace period ends everything.
    pub fn command(&self, worker_bin: &Path, job_dir: &Path, work_dir: &Path, read_only: Vec<PathBuf>) -> Command {
        match &self.bwrap {
            Some(b) => {
                let mut cmd = Command::from(b.clone().with_read_only(read_only).command(job_dir, work_dir, worker_bin));
                // SAFETY: sigaction is async-signal-safe; nothing else runs between fork and exec.
                unsafe {
                    cmd.pre_exec(|| {
                        nix::sys::signal::signal(nix::sys::signal::Signal::SIGTERM, nix::sys::signal::SigHandler::SigIgn)
                            .map(|_| ())
                            .map_err(std::io::Error::from)
                    })
                };
                cmd
            }
            None => Command::new(worker_bin),
        }
    }

    /// The job's cgroup with its limits, when cgroups are usable.
    pub fn cgroup(&self, job_id: JobId, config_json: &str) -> Option<(JobCgroup, Resources)> {
        let cgroups = self.cgroups.as_ref()?;
        let config: JobConfig = serde_json::from_str(config_json).unwrap_or_default();
        let res = self.limits.resolve(&config);
        match cgroups.create(&format!("orca-{job_id}"), res) {
            Ok(cg) => Some((cg, res)),
            Err(e) => {
                tracing::warn!(job_id = %job_id, "cannot create the job's cgroup ({e}); running it without pids and memory limits");
                None
            }
        }
    }

    pub fn limits(&self) -> &LimitsPolicy {
        &self.limits
    }
}
