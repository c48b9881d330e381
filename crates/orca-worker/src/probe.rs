//! The echo agent's sandbox knobs, for tests of the sandboxes (Docker, bubblewrap):
//! `echoProbe` reports what the worker can see and do from inside, as one `raw` event with
//! `source: "sandbox-probe"`; `echoAllocMb` allocates and touches memory (to meet the memory
//! limit). Production agents never run these.
//!
//! The report (`data`): `uid`, `gid`, `capEff`/`capBnd` (hex masks), `noNewPrivs`, `seccomp`,
//! `rootMount` (`ro`/`rw`), `rootWriteError` (why creating `/.orca-probe` failed, or null),
//! `sockets` (Docker/containerd sockets that exist), `threadsStarted` and `threadError` (how
//! many of [`PROBE_THREADS`] threads could start, and why the next one could not),
//! `pidNamespaceInit` (PID 1's command line), `tmpEntries`, `ancestors` (the directories above
//! the working directory, each with the names it lists, so a test can see what of the host is
//! visible), `homeEntries` (what `/root` and `/home` list) and `envNames` (the names, never
//! the values, of the worker's environment variables).

use orca_core::AgentEvent;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::mpsc;

/// Threads the probe tries to start to find the pids limit.
pub const PROBE_THREADS: usize = 1000;
const MAX_LISTED: usize = 50;

/// The sandbox report as an event.
pub fn report_event(dir: &Path) -> AgentEvent {
    AgentEvent::Raw { source: Some("sandbox-probe".into()), data: report(dir) }
}

pub fn report(dir: &Path) -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let first_num = |name: &str| field(name).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    let root_write_error = match std::fs::File::create("/.orca-probe") {
        Ok(_) => {
            let _ = std::fs::remove_file("/.orca-probe");
            None
        }
        Err(e) => Some(e.to_string()),
    };
    let sockets: Vec<&str> = ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock", "/var/run/containerd/containerd.sock"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    let (started, thread_error) = spawn_threads(PROBE_THREADS);
    let mut ancestors = Vec::new();
    let mut cur = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    while let Some(parent) = cur.parent() {
        ancestors.push(json!({"path": parent.display().to_string(), "entries": list(parent)}));
        cur = parent.to_owned();
    }
    let init = std::fs::read("/proc/1/cmdline")
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_owned())
        .unwrap_or_default();
    json!({
        "uid": first_num("Uid:"),
        "gid": first_num("Gid:"),
        "capEff": field("CapEff:"),
        "capBnd": field("CapBnd:"),
        "noNewPrivs": first_num("NoNewPrivs:").map(|n| n == 1),
        "seccomp": first_num("Seccomp:"),
        "rootMount": root_mount_mode(),
        "rootWriteError": root_write_error,
        "sockets": sockets,
        "threadsStarted": started,
        "threadError": thread_error,
        "pidNamespaceInit": init,
        "tmpEntries": list(Path::new("/tmp")),
        "ancestors": ancestors,
        "homeEntries": {"/root": list(Path::new("/root")), "/home": list(Path::new("/home"))},
        "envNames": env_names(),
    })
}

fn env_names() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// `ro` or `rw`: the options of the mount at `/` (the last one listed wins).
fn root_mount_mode() -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut opts = info.lines().filter_map(|l| {
        let mut f = l.split(' ');
        let mount_point = f.nth(4)?;
        let options = f.next()?;
        (mount_point == "/").then(|| options.to_owned())
    });
    let last = opts.next_back()?;
    Some(if last.split(',').any(|o| o == "ro") { "ro".into() } else { "rw".into() })
}

/// Names in `dir` (sorted, at most [`MAX_LISTED`]), or the error as a one-element list.
fn list(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut names: Vec<String> = rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names.truncate(MAX_LISTED);
            names
        }
        Err(e) => vec![format!("<{e}>")],
    }
}

/// Starts up to `n` parked threads; returns how many started and why the next did not.
fn spawn_threads(n: usize) -> (usize, Option<String>) {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release = std::sync::Arc::new(std::sync::Mutex::new(release_rx));
    let mut handles = Vec::new();
    let mut error = None;
    for _ in 0..n {
        let release = release.clone();
        let spawned = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || {
            // Parked until the sender is dropped.
            let _ = release.lock().map(|r| r.recv());
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let started = handles.len();
    drop(release_tx);
    for h in handles {
        let _ = h.join();
    }
    (started, error)
}

/// Allocates `mb` MiB and writes to every page, so it really counts against the limit.
pub fn allocate(mb: u32) -> Vec<u8> {
    let len = mb as usize * 1024 * 1024;
    let mut v = vec![0u8; len];
    for i in (0..len).step_by(4096) {
        v[i] = 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_every_field() {
        let r = report(Path::new("."));
        for k in ["uid", "capEff", "rootMount", "threadsStarted", "ancestors", "tmpEntries", "sockets"] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
        assert!(r["threadsStarted"].as_u64().unwrap() > 0);
        assert_eq!(allocate(2).len(), 2 << 20);
    }
}
