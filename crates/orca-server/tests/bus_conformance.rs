//! The event bus conformance suite: every test body runs against every adapter (the embedded
//! log and Redis Streams, a fresh key prefix per test), so no behaviour exists in one only.
//! Redis-specific properties (one reader per job, idempotent retries, retention) follow.

mod common;

use common::backends::TestRedis;
use futures::StreamExt;
use orca_core::{AgentEvent, EventRecord, JobId, JobStatus};
use orca_server::config::RedisEvents;
use orca_server::events::embedded::EmbeddedEventLog;
use orca_server::events::redis::RedisEventBus;
use orca_server::events::{EventBus, EventStream};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Opens (or re-opens, for restart tests) the adapter under test on the same storage.
type Opener = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn EventBus>> + Send>> + Send + Sync>;

fn embedded() -> (Opener, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let open: Opener = Arc::new(move || {
        let path = path.clone();
        Box::pin(async move { Arc::new(EmbeddedEventLog::open(&path).await.unwrap()) as Arc<dyn EventBus> })
    });
    (open, dir)
}

fn redis_settings(r: &TestRedis) -> RedisEvents {
    RedisEvents { url: orca_core::Secret::new(r.url.clone()), prefix: r.prefix.clone(), maxlen: 100_000, ttl: Duration::from_secs(600) }
}

fn redis(r: &TestRedis) -> Opener {
    let settings = redis_settings(r);
    Arc::new(move || {
        let s = settings.clone();
        Box::pin(async move { Arc::new(RedisEventBus::connect(s).await.unwrap()) as Arc<dyn EventBus> })
    })
}

/// Runs each listed test body once per adapter: `embedded::name` and `redis::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (open, _dir) = super::embedded();
                tokio::time::timeout(super::LIMIT, super::$name(open)).await.expect("test finished in time");
            })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(r) = super::TestRedis::new("bus conformance on Redis") else { return };
                tokio::time::timeout(super::LIMIT, super::$name(super::redis(&r))).await.expect("test finished in time");
                r.cleanup().await;
            })*
        }
    };
}

const LIMIT: Duration = Duration::from_secs(60);

conformance!(
    ids_are_consecutive_and_read_pages,
    concurrent_appends_get_distinct_consecutive_ids,
    append_first_writes_only_into_an_empty_stream,
    replay_from_the_middle_then_live,
    live_after_replay_without_gap_or_duplicate_under_concurrent_appends,
    terminal_ends_every_stream,
    finished_stream_closes_at_once,
    many_subscribers_see_identical_streams,
    reopening_keeps_events_and_numbering,
);

fn job() -> JobId {
    JobId::new_at(OffsetDateTime::now_utc())
}

fn text(i: usize) -> AgentEvent {
    AgentEvent::Text { text: format!("event {i}") }
}

fn done() -> AgentEvent {
    AgentEvent::status(JobStatus::Succeeded, None, Some(0))
}

/// Drains a stream to its end (bounded), returning its ids.
async fn drain(mut s: EventStream) -> Vec<EventRecord> {
    let mut out = vec![];
    while let Some(r) = tokio::time::timeout(Duration::from_secs(20), s.next()).await.expect("stream stalled") {
        out.push(r.expect("stream item"));
    }
    out
}

fn assert_ids(recs: &[EventRecord], first: u64, last: u64) {
    let ids: Vec<u64> = recs.iter().map(|r| r.id).collect();
    assert_eq!(ids, (first..=last).collect::<Vec<_>>());
}

async fn ids_are_consecutive_and_read_pages(open: Opener) {
    let bus = open().await;
    let j = job();
    assert!(bus.last(j).await.unwrap().is_none());
    assert!(bus.read(j, 0, 10).await.unwrap().is_empty());
    for i in 1..=10 {
        let rec = bus.append(j, text(i)).await.unwrap();
        assert_eq!((rec.id, rec.job_id), (i as u64, j));
    }
    let page = bus.read(j, 3, 4).await.unwrap();
    assert_ids(&page, 4, 7);
    assert_eq!(page[0].event, text(4));
    let all = bus.read(j, 0, 100).await.unwrap();
    assert_ids(&all, 1, 10);
    assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert_eq!(bus.last(j).await.unwrap().unwrap(), all[9], "last is the stored record, timestamp included");
    // Another job numbers its own events.
    let other = job();
    assert_eq!(bus.append(other, text(1)).await.unwrap().id, 1);
    bus.ping().await.unwrap();
}

async fn concurrent_appends_get_distinct_consecutive_ids(open: Opener) {
    let bus = open().await;
    let j = job();
    let mut tasks = vec![];
    for t in 0..8 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = vec![];
            for i in 0..50 {
                ids.push(bus.append(j, text(t * 100 + i)).await.unwrap().id);
            }
            ids
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        let ids = t.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "one writer's appends keep their order");
        for id in ids {
            assert!(seen.insert(id), "id {id} handed out twice");
        }
    }
    assert_eq!(seen, (1..=400).collect::<HashSet<u64>>());
    assert_ids(&bus.read(j, 0, 1000).await.unwrap(), 1, 400);
}

async fn append_first_writes_only_into_an_empty_stream(open: Opener) {
    let bus = open().await;
    // Of many concurrent callers on an empty stream exactly one appends, as event 1, and a
    // follower that was already watching sees it.
    let j = job();
    let sub = bus.subscribe(j, 0).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let bus = bus.clone();
            tokio::spawn(async move { bus.append_first(j, text(i)).await.unwrap() })
        })
        .collect();
    let mut won = vec![];
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    assert_eq!(won.len(), 1, "exactly one caller appends: {won:?}");
    assert_eq!(won[0].id, 1);
    let second = bus.append(j, text(100)).await.unwrap();
    assert_eq!(second.id, 2, "numbering goes on after it");
    assert!(bus.append_first(j, text(101)).await.unwrap().is_none(), "a stream with events is left alone");
    bus.append(j, done()).await.unwrap();
    let seen = drain(sub).await;
    assert_ids(&seen, 1, 3);
    assert_eq!((seen[0].event.clone(), seen[1].event.clone()), (won[0].event.clone(), text(100)));
    assert!(bus.append_first(j, text(102)).await.unwrap().is_none(), "nor a finished one");
    assert_ids(&bus.read(j, 0, 10).await.unwrap(), 1, 3);
    // Many at once: each empty stream gets its event as event 1, the others are left alone.
    let (a, b) = (job(), job());
    bus.append(b, text(7)).await.unwrap();
    bus.append_first_many(&[(a, text(1)), (j, text(103)), (b, text(2))]).await.unwrap();
    let only = |recs: Vec<EventRecord>| recs.into_iter().map(|r| (r.id, r.event)).collect::<Vec<_>>();
    assert_eq!(only(bus.read(a, 0, 10).await.unwrap()), [(1, text(1))]);
    assert_eq!(only(bus.read(b, 0, 10).await.unwrap()), [(1, text(7))]);
    assert_ids(&bus.read(j, 0, 10).await.unwrap(), 1, 3);
    assert_eq!(bus.append(a, text(3)).await.unwrap().id, 2, "numbering goes on after it");
}

async fn replay_from_the_middle_then_live(open: Opener) {
    let bus = open().await;
    let j = job();
    for i in 1..=10 {
        bus.append(j, text(i)).await.unwrap();
    }
    let sub = bus.subscribe(j, 5).await.unwrap();
    let reader = tokio::spawn(drain(sub));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 11..=20 {
        bus.append(j, text(i)).await.unwrap();
    }
    bus.append(j, done()).await.unwrap();
    let got = reader.await.unwrap();
    assert_ids(&got, 6, 21);
    assert_eq!(got[0].event, text(6));
    assert!(got.last().unwrap().event.is_terminal());
}

async fn live_after_replay_without_gap_or_duplicate_under_concurrent_appends(open: Opener) {
    let bus = open().await;
    let j = job();
    const N: usize = 600;
    let writer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 1..N {
                bus.append(j, text(i)).await.unwrap();
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            bus.append(j, done()).await.unwrap();
        })
    };
    // Subscribers join at different moments and from different points while appends go on.
    let mut readers = vec![];
    for k in 0..8u64 {
        tokio::time::sleep(Duration::from_millis(5 * k)).await;
        let after = bus.last(j).await.unwrap().map_or(0, |r| r.id).saturating_sub(k * 7);
        let sub = bus.subscribe(j, after).await.unwrap();
        readers.push((after, tokio::spawn(drain(sub))));
    }
    writer.await.unwrap();
    for (after, r) in readers {
        let got = r.await.unwrap();
        assert_ids(&got, after + 1, N as u64);
    }
}

async fn terminal_ends_every_stream(open: Opener) {
    let bus = open().await;
    let j = job();
    bus.append(j, text(1)).await.unwrap();
    let live = tokio::spawn(drain(bus.subscribe(j, 0).await.unwrap()));
    let from_end = tokio::spawn(drain(bus.subscribe(j, 1).await.unwrap()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.append(j, AgentEvent::status(JobStatus::Cancelled, Some("cancelled by user".into()), None)).await.unwrap();
    let (a, b) = (live.await.unwrap(), from_end.await.unwrap());
    assert_ids(&a, 1, 2);
    assert_ids(&b, 2, 2);
    assert!(a[1].event.is_terminal() && b[0].event.is_terminal());
}

async fn finished_stream_closes_at_once(open: Opener) {
    let bus = open().await;
    let j = job();
    for i in 1..=3 {
        bus.append(j, text(i)).await.unwrap();
    }
    bus.append(j, done()).await.unwrap();
    let t = std::time::Instant::now();
    assert!(drain(bus.subscribe(j, 4).await.unwrap()).await.is_empty());
    assert!(drain(bus.subscribe(j, 99).await.unwrap()).await.is_empty());
    assert_ids(&drain(bus.subscribe(j, 0).await.unwrap()).await, 1, 4);
    assert_ids(&drain(bus.subscribe(j, 2).await.unwrap()).await, 3, 4);
    assert!(t.elapsed() < Duration::from_secs(2), "a finished job's stream never waits: {:?}", t.elapsed());
}

async fn many_subscribers_see_identical_streams(open: Opener) {
    let bus = open().await;
    let j = job();
    let mut readers = vec![];
    for _ in 0..20 {
        readers.push(tokio::spawn(drain(bus.subscribe(j, 0).await.unwrap())));
    }
    for i in 1..=50 {
        bus.append(j, text(i)).await.unwrap();
    }
    bus.append(j, done()).await.unwrap();
    let first = readers.remove(0).await.unwrap();
    assert_ids(&first, 1, 51);
    for r in readers {
        assert_eq!(r.await.unwrap(), first);
    }
}

async fn reopening_keeps_events_and_numbering(open: Opener) {
    let j = job();
    let before = {
        let bus = open().await;
        for i in 1..=5 {
            bus.append(j, text(i)).await.unwrap();
        }
        bus.read(j, 0, 100).await.unwrap()
    };
    let bus = open().await; // a restarted backend
    assert_eq!(bus.read(j, 0, 100).await.unwrap(), before, "every event survives, ids and timestamps included");
    let sub = tokio::spawn(drain(bus.subscribe(j, 3).await.unwrap()));
    assert_eq!(bus.append(j, text(6)).await.unwrap().id, 6, "numbering goes on");
    bus.append(j, done()).await.unwrap();
    assert_ids(&sub.await.unwrap(), 4, 7);
}

// ---- Redis only ----

/// However many clients watch a job, one backend instance runs one Redis reader for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_runs_one_reader_per_job_per_instance() {
    let Some(r) = TestRedis::new("one Redis reader per job") else { return };
    let bus = redis(&r)().await;
    let mut c = r.conn().await;
    let (j1, j2) = (job(), job());
    bus.append(j1, text(1)).await.unwrap();
    let mut subs = vec![];
    for _ in 0..25 {
        subs.push(bus.subscribe(j1, 0).await.unwrap());
    }
    subs.push(bus.subscribe(j2, 0).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(readers(&mut c, j1).await, 1, "one reader for 25 subscribers");
    assert_eq!(readers(&mut c, j2).await, 1);
    drop(subs);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(readers(&mut c, j1).await + readers(&mut c, j2).await, 0, "readers stop when nobody watches");
    r.cleanup().await;
}

/// Connections reading `job`'s events (the bus names them `orca-feed-<job id>`).
async fn readers(c: &mut ::redis::aio::MultiplexedConnection, job: JobId) -> usize {
    let list: String = ::redis::cmd("CLIENT").arg("LIST").query_async(c).await.unwrap();
    let name = format!("name=orca-feed-{job} ");
    list.lines().filter(|l| l.contains(&name)).count()
}

/// A retried append (same writer, same sequence number) is not written twice.
#[tokio::test]
async fn redis_append_retries_are_idempotent() {
    let Some(r) = TestRedis::new("idempotent Redis appends") else { return };
    let mut c = r.conn().await;
    let keys = orca_core::redis_events::JobKeys::new(&r.prefix, &job().to_string());
    let script = ::redis::Script::new(orca_core::redis_events::APPEND_SCRIPT);
    let append = |seq: u64, body: &'static str| {
        let mut inv = script.prepare_invoke();
        inv.key(&keys.events).key(&keys.seq).key(&keys.writers).arg(body).arg(1).arg(0).arg("w1").arg(seq).arg(0);
        inv
    };
    let a: u64 = append(1, r#"{"type":"log","message":"a"}"#).invoke_async(&mut c).await.unwrap();
    let again: u64 = append(1, r#"{"type":"log","message":"a"}"#).invoke_async(&mut c).await.unwrap();
    let b: u64 = append(2, r#"{"type":"log","message":"b"}"#).invoke_async(&mut c).await.unwrap();
    assert_eq!((a, again, b), (1, 1, 2));
    let len: u64 = ::redis::cmd("XLEN").arg(&keys.events).query_async(&mut c).await.unwrap();
    assert_eq!(len, 2);
    r.cleanup().await;
}

/// Streams are trimmed to about MAXLEN; a finished job's keys expire after the TTL.
#[tokio::test]
async fn redis_retention_is_bounded() {
    let Some(r) = TestRedis::new("Redis retention") else { return };
    let settings = RedisEvents { maxlen: 100, ttl: Duration::from_secs(120), ..redis_settings(&r) };
    let bus = RedisEventBus::connect(settings).await.unwrap();
    let j = job();
    for i in 1..=1000 {
        bus.append(j, text(i)).await.unwrap();
    }
    let keys = orca_core::redis_events::JobKeys::new(&r.prefix, &j.to_string());
    let mut c = r.conn().await;
    let len: u64 = ::redis::cmd("XLEN").arg(&keys.events).query_async(&mut c).await.unwrap();
    assert!((100..=300).contains(&len), "trimmed to about MAXLEN=100, got {len}");
    let ttl: i64 = ::redis::cmd("TTL").arg(&keys.events).query_async(&mut c).await.unwrap();
    assert_eq!(ttl, -1, "no expiry while the job runs");
    bus.append(j, done()).await.unwrap();
    for k in [&keys.events, &keys.seq, &keys.writers] {
        let ttl: i64 = ::redis::cmd("TTL").arg(k).query_async(&mut c).await.unwrap();
        assert!((1..=120).contains(&ttl), "{k}: ttl {ttl}");
    }
    // What is left still replays in order and ends with the terminal event.
    let got = drain(bus.subscribe(j, 0).await.unwrap()).await;
    assert_eq!(got.last().unwrap().id, 1001);
    assert!(got.windows(2).all(|w| w[1].id == w[0].id + 1));
    r.cleanup().await;
}

/// A Redis that forgot the append script (restarted, or `SCRIPT FLUSH`) still takes a batch of
/// first events: the bus loads the script again and resends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_batched_first_events_survive_a_script_flush() {
    let Some(r) = TestRedis::new("batched first events after SCRIPT FLUSH") else { return };
    let bus = redis(&r)().await;
    let mut c = r.conn().await;
    let _: () = ::redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut c).await.unwrap();
    let (a, b) = (job(), job());
    bus.append_first_many(&[(a, text(1)), (b, text(2))]).await.unwrap();
    assert_eq!(bus.read(a, 0, 10).await.unwrap()[0].event, text(1));
    assert_eq!(bus.read(b, 0, 10).await.unwrap()[0].event, text(2));
    r.cleanup().await;
}
