//! A fake Kubernetes API server on 127.0.0.1 for the Kubernetes scheduler's tests.
//!
//! It speaks the real HTTP API that `kube` uses (create/get/list/delete, `watch=true` streams
//! of `{"type":…,"object":…}` lines, pod logs with `follow` and `timestamps`) for Jobs, pods,
//! Secrets and PersistentVolumeClaims, keeps objects in memory, and records every request.
//! The test plays the kubelet and the Job controller: it puts pods, sets Job conditions and
//! writes log lines. Deleting a Job deletes its pods and the Secrets it owns (the garbage
//! collector). Label selectors support `k=v[,k=v]` only.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast, mpsc};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Value,
    /// (API group, resource, verb), as RBAC sees it.
    pub call: (String, String, String),
}

#[derive(Default)]
struct State_ {
    /// (resource, name) → object.
    objects: BTreeMap<(String, String), Value>,
    rv: u64,
    /// Every change: (resourceVersion, resource, type, object).
    history: Vec<(u64, String, &'static str, Value)>,
    requests: Vec<Request>,
    /// pod name → (log lines with their timestamps, closed).
    logs: BTreeMap<String, (Vec<String>, bool)>,
    /// resource → HTTP status for creates of that resource (to simulate failures).
    fail_create: BTreeMap<String, u16>,
}

#[derive(Clone)]
pub struct FakeKube {
    pub url: String,
    state: Arc<Mutex<State_>>,
    changes: broadcast::Sender<u64>,
    log_written: Arc<Notify>,
}

type Shared = (Arc<Mutex<State_>>, broadcast::Sender<u64>, Arc<Notify>);

impl FakeKube {
    pub async fn start() -> FakeKube {
        let state = Arc::new(Mutex::new(State_::default()));
        let (changes, _) = broadcast::channel(1024);
        let log_written = Arc::new(Notify::new());
        let shared: Shared = (state.clone(), changes.clone(), log_written.clone());
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeKube { url, state, changes, log_written }
    }

    /// A kube client for namespace `orca`.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse::<Uri>().unwrap());
        config.default_namespace = "orca".into();
        kube::Client::try_from(config).unwrap()
    }

    /// A kubeconfig file pointing at this fake.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: orca\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: not-a-real-token\n",
            self.url
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn calls(&self) -> Vec<(String, String, String)> {
        self.requests().into_iter().map(|r| r.call).collect()
    }

    pub fn get(&self, resource: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(&(resource.into(), name.into())).cloned()
    }

    pub fn names(&self, resource: &str) -> Vec<String> {
        self.state.lock().unwrap().objects.keys().filter(|(r, _)| r == resource).map(|(_, n)| n.clone()).collect()
    }

    /// Makes creates of `resource` fail with `status`.
    pub fn fail_create(&self, resource: &str, status: u16) {
        self.state.lock().unwrap().fail_create.insert(resource.into(), status);
    }

    /// Waits (bounded) until an object exists.
    pub async fn wait_for(&self, resource: &str, name: &str) -> Value {
        let t = Instant::now();
        loop {
            if let Some(v) = self.get(resource, name) {
                return v;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{resource}/{name} was never created");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until a request matches.
    pub async fn wait_request(&self, pred: impl Fn(&Request) -> bool) -> Request {
        let t = Instant::now();
        loop {
            if let Some(r) = self.requests().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "no such request; got {:#?}", self.requests());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates or replaces an object (as the kubelet or a controller would) and notifies watchers.
    pub fn put(&self, resource: &str, mut obj: Value) {
        let mut st = self.state.lock().unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        let kind = if st.objects.contains_key(&(resource.into(), name.clone())) { "MODIFIED" } else { "ADDED" };
        let rv = bump(&mut st);
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        obj["metadata"].as_object_mut().unwrap().entry("uid").or_insert(json!(format!("uid-{resource}-{rv}")));
        st.objects.insert((resource.into(), name), obj.clone());
        st.history.push((rv, resource.into(), kind, obj));
        let _ = self.changes.send(rv);
    }

    /// Sets the status of a Job.
    pub fn set_job_status(&self, name: &str, status: Value) {
        let mut job = self.get("jobs", name).unwrap_or_else(|| panic!("no job {name}"));
        job["status"] = status;
        self.put("jobs", job);
    }

    /// Deletes an object as the API would, with the garbage collector's cascade.
    pub fn delete(&self, resource: &str, name: &str) -> Option<Value> {
        let mut st = self.state.lock().unwrap();
        let removed = delete_locked(&mut st, resource, name);
        let _ = self.changes.send(st.rv);
        removed
    }

    /// Appends a line to a pod's log (timestamped now).
    pub fn log(&self, pod: &str, line: &str) {
        let ts = k8s_openapi::jiff::Timestamp::now();
        self.state.lock().unwrap().logs.entry(pod.into()).or_default().0.push(format!("{ts} {line}"));
        self.log_written.notify_waiters();
    }

    /// Ends a pod's log (the container stopped).
    pub fn close_log(&self, pod: &str) {
        self.state.lock().unwrap().logs.entry(pod.into()).or_default().1 = true;
        self.log_written.notify_waiters();
    }
}

fn bump(st: &mut State_) -> u64 {
    st.rv += 1;
    st.rv
}

fn delete_locked(st: &mut State_, resource: &str, name: &str) -> Option<Value> {
    let obj = st.objects.remove(&(resource.into(), name.into()))?;
    if resource == "jobs" {
        let uid = obj["metadata"]["uid"].clone();
        let job_id = obj["metadata"]["labels"]["orca.dev/job-id"].clone();
        let pods: Vec<String> = st
            .objects
            .iter()
            .filter(|((r, _), o)| r == "pods" && o["metadata"]["labels"]["orca.dev/job-id"] == job_id)
            .map(|((_, n), _)| n.clone())
            .collect();
        for p in pods {
            delete_locked(st, "pods", &p);
        }
        let owned: Vec<String> = st
            .objects
            .iter()
            .filter(|((r, _), o)| r == "secrets" && o["metadata"]["ownerReferences"][0]["uid"] == uid)
            .map(|((_, n), _)| n.clone())
            .collect();
        for s in owned {
            delete_locked(st, "secrets", &s);
        }
    }
    let rv = bump(st);
    st.history.push((rv, resource.into(), "DELETED", obj.clone()));
    Some(obj)
}

/// RFC 7386 JSON merge patch (what `Patch::Merge` sends).
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (_, Some(_)) => {
            *target = json!({});
            merge_patch(target, patch);
        }
        _ => *target = patch.clone(),
    }
}

fn matches(obj: &Value, selector: Option<&str>) -> bool {
    selector.into_iter().flat_map(|s| s.split(',')).filter(|s| !s.is_empty()).all(|kv| match kv.split_once('=') {
        Some((k, v)) => obj["metadata"]["labels"][k] == v,
        None => false,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn list_kind(resource: &str) -> &'static str {
    match resource {
        "jobs" => "JobList",
        "pods" => "PodList",
        "secrets" => "SecretList",
        _ => "List",
    }
}

async fn handle(State((state, changes, log_written)): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let query: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    // /api/v1/namespaces/NS/RES[/NAME[/SUB]] or /apis/GROUP/VERSION/namespaces/NS/RES[/NAME[/SUB]]
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", "namespaces", _ns, rest @ ..] => ("", rest),
        ["apis", g, _v, "namespaces", _ns, rest @ ..] => (*g, rest),
        _ => return status(404, "NotFound", &format!("the fake does not serve {}", uri.path())),
    };
    let (resource, name, sub) = (rest[0].to_owned(), rest.get(1).map(|s| s.to_string()), rest.get(2).map(|s| s.to_string()));
    let watch = q("watch").as_deref() == Some("true");
    let verb = match (&method, &name, &sub) {
        (&Method::GET, None, _) if watch => "watch",
        (&Method::GET, None, _) => "list",
        (&Method::GET, Some(_), _) => "get",
        (&Method::POST, None, _) => "create",
        (&Method::DELETE, Some(_), _) => "delete",
        (&Method::PATCH, _, _) => "patch",
        (&Method::PUT, _, _) => "update",
        _ => "other",
    };
    let rbac_resource = match &sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.clone(),
    };
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.lock().unwrap().requests.push(Request {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: query.clone(),
        body: body_json.clone(),
        call: (group.to_owned(), rbac_resource, verb.to_owned()),
    });
    let selector = q("labelSelector");
    match (verb, name, sub.as_deref()) {
        ("create", None, _) => {
            let mut st = state.lock().unwrap();
            if let Some(code) = st.fail_create.get(&resource) {
                return status(*code, "Forbidden", &format!("{resource} is forbidden (fake)"));
            }
            let mut obj = body_json;
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            if st.objects.contains_key(&(resource.clone(), name.clone())) {
                return status(409, "AlreadyExists", &format!("{resource} \"{name}\" already exists"));
            }
            let rv = bump(&mut st);
            obj["metadata"]["uid"] = json!(format!("uid-{resource}-{rv}"));
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            st.objects.insert((resource.clone(), name), obj.clone());
            st.history.push((rv, resource.clone(), "ADDED", obj.clone()));
            let _ = changes.send(rv);
            (StatusCode::CREATED, axum::Json(obj)).into_response()
        }
        ("get", Some(pod), Some("log")) => log_response(state, log_written, pod, q("sinceTime")),
        ("get", Some(name), None) => match state.lock().unwrap().objects.get(&(resource.clone(), name.clone())) {
            Some(o) => axum::Json(o.clone()).into_response(),
            None => status(404, "NotFound", &format!("{resource} \"{name}\" not found")),
        },
        ("delete", Some(name), None) => {
            let mut st = state.lock().unwrap();
            let removed = delete_locked(&mut st, &resource, &name);
            let _ = changes.send(st.rv);
            match removed {
                Some(o) => axum::Json(o).into_response(),
                None => status(404, "NotFound", &format!("{resource} \"{name}\" not found")),
            }
        }
        ("patch", Some(name), None) => {
            let mut st = state.lock().unwrap();
            let Some(mut obj) = st.objects.get(&(resource.clone(), name.clone())).cloned() else {
                return status(404, "NotFound", &format!("{resource} \"{name}\" not found"));
            };
            merge_patch(&mut obj, &body_json);
            let rv = bump(&mut st);
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            st.objects.insert((resource.clone(), name), obj.clone());
            st.history.push((rv, resource.clone(), "MODIFIED", obj.clone()));
            let _ = changes.send(rv);
            axum::Json(obj).into_response()
        }
        ("list", None, _) => {
            let st = state.lock().unwrap();
            let items: Vec<Value> =
                st.objects.iter().filter(|((r, _), o)| *r == resource && matches(o, selector.as_deref())).map(|(_, o)| o.clone()).collect();
            let list = json!({"apiVersion": "v1", "kind": list_kind(&resource), "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
            axum::Json(list).into_response()
        }
        ("watch", None, _) => {
            let from: u64 = q("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            watch_response(state, changes, resource, selector, from)
        }
        _ => status(405, "MethodNotAllowed", "the fake does not support this"),
    }
}

fn watch_response(state: Arc<Mutex<State_>>, changes: broadcast::Sender<u64>, resource: String, selector: Option<String>, from: u64) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let mut sub = changes.subscribe();
    tokio::spawn(async move {
        let mut seen = from;
        loop {
            let batch: Vec<(&'static str, Value)> = {
                let st = state.lock().unwrap();
                let batch = st
                    .history
                    .iter()
                    .filter(|(rv, r, _, o)| *rv > seen && *r == resource && matches(o, selector.as_deref()))
                    .map(|(_, _, t, o)| (*t, o.clone()))
                    .collect();
                seen = seen.max(st.rv);
                batch
            };
            for (kind, obj) in batch {
                let line = format!("{}\n", json!({"type": kind, "object": obj}));
                if tx.send(Ok(Bytes::from(line))).await.is_err() {
                    return;
                }
            }
            if sub.recv().await.is_err() {
                return;
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response()
}

fn log_response(state: Arc<Mutex<State_>>, written: Arc<Notify>, pod: String, since: Option<String>) -> Response {
    if !state.lock().unwrap().objects.contains_key(&("pods".to_owned(), pod.clone())) {
        return status(404, "NotFound", &format!("pods \"{pod}\" not found"));
    }
    if !state.lock().unwrap().logs.contains_key(&pod) {
        return status(400, "BadRequest", &format!("container \"worker\" in pod \"{pod}\" is waiting to start"));
    }
    let since: Option<k8s_openapi::jiff::Timestamp> = since.and_then(|s| s.parse().ok());
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let mut sent = 0;
        loop {
            let notified = written.notified();
            let (lines, closed) = {
                let st = state.lock().unwrap();
                let (lines, closed) = st.logs.get(&pod).cloned().unwrap_or_default();
                (lines[sent..].to_vec(), closed)
            };
            sent += lines.len();
            for l in lines {
                // Like the API server: sinceTime has whole seconds; lines from that second on.
                let ts: k8s_openapi::jiff::Timestamp = l.split(' ').next().unwrap().parse().unwrap();
                if since.is_some_and(|s| ts.as_second() < s.as_second()) {
                    continue;
                }
                if tx.send(Ok(Bytes::from(format!("{l}\n")))).await.is_err() {
                    return;
                }
            }
            if closed {
                return;
            }
            notified.await;
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response()
}

/// A pod of the Job `job` (as the Job controller would create it) with this container state.
pub fn pod(job: &Value, pod_name: &str, phase: &str, state: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": "orca", "labels": job["spec"]["template"]["metadata"]["labels"]},
        "spec": job["spec"]["template"]["spec"],
        "status": {"phase": phase, "containerStatuses": [{
            "name": "worker", "image": "orca-worker:latest", "imageID": "", "ready": phase == "Running", "restartCount": 0, "state": state
        }]}
    })
}
