//! What `orca dev` runs jobs on, decided before the backend starts.
//!
//! - `ORCA_SCHEDULER` set: used as is.
//! - Otherwise, a reachable Docker engine that has `WORKER_IMAGE` (default
//!   `orca-worker:latest`) means `ORCA_SCHEDULER=docker`: every job in its own container, and
//!   the containers are stopped when `orca dev` stops (`ORCA_SHUTDOWN_WORKERS=stop`, unless set).
//! - Otherwise the embedded local runner, said in one line on stderr.
//!
//! The spec's `orca dev` also starts PostgreSQL and Redis with Docker Compose. Here that is
//! opt-in (`--compose`): the embedded store and event log need no images, and the postgres and
//! redis images must come from a registry. With `--compose`, `postgres` and `redis` of
//! docker/docker-compose.yml are started (project `orca`), `DATABASE_URL` and `REDIS_URL`
//! point at them (unless set), and `compose down` runs when `orca dev` exits.

use crate::DevArgs;
use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Chooses the scheduler and, with `--compose`, starts the services. The returned guard
/// stops them.
pub async fn prepare(args: &DevArgs, env: &mut HashMap<String, String>) -> anyhow::Result<Option<Compose>> {
    let compose = if args.compose { Some(Compose::up(args.compose_file.clone(), env)?) } else { None };
    if env.get("ORCA_SCHEDULER").is_some_and(|s| !s.is_empty()) {
        return Ok(compose);
    }
    let image = env.get("WORKER_IMAGE").filter(|s| !s.is_empty()).cloned().unwrap_or_else(|| "orca-worker:latest".into());
    match orca_server::scheduler::docker::check_engine(&image).await {
        Ok(()) => {
            env.insert("ORCA_SCHEDULER".into(), "docker".into());
            env.entry("ORCA_SHUTDOWN_WORKERS".into()).or_insert_with(|| "stop".into());
        }
        Err(why) => eprintln!("No usable Docker engine ({why}): jobs run as local processes instead."),
    }
    Ok(compose)
}

/// Services started with `--compose`; stopped by [`Compose::down`].
pub struct Compose {
    cmd: Vec<&'static str>,
    file: PathBuf,
}

impl Compose {
    fn command(&self) -> Command {
        let mut c = Command::new(self.cmd[0]);
        c.args(&self.cmd[1..]).args(["-p", "orca", "-f"]).arg(&self.file);
        c
    }

    fn up(file: PathBuf, env: &mut HashMap<String, String>) -> anyhow::Result<Compose> {
        if !file.is_file() {
            bail!("compose file {} not found (run from the repository root or pass --compose-file)", file.display());
        }
        let works = |cmd: &[&str]| Command::new(cmd[0]).args(&cmd[1..]).arg("version").output().is_ok_and(|o| o.status.success());
        let cmd = [vec!["docker", "compose"], vec!["docker-compose"]]
            .into_iter()
            .find(|c| works(c))
            .context("--compose needs `docker compose` or `docker-compose`")?;
        let compose = Compose { cmd, file };
        eprintln!("Starting PostgreSQL and Redis ({} up -d postgres redis)…", compose.cmd.join(" "));
        let status = compose.command().args(["up", "-d", "postgres", "redis"]).status().context("cannot run compose")?;
        if !status.success() {
            bail!("compose could not start postgres and redis ({status})");
        }
        for (name, port) in [("PostgreSQL", 5432), ("Redis", 6379)] {
            wait_port(port, Duration::from_secs(90)).with_context(|| format!("{name} did not accept connections on 127.0.0.1:{port}"))?;
        }
        env.entry("DATABASE_URL".into()).or_insert_with(|| "postgresql://orca:orca@localhost:5432/orca".into());
        env.entry("REDIS_URL".into()).or_insert_with(|| "redis://localhost:6379".into());
        env.entry("DOCKER_NETWORK".into()).or_insert_with(|| "orca_default".into());
        Ok(compose)
    }

    /// `compose down` (the named volumes, i.e. the data, stay).
    pub fn down(self) {
        eprintln!("Stopping PostgreSQL and Redis…");
        if let Err(e) = self.command().arg("down").status() {
            eprintln!("warning: compose down failed: {e}");
        }
    }
}

fn wait_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        if std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if t.elapsed() > within {
            bail!("gave up after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
