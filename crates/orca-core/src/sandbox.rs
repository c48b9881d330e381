//! The job `config` fields about the worker's sandbox: resource limits (`memoryMb`,
//! `cpuMillis`, `pidsLimit`) and the echo agent's knobs that exercise the sandbox
//! (`echoProbe`, `echoAllocMb`).
//!
//! Limits are parsed here against absolute bounds only; the server checks them against its
//! own maxima (ORCA_WORKER_MAX_*) when the job is submitted, because only it knows them.

use crate::job::JobConfig;
use crate::validation::ValidationErrors;
use serde_json::{Map, Value};

/// Field names this module parses (part of the known `config` fields).
pub const FIELDS: &[&str] = &["memoryMb", "cpuMillis", "pidsLimit", "echoProbe", "echoAllocMb"];

/// Smallest and largest memory limit a job may ask for, in MiB.
pub const MEMORY_MB_RANGE: (u64, u64) = (16, 1_048_576);
/// CPU in thousandths of a CPU (1000 = one CPU, like Kubernetes' `1000m`).
pub const CPU_MILLIS_RANGE: (u64, u64) = (10, 1_024_000);
/// Processes and threads (the cgroup pids limit).
pub const PIDS_RANGE: (u64, u64) = (16, 1_000_000);
/// The most memory the echo agent may be asked to allocate, in MiB.
pub const MAX_ECHO_ALLOC_MB: u64 = 65_536;

/// Reads the fields of [`FIELDS`] from a submitted `config` object into `cfg`.
pub fn parse_into(obj: &Map<String, Value>, cfg: &mut JobConfig, errs: &mut ValidationErrors) {
    let bounded = |field: &str, (min, max): (u64, u64), errs: &mut ValidationErrors| match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => u32::try_from(n).ok(),
            _ => {
                errs.push(format!("config.{field}"), format!("must be a whole number from {min} to {max}"));
                None
            }
        },
    };
    cfg.memory_mb = bounded("memoryMb", MEMORY_MB_RANGE, errs);
    cfg.cpu_millis = bounded("cpuMillis", CPU_MILLIS_RANGE, errs);
    cfg.pids_limit = bounded("pidsLimit", PIDS_RANGE, errs);
    cfg.echo_alloc_mb = bounded("echoAllocMb", (0, MAX_ECHO_ALLOC_MB), errs);
    match obj.get("echoProbe") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => cfg.echo_probe = Some(*b),
        Some(_) => errs.push("config.echoProbe", "must be true or false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> (JobConfig, Vec<String>) {
        let mut cfg = JobConfig::default();
        let mut errs = ValidationErrors::default();
        parse_into(v.as_object().unwrap(), &mut cfg, &mut errs);
        (cfg, errs.0.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn limits_and_knobs_parse_within_bounds() {
        let (c, e) = parse(json!({"memoryMb": 64, "cpuMillis": 500, "pidsLimit": 64, "echoProbe": true, "echoAllocMb": 0}));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!((c.memory_mb, c.cpu_millis, c.pids_limit), (Some(64), Some(500), Some(64)));
        assert_eq!((c.echo_probe, c.echo_alloc_mb), (Some(true), Some(0)));
        let (c, e) = parse(json!({}));
        assert!(e.is_empty() && c == JobConfig::default());
    }

    #[test]
    fn bad_values_are_named() {
        let (_, e) = parse(json!({"memoryMb": 1, "cpuMillis": "1", "pidsLimit": -3, "echoProbe": 1, "echoAllocMb": 70000}));
        assert_eq!(e, ["config.memoryMb", "config.cpuMillis", "config.pidsLimit", "config.echoAllocMb", "config.echoProbe"]);
    }
}
