//! Orca's backend: the HTTP API, the job manager, and the adapters behind its ports.
//!
//! Entry point: [`Server::start`] wires the configured adapters together and serves the API;
//! [`Server::run_until`] drives it until a shutdown signal.
//!
//! Ports (traits) and their adapters:
//! - [`store::JobStore`]: embedded SQLite;
//! - [`events::EventBus`]: embedded SQLite log with live fan-out;
//! - [`scheduler::Scheduler`]: local child processes.

pub mod api;
pub mod config;
pub mod events;
pub mod manager;
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
                let events_path = path.with_file_name("events.db");
                let bus = events::embedded::EmbeddedEventLog::open(&events_path).await.context("opening the event log")?;
                (Arc::new(store), Arc::new(bus), Arc::new(deliveries))
            }
        };
        let scheduler: Arc<dyn Scheduler> = match config.scheduler {
            SchedulerKind::Local => Arc::new(scheduler::local::LocalScheduler::new(config.worker_bin.clone(), &config.data_dir)?),
        };
        let manager = JobManager::new(
            store,
            bus,
            scheduler,
            ManagerConfig {
                max_concurrent_jobs: config.max_concurrent_jobs,
                stop_grace: config.stop_grace,
                log_level: config.log_level.clone(),
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
        let http = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await });
        tracing::info!(%addr, store = config.store_kind(), scheduler = ?config.scheduler, "orca server listening");
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

/// Resolves on SIGINT (Ctrl+C) or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
