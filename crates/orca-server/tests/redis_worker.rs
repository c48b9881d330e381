//! A worker given REDIS_URL appends its events to the job's Redis stream itself, with the
//! backend's script: its events and the backend's interleave with consecutive ids, a
//! subscriber sees them live, and nothing is written to stdout.

mod common;

use common::backends::TestRedis;
use futures::StreamExt;
use orca_core::{AgentEvent, JobId, JobStatus};
use orca_server::events::EventBus;
use orca_server::events::redis::{RedisEventBus, worker_env};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_with_redis_url_xadds_its_events_directly() {
    let Some(r) = TestRedis::new("worker Redis sink") else { return };
    let settings = orca_server::config::RedisEvents {
        url: orca_core::Secret::new(r.url.clone()),
        prefix: r.prefix.clone(),
        maxlen: 10_000,
        ttl: Duration::from_secs(600),
    };
    let bus = RedisEventBus::connect(settings.clone()).await.unwrap();
    let job = JobId::new_at(time::OffsetDateTime::now_utc());
    bus.append(job, AgentEvent::status(JobStatus::Queued, None, None)).await.unwrap();
    bus.append(job, AgentEvent::status(JobStatus::Running, None, None)).await.unwrap();
    let live = tokio::spawn({
        let sub = bus.subscribe(job, 0).await.unwrap();
        async move { sub.take(9).collect::<Vec<_>>().await }
    });
    let worker = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("orca-worker");
    assert!(worker.is_file(), "{} is missing: run `cargo build --workspace --bins` first", worker.display());
    let work = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(&worker)
        .env_clear()
        .envs(worker_env(&settings, settings.url.expose()))
        .env("JOB_ID", job.to_string())
        .env("PROMPT", "straight to redis")
        .env("WORK_DIR", work.path())
        .env("HOME", work.path())
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("ORCA_JOB_CONFIG", r#"{"echoSteps":3,"echoDelayMs":10}"#)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "events went to Redis, not stdout: {}", String::from_utf8_lossy(&out.stdout));
    bus.append(job, AgentEvent::status(JobStatus::Succeeded, None, Some(0))).await.unwrap();
    let events = bus.read(job, 0, 100).await.unwrap();
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>(), "backend and worker appends share one numbering");
    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind()).collect();
    assert_eq!(&kinds[..2], ["status", "status"]);
    assert!(kinds.contains(&"session") && kinds.contains(&"result"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "text").count(), 3, "{kinds:?}");
    assert_eq!(*kinds.last().unwrap(), "status");
    let texts: Vec<String> = events.iter().filter_map(|e| match &e.event {
        AgentEvent::Text { text } => Some(text.trim().to_owned()),
        _ => None,
    }).collect();
    assert_eq!(texts.join(" "), "straight to redis");
    let live: Vec<_> = tokio::time::timeout(Duration::from_secs(10), live).await.unwrap().unwrap();
    let live_ids: Vec<u64> = live.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(live_ids, (1..=9).collect::<Vec<_>>(), "a subscriber saw the worker's events as they came");
    r.cleanup().await;
}
