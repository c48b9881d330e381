//! Resource limits of one worker's sandbox: the server's defaults, its maxima, and a job's
//! overrides (`config.memoryMb`, `config.cpuMillis`, `config.pidsLimit`).
//!
//! | variable | default | |
//! |---|---|---|
//! | `ORCA_WORKER_MEMORY_MB` | 2048 | memory (and memory+swap: no swap) per worker |
//! | `ORCA_WORKER_CPUS` | 2 | CPUs per worker, decimals allowed (`0.5`) |
//! | `ORCA_WORKER_PIDS` | 512 | processes + threads per worker |
//! | `ORCA_WORKER_MAX_MEMORY_MB` | 8192 | the most a job may ask for |
//! | `ORCA_WORKER_MAX_CPUS` | 4 | |
//! | `ORCA_WORKER_MAX_PIDS` | 4096 | |
//!
//! A job asking for more than a maximum is rejected at submit with a 400 naming the field.
//! The Docker scheduler applies all three; the local runner applies only the pids limit (as
//! RLIMIT_NPROC inside bubblewrap's user namespace).

use crate::config::ConfigError;
use orca_core::{JobConfig, ValidationErrors};

/// The limits one worker runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub memory_mb: u32,
    /// Thousandths of a CPU.
    pub cpu_millis: u32,
    pub pids: u32,
}

/// Server defaults and maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsPolicy {
    pub default: Resources,
    pub max: Resources,
}

impl Default for LimitsPolicy {
    fn default() -> Self {
        LimitsPolicy {
            default: Resources { memory_mb: 2048, cpu_millis: 2000, pids: 512 },
            max: Resources { memory_mb: 8192, cpu_millis: 4000, pids: 4096 },
        }
    }
}

impl LimitsPolicy {
    /// Reads the variables of the module table; `get` returns a variable's non-empty value.
    pub fn from_vars<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<LimitsPolicy, ConfigError> {
        let bad = |var: &'static str, problem: String| ConfigError {
            var,
            value: get(var).unwrap_or_default().to_owned(),
            problem,
        };
        let whole = |var: &'static str, default: u32, (min, max): (u64, u64)| -> Result<u32, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(var, format!("must be a whole number from {min} to {max}"))),
            }
        };
        let cpus = |var: &'static str, default: u32| -> Result<u32, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => parse_cpus(v).ok_or_else(|| bad(var, "must be a number of CPUs from 0.01 to 1024, e.g. 2 or 0.5".into())),
            }
        };
        use orca_core::sandbox::{MEMORY_MB_RANGE, PIDS_RANGE};
        let d = LimitsPolicy::default();
        let policy = LimitsPolicy {
            default: Resources {
                memory_mb: whole("ORCA_WORKER_MEMORY_MB", d.default.memory_mb, MEMORY_MB_RANGE)?,
                cpu_millis: cpus("ORCA_WORKER_CPUS", d.default.cpu_millis)?,
                pids: whole("ORCA_WORKER_PIDS", d.default.pids, PIDS_RANGE)?,
            },
            max: Resources {
                memory_mb: whole("ORCA_WORKER_MAX_MEMORY_MB", d.max.memory_mb, MEMORY_MB_RANGE)?,
                cpu_millis: cpus("ORCA_WORKER_MAX_CPUS", d.max.cpu_millis)?,
                pids: whole("ORCA_WORKER_MAX_PIDS", d.max.pids, PIDS_RANGE)?,
            },
        };
        // A default above its maximum: raise the maximum when only the default was set.
        let fix = |var: &'static str, max_var: &'static str, def: u32, max: u32| -> Result<u32, ConfigError> {
            match (def > max, get(max_var).is_some()) {
                (false, _) => Ok(max),
                (true, false) => Ok(def),
                (true, true) => Err(bad(var, format!("is above {max_var}"))),
            }
        };
        let max = Resources {
            memory_mb: fix("ORCA_WORKER_MEMORY_MB", "ORCA_WORKER_MAX_MEMORY_MB", policy.default.memory_mb, policy.max.memory_mb)?,
            cpu_millis: fix("ORCA_WORKER_CPUS", "ORCA_WORKER_MAX_CPUS", policy.default.cpu_millis, policy.max.cpu_millis)?,
            pids: fix("ORCA_WORKER_PIDS", "ORCA_WORKER_MAX_PIDS", policy.default.pids, policy.max.pids)?,
        };
        Ok(LimitsPolicy { max, ..policy })
    }

    /// Field errors for a job asking for more than the maxima.
    pub fn check(&self, cfg: &JobConfig) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let mut over = |field: &str, asked: Option<u32>, max: u32, var: &str, shown: String| {
            if asked.is_some_and(|a| a > max) {
                errs.push(format!("config.{field}"), format!("must be at most {shown} (the server's {var})"));
            }
        };
        over("memoryMb", cfg.memory_mb, self.max.memory_mb, "ORCA_WORKER_MAX_MEMORY_MB", self.max.memory_mb.to_string());
        over("cpuMillis", cfg.cpu_millis, self.max.cpu_millis, "ORCA_WORKER_MAX_CPUS", self.max.cpu_millis.to_string());
        over("pidsLimit", cfg.pids_limit, self.max.pids, "ORCA_WORKER_MAX_PIDS", self.max.pids.to_string());
        errs.into_result(())
    }

    /// The limits for a job: its overrides, else the defaults, never above the maxima.
    pub fn resolve(&self, cfg: &JobConfig) -> Resources {
        Resources {
            memory_mb: cfg.memory_mb.unwrap_or(self.default.memory_mb).min(self.max.memory_mb),
            cpu_millis: cfg.cpu_millis.unwrap_or(self.default.cpu_millis).min(self.max.cpu_millis),
            pids: cfg.pids_limit.unwrap_or(self.default.pids).min(self.max.pids),
        }
    }
}

/// `"2"`, `"0.5"`, `"1.25"` CPUs as thousandths.
fn parse_cpus(v: &str) -> Option<u32> {
    let f: f64 = v.trim().parse().ok()?;
    let millis = (f * 1000.0).round();
    (f.is_finite() && (10.0..=1_024_000.0).contains(&millis)).then_some(millis as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn policy(pairs: &[(&str, &str)]) -> Result<LimitsPolicy, ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        LimitsPolicy::from_vars(|k| env.get(k).copied())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(policy(&[]).unwrap(), LimitsPolicy::default());
        let p = policy(&[("ORCA_WORKER_MEMORY_MB", "64"), ("ORCA_WORKER_CPUS", "0.5"), ("ORCA_WORKER_PIDS", "32")]).unwrap();
        assert_eq!(p.default, Resources { memory_mb: 64, cpu_millis: 500, pids: 32 });
        // Only a default above the built-in maximum: the maximum follows it.
        assert_eq!(policy(&[("ORCA_WORKER_MEMORY_MB", "9000")]).unwrap().max.memory_mb, 9000);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [("ORCA_WORKER_MEMORY_MB", "lots"), ("ORCA_WORKER_CPUS", "0"), ("ORCA_WORKER_PIDS", "1"), ("ORCA_WORKER_MAX_CPUS", "x")] {
            assert_eq!(policy(&[(k, v)]).unwrap_err().var, k);
        }
        let e = policy(&[("ORCA_WORKER_PIDS", "100"), ("ORCA_WORKER_MAX_PIDS", "50")]).unwrap_err();
        assert_eq!(e.var, "ORCA_WORKER_PIDS");
    }

    #[test]
    fn jobs_are_checked_and_clamped_against_the_maxima() {
        let p = LimitsPolicy::default();
        let cfg = JobConfig { memory_mb: Some(9000), pids_limit: Some(64), ..Default::default() };
        let errs = p.check(&cfg).unwrap_err();
        assert_eq!(errs.0.len(), 1);
        assert_eq!(errs.0[0].field, "config.memoryMb");
        assert!(errs.0[0].message.contains("8192"), "{errs}");
        assert_eq!(p.resolve(&cfg), Resources { memory_mb: 8192, cpu_millis: 2000, pids: 64 });
        assert!(p.check(&JobConfig::default()).is_ok());
    }
}
