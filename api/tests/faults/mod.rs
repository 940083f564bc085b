//! What the fault tests (issue #17) share: a PostgreSQL cluster the test
//! creates and owns (`pg_createcluster`, never the shared one), a mixed
//! HTTP load that records exactly what the server acknowledged, and the
//! check afterwards: every command acknowledged with a 2xx is in the log
//! once, nothing else is, `replay verify` passes (chain, tree, invoices and
//! the read models against a rebuild) and the read models include the head.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use projections::db::{READMODELS_FILE, ReadModelDb};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::common::{Backend, OPERATOR, Reply, Server, id};

pub mod peers;

/// The longest one request may take before the test calls it a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a load worker keeps retrying its last command after the load
/// was told to stop (the fault must be over by then).
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between a refused attempt and its retry: shorter than the
/// server's `Retry-After` (1 s), so the outage is measured to 100 ms.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Pause between two commands of one worker: a steady, moderate load on a
/// shared two-core machine.
const COMMAND_PAUSE: Duration = Duration::from_millis(20);
/// Commands one worker sends at most (a bound on the tally).
const COMMANDS_PER_WORKER_MAX: usize = 5_000;
/// How long the check waits for the read models to reach the head.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// A PostgreSQL cluster of the test's own on a free port, removed when
/// dropped (also when the test panics).
pub struct Cluster {
    version: String,
    name: String,
    pub port: u16,
}

impl Cluster {
    /// Creates and starts a cluster; `None` (after a skip notice) without
    /// postgresql-common's tools or without root (they need it).
    pub async fn create(test: &str) -> Option<Self> {
        let cluster = Self::create_stopped(test).await?;
        cluster.start().await;
        Some(cluster)
    }

    /// A primary whose every commit waits until a synchronous standby has
    /// it (`synchronous_standby_names = '*'`), started; see
    /// [`Cluster::standby`].
    pub async fn primary(test: &str) -> Option<Self> {
        let cluster = Self::create_stopped(test).await?;
        let conf = format!("/etc/postgresql/{}/{}/conf.d/faults-sync.conf", cluster.version, cluster.name);
        std::fs::write(&conf, "synchronous_standby_names = '*'\n").expect("the primary's configuration");
        cluster.start().await;
        Some(cluster)
    }

    /// A hot standby of this primary, streaming from it (a base backup
    /// with `-R`), started; returns once the primary reports it
    /// synchronous.
    pub async fn standby(&self) -> Self {
        let standby = Self::create_stopped("standby").await.expect("a cluster was created before");
        let data = format!("/var/lib/postgresql/{}/{}", standby.version, standby.name);
        // Emptied, not removed: pg_basebackup cannot create it in a
        // directory owned by root.
        for entry in std::fs::read_dir(&data).expect("the standby's data directory") {
            let path = entry.unwrap().path();
            if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }.unwrap();
        }
        let basebackup = format!("/usr/lib/postgresql/{}/bin/pg_basebackup", self.version);
        let port = self.port.to_string();
        let output = tokio::process::Command::new("runuser")
            .args(["-u", "postgres", "--", &basebackup, "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(["-D", &data, "-R", "-X", "stream"])
            .output()
            .await
            .expect("pg_basebackup runs");
        assert!(output.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&output.stderr));
        standby.start().await;
        let mut connection = sqlx::PgConnection::connect(&self.url()).await.expect("the primary answers");
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let sync: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")
                .fetch_one(&mut connection)
                .await
                .unwrap();
            if sync == 1 {
                return standby;
            }
            assert!(Instant::now() < deadline, "the standby did not become synchronous");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Promotes a standby to primary.
    pub async fn promote(&self) {
        self.run("pg_ctlcluster", &["promote"]).await;
    }

    async fn create_stopped(test: &str) -> Option<Self> {
        let version = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).max_by_key(|v| v.parse::<u32>().ok())
        });
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let tools = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("pg_createcluster").exists()));
        let (Some(version), true, true) = (version, root, tools) else {
            let why = "the fault tests create their own cluster: pg_createcluster (postgresql-common) as root";
            store::testing::skip(test, store::testing::Peer::Postgres, why);
            return None;
        };
        let port = free_port();
        let name = format!("faults_{}_{port}", std::process::id());
        let cluster = Self { version, name, port };
        cluster
            .run(
                "pg_createcluster",
                &["-p", &port.to_string(), "--start-conf", "manual", "-o", "max_connections=100", "--", "--auth=trust"],
            )
            .await;
        Some(cluster)
    }

    /// `pg_ctlcluster VERSION NAME …` (or another postgresql-common tool).
    async fn run(&self, tool: &str, args: &[&str]) {
        let output = tokio::process::Command::new(tool)
            .args([&self.version, &self.name])
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub async fn start(&self) {
        self.run("pg_ctlcluster", &["start"]).await;
    }

    /// Stops PostgreSQL as a crash would: no checkpoint, every session cut.
    pub async fn stop_immediately(&self) {
        self.run("pg_ctlcluster", &["stop", "-m", "immediate"]).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster").args(["--stop", &self.version, &self.name]).output();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What the load saw.
#[derive(Default, Debug, Clone)]
pub struct Tally {
    /// Organizations whose creation was acknowledged (2xx).
    pub acknowledged: Vec<String>,
    /// License validations answered 200.
    pub validations: usize,
    /// 2xx answers.
    pub ok: usize,
    /// 503 problem+json answers with `Retry-After`.
    pub refused: usize,
    /// Requests that got no answer (no server listening, connection cut).
    pub unanswered: usize,
    /// Anything else: another status, a 503 without `Retry-After`, a
    /// request that took longer than [`REQUEST_TIMEOUT`], a command never
    /// acknowledged.
    pub wrong: Vec<String>,
    /// The slowest answer.
    pub slowest: Duration,
    /// When the first and the last refusal or unanswered request was.
    pub first_failure: Option<Instant>,
    pub last_failure: Option<Instant>,
}

impl Tally {
    fn failed(&mut self) {
        let now = Instant::now();
        self.first_failure.get_or_insert(now);
        self.last_failure = Some(now);
    }

    /// How long requests failed: from the first failure to the last.
    pub fn outage(&self) -> Duration {
        match (self.first_failure, self.last_failure) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} answered 2xx ({} organizations, {} validations), {} refused 503 with Retry-After, {} unanswered, {} wrong, \
             slowest {:?}, failing for {:?}",
            self.ok,
            self.acknowledged.len(),
            self.validations,
            self.refused,
            self.unanswered,
            self.wrong.len(),
            self.slowest,
            self.outage()
        )
    }
}

/// A mixed HTTP load (organizations created with an `Idempotency-Key`,
/// retried with the same key until acknowledged, and license
/// validations) against whichever server `base` names now.
pub struct Load {
    base: Mutex<String>,
    stop: AtomicBool,
    prefix: String,
    license_key: String,
    http: reqwest::Client,
    pub tally: Mutex<Tally>,
}

impl Load {
    /// A load on `server`, with a license to validate.
    pub async fn new(server: &Server, prefix: &str) -> Self {
        let org = server.create_org(&format!("{prefix} validating")).await;
        let key = id(&server.create_subscription(&org, "starter", "2026-01-01", true).await["licenseKey"]);
        // The OpenAPI document is fetched (and kept) while the server answers.
        crate::common::openapi::document_of(server).await;
        Self {
            base: Mutex::new(server.base.clone()),
            stop: AtomicBool::new(false),
            prefix: prefix.to_owned(),
            license_key: key,
            http: reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap(),
            tally: Mutex::new(Tally::default()),
        }
    }

    /// What the load saw so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    /// Points the load at another server (a restarted node).
    pub fn retarget(&self, server: &Server) {
        *self.base.lock().unwrap() = server.base.clone();
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Runs `workers` workers until [`Load::stop`] (each then finishes its
    /// command).
    pub async fn run(&self, workers: usize) {
        futures::future::join_all((0..workers).map(|w| self.worker(w))).await;
    }

    async fn worker(&self, worker: usize) {
        for n in 0..COMMANDS_PER_WORKER_MAX {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if n % 3 == 2 {
                self.validate().await;
            } else {
                self.create(&format!("{} {worker}-{n}", self.prefix)).await;
            }
            tokio::time::sleep(COMMAND_PAUSE).await;
        }
    }

    /// Creates one organization, retrying with its key until acknowledged.
    async fn create(&self, name: &str) {
        let key = name.replace(' ', "-");
        let mut stopped_at = None;
        loop {
            let body = json!({ "name": name });
            if let Some(reply) = self.send("/api/v1/organizations", Some(OPERATOR), Some(&key), body).await {
                if reply.status.is_success() {
                    self.tally.lock().unwrap().acknowledged.push(name.to_owned());
                    return;
                }
                if reply.status != StatusCode::SERVICE_UNAVAILABLE {
                    return;
                }
            }
            if self.stop.load(Ordering::SeqCst)
                && stopped_at.get_or_insert_with(Instant::now).elapsed() > FINISH_TIMEOUT
            {
                self.tally.lock().unwrap().wrong.push(format!("{name}: never acknowledged"));
                return;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn validate(&self) {
        let body = json!({ "licenseKey": self.license_key });
        if let Some(reply) = self.send("/api/v1/license/validate", None, None, body).await
            && reply.status.is_success()
        {
            let mut tally = self.tally.lock().unwrap();
            if reply.json["code"] == "VALID" {
                tally.validations += 1;
            } else {
                tally.wrong.push(format!("validation answered {}", reply.text));
            }
        }
    }

    /// One POST; the answer is checked against the OpenAPI document and
    /// tallied. `None` when nothing answered.
    async fn send(&self, path: &str, token: Option<&str>, key: Option<&str>, body: Value) -> Option<Reply> {
        let base = self.base.lock().unwrap().clone();
        let mut request = self.http.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let sent = Instant::now();
        let response = request.send().await;
        let took = sent.elapsed();
        let response = match response {
            Ok(response) => {
                let mut tally = self.tally.lock().unwrap();
                tally.slowest = tally.slowest.max(took);
                response
            }
            Err(error) => {
                let mut tally = self.tally.lock().unwrap();
                tally.slowest = tally.slowest.max(took);
                if error.is_timeout() {
                    tally.wrong.push(format!("{path}: no answer within {REQUEST_TIMEOUT:?}"));
                }
                tally.unanswered += 1;
                tally.failed();
                return None;
            }
        };
        let status = response.status();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap().trim().to_owned());
        let Ok(text) = response.text().await else {
            let mut tally = self.tally.lock().unwrap();
            tally.unanswered += 1;
            tally.failed();
            return None;
        };
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        let reply = Reply { status, content_type, text, json };
        let document = crate::common::openapi::document(&self.http, &base).await;
        let mut tally = self.tally.lock().unwrap();
        if let Err(failure) = document.check(&Method::POST, path, &reply) {
            tally.wrong.push(failure.to_string());
        }
        if status.is_success() {
            tally.ok += 1;
        } else if status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some() {
            tally.refused += 1;
            tally.failed();
        } else {
            tally.wrong.push(format!("{path}: {status} (Retry-After {retry_after:?}) {}", reply.text));
        }
        Some(reply)
    }
}

/// The names of the organizations listed by `s` once it includes `sequence`.
async fn listed(s: &Server, sequence: u64) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/organizations?limit=200&minSequence={sequence}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = s.get(&path, Some(OPERATOR)).await.expect(200);
        names.extend(page["items"].as_array().unwrap().iter().map(|item| id(&item["name"])));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return names,
        }
    }
}

/// The `replay` binary built beside `ledger` (`cargo test --workspace`).
fn replay_binary(test: &str) -> Option<PathBuf> {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_ledger")).with_file_name("replay");
    if path.exists() {
        return Some(path);
    }
    store::testing::skip(test, store::testing::Peer::Replay, &format!("the check needs {}", path.display()));
    None
}

/// The check after a fault: the server is ready with its read models at
/// the log's head; every acknowledged organization is listed once and no
/// other of the load's; the log holds at least the acknowledged
/// validations; `replay verify` passes (chain, leaves, tree, invoices, and
/// the read models equal a rebuild).
pub async fn check(test: &str, server: &Server, backend: &Backend, load: &Load) {
    let (acknowledged, validations) = {
        let tally = load.tally.lock().unwrap();
        assert!(tally.wrong.is_empty(), "wrong answers: {:#?}", tally.wrong);
        (tally.acknowledged.clone(), tally.validations)
    };
    let log = backend.open_log().await;
    let head = log.head().await.unwrap().sequence;
    let models = match backend.database_url() {
        Some(url) => ReadModelDb::open_postgres_read_only(url.parse().unwrap()).await,
        None => ReadModelDb::open_sqlite_read_only(&backend.data_dir().join(READMODELS_FILE)).await,
    }
    .expect("the read models open");
    let mut all = projections::models::all(domain::catalog::Catalog::builtin());
    all.push(Box::new(projections::db::merkle::MerkleProjection::new()));
    let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while models.applied(&names).await.unwrap() < head {
        assert!(Instant::now() < deadline, "the read models did not reach the head {head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.wait_ready().await;
    let prefix = format!("{} ", load.prefix);
    let mut names = listed(server, head).await;
    names.retain(|name| name.starts_with(&prefix) && !name.ends_with(" validating"));
    names.sort();
    let mut expected = acknowledged;
    expected.sort();
    assert_eq!(names.len(), expected.len(), "organizations in the log vs acknowledged");
    assert_eq!(names, expected, "every acknowledged organization once, and nothing else");
    let records = log.read_page(1..=head, head as usize + 1).await.unwrap();
    let validated = records.iter().filter(|r| r.header.event_type == "LicenseValidated").count();
    assert!(validated >= validations, "validations: {validated} logged, {validations} acknowledged");
    let Some(replay) = replay_binary(test) else { return };
    let keys = server.get("/api/v1/keys", None).await.expect(200);
    let mut command = tokio::process::Command::new(replay);
    command.args(["verify", "--public-key", keys["checkpoints"]["current"].as_str().unwrap()]);
    match backend.database_url() {
        Some(url) => command.args(["--database-url", url]),
        None => command.arg("--data-dir").arg(backend.data_dir()),
    };
    let output = command.env_remove("DATABASE_URL").output().await.expect("replay runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "replay verify: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    eprintln!("{test}: {head} records; replay verify: {}", stdout.lines().last().unwrap_or_default());
}
