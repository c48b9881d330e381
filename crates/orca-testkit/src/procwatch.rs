//! Watching the process table while a job runs: no process may carry a secret in its argument
//! list, and the agent's processes may not carry the git token in their environment.
//!
//! A thread reads `/proc/*/cmdline` (and the environment of the agent's processes: those whose
//! executable or `argv[0]` is an agent binary) every few milliseconds until [`ProcWatch::stop`].

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct ProcWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    findings: Arc<Mutex<Vec<String>>>,
    scans: Arc<Mutex<u64>>,
    agents_seen: Arc<Mutex<u64>>,
}

impl ProcWatch {
    /// Starts watching: `argv_secrets` must appear in no command line; `env_secrets` in the
    /// environment of no process running one of `agent_bins` (its executable or `argv[0]`).
    pub fn start(argv_secrets: &[&str], env_secrets: &[&str], agent_bins: &[&str]) -> ProcWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let findings: Arc<Mutex<Vec<String>>> = Default::default();
        let scans: Arc<Mutex<u64>> = Default::default();
        let agents_seen: Arc<Mutex<u64>> = Default::default();
        let argv: Vec<Vec<u8>> = argv_secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        let env: Vec<Vec<u8>> = env_secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        let bins: Vec<std::path::PathBuf> = agent_bins.iter().map(std::path::PathBuf::from).collect();
        let me = std::process::id().to_string();
        let thread = {
            let (stop, findings, scans, agents_seen) =
                (stop.clone(), findings.clone(), scans.clone(), agents_seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(dir) = std::fs::read_dir("/proc") else { return };
                    for entry in dir.flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
                            continue;
                        }
                        let base = Path::new("/proc").join(&name);
                        let Ok(cmdline) = std::fs::read(base.join("cmdline")) else { continue };
                        if argv.iter().any(|s| contains(&cmdline, s)) {
                            findings.lock().unwrap().push(format!("pid {name}: a secret is in the argument list"));
                        }
                        let argv0 = Path::new(std::ffi::OsStr::from_bytes(cmdline.split(|b| *b == 0).next().unwrap_or_default()));
                        let exe = std::fs::read_link(base.join("exe")).unwrap_or_default();
                        if bins.iter().any(|b| b == &exe || b == argv0) {
                            *agents_seen.lock().unwrap() += 1;
                            if let Ok(environ) = std::fs::read(base.join("environ"))
                                && env.iter().any(|s| contains(&environ, s))
                            {
                                findings
                                    .lock()
                                    .unwrap()
                                    .push(format!("pid {name} (an agent): a secret is in its environment"));
                            }
                        }
                    }
                    *scans.lock().unwrap() += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        ProcWatch { stop, thread: Some(thread), findings, scans, agents_seen }
    }

    /// Stops watching; returns what was found, how many scans ran and how many times an agent
    /// process was seen.
    pub fn stop(mut self) -> (Vec<String>, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let f = self.findings.lock().unwrap().clone();
        let scans = *self.scans.lock().unwrap();
        let seen = *self.agents_seen.lock().unwrap();
        (f, scans, seen)
    }
}

impl Drop for ProcWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
