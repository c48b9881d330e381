//! The agent CLIs under test: `ORCA_TEST_CLAUDE_BIN` and `ORCA_TEST_CODEX_BIN`, exported by
//! `scripts/setup/30-agents.sh` (the binaries bundled in the PyPI wheels `claude-agent-sdk`
//! and `openai-codex-cli-bin`).
//!
//! Without them a test prints a loud `SKIPPED (…)` line and returns; with `CI=true` a missing
//! binary fails the test instead, so CI can never pass by skipping.

use std::path::PathBuf;

pub const CLAUDE_VAR: &str = "ORCA_TEST_CLAUDE_BIN";
pub const CODEX_VAR: &str = "ORCA_TEST_CODEX_BIN";

/// The Claude Code CLI, or `None` (after saying so) when this machine has none.
pub fn claude(test: &str) -> Option<PathBuf> {
    find(CLAUDE_VAR, test)
}

/// The Codex CLI, or `None` (after saying so) when this machine has none.
pub fn codex(test: &str) -> Option<PathBuf> {
    find(CODEX_VAR, test)
}

fn find(var: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_file());
    if found.is_none() {
        let why = format!("{var} is not set to an existing file; run `source scripts/setup/30-agents.sh`");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {why} (CI=true: nothing may be skipped)");
        }
        eprintln!("SKIPPED ({test}: {why})");
    }
    found
}
