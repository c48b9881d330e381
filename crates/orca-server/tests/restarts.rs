//! Redis and PostgreSQL restarting under a running server: the server keeps serving, reports
//! the component down while it is, recovers by itself, and loses no job and no event.
//! Each test runs its own Redis or PostgreSQL server so it can restart it.

mod common;

use common::backends::{PrivatePg, PrivateRedis, TestDb, TestRedis};
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Every event exactly once, in order, with the echo agent's full output.
fn assert_complete(events: &[Value], steps: usize) {
    assert_consecutive(events, 1);
    assert_eq!(statuses(events), ["queued", "scheduled", "running", "succeeded"], "{:?}", types(events));
    let steps_seen = events.iter().filter(|e| e["type"] == "text" || e["type"] == "thinking").count();
    assert_eq!(steps_seen, steps, "every step of the agent, once");
    assert_eq!(events.iter().filter(|e| e["type"] == "result").count(), 1);
}

async fn wait_health(s: &TestServer, want: u16, within: Duration) -> Value {
    let t = Instant::now();
    loop {
        let (st, h) = s.get("/api/v1/health").await;
        if st == want {
            return h;
        }
        assert!(t.elapsed() < within, "health still {st} after {within:?}: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_mid_stream_loses_and_duplicates_no_event() {
    let Some(mut redis) = PrivateRedis::start("Redis restart") else { return };
    let Some(db) = TestDb::create("Redis restart").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[("DATABASE_URL", &db.url), ("REDIS_URL", &redis.url)]).await;
    let steps = 40;
    let id = s.echo("through a redis restart", steps, 100).await;
    s.wait_status(&id, |st| st == "running", Duration::from_secs(20)).await;
    let watcher = {
        let (ws, id) = (s.ws.clone(), id.clone());
        tokio::spawn(async move { read_stream(&ws, &id, None, Duration::from_secs(90)).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.down();
    let h = wait_health(&s, 503, Duration::from_secs(10)).await;
    assert_eq!(h["down"], json!(["redis"]), "{h}");
    assert_eq!(h["components"]["redis"]["status"], "down");
    assert_eq!(h["components"]["postgres"]["status"], "up");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.up();
    wait_health(&s, 200, Duration::from_secs(10)).await;
    let (events, close) = watcher.await.unwrap();
    assert_eq!(close, Some(1000));
    assert_complete(&events, steps as usize);
    // A second reader after the fact sees the very same log.
    let (again, _) = s.stream(&id, None).await;
    assert_eq!(again, events);
    assert_eq!(s.job(&id).await["status"], "succeeded");
    s.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_mid_job_loses_no_job_and_no_event() {
    let Some(pg) = PrivatePg::start("PostgreSQL restart") else { return };
    let Some(redis) = TestRedis::new("PostgreSQL restart") else { return };
    let db = TestDb::create_on(&pg.url).await;
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[("DATABASE_URL", &db.url), ("REDIS_URL", &redis.url), ("ORCA_REDIS_PREFIX", &redis.prefix), ("ORCA_LEASE_SECONDS", "2")],
    )
    .await;
    let steps = 40;
    let id = s.echo("through a postgres restart", steps, 100).await;
    s.wait_status(&id, |st| st == "running", Duration::from_secs(20)).await;
    let watcher = {
        let (ws, id) = (s.ws.clone(), id.clone());
        tokio::spawn(async move { read_stream(&ws, &id, None, Duration::from_secs(90)).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    pg.down();
    let h = wait_health(&s, 503, Duration::from_secs(10)).await;
    assert_eq!(h["down"], json!(["postgres"]), "{h}");
    // A submission while the database is down waits for it instead of failing.
    let late = {
        let url = s.url.clone();
        tokio::spawn(async move {
            let r = client()
                .post(format!("{url}/api/v1/jobs"))
                .json(&json!({"prompt": "submitted during the outage", "config": {"echoSteps": 1}}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.up();
    wait_health(&s, 200, Duration::from_secs(20)).await;
    let (events, close) = watcher.await.unwrap();
    assert_eq!(close, Some(1000));
    assert_complete(&events, steps as usize);
    let job = s.job(&id).await;
    assert_eq!((job["status"].as_str(), job["exitCode"].as_i64()), (Some("succeeded"), Some(0)), "{job}");
    let (st, late) = late.await.unwrap();
    assert_eq!(st, 201, "{late}");
    let late_id = late["id"].as_str().unwrap();
    assert_eq!(s.wait_terminal(late_id).await["status"], "succeeded");
    let (_, page) = s.get("/api/v1/jobs").await;
    assert_eq!(page["total"], 2, "no job lost, none doubled");
    s.stop().await;
    redis.cleanup().await;
}
