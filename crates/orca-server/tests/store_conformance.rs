//! The job store conformance suite: every test body runs against every adapter (embedded
//! SQLite and PostgreSQL, a fresh database per test), so no behaviour exists in one only.

mod common;

use common::backends::TestDb;
use orca_core::{Job, JobFilter, JobId, JobStatus, NewJob, StatusChange};
use orca_server::store::{JobStore, Lease, LeaseTerms, StoreError};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use time::macros::datetime;

/// A store under test and what to clean up after it.
struct Under {
    store: Arc<dyn JobStore>,
    _dir: Option<tempfile::TempDir>,
    db: Option<TestDb>,
}

impl Under {
    async fn done(self) {
        drop(self.store);
        if let Some(db) = self.db {
            db.drop_db().await;
        }
    }
}

async fn sqlite() -> Option<Under> {
    let dir = tempfile::tempdir().unwrap();
    let store = orca_server::store::sqlite::SqliteJobStore::open(&dir.path().join("orca.db")).await.unwrap();
    Some(Under { store: Arc::new(store), _dir: Some(dir), db: None })
}

async fn postgres() -> Option<Under> {
    let db = TestDb::create("store conformance on PostgreSQL").await?;
    let store = orca_server::store::postgres::PgJobStore::open(&db.url, 32).await.unwrap();
    Some(Under { store: Arc::new(store), _dir: None, db: Some(db) })
}

/// Runs each listed test body once per adapter: `sqlite::name` and `postgres::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let u = super::sqlite().await.unwrap();
                super::$name(u.store.clone()).await;
                u.done().await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(u) = super::postgres().await else { return };
                super::$name(u.store.clone()).await;
                u.done().await;
            })*
        }
    };
}

conformance!(
    insert_get_and_duplicates,
    concurrent_inserts_all_land_and_a_duplicate_fails_alone,
    list_filters_order_paging_and_total,
    since_includes_the_exact_creation_instant,
    update_is_compare_and_set,
    update_and_lease_takes_only_a_free_job,
    claim_is_fifo_and_leases_the_job,
    a_queued_job_someone_holds_is_not_claimed_until_released,
    claim_exactly_once_under_concurrency,
    heartbeat_release_and_reclaim,
    reclaim_exactly_once_under_concurrency,
    statuses_and_active,
    queued_before_counts_the_queue_ahead,
    claim_respects_the_per_repository_limit,
);

fn job(prompt: &str, at: OffsetDateTime) -> Job {
    NewJob::parse(&json!({"prompt": prompt})).unwrap().into_job(at)
}

fn job_with(body: serde_json::Value, at: OffsetDateTime) -> Job {
    NewJob::parse(&body).unwrap().into_job(at)
}

fn terms(owner: &str, now: OffsetDateTime, lease: Duration) -> LeaseTerms<'_> {
    LeaseTerms { owner, now, until: now + lease, max_per_repo: None }
}

fn ids(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

async fn insert_get_and_duplicates(store: Arc<dyn JobStore>) {
    let t = datetime!(2026-12-04 10:00:00.123456789 UTC);
    let j = job_with(json!({"prompt": "p", "repoUrl": "https://h/r.git", "config": {"gitToken": "tok_secret", "echoSteps": 2}}), t);
    store.insert(&j).await.unwrap();
    let got = store.get(j.id).await.unwrap().expect("stored");
    assert_eq!(got, j, "everything round-trips, the token and nanoseconds included");
    assert_eq!(got.config.git_token.as_ref().map(|s| s.expose()), Some("tok_secret"));
    assert!(matches!(store.insert(&j).await, Err(StoreError::Duplicate(id)) if id == j.id));
    assert!(store.get(JobId::new_at(t)).await.unwrap().is_none());
    store.ping().await.unwrap();
}

/// A burst of concurrent inserts (which the PostgreSQL store writes in shared statements):
/// every job lands exactly as given, and the one duplicate among them fails on its own without
/// taking its neighbours down or overwriting the stored job.
async fn concurrent_inserts_all_land_and_a_duplicate_fails_alone(store: Arc<dyn JobStore>) {
    let t = datetime!(2026-12-04 11:00:00 UTC);
    let original = job("the original", t);
    store.insert(&original).await.unwrap();
    let mut impostor = job("an impostor", t);
    impostor.id = original.id;
    let mut jobs: Vec<Job> = (0..299)
        .map(|i| {
            let at = t + Duration::from_millis(i + 1);
            match i % 3 {
                0 => job(&format!("burst {i}"), at),
                1 => job_with(json!({"prompt": format!("burst {i}"), "repoUrl": format!("https://h/r{i}.git"), "config": {"gitToken": format!("tok_{i}")}}), at),
                _ => job_with(json!({"prompt": format!("burst {i}"), "agentType": "codex", "timeoutSeconds": 60}), at),
            }
        })
        .collect();
    jobs.insert(150, impostor);
    let gate = Arc::new(tokio::sync::Barrier::new(jobs.len()));
    let tasks: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|j| {
            let (store, gate) = (store.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                (j.id, j.prompt.clone(), store.insert(&j).await)
            })
        })
        .collect();
    let mut failed = vec![];
    for t in tasks {
        let (id, prompt, res) = t.await.unwrap();
        match res {
            Ok(()) => {}
            Err(StoreError::Duplicate(d)) => failed.push((d, id, prompt)),
            Err(e) => panic!("insert of {id} failed: {e}"),
        }
    }
    assert_eq!(failed, vec![(original.id, original.id, "an impostor".to_owned())], "only the duplicate fails");
    assert_eq!(store.get(original.id).await.unwrap().unwrap(), original, "the stored job is untouched");
    for j in jobs.iter().filter(|j| j.id != original.id) {
        assert_eq!(store.get(j.id).await.unwrap().as_ref(), Some(j), "job {} round-trips", j.prompt);
    }
    let all = store.list(&JobFilter { limit: 1, ..JobFilter::default() }).await.unwrap();
    assert_eq!(all.total, 300);
}

async fn list_filters_order_paging_and_total(store: Arc<dyn JobStore>) {
    let base = datetime!(2026-12-04 10:00 UTC);
    let mut all = vec![];
    for i in 0..12u32 {
        // Pairs share a creation instant: the id breaks the tie.
        let at = base + Duration::from_secs(u64::from(i / 2));
        let mut body = json!({"prompt": format!("job {i}")});
        if i % 3 == 0 {
            body["repoUrl"] = json!("https://example.com/a.git");
        }
        if i % 4 == 0 {
            body["agentType"] = json!("codex");
        }
        let mut j = job_with(body, at);
        if i % 2 == 1 {
            j = j.transition(&StatusChange::to(JobStatus::Cancelled), at).unwrap();
        }
        store.insert(&j).await.unwrap();
        all.push(j);
    }
    let mut newest_first = all.clone();
    newest_first.sort_by(|a, b| (b.created_at, b.id).cmp(&(a.created_at, a.id)));
    let page = store.list(&JobFilter::default()).await.unwrap();
    assert_eq!(page.total, 12);
    assert_eq!(ids(&page.jobs), ids(&newest_first), "newest first, then id desc");
    let page = store.list(&JobFilter { limit: 5, offset: 3, ..Default::default() }).await.unwrap();
    assert_eq!((page.total, page.limit, page.offset), (12, 5, 3));
    assert_eq!(ids(&page.jobs), ids(&newest_first[3..8]));
    let check = |f: JobFilter, pred: &dyn Fn(&Job) -> bool| {
        let store = store.clone();
        let want: Vec<JobId> = newest_first.iter().filter(|j| pred(j)).map(|j| j.id).collect();
        async move {
            let page = store.list(&f).await.unwrap();
            assert_eq!(page.total as usize, want.len(), "{f:?}");
            assert_eq!(ids(&page.jobs), want, "{f:?}");
        }
    };
    check(JobFilter { status: vec![JobStatus::Cancelled], ..Default::default() }, &|j| j.status == JobStatus::Cancelled).await;
    check(JobFilter { status: vec![JobStatus::Queued, JobStatus::Cancelled], ..Default::default() }, &|_| true).await;
    check(JobFilter { status: vec![JobStatus::Running], ..Default::default() }, &|_| false).await;
    let codex = orca_core::AgentType::parse("codex").unwrap();
    check(JobFilter { agent_type: Some(codex.clone()), ..Default::default() }, &|j| j.agent_type == codex).await;
    let repo = "https://example.com/a.git".to_owned();
    check(JobFilter { repo_url: Some(repo.clone()), ..Default::default() }, &|j| j.repo_url.as_ref() == Some(&repo)).await;
    let since = base + Duration::from_secs(3);
    check(JobFilter { since: Some(since), ..Default::default() }, &|j| j.created_at >= since).await;
    check(
        JobFilter { since: Some(since), status: vec![JobStatus::Queued], repo_url: Some(repo.clone()), ..Default::default() },
        &|j| j.created_at >= since && j.status == JobStatus::Queued && j.repo_url.as_ref() == Some(&repo),
    )
    .await;
    let page = store.list(&JobFilter { offset: 100, ..Default::default() }).await.unwrap();
    assert_eq!((page.total, page.jobs.len()), (12, 0), "past the end: empty page, same total");
}

async fn since_includes_the_exact_creation_instant(store: Arc<dyn JobStore>) {
    let at = datetime!(2026-12-04 10:00:00.999999999 UTC);
    let j = job("exact", at);
    store.insert(&j).await.unwrap();
    let page = store.list(&JobFilter { since: Some(at), ..Default::default() }).await.unwrap();
    assert_eq!(ids(&page.jobs), [j.id]);
    let later = at + Duration::from_micros(2);
    assert_eq!(store.list(&JobFilter { since: Some(later), ..Default::default() }).await.unwrap().total, 0);
}

async fn update_is_compare_and_set(store: Arc<dyn JobStore>) {
    let now = OffsetDateTime::now_utc();
    let j = job("cas", now);
    store.insert(&j).await.unwrap();
    let cancelled = j.transition(&StatusChange::to(JobStatus::Cancelled).with_reason("r"), now).unwrap();
    // Ten writers race for the same edge: exactly one wins.
    let mut tasks = vec![];
    for _ in 0..10 {
        let (store, next) = (store.clone(), cancelled.clone());
        tasks.push(tokio::spawn(async move { store.update_if_status(&next, JobStatus::Queued).await.unwrap() }));
    }
    let wins = futures::future::join_all(tasks).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(wins, 1);
    assert_eq!(store.get(j.id).await.unwrap().unwrap(), cancelled);
    assert!(!store.update_if_status(&cancelled, JobStatus::Queued).await.unwrap(), "the status moved on");
}

async fn update_and_lease_takes_only_a_free_job(store: Arc<dyn JobStore>) {
    let now = datetime!(2026-12-04 12:00:00 UTC);
    let (q, held) = (job("queued", now), job("held", now + Duration::from_millis(1)));
    store.insert(&q).await.unwrap();
    store.insert(&held).await.unwrap();
    let me = terms("me", now, Duration::from_secs(30));
    let cancelled = q.transition(&StatusChange::to(JobStatus::Cancelled).with_reason("cancelled by user"), now).unwrap();
    assert!(store.update_and_lease(&cancelled, JobStatus::Queued, &me).await.unwrap());
    assert_eq!(store.get(q.id).await.unwrap().unwrap(), cancelled);
    assert_eq!(store.lease(q.id).await.unwrap(), Some(Lease { owner: "me".into(), until: me.until }));
    assert!(!store.update_and_lease(&cancelled, JobStatus::Queued, &me).await.unwrap(), "compare-and-set on the status");
    // A job someone holds is not taken, whatever its status.
    let claimed = store.claim_next(&terms("other", now, Duration::from_secs(30))).await.unwrap().unwrap();
    assert_eq!(claimed.id, held.id);
    let next = claimed.transition(&StatusChange::to(JobStatus::Cancelled), now).unwrap();
    assert!(!store.update_and_lease(&next, JobStatus::Scheduled, &me).await.unwrap());
    assert_eq!(store.get(held.id).await.unwrap().unwrap().status, JobStatus::Scheduled);
    // The lease runs out like any other: the reaper gets the job with its last owner.
    let later = terms("reaper", now + Duration::from_secs(60), Duration::from_secs(30));
    let mut got: Vec<(JobId, String)> = store.reclaim_expired(&later, 10).await.unwrap().into_iter().map(|r| (r.job.id, r.previous_owner)).collect();
    got.sort();
    let mut want = vec![(q.id, "me".to_owned()), (held.id, "other".to_owned())];
    want.sort();
    assert_eq!(got, want);
}

async fn a_queued_job_someone_holds_is_not_claimed_until_released(store: Arc<dyn JobStore>) {
    let now = datetime!(2026-12-04 14:00 UTC);
    let j = job("requeued", now);
    store.insert(&j).await.unwrap();
    let claimed = store.claim_next(&terms("a", now, Duration::from_secs(30))).await.unwrap().unwrap();
    // Its holder puts it back in the queue (as a takeover does) and still holds it.
    let requeued = claimed.transition(&StatusChange::to(JobStatus::Queued), now).unwrap();
    assert!(store.update_if_owned(&requeued, JobStatus::Scheduled, "a").await.unwrap());
    assert!(store.claim_next(&terms("a", now, Duration::from_secs(30))).await.unwrap().is_none(), "not even by its holder");
    assert!(store.claim_next(&terms("b", now, Duration::from_secs(30))).await.unwrap().is_none());
    assert_eq!(store.queued_before(&job("later", now + Duration::from_secs(1))).await.unwrap(), 1, "it is still in the queue");
    assert!(store.release(j.id, "a").await.unwrap());
    let again = store.claim_next(&terms("b", now, Duration::from_secs(30))).await.unwrap().expect("claimable once released");
    assert_eq!(again.id, j.id);
}

async fn claim_is_fifo_and_leases_the_job(store: Arc<dyn JobStore>) {
    let base = OffsetDateTime::now_utc();
    let jobs: Vec<Job> = (0..3).map(|i| job(&format!("j{i}"), base + Duration::from_millis(i))).collect();
    for j in jobs.iter().rev() {
        store.insert(j).await.unwrap();
    }
    let t = terms("instance-a", base, Duration::from_secs(30));
    for want in &jobs {
        let got = store.claim_next(&t).await.unwrap().expect("a queued job");
        assert_eq!(got.id, want.id, "oldest first");
        assert_eq!(got.status, JobStatus::Scheduled);
        assert_eq!(store.get(got.id).await.unwrap().unwrap(), got, "the stored job is the returned one");
        let lease = store.lease(got.id).await.unwrap().expect("leased");
        assert_eq!(lease.owner, "instance-a");
        assert!((lease.until - t.until).abs() < time::Duration::milliseconds(1), "{lease:?}");
    }
    assert!(store.claim_next(&t).await.unwrap().is_none(), "queue empty");
}

async fn claim_exactly_once_under_concurrency(store: Arc<dyn JobStore>) {
    let base = OffsetDateTime::now_utc();
    let mut want = HashSet::new();
    for i in 0..200u64 {
        let j = job(&format!("c{i}"), base + Duration::from_micros(i));
        want.insert(j.id);
        store.insert(&j).await.unwrap();
    }
    let mut claimers = vec![];
    for c in 0..50 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let owner = format!("claimer-{c}");
            let mut mine = vec![];
            while let Some(j) = store.claim_next(&terms(&owner, OffsetDateTime::now_utc(), Duration::from_secs(60))).await.unwrap() {
                mine.push(j.id);
            }
            (owner, mine)
        }));
    }
    let mut seen = HashSet::new();
    for c in claimers {
        let (owner, mine) = tokio::time::timeout(Duration::from_secs(120), c).await.expect("claimers finish").unwrap();
        for id in mine {
            assert!(seen.insert(id), "job {id} claimed twice");
            assert_eq!(store.lease(id).await.unwrap().unwrap().owner, owner, "the lease names the claimer");
        }
    }
    assert_eq!(seen, want, "every job claimed exactly once");
    let page = store.list(&JobFilter { status: vec![JobStatus::Scheduled], limit: 500, ..Default::default() }).await.unwrap();
    assert_eq!(page.total, 200);
}

async fn heartbeat_release_and_reclaim(store: Arc<dyn JobStore>) {
    let now = OffsetDateTime::now_utc();
    let (a, b) = ("instance-a", "instance-b");
    store.insert(&job("leased", now)).await.unwrap();
    let j = store.claim_next(&terms(a, now, Duration::from_secs(10))).await.unwrap().unwrap();
    // Only the owner renews.
    assert_eq!(store.heartbeat(&terms(a, now, Duration::from_secs(20)), &[j.id]).await.unwrap(), [j.id]);
    assert_eq!(store.heartbeat(&terms(b, now, Duration::from_secs(99)), &[j.id]).await.unwrap(), []);
    assert_eq!(store.heartbeat(&terms(a, now, Duration::from_secs(20)), &[]).await.unwrap(), []);
    let lease = store.lease(j.id).await.unwrap().unwrap();
    assert_eq!(lease.owner, a);
    assert!((lease.until - (now + Duration::from_secs(20))).abs() < time::Duration::milliseconds(1));
    // Not expired yet: nothing to reclaim.
    assert!(store.reclaim_expired(&terms(b, now + Duration::from_secs(19), Duration::from_secs(30)), 10).await.unwrap().is_empty());
    // Expired: b takes it over, once.
    let later = now + Duration::from_secs(21);
    let got = store.reclaim_expired(&terms(b, later, Duration::from_secs(30)), 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].job.id, got[0].previous_owner.as_str(), got[0].job.status), (j.id, a, JobStatus::Scheduled));
    assert!(store.reclaim_expired(&terms(b, later, Duration::from_secs(30)), 10).await.unwrap().is_empty());
    assert_eq!(store.lease(j.id).await.unwrap().unwrap().owner, b);
    // The old owner lost it: its heartbeat and release no longer apply.
    assert_eq!(store.heartbeat(&terms(a, later, Duration::from_secs(20)), &[j.id]).await.unwrap(), []);
    assert!(!store.release(j.id, a).await.unwrap());
    assert!(store.release(j.id, b).await.unwrap());
    assert!(store.lease(j.id).await.unwrap().is_none());
    assert!(store.reclaim_expired(&terms(a, later + Duration::from_secs(3600), Duration::from_secs(30)), 10).await.unwrap().is_empty(), "released jobs are nobody's to reclaim");
    // The job itself was not touched by any of this.
    assert_eq!(store.get(j.id).await.unwrap().unwrap(), j);
}

async fn reclaim_exactly_once_under_concurrency(store: Arc<dyn JobStore>) {
    let now = OffsetDateTime::now_utc();
    for i in 0..30u64 {
        store.insert(&job(&format!("r{i}"), now + Duration::from_micros(i))).await.unwrap();
    }
    while store.claim_next(&terms("dead", now, Duration::from_secs(1))).await.unwrap().is_some() {}
    let later = now + Duration::from_secs(5);
    let mut tasks = vec![];
    for r in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("reaper-{r}");
            let mut mine = vec![];
            loop {
                let got = store.reclaim_expired(&terms(&owner, later, Duration::from_secs(60)), 4).await.unwrap();
                if got.is_empty() {
                    break;
                }
                assert!(got.iter().all(|g| g.previous_owner == "dead"));
                mine.extend(got.into_iter().map(|g| g.job.id));
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "job {id} reclaimed twice");
        }
    }
    assert_eq!(seen.len(), 30);
}

async fn statuses_and_active(store: Arc<dyn JobStore>) {
    let now = OffsetDateTime::now_utc();
    let (q, r, d) = (job("queued", now), job("running", now + Duration::from_millis(1)), job("done", now + Duration::from_millis(2)));
    for j in [&q, &r, &d] {
        store.insert(j).await.unwrap();
    }
    let t = terms("me", now, Duration::from_secs(30));
    let claimed = store.claim_next(&t).await.unwrap().unwrap();
    assert_eq!(claimed.id, q.id);
    let running = claimed.transition(&StatusChange::to(JobStatus::Running), now).unwrap();
    assert!(store.update_if_status(&running, JobStatus::Scheduled).await.unwrap());
    let cancelled = d.transition(&StatusChange::to(JobStatus::Cancelled), now).unwrap();
    assert!(store.update_if_status(&cancelled, JobStatus::Queued).await.unwrap());
    let unknown = JobId::new_at(now);
    let mut got = store.statuses(&[q.id, r.id, d.id, unknown]).await.unwrap();
    got.sort();
    let mut want = vec![(q.id, JobStatus::Running), (r.id, JobStatus::Queued), (d.id, JobStatus::Cancelled)];
    want.sort();
    assert_eq!(got, want, "unknown ids are left out");
    assert!(store.statuses(&[]).await.unwrap().is_empty());
    assert_eq!(ids(&store.active().await.unwrap()), [q.id]);
}

async fn queued_before_counts_the_queue_ahead(store: Arc<dyn JobStore>) {
    let t = datetime!(2026-12-04 10:00:00.000001 UTC);
    let mut jobs: Vec<Job> = (0..5).map(|i| job(&format!("q{i}"), t + Duration::from_micros(i))).collect();
    // Two jobs created in the same microsecond: the id breaks the tie, as when claiming.
    let mut twin = job("twin", t + Duration::from_micros(4));
    if twin.id < jobs[4].id {
        std::mem::swap(&mut twin, &mut jobs[4]);
    }
    jobs.push(twin);
    for j in jobs.iter().rev() {
        store.insert(j).await.unwrap();
    }
    let ahead = |i: usize| {
        let (store, j) = (store.clone(), jobs[i].clone());
        async move { store.queued_before(&j).await.unwrap() }
    };
    assert_eq!((ahead(0).await, ahead(3).await, ahead(4).await, ahead(5).await), (0, 3, 4, 5));
    let claimed = store.claim_next(&terms("me", t, Duration::from_secs(30))).await.unwrap().unwrap();
    assert_eq!(claimed.id, jobs[0].id, "the queue's head is what a claim takes");
    let cancelled = jobs[2].transition(&StatusChange::to(JobStatus::Cancelled), t).unwrap();
    assert!(store.update_if_status(&cancelled, JobStatus::Queued).await.unwrap());
    assert_eq!((ahead(1).await, ahead(3).await, ahead(5).await), (0, 1, 3), "only queued jobs count");
}

async fn claim_respects_the_per_repository_limit(store: Arc<dyn JobStore>) {
    let t = datetime!(2026-12-04 10:00 UTC);
    let a = |i: i64| job_with(json!({"prompt": "a", "repoUrl": "https://h/a.git"}), t + Duration::from_secs(i as u64));
    let (a1, a2) = (a(1), a(2));
    let b = job_with(json!({"prompt": "b", "repoUrl": "https://h/b.git"}), t + Duration::from_secs(3));
    let none = job("no repo", t + Duration::from_secs(4));
    for j in [&a1, &a2, &b, &none] {
        store.insert(j).await.unwrap();
    }
    let limited = |now| LeaseTerms { owner: "me", now, until: now + Duration::from_secs(30), max_per_repo: Some(1) };
    let now = t + Duration::from_secs(10);
    let claimed: Vec<JobId> = [
        store.claim_next(&limited(now)).await.unwrap(),
        store.claim_next(&limited(now)).await.unwrap(),
        store.claim_next(&limited(now)).await.unwrap(),
    ]
    .into_iter()
    .map(|j| j.expect("a claimable job").id)
    .collect();
    assert_eq!(claimed, [a1.id, b.id, none.id], "a2 waits while a1 holds the repository's only slot");
    assert!(store.claim_next(&limited(now)).await.unwrap().is_none());
    // Without the limit a2 goes.
    assert_eq!(store.claim_next(&terms("me", now, Duration::from_secs(30))).await.unwrap().map(|j| j.id), Some(a2.id));
}

/// PostgreSQL only: a lone insert runs on a connection of its own (outside the pool). When
/// the server drops every connection, the next insert still lands once, through the pool's
/// retries, and a duplicate is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_inserts_survive_their_connections_being_killed() {
    use sqlx::Connection;
    let Some(u) = postgres().await else { return };
    let url = u.db.as_ref().unwrap().url.clone();
    let t = datetime!(2026-12-04 13:00 UTC);
    let (a, b) = (job("before", t), job("after", t + Duration::from_millis(1)));
    u.store.insert(&a).await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let killed: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert!(!killed.is_empty(), "the store's connections were there to kill");
    u.store.insert(&b).await.unwrap();
    assert_eq!(u.store.get(b.id).await.unwrap().as_ref(), Some(&b));
    assert!(matches!(u.store.insert(&a).await, Err(StoreError::Duplicate(id)) if id == a.id));
    assert_eq!(u.store.list(&JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap().total, 2);
    admin.close().await.unwrap();
    u.done().await;
}
