//! The vendor's console (issue 15) in a real browser: chromium over
//! WebDriver (the shared harness, `tests/browser/mod.rs`), axe-core on
//! every page, the real `ledger` binary and the real OpenID Connect issuer
//! (`tests/oidc/`). A staff admin signs in through the issuer; a billing,
//! a support and an auditor user by `ledger staff login-link`. Each role's
//! pages load and pass axe, the links and forms it may not use are absent,
//! and forged requests are refused. The analytics page for a past day of a
//! revenue scenario's book (`scenarios/revenue-a-small-book.yaml`) shows
//! the scenario's hand-computed figures, equal to `ledger report --as-of`
//! for that day, and its CSV is the report's CSV. Screenshots go to
//! docs/console/ (the SQLite run's only).
#![allow(clippy::too_many_lines)]

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;
#[allow(dead_code)]
mod browser;
#[allow(dead_code)]
mod oidc;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use browser::{Browser, Front, http};
use common::{Backend, Body, OPERATOR, Server};
use fantoccini::Locator;
use reqwest::Method;
use serde_json::{Value, json};

backends!(staff_use_the_console_in_a_browser_each_role_its_pages_and_the_analytics_of_a_past_day);

/// The analytics page's figures: its cell ids and the report's JSON keys.
const FIGURES: [(&str, &str); 14] = [
    ("mrr", "mrr"),
    ("arr", "arr"),
    ("mrr-at-start", "mrrAtStart"),
    ("new-mrr", "newMrr"),
    ("expansion-mrr", "expansionMrr"),
    ("contraction-mrr", "contractionMrr"),
    ("churned-mrr", "churnedMrr"),
    ("organizations-at-start", "organizationsAtStart"),
    ("organizations-churned", "organizationsChurned"),
    ("logo-churn", "logoChurn"),
    ("revenue-churn", "revenueChurn"),
    ("net-revenue-retention", "netRevenueRetention"),
    ("active-organizations", "activeOrganizations"),
    ("arpa", "arpa"),
];

/// A revenue scenario's book, played over HTTP: its organizations,
/// subscriptions, usage, clock moves and billing runs (its `get` checks
/// are the scenario suite's). Returns its `report` steps (day, the
/// hand-computed figures) and the last log sequence answered.
async fn play_book(s: &Server, file: &str) -> (Vec<(String, Value)>, u64) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(file);
    let scenario: Value = yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut saved: BTreeMap<String, Value> = BTreeMap::new();
    let (mut reports, mut sequence) = (Vec::new(), 0);
    for step in scenario["steps"].as_array().unwrap() {
        let (path, body) = if let Some(now) = step.get("clock") {
            ("/api/v1/test-clock".to_owned(), json!({ "now": now }))
        } else if let Some(period) = step.get("bill") {
            ("/api/v1/billing/runs".to_owned(), json!({ "period": period }))
        } else if let Some(path) = step.get("post").and_then(Value::as_str) {
            (substitute_text(path, &saved), substitute(step.get("body").unwrap_or(&Value::Null), &saved))
        } else if let Some(report) = step.get("report") {
            reports.push((report["at"].as_str().unwrap().to_owned(), report["expect"].clone()));
            continue;
        } else {
            assert!(step.get("get").is_some(), "{file}: a step this test does not play: {step}");
            continue;
        };
        let token = (step.get("auth").and_then(Value::as_str) != Some("none")).then_some(OPERATOR);
        let body = if body.is_null() { Body::None } else { Body::Json(body) };
        let reply = s.send(Method::POST, &path, token, body, &[]).await;
        assert!(reply.status.is_success(), "{file}: POST {path}: {}", reply.text);
        sequence = reply.json.get("sequence").and_then(Value::as_u64).unwrap_or(sequence).max(sequence);
        for (name, key) in step.get("save").and_then(Value::as_object).into_iter().flatten() {
            let value = reply.json.get(key.as_str().unwrap()).unwrap_or_else(|| panic!("{file}: {key} to save"));
            saved.insert(name.clone(), value.clone());
        }
    }
    (reports, sequence)
}

/// `$name` values in a request body (the book's bodies use whole ones).
fn substitute(value: &Value, saved: &BTreeMap<String, Value>) -> Value {
    match value {
        Value::String(text) => match text.strip_prefix('$') {
            Some(name) => saved.get(name).cloned().unwrap_or_else(|| panic!("${name} was not saved")),
            None => value.clone(),
        },
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), substitute(v, saved))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, saved)).collect()),
        other => other.clone(),
    }
}

/// `$name` segments in a path.
fn substitute_text(path: &str, saved: &BTreeMap<String, Value>) -> String {
    path.split('/')
        .map(|segment| match segment.strip_prefix('$') {
            Some(name) => saved[name].as_str().unwrap().to_owned(),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// What `ledger report --as-of` prints for a day, as JSON or CSV.
async fn report(backend: &Backend, day: &str, format: &str) -> String {
    let output = backend.cli(&["report", "--as-of", day, "--format", format]).await;
    assert!(output.status.success(), "report --as-of {day}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The figures the analytics page shows, by the report's JSON keys (a
/// ratio without denominator shows "none", the report's `null`).
async fn shown_figures(b: &Browser) -> BTreeMap<String, Value> {
    let mut shown = BTreeMap::new();
    for (id, key) in FIGURES {
        let text = b.text(&format!("#{id}")).await;
        let value = if text == "none" {
            Value::Null
        } else if let Ok(count) = text.parse::<u64>() {
            json!(count)
        } else {
            Value::String(text)
        };
        shown.insert(key.to_owned(), value);
    }
    shown
}

/// Sets the "as of" form's date and submits it.
async fn show_as_of(b: &Browser, day: &str) {
    let field = b.find("#as-of").await;
    b.client
        .execute("arguments[0].value = arguments[1];", vec![serde_json::to_value(&field).unwrap(), json!(day)])
        .await
        .unwrap();
    b.click("#show").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let url = b.client.current_url().await.unwrap();
        if url.query() == Some(&format!("as_of={day}")) && b.client.find(Locator::Css("#period")).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "the form did not ask for {day}: {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the first `name="csrf"` field of the current page.
async fn csrf_field(b: &Browser) -> String {
    let source = b.client.source().await.unwrap();
    let start = source.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    source[start..].split('"').next().unwrap().to_owned()
}

/// A request with the browser's console session, as a forger with the
/// session's cookie and CSRF token would send it: (status, body).
async fn with_session(b: &Browser, method: Method, path: &str, form: Option<&str>) -> (u16, String) {
    let cookie = b.cookie("ledger_console_session").await;
    let mut request = http()
        .request(method, format!("{}{path}", b.base))
        .header("cookie", format!("ledger_console_session={cookie}"));
    if let Some(form) = form {
        request = request.header("content-type", "application/x-www-form-urlencoded").body(form.to_owned());
    }
    let answer = request.send().await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

async fn sign_out(b: &Browser) {
    b.click("form.signout button").await;
    b.find("#email").await;
}

async fn staff_use_the_console_in_a_browser_each_role_its_pages_and_the_analytics_of_a_past_day(backend: Backend) {
    if !browser::peers_available(module_path!()) || !oidc::peers_available(module_path!()) {
        return;
    }
    let started = Instant::now();
    let (listener, public) = Front::bind();
    let issuer = oidc::Issuer::start(&public).await;
    let flags = ["--portal-insecure-cookies", "--sso-allow-loopback-issuer", "--portal-url", &public];
    let s = backend.start_with_env(&flags, &issuer.env()).await;
    let front = Front::forward(listener, public, &s);

    // The book of `revenue-a-small-book.yaml`, January to March 2026; the
    // clock ends on 2026-04-01.
    let (reports, sequence) = play_book(&s, "revenue-a-small-book.yaml").await;
    let caught_up = format!("/api/v1/analytics/revenue?month=2026-03&minSequence={sequence}");
    s.get(&caught_up, Some(OPERATOR)).await.expect(200);

    let added =
        backend.cli(&["staff", "add", "--email", "ada@vendor.test", "--name", "Ada", "--role", "staff_admin"]).await;
    assert!(added.status.success(), "staff add: {}", String::from_utf8_lossy(&added.stderr));
    let ada: Value = serde_json::from_slice(&added.stdout).unwrap();
    let ada = ada["id"].as_str().unwrap().to_owned();
    for (name, role) in [("Bob", "billing"), ("Sam", "support"), ("Aud", "auditor")] {
        let body = json!({ "name": name, "email": format!("{}@vendor.test", name.to_lowercase()), "role": role });
        s.post("/api/v1/staff", Some(OPERATOR), body).await.expect(201);
    }

    // Ada (staff admin) through the issuer: the sign-in page's button, the
    // issuer's redirects, back to the console.
    let b = Browser::start_with_shots(&front.url, &backend, "console").await;
    b.go("/console/").await;
    b.find("#oidc").await;
    b.accessible("console sign-in").await;
    b.screenshot("signin").await;
    issuer.account("sub-ada", "ada@vendor.test", true).await;
    b.click("#oidc").await;
    assert_eq!(b.text("#me").await, "Ada (staff_admin)");
    assert!(b.client.current_url().await.unwrap().as_str().starts_with(&front.url));
    assert!(b.text("main table").await.contains("Alpha AG"));
    b.accessible("organizations (staff admin)").await;
    b.screenshot("organizations").await;
    b.click("nav a[href='/console/staff']").await;
    assert!(b.text("main table").await.contains("aud@vendor.test"));
    b.accessible("staff (staff admin)").await;
    b.screenshot("staff").await;

    // The analytics of a past day: the scenario's hand-computed figures,
    // and every figure as `ledger report --as-of` prints it for that day.
    b.click("nav a[href='/console/analytics']").await;
    b.find("#mrr").await;
    b.accessible("analytics of today (staff admin)").await;
    let (day, hand_computed) = reports.iter().find(|(at, _)| at == "2026-02-12").expect("the book's report for 02-12");
    show_as_of(&b, day).await;
    assert_eq!(b.text("#period").await.split('.').next().unwrap(), "The month 2026-02, up to 2026-02-12");
    let shown = shown_figures(&b).await;
    for (key, expected) in hand_computed.as_object().unwrap() {
        if let Some(figure) = shown.get(key) {
            assert_eq!(figure, expected, "{key} on {day}, hand-computed");
        }
    }
    assert_eq!(shown["mrr"], "10416.67", "the hand-computed MRR of {day}");
    let reported: Value = serde_json::from_str(&report(&backend, day, "json").await).unwrap();
    for (key, figure) in &shown {
        assert_eq!(figure, &reported[key], "{key} on {day}: the page against ledger report --as-of");
    }
    let chart = b.find("figure.chart svg").await;
    assert_eq!(chart.find(Locator::Css("title")).await.unwrap().html(true).await.unwrap(), "MRR by month");
    assert_eq!(
        chart.find(Locator::Css("desc")).await.unwrap().html(true).await.unwrap(),
        "MRR at the end of each month from 2025-03 to 2026-02, one bar a month; the highest is 10416.67."
    );
    assert_eq!(chart.find_all(Locator::Css("rect")).await.unwrap().len(), 12);
    assert_eq!(b.text("#no-billed").await, "Nothing was billed for 2026-02 yet.");
    b.accessible("analytics of 2026-02-12").await;
    b.screenshot("analytics").await;

    // The CSV link: the same day, the report's CSV byte for byte.
    let href = b.find("#csv").await.attr("href").await.unwrap().unwrap();
    assert_eq!(href, format!("/console/analytics/revenue.csv?as_of={day}"));
    let cookie = b.cookie("ledger_console_session").await;
    let answer = http()
        .get(format!("{}{href}", front.url))
        .header("cookie", format!("ledger_console_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(answer.headers()["content-disposition"], format!("attachment; filename=\"revenue-{day}.csv\""));
    assert_eq!(answer.text().await.unwrap(), report(&backend, day, "csv").await);
    let anonymous = http().get(format!("{}{href}", front.url)).send().await.unwrap();
    assert_eq!(anonymous.status(), 303, "the CSV needs a session");

    // January's usage and overage by tier: the invoices its billing run
    // issued on 2026-02-01 (the scenario's figures after that run).
    show_as_of(&b, "2026-01-31").await;
    let billed = b.text("#billed tbody").await;
    assert_eq!(billed, "starter 2 1500 5000.00\nprofessional 1 0 0.00", "{billed}");

    // A day that is no day, or after today, or too early: the form again
    // with the reason, 400.
    for (asked, why) in [
        ("2026-02-30", "YYYY-MM-DD"),
        ("2026-04-02", "after today"),
        ("1999-12-31", "before 2000-01-01"),
        ("x%3Cscript%3E", "YYYY-MM-DD"),
    ] {
        let (status, body) = with_session(&b, Method::GET, &format!("/console/analytics?as_of={asked}"), None).await;
        assert_eq!(status, 400, "{asked}: {body}");
        assert!(body.contains(why) && body.contains("id=\"as-of\"") && !body.contains("<script>"), "{asked}: {body}");
    }
    b.go("/console/analytics?as_of=2026-02-30").await;
    assert!(b.text("#refused").await.contains("YYYY-MM-DD"));
    b.accessible("analytics refused").await;
    sign_out(&b).await;

    // Billing, support, auditor by magic links: the organizations and the
    // analytics; no staff link; the staff page and its forms refused.
    for (email, role) in
        [("bob@vendor.test", "billing"), ("sam@vendor.test", "support"), ("aud@vendor.test", "auditor")]
    {
        let link = backend.cli(&["staff", "login-link", "--email", email, "--portal-url", &front.url]).await;
        assert!(link.status.success(), "login-link: {}", String::from_utf8_lossy(&link.stderr));
        let link = String::from_utf8(link.stdout).unwrap().trim().to_owned();
        b.go(link.strip_prefix(&front.url).unwrap()).await;
        b.click("#use-link").await;
        assert!(b.text("#me").await.ends_with(&format!("({role})")));
        assert!(b.text("main table").await.contains("Beta GmbH"));
        b.accessible(&format!("organizations ({role})")).await;
        let links = b.client.find_all(Locator::Css("nav a")).await.unwrap();
        let mut hrefs = Vec::new();
        for link in links {
            hrefs.push(link.attr("href").await.unwrap().unwrap_or_default());
        }
        assert!(hrefs.contains(&"/console/analytics".to_owned()) && !hrefs.contains(&"/console/staff".to_owned()));
        b.click("nav a[href='/console/analytics']").await;
        show_as_of(&b, "2026-02-28").await;
        let shown = shown_figures(&b).await;
        let reported: Value = serde_json::from_str(&report(&backend, "2026-02-28", "json").await).unwrap();
        let (_, hand_computed) = reports.iter().find(|(at, _)| at == "2026-02-28").unwrap();
        for (key, figure) in &shown {
            assert_eq!(figure, &reported[key], "{key} on 2026-02-28 ({role})");
            if let Some(expected) = hand_computed.get(key) {
                assert_eq!(figure, expected, "{key} on 2026-02-28 ({role}), hand-computed");
            }
        }
        b.accessible(&format!("analytics ({role})")).await;

        let csrf = csrf_field(&b).await;
        let (status, _) = with_session(&b, Method::GET, "/console/staff", None).await;
        assert_eq!(status, 403, "{role} may not see the staff page");
        let forged = format!("name=Mallory&email=mallory%40vendor.test&role=staff_admin&csrf={csrf}");
        let (status, body) = with_session(&b, Method::POST, "/console/staff", Some(&forged)).await;
        assert_eq!(status, 403, "{role} may not add staff: {body}");
        let forged = format!("role=auditor&csrf={csrf}");
        let (status, body) = with_session(&b, Method::POST, &format!("/console/staff/{ada}/role"), Some(&forged)).await;
        assert_eq!(status, 403, "{role} may not change a role: {body}");
        let (status, _) =
            with_session(&b, Method::POST, &format!("/console/staff/{ada}/disable"), Some(&format!("csrf={csrf}")))
                .await;
        assert_eq!(status, 403, "{role} may not disable staff");
        sign_out(&b).await;
    }

    // Nothing forged changed the staff: four users, Ada still the staff admin.
    let listed = s.get("/api/v1/staff", Some(OPERATOR)).await.expect(200);
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{listed}");
    let ada_row = items.iter().find(|i| i["id"] == ada.as_str()).unwrap();
    assert_eq!((ada_row["role"].as_str(), ada_row["active"].as_bool()), (Some("staff_admin"), Some(true)));
    let on = if backend.database_url().is_some() { "postgres" } else { "sqlite" };
    eprintln!("console_browser ({on}): {:.1} s", started.elapsed().as_secs_f64());
}
