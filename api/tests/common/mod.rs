//! Runs the real `ledger` binary against a backend and talks HTTP to it.
//!
//! A `Backend` owns what outlives one server process (the data directory
//! and, for PostgreSQL, a schema of its own), so a test can stop a server
//! and start another one on the same data.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

pub mod openapi;
pub mod planted;

/// Instantiates each black-box test function twice: on SQLite, and on
/// PostgreSQL (which skips, with a notice, without `DATABASE_URL`).
///
/// The workspace's one backend macro, `store::backend_tests!`, on
/// [`Backend`]; kept under this name for the test files' invocations.
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        store::backend_tests!(crate::common::Backend; $($name),*);
    };
}

impl store::testing::BackendFixture for Backend {
    async fn sqlite(_test: &str) -> Self {
        Backend::sqlite().await
    }

    async fn postgres(test: &str) -> Option<Self> {
        Backend::postgres(test).await
    }
}

/// Bootstrap tokens given in the environment (at least 32 characters).
pub const OPERATOR: &str = "op-test-operator-token-0123456789abcdef";
pub const AUDITOR: &str = "au-test-auditor-token-0123456789abcdefg";
/// Where every test's manual clock starts.
pub const CLOCK_START: &str = "2026-01-01T00:00:00Z";

/// How long a start may take (PostgreSQL migrations included).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest a test waits for the scheduler or the read models.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// The data a server runs on: a data directory and, for PostgreSQL, a URL
/// naming a schema of this test's own.
pub struct Backend {
    dir: tempfile::TempDir,
    database_url: Option<String>,
}

impl Backend {
    pub async fn sqlite() -> Self {
        Self { dir: tempfile::tempdir().expect("a temporary directory"), database_url: None }
    }

    /// `None` (after a skip notice) when `DATABASE_URL` is not set.
    pub async fn postgres(test: &str) -> Option<Self> {
        let url = store::testing::postgres_url(test)?;
        let schema = store::testing::fresh_schema(&url).await.name;
        let separator = if url.contains('?') { '&' } else { '?' };
        let database_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
        Some(Self { dir: tempfile::tempdir().expect("a temporary directory"), database_url: Some(database_url) })
    }

    /// A fresh data directory (SQLite) inside `parent` (a small file
    /// system of the test's own).
    pub fn sqlite_in(parent: &std::path::Path) -> Self {
        Self { dir: tempfile::tempdir_in(parent).expect("a temporary directory"), database_url: None }
    }

    /// A fresh data directory with its log and read models in the
    /// PostgreSQL database at `database_url` (a cluster the test owns).
    pub fn postgres_at(database_url: String) -> Self {
        Self { dir: tempfile::tempdir().expect("a temporary directory"), database_url: Some(database_url) }
    }

    /// Starts `ledger serve` on a free port and waits until `/health` answers.
    pub async fn start(&self) -> Server {
        self.start_with(&[]).await
    }

    /// [`Backend::start`] with extra `serve` flags, e.g.
    /// `["--validations-per-address-per-minute", "5"]`.
    pub async fn start_with(&self, extra_args: &[&str]) -> Server {
        self.start_with_env(extra_args, &[]).await
    }

    /// [`Backend::start_with`] with extra environment variables (settings
    /// that are secrets, such as `STRIPE_WEBHOOK_SECRET`, are not flags).
    pub async fn start_with_env(&self, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        command.envs(env.iter().copied());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--clock"])
            .arg(format!("manual:{CLOCK_START}"))
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(extra_args)
            // `--database-url` also reads DATABASE_URL: a SQLite server must
            // not pick up the test run's PostgreSQL.
            .env_remove("DATABASE_URL")
            .env("LEDGER_OPERATOR_TOKEN", OPERATOR)
            .env("LEDGER_AUDITOR_TOKEN", AUDITOR)
            // Checkpoints are kept when a test asks, never in the middle of one.
            .env("LEDGER_CHECKPOINT_INTERVAL_SECONDS", "0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        let mut child = command.spawn().expect("the ledger binary starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        drain(child.stderr.take().expect("piped stderr"), "stderr", output.clone());
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (address, stdout) = match tokio::time::timeout(START_TIMEOUT, listening_address(stdout, &output)).await {
            Ok(Some(found)) => found,
            outcome => {
                let _ = child.start_kill();
                let status = child.wait().await;
                panic!(
                    "the server did not report its address ({}; exit {status:?}):\n{}",
                    if outcome.is_err() { "timed out" } else { "stdout closed" },
                    output.lock().unwrap().join("\n")
                );
            }
        };
        drain(stdout.into_inner(), "stdout", output.clone());
        let server = Server {
            child,
            base: format!("http://{address}"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client"),
            output,
        };
        server.wait_healthy().await;
        server
    }
}

impl Backend {
    /// The log this backend's servers write, opened beside them (as a
    /// second process would), for tests that look at the stored bytes.
    pub async fn open_log(&self) -> store::EventLog {
        let clock = std::sync::Arc::new(store::SystemClock);
        match &self.database_url {
            Some(url) => store::EventLog::open_postgres(url.parse().expect("a PostgreSQL URL"), clock).await,
            None => store::EventLog::open_sqlite(&self.dir.path().join("ledger.sqlite"), clock).await,
        }
        .expect("the log opens")
    }

    /// The data directory (keys, SQLite files, the test clock).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The PostgreSQL URL (naming this backend's schema), if PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// Runs a `ledger` job (e.g. `["billing", "run", "--period", "2026-01"]`)
    /// on this backend's data, beside a running server: the manual clock
    /// continues from the file the server keeps in the data directory.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        command
            .args(args)
            .arg("--clock")
            .arg(format!("manual:{CLOCK_START}"))
            .arg("--data-dir")
            .arg(self.dir.path())
            .env_remove("DATABASE_URL")
            .env("LEDGER_OPERATOR_TOKEN", OPERATOR)
            .env("LEDGER_AUDITOR_TOKEN", AUDITOR)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        command.output().await.expect("the ledger binary runs")
    }
}

/// Reads stdout until the `ledger listening on http://ADDR ...` line.
async fn listening_address(
    mut stdout: BufReader<ChildStdout>,
    output: &Arc<Mutex<Vec<String>>>,
) -> Option<(String, BufReader<ChildStdout>)> {
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        output.lock().unwrap().push(format!("stdout: {}", line.trim_end()));
        if let Some(rest) = line.trim().strip_prefix("ledger listening on http://") {
            let address = rest.split_whitespace().next()?.to_owned();
            return Some((address, stdout));
        }
    }
}

/// Keeps reading a pipe (so the child never blocks on it) into `output`.
fn drain(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    name: &'static str,
    output: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            output.lock().unwrap().push(format!("{name}: {line}"));
        }
    });
}

/// A running server.
pub struct Server {
    child: Child,
    pub base: String,
    http: reqwest::Client,
    output: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        openapi::write_report();
        // libtest shows a failing test's captured output: the server's
        // log explains many failures.
        if std::thread::panicking() {
            eprintln!("---- ledger server output ({}) ----", self.base);
            for line in self.output.lock().unwrap().iter().rev().take(200).collect::<Vec<_>>().into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

/// One answer: status, content type and body (as text and, if it parses, JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// The JSON body, after checking the status.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        self.json
    }

    /// Checks a problem+json refusal: status, content type and `code`.
    #[track_caller]
    pub fn problem(self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json"),
            "errors are application/problem+json; body: {}",
            self.text
        );
        assert_eq!(self.json["code"], code, "unexpected problem code; body: {}", self.text);
        assert_eq!(self.json["status"], status, "the problem names its status; body: {}", self.text);
        self.json
    }
}

impl Server {
    /// Everything the server printed so far, one `stdout: `/`stderr: ` line each.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// The server's process id (to signal it).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; `headers` are extra (name, value) pairs.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(bytes) => request.header("content-type", "application/json").body(bytes),
        };
        let response = request.send().await.unwrap_or_else(|e| panic!("{path}: request failed: {e}"));
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap().trim().to_owned());
        let text = response.text().await.expect("a readable body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        let reply = Reply { status, content_type, text, json };
        self.conforms(&method, path, &reply).await;
        reply
    }

    /// A reply a test got with its own client (for its headers, or from an
    /// address of its own), checked as [`Server::send`] checks its replies
    /// and handed back unread.
    pub async fn conformed(&self, method: &Method, path: &str, response: reqwest::Response) -> reqwest::Response {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a readable body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap().trim().to_owned());
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        self.conforms(method, path, &Reply { status, content_type, text, json }).await;
        let mut rebuilt = axum::http::Response::new(bytes);
        *rebuilt.status_mut() = status;
        *rebuilt.headers_mut() = headers;
        reqwest::Response::from(rebuilt)
    }

    /// Fails the test unless `reply` is what the server's OpenAPI document
    /// says `method path` answers (`openapi`).
    pub async fn conforms(&self, method: &Method, path: &str, reply: &Reply) {
        let document = openapi::document(&self.http, &self.base).await;
        if let Err(failure) = document.check(method, path, reply) {
            panic!("{failure}");
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, Body::None, &[]).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, path, token, Body::Json(body), &[]).await
    }

    /// A POST with an `Idempotency-Key`.
    pub async fn post_keyed(&self, path: &str, token: &str, key: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(token), Body::Json(body), &[("idempotency-key", key)]).await
    }

    /// The log head's sequence (operator).
    pub async fn head(&self) -> u64 {
        let head = self.get("/api/v1/log/head", Some(OPERATOR)).await.expect(200);
        head["sequence"].as_u64().unwrap_or_else(|| panic!("a sequence in {head}"))
    }

    /// Moves the manual clock (operator).
    pub async fn move_clock(&self, now: &str) {
        let moved = self.post("/api/v1/test-clock", Some(OPERATOR), json!({ "now": now })).await.expect(200);
        assert_eq!(moved, json!({ "now": now }));
    }

    /// Creates an organization (operator); returns its id.
    pub async fn create_org(&self, name: &str) -> String {
        let created = self.post("/api/v1/organizations", Some(OPERATOR), json!({ "name": name })).await.expect(201);
        id(&created["id"])
    }

    /// Creates a subscription (operator); returns the whole answer.
    pub async fn create_subscription(&self, org: &str, tier: &str, start: &str, auto_renew: bool) -> Value {
        let body = json!({ "organizationId": org, "tier": tier, "startDate": start, "autoRenew": auto_renew });
        self.post("/api/v1/subscriptions", Some(OPERATOR), body).await.expect(201)
    }

    /// An organization's subscription as `token` sees it.
    pub async fn subscription(&self, org: &str, token: &str) -> Value {
        self.get(&format!("/api/v1/subscriptions/{org}"), Some(token)).await.expect(200)
    }

    /// An organization's audit entries (operator), oldest first.
    pub async fn audit(&self, org: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<u64> = None;
        loop {
            let mut path = format!("/api/v1/audit?organizationId={org}&limit=200");
            if let Some(cursor) = cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = self.get(&path, Some(OPERATOR)).await.expect(200);
            items.extend(page["items"].as_array().expect("audit items").iter().cloned());
            match page["nextCursor"].as_u64() {
                Some(next) => cursor = Some(next),
                None => return items,
            }
        }
    }

    /// Polls until `/health` answers 200.
    async fn wait_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(response) = self.http.get(self.url("/health")).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(Instant::now() < deadline, "/health did not answer 200 in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until `/ready` answers 200 (read models caught up).
    pub async fn wait_ready(&self) -> Value {
        let deadline = Instant::now() + POLL_TIMEOUT;
        loop {
            let ready = self.get("/ready", None).await;
            if ready.status == StatusCode::OK {
                return ready.json;
            }
            assert!(Instant::now() < deadline, "/ready did not answer 200 in time: {}", ready.text);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server with SIGTERM and checks that it exits cleanly.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("the server is running");
        let signalled = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        assert!(signalled.is_ok_and(|s| s.success()), "SIGTERM sent to {pid}");
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => assert!(status.success(), "a SIGTERM'd server exits cleanly: {status:?}"),
            outcome => panic!("the server did not stop within {STOP_TIMEOUT:?} of SIGTERM: {outcome:?}"),
        }
    }
}

/// A JSON string field as a `String`.
#[track_caller]
pub fn id(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("expected a string, got {value}")).to_owned()
}

/// Polls `check` every 100 ms until it returns `Some`, for at most
/// `POLL_TIMEOUT`; `what` names it in the failure.
pub async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + POLL_TIMEOUT;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
