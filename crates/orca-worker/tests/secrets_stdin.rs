//! The worker binary with `ORCA_SECRETS=stdin` (how the Docker scheduler hands over secrets):
//! the line becomes environment variables before the job runs; a bad line is a bad
//! environment (exit 2) whose error never shows the values.

use std::io::Write;
use std::process::{Command, Stdio};

fn run_with_stdin(input: &[u8]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orca-worker"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("JOB_ID", "j-secrets")
        .env("PROMPT", "hello secrets")
        .env("ORCA_SECRETS", "stdin")
        .env("ORCA_JOB_CONFIG", r#"{"echoDelayMs":0,"echoProbe":true,"echoSteps":1}"#)
        .env("WORK_DIR", std::env::temp_dir().join(format!("orca-secrets-{}", std::process::id())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn secrets_on_stdin_become_the_environment() {
    let (code, out) = run_with_stdin(b"{\"GIT_TOKEN\":\"ghp_stdin_SECRET\",\"ANTHROPIC_API_KEY\":\"sk-SECRET\"}\n");
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("SECRET"), "{out}");
    let probe: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["source"] == "sandbox-probe")
        .expect("probe event");
    let names = probe["data"]["envNames"].as_array().unwrap();
    assert!(names.contains(&serde_json::json!("ANTHROPIC_API_KEY")), "{names:?}");
    // The token is consumed by the worker and removed from its environment, as before.
    assert!(!names.contains(&serde_json::json!("GIT_TOKEN")) && !names.contains(&serde_json::json!("ORCA_SECRETS")), "{names:?}");
}

#[test]
fn a_bad_secrets_line_is_a_bad_environment() {
    for input in [&b"not json\n"[..], b"", b"{\"LD_PRELOAD\":\"/x.so\"}\n", b"{\"GIT_TOKEN\":42}\n"] {
        let (code, out) = run_with_stdin(input);
        assert_eq!(code, 2, "{input:?}: {out}");
        assert!(out.contains("\"type\":\"error\"") && out.contains("bad environment"), "{out}");
        assert!(!out.contains("/x.so"), "{out}");
    }
}
