//! Several backend instances on one PostgreSQL and one Redis: a job submitted to one is read,
//! streamed, cancelled and retried through another; a burst of submissions loses and
//! duplicates nothing; an instance that dies leaves nothing stuck.

mod common;

use common::backends::{TestDb, TestRedis};
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shared PostgreSQL database and Redis prefix for a group of instances.
struct Shared {
    db: TestDb,
    redis: TestRedis,
}

impl Shared {
    async fn new(test: &str) -> Option<Shared> {
        let redis = TestRedis::new(test)?;
        let db = TestDb::create(test).await?;
        Some(Shared { db, redis })
    }

    fn env<'a>(&'a self, instance: &'a str, lease: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("DATABASE_URL", self.db.url.as_str()),
            ("REDIS_URL", self.redis.url.as_str()),
            ("ORCA_REDIS_PREFIX", self.redis.prefix.as_str()),
            ("ORCA_INSTANCE_ID", instance),
            ("ORCA_LEASE_SECONDS", lease),
        ]
    }

    async fn instance(&self, dir: &Path, instance: &str, extra: &[(&str, &str)]) -> TestServer {
        let mut env = self.env(instance, "2");
        env.extend_from_slice(extra);
        TestServer::start(dir, &env).await
    }

    async fn done(self) {
        self.redis.cleanup().await;
        self.db.drop_db().await;
    }
}

async fn history(s: &TestServer, id: &str) -> Vec<Value> {
    let (st, h) = s.get(&format!("/api/v1/jobs/{id}/events")).await;
    assert_eq!(st, 200, "{h}");
    h["events"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_submitted_to_one_instance_is_streamed_cancelled_and_retried_through_another() {
    let Some(sh) = Shared::new("two instances").await else { return };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = sh.instance(da.path(), "instance-a", &[]).await;
    let id = a.echo("long running on a", 1000, 100).await;
    a.wait_status(&id, |s| s == "running", Duration::from_secs(20)).await;
    // B starts only now, so the job surely runs on A.
    let b = sh.instance(db.path(), "instance-b", &[]).await;
    assert_eq!(b.job(&id).await["status"], "running", "B reads A's job");
    let watcher = {
        let (ws, id) = (b.ws.clone(), id.clone());
        tokio::spawn(async move { read_stream(&ws, &id, None, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let (st, job) = b.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!((st, job["status"].as_str()), (200, Some("cancelled")), "{job}");
    let (events, close) = watcher.await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "A stopped its worker {:?} after the cancel on B", t.elapsed());
    assert_eq!(close, Some(1000));
    assert_consecutive(&events, 1);
    assert_eq!(statuses(&events), ["queued", "scheduled", "running", "cancelled"]);
    assert!(events.iter().any(|e| e["type"] == "warning" && e["message"].as_str().unwrap().contains("SIGTERM")), "A's worker got SIGTERM");
    assert!(events.len() < 100, "the worker really stopped: {} events", events.len());
    assert_eq!(a.job(&id).await["status"], "cancelled");
    assert_eq!(history(&a, &id).await, events, "both instances serve the same log");
    // Retry through B; the new job runs on either instance and streams from both.
    let (st, retry) = b.post(&format!("/api/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(st, 201, "{retry}");
    let rid = retry["id"].as_str().unwrap().to_owned();
    assert_eq!(retry["retryOf"], id.as_str());
    a.wait_status(&rid, |s| s == "running", Duration::from_secs(20)).await;
    let views = {
        let (wa, wb, rid) = (a.ws.clone(), b.ws.clone(), rid.clone());
        tokio::spawn(async move {
            tokio::join!(read_stream(&wa, &rid, None, Duration::from_secs(30)), read_stream(&wb, &rid, None, Duration::from_secs(30)))
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The retry is the same long job: cancel it through A this time.
    let (st, _) = a.post(&format!("/api/v1/jobs/{rid}/cancel"), json!({})).await;
    assert_eq!(st, 200);
    let (a_view, b_view) = views.await.unwrap();
    assert_eq!(a_view, b_view, "both instances stream the same events");
    assert_eq!(statuses(&a_view.0).last().unwrap(), "cancelled");
    let (_, page) = a.get("/api/v1/jobs").await;
    assert_eq!(page["total"], 2);
    a.stop().await;
    b.stop().await;
    sh.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_1000_submissions_loses_and_duplicates_nothing() {
    let Some(sh) = Shared::new("burst of submissions").await else { return };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A generous lease: this test loads two cores far beyond normal, and is not about takeover.
    let extra = [("ORCA_MAX_CONCURRENT_JOBS", "8"), ("ORCA_LEASE_SECONDS", "15")];
    let (a, b) = (Arc::new(sh.instance(da.path(), "burst-a", &extra).await), Arc::new(sh.instance(db.path(), "burst-b", &extra).await));
    let gate = Arc::new(tokio::sync::Semaphore::new(100));
    let mut tasks = vec![];
    for i in 0..1000 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            s.submit(json!({"prompt": format!("burst {i}"), "config": {"echoSteps": 1, "echoDelayMs": 0}})).await
        }));
    }
    let mut ids = HashSet::new();
    for t in futures::future::join_all(tasks).await {
        assert!(ids.insert(t.unwrap()), "an id was handed out twice");
    }
    assert_eq!(ids.len(), 1000);
    let (_, page) = b.get("/api/v1/jobs?limit=1").await;
    assert_eq!(page["total"], 1000, "every accepted job is stored, once");
    // Every job runs exactly once, on one instance or the other.
    let t = Instant::now();
    loop {
        let (_, page) = a.get("/api/v1/jobs?status=succeeded&limit=1").await;
        if page["total"] == 1000 {
            break;
        }
        let (_, bad) = a.get("/api/v1/jobs?status=failed,cancelled,timed_out&limit=5").await;
        assert_eq!(bad["total"], 0, "{bad}");
        assert!(t.elapsed() < Duration::from_secs(300), "only {} of 1000 succeeded after {:?}", page["total"], t.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let sample: Vec<&String> = ids.iter().take(200).collect();
    let checks = futures::stream::iter(sample)
        .map(|id| {
            let a = a.clone();
            async move { (id.clone(), history(&a, id).await) }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for (id, events) in checks {
        assert_consecutive(&events, 1);
        assert_eq!(statuses(&events), ["queued", "scheduled", "running", "succeeded"], "job {id}");
    }
    Arc::into_inner(a).unwrap().stop().await;
    Arc::into_inner(b).unwrap().stop().await;
    sh.done().await;
}

/// `orca server` as a separate process, so it can be killed with SIGKILL.
struct Process {
    child: std::process::Child,
    url: String,
}

impl Process {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Process {
        let bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("orca");
        assert!(bin.is_file(), "{} is missing: run `cargo build --workspace --bins` first", bin.display());
        let mut child = std::process::Command::new(bin)
            .arg("server")
            .envs(env.iter().copied())
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("ORCA_DATA_DIR", dir)
            .env("LOG_LEVEL", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let url = line.trim().strip_prefix("orca listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();
        Process { child, url }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker_alive(job_id: &str) -> bool {
    let needle = format!("JOB_ID={job_id}");
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("environ")).is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_mid_job_leaves_the_job_to_the_other() {
    let Some(sh) = Shared::new("instance killed mid-job").await else { return };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Process::start(da.path(), &sh.env("doomed-a", "2"));
    let http = client();
    let r = http.post(format!("{}/api/v1/jobs", a.url)).json(&json!({"prompt": "cut short", "config": {"echoSteps": 1000}})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let b = sh.instance(db.path(), "survivor-b", &[]).await;
    b.wait_status(&id, |s| s == "running", Duration::from_secs(20)).await;
    let watcher = {
        let (ws, id) = (b.ws.clone(), id.clone());
        tokio::spawn(async move { read_stream(&ws, &id, None, Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill9();
    let t = Instant::now();
    let (events, close) = watcher.await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    assert_eq!(close, Some(1000));
    assert_consecutive(&events, 1);
    assert_eq!(statuses(&events), ["queued", "scheduled", "running", "failed"]);
    let last = events.last().unwrap();
    assert_eq!(last["reason"], "worker lost: instance doomed-a stopped heartbeating", "{last}");
    assert_eq!(b.job(&id).await["failureReason"], "worker lost: instance doomed-a stopped heartbeating");
    // The dead instance's worker noticed nobody reads its output and went away.
    let t = Instant::now();
    while worker_alive(&id) {
        assert!(t.elapsed() < Duration::from_secs(15), "orphaned worker still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A retry through the survivor runs to the end there.
    let (st, retry) = b.post(&format!("/api/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(st, 201);
    let rid = retry["id"].as_str().unwrap().to_owned();
    b.post(&format!("/api/v1/jobs/{rid}/cancel"), json!({})).await;
    assert_eq!(b.wait_terminal(&rid).await["status"], "cancelled");
    b.stop().await;
    sh.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_claimed_by_an_instance_that_died_runs_on_another() {
    use orca_server::events::EventBus;
    use orca_server::store::{JobStore, LeaseTerms};
    let Some(sh) = Shared::new("claimed job of a dead instance").await else { return };
    // A "ghost" instance claims a job and dies before starting its worker.
    let store = orca_server::store::postgres::PgJobStore::open(&sh.db.url, 2).await.unwrap();
    let settings = orca_server::config::RedisEvents {
        url: orca_core::Secret::new(sh.redis.url.clone()),
        prefix: sh.redis.prefix.clone(),
        maxlen: 1000,
        ttl: Duration::from_secs(600),
    };
    let bus = orca_server::events::redis::RedisEventBus::connect(settings).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let job = orca_core::NewJob::parse(&json!({"prompt": "orphaned but not lost", "config": {"echoDelayMs": 10}})).unwrap().into_job(now);
    store.insert(&job).await.unwrap();
    bus.append(job.id, orca_core::AgentEvent::status(orca_core::JobStatus::Queued, None, None)).await.unwrap();
    let claimed = store.claim_next(&LeaseTerms { owner: "ghost", now, until: now + Duration::from_secs(1), max_per_repo: None }).await.unwrap().unwrap();
    assert_eq!(claimed.id, job.id);
    let dir = tempfile::tempdir().unwrap();
    let b = sh.instance(dir.path(), "heir", &[]).await;
    let id = job.id.to_string();
    let (events, close) = read_stream(&b.ws, &id, None, Duration::from_secs(30)).await;
    assert_eq!(close, Some(1000));
    assert_consecutive(&events, 1);
    assert_eq!(statuses(&events), ["queued", "queued", "scheduled", "running", "succeeded"]);
    assert_eq!(events[1]["reason"], "requeued: instance ghost stopped heartbeating");
    let done = b.job(&id).await;
    assert_eq!((done["status"].as_str(), done["exitCode"].as_i64()), (Some("succeeded"), Some(0)));
    assert!(store.lease(job.id).await.unwrap().is_none(), "the heir released the finished job");
    b.stop().await;
    sh.done().await;
}

/// An instance that stored jobs and died before announcing them (the `queued` event is
/// appended after the submitter's answer): whoever moves each job out of the queue writes
/// `queued` first, so every stream still starts with it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_stored_but_never_announced_still_start_with_queued() {
    use orca_server::store::JobStore;
    let Some(sh) = Shared::new("unannounced jobs").await else { return };
    let store = orca_server::store::postgres::PgJobStore::open(&sh.db.url, 2).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let first = orca_core::NewJob::parse(&json!({"prompt": "first", "config": {"echoSteps": 3, "echoDelayMs": 300}})).unwrap().into_job(now);
    let retried = first.retry(now + Duration::from_millis(1));
    store.insert(&first).await.unwrap();
    store.insert(&retried).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = sh.instance(dir.path(), "announcer", &[("ORCA_MAX_CONCURRENT_JOBS", "1")]).await;
    let (id, rid) = (first.id.to_string(), retried.id.to_string());
    // The retry waits behind the first job; cancelling it is its move out of the queue.
    b.wait_status(&id, |s| s == "running", Duration::from_secs(20)).await;
    let (st, _) = b.post(&format!("/api/v1/jobs/{rid}/cancel"), json!({})).await;
    assert_eq!(st, 200);
    let (events, close) = read_stream(&b.ws, &id, None, Duration::from_secs(30)).await;
    assert_eq!(close, Some(1000));
    assert_consecutive(&events, 1);
    assert_eq!(statuses(&events), ["queued", "scheduled", "running", "succeeded"]);
    let (events, _) = read_stream(&b.ws, &rid, None, Duration::from_secs(30)).await;
    assert_consecutive(&events, 1);
    assert_eq!(statuses(&events), ["queued", "cancelled"]);
    assert_eq!(events[0]["reason"], format!("retry of {id}"), "the announcement is a function of the job");
    b.stop().await;
    sh.done().await;
}

/// An instance that died right after storing a queued job's cancel (before writing its events)
/// left a lease behind; when it runs out another instance writes the missing events, so the
/// job's stream still starts with `queued`, ends with `cancelled` and closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_cut_short_by_a_crash_is_finished_by_the_reaper() {
    use orca_server::store::{JobStore, LeaseTerms};
    let Some(sh) = Shared::new("cancel cut short").await else { return };
    let store = orca_server::store::postgres::PgJobStore::open(&sh.db.url, 2).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let job = orca_core::NewJob::parse(&json!({"prompt": "cancelled, then the lights went out"})).unwrap().into_job(now);
    store.insert(&job).await.unwrap();
    let cancelled = job.transition(&orca_core::StatusChange::to(orca_core::JobStatus::Cancelled).with_reason("cancelled by user"), now).unwrap();
    let ghost = LeaseTerms { owner: "ghost", now, until: now + Duration::from_secs(1), max_per_repo: None };
    assert!(store.update_and_lease(&cancelled, orca_core::JobStatus::Queued, &ghost).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let b = sh.instance(dir.path(), "reaper", &[]).await;
    let id = job.id.to_string();
    // Streamed while the dead instance's lease still runs: the events come when the reaper
    // has written them.
    let (events, close) = read_stream(&b.ws, &id, None, Duration::from_secs(30)).await;
    assert_eq!(close, Some(1000));
    assert_consecutive(&events, 1);
    assert_eq!(statuses(&events), ["queued", "cancelled"]);
    assert_eq!(events[1]["reason"], "cancelled by user");
    let t = std::time::Instant::now();
    while store.lease(job.id).await.unwrap().is_some() {
        assert!(t.elapsed() < Duration::from_secs(10), "the reaper released the job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.stop().await;
    sh.done().await;
}

/// An instance whose lease was taken over while its worker runs (it was too slow to renew)
/// stops that worker and writes nothing more of the job's: not even the worker's last words
/// as it stops, which belong to nobody's stream now.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_that_lost_its_lease_writes_nothing_more() {
    use sqlx::Connection;
    let Some(sh) = Shared::new("lost lease").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = sh.instance(dir.path(), "slow-a", &[]).await;
    let id = a.submit(json!({"prompt": "long", "config": {"echoSteps": 200, "echoDelayMs": 100}})).await;
    a.wait_status(&id, |s| s == "running", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Another instance "takes the job over" (as its reaper would after a missed heartbeat).
    let mut pg = sqlx::PgConnection::connect(&sh.db.url).await.unwrap();
    sqlx::query("UPDATE jobs SET owner = 'thief', lease_until = now() + interval '1 hour' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&mut pg)
        .await
        .unwrap();
    // slow-a notices within a third of its 2 s lease, stops the worker (SIGTERM) and goes quiet.
    let t = Instant::now();
    while worker_alive(&id) {
        assert!(t.elapsed() < Duration::from_secs(15), "slow-a stopped the worker it no longer owns");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = a.get(&format!("/api/v1/jobs/{id}/events?limit=1000")).await.1["events"].as_array().unwrap().clone();
    let words: Vec<&Value> = events.iter().filter(|e| e["message"].as_str().is_some_and(|m| m.contains("worker received SIGTERM"))).collect();
    assert!(words.is_empty(), "the stopping worker's last words were not written: {words:?}");
    assert!(events.iter().all(|e| e["type"] != "status" || e["status"] != "failed"), "nor an end for a job it does not own");
    let job = a.job(&id).await;
    assert_eq!(job["status"], "running", "the job is the thief's to finish");
    a.stop().await;
    pg.close().await.unwrap();
    sh.done().await;
}
