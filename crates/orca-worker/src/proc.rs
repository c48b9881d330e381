//! Child processes the worker starts (git now, agent CLIs later): each runs in its own process
//! group, and the whole group is killed if the worker stops waiting for it.
//!
//! Stopping the agent on a signal or timeout means dropping its future; [`GroupChild`]'s drop
//! then sends SIGKILL to the group, so no grandchild (a git helper, an agent's shell) outlives
//! the job.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io;
use std::process::ExitStatus;
use tokio::process::{Child, Command};

/// A running child that leads its own process group.
#[derive(Debug)]
pub struct GroupChild {
    child: Child,
    pgid: Option<Pid>,
    reaped: bool,
}

impl GroupChild {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> io::Result<GroupChild> {
        cmd.process_group(0).kill_on_drop(true);
        let child = cmd.spawn()?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        Ok(GroupChild { child, pgid, reaped: false })
    }

    /// The child itself, e.g. to take its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `sig` to the whole group (while the leader is not yet reaped); false if it failed.
    pub fn signal_group(&self, sig: Signal) -> bool {
        match (self.reaped, self.pgid) {
            (false, Some(pgid)) => killpg(pgid, sig).is_ok(),
            _ => false,
        }
    }

    /// Waits for the child to exit.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        // Once the leader is reaped its pid may be reused, so only a live group is killed.
        if let (false, Some(pgid)) = (self.reaped, self.pgid) {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}
