//! Usage reports over HTTP, against the real binary, on both backends
//! (BILLING-RULES.md, "Usage reports"; worked example 5).

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod common;

use common::{Backend, OPERATOR, id};
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

async fn reports_replace_add_up_and_warn(backend: Backend) {
    let s = backend.start().await;
    s.move_clock("2026-03-10T00:00:00Z").await;
    let org = s.create_org("Acme").await;
    let key = id(&s.create_subscription(&org, "professional", "2026-03-01", true).await["licenseKey"]);
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

backends!(reports_replace_add_up_and_warn, bad_reports_are_refused_and_record_nothing);
