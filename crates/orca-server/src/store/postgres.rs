//! The PostgreSQL job store, shared by any number of backend instances.
//!
//! Layout (migrations in `migrations/postgres/`, embedded in the binary, applied at start-up
//! and by `orca migrate`): table `jobs` keeps the public job as `jsonb` in `body`, the git
//! token in its own column (never part of `body`), copies of the columns the list filters use,
//! and the lease (`owner`, `lease_until`). Indexes: one per list filter, each ordered like the
//! list (`created_at DESC, id DESC`); a partial index of queued jobs for claiming; a partial
//! index of leased jobs for the reaper.
//!
//! Claiming locks the oldest queued row with `FOR UPDATE SKIP LOCKED` and updates it in the
//! same transaction, so concurrent claimers (on any instance) never get the same job and never
//! wait for each other. Reclaiming expired leases works the same way.
//!
//! Every call retries connection errors with backoff ([`crate::retry`]), so a PostgreSQL
//! restart stalls requests instead of failing them. A retried write that may already have
//! been applied (the commit happened, the reply was lost) is recognised: a duplicate insert of
//! an identical job and a compare-and-set that finds its own update both count as success.

mod batch;

use super::{JobStore, Lease, LeaseTerms, Reclaimed, StoreError};
use crate::retry::{backoff, backoff_for, sqlx_transient};
use async_trait::async_trait;
use backon::Retryable;
use orca_core::{Job, JobFilter, JobId, JobPage, JobStatus, Secret, StatusChange};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// The migrations, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long start-up waits for PostgreSQL to accept connections.
const CONNECT_BUDGET: Duration = Duration::from_secs(30);

/// Connections kept apart for heartbeats and health pings: a pool saturated by a burst of
/// submissions must not delay lease renewals until other instances think this one is dead.
const LEASE_POOL_SIZE: u32 = 2;

pub struct PgJobStore {
    pool: PgPool,
    /// Heartbeats and pings only (see [`LEASE_POOL_SIZE`]).
    lease_pool: PgPool,
    /// Group commit of inserts.
    inserts: batch::Batcher,
}

/// Writer tasks of the insert batcher (each holds at most one connection at a time).
const INSERT_WRITERS: usize = 2;

/// DATABASE_URL as connection options, naming the application `orca`.
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url).map_err(|e| StoreError::Unavailable(format!("bad DATABASE_URL: {e}")))?.application_name("orca"))
}

/// Opens a pool of at most `pool_size` connections, waiting (bounded) for the server to come up.
pub async fn connect(url: &str, pool_size: u32) -> Result<PgPool, StoreError> {
    let opts = connect_options(url)?;
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(300))
        // No ping before each use (a round trip per query): a dead connection fails its query
        // with an I/O error, which is retried on a fresh one.
        .test_before_acquire(false)
        .connect_lazy_with(opts);
    (|| async { sqlx::query("SELECT 1").execute(&pool).await })
        .retry(backoff_for(CONNECT_BUDGET))
        .when(sqlx_transient)
        .notify(|e, d| tracing::warn!("PostgreSQL not reachable yet ({e}); retrying in {d:?}"))
        .await
        .map_err(unavailable)?;
    Ok(pool)
}

/// Applies the embedded migrations (an advisory lock serialises concurrent instances).
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await.map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
}

impl PgJobStore {
    /// Connects and applies migrations.
    pub async fn open(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        let pool = connect(url, pool_size).await?;
        migrate(&pool).await?;
        let lease_pool = connect(url, LEASE_POOL_SIZE).await?;
        let inserts = batch::Batcher::start(pool.clone(), connect_options(url)?, INSERT_WRITERS);
        Ok(Self { pool, lease_pool, inserts })
    }

    /// The pool, for other tables in the same database.
    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    fn decode(row: &PgRow) -> Result<Job, StoreError> {
        let Json(mut job): Json<Job> = row.try_get("body").map_err(|e| StoreError::Corrupt(format!("job body: {e}")))?;
        let token: Option<String> = row.try_get("git_token").map_err(|e| StoreError::Corrupt(e.to_string()))?;
        job.config.git_token = token.map(Secret::new);
        Ok(job)
    }

    /// Stores `job` if its row is still in status `expected` (and leased to `owner`, if given;
    /// with `lease`: held by nobody, and leased to `lease.owner` by the same statement).
    async fn compare_and_set(&self, job: &Job, expected: JobStatus, owner: Option<&str>, lease: Option<&LeaseTerms<'_>>) -> Result<bool, StoreError> {
        let tries = AtomicU32::new(0);
        let res = retrying(&tries, || {
            sqlx::query(
                "UPDATE jobs SET status = $1, body = $2, owner = COALESCE($6, owner), lease_until = COALESCE($7, lease_until)
                 WHERE id = $3 AND status = $4 AND ($5::text IS NULL OR owner = $5) AND ($6::text IS NULL OR owner IS NULL)",
            )
            .bind(job.status.as_str())
            .bind(Json(job))
            .bind(job.id.0)
            .bind(expected.as_str())
            .bind(owner)
            .bind(lease.map(|l| l.owner))
            .bind(lease.map(|l| l.until))
            .execute(&self.pool)
        })
        .await
        .map_err(unavailable)?;
        if res.rows_affected() == 1 {
            return Ok(true);
        }
        // After a lost acknowledgement the retry finds the row already moved, by us.
        Ok(tries.load(Ordering::Relaxed) > 1 && self.get(job.id).await?.as_ref() == Some(job))
    }

    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        retrying(&AtomicU32::new(0), op).await.map_err(unavailable)
    }
}

/// Runs `op`, retrying while the database is unreachable; counts attempts in `tries`.
async fn retrying<T, F, Fut>(tries: &AtomicU32, op: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut op = op;
    (|| {
        tries.fetch_add(1, Ordering::Relaxed);
        op()
    })
    .retry(backoff())
    .when(sqlx_transient)
    .notify(|e, d| tracing::warn!("PostgreSQL: {e}; retrying in {d:?}"))
    .await
}

/// One job by id, retrying while the database is unreachable.
async fn fetch(pool: &PgPool, id: JobId) -> Result<Option<Job>, StoreError> {
    let row = retrying(&AtomicU32::new(0), || sqlx::query("SELECT body, git_token FROM jobs WHERE id = $1").bind(id.0).fetch_optional(pool))
        .await
        .map_err(unavailable)?;
    row.as_ref().map(PgJobStore::decode).transpose()
}

/// The statement inserting one job.
fn single_insert(job: &Job) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query("INSERT INTO jobs (id, status, agent_type, repo_url, created_at, body, git_token) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(job.id.0)
        .bind(job.status.as_str())
        .bind(job.agent_type.as_str())
        .bind(job.repo_url.as_deref())
        .bind(job.created_at)
        .bind(Json(job))
        .bind(job.config.git_token.as_ref().map(Secret::expose))
}

/// Inserts one job. A duplicate id is an error, except when this insert may already have been
/// applied (`maybe_applied`, or a retry after a lost connection) and the stored row is this
/// very job: then the earlier attempt committed and its answer was lost.
async fn insert_one(pool: &PgPool, job: &Job, maybe_applied: bool) -> Result<(), StoreError> {
    let tries = AtomicU32::new(0);
    let res = retrying(&tries, || single_insert(job).execute(pool)).await;
    match res {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            if (maybe_applied || tries.load(Ordering::Relaxed) > 1) && fetch(pool, job.id).await?.as_ref() == Some(job) {
                return Ok(());
            }
            Err(StoreError::Duplicate(job.id))
        }
        Err(e) => Err(unavailable(e)),
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn uuids(ids: &[JobId]) -> Vec<Uuid> {
    ids.iter().map(|i| i.0).collect()
}

fn push_filters(q: &mut QueryBuilder<Postgres>, f: &JobFilter) {
    q.push(" WHERE TRUE");
    if !f.status.is_empty() {
        let statuses: Vec<&'static str> = f.status.iter().map(|s| s.as_str()).collect();
        q.push(" AND status = ANY(").push_bind(statuses).push(")");
    }
    if let Some(a) = &f.agent_type {
        q.push(" AND agent_type = ").push_bind(a.as_str());
    }
    if let Some(r) = f.retry_of {
        q.push(" AND body->>'retryOf' = ").push_bind(r.to_string());
    }
    if let Some(r) = &f.repo_url {
        q.push(" AND repo_url = ").push_bind(r.as_str());
    }
    if let Some(s) = f.since {
        q.push(" AND created_at >= ").push_bind(s);
    }
}

#[async_trait]
impl JobStore for PgJobStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        self.inserts.insert(job).await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        fetch(&self.pool, id).await
    }

    async fn list(&self, f: &JobFilter) -> Result<JobPage, StoreError> {
        let count = self.run(|| {
            let mut q = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM jobs");
            push_filters(&mut q, f);
            async move { q.build_query_scalar::<i64>().fetch_one(&self.pool).await }
        });
        let page = self.run(|| {
            let mut q = QueryBuilder::<Postgres>::new("SELECT body, git_token FROM jobs");
            push_filters(&mut q, f);
            q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(f.limit));
            q.push(" OFFSET ").push_bind(f.offset as i64);
            async move { q.build().fetch_all(&self.pool).await }
        });
        let (total, rows) = tokio::try_join!(count, page)?;
        let jobs = rows.iter().map(Self::decode).collect::<Result<Vec<_>, _>>()?;
        Ok(JobPage { jobs, total: total as u64, limit: f.limit, offset: f.offset })
    }

    async fn update_if_status(&self, job: &Job, expected: JobStatus) -> Result<bool, StoreError> {
        self.compare_and_set(job, expected, None, None).await
    }

    async fn update_if_owned(&self, job: &Job, expected: JobStatus, owner: &str) -> Result<bool, StoreError> {
        self.compare_and_set(job, expected, Some(owner), None).await
    }

    async fn update_and_lease(&self, job: &Job, expected: JobStatus, terms: &LeaseTerms<'_>) -> Result<bool, StoreError> {
        self.compare_and_set(job, expected, None, Some(terms)).await
    }

    async fn claim_next(&self, terms: &LeaseTerms<'_>) -> Result<Option<Job>, StoreError> {
        let claim = || async {
            let mut tx = self.pool.begin().await?;
            if terms.max_per_repo.is_some() {
                // Per-repository counts are only exact if claims do not overlap: serialize them
                // cluster-wide for the length of this short transaction.
                sqlx::query("SELECT pg_advisory_xact_lock(7260731)").execute(&mut *tx).await?;
            }
            let row = sqlx::query(
                "SELECT body, git_token FROM jobs q WHERE status = 'queued' AND owner IS NULL
                   AND ($1::int8 IS NULL OR q.repo_url IS NULL OR (SELECT COUNT(*) FROM jobs r
                        WHERE r.repo_url = q.repo_url AND r.status IN ('scheduled', 'running')) < $1::int8)
                 ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .bind(terms.max_per_repo.map(i64::from))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let job = Self::decode(&row).map_err(|e| sqlx::Error::Decode(e.into()))?;
            let next = job
                .transition(&StatusChange::to(JobStatus::Scheduled), terms.now)
                .map_err(|e| sqlx::Error::Decode(e.into()))?;
            sqlx::query("UPDATE jobs SET status = $1, body = $2, owner = $3, lease_until = $4 WHERE id = $5")
                .bind(next.status.as_str())
                .bind(Json(&next))
                .bind(terms.owner)
                .bind(terms.until)
                .bind(next.id.0)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(next))
        };
        // A claim whose commit was not acknowledged stays leased to us unsupervised; its lease
        // runs out and the reaper puts it back in the queue.
        self.run(claim).await
    }

    async fn heartbeat(&self, terms: &LeaseTerms<'_>, ids: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let ids = uuids(ids);
        let kept: Vec<Uuid> = self
            .run(|| {
                sqlx::query_scalar("UPDATE jobs SET lease_until = $3 WHERE owner = $1 AND id = ANY($2) RETURNING id")
                    .bind(terms.owner)
                    .bind(&ids)
                    .bind(terms.until)
                    .fetch_all(&self.lease_pool)
            })
            .await?;
        Ok(kept.into_iter().map(JobId).collect())
    }

    async fn reclaim_expired(&self, terms: &LeaseTerms<'_>, limit: u32) -> Result<Vec<Reclaimed>, StoreError> {
        let rows = self
            .run(|| {
                sqlx::query(
                    "WITH expired AS (
                         SELECT id, owner FROM jobs WHERE owner IS NOT NULL AND lease_until < $2
                         ORDER BY lease_until LIMIT $4 FOR UPDATE SKIP LOCKED)
                     UPDATE jobs j SET owner = $1, lease_until = $3 FROM expired e WHERE j.id = e.id
                     RETURNING j.body, j.git_token, e.owner AS previous_owner",
                )
                .bind(terms.owner)
                .bind(terms.now)
                .bind(terms.until)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
            })
            .await?;
        rows.iter()
            .map(|r| Ok(Reclaimed { job: Self::decode(r)?, previous_owner: r.try_get("previous_owner").map_err(unavailable)? }))
            .collect()
    }

    async fn release(&self, id: JobId, owner: &str) -> Result<bool, StoreError> {
        let res = self
            .run(|| {
                sqlx::query("UPDATE jobs SET owner = NULL, lease_until = NULL WHERE id = $1 AND owner = $2")
                    .bind(id.0)
                    .bind(owner)
                    .execute(&self.pool)
            })
            .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn lease(&self, id: JobId) -> Result<Option<Lease>, StoreError> {
        let row = self
            .run(|| {
                sqlx::query("SELECT owner, lease_until FROM jobs WHERE id = $1 AND owner IS NOT NULL").bind(id.0).fetch_optional(&self.pool)
            })
            .await?;
        row.map(|r| Ok(Lease { owner: r.try_get("owner").map_err(unavailable)?, until: r.try_get("lease_until").map_err(unavailable)? }))
            .transpose()
    }

    async fn queued_before(&self, job: &Job) -> Result<u64, StoreError> {
        let n: i64 = self
            .run(|| {
                sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND (created_at, id) < ($1, $2)")
                    .bind(job.created_at)
                    .bind(job.id.0)
                    .fetch_one(&self.pool)
            })
            .await?;
        Ok(n as u64)
    }

    async fn statuses(&self, ids: &[JobId]) -> Result<Vec<(JobId, JobStatus)>, StoreError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let ids = uuids(ids);
        let rows: Vec<(Uuid, String)> =
            self.run(|| sqlx::query_as("SELECT id, status FROM jobs WHERE id = ANY($1)").bind(&ids).fetch_all(&self.pool)).await?;
        rows.into_iter()
            .map(|(id, s)| Ok((JobId(id), s.parse().map_err(|e: String| StoreError::Corrupt(e))?)))
            .collect()
    }

    async fn active(&self) -> Result<Vec<Job>, StoreError> {
        let rows = self
            .run(|| {
                sqlx::query("SELECT body, git_token FROM jobs WHERE status IN ('scheduled', 'running') ORDER BY created_at")
                    .fetch_all(&self.pool)
            })
            .await?;
        rows.iter().map(Self::decode).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.lease_pool).await.map(|_| ()).map_err(unavailable)
    }
}
