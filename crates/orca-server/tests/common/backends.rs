//! Real PostgreSQL and Redis for tests: a fresh database or key prefix per test, and private
//! servers for tests that restart them.
//!
//! The shared servers come from `scripts/setup/10-postgres.sh` and `20-redis.sh`
//! (`ORCA_TEST_DATABASE_URL`, `ORCA_TEST_REDIS_URL`). Without them a test prints a loud
//! `SKIPPED` line to stderr and passes, except with `CI=true`, where a missing engine fails.
#![allow(dead_code)]

use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The value of `var`, or `None` after saying loudly that `test` is skipped (panics in CI).
pub fn engine(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let msg = format!("{var} is not set (run scripts/setup/10-postgres.sh and 20-redis.sh, or scripts/test.sh)");
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("{test}: {msg}; CI=true, so a missing engine is a failure");
            }
            eprintln!("\n!!!!! SKIPPED ({test}): {msg}\n");
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// A database of its own on the test PostgreSQL server.
pub struct TestDb {
    pub url: String,
    pub name: String,
    admin: String,
}

impl TestDb {
    /// Creates `orca_test_<random>`; `None` (skipped) without a server.
    pub async fn create(test: &str) -> Option<TestDb> {
        let admin = engine("ORCA_TEST_DATABASE_URL", test)?;
        Some(Self::create_on(&admin).await)
    }

    /// Creates a database on the server at `admin` (a URL that may CREATE DATABASE).
    pub async fn create_on(admin: &str) -> TestDb {
        let name = unique("orca_test_");
        let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect to the test PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create the test database");
        conn.close().await.ok();
        let mut url = url::Url::parse(admin).expect("ORCA_TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        TestDb { url: url.to_string(), name, admin: admin.to_owned() }
    }

    /// Drops the database (best effort; the setup script sweeps leftovers too).
    pub async fn drop_db(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
        }
    }
}

/// A key prefix of its own on the test Redis server.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
}

impl TestRedis {
    /// `None` (skipped) without a server.
    pub fn new(test: &str) -> Option<TestRedis> {
        let url = engine("ORCA_TEST_REDIS_URL", test)?;
        Some(TestRedis { url, prefix: unique("orca-test-") })
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str()).unwrap().get_multiplexed_async_connection().await.expect("connect to the test Redis")
    }

    /// Deletes every key under the prefix (SCAN, so other tests' calls are never blocked).
    pub async fn cleanup(&self) {
        let mut c = self.conn().await;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) =
                match redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{}:*", self.prefix)).arg("COUNT").arg(1000).query_async(&mut c).await {
                    Ok(r) => r,
                    Err(_) => return,
                };
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await;
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_tcp(port: u16, within: Duration) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < within, "nothing listens on 127.0.0.1:{port} after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Redis server of this test's own (so it can be restarted), with an append-only file.
pub struct PrivateRedis {
    pub port: u16,
    pub url: String,
    bin: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start(test: &str) -> Option<PrivateRedis> {
        let bin = engine("ORCA_TEST_REDIS_SERVER", test)?;
        let port = free_port();
        let mut r = PrivateRedis { port, url: format!("redis://127.0.0.1:{port}"), bin, dir: tempfile::tempdir().unwrap(), child: None };
        r.up();
        Some(r)
    }

    /// Starts the server (again, on the same port and data).
    pub fn up(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_tcp(self.port, Duration::from_secs(10));
    }

    /// Stops the server the way an operator would (SIGTERM: it flushes its data and exits).
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A PostgreSQL cluster of this test's own (so it can be restarted). As root, it runs as the
/// `postgres` user in a directory that user can reach.
pub struct PrivatePg {
    pub port: u16,
    /// postgres://orca:orca@127.0.0.1:<port>/orca
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
    _root: tempfile::TempDir,
}

impl PrivatePg {
    pub fn start(test: &str) -> Option<PrivatePg> {
        let bin = PathBuf::from(engine("ORCA_TEST_PG_BIN", test)?);
        let base = if is_root() { PathBuf::from("/var/tmp") } else { std::env::temp_dir() };
        let root = tempfile::Builder::new().prefix("orca-pg-").tempdir_in(&base).unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            chown_postgres(root.path());
            chown_postgres(&data);
        }
        let port = free_port();
        let pwfile = root.path().join("pw");
        std::fs::write(&pwfile, "orca\n").unwrap();
        if is_root() {
            chown_postgres(&pwfile);
        }
        let ok = as_pg_user(&bin.join("initdb"))
            .args(["-U", "orca", "--auth=scram-sha-256", "--pwfile"])
            .arg(&pwfile)
            .arg("-D")
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(ok.success(), "initdb failed");
        let pg = PrivatePg { port, url: format!("postgres://orca:orca@127.0.0.1:{port}/postgres"), bin, data, _root: root };
        pg.up();
        Some(pg)
    }

    /// Starts the cluster (again).
    pub fn up(&self) {
        let opts = format!("-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off", self.port, self.data.display());
        let ok = as_pg_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-l"])
            .arg(self.data.join("log"))
            .args(["-w", "-o", &opts, "start"])
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl start");
        assert!(ok.success(), "pg_ctl start failed; see {}", self.data.join("log").display());
    }

    /// Stops the cluster (fast mode: connections are cut, as in a real restart).
    pub fn down(&self) {
        let _ = as_pg_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = as_pg_user(&self.bin.join("pg_ctl")).arg("-D").arg(&self.data).args(["-m", "immediate", "stop"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0")))
        .unwrap_or(false)
}

fn as_pg_user(prog: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(prog);
        c
    } else {
        Command::new(prog)
    }
}

fn chown_postgres(p: &Path) {
    let ok = Command::new("chown").arg("postgres:").arg(p).status().expect("chown");
    assert!(ok.success(), "chown postgres {}", p.display());
}
