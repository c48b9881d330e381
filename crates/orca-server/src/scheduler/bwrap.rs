//! Bubblewrap (`bwrap`) around the local runner's workers (`ORCA_LOCAL_SANDBOX`, default
//! `auto`: used when `bwrap` is installed and can create a sandbox here).
//!
//! What it isolates:
//! - **files:** the whole host is mounted read-only; only the job's own directory
//!   (`<data dir>/work/<job id>`: its workspace and home) is writable;
//! - **hidden:** the server user's home, `/home`, `/root`, the server's data dir (other jobs,
//!   the databases) and `/run` (the Docker, containerd and D-Bus sockets), each replaced by an
//!   empty tmpfs; `/tmp` is a private tmpfs. The worker binary and the agent CLIs
//!   (`ORCA_CLAUDE_BIN`, `ORCA_CODEX_BIN`) are mounted back read-only;
//! - **processes:** own PID, IPC, UTS and cgroup namespaces (the worker sees only its own
//!   processes), a user namespace in which it is uid/gid 10001 with no capabilities,
//!   no-new-privileges, and it dies with the server;
//! - **limits:** with a writable cgroup hierarchy (root, or a delegated cgroup v2 subtree) the
//!   pids and memory limits of [`super::limits`] apply ([`super::cgroup`]).
//!
//! What it does not isolate: the **network** (shared with the host, so the worker reaches
//! loopback services, including this server's API and abstract Unix sockets; clones and model
//! APIs need it), **CPU** (no quota), world-readable files outside the hidden paths (e.g.
//! `/etc`), and the kernel itself (no seccomp filter). Outside the namespace the worker's files
//! belong to the server's user. Use the Docker scheduler for a stronger sandbox.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The uid/gid the worker has inside the sandbox.
pub const SANDBOX_ID: &str = "10001";

/// A working bubblewrap and what it must hide.
#[derive(Debug, Clone)]
pub struct Bwrap {
    bin: PathBuf,
    hidden: Vec<PathBuf>,
    read_only: Vec<PathBuf>,
}

impl Bwrap {
    /// Finds `bwrap` on PATH and checks that it can build a sandbox here (user namespaces may
    /// be disabled); the error says why not.
    pub fn detect(data_dir: &Path, worker_bin: &Path) -> Result<Bwrap, String> {
        let bin = std::env::var_os("PATH")
            .and_then(|p| std::env::split_paths(&p).map(|d| d.join("bwrap")).find(|p| p.is_file()))
            .ok_or("bwrap (bubblewrap) is not installed")?;
        let mut hidden = vec![PathBuf::from("/home"), PathBuf::from("/root")];
        if let Some(home) = dirs::home_dir().filter(|h| h != Path::new("/")) {
            hidden.push(home);
        }
        hidden.push(data_dir.canonicalize().unwrap_or_else(|_| data_dir.to_owned()));
        let bwrap = Bwrap { bin, hidden, read_only: vec![worker_bin.to_owned()] };
        std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let out = bwrap
            .command(data_dir, data_dir, Path::new("/bin/true"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bwrap.bin.display()))?;
        if !out.status.success() {
            return Err(format!("bwrap cannot create a sandbox here: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(bwrap)
    }

    /// Also mounts these paths back read-only (e.g. agent CLIs under a hidden home).
    pub fn with_read_only(mut self, paths: impl IntoIterator<Item = PathBuf>) -> Self {
        self.read_only.extend(paths);
        self
    }

    /// `bwrap … -- program`: `job_dir` writable, started in `work_dir`.
    pub fn command(&self, job_dir: &Path, work_dir: &Path, program: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(self.args(job_dir, work_dir)).arg("--").arg(program);
        cmd
    }

    /// The arguments before `--`.
    pub fn args(&self, job_dir: &Path, work_dir: &Path) -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        let mut a: Vec<String> = [
            "--unshare-all",
            "--share-net",
            "--unshare-user",
            "--uid",
            SANDBOX_ID,
            "--gid",
            SANDBOX_ID,
            "--cap-drop",
            "ALL",
            "--die-with-parent",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            "/run",
            // DNS on hosts whose /etc/resolv.conf points into /run.
            "--ro-bind-try",
            "/run/systemd/resolve",
            "/run/systemd/resolve",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        // Parents before children, so a hidden path inside another is hidden too.
        let mut hidden = self.hidden.clone();
        hidden.sort();
        hidden.dedup();
        for h in &hidden {
            a.extend(["--tmpfs".into(), s(h)]);
        }
        for r in &self.read_only {
            a.extend(["--ro-bind-try".into(), s(r), s(r)]);
        }
        a.extend(["--bind".into(), s(job_dir), s(job_dir), "--chdir".into(), s(work_dir)]);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_job_dir_is_writable_and_the_data_dir_is_hidden() {
        let b = Bwrap {
            bin: "/usr/bin/bwrap".into(),
            hidden: vec!["/root".into(), "/home".into(), "/root/.local/share/orca".into()],
            read_only: vec!["/root/target/orca-worker".into()],
        };
        let a = b.args(Path::new("/root/.local/share/orca/work/j"), Path::new("/root/.local/share/orca/work/j/workspace"));
        let s = a.join(" ");
        assert!(s.contains("--ro-bind / /") && s.contains("--tmpfs /tmp") && s.contains("--tmpfs /run"), "{s}");
        assert!(s.contains("--unshare-all --share-net --unshare-user --uid 10001 --gid 10001 --cap-drop ALL"), "{s}");
        let pos = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle} missing in {s}"));
        // The data dir is hidden after /root (its parent), and the job dir bound last.
        assert!(pos("--tmpfs /root ") < pos("--tmpfs /root/.local/share/orca "));
        assert!(pos("--tmpfs /root/.local/share/orca ") < pos("--bind /root/.local/share/orca/work/j "));
        assert!(pos("--ro-bind-try /root/target/orca-worker") < pos("--bind /root/.local/share/orca/work/j "));
        assert_eq!(a.iter().filter(|x| *x == "--bind").count(), 1, "one writable path: {s}");
        assert!(s.ends_with("--chdir /root/.local/share/orca/work/j/workspace"));
    }
}
