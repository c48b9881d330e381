//! The `orca` binary without a server: exit codes and messages when nothing is listening.
//!
//! End-to-end tests against a live server live elsewhere; these need no network at all.

use std::process::{Command, Output};

const ID: &str = "0193a000-0000-7000-8000-000000000001";

fn orca(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orca"))
        .args(args)
        .env_remove("ORCA_API_URL")
        .env_remove("ORCA_GIT_TOKEN")
        .env("NO_COLOR", "1")
        .output()
        .expect("run orca")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn status_against_an_unreachable_server_exits_3() {
    let o = orca(&["--api-url", "http://127.0.0.1:1", "job", "status", ID]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.starts_with("error: cannot reach the Orca server at http://127.0.0.1:1"), "{err}");
    assert!(err.contains("ORCA_API_URL"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("Backtrace"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn the_api_url_comes_from_the_environment_too() {
    let o = Command::new(env!("CARGO_BIN_EXE_orca"))
        .args(["job", "list"])
        .env("ORCA_API_URL", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("http://127.0.0.1:1"));
}

#[test]
fn following_logs_of_an_unreachable_server_exits_3() {
    let o = orca(&["--api-url", "http://127.0.0.1:1", "job", "logs", ID]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("ORCA_API_URL"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(orca(&["job", "status", "not-a-uuid"]).status.code(), Some(2));
    assert_eq!(orca(&["job", "submit"]).status.code(), Some(2));
    let o = orca(&["job", "submit", "--prompt", "p", "--git-token-env", "ORCA_TEST_SURELY_UNSET_VAR"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("ORCA_TEST_SURELY_UNSET_VAR"));
}

#[test]
fn every_command_has_help() {
    for cmd in [&["job"][..], &["job", "submit"], &["job", "status"], &["job", "logs"], &["job", "cancel"],
        &["job", "retry"], &["job", "list"], &["dev"], &["server"]]
    {
        let o = orca(&[cmd, &["--help"]].concat());
        assert_eq!(o.status.code(), Some(0), "{cmd:?}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: orca"), "{cmd:?}");
    }
}
