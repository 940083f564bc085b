//! The monthly billing run over HTTP and from the command line, against the
//! real binary, on both backends: BILLING-RULES' worked examples 2 and 3.

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod common;

use common::{Backend, OPERATOR, id};
use serde_json::{Value, json};

fn lines(invoice: &Value) -> Vec<(String, Option<u64>, String)> {
    invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["kind"].as_str().unwrap().to_owned(), l["days"].as_u64(), l["amount"].as_str().unwrap().to_owned()))
        .collect()
}

async fn a_month_is_invoiced_once(backend: Backend) {
    let s = backend.start().await;
    let acme = s.create_org("Acme").await;
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    s.move_clock("2026-01-10T00:00:00Z").await;
    let upgrade = json!({ "targetTier": "professional", "effectiveDate": "2026-01-16" });
    s.post(&format!("/api/v1/subscriptions/{acme}/upgrade"), Some(OPERATOR), upgrade).await.expect(200);
    let run = |body: Value| s.post("/api/v1/billing/runs", Some(OPERATOR), body);

    // January has not ended: only a preview runs, and it appends nothing.
    run(json!({ "period": "2026-01" })).await.problem(409, "month_not_ended");
    let head = s.head().await;
    let preview = run(json!({ "period": "2026-01", "preview": true })).await.expect(200);
    assert_eq!(s.head().await, head, "a preview appends nothing");
    let previewed = &preview["invoices"][0];
    let example_2 =
        vec![("base".to_owned(), Some(15), "1209.68".to_owned()), ("base".to_owned(), Some(16), "2580.65".to_owned())];
    assert_eq!((lines(previewed), &previewed["total"]), (example_2.clone(), &json!("3790.33")));

    // After the month: one invoice, the same as previewed, with the same id.
    // Moving the clock also closes the old key's supersede window (January
    // 16 + 7 days); wait for the scheduler's revocation so the log is still.
    s.move_clock("2026-02-01T00:00:00Z").await;
    let licenses = format!("/api/v1/organizations/{acme}/licenses");
    common::poll("the old key's supersede window to close", || async {
        let listed = s.get(&licenses, Some(OPERATOR)).await.expect(200);
        let revoked = listed.as_array().unwrap().iter().any(|l| l["revocationReason"] == "superseded");
        revoked.then_some(())
    })
    .await;
    let issued = run(json!({ "period": "2026-01" })).await.expect(200);
    assert_eq!(issued["invoices"].as_array().unwrap().len(), 1);
    let invoice = &issued["invoices"][0];
    assert_eq!((lines(invoice), &invoice["total"], &invoice["id"]), (example_2, &json!("3790.33"), &previewed["id"]));
    assert_eq!(invoice["digest"], previewed["digest"], "the preview computed the same invoice");
    assert_eq!(issued["sequence"].as_u64(), Some(s.head().await));

    // A second run issues nothing new.
    let again = run(json!({ "period": "2026-01" })).await.expect(200);
    assert_eq!((again["invoices"].clone(), again["sequence"].as_u64()), (json!([]), Some(s.head().await)));
    let listed = s.get(&format!("/api/v1/organizations/{acme}/invoices"), Some(OPERATOR)).await.expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(
        (&listed[0]["period"], &listed[0]["status"], &listed[0]["id"]),
        (&json!("2026-01"), &json!("issued"), &invoice["id"])
    );

    // Bad periods.
    for period in ["2026-1", "2026-13", "January", ""] {
        run(json!({ "period": period })).await.problem(400, "validation_failed");
    }
}

async fn the_command_line_run_matches_the_route(backend: Backend) {
    let s = backend.start().await;
    s.move_clock("2026-03-10T00:00:00Z").await;
    let org = s.create_org("Initech").await;
    let key = id(&s.create_subscription(&org, "professional", "2026-03-01", true).await["licenseKey"]);
    // Worked example 3: peak data 4,250 GB in March.
    for (day, gb) in [("2026-03-03", 1200), ("2026-03-09", 4250), ("2026-03-10", 4000)] {
        let report = json!({
            "licenseKey": key,
            "metrics": { "activeUsers": 4, "dataVolumeGB": gb, "apiCallsCount": 10, "trainingHours": 0 },
            "reportingPeriod": day,
        });
        s.post("/api/v1/usage/report", None, report).await.expect(200);
    }
    s.move_clock("2026-04-01T00:00:00Z").await;

    // `ledger billing run` beside the running server, on the same store.
    let output = backend.cli(&["billing", "run", "--period", "2026-03"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("the run prints JSON");
    let invoice = &printed["invoices"][0];
    let example_3 = vec![
        ("base".to_owned(), Some(31), "5000.00".to_owned()),
        ("data_overage".to_owned(), None, "8000.00".to_owned()),
    ];
    assert_eq!((lines(invoice), &invoice["total"]), (example_3, &json!("13000.00")));
    let inputs = &invoice["inputs"]["overage"];
    assert_eq!(
        (&inputs["peakDataGB"], &inputs["dataLimitGB"], &inputs["overageRate"]),
        (&json!("4250"), &json!(3000), &json!("4000.00"))
    );
    assert_eq!(invoice["digest"].as_str().map(str::len), Some(64));

    // The server's route finds the month done; the invoice is listed.
    let again = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-03" })).await.expect(200);
    assert_eq!(again["invoices"], json!([]));
    let seen = printed["sequence"].as_u64().unwrap();
    let listed =
        s.get(&format!("/api/v1/organizations/{org}/invoices?minSequence={seen}"), Some(OPERATOR)).await.expect(200);
    assert_eq!((&listed[0]["id"], &listed[0]["total"]), (&invoice["id"], &json!("13000.00")));
}

backends!(a_month_is_invoiced_once, the_command_line_run_matches_the_route);
