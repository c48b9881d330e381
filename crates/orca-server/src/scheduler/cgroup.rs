//! Pids and memory limits for the local runner's workers, with Linux control groups.
//!
//! Each worker gets a cgroup `orca-<job id>` below the server's own cgroup (so whatever limits
//! the server itself is under still apply), with `pids.max` and the memory limit (swap
//! included), and is moved into it between fork and exec. Works with cgroup v1 (the `pids` and
//! `memory` hierarchies) and v2 (when the server's cgroup may delegate: root, or a delegated
//! subtree). Without a writable hierarchy the local runner says so once and runs without.
//!
//! After the worker exits, the OOM-kill counter tells an out-of-memory kill from other
//! SIGKILLs, and the cgroup is removed.

use super::limits::Resources;
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Where job cgroups are created.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// cgroup v2: one directory; v1: the `pids` and `memory` directories.
    parents: Vec<PathBuf>,
    v2: bool,
}

/// One job's cgroup(s).
#[derive(Debug)]
pub struct JobCgroup {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each dir, ready for the child (no allocation after fork).
    procs: Vec<CString>,
    v2: bool,
}

impl Cgroups {
    /// The server's own cgroups, if job cgroups can be created below them (checked by creating
    /// and removing one); the error says why not.
    pub fn detect() -> Result<Cgroups, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let path_of = |want: &str| {
            own.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                (ctrls.split(',').any(|c| c == want)).then(|| path.trim_start_matches('/').to_owned())
            })
        };
        let v2 = Path::new(ROOT).join("cgroup.controllers").is_file();
        let cg = if v2 {
            let own = own.lines().find_map(|l| l.strip_prefix("0::")).ok_or("no cgroup v2 entry")?.trim_start_matches('/');
            let parent = Path::new(ROOT).join(own);
            // Let the children use the pids and memory controllers.
            std::fs::write(parent.join("cgroup.subtree_control"), "+pids +memory")
                .map_err(|e| format!("cannot delegate the pids and memory controllers in {}: {e}", parent.display()))?;
            Cgroups { parents: vec![parent], v2 }
        } else {
            let pids = path_of("pids").ok_or("no pids cgroup")?;
            let memory = path_of("memory").ok_or("no memory cgroup")?;
            Cgroups { parents: vec![Path::new(ROOT).join("pids").join(pids), Path::new(ROOT).join("memory").join(memory)], v2 }
        };
        let probe = cg.create(&format!("orca-probe-{}", std::process::id()), Resources { memory_mb: 64, cpu_millis: 1000, pids: 64 })
            .map_err(|e| e.to_string())?;
        probe.remove();
        cg.remove_stale();
        Ok(cg)
    }

    /// Removes empty job cgroups left by servers that died (older than a minute, so a cgroup
    /// another server just created for a starting worker is not taken away).
    fn remove_stale(&self) {
        let old = |d: &Path| d.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() > 60));
        for parent in &self.parents {
            let Ok(entries) = std::fs::read_dir(parent) else { continue };
            for e in entries.flatten() {
                let path = e.path();
                if e.file_name().to_string_lossy().starts_with("orca-") && old(&path) {
                    // Fails (and is left alone) while processes are inside.
                    let _ = std::fs::remove_dir(&path);
                }
            }
        }
    }

    /// Creates `name` with the limits.
    pub fn create(&self, name: &str, res: Resources) -> io::Result<JobCgroup> {
        let bytes = u64::from(res.memory_mb) * 1024 * 1024;
        let mut dirs = Vec::new();
        let made = (|| {
            for parent in &self.parents {
                let dir = parent.join(name);
                std::fs::create_dir_all(&dir).map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
                dirs.push(dir.clone());
                let set = |file: &str, v: String| {
                    std::fs::write(dir.join(file), v).map_err(|e| io::Error::new(e.kind(), format!("cannot set {file} in {}: {e}", dir.display())))
                };
                if self.v2 {
                    set("pids.max", res.pids.to_string())?;
                    set("memory.max", bytes.to_string())?;
                    let _ = set("memory.swap.max", "0".into());
                } else if dir.starts_with(Path::new(ROOT).join("pids")) {
                    set("pids.max", res.pids.to_string())?;
                } else {
                    set("memory.limit_in_bytes", bytes.to_string())?;
                    // Absent without swap accounting; then there is no swap to limit.
                    let _ = set("memory.memsw.limit_in_bytes", bytes.to_string());
                }
            }
            Ok(())
        })();
        let procs = dirs.iter().map(|d| CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes()).expect("no NUL in paths")).collect();
        let cg = JobCgroup { dirs, procs, v2: self.v2 };
        match made {
            Ok(()) => Ok(cg),
            Err(e) => {
                cg.remove();
                Err(e)
            }
        }
    }
}

impl JobCgroup {
    /// Moves the calling process into the cgroup(s). Runs in the child between fork and exec:
    /// only raw system calls, no allocation.
    pub fn enter(&self) -> io::Result<()> {
        for p in &self.procs {
            let fd = nix::fcntl::open(p.as_c_str(), nix::fcntl::OFlag::O_WRONLY, nix::sys::stat::Mode::empty())?;
            nix::unistd::write(&fd, b"0")?;
        }
        Ok(())
    }

    /// The `pre_exec` hook for [`JobCgroup::enter`].
    pub fn hook(&self) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
        let procs = self.procs.clone();
        let this = JobCgroup { dirs: Vec::new(), procs, v2: self.v2 };
        move || this.enter()
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        let file = if self.v2 { "memory.events" } else { "memory.oom_control" };
        self.dirs.iter().filter_map(|d| std::fs::read_to_string(d.join(file)).ok()).any(|text| {
            text.lines().any(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()).is_some_and(|n| n > 0))
        })
    }

    /// Removes the cgroup(s) once empty (retrying briefly while the last processes exit).
    pub fn remove(self) {
        for d in &self.dirs {
            for attempt in 0..50 {
                match std::fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if attempt == 49 => tracing::warn!("cannot remove the cgroup {}: {e}", d.display()),
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        }
    }
}
