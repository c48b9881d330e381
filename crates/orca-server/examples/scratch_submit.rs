// Temporary: where does a submit's time go? (deleted after measuring)
use orca_server::events::EventBus;
use orca_server::store::JobStore;
use std::time::Instant;
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let db = std::env::var("DB").unwrap();
    let store = orca_server::store::postgres::PgJobStore::open(&db, 16).await.unwrap();
    let bus = orca_server::events::redis::RedisEventBus::connect(orca_server::config::RedisEvents {
        url: orca_core::Secret::new("redis://127.0.0.1:6390"), prefix: "orca-test-scratch".into(), maxlen: 1000, ttl: std::time::Duration::from_secs(60) }).await.unwrap();
    let body = serde_json::json!({"prompt": "fix the failing test in src/utils.ts", "repoUrl": "https://example.com/org/repo.git", "agentType": "echo"});
    let n = 3000;
    for phase in ["insert", "append", "both-seq", "both-par", "parse+serialize"] {
        let t = Instant::now();
        for _ in 0..n {
            let job = orca_core::NewJob::parse(&body).unwrap().into_job(time::OffsetDateTime::now_utc());
            match phase {
                "insert" => store.insert(&job).await.unwrap(),
                "append" => { bus.append(job.id, orca_core::AgentEvent::status(orca_core::JobStatus::Queued, None, None)).await.unwrap(); }
                "both-seq" => { store.insert(&job).await.unwrap(); bus.append(job.id, orca_core::AgentEvent::status(orca_core::JobStatus::Queued, None, None)).await.unwrap(); }
                "both-par" => { let (a, b) = tokio::join!(store.insert(&job), bus.append(job.id, orca_core::AgentEvent::status(orca_core::JobStatus::Queued, None, None))); a.unwrap(); b.unwrap(); }
                _ => { let _ = serde_json::to_vec(&job).unwrap(); }
            }
        }
        println!("{phase}: {:.3} ms/op", t.elapsed().as_secs_f64() * 1000.0 / n as f64);
    }
}
