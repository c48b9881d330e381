//! A container's end: waiting for it, turning its state into a [`WorkerExit`], stopping it
//! (SIGTERM, grace, SIGKILL) and removing it.
//!
//! The exit future does the clean-up itself (no detached task): when the job manager drops
//! it without awaiting (the backend shuts down and leaves the container to its successor),
//! nothing is removed.

use super::super::{WorkerControl, WorkerExit};
use super::{is_status, remove_options};
use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{StopContainerOptions, WaitContainerOptions};
use futures::StreamExt;
use std::path::PathBuf;
use std::time::Duration;

/// How long the exit waits for the job manager to take the last output lines.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Exit codes the worker uses itself for signals it handled (130 SIGINT, 141 SIGPIPE, 143
/// SIGTERM); other codes above 128 come from the init process: 128 + the killing signal.
const WORKER_SIGNAL_CODES: [i64; 3] = [130, 141, 143];

pub(super) struct ExitWatch {
    pub api: Docker,
    pub long: Docker,
    pub name: String,
    pub limit_mb: Option<u64>,
    /// True once the output stream has been read to its end (or dropped).
    pub done: tokio::sync::watch::Receiver<bool>,
    pub cursor: PathBuf,
}

/// Waits for the container to stop, reads why, lets the output drain, removes the container.
pub(super) async fn exit(mut w: ExitWatch) -> WorkerExit {
    let opts = WaitContainerOptions { condition: "not-running".into() };
    let code = match w.long.wait_container(&w.name, Some(opts)).next().await {
        Some(Ok(r)) => Ok(r.status_code),
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(format!("cannot wait for container {}: {e}", w.name)),
        None => Err(format!("the Docker engine stopped reporting on container {}", w.name)),
    };
    let exit = match code {
        Err(why) => WorkerExit::Lost(why),
        Ok(code) => {
            let state = w.api.inspect_container(&w.name, None).await.ok().and_then(|i| i.state);
            let oom = state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false);
            classify(code, oom, w.limit_mb)
        }
    };
    let _ = tokio::time::timeout(DRAIN_LIMIT, w.done.wait_for(|d| *d)).await;
    remove_container(&w.api, &w.name).await;
    let _ = tokio::fs::remove_file(&w.cursor).await;
    exit
}

/// The outcome of a container that stopped with `code`.
pub fn classify(code: i64, oom_killed: bool, limit_mb: Option<u64>) -> WorkerExit {
    if oom_killed {
        return WorkerExit::OutOfMemory { limit_mb };
    }
    match code {
        c if c > 128 && c <= 128 + 64 && !WORKER_SIGNAL_CODES.contains(&c) => WorkerExit::Signaled((c - 128) as i32),
        c => WorkerExit::Exited(i32::try_from(c).unwrap_or(-1)),
    }
}

/// Removes a container (force: a running one is killed) with its anonymous volumes.
pub(super) async fn remove_container(api: &Docker, name: &str) {
    match api.remove_container(name, Some(remove_options())).await {
        Ok(()) => tracing::debug!(container = %name, "removed"),
        Err(e) if is_status(&e, 404) => {}
        // 409: removal already in progress.
        Err(e) if is_status(&e, 409) => {}
        Err(e) => tracing::warn!(container = %name, "cannot remove the container: {e}"),
    }
}

/// `docker stop` with the grace period.
pub(super) struct Control {
    pub long: Docker,
    pub name: String,
    /// Ends the output stream without touching the container.
    pub detach: tokio_util::sync::CancellationToken,
}

#[async_trait]
impl WorkerControl for Control {
    async fn stop(&self, grace: Duration) {
        let t = i32::try_from(grace.as_secs_f64().ceil() as u64).unwrap_or(i32::MAX);
        let opts = StopContainerOptions { t: Some(t), signal: None };
        match self.long.stop_container(&self.name, Some(opts)).await {
            Ok(()) => tracing::info!(container = %self.name, "stopped"),
            // 304: already stopped; 404: already gone.
            Err(e) if is_status(&e, 304) || is_status(&e, 404) => {}
            Err(e) => tracing::warn!(container = %self.name, "cannot stop the container: {e}"),
        }
    }

    async fn detach(&self) {
        self.detach.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_oom() {
        assert_eq!(classify(0, false, None), WorkerExit::Exited(0));
        assert_eq!(classify(3, false, None), WorkerExit::Exited(3));
        assert_eq!(classify(124, false, None), WorkerExit::Exited(124));
        assert_eq!(classify(143, false, None), WorkerExit::Exited(143));
        assert_eq!(classify(137, false, None), WorkerExit::Signaled(9));
        assert_eq!(classify(137, true, Some(64)), WorkerExit::OutOfMemory { limit_mb: Some(64) });
        assert_eq!(
            classify(137, true, Some(64)).to_string(),
            "worker ran out of memory (limit 64 MiB) and was killed"
        );
    }
}
