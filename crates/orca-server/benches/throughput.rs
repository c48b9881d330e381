//! `cargo bench -p orca-server --bench throughput`: Orca on PostgreSQL + Redis next to the raw
//! engines, measured in one run on one machine (a benchmark, not a test: it asserts nothing).
//!
//! 1. Jobs/s accepted by `POST /api/v1/jobs` at concurrency 1, 16 and 64 (keep-alive HTTP
//!    clients in this process, the server in this process), next to `pgbench` inserting one
//!    row per transaction into a copy of the `jobs` table (same columns and indexes, a job's
//!    real JSON body) at the same concurrency.
//! 2. Events/s delivered from XADD to a WebSocket client: `redis-benchmark` appends to one job's
//!    stream with the bus's own append script while a client follows
//!    `/api/v1/jobs/:id/stream`; next to `redis-benchmark` running plain `XADD` with the same
//!    clients and pipeline depth.
//! 3. With `ORCA_BENCH_MILLION=1`: list latency over a million jobs, per filter.
//!
//! Engines: `ORCA_BENCH_DATABASE_URL` (default `ORCA_TEST_DATABASE_URL`; a role that may
//! create databases) and `ORCA_BENCH_REDIS_URL` (default `ORCA_TEST_REDIS_URL`); tools from
//! `ORCA_TEST_PG_BIN` or PATH. The server's jobs do not run during the measurement: one
//! parked job holds the only worker slot (`ORCA_MAX_CONCURRENT_JOBS=1`), so what is measured
//! is accepting and storing. `ORCA_BENCH_SECONDS` (default 10) per point. Results go to
//! stdout as Markdown. `ORCA_BENCH_ONLY=submit|events` runs one section;
//! `ORCA_BENCH_CONCURRENCY=1,16` picks the submit concurrencies.

use futures::StreamExt;
use orca_core::redis_events::{APPEND_SCRIPT, JobKeys};
use serde_json::{Value, json};
use sqlx::Connection;
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

const EVENT: &str = r#"{"type":"text","text":"a typical line of agent output, about eighty bytes long...."}"#;

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn tool(name: &str) -> String {
    env("ORCA_TEST_PG_BIN").map(|b| format!("{b}/{name}")).filter(|p| std::path::Path::new(p).is_file()).unwrap_or_else(|| name.into())
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let (Some(admin), Some(redis_url)) =
        (env("ORCA_BENCH_DATABASE_URL").or(env("ORCA_TEST_DATABASE_URL")), env("ORCA_BENCH_REDIS_URL").or(env("ORCA_TEST_REDIS_URL")))
    else {
        eprintln!("set ORCA_BENCH_DATABASE_URL and ORCA_BENCH_REDIS_URL (or source scripts/setup/10-postgres.sh and 20-redis.sh)");
        std::process::exit(2);
    };
    let secs: u64 = env("ORCA_BENCH_SECONDS").and_then(|s| s.parse().ok()).unwrap_or(10);
    let db_name = format!("orca_bench_{}", uuid::Uuid::now_v7().simple());
    let mut admin_conn = sqlx::PgConnection::connect(&admin).await.expect("connect to PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}"))).execute(&mut admin_conn).await.unwrap();
    let mut db_url = url::Url::parse(&admin).unwrap();
    db_url.set_path(&format!("/{db_name}"));
    let prefix = format!("orca-bench-{}", uuid::Uuid::now_v7().simple());
    let dir = tempfile::tempdir().unwrap();
    let vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("LOG_LEVEL", "error"),
        ("ORCA_DATA_DIR", &dir.path().display().to_string()),
        ("DATABASE_URL", db_url.as_str()),
        ("REDIS_URL", &redis_url),
        ("ORCA_REDIS_PREFIX", &prefix),
        ("ORCA_MAX_CONCURRENT_JOBS", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain(["ORCA_DATABASE_POOL_SIZE", "ORCA_WORKER_BIN"].into_iter().filter_map(|k| env(k).map(|v| (k.to_string(), v))))
    .collect();
    let config = orca_server::config::Config::from_vars(&vars).unwrap();
    orca_server::telemetry::init("warn", orca_server::config::LogFormat::Text);
    let only = env("ORCA_BENCH_ONLY").unwrap_or_default();
    let server = orca_server::Server::start(&config).await.expect("server starts (build orca-worker first)");
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    // Park the only worker slot so jobs are accepted and stored, not run.
    let parked = submit(&http, &base, json!({"prompt": "parked", "config": {"echoSteps": 10000, "echoDelayMs": 60000}})).await;
    wait_running(&http, &base, &parked).await;

    println!("{}", machine(&mut admin_conn, &redis_url).await);
    if only.is_empty() || only == "submit" {
        submit_section(&http, &base, db_url.as_str(), secs).await;
    }
    if only.is_empty() || only == "events" {
        events_section(&http, &base, &redis_url, &prefix, &server).await;
    }
    if env("ORCA_BENCH_MILLION").is_some() {
        million(&http, &base, db_url.as_str()).await;
    }
    let _ = http.post(format!("{base}/api/v1/jobs/{parked}/cancel")).send().await;
    server.stop().await.unwrap();
    let mut r = redis::Client::open(redis_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{prefix}:*")).arg("COUNT").arg(1000).query_async(&mut r).await.unwrap();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("UNLINK").arg(&keys).query_async(&mut r).await;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {db_name} WITH (FORCE)"))).execute(&mut admin_conn).await;
}

async fn submit_section(http: &reqwest::Client, base: &str, db_url: &str, secs: u64) {
    println!("\n### Submit: jobs/s accepted by POST /api/v1/jobs vs pgbench single-row INSERT ({secs} s per point)\n");
    println!("| concurrency | Orca submit (jobs/s) | p50 / p99 latency (ms) | pgbench INSERT (tx/s) | Orca / pgbench |");
    println!("|---:|---:|---:|---:|---:|");
    prepare_pgbench(db_url).await;
    let levels: Vec<usize> = env("ORCA_BENCH_CONCURRENCY").map_or(vec![1, 16, 64], |v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect());
    let mut floor = None;
    for c in levels {
        // Three alternating rounds each; the median damps a neighbour's burst of CPU use.
        let (mut ours, mut theirs) = (vec![], vec![]);
        for _ in 0..3 {
            ours.push(submit_rate(http, base, c, Duration::from_secs(secs)).await);
            theirs.push(pgbench(db_url, c, secs));
        }
        ours.sort_by(|a, b| a.0.total_cmp(&b.0));
        theirs.sort_by(|a, b| a.total_cmp(b));
        let ((rate, p50, p99), pg) = (ours[1], theirs[1]);
        println!("| {c} | {rate:.0} | {p50:.1} / {p99:.1} | {pg:.0} | {:.0}% |", 100.0 * rate / pg);
        if c == 1 {
            floor = Some((rate, pg));
        }
    }
    // Where a lone client's time goes: the same request rejected by validation (HTTP, JSON,
    // no storage) is the floor Orca's own hop costs; pgbench's rate is the database's part.
    if let Some((rate, pg)) = floor {
        let body = json!({"prompt": "", "repoUrl": "https://example.com/org/repo.git", "agentType": "echo"});
        if let Some((http, _, _)) = wrk(base, &body, 1, Duration::from_secs(secs), false) {
            let us = |r: f64| 1e6 / r;
            println!(
                "\nConcurrency 1, per request: submit {:.0} µs = HTTP hop without storage (a rejected submission, {http:.0}/s) {:.0} µs + pgbench's insert {:.0} µs + {:.0} µs else.",
                us(rate),
                us(http),
                us(pg),
                us(rate) - us(http) - us(pg)
            );
        }
    }
}

async fn events_section(http: &reqwest::Client, base: &str, redis_url: &str, prefix: &str, server: &orca_server::Server) {
    println!("\n### Events: XADD → WebSocket client vs redis-benchmark XADD\n");
    println!("redis-benchmark appends with Orca's append script (`EVALSHA`: `INCR` + `XADD <n>-0` + idempotency record) while a");
    println!("WebSocket client follows the job; next to it, redis-benchmark's plain `XADD` with the same clients and pipeline.\n");
    println!("| redis-benchmark clients × pipeline | events | appended by the script (events/s) | delivered to the WebSocket client (events/s) | plain XADD (req/s) | delivered / plain XADD |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (clients, depth) in [(1usize, 1usize), (50, 1), (50, 16)] {
        let n = 300_000;
        let job = submit(http, base, json!({"prompt": "event sink"})).await;
        let (appended, delivered) = events_rate(redis_url, prefix, server, &job, clients, depth, n).await;
        let raw = redis_benchmark(redis_url, clients, depth, n, None);
        println!("| {clients} × {depth} | {n} | {appended:.0} | {delivered:.0} | {raw:.0} | {:.0}% |", 100.0 * delivered / raw);
    }
}

async fn machine(pg: &mut sqlx::PgConnection, redis_url: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("?").trim().to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gb = mem.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()).unwrap_or(0) / 1024 / 1024;
    let pg_version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&mut *pg).await.unwrap_or_default();
    let settings: Vec<(String, String)> =
        sqlx::query_as("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')")
            .fetch_all(&mut *pg)
            .await
            .unwrap_or_default();
    let mut r = redis::Client::open(redis_url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut r).await.unwrap_or_default();
    let redis_version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_owned();
    let aof: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("append*").query_async(&mut r).await.unwrap_or_default();
    format!(
        "Machine: {model}, {cores} cores, {mem_gb} GiB. PostgreSQL {pg_version} ({}). Redis {redis_version} ({}). All on loopback.",
        settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
        aof.chunks(2).map(|kv| kv.join("=")).collect::<Vec<_>>().join(", ")
    )
}

async fn submit(http: &reqwest::Client, base: &str, body: Value) -> String {
    let r = http.post(format!("{base}/api/v1/jobs")).json(&body).send().await.unwrap();
    let status = r.status();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

async fn wait_running(http: &reqwest::Client, base: &str, id: &str) {
    let t = Instant::now();
    loop {
        let j: Value = http.get(format!("{base}/api/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
        if j["status"] == "running" {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "parked job not running: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `c` clients submitting back to back for `d`; returns jobs/s, p50 and p99 latency in ms.
/// Uses `wrk` (a C load generator, like pgbench's own client) when installed.
async fn submit_rate(http: &reqwest::Client, base: &str, c: usize, d: Duration) -> (f64, f64, f64) {
    let body = json!({"prompt": "fix the failing test in src/utils.ts", "repoUrl": "https://example.com/org/repo.git", "agentType": "echo"});
    if let Some(r) = wrk(base, &body, c, d, true) {
        return r;
    }
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..c {
        let (http, url, body) = (http.clone(), format!("{base}/api/v1/jobs"), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            while start.elapsed() < d {
                let t = Instant::now();
                let r = http.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 201);
                let _ = r.bytes().await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut lat: Vec<f64> = futures::future::join_all(tasks).await.into_iter().flat_map(|t| t.unwrap()).collect();
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    (lat.len() as f64 / secs, pct(0.5), pct(0.99))
}

fn wrk(base: &str, body: &Value, c: usize, d: Duration, expect_2xx: bool) -> Option<(f64, f64, f64)> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("post.lua");
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = [[{body}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    std::fs::write(&script, lua).unwrap();
    let threads = c.min(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let out = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &c.to_string(), "-d", &format!("{}s", d.as_secs()), "--latency", "-s"])
        .arg(&script)
        .arg(format!("{base}/api/v1/jobs"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Socket errors"), "wrk: {text}");
    assert_eq!(text.contains("Non-2xx"), !expect_2xx, "wrk: {text}");
    let rate = text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok())?;
    let ms = |p: &str| {
        let v = text.lines().find_map(|l| l.trim().strip_prefix(p))?.trim().to_owned();
        if let Some(x) = v.strip_suffix("us") {
            x.parse::<f64>().ok().map(|x| x / 1000.0)
        } else if let Some(x) = v.strip_suffix("ms") {
            x.parse().ok()
        } else {
            v.strip_suffix('s').and_then(|x| x.parse::<f64>().ok()).map(|x| x * 1000.0)
        }
    };
    Some((rate, ms("50%")?, ms("99%")?))
}

async fn prepare_pgbench(db_url: &str) {
    let mut c = sqlx::PgConnection::connect(db_url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE pgbench_jobs (LIKE jobs INCLUDING ALL)").execute(&mut c).await.unwrap();
}

/// pgbench: one single-row INSERT per transaction into a copy of `jobs`, `c` clients.
fn pgbench(db_url: &str, c: usize, secs: u64) -> f64 {
    let job = orca_core::NewJob::parse(&json!({"prompt": "fix the failing test in src/utils.ts", "repoUrl": "https://example.com/org/repo.git"}))
        .unwrap()
        .into_job(time::OffsetDateTime::now_utc());
    let body = serde_json::to_string(&job).unwrap().replace('\'', "''");
    let script = format!(
        "INSERT INTO pgbench_jobs (id, status, agent_type, repo_url, created_at, body) VALUES (gen_random_uuid(), 'queued', 'echo', 'https://example.com/org/repo.git', now(), '{body}');\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("insert.sql");
    std::fs::write(&file, script).unwrap();
    let threads = c.min(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let out = Command::new(tool("pgbench"))
        .args(["-n", "-c", &c.to_string(), "-j", &threads.to_string(), "-T", &secs.to_string(), "-f"])
        .arg(&file)
        .arg(db_url)
        .output()
        .expect("run pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("pgbench said: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

/// redis-benchmark (`clients` × `depth`) appends `n` events to one job with Orca's append
/// script while a WebSocket client follows the job; returns (appended/s as redis-benchmark
/// measured it, delivered/s from the start of the run to the last event received).
async fn events_rate(redis_url: &str, prefix: &str, server: &orca_server::Server, job: &str, clients: usize, depth: usize, n: usize) -> (f64, f64) {
    let ws_url = format!("ws://{}/api/v1/jobs/{job}/stream?fromId=1", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let keys = JobKeys::new(prefix, job);
    let mut con = redis::Client::open(redis_url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let sha: String = redis::Script::new(APPEND_SCRIPT).prepare_invoke().load_async(&mut con).await.unwrap();
    let script_args = vec!["EVALSHA".into(), sha, "3".into(), keys.events, keys.seq, keys.writers, EVENT.into(), "1".into(), "10000000".into(), String::new(), "0".into(), "0".into()];
    let start = Instant::now();
    let url = redis_url.to_owned();
    let producer = tokio::task::spawn_blocking(move || redis_benchmark(&url, clients, depth, n, Some(script_args)));
    let mut got = 0usize;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await.expect("delivery stalled") {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))) => got += 1,
            Some(Ok(_)) => {}
            other => panic!("stream ended early after {got}: {other:?}"),
        }
    }
    let delivered = start.elapsed();
    let appended = producer.await.unwrap();
    drop(ws);
    (appended, n as f64 / delivered.as_secs_f64())
}

/// redis-benchmark, `c` clients, pipelines of `depth`, `n` requests: plain XADD of the event
/// (a fresh key, dropped after), or the given command. Returns requests/s.
fn redis_benchmark(redis_url: &str, c: usize, depth: usize, n: usize, command: Option<Vec<String>>) -> f64 {
    let u = url::Url::parse(redis_url).unwrap();
    let (host, port) = (u.host_str().unwrap_or("127.0.0.1").to_owned(), u.port().unwrap_or(6379).to_string());
    let key = format!("orca-bench-raw-{}", uuid::Uuid::now_v7().simple());
    let command = command.unwrap_or_else(|| ["XADD", &key, "*", "e", EVENT, "t", "1"].map(String::from).to_vec());
    let out = Command::new("redis-benchmark")
        .args(["-h", &host, "-p", &port, "-c", &c.to_string(), "-P", &depth.to_string(), "-n", &n.to_string(), "-q", "--csv"])
        .args(&command)
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = Command::new("redis-cli").args(["-h", &host, "-p", &port, "DEL", &key]).output();
    // CSV: "test","rps",avg,min,p50,p95,p99,max; the test name itself contains commas.
    text.lines()
        .filter(|l| !l.starts_with("\"test\""))
        .find_map(|l| l.rsplit(',').nth(6).map(|v| v.trim_matches('"').to_owned()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("redis-benchmark said: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

/// Inserts a million jobs with SQL and times the list API with each filter.
async fn million(http: &reqwest::Client, base: &str, db_url: &str) {
    let mut c = sqlx::PgConnection::connect(db_url).await.unwrap();
    let t = Instant::now();
    sqlx::raw_sql(
        "INSERT INTO jobs (id, status, agent_type, repo_url, created_at, body)
         SELECT gen_random_uuid(), (ARRAY['queued','running','succeeded','failed','cancelled'])[1 + i % 5],
                (ARRAY['echo','claude-code','codex'])[1 + i % 3], 'https://example.com/repo-' || (i % 1000) || '.git',
                now() - (i || ' seconds')::interval, b.body
         FROM generate_series(1, 1000000) i, (SELECT body FROM jobs LIMIT 1) b;
         ANALYZE jobs;",
    )
    .execute(&mut c)
    .await
    .unwrap();
    println!("\n### List latency over 1,000,000 jobs (inserted in {:.0} s)\n", t.elapsed().as_secs_f64());
    println!("| query | median of 5 (ms) |");
    println!("|---|---:|");
    let since = (time::OffsetDateTime::now_utc() - Duration::from_secs(3600)).format(&time::format_description::well_known::Rfc3339).unwrap();
    for q in [
        "limit=50".to_owned(),
        "status=failed&limit=50".into(),
        "status=queued,running&limit=50".into(),
        "agentType=codex&limit=50".into(),
        "repoUrl=https%3A%2F%2Fexample.com%2Frepo-7.git".into(),
        format!("since={}", since.replace(':', "%3A").replace('+', "%2B")),
        "limit=50&offset=100000".into(),
    ] {
        let mut times = vec![];
        for _ in 0..5 {
            let t = Instant::now();
            let r = http.get(format!("{base}/api/v1/jobs?{q}")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!("| `GET /api/v1/jobs?{q}` | {:.1} |", times[2]);
    }
}
