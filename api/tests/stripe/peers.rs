//! The real peers of the Stripe tests, and a stand-in for what they lack.
//!
//! - Stripe's own Node library (`stripe` on npm) signs webhook bodies
//!   (`stripe.webhooks.generateTestHeaderString`), so the server is checked
//!   against Stripe's scheme, not against our reading of it.
//! - `localstripe` (PyPI) answers customers (creating and reading them).
//! - A stand-in answers what localstripe does not support (invoices that
//!   take `collection_method`/`auto_advance`, invoice items on a given
//!   invoice, finalization, Checkout sessions, the SetupIntents Checkout
//!   makes and the customer's default payment method) with Stripe's published
//!   example objects (`tests/fixtures/stripe/fixtures3.json`), the ids and
//!   fields of the request filled in, and records every call (idempotency
//!   key, form fields) for the tests to read; it can also fail on purpose,
//!   as Stripe does in an outage.
//!
//! `cargo xtask test` installs the peers into `target/peers/` (or `$LEDGER_PEERS`).
//! Without them a test prints a notice and skips, unless `CI` is set,
//! where a missing peer is a failure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// How long localstripe (a Python process) may take to answer after it
/// starts: in a full CI run, with other suites starting their own at the
/// same time on two cores, 10 s was not enough (stripe_ops, 2026-12-01).
const LOCALSTRIPE_START_MAX: Duration = Duration::from_secs(60);

/// Stripe's published example objects (MIT; see the README beside them).
const FIXTURES: &str = "tests/fixtures/stripe/fixtures3.json";

/// Where `cargo xtask test` installs the peers.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("LEDGER_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/peers"))
}

/// `None` (after a skip notice) when a peer is missing outside CI; a failure in CI.
fn missing(peer: store::testing::Peer, test: &str) -> Option<std::convert::Infallible> {
    let why = format!("{} is not installed in {}", peer.name(), peers_dir().display());
    store::testing::skip(test, peer, &why);
    None
}

/// Stripe's own Node library, for signing webhook bodies.
#[derive(Clone)]
pub struct Signer {
    dir: PathBuf,
}

impl Signer {
    pub fn find(test: &str) -> Option<Self> {
        let dir = peers_dir().join("node");
        if dir.join("node_modules/stripe/package.json").is_file() {
            Some(Self { dir })
        } else {
            missing(store::testing::Peer::StripeNode, test).map(|never| match never {})
        }
    }

    /// The `Stripe-Signature` header Stripe's library makes for `payload`
    /// under `secret` at `timestamp` (Unix seconds).
    pub async fn header(&self, payload: &str, secret: &str, timestamp: i64) -> String {
        const SCRIPT: &str = r#"
            const stripe = require("stripe")("sk_test_signing_only");
            let payload = "";
            process.stdin.setEncoding("utf8");
            process.stdin.on("data", (chunk) => (payload += chunk));
            process.stdin.on("end", () => {
                const [secret, timestamp] = process.argv.slice(1);
                process.stdout.write(
                    stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp: Number(timestamp) }),
                );
            });
        "#;
        let mut child = Command::new("node")
            .current_dir(&self.dir)
            .args(["-e", SCRIPT, secret, &timestamp.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(payload.as_bytes()).await.unwrap();
        drop(stdin);
        let output = child.wait_with_output().await.unwrap();
        assert!(output.status.success(), "node failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }
}

/// The system clock in Unix seconds (signatures are checked against it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A free local port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `localstripe`, stopped when dropped.
pub struct LocalStripe {
    _child: Child,
    pub base: String,
}

impl LocalStripe {
    pub async fn start(test: &str) -> Option<Self> {
        let program = peers_dir().join("localstripe/bin/localstripe");
        if !program.is_file() {
            return missing(store::testing::Peer::LocalStripe, test).map(|never| match never {});
        }
        let port = free_port();
        let child = Command::new(program)
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("localstripe starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + LOCALSTRIPE_START_MAX;
        while std::time::Instant::now() < deadline {
            let answer = http.get(format!("{base}/v1/customers")).bearer_auth("sk_test_ledger").send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return Some(Self { _child: child, base });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("localstripe did not answer on port {port} within {LOCALSTRIPE_START_MAX:?}");
    }
}

/// One call the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method and path, e.g. `POST /v1/invoices`.
    pub path: String,
    pub idempotency_key: Option<String>,
    pub form: Vec<(String, String)>,
    pub status: u16,
}

impl Call {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct StandInState {
    localstripe: String,
    fixtures: Value,
    calls: Mutex<Vec<Call>>,
    /// Answers already given per idempotency key (Stripe replays them).
    replies: Mutex<HashMap<String, Value>>,
    next_id: AtomicUsize,
    /// Requests (other than proxied ones) to fail with a 500, as in an outage.
    fail_next: AtomicUsize,
    /// Invoice items per stand-in invoice.
    items: Mutex<HashMap<String, Vec<Value>>>,
    /// Idempotency keys of requests in progress: Stripe answers 409 to a
    /// second request with a key still in use.
    in_flight: Mutex<std::collections::HashSet<String>>,
    /// How long each request takes, in milliseconds (a slow Stripe).
    delay_ms: std::sync::atomic::AtomicU64,
    /// Requests to a path ("POST /v1/invoices") to answer 409 at once.
    conflicts: Mutex<HashMap<String, usize>>,
    /// The stand-in's own base URL (its customer-portal pages are on it).
    base: std::sync::OnceLock<String>,
    /// Customer-portal sessions by id.
    portal_sessions: Mutex<HashMap<String, Value>>,
    /// Every stand-in invoice as it stands now, by id (what the invoice
    /// search answers from).
    invoices: Mutex<std::collections::BTreeMap<String, Value>>,
    /// Requests to a path ("POST /v1/invoices") to refuse with a 400, as
    /// Stripe refuses a request it will never accept, with the message.
    refusals: Mutex<HashMap<String, (usize, String)>>,
}

/// A Stripe-compatible stand-in on a local port.
#[derive(Clone)]
pub struct StandIn {
    state: Arc<StandInState>,
    pub base: String,
}

impl StandIn {
    pub async fn start(localstripe: &LocalStripe) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(FIXTURES);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let fixtures: Value = serde_json::from_str(&text).unwrap();
        let state = Arc::new(StandInState {
            localstripe: localstripe.base.clone(),
            fixtures: fixtures["resources"].clone(),
            ..StandInState::default()
        });
        let app = axum::Router::new()
            .route("/v1/customers", post(proxy))
            .route("/v1/customers/{id}", get(proxy).post(update_customer))
            .route("/v1/setup_intents/{id}", get(retrieve_setup_intent))
            .route("/v1/invoices", post(create_invoice))
            .route("/v1/invoices/search", get(search_invoices))
            .route("/v1/invoices/{id}/finalize", post(finalize_invoice))
            .route("/v1/invoices/{id}/void", post(void_invoice))
            .route("/v1/credit_notes", post(create_credit_note))
            .route("/v1/invoiceitems", post(create_invoice_item))
            .route("/v1/checkout/sessions", post(create_session))
            .route("/v1/billing_portal/sessions", post(create_portal_session))
            .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency_in_use))
            .route("/p/session/{id}", get(portal_page))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        state.base.set(format!("http://{address}/")).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        // The trailing slash: STRIPE_API_BASE must end in '/'.
        Self { state, base: format!("http://{address}/") }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Fails the next `n` stand-in requests with Stripe's 500 answer.
    pub fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Makes every request take `delay` (so concurrent ones overlap).
    #[allow(dead_code)] // each test binary uses a different part of it
    pub fn slow(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Refuses the next `n` requests to `path` ("POST /v1/invoices") with
    /// Stripe's 400 `invalid_request_error` and `message`.
    #[allow(dead_code)]
    pub fn refuse_next(&self, path: &str, n: usize, message: &str) {
        self.state.refusals.lock().unwrap().insert(path.to_owned(), (n, message.to_owned()));
    }

    /// Every stand-in invoice as it stands now.
    #[allow(dead_code)]
    pub fn invoices(&self) -> Vec<Value> {
        self.state.invoices.lock().unwrap().values().cloned().collect()
    }

    /// Changes a stand-in invoice in place (a difference planted for a
    /// reconciliation to find).
    #[allow(dead_code)]
    pub fn plant(&self, id: &str, change: impl FnOnce(&mut Value)) {
        change(self.state.invoices.lock().unwrap().get_mut(id).unwrap_or_else(|| panic!("no invoice {id}")));
    }

    /// Removes a stand-in invoice, as if it had never been made.
    #[allow(dead_code)]
    pub fn delete_invoice(&self, id: &str) {
        self.state.invoices.lock().unwrap().remove(id).unwrap_or_else(|| panic!("no invoice {id}"));
    }

    /// Adds an invoice the ledger never made (metadata as given).
    #[allow(dead_code)]
    pub fn add_invoice(&self, customer: &str, total: i64, metadata: Value) -> String {
        let mut invoice = self.state.fixtures["invoice"].clone();
        let id = self.state.new_id("in");
        invoice["id"] = json!(id);
        invoice["customer"] = json!(customer);
        invoice["metadata"] = metadata;
        invoice["status"] = json!("open");
        invoice["total"] = json!(total);
        invoice["amount_due"] = json!(total);
        invoice["pre_payment_credit_notes_amount"] = json!(0);
        invoice["post_payment_credit_notes_amount"] = json!(0);
        invoice["lines"]["data"] = json!([]);
        self.state.invoices.lock().unwrap().insert(id.clone(), invoice);
        id
    }

    /// Answers the next `n` requests to `path` ("POST /v1/invoices") with
    /// Stripe's 409 `idempotency_key_in_use`.
    #[allow(dead_code)]
    pub fn conflict_next(&self, path: &str, n: usize) {
        self.state.conflicts.lock().unwrap().insert(path.to_owned(), n);
    }
}

/// Stripe's answer to a request whose idempotency key another request is
/// still using (and, on purpose, to `conflict_next`): 409, recorded.
async fn idempotency_in_use(
    State(state): State<Arc<StandInState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = format!("{} {}", request.method(), request.uri().path());
    let key = request.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let forced =
        state.conflicts.lock().unwrap().get_mut(&path).is_some_and(|n| n.checked_sub(1).map(|m| *n = m).is_some());
    let refusal = state.refusals.lock().unwrap().get_mut(&path).and_then(|(n, message)| {
        n.checked_sub(1).map(|m| {
            *n = m;
            message.clone()
        })
    });
    if let Some(message) = refusal {
        let (method, path) = path.split_once(' ').unwrap();
        state.record(method, path, request.headers(), Vec::new(), 400);
        let body = json!({ "error": { "type": "invalid_request_error", "message": message } });
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let busy = forced || key.as_ref().is_some_and(|key| !state.in_flight.lock().unwrap().insert(key.clone()));
    if busy {
        let (method, path) = path.split_once(' ').unwrap();
        state.record(method, path, request.headers(), Vec::new(), 409);
        let body = json!({ "error": { "type": "invalid_request_error", "code": "idempotency_key_in_use",
            "message": "There is currently another in-progress request using this Stripe API key and idempotency key." } });
        return (StatusCode::CONFLICT, axum::Json(body)).into_response();
    }
    // Released however the request ends: answered, or dropped because the
    // client's connection was cut (Stripe frees the key then too).
    let _in_flight = InFlight { state: state.clone(), key };
    tokio::time::sleep(Duration::from_millis(state.delay_ms.load(Ordering::SeqCst))).await;
    next.run(request).await
}

/// An idempotency key in use until dropped.
struct InFlight {
    state: Arc<StandInState>,
    key: Option<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.state.in_flight.lock().unwrap().remove(key);
        }
    }
}

/// A fixture object, read without a stand-in.
pub fn fixture(kind: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(FIXTURES);
    let fixtures: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fixtures["resources"][kind].clone()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn form_metadata(form: &[(String, String)]) -> Value {
    let mut metadata = serde_json::Map::new();
    for (key, value) in form {
        if let Some(name) = key.strip_prefix("metadata[").and_then(|k| k.strip_suffix(']')) {
            metadata.insert(name.to_owned(), json!(value));
        }
    }
    Value::Object(metadata)
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl StandInState {
    fn record(&self, method: &str, path: &str, headers: &HeaderMap, form: Vec<(String, String)>, status: u16) {
        let idempotency_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let path = format!("{method} {path}");
        self.calls.lock().unwrap().push(Call { path, idempotency_key, form, status });
    }

    /// A Stripe 500 when failing on purpose.
    fn outage(&self) -> Option<Response> {
        let failing = self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        failing.then(|| {
            let body = json!({ "error": { "type": "api_error", "message": "stand-in outage" } });
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
        })
    }

    /// Replays the answer to a known idempotency key, or makes and keeps one.
    fn idempotent(&self, headers: &HeaderMap, make: impl FnOnce() -> Value) -> Value {
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(key) = &key
            && let Some(reply) = self.replies.lock().unwrap().get(key)
        {
            return reply.clone();
        }
        let reply = make();
        if let Some(key) = key {
            self.replies.lock().unwrap().insert(key, reply.clone());
        }
        reply
    }

    fn new_id(&self, prefix: &str) -> String {
        format!("{prefix}_standin{}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }
}

async fn proxy(
    State(state): State<Arc<StandInState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let http = reqwest::Client::new();
    let mut request = http.request(method.clone(), format!("{}{}", state.localstripe, uri.path()));
    if let Some(auth) = headers.get("authorization") {
        request = request.header("authorization", auth.to_str().unwrap());
    }
    if !body.is_empty() {
        request = request.header("content-type", "application/x-www-form-urlencoded").body(body.clone());
    }
    let answer = request.send().await.expect("localstripe answers");
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    state.record(method.as_str(), uri.path(), &headers, parse_form(&body), status);
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], text).into_response()
}

async fn create_invoice(State(state): State<Arc<StandInState>>, headers: HeaderMap, body: String) -> Response {
    let form = parse_form(&body);
    if let Some(outage) = state.outage() {
        state.record("POST", "/v1/invoices", &headers, form, 500);
        return outage;
    }
    let invoice = state.idempotent(&headers, || {
        let mut invoice = state.fixtures["invoice"].clone();
        invoice["id"] = json!(state.new_id("in"));
        invoice["customer"] = json!(field(&form, "customer"));
        invoice["metadata"] = form_metadata(&form);
        invoice["status"] = json!("draft");
        invoice["auto_advance"] = json!(field(&form, "auto_advance") == Some("true"));
        invoice["lines"]["data"] = json!([]);
        invoice["total"] = json!(0);
        invoice["pre_payment_credit_notes_amount"] = json!(0);
        invoice["post_payment_credit_notes_amount"] = json!(0);
        let id = invoice["id"].as_str().unwrap().to_owned();
        state.invoices.lock().unwrap().insert(id, invoice.clone());
        invoice
    });
    state.record("POST", "/v1/invoices", &headers, form, 200);
    axum::Json(invoice).into_response()
}

async fn create_invoice_item(State(state): State<Arc<StandInState>>, headers: HeaderMap, body: String) -> Response {
    let form = parse_form(&body);
    if let Some(outage) = state.outage() {
        state.record("POST", "/v1/invoiceitems", &headers, form, 500);
        return outage;
    }
    let item = state.idempotent(&headers, || {
        let mut item = state.fixtures["invoiceitem"].clone();
        item["id"] = json!(state.new_id("ii"));
        item["customer"] = json!(field(&form, "customer"));
        item["invoice"] = json!(field(&form, "invoice"));
        item["amount"] = json!(field(&form, "amount").and_then(|a| a.parse::<i64>().ok()));
        item["description"] = json!(field(&form, "description"));
        item["metadata"] = form_metadata(&form);
        let invoice = field(&form, "invoice").unwrap_or_default().to_owned();
        state.items.lock().unwrap().entry(invoice).or_default().push(item.clone());
        item
    });
    state.record("POST", "/v1/invoiceitems", &headers, form, 200);
    axum::Json(item).into_response()
}

async fn finalize_invoice(
    State(state): State<Arc<StandInState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = parse_form(&body);
    let path = format!("/v1/invoices/{id}/finalize");
    if let Some(outage) = state.outage() {
        state.record("POST", &path, &headers, form, 500);
        return outage;
    }
    let invoice = state.idempotent(&headers, || {
        let mut invoice = state.fixtures["invoice"].clone();
        invoice["id"] = json!(id);
        invoice["status"] = json!("open");
        let items = state.items.lock().unwrap().get(&id).cloned().unwrap_or_default();
        let total: i64 = items.iter().filter_map(|i| i["amount"].as_i64()).sum();
        invoice["amount_due"] = json!(total);
        invoice["total"] = json!(total);
        invoice["lines"]["data"] = json!([]);
        if let Some(stored) = state.invoices.lock().unwrap().get_mut(&id) {
            for field in ["status", "amount_due", "total"] {
                stored[field] = invoice[field].clone();
            }
            invoice = stored.clone();
        }
        invoice
    });
    state.record("POST", &path, &headers, form, 200);
    axum::Json(invoice).into_response()
}

async fn create_session(State(state): State<Arc<StandInState>>, headers: HeaderMap, body: String) -> Response {
    let form = parse_form(&body);
    if let Some(outage) = state.outage() {
        state.record("POST", "/v1/checkout/sessions", &headers, form, 500);
        return outage;
    }
    let session = state.idempotent(&headers, || {
        let mut session = state.fixtures["checkout.session"].clone();
        let id = state.new_id("cs_test");
        session["url"] = json!(format!("https://checkout.stripe.com/c/pay/{id}"));
        session["id"] = json!(id);
        session["mode"] = json!(field(&form, "mode"));
        session["customer"] = json!(field(&form, "customer"));
        session["success_url"] = json!(field(&form, "success_url"));
        session["cancel_url"] = json!(field(&form, "cancel_url"));
        session["metadata"] = form_metadata(&form);
        session["status"] = json!("open");
        session
    });
    state.record("POST", "/v1/checkout/sessions", &headers, form, 200);
    axum::Json(session).into_response()
}

/// A customer-portal session (Stripe's `billing_portal.session`), whose
/// URL is a page of the stand-in's own naming the customer.
async fn create_portal_session(State(state): State<Arc<StandInState>>, headers: HeaderMap, body: String) -> Response {
    let form = parse_form(&body);
    if let Some(outage) = state.outage() {
        state.record("POST", "/v1/billing_portal/sessions", &headers, form, 500);
        return outage;
    }
    let mut session = state.fixtures["billing_portal.session"].clone();
    let id = state.new_id("bps_test");
    session["id"] = json!(id);
    session["customer"] = json!(field(&form, "customer"));
    session["return_url"] = json!(field(&form, "return_url"));
    session["flow"] = Value::Null;
    session["configuration"] = json!("bpc_standin");
    session["livemode"] = json!(false);
    session["url"] = json!(format!("{}p/session/{id}", state.base.get().unwrap()));
    state.portal_sessions.lock().unwrap().insert(id, session.clone());
    state.record("POST", "/v1/billing_portal/sessions", &headers, form, 200);
    axum::Json(session).into_response()
}

/// The stand-in's customer portal: the session's customer and the way back.
async fn portal_page(State(state): State<Arc<StandInState>>, Path(id): Path<String>) -> Response {
    let Some(session) = state.portal_sessions.lock().unwrap().get(&id).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let customer = session["customer"].as_str().unwrap_or_default();
    let back = session["return_url"].as_str().unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><title>Stand-in customer portal</title></head><body>\
         <h1 id=\"customer\">{customer}</h1><a id=\"return\" href=\"{back}\">Return</a></body></html>"
    );
    ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn retrieve_setup_intent(
    State(state): State<Arc<StandInState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/setup_intents/{id}");
    if let Some(outage) = state.outage() {
        state.record("GET", &path, &headers, Vec::new(), 500);
        return outage;
    }
    let mut intent = state.fixtures["setup_intent"].clone();
    intent["id"] = json!(id);
    intent["status"] = json!("succeeded");
    intent["payment_method"] = json!(format!("pm_card_for_{id}"));
    state.record("GET", &path, &headers, Vec::new(), 200);
    axum::Json(intent).into_response()
}

async fn update_customer(
    State(state): State<Arc<StandInState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = parse_form(&body);
    let path = format!("/v1/customers/{id}");
    if let Some(outage) = state.outage() {
        state.record("POST", &path, &headers, form, 500);
        return outage;
    }
    let customer = state.idempotent(&headers, || {
        let mut customer = state.fixtures["customer"].clone();
        customer["id"] = json!(id);
        customer["invoice_settings"]["default_payment_method"] =
            json!(field(&form, "invoice_settings[default_payment_method]"));
        customer
    });
    state.record("POST", &path, &headers, form, 200);
    axum::Json(customer).into_response()
}

/// Voids a stand-in invoice (Stripe's `POST /v1/invoices/{id}/void`).
async fn void_invoice(
    State(state): State<Arc<StandInState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = parse_form(&body);
    let path = format!("/v1/invoices/{id}/void");
    if let Some(outage) = state.outage() {
        state.record("POST", &path, &headers, form, 500);
        return outage;
    }
    let invoice = state.idempotent(&headers, || {
        let mut invoice = state.fixtures["invoice"].clone();
        invoice["id"] = json!(id);
        invoice["status"] = json!("void");
        invoice["amount_due"] = json!(0);
        invoice["lines"]["data"] = json!([]);
        if let Some(stored) = state.invoices.lock().unwrap().get_mut(&id) {
            stored["status"] = json!("void");
            stored["amount_due"] = json!(0);
            invoice = stored.clone();
        }
        invoice
    });
    state.record("POST", &path, &headers, form, 200);
    axum::Json(invoice).into_response()
}

/// A credit note on a stand-in invoice (Stripe's `POST /v1/credit_notes`):
/// its amount the sum of its custom lines.
async fn create_credit_note(State(state): State<Arc<StandInState>>, headers: HeaderMap, body: String) -> Response {
    let form = parse_form(&body);
    if let Some(outage) = state.outage() {
        state.record("POST", "/v1/credit_notes", &headers, form, 500);
        return outage;
    }
    let note = state.idempotent(&headers, || {
        let mut note = state.fixtures["credit_note"].clone();
        note["id"] = json!(state.new_id("cn"));
        note["invoice"] = json!(field(&form, "invoice"));
        note["memo"] = json!(field(&form, "memo"));
        note["metadata"] = form_metadata(&form);
        let amounts = form.iter().filter(|(k, _)| k.starts_with("lines[") && k.ends_with("[unit_amount]"));
        let total: i64 = amounts.filter_map(|(_, v)| v.parse::<i64>().ok()).sum();
        note["amount"] = json!(total);
        note["total"] = json!(total);
        let invoice = field(&form, "invoice").unwrap_or_default();
        if let Some(stored) = state.invoices.lock().unwrap().get_mut(invoice) {
            let credited = stored["post_payment_credit_notes_amount"].as_i64().unwrap_or(0) + total;
            stored["post_payment_credit_notes_amount"] = json!(credited);
        }
        note["lines"]["data"] = json!([]);
        note
    });
    state.record("POST", "/v1/credit_notes", &headers, form, 200);
    axum::Json(note).into_response()
}

/// Stripe's invoice search (`GET /v1/invoices/search`), for the one query
/// the ledger makes: `metadata['KEY']:'VALUE'`, a page of `limit` at a
/// time, `page` the offset of the next (Stripe's token is opaque).
async fn search_invoices(
    State(state): State<Arc<StandInState>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let form: Vec<(String, String)> = query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(outage) = state.outage() {
        state.record("GET", "/v1/invoices/search", &headers, form, 500);
        return outage;
    }
    let text = query.get("query").cloned().unwrap_or_default();
    let parsed = text
        .strip_prefix("metadata['")
        .and_then(|rest| rest.split_once("']:'"))
        .and_then(|(key, value)| value.strip_suffix('\'').map(|value| (key.to_owned(), value.to_owned())));
    let Some((key, value)) = parsed else {
        state.record("GET", "/v1/invoices/search", &headers, form, 400);
        let body = json!({ "error": { "type": "invalid_request_error", "message": format!("stand-in cannot search {text:?}") } });
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
    let offset: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let matching: Vec<Value> = state
        .invoices
        .lock()
        .unwrap()
        .values()
        .filter(|invoice| invoice["metadata"][key.as_str()].as_str() == Some(value.as_str()))
        .cloned()
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).cloned().collect();
    let has_more = offset + page.len() < matching.len();
    state.record("GET", "/v1/invoices/search", &headers, form, 200);
    axum::Json(json!({
        "object": "search_result",
        "url": "/v1/invoices/search",
        "has_more": has_more,
        "data": page,
        "next_page": if has_more { json!((offset + page.len()).to_string()) } else { Value::Null },
        "total_count": null,
    }))
    .into_response()
}
