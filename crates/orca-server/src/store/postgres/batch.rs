//! Group commit for submissions: inserts that arrive while another is in flight share one
//! `INSERT … SELECT FROM UNNEST(…)` statement, so a burst of N submissions costs a few commits
//! (and WAL flushes) instead of N.
//!
//! An insert with nobody else inserting runs at once on the caller's task (no hand-off, no
//! added latency for a lone client), on a connection kept for that purpose outside the pool
//! (a pooled query costs a semaphore round and a spawned task to give the connection back;
//! a lone client's latency is what the benchmark at concurrency 1 measures). If that
//! connection fails, it is dropped and the insert goes through the pool with its retries,
//! as possibly applied. Otherwise it is queued for one of a few writer tasks,
//! each of which takes everything waiting (up to [`MAX_BATCH`]) and writes it in one
//! statement. Every caller still gets its answer only after its own row is committed.
//!
//! A batch that fails as a whole is split: each of its rows is inserted on its own, so a
//! duplicate id fails only its own submission. When the batch was retried after a lost
//! connection, its first attempt may have committed; the rows are then inserted with
//! `maybe_applied`, which accepts an identical row already stored (see [`super::insert_one`]).

use super::{insert_one, retrying, single_insert, unavailable};
use crate::store::StoreError;
use orca_core::{Job, Secret};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::types::Json;
use sqlx::{Connection, PgPool};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

/// How long opening the lone insert's connection may take before the pool is used instead.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Most rows in one statement (bounds one statement's size: prompts are at most 100 kB).
pub const MAX_BATCH: usize = 128;

struct Pending {
    job: Job,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The queue of waiting inserts and the count of inserts in flight.
pub struct Batcher {
    pool: PgPool,
    queue: mpsc::Sender<Pending>,
    in_flight: AtomicUsize,
    /// The lone insert's own connection, opened on first use.
    lone: Mutex<Option<PgConnection>>,
    connect: PgConnectOptions,
}

impl Batcher {
    /// Starts `writers` writer tasks on the current runtime; they end when the batcher is dropped.
    pub fn start(pool: PgPool, connect: PgConnectOptions, writers: usize) -> Batcher {
        let (queue, rx) = mpsc::channel::<Pending>(MAX_BATCH * writers.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(pool.clone(), rx.clone()));
        }
        Batcher { pool, queue, in_flight: AtomicUsize::new(0), lone: Mutex::new(None), connect }
    }

    /// Inserts one job: at once when nothing else is being inserted, else in the next batch.
    pub async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let guard = InFlight::enter(&self.in_flight);
        if guard.alone {
            if let Ok(mut lone) = self.lone.try_lock() {
                return self.insert_alone(&mut lone, job).await;
            }
            return insert_one(&self.pool, job, false).await;
        }
        let (done, answer) = oneshot::channel();
        self.queue.send(Pending { job: job.clone(), done }).await.map_err(|_| unavailable("the insert writers stopped"))?;
        answer.await.map_err(|_| unavailable("the insert writer stopped"))?
    }

    /// Inserts on the lone insert's connection (see the module doc).
    async fn insert_alone(&self, lone: &mut Option<PgConnection>, job: &Job) -> Result<(), StoreError> {
        if lone.is_none() {
            match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.connect)).await {
                Ok(Ok(c)) => *lone = Some(c),
                _ => return insert_one(&self.pool, job, false).await, // the pool retries
            }
        }
        let conn = lone.as_mut().expect("connected above");
        match single_insert(job).execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Duplicate(job.id)),
            Err(e) if crate::retry::sqlx_transient(&e) => {
                // The connection broke, maybe after the commit: retry through the pool.
                *lone = None;
                insert_one(&self.pool, job, true).await
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// Counts an insert in flight for as long as it lives.
struct InFlight<'a> {
    count: &'a AtomicUsize,
    alone: bool,
}

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let before = count.fetch_add(1, Ordering::AcqRel);
        InFlight { count, alone: before == 0 }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn writer(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return; // the batcher was dropped
            }
        }
        write(&pool, batch).await;
    }
}

/// Writes a batch and answers each of its callers.
async fn write(pool: &PgPool, batch: Vec<Pending>) {
    if let [one] = batch.as_slice() {
        let res = insert_one(pool, &one.job, false).await;
        let _ = batch.into_iter().next().expect("one").done.send(res);
        return;
    }
    let tries = AtomicU32::new(0);
    match retrying(&tries, || insert_many(pool, &batch)).await {
        Ok(()) => {
            for p in batch {
                let _ = p.done.send(Ok(()));
            }
        }
        Err(e) if matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation()) => {
            // Nothing of this statement was stored, unless an earlier attempt was.
            let maybe_applied = tries.load(Ordering::Relaxed) > 1;
            let answers = futures::future::join_all(batch.iter().map(|p| insert_one(pool, &p.job, maybe_applied))).await;
            for (p, res) in batch.into_iter().zip(answers) {
                let _ = p.done.send(res);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for p in batch {
                let _ = p.done.send(Err(unavailable(&msg)));
            }
        }
    }
}

async fn insert_many(pool: &PgPool, batch: &[Pending]) -> Result<(), sqlx::Error> {
    let n = batch.len();
    let (mut ids, mut statuses, mut agents, mut repos, mut created, mut bodies, mut tokens) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for Pending { job, .. } in batch {
        ids.push(job.id.0);
        statuses.push(job.status.as_str());
        agents.push(job.agent_type.as_str());
        repos.push(job.repo_url.as_deref());
        created.push(job.created_at);
        bodies.push(Json(job));
        tokens.push(job.config.git_token.as_ref().map(Secret::expose));
    }
    sqlx::query(
        "INSERT INTO jobs (id, status, agent_type, repo_url, created_at, body, git_token)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[], $7::text[])",
    )
    .bind::<&[Uuid]>(&ids)
    .bind(&statuses)
    .bind(&agents)
    .bind(&repos)
    .bind(&created)
    .bind(&bodies)
    .bind(&tokens)
    .execute(pool)
    .await
    .map(|_| ())
}
