//! Usage reports over HTTP, against the real binary, on both backends
//! (BILLING-RULES.md, "Usage reports"; worked example 5).

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod common;

use common::{Backend, Body, OPERATOR, Server, id};
use reqwest::Method;
use serde_json::{Value, json};

fn report(key: &str, day: &str, users: Value, data: Value, calls: Value, deployment: Option<&str>) -> Value {
    let mut body = json!({
        "licenseKey": key,
        "metrics": { "activeUsers": users, "dataVolumeGB": data, "apiCallsCount": calls, "trainingHours": 0 },
        "reportingPeriod": day,
    });
    if let Some(deployment) = deployment {
        body["deploymentId"] = json!(deployment);
    }
    body
}

/// Validates `key` from `deployment`, which activates the deployment.
async fn validate(s: &Server, key: &str, deployment: &str) {
    let body = json!({ "licenseKey": key, "clientInfo": { "deployment_id": deployment } });
    let answer = s.post("/api/v1/license/validate", None, body).await.expect(200);
    assert_eq!(answer["code"], "VALID", "{answer}");
}

/// A subscription from 2026-03-01 whose key may run on `deployments`
/// deployments; returns the key.
async fn subscribe(s: &Server, org: &str, tier: &str, deployments: u32) -> String {
    let body = json!({ "organizationId": org, "tier": tier, "startDate": "2026-03-01", "maxDeployments": deployments });
    id(&s.post("/api/v1/subscriptions", Some(OPERATOR), body).await.expect(201)["licenseKey"])
}

/// A report sent without the test helpers, for its headers.
async fn send_raw(s: &Server, body: &Value) -> reqwest::Response {
    let response = reqwest::Client::new()
        .post(s.url("/api/v1/usage/report"))
        .json(body)
        .send()
        .await
        .expect("the request is sent");
    s.conformed(&Method::POST, "/api/v1/usage/report", response).await
}

/// A 429 `rate_limited` with a `Retry-After` of at least a second, naming
/// `limit` (the problem's `limit` member); returns its detail.
async fn assert_rate_limited_by(response: reqwest::Response, limit: &str) -> String {
    assert_eq!(response.status().as_u16(), 429);
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let seconds: u64 = retry_after.as_deref().and_then(|v| v.parse().ok()).expect("a Retry-After in seconds");
    assert!(seconds >= 1, "Retry-After {seconds}");
    let problem: Value = response.json().await.expect("a problem+json body");
    assert_eq!(problem["code"], "rate_limited", "{problem}");
    assert_eq!(problem["limit"], limit, "the problem names the limit: {problem}");
    problem["detail"].as_str().unwrap_or_default().to_owned()
}

/// Refused by the subscription's cap for the reported day: waiting does not
/// lift it.
async fn assert_rate_limited(response: reqwest::Response) -> String {
    assert_rate_limited_by(response, "reports_per_day").await
}

async fn reports_replace_add_up_and_warn(backend: Backend) {
    let s = backend.start().await;
    s.move_clock("2026-03-10T00:00:00Z").await;
    let org = s.create_org("Acme").await;
    let key = subscribe(&s, &org, "professional", 2).await;
    validate(&s, &key, "default").await;
    validate(&s, &key, "edge-2").await;
    let send = |body: Value| s.post("/api/v1/usage/report", None, body);

    // Worked example 5: 300 then 250 for the same key and day counts 250.
    let first = send(report(&key, "2026-03-05", json!(3), json!(100), json!(300), None)).await.expect(200);
    assert_eq!(first["acknowledged"], true);
    assert_eq!(first["nextReportDue"], "2026-03-11T00:00:00Z");
    assert_eq!(first["sequence"].as_u64(), Some(s.head().await), "the answer names where it was appended");
    send(report(&key, "2026-03-05", json!(3), json!(100), json!(250), None)).await.expect(200);
    // A second deployment adds to the day; gauges take the month's largest day.
    send(report(&key, "2026-03-05", json!(5), json!(2300.5), json!(50), Some("edge-2"))).await.expect(200);
    let answer = send(report(&key, "2026-03-06", json!(9), json!("3100.25"), json!(41000), None)).await.expect(200);
    // 9 of 10 seats and 41,300 of 50,000 calls are approaching; 3,100.25 of
    // 3,000 GB is over.
    assert_eq!(answer["limitsApproaching"], json!(["users", "apiCalls"]));
    assert_eq!(answer["warningsIssued"], json!(["dataVolumeGB"]));

    // Reports answer without waiting for the read models; a query waits for
    // the last report's sequence with minSequence (read-your-writes).
    let seen = answer["sequence"].as_u64().unwrap();
    let usage_path = format!("/api/v1/organizations/{org}/usage?period=2026-03&minSequence={seen}");
    let usage = s.get(&usage_path, Some(OPERATOR)).await.expect(200);
    assert_eq!(usage["total"]["apiCallsCount"], 41300);
    assert_eq!(usage["total"]["activeUsers"], 9);
    assert_eq!(usage["total"]["dataVolumeGB"], "3100.25");
    assert_eq!(
        usage["days"][0],
        json!({ "day": "2026-03-05", "metrics": {
        "activeUsers": 8, "dataVolumeGB": "2400.5", "apiCallsCount": 300, "trainingHours": "0" } })
    );
    let april = s.get(&format!("/api/v1/organizations/{org}/usage?period=2026-04"), Some(OPERATOR)).await.expect(200);
    assert_eq!(april["days"], json!([]));

    // The enforcement check and the subscription's current usage see it.
    let check = |action: &str| format!("/api/v1/enforcement/{org}/check?action={action}");
    let upload = s.get(&check("UPLOAD_DATA"), Some(OPERATOR)).await.expect(200);
    assert_eq!((&upload["allowed"], &upload["limit"]), (&json!(false), &json!(3000)));
    let calls = s.get(&check("API_CALL"), Some(OPERATOR)).await.expect(200);
    assert_eq!((&calls["allowed"], &calls["current"]), (&json!(true), &json!(41300)));
    let details = s.get(&format!("/api/v1/subscriptions/{org}"), Some(OPERATOR)).await.expect(200);
    assert_eq!(details["currentUsage"]["apiCalls"], 41300);
}

async fn bad_reports_are_refused_and_record_nothing(backend: Backend) {
    let s = backend.start().await;
    s.move_clock("2026-03-10T00:00:00Z").await;
    let org = s.create_org("Acme").await;
    let key = id(&s.create_subscription(&org, "starter", "2026-03-01", true).await["licenseKey"]);
    validate(&s, &key, "default").await;
    let head = s.head().await;
    let cases = [
        report(&key, "2026-03-05", json!(-1), json!(0), json!(0), None),
        report(&key, "2026-03-05", json!(1), json!(1.005), json!(0), None),
        report(&key, "2026-03-05", json!(1.5), json!(0), json!(0), None),
        report(&key, "2026-03-12", json!(1), json!(0), json!(0), None),
        report(&key, "2026-02-28", json!(1), json!(0), json!(0), None),
        report(&key, "2026-3-5", json!(1), json!(0), json!(0), None),
        report(&key, "2026-03-05", json!("lots"), json!(0), json!(0), None),
        json!({ "licenseKey": key, "metrics": {}, "reportingPeriod": "2026-03-05" }),
    ];
    for body in cases {
        let problem = s.post("/api/v1/usage/report", None, body.clone()).await.problem(400, "validation_failed");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body} → {problem}");
    }
    // One day ahead is allowed.
    s.post("/api/v1/usage/report", None, report(&key, "2026-03-11", json!(1), json!(0), json!(0), None))
        .await
        .expect(200);
    let head = head + 1;
    // Unknown keys, and keys of ended subscriptions.
    let unknown = report("LK1-nobody", "2026-03-05", json!(1), json!(0), json!(0), None);
    s.post("/api/v1/usage/report", None, unknown).await.problem(404, "not_found");
    let cancel = format!("/api/v1/subscriptions/{org}/cancel");
    s.post(&cancel, Some(OPERATOR), json!({ "immediate": true })).await.expect(200);
    // Cancelled from today: today is not covered, but an earlier day still
    // takes a (late) report, billed as an adjustment.
    let ended = report(&key, "2026-03-10", json!(1), json!(0), json!(0), None);
    s.post("/api/v1/usage/report", None, ended).await.problem(409, "license_not_valid");
    let covered = report(&key, "2026-03-05", json!(1), json!(0), json!(0), None);
    s.post("/api/v1/usage/report", None, covered).await.expect(200);
    assert_eq!(s.head().await, head + 3, "only the accepted reports and the cancellation were appended");
}

/// Finding 3 of issue 11: one key could append reports for any number of
/// made-up deployment ids. A report names an activated deployment of its
/// key (`default` when it names none), as validation does; anything else
/// is refused and records nothing.
async fn reports_come_from_activated_deployments_only(backend: Backend) {
    let s = backend.start().await;
    s.move_clock("2026-03-10T00:00:00Z").await;
    let org = s.create_org("Acme").await;
    let key = subscribe(&s, &org, "starter", 2).await;
    let head = s.head().await;
    for deployment in [None, Some("default"), Some("edge-1"), Some("random-4711")] {
        let body = report(&key, "2026-03-05", json!(1), json!(0), json!(0), deployment);
        s.post("/api/v1/usage/report", None, body).await.problem(409, "deployment_not_activated");
    }
    assert_eq!(s.head().await, head, "refused reports append nothing");

    validate(&s, &key, "edge-1").await;
    let head = s.head().await;
    let body = report(&key, "2026-03-05", json!(1), json!(0), json!(0), Some("edge-1"));
    s.post("/api/v1/usage/report", None, body).await.expect(200);
    for deployment in [None, Some("edge-2")] {
        let body = report(&key, "2026-03-05", json!(1), json!(0), json!(0), deployment);
        s.post("/api/v1/usage/report", None, body).await.problem(409, "deployment_not_activated");
    }
    assert_eq!(s.head().await, head + 1, "only the activated deployment's report was appended");
}

/// Finding 3: reports are rate-limited per key (60 a minute by default),
/// with `Retry-After`, and a refused report appends nothing; other keys
/// are not held back.
async fn reports_are_rate_limited_per_key(backend: Backend) {
    let s = backend.start().await;
    s.move_clock("2026-03-20T00:00:00Z").await;
    let org = s.create_org("Acme").await;
    let key = subscribe(&s, &org, "starter", 1).await;
    validate(&s, &key, "default").await;
    let head = s.head().await;
    let started = std::time::Instant::now();
    let mut accepted = 0u64;
    let detail = loop {
        // Twenty days, so the per-day cap (100) is not what refuses.
        let day = format!("2026-03-{:02}", 1 + accepted % 20);
        let response = send_raw(&s, &report(&key, &day, json!(1), json!(0), json!(1), None)).await;
        if response.status().as_u16() != 200 {
            break assert_rate_limited_by(response, "reports_per_key_per_minute").await;
        }
        accepted += 1;
        assert!(accepted <= 200, "no report was refused");
    };
    // 60 at once, then one a second as the bucket refills.
    let allowed = 60 + started.elapsed().as_secs() + 1;
    assert!((60..=allowed).contains(&accepted), "{accepted} accepted before the limit ({allowed} allowed)");
    assert!(detail.contains("minute"), "{detail}");
    assert_eq!(s.head().await, head + accepted, "the refused report appended nothing");

    // Another key (another organization's) still reports.
    let other = s.create_org("Globex").await;
    let other_key = subscribe(&s, &other, "starter", 1).await;
    validate(&s, &other_key, "default").await;
    let body = report(&other_key, "2026-03-05", json!(1), json!(0), json!(0), None);
    s.post("/api/v1/usage/report", None, body).await.expect(200);
    // Both keys are entries of the per-key limiter, which `/metrics` shows
    // beside the other bounded limiters.
    let metrics = s.get("/metrics", Some(OPERATOR)).await.text;
    let line = "ledger_rate_limiter_keys{limiter=\"usage_reports_per_key\"} ";
    let held = metrics.lines().find_map(|l| l.strip_prefix(line)).expect("the usage limiter is a metric");
    assert_eq!(held.trim(), "2", "{metrics}");
}

/// Finding 3: at most N reports per subscription and reported day
/// (`--usage-reports-per-day-max`), counted from the log, so the cap holds
/// across restarts and across the subscription's keys.
async fn reports_are_capped_per_subscription_and_day(backend: Backend) {
    let flags = ["--usage-reports-per-key-per-minute", "0", "--usage-reports-per-day-max", "5"];
    let s = backend.start_with(&flags).await;
    s.move_clock("2026-03-10T00:00:00Z").await;
    let org = s.create_org("Acme").await;
    let key = subscribe(&s, &org, "starter", 1).await;
    validate(&s, &key, "default").await;
    let day = |key: &str, day: &str| report(key, day, json!(1), json!(0), json!(1), None);
    for _ in 0..5 {
        s.post("/api/v1/usage/report", None, day(&key, "2026-03-05")).await.expect(200);
    }
    let head = s.head().await;
    let detail = assert_rate_limited(send_raw(&s, &day(&key, "2026-03-05")).await).await;
    assert!(detail.contains("2026-03-05"), "{detail}");
    assert_eq!(s.head().await, head, "the refused report appended nothing");
    s.post("/api/v1/usage/report", None, day(&key, "2026-03-06")).await.expect(200);

    // Counted from the log: a restarted server still refuses the day.
    s.stop().await;
    let s = backend.start_with(&flags).await;
    assert_rate_limited(send_raw(&s, &day(&key, "2026-03-05")).await).await;
    // Per subscription: the new key of an upgrade shares the cap.
    let upgrade = json!({ "targetTier": "professional" });
    let upgraded = s.post(&format!("/api/v1/subscriptions/{org}/upgrade"), Some(OPERATOR), upgrade).await.expect(200);
    let new_key = id(&upgraded["newLicenseKey"]);
    validate(&s, &new_key, "default").await;
    assert_rate_limited(send_raw(&s, &day(&new_key, "2026-03-05")).await).await;
    s.post("/api/v1/usage/report", None, day(&new_key, "2026-03-07")).await.expect(200);
}

/// Finding 7 of issue 11: billed usage could be rewritten at any later
/// time. A day more than 35 days back (`--usage-correction-days-max`) is
/// refused; a late report within the window still adjusts the next
/// invoice, and the adjustment names the reports (sequences) behind it.
async fn late_corrections_are_bounded_and_named(backend: Backend) {
    let s = backend.start().await;
    let org = s.create_org("Acme").await;
    let key = id(&s.create_subscription(&org, "professional", "2026-01-01", true).await["licenseKey"]);
    validate(&s, &key, "default").await;
    s.move_clock("2026-01-15T12:00:00Z").await;
    let send = |day: &str, gb: u64| {
        s.post("/api/v1/usage/report", None, report(&key, day, json!(3), json!(gb), json!(10), None))
    };
    send("2026-01-15", 6000).await.expect(200);
    s.move_clock("2026-02-01T00:00:00Z").await;
    let bill = |period: &str| s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": period }));
    let january = bill("2026-01").await.expect(200);
    // 3,000 GB over professional's 3,000 GB: 3 started TB × 4,000.00.
    assert_eq!(january["invoices"][0]["total"], "17000.00");

    s.move_clock("2026-02-02T08:00:00Z").await;
    let lowered = send("2026-01-15", 0).await.expect(200)["sequence"].as_u64().unwrap();
    s.move_clock("2026-03-01T00:00:00Z").await;
    let february = bill("2026-02").await.expect(200);
    let invoice = &february["invoices"][0];
    let line = &invoice["lines"][1];
    assert_eq!((&line["kind"], &line["amount"]), (&json!("usage_adjustment"), &json!("-12000.00")), "{invoice}");
    assert_eq!(line["reports"], json!([lowered]), "the line names the report that lowered January: {line}");
    assert!(invoice["lines"][0]["reports"].as_array().unwrap().is_empty(), "only adjustments name reports");

    // 1 March: 25 January is 35 days back and still takes a report; the
    // 24th does not, and nothing is appended.
    let head = s.head().await;
    let problem = send("2026-01-24", 7000).await.problem(409, "correction_window_closed");
    assert!(problem["detail"].as_str().unwrap().contains("35"), "{problem}");
    assert_eq!(s.head().await, head);
    send("2026-01-25", 100).await.expect(200);

    // The window is configurable.
    s.stop().await;
    let s = backend.start_with(&["--usage-correction-days-max", "3"]).await;
    let send = |day: &str| s.post("/api/v1/usage/report", None, report(&key, day, json!(3), json!(1), json!(10), None));
    send("2026-02-25").await.problem(409, "correction_window_closed");
    send("2026-02-26").await.expect(200);
}

/// Low item of issue 11: numbers went through a float, so `1e-400` was
/// taken as 0. They are read as decimals from the JSON text; more than two
/// decimals or more than 10^12 is refused.
async fn usage_numbers_are_read_as_written(backend: Backend) {
    let s = backend.start().await;
    s.move_clock("2026-03-10T00:00:00Z").await;
    let org = s.create_org("Acme").await;
    let key = id(&s.create_subscription(&org, "starter", "2026-03-01", true).await["licenseKey"]);
    validate(&s, &key, "default").await;
    let raw = |data: &str| {
        let text = format!(
            r#"{{"licenseKey":"{key}","metrics":{{"activeUsers":1,"dataVolumeGB":{data},"apiCallsCount":0,"trainingHours":0}},"reportingPeriod":"2026-03-05"}}"#
        );
        s.send(Method::POST, "/api/v1/usage/report", None, Body::Raw(text.into_bytes()), &[])
    };
    let head = s.head().await;
    for data in
        ["1e-400", "\"1e-400\"", "1.001", "1e-3", "1000000000000.01", "1e13", "1e400", "-0.5", "true", "\"12,5\""]
    {
        let problem = raw(data).await.problem(400, "validation_failed");
        assert!(problem["detail"].as_str().unwrap().contains("dataVolumeGB"), "{data}: {problem}");
    }
    assert_eq!(s.head().await, head, "refused reports append nothing");
    let accepted = raw("1.005e1").await.expect(200)["sequence"].as_u64().unwrap();
    let path = format!("/api/v1/organizations/{org}/usage?period=2026-03&minSequence={accepted}");
    let usage = s.get(&path, Some(OPERATOR)).await.expect(200);
    assert_eq!(usage["total"]["dataVolumeGB"], "10.05");
    raw("1E12").await.expect(200);
}

/// A client's durable usage queue for `key` on `s` (deployment `default`),
/// its state in `dir`, pinned to the server's lease key.
async fn reporter(s: &Server, key: &str, dir: &std::path::Path) -> client::UsageReporter {
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    let lease_key = client::parse_public_key(keys["leases"]["current"].as_str().expect("a lease key")).unwrap();
    let mut config = client::Config::new(&s.base, key, dir, vec![lease_key]);
    config.allow_plain_http = true;
    client::UsageReporter::open(&config).expect("the queue opens")
}

fn usage_report(day: &str, calls: u64) -> client::UsageReport {
    client::UsageReport {
        reporting_period: day.parse().unwrap(),
        metrics: client::UsageMetrics {
            active_users: 1,
            data_volume_gb: client::Decimal::ZERO,
            api_calls_count: calls,
            training_hours: client::Decimal::ZERO,
        },
    }
}

/// A report refused because its day has had its reports
/// (`--usage-reports-per-day-max`) can never succeed later: the client's
/// durable queue moves it to `rejected/`, with the server's answer, and
/// sends the reports behind it, instead of retrying it forever and holding
/// back every later report.
async fn the_client_rejects_a_report_for_a_day_that_had_its_reports(backend: Backend) {
    let flags = ["--usage-reports-per-key-per-minute", "0", "--usage-reports-per-day-max", "1"];
    let s = backend.start_with(&flags).await;
    s.move_clock("2026-03-10T00:00:00Z").await;
    let org = s.create_org("Acme").await;
    let key = subscribe(&s, &org, "starter", 1).await;
    validate(&s, &key, "default").await;
    let dir = tempfile::tempdir().unwrap();
    let queue = reporter(&s, &key, dir.path()).await;
    for (day, calls) in [("2026-03-05", 10), ("2026-03-05", 20), ("2026-03-06", 30)] {
        queue.enqueue(usage_report(day, calls)).await.unwrap();
    }
    let outcome = queue.flush().await.unwrap();
    assert_eq!((outcome.sent, outcome.rejected, outcome.remaining), (2, 1, 0), "{outcome:?}");
    assert_eq!(outcome.stopped, None, "{outcome:?}");

    let rejected: Vec<_> = std::fs::read_dir(queue.rejected_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let record: Value = serde_json::from_slice(&std::fs::read(&rejected[0]).unwrap()).unwrap();
    assert_eq!(record["status"], 429, "{record}");
    assert_eq!(record["answer"]["limit"], "reports_per_day", "{record}");
    assert_eq!(record["report"]["report"]["metrics"]["apiCallsCount"], 20, "{record}");

    let head = s.head().await;
    let path = format!("/api/v1/organizations/{org}/usage?period=2026-03&minSequence={head}");
    let days = s.get(&path, Some(OPERATOR)).await.expect(200)["days"].clone();
    assert_eq!(days[0]["metrics"]["apiCallsCount"], 10, "the day keeps its first report: {days}");
    assert_eq!(days[1]["metrics"]["apiCallsCount"], 30, "the report behind it was sent: {days}");
}

/// A report refused by the key's rate (`--usage-reports-per-key-per-minute`)
/// may succeed later: it stays queued, in order, and the flush says how
/// long to wait.
async fn the_client_keeps_a_report_the_per_minute_rate_refused(backend: Backend) {
    let s = backend.start_with(&["--usage-reports-per-key-per-minute", "1"]).await;
    s.move_clock("2026-03-10T00:00:00Z").await;
    let org = s.create_org("Acme").await;
    let key = subscribe(&s, &org, "starter", 1).await;
    validate(&s, &key, "default").await;
    let dir = tempfile::tempdir().unwrap();
    let queue = reporter(&s, &key, dir.path()).await;
    for (day, calls) in [("2026-03-05", 10), ("2026-03-06", 20)] {
        queue.enqueue(usage_report(day, calls)).await.unwrap();
    }
    let outcome = queue.flush().await.unwrap();
    assert_eq!((outcome.sent, outcome.rejected, outcome.remaining), (1, 0, 1), "{outcome:?}");
    assert!(outcome.retry_after.is_some_and(|wait| wait.as_secs() >= 1), "{outcome:?}");
    assert_eq!(std::fs::read_dir(queue.rejected_dir()).unwrap().count(), 0, "nothing was rejected");
}

backends!(
    the_client_rejects_a_report_for_a_day_that_had_its_reports,
    the_client_keeps_a_report_the_per_minute_rate_refused,
    reports_replace_add_up_and_warn,
    bad_reports_are_refused_and_record_nothing,
    reports_come_from_activated_deployments_only,
    reports_are_rate_limited_per_key,
    reports_are_capped_per_subscription_and_day,
    late_corrections_are_bounded_and_named,
    usage_numbers_are_read_as_written
);
