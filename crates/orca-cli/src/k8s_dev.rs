//! `orca dev --k8s`: the spec's Kubernetes development stack on a local k3d cluster.
//!
//! 1. Checks that `docker`, `k3d` and `kubectl` are on PATH (else a message naming the missing
//!    ones and exit 1).
//! 2. Creates the k3d cluster `orca-dev` (or reuses one of that name), with the kubelet's pod
//!    pids limit set to `ORCA_WORKER_PIDS` (Kubernetes has no per-pod pids field). Its
//!    kubeconfig is written by `k3d kubeconfig write`; the user's `~/.kube/config` and current
//!    context are left alone.
//! 3. Applies `k8s/namespace.yaml`, `k8s/rbac.yaml` and `k8s/infra.yaml` (PostgreSQL, Redis).
//! 4. Builds the worker image (`scripts/build-worker-image.sh`, from the `orca-worker` binary
//!    beside this executable) and imports it into the cluster (`k3d image import`).
//! 5. Waits for PostgreSQL and Redis and forwards them to local ports (`kubectl port-forward`).
//! 6. Runs the backend in this process with `ORCA_SCHEDULER=k8s`: every job is a Kubernetes Job
//!    in the namespace `orca`, its events read from the pod log.
//! 7. On Ctrl+C, during set-up or later, or on a failure: stops the backend and the
//!    port-forwards and deletes the cluster (`k3d cluster delete orca-dev`).
//!
//! It must run from the Orca repository (it needs `k8s/`, `docker/` and `scripts/`). It has
//! never run against a real k3d cluster in CI (no Docker registry or Kubernetes there); the
//! tests cover the missing-tools message and the tear-down after a failed step.

use crate::DevArgs;
use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The k3d cluster's name (the spec's).
pub const CLUSTER: &str = "orca-dev";
/// The namespace of `k8s/namespace.yaml`.
const NAMESPACE: &str = "orca";
/// The tools this needs, in the order they are reported.
const TOOLS: [&str; 3] = ["docker", "k3d", "kubectl"];

/// Runs the Kubernetes development stack until Ctrl+C, then tears it down.
pub async fn run(args: &DevArgs) -> anyhow::Result<()> {
    let missing: Vec<&str> = TOOLS.into_iter().filter(|t| which(t).is_none()).collect();
    if !missing.is_empty() {
        bail!(
            "orca dev --k8s needs Docker, k3d and kubectl on PATH; missing: {}.\n  \
             Install k3d (https://k3d.io) and kubectl (https://kubernetes.io/docs/tasks/tools/), \
             or run `orca dev` without --k8s.",
            missing.join(", ")
        );
    }
    let root = repo_root().context("orca dev --k8s must run inside the Orca repository (it applies k8s/*.yaml and builds docker/Dockerfile.worker)")?;
    let mut stack = Stack { root, kubeconfig: None, forwards: Vec::new(), created: false };
    let up = tokio::select! {
        r = stack.up(args) => r.map(Some),
        _ = orca_server::shutdown_signal() => {
            eprintln!("orca: interrupted during set-up");
            Ok(None)
        }
    };
    let result = match up {
        Ok(Some(env)) => {
            eprintln!("Orca is running on Kubernetes (k3d cluster {CLUSTER}, namespace {NAMESPACE}); jobs run as Kubernetes Jobs. Press Ctrl+C to stop and delete the cluster.");
            eprintln!("  kubectl --kubeconfig {} -n {NAMESPACE} get jobs,pods", env["KUBECONFIG"]);
            crate::serve::run(&env, false).await
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    stack.down().await;
    result
}

/// What `up` made, for `down`.
struct Stack {
    root: PathBuf,
    kubeconfig: Option<String>,
    forwards: Vec<Child>,
    /// Whether a cluster may exist (created, or found); `down` deletes it.
    created: bool,
}

impl Stack {
    /// Sets everything up; returns the backend's environment.
    async fn up(&mut self, args: &DevArgs) -> anyhow::Result<HashMap<String, String>> {
        let pids = std::env::var("ORCA_WORKER_PIDS").ok().filter(|p| p.parse::<u32>().is_ok()).unwrap_or_else(|| "512".into());
        if command("k3d", &["cluster", "get", CLUSTER]).stdout(Stdio::null()).stderr(Stdio::null()).status().await?.success() {
            step(&format!("reusing the k3d cluster {CLUSTER}"));
            self.created = true;
        } else {
            step(&format!("creating the k3d cluster {CLUSTER}"));
            self.created = true;
            let kubelet = format!("--kubelet-arg=pod-max-pids={pids}@server:*");
            let create = ["cluster", "create", CLUSTER, "--wait", "--kubeconfig-update-default=false", "--kubeconfig-switch-context=false", "--k3s-arg", &kubelet];
            run_ok("k3d", &create).await?;
        }
        let kubeconfig = output("k3d", &["kubeconfig", "write", CLUSTER]).await?.trim().to_owned();
        self.kubeconfig = Some(kubeconfig.clone());
        let kc = kubeconfig.as_str();

        step("applying k8s/namespace.yaml, k8s/rbac.yaml and k8s/infra.yaml");
        let files = ["namespace.yaml", "rbac.yaml", "infra.yaml"].map(|f| self.root.join("k8s").join(f).display().to_string());
        run_ok("kubectl", &["--kubeconfig", kc, "apply", "-f", &files[0], "-f", &files[1], "-f", &files[2]]).await?;

        let image = std::env::var("WORKER_IMAGE").ok().filter(|i| !i.is_empty()).unwrap_or_else(|| "orca-worker:latest".into());
        step(&format!("building the worker image {image}"));
        let worker = worker_binary()?;
        let script = self.root.join("scripts/build-worker-image.sh").display().to_string();
        run_ok("bash", &[&script, "--tag", &image, "--worker-bin", &worker.display().to_string()]).await?;
        step(&format!("importing {image} into the cluster"));
        run_ok("k3d", &["image", "import", &image, "--cluster", CLUSTER]).await?;

        step("waiting for PostgreSQL and Redis");
        for d in ["deployment/postgres", "deployment/redis"] {
            run_ok("kubectl", &["--kubeconfig", kc, "-n", NAMESPACE, "rollout", "status", d, "--timeout=300s"]).await?;
        }
        let pg = self.forward(&kubeconfig, "svc/postgres", 5432).await?;
        let redis = self.forward(&kubeconfig, "svc/redis", 6379).await?;

        let mut env: HashMap<String, String> = std::env::vars().collect();
        env.insert("HOST".into(), args.host.clone());
        env.insert("PORT".into(), args.port.to_string());
        if let Some(d) = &args.data_dir {
            env.insert("ORCA_DATA_DIR".into(), d.display().to_string());
        }
        env.insert("ORCA_SCHEDULER".into(), "k8s".into());
        env.insert("ORCA_NAMESPACE".into(), NAMESPACE.into());
        env.insert("KUBECONFIG".into(), kubeconfig.clone());
        env.insert("WORKER_IMAGE".into(), image);
        // The development credentials of k8s/infra.yaml.
        env.insert("DATABASE_URL".into(), format!("postgresql://orca:orca@127.0.0.1:{pg}/orca"));
        env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{redis}"));
        Ok(env)
    }

    /// `kubectl port-forward` of a service to a free local port; returns the port.
    async fn forward(&mut self, kubeconfig: &str, service: &str, port: u16) -> anyhow::Result<u16> {
        let target = format!(":{port}");
        let mut child = command("kubectl", &["--kubeconfig", kubeconfig, "-n", NAMESPACE, "port-forward", service, &target])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run kubectl port-forward {service}"))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                // "Forwarding from 127.0.0.1:41234 -> 5432"
                if let Some(p) = line.strip_prefix("Forwarding from 127.0.0.1:").and_then(|r| r.split_whitespace().next()) {
                    return p.parse::<u16>().ok();
                }
            }
            None
        })
        .await;
        self.forwards.push(child);
        let Ok(Some(local)) = found else { bail!("kubectl port-forward {service} did not report a local port within 30s") };
        // Keep reading: kubectl prints a line per connection and must not block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(local)
    }

    /// Stops the port-forwards and deletes the cluster.
    async fn down(&mut self) {
        for mut f in self.forwards.drain(..) {
            let _ = f.kill().await;
        }
        if self.created {
            step(&format!("deleting the k3d cluster {CLUSTER}"));
            if let Err(e) = run_ok("k3d", &["cluster", "delete", CLUSTER]).await {
                eprintln!("orca: {e}; delete it yourself: k3d cluster delete {CLUSTER}");
            }
        }
    }
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

fn command(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).stdin(Stdio::null());
    c
}

/// Runs a command (its output goes to the terminal) and fails unless it succeeds.
async fn run_ok(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = command(program, args).status().await.with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs a command and returns its stdout.
async fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = command(program, args).stderr(Stdio::inherit()).output().await.with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!("`{program} {}` failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An executable file named `tool` on PATH.
fn which(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The repository root: the nearest directory, from the current one up, with k8s/namespace.yaml.
fn repo_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    cwd.ancestors().find(|d| d.join("k8s/namespace.yaml").is_file()).map(Path::to_path_buf).ok_or_else(|| anyhow::anyhow!("no k8s/namespace.yaml in {} or above", cwd.display()))
}

/// The `orca-worker` binary beside this executable.
fn worker_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name("orca-worker");
    if beside.is_file() {
        return Ok(beside);
    }
    bail!("no orca-worker binary beside {}; build it: cargo build --release -p orca-worker", exe.display())
}
