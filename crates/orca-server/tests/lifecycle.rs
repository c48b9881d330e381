//! Streams and the lifecycle against a real server and real worker processes: replay from the
//! middle, concurrent subscribers, cancel, a crashing worker, timeouts, restart on the same data.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn replay_from_the_middle_then_live_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.echo("one two three four five six seven eight nine ten", 10, 150).await;
    // Wait until some events exist, then join from the middle while the job still runs.
    s.wait_status(&id, |st| st == "running", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (from_mid, close) = s.stream(&id, Some(3)).await;
    assert_eq!(close, Some(1000));
    assert_consecutive(&from_mid, 4);
    let (all, _) = s.stream(&id, None).await;
    assert_consecutive(&all, 1);
    assert_eq!(&all[3..], &from_mid[..], "the replay from 3 is exactly the tail of the full stream");
    let (after_end, close) = s.stream(&id, Some(all.len() as u64)).await;
    assert!(after_end.is_empty());
    assert_eq!(close, Some(1000), "nothing follows the terminal event: the stream closes at once");
    s.stop().await;
}

#[tokio::test]
async fn two_concurrent_subscribers_see_identical_streams() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.echo("alpha beta gamma delta epsilon", 20, 50).await;
    let (a, b) = tokio::join!(s.stream(&id, None), s.stream(&id, None));
    assert_eq!(a.1, Some(1000));
    assert_eq!(a.0, b.0);
    assert_consecutive(&a.0, 1);
    assert!(a.0.len() >= 20 + 4, "{} events", a.0.len());
    s.stop().await;
}

#[tokio::test]
async fn cancel_stops_a_running_worker_and_the_stream_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.echo("long running", 1000, 100).await;
    s.wait_status(&id, |st| st == "running", Duration::from_secs(20)).await;
    let watcher = {
        let ws = s.ws.clone();
        let id = id.clone();
        tokio::spawn(async move { read_stream(&ws, &id, None, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = std::time::Instant::now();
    let (st, job) = s.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(st, 200, "{job}");
    assert_eq!(job["status"], "cancelled");
    let (again_st, again) = s.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!((again_st, again["status"].as_str()), (200, Some("cancelled")), "cancel is idempotent");
    let (events, close) = watcher.await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "cancel took {:?}", t.elapsed());
    assert_eq!(close, Some(1000));
    assert_eq!(statuses(&events).last().unwrap(), "cancelled");
    assert_eq!(events.last().unwrap()["reason"], "cancelled by user");
    // The worker flushed its SIGTERM notice before the terminal status.
    assert!(events.iter().any(|e| e["type"] == "warning" && e["message"].as_str().unwrap().contains("SIGTERM")), "{events:?}");
    assert!(events.len() < 1000, "the worker really stopped");
    let job = s.job(&id).await;
    assert_eq!(job["status"], "cancelled");
    assert!(job["finishedAt"].is_string());
    s.stop().await;
}

#[tokio::test]
async fn cancelling_a_queued_job_means_it_never_starts() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[("ORCA_MAX_CONCURRENT_JOBS", "1")]).await;
    let blocker = s.echo("blocker", 1000, 100).await;
    s.wait_status(&blocker, |st| st == "running", Duration::from_secs(20)).await;
    let queued = s.echo("waiting", 1, 0).await;
    let (st, job) = s.post(&format!("/api/v1/jobs/{queued}/cancel"), json!({})).await;
    assert_eq!((st, job["status"].as_str()), (200, Some("cancelled")));
    let (events, _) = s.stream(&queued, None).await;
    assert_eq!(statuses(&events), ["queued", "cancelled"]);
    s.post(&format!("/api/v1/jobs/{blocker}/cancel"), json!({})).await;
    let b = s.wait_terminal(&blocker).await;
    assert_eq!(b["status"], "cancelled");
    assert!(s.job(&queued).await["startedAt"].is_null());
    s.stop().await;
}

#[tokio::test]
async fn a_crashing_worker_fails_its_job_with_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.submit(json!({"prompt": "crash", "config": {"echoExitCode": 42, "echoSteps": 2}})).await;
    let (events, _) = s.stream(&id, None).await;
    let last = events.last().unwrap();
    assert_eq!((last["status"].as_str(), last["exitCode"].as_i64()), (Some("failed"), Some(42)));
    assert_eq!(last["reason"], "echo agent asked to exit with code 42 (worker exited with status 42)");
    assert!(events.iter().any(|e| e["type"] == "error"), "the worker said why: {events:?}");
    let job = s.job(&id).await;
    assert_eq!((job["status"].as_str(), job["exitCode"].as_i64()), (Some("failed"), Some(42)));
    assert_eq!(job["failureClass"], "agent");
    s.stop().await;
}

#[tokio::test]
async fn a_worker_killed_by_a_signal_fails_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.echo("to be killed", 1000, 100).await;
    s.wait_status(&id, |st| st == "running", Duration::from_secs(20)).await;
    // Find the worker by its JOB_ID in /proc and SIGKILL it, as an OOM killer would.
    let pid = find_worker_pid(&id).expect("worker process");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["failureReason"], "worker was killed by signal 9 (SIGKILL)");
    assert_eq!(job["failureClass"], "infrastructure");
    s.stop().await;
}

fn find_worker_pid(job_id: &str) -> Option<i32> {
    let needle = format!("JOB_ID={job_id}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Ok(env) = std::fs::read(entry.path().join("environ"))
            && env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

#[tokio::test]
async fn a_job_over_its_timeout_ends_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.submit(json!({"prompt": "too slow", "timeoutSeconds": 1, "config": {"echoSteps": 1000, "echoDelayMs": 100}})).await;
    let (events, _) = s.stream(&id, None).await;
    assert_eq!(statuses(&events).last().unwrap(), "timed_out", "{events:?}");
    let job = s.job(&id).await;
    assert_eq!(job["status"], "timed_out");
    assert_eq!(job["failureClass"], "limit");
    assert!(job["failureReason"].as_str().unwrap().contains("timeoutSeconds=1"), "{job}");
    s.stop().await;
}

#[tokio::test]
async fn jobs_and_events_survive_a_restart_on_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let done = s.echo("remember me", 3, 10).await;
    s.wait_terminal(&done).await;
    let (before, _) = s.stream(&done, None).await;
    let running = s.echo("interrupted", 1000, 100).await;
    s.wait_status(&running, |st| st == "running", Duration::from_secs(20)).await;
    s.stop().await; // graceful: the running job fails as interrupted
    let s = TestServer::start(dir.path(), &[]).await;
    assert_eq!(s.job(&done).await["status"], "succeeded");
    let (after, close) = s.stream(&done, None).await;
    assert_eq!(before, after, "every event survives, ids included");
    assert_eq!(close, Some(1000));
    let j = s.job(&running).await;
    assert_eq!(j["status"], "failed");
    assert!(j["failureReason"].as_str().unwrap().contains("shut down"), "{j}");
    // New jobs continue to number their events from 1; old ones keep theirs.
    let next = s.echo("after restart", 1, 0).await;
    let (ev, _) = s.stream(&next, None).await;
    assert_consecutive(&ev, 1);
    s.stop().await;
}

#[tokio::test]
async fn twenty_jobs_behind_a_limit_of_two_run_two_at_a_time_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[("ORCA_MAX_CONCURRENT_JOBS", "2")]).await;
    let mut ids = vec![];
    for i in 0..20 {
        ids.push(s.submit(json!({"prompt": format!("job {i}"), "config": {"echoSteps": 2, "echoDelayMs": 100}})).await);
    }
    // The last one says why it waits.
    let last = s.job(&ids[19]).await;
    if last["status"] == "queued" {
        let q = &last["queue"];
        assert!(q["position"].as_u64().unwrap() >= 2, "{last}");
        assert_eq!(q["maxConcurrentJobs"], 2);
        assert!(q["waitingOn"].as_str().unwrap().contains("queued before it"), "{last}");
    }
    let mut spans = vec![];
    for id in &ids {
        let (events, _) = s.stream(id, None).await;
        let at = |st: &str| {
            let e = events.iter().find(|e| e["type"] == "status" && e["status"] == st).unwrap_or_else(|| panic!("{st} in {events:?}"));
            time::OffsetDateTime::parse(e["timestamp"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
        };
        spans.push((at("scheduled"), at("succeeded")));
    }
    // At no instant were more than two jobs between scheduled and finished.
    for (start, _) in &spans {
        let overlapping = spans.iter().filter(|(s2, e2)| s2 <= start && start < e2).count();
        assert!(overlapping <= 2, "{overlapping} jobs ran at once");
    }
    // FIFO: jobs are claimed in submission order; two claimed together may record their
    // `scheduled` event in either order, but no job starts before one two places ahead of it.
    let starts: Vec<_> = spans.iter().map(|(s, _)| *s).collect();
    for i in 0..starts.len().saturating_sub(2) {
        assert!(starts[i] <= starts[i + 2], "job {i} started after job {}: {starts:?}", i + 2);
    }
    assert_eq!(s.job(&ids[19]).await["queue"], serde_json::Value::Null, "no queue info once it ran");
    s.stop().await;
}

#[tokio::test]
async fn cancel_and_retry_in_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[("ORCA_MAX_CONCURRENT_JOBS", "1")]).await;
    let post = |id: String, action: &'static str| {
        let s = &s;
        async move { s.post(&format!("/api/v1/jobs/{id}/{action}"), json!({})).await.0 }
    };
    // running and queued (behind it)
    let running = s.echo("running", 1000, 100).await;
    s.wait_status(&running, |st| st == "running", Duration::from_secs(20)).await;
    let queued = s.echo("queued", 1, 0).await;
    assert_eq!(s.job(&queued).await["status"], "queued");
    assert_eq!(post(queued.clone(), "retry").await, 409, "retry of a queued job");
    assert_eq!(post(running.clone(), "retry").await, 409, "retry of a running job");
    assert_eq!(post(queued.clone(), "cancel").await, 200);
    assert_eq!(post(running.clone(), "cancel").await, 200);
    s.wait_terminal(&running).await;
    // every terminal state: cancel is refused (but idempotent for cancelled), retry works
    let succeeded = s.echo("ok", 1, 0).await;
    let failed = s.submit(json!({"prompt": "no", "config": {"echoExitCode": 5, "echoSteps": 0}})).await;
    let timed_out = s.submit(json!({"prompt": "slow", "timeoutSeconds": 1, "config": {"echoSteps": 100, "echoDelayMs": 100}})).await;
    let expect = [(succeeded, "succeeded", 409), (failed, "failed", 409), (timed_out, "timed_out", 409), (running, "cancelled", 200), (queued, "cancelled", 200)];
    for (id, status, cancel) in expect {
        assert_eq!(s.wait_terminal(&id).await["status"], status);
        assert_eq!(post(id.clone(), "cancel").await, cancel, "cancel of a {status} job");
        assert_eq!(s.job(&id).await["status"], status, "a refused cancel changes nothing");
        assert_eq!(post(id.clone(), "retry").await, 201, "retry of a {status} job");
    }
    s.stop().await;
}
