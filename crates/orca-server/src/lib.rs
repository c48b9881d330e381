//! Orca's backend: the HTTP API, the job manager, and the adapters behind its ports.
//!
//! Entry point: [`Server::start`] wires the configured adapters together and serves the API;
//! [`Server::run_until`] drives it until a shutdown signal.
//!
//! Ports (traits) and their adapters:
//! - [`store::JobStore`]: embedded SQLite, PostgreSQL;
//! - [`events::EventBus`]: embedded SQLite log with live fan-out, Redis Streams;
//! - [`scheduler::Scheduler`]: local child processes (optionally in bubblewrap), Docker
//!   containers, Kubernetes Jobs;
//! - [`webhooks::store::DeliveryStore`]: SQLite, PostgreSQL.

pub mod agent_env;
pub mod api;
pub mod config;
pub mod events;
pub mod manager;
pub mod retry;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod webhooks;

use crate::config::{Config, SchedulerKind, StoreBackend};
use crate::events::EventBus;
use crate::manager::{JobManager, ManagerConfig};
use crate::scheduler::Scheduler;
use crate::store::JobStore;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests and running jobs get to wind down on shutdown.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// A started server: its address and the handles to stop it.
pub struct Server {
    pub addr: SocketAddr,
    manager: Arc<JobManager>,
    shutdown: CancellationToken,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Opens the stores, starts the job manager and binds the API.
    pub async fn start(config: &Config) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create the data dir {} (ORCA_DATA_DIR)", config.data_dir.display()))?;
        // One TLS provider for every client in the process (webhooks, agents' model endpoints).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (store, bus, deliveries): (Arc<dyn JobStore>, Arc<dyn EventBus>, Arc<dyn webhooks::store::DeliveryStore>) = match &config.store {
            StoreBackend::Embedded { path } => {
                let store = store::sqlite::SqliteJobStore::open(path).await.context("opening the job store")?;
                let deliveries = webhooks::sqlite::SqliteDeliveryStore::new(store.pool());
                (Arc::new(store), open_bus(config, path).await?, Arc::new(deliveries))
            }
            StoreBackend::Postgres { url, pool_size } => {
                let store = store::postgres::PgJobStore::open(url.expose(), *pool_size).await.context("opening the PostgreSQL job store (DATABASE_URL)")?;
                let deliveries = webhooks::postgres::PgDeliveryStore::new(store.pool());
                (Arc::new(store), open_bus(config, &config.data_dir.join("orca.db")).await?, Arc::new(deliveries))
            }
        };
        let scheduler: Arc<dyn Scheduler> = match config.scheduler {
            SchedulerKind::Local => Arc::new(
                scheduler::local::LocalScheduler::new(config.worker_bin.clone(), &config.data_dir)?
                    .with_agent_env(config.agent_env.clone())
                    .with_sandbox(config.sandbox.local, config.sandbox.limits, &config.data_dir)?,
            ),
            SchedulerKind::Docker => Arc::new(
                scheduler::docker::DockerScheduler::new(scheduler::docker::DockerSettings::from_config(config))
                    .await
                    .context("starting the Docker scheduler (ORCA_SCHEDULER=docker)")?
                    .with_agent_env(config.agent_env.clone()),
            ),
            SchedulerKind::K8s => Arc::new(
                scheduler::k8s::K8sScheduler::connect(scheduler::k8s::Settings::from_config(config))
                    .await
                    .context("starting the Kubernetes scheduler (ORCA_SCHEDULER=k8s)")?,
            ),
        };
        let manager = JobManager::new(
            store,
            bus,
            scheduler,
            ManagerConfig {
                max_concurrent_jobs: config.max_concurrent_jobs,
                max_jobs_per_repo: config.max_jobs_per_repo,
                stop_grace: config.stop_grace,
                log_level: config.log_level.clone(),
                cluster: config.cluster.clone(),
            },
        );
        let hooks = webhooks::Webhooks::new(deliveries, config.webhooks.clone())?;
        manager.set_webhooks(hooks.clone());
        manager.start();
        let shutdown = CancellationToken::new();
        hooks.start(shutdown.clone());
        let app = api::router(api::AppState { manager: manager.clone(), webhooks: hooks, shutdown: shutdown.clone() });
        let listener = tokio::net::TcpListener::bind((config.host, config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{} (HOST, PORT)", config.host, config.port))?;
        let addr = listener.local_addr()?;
        let stop = shutdown.clone();
        // No Nagle delay on responses (each is written as soon as it is ready).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        });
        let http = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await });
        tracing::info!(%addr, store = config.store_kind(), instance = %config.cluster.instance_id, scheduler = ?config.scheduler, "orca server listening");
        Ok(Server { addr, manager, shutdown, http })
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        signal.await;
        tracing::info!("shutting down");
        self.stop().await
    }

    /// Stops accepting requests, closes streams, stops workers and waits (bounded).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.manager.shutdown(SHUTDOWN_DEADLINE).await;
        match tokio::time::timeout(SHUTDOWN_DEADLINE, self.http).await {
            Ok(Ok(res)) => res.context("HTTP server failed"),
            Ok(Err(e)) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
            Err(_) => Err(anyhow::anyhow!("HTTP server did not stop within {SHUTDOWN_DEADLINE:?}")),
        }
    }
}

/// The configured event bus; the embedded log lives beside the embedded store (`events.db`).
async fn open_bus(config: &Config, store_path: &std::path::Path) -> anyhow::Result<Arc<dyn EventBus>> {
    Ok(match &config.events {
        config::EventsBackend::Embedded => {
            if matches!(config.store, StoreBackend::Postgres { .. }) {
                tracing::warn!("DATABASE_URL is set but REDIS_URL is not: events stay in this instance's data dir, so other instances cannot stream them");
            }
            let path = store_path.with_file_name("events.db");
            Arc::new(events::embedded::EmbeddedEventLog::open(&path).await.context("opening the event log")?)
        }
        config::EventsBackend::Redis(settings) => {
            Arc::new(events::redis::RedisEventBus::connect(settings.clone()).await.context("connecting to Redis (REDIS_URL)")?)
        }
    })
}

/// Applies the job store's migrations and exits (`orca migrate`); embedded stores migrate on
/// open. Returns the store's kind.
pub async fn migrate(config: &Config) -> anyhow::Result<&'static str> {
    match &config.store {
        StoreBackend::Postgres { url, .. } => {
            let pool = store::postgres::connect(url.expose(), 2).await.context("connecting to PostgreSQL (DATABASE_URL)")?;
            store::postgres::migrate(&pool).await.context("applying migrations")?;
            pool.close().await;
            Ok("postgres")
        }
        StoreBackend::Embedded { path } => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("cannot create the data dir {} (ORCA_DATA_DIR)", config.data_dir.display()))?;
            store::sqlite::SqliteJobStore::open(path).await.context("opening the job store")?;
            events::embedded::EmbeddedEventLog::open(&path.with_file_name("events.db")).await.context("opening the event log")?;
            Ok("sqlite")
        }
    }
}

/// Resolves on SIGINT (Ctrl+C) or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
