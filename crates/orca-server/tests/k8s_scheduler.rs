//! The Kubernetes scheduler against a fake Kubernetes API server (`k8s_fake`): the exact objects
//! it creates, and how watch events become outcomes. No cluster is involved; the test plays
//! the kubelet and the Job controller.

mod k8s_fake;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_fake::{FakeKube, pod};
use orca_core::{Job, NewJob, Secret};
use orca_server::scheduler::k8s::objects::{self, Plan};
use orca_server::scheduler::k8s::{API_CALLS, DEFAULT_CREDS_CLAIM, K8sScheduler, Settings};
use orca_server::scheduler::limits::{LimitsPolicy, Resources};
use orca_server::scheduler::{Scheduler, StartedWorker, WorkerExit, WorkerSpec};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(15);

fn settings() -> Settings {
    Settings {
        namespace: "orca".into(),
        image: "orca-worker:latest".into(),
        limits: LimitsPolicy::default(),
        stop_grace: Duration::from_secs(2),
        worker_redis_env: vec![],
        agent_env: Vec::new(),
        creds_claim: DEFAULT_CREDS_CLAIM.into(),
        kubeconfig: None,
        keep_workers_on_shutdown: true,
    }
}

fn job(body: Value) -> Job {
    NewJob::parse(&body).unwrap().into_job(OffsetDateTime::now_utc())
}

fn echo_job() -> Job {
    job(json!({"prompt": "say hi", "agentType": "echo", "timeoutSeconds": 120}))
}

async fn setup(s: Settings) -> (FakeKube, K8sScheduler) {
    let fake = FakeKube::start().await;
    let sched = K8sScheduler::new(fake.client(), s);
    (fake, sched)
}

/// Every request the scheduler made is one the RBAC Role grants.
fn assert_calls_allowed(fake: &FakeKube) {
    for (g, r, v) in fake.calls() {
        assert!(API_CALLS.contains(&(g.as_str(), r.as_str(), v.as_str())), "the scheduler called {g}/{r} {v}, which API_CALLS lacks");
    }
}

fn created(fake: &FakeKube, resource: &str) -> Value {
    let r = fake.requests().into_iter().find(|r| r.method == "POST" && r.path.ends_with(&format!("/{resource}"))).unwrap();
    r.body
}

async fn exit_of(worker: StartedWorker) -> (WorkerExit, Option<BoxStream<'static, String>>) {
    let exit = tokio::time::timeout(WAIT, worker.exit).await.expect("the worker's end was never reported");
    (exit, worker.output)
}

async fn lines(output: Option<BoxStream<'static, String>>) -> Vec<String> {
    tokio::time::timeout(WAIT, output.expect("output").collect::<Vec<_>>()).await.expect("the output stream never ended")
}

fn terminated(code: i32, reason: &str) -> Value {
    json!({"terminated": {"exitCode": code, "reason": reason}})
}

fn condition(kind: &str, reason: &str) -> Value {
    json!({"conditions": [{"type": kind, "status": "True", "reason": reason, "message": format!("{reason} (fake)")}]})
}

/// Starts a job and returns its Job object as the fake stored it, and the pod name to use.
async fn start(fake: &FakeKube, sched: &K8sScheduler, job: &Job) -> (StartedWorker, Value, String) {
    let worker = sched.start(WorkerSpec::for_job(job, "info")).await.unwrap();
    let name = format!("orca-job-{}", job.id);
    let k8s_job = fake.wait_for("jobs", &name).await;
    (worker, k8s_job, format!("{name}-x7k2p"))
}

#[tokio::test]
async fn a_job_runs_to_success_with_exact_objects_and_its_events() {
    let mut s = settings();
    s.agent_env = vec![("ANTHROPIC_API_KEY".into(), Secret::new("sk-ant-test-key"))];
    let (fake, sched) = setup(s.clone()).await;
    let j = job(json!({"prompt": "fix it", "agentType": "claude-code", "repoUrl": "https://git.example/r.git", "config": {"gitToken": "ghp_token"}, "timeoutSeconds": 300}));
    let (worker, k8s_job, pod_name) = start(&fake, &sched, &j).await;
    let name = format!("orca-job-{}", j.id);

    // The exact Job: what the builder makes (its literal JSON is checked in objects_tests.rs).
    // The API key takes precedence over the login claim, so the claim is not even looked up.
    let plan = Plan { resources: Resources { memory_mb: 2048, cpu_millis: 2000, pids: 512 }, mount_creds: false };
    let expected = serde_json::to_value(objects::worker_job(&WorkerSpec::for_job(&j, "info"), &s, &plan)).unwrap();
    assert_eq!(created(&fake, "jobs"), expected);
    assert!(!fake.requests().iter().any(|r| r.call.1 == "persistentvolumeclaims"));
    // The exact Secret, owned by the Job the API server created (its uid).
    let uid = k8s_job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        created(&fake, "secrets"),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": name, "namespace": "orca",
                "labels": {"app.kubernetes.io/component": "worker", "app.kubernetes.io/managed-by": "orca", "app.kubernetes.io/name": "orca-worker", "orca.dev/job-id": j.id.to_string()},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid}]
            },
            "type": "Opaque", "immutable": true,
            "stringData": {"ANTHROPIC_API_KEY": "sk-ant-test-key", "GIT_TOKEN": "ghp_token"}
        })
    );
    let job_text = created(&fake, "jobs").to_string();
    assert!(!job_text.contains("ghp_token") && !job_text.contains("sk-ant-test-key"), "a secret is in the Job");
    let calls = fake.calls();
    let job_at = calls.iter().position(|c| c.1 == "jobs" && c.2 == "create").unwrap();
    let secret_at = calls.iter().position(|c| c.1 == "secrets" && c.2 == "create").unwrap();
    assert!(job_at < secret_at, "the Secret needs the Job's uid");

    // The kubelet: pending, then running with output, then done.
    fake.put("pods", pod(&k8s_job, &pod_name, "Pending", json!({"waiting": {"reason": "ContainerCreating"}})));
    fake.log(&pod_name, r#"{"type":"log","level":"info","message":"cloning"}"#);
    fake.log(&pod_name, "2026-12-04T10:00:00Z INFO  orca-worker: a diagnostic line on stderr");
    fake.put("pods", pod(&k8s_job, &pod_name, "Running", json!({"running": {"startedAt": "2026-12-04T10:00:00Z"}})));
    fake.log(&pod_name, r#"{"type":"text","text":"hi"}"#);
    fake.close_log(&pod_name);
    fake.put("pods", pod(&k8s_job, &pod_name, "Succeeded", terminated(0, "Completed")));
    fake.set_job_status(&name, condition("Complete", "Completed"));

    let (exit, output) = exit_of(worker).await;
    assert_eq!(exit, WorkerExit::Exited(0));
    assert_eq!(lines(output).await, [r#"{"type":"log","level":"info","message":"cloning"}"#, r#"{"type":"text","text":"hi"}"#]);
    // The Secret goes as soon as the worker is done (not only when the Job's TTL runs out).
    fake.wait_request(|r| r.method == "DELETE" && r.path.ends_with(&format!("/secrets/{name}"))).await;
    assert!(fake.get("secrets", &name).is_none());
    // Watched (list, then watch from its resourceVersion), by the job-id label; never polled.
    let selector = format!("orca.dev/job-id={}", j.id);
    let reads: Vec<_> = fake.requests().into_iter().filter(|r| ["jobs", "pods"].contains(&r.call.1.as_str()) && r.method == "GET").collect();
    for r in &reads {
        assert!(r.query.contains(&("labelSelector".into(), selector.clone())), "{r:?}");
    }
    let lists = reads.iter().filter(|r| r.call.2 == "list").count();
    assert_eq!(lists, 2, "one list per watcher, no polling: {reads:#?}");
    assert_calls_allowed(&fake);
}

#[tokio::test]
async fn agent_failure_oom_and_deadline_become_their_exits() {
    let (fake, sched) = setup(settings()).await;
    let cases = [
        (terminated(3, "Error"), condition("Failed", "BackoffLimitExceeded"), WorkerExit::Exited(3)),
        (terminated(137, "OOMKilled"), condition("Failed", "BackoffLimitExceeded"), WorkerExit::OutOfMemory { limit_mb: Some(2048) }),
        // The deadline kills the container; the Job's reason says why.
        (terminated(143, "Error"), condition("FailureTarget", "DeadlineExceeded"), WorkerExit::DeadlineExceeded),
    ];
    for (state, status, expected) in cases {
        let j = echo_job();
        let (worker, k8s_job, pod_name) = start(&fake, &sched, &j).await;
        fake.put("pods", pod(&k8s_job, &pod_name, "Running", json!({"running": {}})));
        fake.put("pods", pod(&k8s_job, &pod_name, "Failed", state));
        fake.set_job_status(&format!("orca-job-{}", j.id), status);
        let (exit, _) = exit_of(worker).await;
        assert_eq!(exit, expected);
    }
    // A deadline that struck before the container started: the pod is gone, the Job says why.
    let j = echo_job();
    let (worker, _, _) = start(&fake, &sched, &j).await;
    fake.set_job_status(&format!("orca-job-{}", j.id), condition("Failed", "DeadlineExceeded"));
    assert_eq!(exit_of(worker).await.0, WorkerExit::DeadlineExceeded);
    assert_eq!(
        WorkerExit::OutOfMemory { limit_mb: Some(2048) }.to_string(),
        "worker ran out of memory (limit 2048 MiB) and was killed"
    );
    assert_calls_allowed(&fake);
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_job_and_deletes_it() {
    let (fake, sched) = setup(settings()).await;
    let j = echo_job();
    let name = format!("orca-job-{}", j.id);
    let (worker, k8s_job, pod_name) = start(&fake, &sched, &j).await;
    let message = "Back-off pulling image \"orca-worker:latest\"";
    fake.put("pods", pod(&k8s_job, &pod_name, "Pending", json!({"waiting": {"reason": "ImagePullBackOff", "message": message}})));
    let (exit, output) = exit_of(worker).await;
    assert_eq!(exit, WorkerExit::Failed(format!("cannot pull the worker image orca-worker:latest (ImagePullBackOff: {message})")));
    assert!(lines(output).await.is_empty(), "the container never started");
    let del = fake.wait_request(|r| r.method == "DELETE" && r.path.ends_with(&format!("/jobs/{name}"))).await;
    assert_eq!(del.body["propagationPolicy"], "Background");
    assert!(fake.get("jobs", &name).is_none());
    assert_calls_allowed(&fake);
}

#[tokio::test]
async fn cancel_deletes_the_job_with_foreground_propagation() {
    let (fake, sched) = setup(settings()).await;
    let j = echo_job();
    let name = format!("orca-job-{}", j.id);
    let (worker, k8s_job, pod_name) = start(&fake, &sched, &j).await;
    fake.log(&pod_name, r#"{"type":"text","text":"working"}"#);
    fake.put("pods", pod(&k8s_job, &pod_name, "Running", json!({"running": {}})));
    let StartedWorker { output, exit, control } = worker;
    let mut output = output.unwrap();
    assert_eq!(tokio::time::timeout(WAIT, output.next()).await.unwrap().as_deref(), Some(r#"{"type":"text","text":"working"}"#));

    tokio::time::timeout(WAIT, control.stop(Duration::from_secs(2))).await.expect("stop returns");
    let del = fake.wait_request(|r| r.method == "DELETE" && r.path.ends_with(&format!("/jobs/{name}"))).await;
    assert_eq!(del.body["propagationPolicy"], "Foreground", "{:?}", del.body);
    // The fake deletes the pod and the Job at once (the garbage collector), before the
    // container reports an exit: the worker is gone.
    let exit = tokio::time::timeout(WAIT, exit).await.unwrap();
    assert!(matches!(&exit, WorkerExit::Lost(m) if m.contains("was deleted before the worker ended")), "{exit:?}");
    assert!(fake.get("jobs", &name).is_none() && fake.names("pods").is_empty());
    fake.close_log(&pod_name);
    assert!(tokio::time::timeout(WAIT, output.next()).await.unwrap().is_none(), "the output ends");
    assert_calls_allowed(&fake);
}

#[tokio::test]
async fn a_secret_that_cannot_be_created_deletes_the_job_again() {
    let (fake, sched) = setup(settings()).await;
    fake.fail_create("secrets", 403);
    let j = job(json!({"prompt": "p", "config": {"gitToken": "ghp_x"}}));
    let err = sched.start(WorkerSpec::for_job(&j, "info")).await.err().expect("start fails");
    let text = err.to_string();
    assert!(text.contains(&format!("cannot create the Kubernetes Secret orca-job-{}", j.id)), "{text}");
    assert!(!text.contains("ghp_x"));
    assert!(fake.get("jobs", &format!("orca-job-{}", j.id)).is_none(), "the Job was deleted again");
    assert_calls_allowed(&fake);
}

#[tokio::test]
async fn adopt_follows_a_running_job_from_its_cursor_and_reports_gone_ones() {
    let (fake, sched) = setup(settings()).await;
    let j = echo_job();
    let name = format!("orca-job-{}", j.id);
    let (worker, k8s_job, pod_name) = start(&fake, &sched, &j).await;
    fake.log(&pod_name, r#"{"type":"text","text":"one"}"#);
    fake.put("pods", pod(&k8s_job, &pod_name, "Running", json!({"running": {}})));
    let StartedWorker { output, control, .. } = worker;
    let mut output = output.unwrap();
    assert_eq!(tokio::time::timeout(WAIT, output.next()).await.unwrap().as_deref(), Some(r#"{"type":"text","text":"one"}"#));
    // The backend shuts down, leaving the worker running; it records where the log stopped.
    control.detach().await;
    assert!(tokio::time::timeout(WAIT, output.next()).await.unwrap().is_none(), "detach ends the output");
    let patch = fake.wait_request(|r| r.method == "PATCH").await;
    let cursor = patch.body["metadata"]["annotations"]["orca.dev/log-cursor"].as_str().unwrap().to_owned();
    assert_eq!(fake.get("jobs", &name).unwrap()["metadata"]["annotations"]["orca.dev/log-cursor"], cursor.as_str());
    assert!(fake.get("jobs", &name).is_some(), "the Job runs on");
    tokio::time::sleep(Duration::from_millis(20)).await;
    fake.log(&pod_name, r#"{"type":"text","text":"two"}"#);

    // A new backend adopts it: the log resumes right after the cursor.
    let sched2 = K8sScheduler::new(fake.client(), settings());
    let adopted = sched2.adopt(&j).await.unwrap().expect("the Job exists");
    fake.log(&pod_name, r#"{"type":"text","text":"three"}"#);
    fake.close_log(&pod_name);
    fake.put("pods", pod(&k8s_job, &pod_name, "Succeeded", terminated(0, "Completed")));
    fake.set_job_status(&name, condition("Complete", "Completed"));
    let (exit, output) = exit_of(adopted).await;
    assert_eq!(exit, WorkerExit::Exited(0));
    assert_eq!(lines(output).await, [r#"{"type":"text","text":"two"}"#, r#"{"type":"text","text":"three"}"#], "no line twice, none lost");

    // A Job that finished while no backend watched reports its real end.
    let k = echo_job();
    let (_w, k8s_k, pod_k) = start(&fake, &sched, &k).await;
    fake.close_log(&pod_k);
    fake.put("pods", pod(&k8s_k, &pod_k, "Failed", terminated(5, "Error")));
    fake.set_job_status(&format!("orca-job-{}", k.id), condition("Failed", "BackoffLimitExceeded"));
    let (exit, output) = exit_of(sched2.adopt(&k).await.unwrap().unwrap()).await;
    assert_eq!(exit, WorkerExit::Exited(5));
    let warning = lines(output).await;
    assert!(warning.len() == 1 && warning[0].contains("\"warning\""), "no cursor: a warning says output may be missing: {warning:?}");

    // Gone: nothing to adopt.
    assert!(sched2.adopt(&echo_job()).await.unwrap().is_none());
    assert_calls_allowed(&fake);
}

#[tokio::test]
async fn leftovers_discard_health_and_the_creds_claim() {
    let (fake, sched) = setup(settings()).await;
    sched.health().await.expect("healthy");
    // The claim exists: it is mounted.
    fake.put("persistentvolumeclaims", json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "orca-claude-creds", "namespace": "orca"}}));
    let j = echo_job();
    let (_worker, k8s_job, _) = start(&fake, &sched, &j).await;
    let volumes = k8s_job["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["persistentVolumeClaim"]["claimName"] == "orca-claude-creds"), "{volumes:?}");
    assert!(fake.get("secrets", &format!("orca-job-{}", j.id)).is_none(), "no secret vars, no Secret");

    assert_eq!(sched.leftovers().await.unwrap(), vec![j.id]);
    sched.discard(j.id).await.unwrap();
    let del = fake.wait_request(|r| r.method == "DELETE").await;
    assert_eq!(del.body["propagationPolicy"], "Background");
    assert!(sched.leftovers().await.unwrap().is_empty());
    sched.discard(j.id).await.expect("discarding a gone Job is fine");

    // Per-job limits within the server's maxima.
    let big = job(json!({"prompt": "p", "config": {"memoryMb": 999999}}));
    assert!(sched.validate(&big.config).is_err());
    assert_calls_allowed(&fake);

    // An API that does not answer: unhealthy, quickly.
    let dead = K8sScheduler::new(kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap(), settings());
    let t = std::time::Instant::now();
    assert!(dead.health().await.is_err());
    assert!(t.elapsed() < Duration::from_secs(10));
}

/// Every call in API_CALLS is one the scheduler really makes (the other direction of the RBAC
/// check): a tour through start, watch, logs, detach, adopt, stop, leftovers and discard.
#[tokio::test]
async fn the_scheduler_makes_every_call_in_api_calls() {
    let (fake, sched) = setup(settings()).await;
    fake.put("persistentvolumeclaims", json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "orca-claude-creds", "namespace": "orca"}}));
    let j = job(json!({"prompt": "p", "config": {"gitToken": "t"}}));
    let (worker, k8s_job, pod_name) = start(&fake, &sched, &j).await;
    fake.log(&pod_name, r#"{"type":"text","text":"x"}"#);
    fake.put("pods", pod(&k8s_job, &pod_name, "Running", json!({"running": {}})));
    let mut out = worker.output.unwrap();
    tokio::time::timeout(WAIT, out.next()).await.unwrap();
    worker.control.detach().await;
    fake.wait_request(|r| r.method == "PATCH").await;
    let adopted = sched.adopt(&j).await.unwrap().unwrap();
    adopted.control.stop(Duration::from_secs(1)).await;
    let _ = sched.leftovers().await.unwrap();
    sched.discard(j.id).await.unwrap();
    fake.wait_request(|r| r.call.1 == "secrets" && r.call.2 == "delete").await;
    let made: BTreeSet<(String, String, String)> = fake.calls().into_iter().collect();
    let listed: BTreeSet<(String, String, String)> = API_CALLS.iter().map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string())).collect();
    assert_eq!(made, listed);
}
