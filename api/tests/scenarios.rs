//! Customer lifecycles as data: every file in `scenarios/` is a list of
//! steps (requests, clock moves, billing runs) with the answers expected.
//!
//! One harness runs each file twice: in process (the same router, called
//! without a socket, on a SQLite log in a temporary directory) and over
//! HTTP against the real `ledger` binary, on SQLite and on PostgreSQL.
//! After each run, every invoice the scenario issued is recomputed from the
//! log's subscription and usage events (`projections::invoices`) and must
//! match the issued one byte for byte. The file format is described in
//! `scenarios/README.md`.

// Test code: a scenario or fixture reads best in one piece; the 70-line
// limit (clippy.toml) is for production code.
#![allow(clippy::too_many_lines)]

#[allow(dead_code, unused_macros)]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use axum::body::Body as AxumBody;
use axum::extract::connect_info::MockConnectInfo;
use common::{AUDITOR, Backend, Body, CLOCK_START, OPERATOR, Server};
use domain::catalog::Catalog;
use domain::event::LedgerEvent;
use futures::StreamExt;
use http_body_util::BodyExt;
use projections::invoices::InvoiceCheck;
use reqwest::Method;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use store::EventLog;
use tower::ServiceExt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    name: String,
    /// Where the rules it checks are written.
    #[serde(default)]
    rules: Option<String>,
    steps: Vec<Step>,
}

/// The webhook signing secret the scenarios' servers are given.
const STRIPE_WEBHOOK_SECRET: &str = "whsec_scenarios_0123456789";

/// One step: exactly one of `clock`, `bill`, `post`, `get`, `stripe` or
/// `as_of`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// What the step is for (shown when it fails).
    #[serde(default)]
    note: Option<String>,
    /// Moves the manual clock forward to this time.
    #[serde(default)]
    clock: Option<String>,
    /// Runs the billing run for this month (`YYYY-MM`).
    #[serde(default)]
    bill: Option<String>,
    #[serde(default)]
    post: Option<String>,
    #[serde(default)]
    get: Option<String>,
    /// A Stripe event delivered to `POST /api/v1/webhooks/stripe`, signed
    /// as Stripe signs (`created` defaults to now).
    #[serde(default)]
    stripe: Option<Value>,
    /// What the auditor's `replay as-of` must answer for an organization at
    /// a time or sequence, checked on the log after the scenario.
    #[serde(default)]
    as_of: Option<AsOf>,
    /// What `ledger report --as-of <at>` (revenue analytics computed from
    /// the log up to that day) must print, checked on the log after the
    /// scenario.
    #[serde(default)]
    report: Option<Report>,
    /// `operator` (the default), `auditor`, `none`, or a saved token (`$name`).
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    expect: Option<Expect>,
    /// Saves parts of the answer: `name: dotted.path` (array indexes are
    /// numbers), used later as `$name` (a whole string) or `${name}`.
    #[serde(default)]
    save: BTreeMap<String, String>,
    /// Retries a GET until its expectation holds (for changes the
    /// scheduler makes after a clock move), for up to 10 seconds.
    #[serde(default)]
    wait: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AsOf {
    /// A sequence, an RFC 3339 time or a day, as `replay as-of` takes it.
    at: String,
    org: String,
    /// A pattern its JSON answer must match (as `expect.body`).
    expect: Value,
}

/// An `as_of` step, with its variables substituted, kept for after the run.
/// A `report` step is one without `org`.
struct AsOfCheck {
    step: usize,
    at: String,
    org: Option<String>,
    expect: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    /// A day, `YYYY-MM-DD`.
    at: String,
    /// A pattern its JSON answer must match (as `expect.body`).
    expect: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// The status; without it, any 2xx.
    #[serde(default)]
    status: Option<u16>,
    /// A pattern the JSON answer must match: objects by the keys given,
    /// arrays element by element and whole, numbers by value.
    #[serde(default)]
    body: Option<Value>,
}

/// Where requests go.
enum Target {
    InProcess(axum::Router),
    Http(Box<Server>),
}

impl Target {
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        match self {
            Target::Http(server) => {
                let body = body.map_or(Body::None, Body::Json);
                let reply = server.send(method, path, token, body, headers).await;
                (reply.status.as_u16(), reply.json)
            }
            Target::InProcess(app) => {
                let mut request = axum::http::Request::builder().method(method.as_str()).uri(path);
                if let Some(token) = token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                let body = match body {
                    Some(body) => {
                        request = request.header("content-type", "application/json");
                        AxumBody::from(body.to_string())
                    }
                    None => AxumBody::empty(),
                };
                let response =
                    app.clone().oneshot(request.body(body).expect("a valid request")).await.expect("infallible");
                let status = response.status().as_u16();
                let bytes = response.into_body().collect().await.expect("a body").to_bytes();
                (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            }
        }
    }
}

/// A scenario's run: its variables and the highest log sequence answered
/// so far (queries wait for it).
struct Run<'a> {
    target: &'a Target,
    variables: BTreeMap<String, Value>,
    sequence: u64,
    as_of: Vec<AsOfCheck>,
}

impl Run<'_> {
    fn substitute(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(text) => {
                if let Some(name) =
                    text.strip_prefix('$').filter(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
                {
                    self.variables.get(name).cloned().ok_or_else(|| format!("${name} was not saved"))?
                } else {
                    Value::String(self.substitute_text(text)?)
                }
            }
            Value::Array(items) => Value::Array(items.iter().map(|v| self.substitute(v)).collect::<Result<_, _>>()?),
            Value::Object(map) => Value::Object(
                map.iter().map(|(k, v)| Ok((k.clone(), self.substitute(v)?))).collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    /// Replaces `${name}` and a trailing-delimited `$name` inside text.
    fn substitute_text(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, tail) = match after.strip_prefix('{') {
                Some(braced) => {
                    let end = braced.find('}').ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
                    (&braced[..end], &braced[end + 1..])
                }
                None => {
                    let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            let value = self.variables.get(name).ok_or_else(|| format!("${name} was not saved"))?;
            match value {
                Value::String(s) => out.push_str(s),
                other => out.push_str(&other.to_string()),
            }
            rest = tail;
        }
        out.push_str(rest);
        Ok(out)
    }

    fn token(&self, auth: Option<&str>) -> Result<Option<String>, String> {
        Ok(match auth.unwrap_or("operator") {
            "operator" => Some(OPERATOR.to_owned()),
            "auditor" => Some(AUDITOR.to_owned()),
            "none" => None,
            saved => Some(self.substitute_text(saved)?),
        })
    }

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        let chosen = [
            step.clock.is_some(),
            step.bill.is_some(),
            step.post.is_some(),
            step.get.is_some(),
            step.stripe.is_some(),
            step.as_of.is_some(),
            step.report.is_some(),
        ];
        if chosen.iter().filter(|c| **c).count() != 1 {
            return Err("a step has exactly one of clock, bill, post, get, stripe, as_of, report".into());
        }
        if let Some(report) = &step.report {
            self.as_of.push(AsOfCheck {
                step: 0,
                at: self.substitute_text(&report.at)?,
                org: None,
                expect: self.substitute(&report.expect)?,
            });
            return Ok(());
        }
        if let Some(as_of) = &step.as_of {
            self.as_of.push(AsOfCheck {
                step: 0,
                at: self.substitute_text(&as_of.at)?,
                org: Some(self.substitute_text(&as_of.org)?),
                expect: self.substitute(&as_of.expect)?,
            });
            return Ok(());
        }
        let mut signature = None;
        let (method, path, body) = if let Some(now) = &step.clock {
            (Method::POST, "/api/v1/test-clock".to_owned(), Some(json!({ "now": now })))
        } else if let Some(period) = &step.bill {
            (Method::POST, "/api/v1/billing/runs".to_owned(), Some(json!({ "period": period })))
        } else if let Some(event) = &step.stripe {
            let mut event = self.substitute(event)?;
            if event.get("created").is_none() {
                event["created"] = json!(unix_now());
            }
            signature = Some(stripe_signature(&event.to_string()));
            (Method::POST, "/api/v1/webhooks/stripe".to_owned(), Some(event))
        } else if let Some(path) = &step.post {
            (Method::POST, self.substitute_text(path)?, step.body.as_ref().map(|b| self.substitute(b)).transpose()?)
        } else {
            let path = self.substitute_text(step.get.as_deref().unwrap_or_default())?;
            let separator = if path.contains('?') { '&' } else { '?' };
            (Method::GET, format!("{path}{separator}minSequence={}", self.sequence), None)
        };
        let token = self.token(step.auth.as_deref())?;
        let headers: Vec<(String, String)> = step
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.substitute_text(v)?)))
            .collect::<Result<_, String>>()?;
        let mut headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Some(signature) = &signature {
            headers.push(("stripe-signature", signature));
        }
        let expected_body =
            step.expect.as_ref().and_then(|e| e.body.as_ref()).map(|b| self.substitute(b)).transpose()?;
        let deadline = Instant::now() + Duration::from_secs(if step.wait { 10 } else { 0 });
        let (status, answer) = loop {
            let (status, answer) =
                self.target.send(method.clone(), &path, token.as_deref(), body.clone(), &headers).await;
            let outcome = check(step.expect.as_ref(), expected_body.as_ref(), status, &answer);
            if outcome.is_ok() || Instant::now() >= deadline {
                outcome.map_err(|why| format!("{method} {path}: {why}\nanswer {status}: {answer:#}"))?;
                break (status, answer);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if let Some(sequence) = answer.get("sequence").and_then(Value::as_u64) {
            self.sequence = self.sequence.max(sequence);
        }
        for (name, dotted) in &step.save {
            let value = dotted
                .split('.')
                .try_fold(&answer, |value, key| match key.parse::<usize>() {
                    Ok(index) => value.get(index),
                    Err(_) => value.get(key),
                })
                .ok_or_else(|| format!("the answer ({status}) has no {dotted} to save as {name}: {answer:#}"))?;
            self.variables.insert(name.clone(), value.clone());
        }
        Ok(())
    }
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    i64::try_from(now.as_secs()).expect("seconds fit")
}

/// A `Stripe-Signature` header for `body`, as Stripe computes it:
/// HMAC-SHA256 over `{t}.{body}`, hex (the JSON is sent as these bytes).
fn stripe_signature(body: &str) -> String {
    use hmac::{Hmac, Mac};
    let t = unix_now();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(STRIPE_WEBHOOK_SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    let v1: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={v1}")
}

fn check(expect: Option<&Expect>, body: Option<&Value>, status: u16, answer: &Value) -> Result<(), String> {
    match expect.and_then(|e| e.status) {
        Some(wanted) if wanted != status => return Err(format!("status {status}, expected {wanted}")),
        None if !(200..300).contains(&status) => return Err(format!("status {status}, expected success")),
        _ => {}
    }
    match body {
        Some(pattern) => matches(pattern, answer, "body"),
        None => Ok(()),
    }
}

/// Whether `actual` matches `pattern` (see `Expect::body`).
fn matches(pattern: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (pattern, actual) {
        (Value::Object(wanted), Value::Object(got)) => wanted.iter().try_for_each(|(key, value)| {
            let inner = format!("{at}.{key}");
            matches(value, got.get(key).unwrap_or(&Value::Null), &inner)
        }),
        (Value::Array(wanted), Value::Array(got)) => {
            if wanted.len() != got.len() {
                return Err(format!("{at}: {} items, expected {}", got.len(), wanted.len()));
            }
            wanted.iter().zip(got).enumerate().try_for_each(|(i, (w, g))| matches(w, g, &format!("{at}[{i}]")))
        }
        (Value::Number(wanted), Value::Number(got)) => {
            let value = |n: &serde_json::Number| Decimal::from_str(&n.to_string()).ok();
            (value(wanted) == value(got)).then_some(()).ok_or_else(|| format!("{at}: {got}, expected {wanted}"))
        }
        _ => (pattern == actual).then_some(()).ok_or_else(|| format!("{at}: {actual}, expected {pattern}")),
    }
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the scenarios directory holds the scenario files");
    files
}

fn load(path: &Path) -> Scenario {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs one scenario's steps; the first failure names the file and step.
/// Returns the `as_of` checks, for after the run.
async fn play(path: &Path, target: &Target) -> Result<Vec<AsOfCheck>, String> {
    let scenario = load(path);
    let mut run = Run { target, variables: BTreeMap::new(), sequence: 0, as_of: Vec::new() };
    for (index, step) in scenario.steps.iter().enumerate() {
        let checks = run.as_of.len();
        run.step(step).await.map_err(|why| {
            format!(
                "{} ({}), step {} {}:\n{why}",
                path.file_name().unwrap().to_string_lossy(),
                scenario.name,
                index + 1,
                step.note.as_deref().map(|n| format!("({n})")).unwrap_or_default(),
            )
        })?;
        run.as_of.iter_mut().skip(checks).for_each(|check| check.step = index + 1);
    }
    let _ = scenario.rules;
    Ok(run.as_of)
}

/// The auditor's `replay` binary, built beside `ledger` by `cargo test
/// --workspace`; `None` (with one notice per test binary) when it was not
/// built.
fn replay_binary() -> Option<PathBuf> {
    static REPLAY: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    REPLAY
        .get_or_init(|| {
            let path = Path::new(env!("CARGO_BIN_EXE_ledger")).with_file_name("replay");
            if path.exists() {
                return Some(path);
            }
            let why = format!("the scenarios' as_of checks need {}", path.display());
            store::testing::skip("scenarios::as_of", store::testing::Peer::Replay, &why);
            None
        })
        .clone()
}

/// Runs each `as_of` check with `replay as-of` on the log, and each
/// `report` check with `ledger report --as-of` and the auditor's `replay
/// as-of --revenue` (`source`: `--data-dir DIR` or `--database-url URL`):
/// each must match the hand-computed figures.
fn check_as_of(checks: &[AsOfCheck], source: &[String]) -> Result<(), String> {
    for check in checks {
        let mut commands = Vec::new();
        if check.org.is_none() {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ledger"));
            command.args(["report", "--as-of", &check.at]);
            commands.push(command);
        }
        if let Some(replay) = replay_binary() {
            let mut command = std::process::Command::new(replay);
            match &check.org {
                Some(org) => command.args(["as-of", &check.at, "--org", org]),
                None => command.args(["as-of", &check.at, "--revenue"]),
            };
            commands.push(command);
        }
        for mut command in commands {
            let output = command.args(source).env_remove("DATABASE_URL").output().map_err(|e| format!("{e}"))?;
            let answer: Value = serde_json::from_slice(&output.stdout).map_err(|_| {
                format!(
                    "step {} (as_of {}): {:?} answered {}:\n{}{}",
                    check.step,
                    check.at,
                    command.get_program(),
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
            matches(&check.expect, &answer, "as_of").map_err(|why| {
                format!(
                    "step {} (as_of {}, {:?}): {why}\nanswer: {answer:#}",
                    check.step,
                    check.at,
                    command.get_program()
                )
            })?;
        }
    }
    Ok(())
}

/// The replay property: every issued invoice is recomputed from the
/// events before it and matches byte for byte. Returns how many there were.
async fn replay_invoices(log: &EventLog) -> Result<u64, String> {
    let head = log.head().await.map_err(|e| e.to_string())?.sequence;
    let mut check = InvoiceCheck::new(Catalog::builtin());
    let mut issued = 0;
    let mut records = std::pin::pin!(log.read(1..=head));
    while let Some(record) = records.next().await {
        let record = record.map_err(|e| e.to_string())?;
        let Some(payload) = record.payload.as_deref() else { continue };
        let Some(event) = LedgerEvent::decode(&record.header, payload).map_err(|e| e.to_string())? else { continue };
        issued += u64::from(matches!(event, LedgerEvent::Invoice(_)));
        check.apply(&record.header, &event).map_err(|e| e.to_string())?;
    }
    if check.checked() != issued {
        return Err(format!("{issued} invoices issued, {} recomputed", check.checked()));
    }
    Ok(issued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_in_process() {
    let mut failures = Vec::new();
    let mut invoices = 0;
    for path in scenario_files() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let state = ledger_api::open(&ledger_api::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            database_url: None,
            clock: format!("manual:{CLOCK_START}"),
            operator_token: Some(OPERATOR.into()),
            auditor_token: Some(AUDITOR.into()),
            policy: Default::default(),
            validations_per_address_per_minute: 0,
            notifications: None,
            usage: Default::default(),
        })
        .await
        .expect("the server state opens");
        let mut state = state;
        state.stripe = ledger_api::stripe::Stripe::new(ledger_api::stripe::Settings {
            secret_key: None,
            webhook_secrets: vec![ledger_api::stripe::signature::WebhookSecret::new(STRIPE_WEBHOOK_SECRET)],
            ..Default::default()
        })
        .expect("webhook-only Stripe settings");
        let scheduler = tokio::spawn(usecases::scheduler::run(state.ledger.clone()));
        let reactor = tokio::spawn(ledger_api::stripe::reactor::run(state.clone()));
        let app =
            ledger_api::app(state.clone()).layer(MockConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 9))));
        let outcome = play(&path, &Target::InProcess(app)).await;
        scheduler.abort();
        reactor.abort();
        let source = ["--data-dir".to_owned(), dir.path().display().to_string()];
        match outcome {
            Ok(checks) => match replay_invoices(&state.log).await {
                Ok(count) => {
                    invoices += count;
                    if let Err(why) = check_as_of(&checks, &source) {
                        failures.push(format!("{}: {why}", path.display()));
                    }
                }
                Err(why) => failures.push(format!("{}: replay: {why}", path.display())),
            },
            Err(why) => failures.push(why),
        }
    }
    assert!(failures.is_empty(), "{} scenario(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
    assert!(invoices > 0, "the scenarios issue invoices, and each was recomputed");
}

async fn every_scenario_over_http(backend_for: impl AsyncFn(&str) -> Option<Backend>) {
    let mut failures = Vec::new();
    for path in scenario_files() {
        let name = path.file_stem().unwrap().to_string_lossy().replace('-', "_");
        let Some(backend) = backend_for(&name).await else { return };
        let server = backend.start_with_env(&[], &[("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET)]).await;
        let target = Target::Http(Box::new(server));
        let outcome = play(&path, &target).await;
        drop(target);
        let source = match backend.database_url() {
            Some(url) => ["--database-url".to_owned(), url.to_owned()],
            None => ["--data-dir".to_owned(), backend.data_dir().display().to_string()],
        };
        let outcome = match outcome {
            Ok(checks) => match replay_invoices(&backend.open_log().await).await {
                Ok(_) => check_as_of(&checks, &source),
                Err(why) => Err(why),
            },
            Err(why) => Err(why),
        };
        if let Err(why) = outcome {
            failures.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{} scenario(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_over_http_on_sqlite() {
    every_scenario_over_http(async |_| Some(Backend::sqlite().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_over_http_on_postgres() {
    every_scenario_over_http(async |name| Backend::postgres(&format!("scenarios::{name}")).await).await;
}
