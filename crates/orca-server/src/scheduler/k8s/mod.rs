//! The Kubernetes scheduler (`ORCA_SCHEDULER=k8s`): each Orca job runs as one `batch/v1` Job
//! in `ORCA_NAMESPACE`, through the `kube` client (in-cluster service account, or a kubeconfig).
//!
//! - [`objects`]: the pure builders of the Job and its per-job Secret (the worker env contract,
//!   secrets through `secretKeyRef`, the Docker sandbox as a securityContext, limits, deadline,
//!   TTL).
//! - [`watch`]: follows one job by *watching* its Job and pod (label `orca.dev/job-id`) and turns
//!   what Kubernetes reports (exit code, OOMKilled, image pull errors, DeadlineExceeded, deletion)
//!   into one [`WorkerExit`].
//! - [`logs`]: the worker's stdout events, read from the pod log stream (`follow`).
//!
//! Start: check the credentials claim (unless an API key takes precedence), create the Job,
//! then its Secret owned by the Job (the pod waits for the Secret; if creating it fails, the Job
//! is deleted again). Stop: delete the Job with foreground propagation (its pods get SIGTERM and
//! `terminationGracePeriodSeconds`, then SIGKILL; the Secret goes with it). Jobs outlive the
//! backend: on shutdown the manager *detaches* (the last log line delivered is written to the
//! Job's annotation `orca.dev/log-cursor`), and on start [`Scheduler::adopt`] follows the Job of
//! each active Orca job again from that cursor (a Job that finished meanwhile reports its real
//! outcome; one that is gone means the worker was lost). [`Scheduler::leftovers`] and
//! [`Scheduler::discard`] remove the Jobs of finished jobs.
//!
//! Limits: memory and CPU become the container's requests and limits (equal: the Guaranteed QoS
//! class). Kubernetes has no per-pod pids limit in the pod spec; it is the kubelet's
//! `--pod-max-pids` (`orca dev --k8s` sets it on its k3d cluster).
//!
//! **Invariant:** the scheduler calls exactly the API verbs listed in [`API_CALLS`], and
//! `k8s/rbac.yaml` grants exactly those (checked both ways by `tests/k8s_manifests.rs`; every
//! request in the fake-API tests of `tests/k8s_scheduler.rs` is checked against the list).

pub mod logs;
pub mod objects;
pub mod watch;

use super::limits::LimitsPolicy;
use super::{Scheduler, SchedulerError, StartedWorker, WorkerControl, WorkerExit, WorkerSpec};
use async_trait::async_trait;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret as K8sSecret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use orca_core::{JobConfig, JobId, Secret, ValidationErrors};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch as channel;
use tokio_util::sync::CancellationToken;

/// Every Kubernetes API call the scheduler makes, as (API group, resource, verb).
/// `k8s/rbac.yaml`'s Role grants exactly these, no more.
pub const API_CALLS: &[(&str, &str, &str)] = &[
    ("batch", "jobs", "create"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "list"),
    ("batch", "jobs", "watch"),
    ("batch", "jobs", "patch"),
    ("batch", "jobs", "delete"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods/log", "get"),
    ("", "secrets", "create"),
    ("", "secrets", "delete"),
    ("", "persistentvolumeclaims", "get"),
];

/// The label carrying the Orca job id on Jobs, pods and Secrets.
pub const LABEL_JOB_ID: &str = "orca.dev/job-id";
/// The label selecting every object the scheduler made.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=orca";
/// The Job annotation holding the timestamp of the last log line delivered before a detach.
pub const CURSOR_ANNOTATION: &str = "orca.dev/log-cursor";
/// The worker container's name.
pub const CONTAINER: &str = "worker";
/// The worker's `WORK_DIR` (an emptyDir volume).
pub const WORK_DIR: &str = "/workspace";
/// Where the Claude Code credentials claim is mounted (the image's `CLAUDE_CONFIG_DIR`).
pub const CREDS_MOUNT: &str = "/home/orca/.claude";
/// The name of the credentials PersistentVolumeClaim (k8s/rbac.yaml may read only this one).
pub const DEFAULT_CREDS_CLAIM: &str = "orca-claude-creds";
/// How long `stop` waits past the grace period for Kubernetes to confirm the worker's end.
const STOP_CONFIRM: Duration = Duration::from_secs(15);

/// What the scheduler needs from the server's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `ORCA_NAMESPACE` (default `orca`).
    pub namespace: String,
    /// `WORKER_IMAGE`.
    pub image: String,
    /// Memory and CPU per worker (`ORCA_WORKER_MEMORY_MB`, `ORCA_WORKER_CPUS`, their maxima).
    pub limits: LimitsPolicy,
    /// The pods' `terminationGracePeriodSeconds` (`ORCA_STOP_GRACE_SECONDS`).
    pub stop_grace: Duration,
    /// When workers write their events to Redis themselves (`ORCA_WORKER_REDIS_URL`): their
    /// `REDIS_URL` as they reach it, and (with the Redis bus) `ORCA_REDIS_PREFIX` and
    /// `ORCA_EVENTS_MAXLEN`, so they write where this backend reads. Empty: their stdout events
    /// are read from the pod log.
    pub worker_redis_env: Vec<(String, String)>,
    /// Model keys and endpoints handed to each worker (secret ones through the job's Secret).
    pub agent_env: Vec<(String, Secret)>,
    /// The credentials PersistentVolumeClaim, mounted when it exists.
    pub creds_claim: String,
    /// An explicit kubeconfig (`KUBECONFIG`); `None`: in-cluster, then `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Leave Jobs running when the backend shuts down (`ORCA_SHUTDOWN_WORKERS=keep`).
    pub keep_workers_on_shutdown: bool,
}

impl Settings {
    /// The settings in the server's configuration (`config/k8s.rs`, shared sandbox settings).
    pub fn from_config(c: &crate::config::Config) -> Settings {
        Settings {
            namespace: c.k8s.namespace.clone(),
            image: c.sandbox.docker.image.clone(),
            limits: c.sandbox.limits,
            stop_grace: c.stop_grace,
            worker_redis_env: match (&c.events, &c.k8s.worker_redis_url) {
                (_, None) => vec![],
                (crate::config::EventsBackend::Redis(r), Some(url)) => {
                    crate::events::redis::worker_env(r, url.expose()).into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                }
                (_, Some(url)) => vec![("REDIS_URL".to_owned(), url.expose().to_owned())],
            },
            agent_env: c.agent_env.vars().iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            creds_claim: c.sandbox.docker.creds_volume.clone(),
            kubeconfig: c.k8s.kubeconfig.clone(),
            keep_workers_on_shutdown: c.sandbox.keep_workers_on_shutdown,
        }
    }
}

/// Runs workers as Kubernetes Jobs.
pub struct K8sScheduler {
    client: kube::Client,
    settings: Arc<Settings>,
}

impl K8sScheduler {
    /// Connects with `settings.kubeconfig`, else the in-cluster service account, else
    /// `~/.kube/config` (`kube::Client::try_default`). Makes no request.
    pub async fn connect(settings: Settings) -> Result<Self, SchedulerError> {
        let unavailable = |e: &dyn std::fmt::Display| SchedulerError::Unavailable(format!("cannot configure the Kubernetes client: {e}"));
        let client = match &settings.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| unavailable(&format!("{}: {e}", path.display())))?;
                let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.map_err(|e| unavailable(&e))?;
                kube::Client::try_from(config).map_err(|e| unavailable(&e))?
            }
            None => kube::Client::try_default().await.map_err(|e| unavailable(&e))?,
        };
        Ok(Self::new(client, settings))
    }

    /// A scheduler on an existing client (tests point one at a fake API server).
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        Self { client, settings: Arc::new(settings) }
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    /// Whether the credentials claim exists (a pod naming a missing claim never starts).
    async fn creds_claim_exists(&self) -> bool {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        match claims.get_opt(&self.settings.creds_claim).await {
            Ok(found) => found.is_some(),
            Err(e) => {
                tracing::warn!(claim = %self.settings.creds_claim, "cannot look up the credentials claim, not mounting it: {e}");
                false
            }
        }
    }

    /// Follows the Job of `id`: its outcome, its log (unless workers write to Redis), a control.
    fn follow(&self, id: JobId, memory_mb: u32, resume: logs::Resume) -> StartedWorker {
        let (exit_tx, exit_rx) = channel::channel(None);
        let (ready_tx, ready_rx) = channel::channel(None);
        let exit_tx = Arc::new(exit_tx);
        let ctx = watch::Context {
            client: self.client.clone(),
            settings: self.settings.clone(),
            id,
            memory_mb,
            detached: CancellationToken::new(),
            cursor: Arc::new(Mutex::new(None)),
        };
        tokio::spawn(watch::run(ctx.clone(), ready_tx, exit_tx.clone()));
        let output = if self.settings.worker_redis_env.is_empty() {
            Some(logs::stream(ctx.clone(), ready_rx, exit_rx.clone(), resume))
        } else {
            None
        };
        let mut rx = exit_rx.clone();
        let exit = Box::pin(async move {
            match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone().expect("checked is_some"),
                Err(_) => WorkerExit::Lost("the Kubernetes watch ended without an outcome".into()),
            }
        });
        StartedWorker { output, exit, control: Arc::new(JobControl { jobs: self.jobs(), ctx, exit_tx, exit_rx }) }
    }

    fn resources_of(&self, config: &JobConfig) -> super::limits::Resources {
        self.settings.limits.resolve(config)
    }
}

/// Stops a worker by deleting its Job (foreground propagation: pods first, then the Job).
struct JobControl {
    jobs: Api<Job>,
    ctx: watch::Context,
    exit_tx: Arc<channel::Sender<Option<WorkerExit>>>,
    exit_rx: channel::Receiver<Option<WorkerExit>>,
}

#[async_trait]
impl WorkerControl for JobControl {
    async fn stop(&self, grace: Duration) {
        let name = objects::object_name(self.ctx.id);
        if let Err(e) = delete_job(&self.jobs, &name, DeleteParams::foreground()).await {
            tracing::warn!(job = %name, "cannot delete the Kubernetes Job: {e}");
        }
        let mut exit = self.exit_rx.clone();
        if tokio::time::timeout(grace + STOP_CONFIRM, exit.wait_for(Option::is_some)).await.is_err() {
            let why = format!("the Kubernetes Job {name} was deleted, but its end was not observed within {:?}", grace + STOP_CONFIRM);
            watch::settle(&self.exit_tx, WorkerExit::Lost(why));
        }
    }

    async fn detach(&self) {
        self.ctx.detached.cancel();
        let cursor = *self.ctx.cursor.lock().expect("poisoned");
        if let Some(ts) = cursor {
            let patch = serde_json::json!({"metadata": {"annotations": {CURSOR_ANNOTATION: ts.to_string()}}});
            let name = objects::object_name(self.ctx.id);
            if let Err(e) = self.jobs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::warn!(job = %name, "cannot record the log cursor; the next backend starts the log at adoption: {e}");
            }
        }
    }
}

/// Deletes a Job; one that is already gone counts as deleted.
async fn delete_job(jobs: &Api<Job>, name: &str, params: DeleteParams) -> Result<(), kube::Error> {
    match jobs.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Scheduler for K8sScheduler {
    fn kind(&self) -> &'static str {
        "k8s"
    }

    async fn start(&self, spec: WorkerSpec) -> Result<StartedWorker, SchedulerError> {
        let s = &self.settings;
        let job_config: JobConfig = serde_json::from_str(&spec.config_json).unwrap_or_default();
        // An API key for Claude takes precedence over the login claim, which then stays out.
        let mount_creds = !objects::has_claude_key(s) && self.creds_claim_exists().await;
        let plan = objects::Plan { resources: self.resources_of(&job_config), mount_creds };
        let job = objects::worker_job(&spec, s, &plan);
        let name = objects::object_name(spec.job_id);
        let created = self.jobs().create(&PostParams::default(), &job).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => SchedulerError::Start(format!("a Kubernetes Job named {name} already exists")),
            e => SchedulerError::Start(format!("cannot create the Kubernetes Job {name}: {e}")),
        })?;
        if let Some(secret) = objects::worker_secret(&spec, s, &created) {
            let secrets: Api<K8sSecret> = Api::namespaced(self.client.clone(), &s.namespace);
            if let Err(e) = secrets.create(&PostParams::default(), &secret).await {
                // The error names the Secret, never its values.
                if let Err(d) = delete_job(&self.jobs(), &name, DeleteParams::background()).await {
                    tracing::warn!(job = %name, "cannot delete the Job after its Secret failed: {d}");
                }
                return Err(SchedulerError::Start(format!("cannot create the Kubernetes Secret {name}: {e}")));
            }
        }
        tracing::info!(job_id = %spec.job_id, namespace = %s.namespace, creds = mount_creds, "created Kubernetes Job {name}");
        Ok(self.follow(spec.job_id, plan.resources.memory_mb, logs::Resume::Start))
    }

    async fn adopt(&self, job: &orca_core::Job) -> Result<Option<StartedWorker>, SchedulerError> {
        let name = objects::object_name(job.id);
        let memory_mb = self.resources_of(&job.config).memory_mb;
        match self.jobs().get_opt(&name).await {
            Ok(Some(k8s_job)) => {
                let cursor = k8s_job.metadata.annotations.as_ref().and_then(|a| a.get(CURSOR_ANNOTATION)).and_then(|c| c.parse().ok());
                let resume = cursor.map_or(logs::Resume::Now, logs::Resume::After);
                Ok(Some(self.follow(job.id, memory_mb, resume)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                // Not proof that the worker is gone: follow it anyway. The watch retries until
                // the API answers and reports a Job that does not exist as lost.
                tracing::warn!(job_id = %job.id, "cannot look up the Kubernetes Job {name}, following it anyway: {e}");
                Ok(Some(self.follow(job.id, memory_mb, logs::Resume::Now)))
            }
        }
    }

    async fn health(&self) -> Result<(), SchedulerError> {
        let (jobs, params) = (self.jobs(), ListParams::default().labels(MANAGED_SELECTOR).limit(1));
        match tokio::time::timeout(Duration::from_secs(5), jobs.list(&params)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SchedulerError::Unavailable(format!("Kubernetes API (namespace {}): {e}", self.settings.namespace))),
            Err(_) => Err(SchedulerError::Unavailable("the Kubernetes API did not answer within 5s".into())),
        }
    }

    fn validate(&self, config: &JobConfig) -> Result<(), ValidationErrors> {
        self.settings.limits.check(config)
    }

    async fn leftovers(&self) -> Result<Vec<JobId>, SchedulerError> {
        let list = self
            .jobs()
            .list(&ListParams::default().labels(MANAGED_SELECTOR))
            .await
            .map_err(|e| SchedulerError::Unavailable(format!("cannot list Kubernetes Jobs: {e}")))?;
        Ok(list.items.iter().filter_map(|j| j.metadata.labels.as_ref()?.get(LABEL_JOB_ID).and_then(|id| JobId::parse(id))).collect())
    }

    async fn discard(&self, job_id: JobId) -> Result<(), SchedulerError> {
        // Background propagation: the garbage collector removes its pods and its Secret.
        delete_job(&self.jobs(), &objects::object_name(job_id), DeleteParams::background())
            .await
            .map_err(|e| SchedulerError::Unavailable(format!("cannot delete the Kubernetes Job: {e}")))
    }

    fn keeps_workers_on_shutdown(&self) -> bool {
        self.settings.keep_workers_on_shutdown
    }
}
