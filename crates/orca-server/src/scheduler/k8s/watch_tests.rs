//! How the tracker reads pod and Job statuses (the watch loop itself is tested against a fake
//! API server in `tests/k8s_scheduler.rs`).

use super::*;
use crate::scheduler::k8s::objects::tests::settings;
use serde_json::{Value, json};

const ID: &str = "0193a000-0000-7000-8000-00000000abcd";

fn tracker() -> Tracker {
    Tracker::new(JobId::parse(ID).unwrap())
}

fn pod(phase: &str, state: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "orca-job-x-abcde"},
        "status": {"phase": phase, "containerStatuses": [{
            "name": "worker", "image": "orca-worker:latest", "imageID": "", "ready": false, "restartCount": 0, "state": state
        }]}
    }))
    .unwrap()
}

fn terminated(code: i32, reason: &str) -> Value {
    json!({"terminated": {"exitCode": code, "reason": reason}})
}

fn job(cond: &str, reason: &str) -> Job {
    serde_json::from_value(json!({"status": {"conditions": [{"type": cond, "status": "True", "reason": reason, "message": "m"}]}})).unwrap()
}

#[test]
fn a_running_container_is_ready_but_undecided() {
    let mut t = tracker();
    t.on_pod(&pod("Pending", json!({"waiting": {"reason": "ContainerCreating"}})), &settings(), 2048);
    assert_eq!((t.started_pod.as_deref(), t.verdict(true)), (None, None));
    t.on_pod(&pod("Running", json!({"running": {}})), &settings(), 2048);
    assert_eq!((t.started_pod.as_deref(), t.verdict(true)), (Some("orca-job-x-abcde"), None));
}

#[test]
fn exit_codes_wait_for_the_job_or_the_settle_time() {
    let mut t = tracker();
    t.on_pod(&pod("Failed", terminated(3, "Error")), &settings(), 2048);
    assert_eq!(t.verdict(false), None, "waits for the Job's condition");
    assert_eq!(t.verdict(true).unwrap().exit, WorkerExit::Exited(3));
    t.on_job(&job("Failed", "BackoffLimitExceeded"));
    assert_eq!(t.verdict(false), Some(Verdict { exit: WorkerExit::Exited(3), delete_job: false }));

    let mut t = tracker();
    t.on_pod(&pod("Succeeded", terminated(0, "Completed")), &settings(), 2048);
    t.on_job(&job("Complete", ""));
    assert_eq!(t.verdict(false).unwrap().exit, WorkerExit::Exited(0));
}

#[test]
fn oom_deadline_pull_failures_and_eviction() {
    let mut t = tracker();
    t.on_pod(&pod("Failed", terminated(137, "OOMKilled")), &settings(), 2048);
    assert_eq!(t.verdict(true).unwrap().exit, WorkerExit::OutOfMemory { limit_mb: Some(2048) });

    // The deadline kills the container (143) before the Job says why: the Job's reason wins.
    let mut t = tracker();
    t.on_pod(&pod("Failed", terminated(143, "Error")), &settings(), 2048);
    t.on_job(&job("FailureTarget", "DeadlineExceeded"));
    assert_eq!(t.verdict(false).unwrap().exit, WorkerExit::DeadlineExceeded);

    for reason in IMAGE_PULL_FAILURES {
        let mut t = tracker();
        t.on_pod(&pod("Pending", json!({"waiting": {"reason": reason, "message": "not found"}})), &settings(), 2048);
        let v = t.verdict(false).unwrap();
        assert!(v.delete_job);
        assert_eq!(v.exit, WorkerExit::Failed(format!("cannot pull the worker image orca-worker:latest ({reason}: not found)")));
    }

    let mut t = tracker();
    let evicted: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"}, "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory"}
    }))
    .unwrap();
    t.on_pod(&evicted, &settings(), 2048);
    assert_eq!(t.verdict(true).unwrap().exit, WorkerExit::Failed("the worker pod p failed (Evicted: low on memory)".into()));
}

#[test]
fn a_vanished_job_is_lost_unless_the_container_said_more() {
    let mut t = tracker();
    t.on_job_gone();
    assert!(matches!(t.verdict(false).unwrap().exit, WorkerExit::Lost(m) if m.contains("was deleted before the worker ended")));

    let mut t = tracker();
    t.on_pod(&pod("Failed", terminated(143, "Error")), &settings(), 2048);
    t.on_job_gone();
    assert_eq!(t.verdict(false).unwrap().exit, WorkerExit::Exited(143));

    let mut t = tracker();
    t.on_job(&job("Failed", "PodFailurePolicy"));
    assert_eq!(t.verdict(false), None);
    assert_eq!(
        t.verdict(true).unwrap().exit,
        WorkerExit::Failed(format!("the Kubernetes Job orca-job-{ID} failed (PodFailurePolicy: m)"))
    );
}

#[test]
fn settle_records_the_first_exit_only() {
    let (tx, rx) = channel::channel(None);
    assert!(settle(&tx, WorkerExit::Exited(1)));
    assert!(!settle(&tx, WorkerExit::Exited(2)));
    assert_eq!(*rx.borrow(), Some(WorkerExit::Exited(1)));
}

#[test]
fn exit_codes_read_like_docker() {
    let end = |code: i32| {
        let mut t = tracker();
        t.on_pod(&pod("Failed", terminated(code, "Error")), &settings(), 2048);
        t.verdict(true).unwrap().exit
    };
    assert_eq!(end(137), WorkerExit::Signaled(9));
    assert_eq!(end(143), WorkerExit::Exited(143), "the worker's own exit after SIGTERM");
    assert_eq!(end(124), WorkerExit::Exited(124));
    assert_eq!(end(1), WorkerExit::Exited(1));
}

#[test]
fn a_complete_job_waits_for_its_pod_report() {
    let mut t = tracker();
    t.on_job(&job("Complete", ""));
    assert_eq!(t.verdict(false), None, "the pod event (and the log) may trail the Job's");
    assert_eq!(t.verdict(true).unwrap().exit, WorkerExit::Exited(0));
}
