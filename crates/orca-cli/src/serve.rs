//! `orca dev` and `orca server`: the backend in this process.
//!
//! Both read the spec's environment variables (see the README's configuration table), with
//! the command's flags taking precedence. `dev` is the embedded stack for one laptop: it binds
//! 127.0.0.1 by default and needs no external service. `server` is the backend alone, as
//! deployed (binds HOST, default 0.0.0.0).
//!
//! Both print one line `orca listening on http://ADDR` to stdout once the API accepts
//! connections; everything else goes to stderr.

use crate::{DevArgs, MigrateArgs, ServerArgs};
use anyhow::Context;
use orca_server::Server;
use orca_server::config::Config;
use std::collections::HashMap;
use std::io::Write;

/// Runs the whole stack locally for development.
pub async fn dev(args: &DevArgs) -> anyhow::Result<()> {
    if args.k8s {
        return crate::k8s_dev::run(args).await;
    }
    let mut env: HashMap<String, String> = std::env::vars().collect();
    env.insert("HOST".into(), args.host.clone());
    env.insert("PORT".into(), args.port.to_string());
    if let Some(d) = &args.data_dir {
        env.insert("ORCA_DATA_DIR".into(), d.display().to_string());
    }
    // Docker when it is there (else the local runner), and the compose services if asked.
    let compose = crate::dev::prepare(args, &mut env).await?;
    let result = run(&env, true).await;
    if let Some(c) = compose {
        c.down();
    }
    result
}

/// Runs the backend.
pub async fn server(args: &ServerArgs) -> anyhow::Result<()> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    env.insert("HOST".into(), args.host.clone());
    env.insert("PORT".into(), args.port.to_string());
    if let Some(u) = &args.database_url {
        env.insert("DATABASE_URL".into(), u.clone());
    }
    run(&env, false).await
}

pub(crate) async fn run(env: &HashMap<String, String>, dev: bool) -> anyhow::Result<()> {
    let config = Config::from_vars(env)?;
    orca_server::telemetry::init(&config.log_level, config.log_format);
    let server = Server::start(&config).await.context("cannot start the Orca server")?;
    let url = format!("http://{}", server.addr);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "orca listening on {url}")?;
        out.flush()?;
    }
    if dev {
        let how = if config.scheduler == orca_server::config::SchedulerKind::Docker {
            format!("jobs run in Docker containers from {}", config.sandbox.docker.image)
        } else {
            "jobs run as local processes".to_owned()
        };
        eprintln!("Orca is running (data in {}, {how}). Press Ctrl+C to stop.", config.data_dir.display());
        eprintln!("Try it in another terminal:");
        eprintln!("  ORCA_API_URL={url} orca job submit --agent echo --prompt \"hello\" --follow");
    }
    server.run_until(orca_server::shutdown_signal()).await
}

/// `orca migrate`: applies the job store's schema migrations and exits. The server applies
/// them at start-up too; this is for deployments that migrate as a separate step.
pub async fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if let Some(u) = &args.database_url {
        env.insert("DATABASE_URL".into(), u.clone());
    }
    let config = Config::from_vars(&env)?;
    orca_server::telemetry::init(&config.log_level, config.log_format);
    let kind = orca_server::migrate(&config).await?;
    eprintln!("orca: the {kind} job store is up to date");
    Ok(())
}
