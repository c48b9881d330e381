//! `orca dev --k8s` as a user runs it, without a cluster: the message when tools are missing,
//! and the steps (and the tear-down) it runs, recorded by stand-in `docker`, `k3d` and
//! `kubectl` scripts on PATH.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Runs `orca dev --k8s --port 0` from the repository root with PATH = `path` (bounded).
fn orca_dev_k8s(path: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orca"))
        .args(["dev", "--k8s", "--port", "0"])
        .current_dir(workspace_root())
        .env_clear()
        .env("PATH", path)
        .env("HOME", path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("orca dev --k8s did not exit within 30s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A stand-in tool that appends its arguments to `calls` and exits with the code the script
/// body picks.
fn tool(dir: &Path, name: &str, body: &str) {
    let calls = dir.join("calls");
    let script = format!("#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n", calls.display());
    let p = dir.join(name);
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn missing_k3d_and_kubectl_are_named_and_the_exit_code_is_1() {
    let dir = tempfile::tempdir().unwrap();
    tool(dir.path(), "docker", "exit 0");
    let out = orca_dev_k8s(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("orca dev --k8s needs Docker, k3d and kubectl on PATH; missing: k3d, kubectl."), "{stderr}");
    assert!(stderr.contains("https://k3d.io"), "{stderr}");
    assert!(out.stdout.is_empty(), "no server started");
    assert!(!dir.path().join("calls").exists(), "nothing was run");

    let empty = tempfile::tempdir().unwrap();
    let stderr = String::from_utf8_lossy(&orca_dev_k8s(empty.path()).stderr).into_owned();
    assert!(stderr.contains("missing: docker, k3d, kubectl."), "{stderr}");
}

#[test]
fn a_failed_step_tears_the_cluster_down() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig-orca-dev.yaml");
    tool(dir.path(), "docker", "exit 0");
    tool(
        dir.path(),
        "k3d",
        &format!(
            "case \"$1 $2\" in\n  'cluster get') exit 1 ;;\n  'kubeconfig write') echo '{}' ;;\nesac\nexit 0",
            kubeconfig.display()
        ),
    );
    tool(dir.path(), "kubectl", "echo 'error: the server is unreachable (stand-in)' >&2; exit 1");
    let out = orca_dev_k8s(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`kubectl --kubeconfig"), "{stderr}");
    assert!(stderr.contains("==> deleting the k3d cluster orca-dev"), "{stderr}");
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    let root = workspace_root();
    let k8s = |f: &str| root.join("k8s").join(f).display().to_string();
    let expected = [
        "k3d cluster get orca-dev".to_owned(),
        "k3d cluster create orca-dev --wait --kubeconfig-update-default=false --kubeconfig-switch-context=false --k3s-arg --kubelet-arg=pod-max-pids=512@server:*".to_owned(),
        "k3d kubeconfig write orca-dev".to_owned(),
        format!("kubectl --kubeconfig {} apply -f {} -f {} -f {}", kubeconfig.display(), k8s("namespace.yaml"), k8s("rbac.yaml"), k8s("infra.yaml")),
        "k3d cluster delete orca-dev".to_owned(),
    ];
    assert_eq!(calls.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn k8s_and_compose_exclude_each_other() {
    let out = Command::new(env!("CARGO_BIN_EXE_orca")).args(["dev", "--k8s", "--compose"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
