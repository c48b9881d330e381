//! The embedded job store: one SQLite file (WAL) in the data dir.
//!
//! Layout: table `jobs` keeps the job as JSON in `body` (the public fields), the git token in
//! its own column (never part of `body`), and copies of the columns the list filters use.
//! Migrations live in `migrations/sqlite/` and run at start-up.
//!
//! Durability: WAL with `synchronous = NORMAL` survives a killed process (kill -9); a power
//! loss may drop the last commits.

use super::{JobStore, Lease, LeaseTerms, Reclaimed, StoreError};
use async_trait::async_trait;
use orca_core::{Job, JobFilter, JobId, JobPage, JobStatus, Secret, StatusChange};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;

pub struct SqliteJobStore {
    pool: SqlitePool,
}

/// Opens (creating if needed) a WAL-mode SQLite database with sane pool settings.
pub async fn open_pool(path: &Path) -> Result<SqlitePool, StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    }
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(unavailable)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    SqlitePoolOptions::new().max_connections(8).connect_with(opts).await.map_err(unavailable)
}

impl SqliteJobStore {
    /// Opens the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = open_pool(path).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }

    /// The pool, for other tables in the same database (webhook deliveries).
    pub fn pool(&self) -> SqlitePool {
        self.pool.clone()
    }

    fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<Job, StoreError> {
        let body: String = row.get("body");
        let mut job: Job = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("job body: {e}")))?;
        let token: Option<String> = row.get("git_token");
        job.config.git_token = token.map(Secret::new);
        Ok(job)
    }

    /// Stores `job` if its row is still in status `expected` (and leased to `owner`, if given;
    /// with `lease`: held by nobody, and leased to `lease.owner` by the same statement).
    async fn compare_and_set(&self, job: &Job, expected: JobStatus, owner: Option<&str>, lease: Option<&LeaseTerms<'_>>) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE jobs SET status = ?1, body = ?2, owner = COALESCE(?6, owner), lease_until = COALESCE(?7, lease_until)
             WHERE id = ?3 AND status = ?4 AND (?5 IS NULL OR owner = ?5) AND (?6 IS NULL OR owner IS NULL)",
        )
        .bind(job.status.as_str())
        .bind(body(job)?)
        .bind(job.id.to_string())
        .bind(expected.as_str())
        .bind(owner)
        .bind(lease.map(|l| l.owner))
        .bind(lease.map(|l| micros(l.until)))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(res.rows_affected() == 1)
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn body(job: &Job) -> Result<String, StoreError> {
    serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn push_filters(q: &mut QueryBuilder<Sqlite>, f: &JobFilter) {
    q.push(" WHERE 1=1");
    if !f.status.is_empty() {
        q.push(" AND status IN (");
        let mut sep = q.separated(", ");
        for s in &f.status {
            sep.push_bind(s.as_str());
        }
        q.push(")");
    }
    if let Some(a) = &f.agent_type {
        q.push(" AND agent_type = ").push_bind(a.as_str().to_owned());
    }
    if let Some(r) = f.retry_of {
        q.push(" AND json_extract(body, '$.retryOf') = ").push_bind(r.to_string());
    }
    if let Some(r) = &f.repo_url {
        q.push(" AND repo_url = ").push_bind(r.clone());
    }
    if let Some(s) = f.since {
        q.push(" AND created_at >= ").push_bind(micros(s));
    }
}

#[async_trait]
impl JobStore for SqliteJobStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let res = sqlx::query(
            "INSERT INTO jobs (id, status, agent_type, repo_url, created_at, body, git_token) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(job.id.to_string())
        .bind(job.status.as_str())
        .bind(job.agent_type.as_str())
        .bind(job.repo_url.as_deref())
        .bind(micros(job.created_at))
        .bind(body(job)?)
        .bind(job.config.git_token.as_ref().map(|t| t.expose().to_owned()))
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Duplicate(job.id)),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query("SELECT body, git_token FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(Self::decode).transpose()
    }

    async fn list(&self, f: &JobFilter) -> Result<JobPage, StoreError> {
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM jobs");
        push_filters(&mut count, f);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await.map_err(unavailable)?;
        let mut q = QueryBuilder::<Sqlite>::new("SELECT body, git_token FROM jobs");
        push_filters(&mut q, f);
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(f.limit as i64);
        q.push(" OFFSET ").push_bind(f.offset as i64);
        let rows = q.build().fetch_all(&self.pool).await.map_err(unavailable)?;
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
        // Each failed compare-and-set means another claimer took that job, so the queue got
        // shorter; the bound only guards against a queue that refills faster than we claim.
        for _ in 0..1000 {
            let row = sqlx::query(
                "SELECT body, git_token FROM jobs q WHERE status = 'queued' AND owner IS NULL
                   AND (? IS NULL OR q.repo_url IS NULL OR (SELECT COUNT(*) FROM jobs r
                        WHERE r.repo_url = q.repo_url AND r.status IN ('scheduled', 'running')) < ?)
                 ORDER BY created_at, id LIMIT 1",
            )
            .bind(terms.max_per_repo.map(i64::from))
            .bind(terms.max_per_repo.map(i64::from))
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            let Some(row) = row else { return Ok(None) };
            let job = Self::decode(&row)?;
            let next = job.transition(&StatusChange::to(JobStatus::Scheduled), terms.now).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let res = sqlx::query("UPDATE jobs SET status = ?, body = ?, owner = ?, lease_until = ? WHERE id = ? AND status = 'queued' AND owner IS NULL")
                .bind(next.status.as_str())
                .bind(body(&next)?)
                .bind(terms.owner)
                .bind(micros(terms.until))
                .bind(next.id.to_string())
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            if res.rows_affected() == 1 {
                return Ok(Some(next));
            }
        }
        Ok(None)
    }

    async fn heartbeat(&self, terms: &LeaseTerms<'_>, ids: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut q = QueryBuilder::<Sqlite>::new("UPDATE jobs SET lease_until = ");
        q.push_bind(micros(terms.until)).push(" WHERE owner = ").push_bind(terms.owner).push(" AND id IN (");
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(id.to_string());
        }
        q.push(") RETURNING id");
        let rows: Vec<String> = q.build_query_scalar().fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.iter().map(|s| JobId::parse(s).ok_or_else(|| StoreError::Corrupt(format!("job id {s}")))).collect()
    }

    async fn reclaim_expired(&self, terms: &LeaseTerms<'_>, limit: u32) -> Result<Vec<Reclaimed>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, owner, lease_until FROM jobs WHERE owner IS NOT NULL AND lease_until < ? ORDER BY lease_until LIMIT ?",
        )
        .bind(micros(terms.now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut out = vec![];
        for r in rows {
            let (id, owner, until): (String, String, i64) = (r.get("id"), r.get("owner"), r.get("lease_until"));
            // Compare-and-set on the lease we saw: of concurrent reclaimers, one wins each job.
            let won = sqlx::query("UPDATE jobs SET owner = ?, lease_until = ? WHERE id = ? AND owner = ? AND lease_until = ? RETURNING body, git_token")
                .bind(terms.owner)
                .bind(micros(terms.until))
                .bind(&id)
                .bind(&owner)
                .bind(until)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            if let Some(row) = won {
                out.push(Reclaimed { job: Self::decode(&row)?, previous_owner: owner });
            }
        }
        Ok(out)
    }

    async fn release(&self, id: JobId, owner: &str) -> Result<bool, StoreError> {
        let res = sqlx::query("UPDATE jobs SET owner = NULL, lease_until = NULL WHERE id = ? AND owner = ?")
            .bind(id.to_string())
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected() == 1)
    }

    async fn lease(&self, id: JobId) -> Result<Option<Lease>, StoreError> {
        let row = sqlx::query("SELECT owner, lease_until FROM jobs WHERE id = ? AND owner IS NOT NULL")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(|r| Lease {
            owner: r.get("owner"),
            until: OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.get::<i64, _>("lease_until")) * 1000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }))
    }

    async fn queued_before(&self, job: &Job) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND (created_at, id) < (?, ?)")
            .bind(micros(job.created_at))
            .bind(job.id.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(n as u64)
    }

    async fn statuses(&self, ids: &[JobId]) -> Result<Vec<(JobId, JobStatus)>, StoreError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id, status FROM jobs WHERE id IN (");
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(id.to_string());
        }
        q.push(")");
        let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.into_iter()
            .map(|(id, st)| {
                let id = JobId::parse(&id).ok_or_else(|| StoreError::Corrupt(format!("job id {id}")))?;
                Ok((id, st.parse().map_err(StoreError::Corrupt)?))
            })
            .collect()
    }

    async fn active(&self) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query("SELECT body, git_token FROM jobs WHERE status IN ('scheduled', 'running') ORDER BY created_at")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(Self::decode).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(unavailable)
    }
}
