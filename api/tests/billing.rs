//! The monthly billing run over HTTP and from the command line, against the
//! real binary, on both backends: BILLING-RULES' worked examples 2 and 3.

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod common;

use common::planted::{overflowing_addon, plant};
use common::{Backend, OPERATOR, id};
use domain::{EventId, Metadata, Timestamp};
use serde_json::{Value, json};
use store::{Command, ExpectedRevision, NewEvent};
use uuid::Uuid;

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
        (&json!("2026-01"), &json!("open"), &invoice["id"])
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
    // Reports come from an activated deployment.
    s.post("/api/v1/license/validate", None, json!({ "licenseKey": key })).await.expect(200);
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

fn organizations(run: &Value) -> Vec<String> {
    let mut ids: Vec<String> = run["invoices"].as_array().unwrap().iter().map(|i| id(&i["organizationId"])).collect();
    ids.sort();
    ids
}

/// `ledger_billing_run_failures_total` as `/metrics` says it now.
async fn billing_run_failures(s: &common::Server) -> f64 {
    let text = s.get("/metrics", Some(OPERATOR)).await.text;
    let line = text.lines().find_map(|line| line.strip_prefix("ledger_billing_run_failures_total "));
    line.unwrap_or_else(|| panic!("no ledger_billing_run_failures_total in:\n{text}")).trim().parse().expect("a number")
}

/// Finding 1 of issue 11: an add-on whose invoice cannot be computed
/// stopped every billing run, for every customer. Now that subscription's
/// month fails alone and is named, its later months wait for it, and the
/// operator's fix lets the next run of the month issue it.
async fn an_invoice_that_cannot_be_computed_fails_alone_until_the_operator_fixes_it(backend: Backend) {
    let s = backend.start().await;
    let acme = s.create_org("Acme").await;
    let acme_sub = id(&s.create_subscription(&acme, "starter", "2026-01-01", true).await["subscriptionId"]);
    let globex = s.create_org("Globex").await;
    s.create_subscription(&globex, "professional", "2026-01-01", true).await;

    // The API refuses such an add-on, the operator's too: it is planted.
    let addons = format!("/api/v1/subscriptions/{acme}/addons");
    let huge = json!({ "kind": "extra_data_tb", "quantity": 1000,
        "annualPrice": "79228162514264337593543950335", "effectiveDate": "2026-01-01" });
    s.post(&addons, Some(OPERATOR), huge).await.problem(400, "validation_failed");
    let addon = overflowing_addon();
    let addon_id = addon.addon_id.0.to_string();
    plant(&backend, &acme_sub, addon.into()).await;
    common::poll("the server to see the planted add-on", || async {
        let details = s.subscription(&acme, OPERATOR).await;
        details["addons"].as_array().unwrap().iter().any(|a| a["id"] == addon_id.as_str()).then_some(())
    })
    .await;
    s.move_clock("2026-02-01T00:00:00Z").await;
    let run = |body: Value| s.post("/api/v1/billing/runs", Some(OPERATOR), body);
    // The revenue figures count Globex and leave the planted subscription's
    // MRR out (it overflows), rather than failing the read models.
    let revenue = s.get("/api/v1/analytics/revenue?month=2026-01", Some(OPERATOR)).await.expect(200);
    assert_eq!(revenue["activeOrganizations"], 1, "{revenue}");

    // A preview names the failure and appends nothing.
    let head = s.head().await;
    let preview = run(json!({ "period": "2026-01", "preview": true })).await.expect(200);
    assert_eq!(s.head().await, head, "a preview appends nothing");
    assert_eq!(organizations(&preview), vec![globex.clone()]);
    assert_eq!(preview["failed"][0]["subscriptionId"], acme_sub.as_str());

    // The run issues everyone else's invoice and names the one that failed;
    // `ledger_billing_run_failures_total` counts it (the preview did not).
    assert_eq!(billing_run_failures(&s).await, 0.0, "a preview is not a run");
    let january = run(json!({ "period": "2026-01" })).await.expect(200);
    assert_eq!(billing_run_failures(&s).await, 1.0, "a run that left an invoice unissued is a failure");
    assert_eq!(organizations(&january), vec![globex.clone()], "{january}");
    let failed = january["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{january}");
    assert_eq!(failed[0]["subscriptionId"], acme_sub.as_str());
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains(&addon_id), "the reason names the add-on to fix: {reason}");

    // `ledger billing run` prints the failure and exits non-zero, so cron notices.
    let cli = backend.cli(&["billing", "run", "--period", "2026-01"]).await;
    assert_eq!(cli.status.code(), Some(3), "{}", String::from_utf8_lossy(&cli.stderr));
    let printed: Value = serde_json::from_slice(&cli.stdout).expect("the run prints JSON");
    assert_eq!((&printed["invoices"], &printed["failed"][0]["subscriptionId"]), (&json!([]), &json!(acme_sub)));
    assert!(String::from_utf8_lossy(&cli.stderr).contains(&acme_sub), "the failure is named on stderr");

    // February waits for January, so adjustments stay in order.
    s.move_clock("2026-03-01T00:00:00Z").await;
    let february = run(json!({ "period": "2026-02" })).await.expect(200);
    assert_eq!(billing_run_failures(&s).await, 2.0, "February's run failed too");
    assert_eq!(organizations(&february), vec![globex.clone()]);
    let reason = february["failed"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("2026-01"), "February names the month it waits for: {reason}");

    // The operator fixes the add-on: the contract price, and an end in
    // February. An organization's admin may do neither.
    let admin =
        s.post(&format!("/api/v1/organizations/{acme}/tokens"), Some(OPERATOR), json!({ "role": "admin" })).await;
    let admin = id(&admin.expect(201)["token"]);
    let reprice = format!("/api/v1/subscriptions/{acme}/addons/{addon_id}/reprice");
    let end = format!("/api/v1/subscriptions/{acme}/addons/{addon_id}/end");
    let head = s.head().await;
    s.post(&reprice, Some(&admin), json!({ "annualPrice": "1.00" })).await.problem(403, "forbidden");
    s.post(&end, Some(&admin), json!({ "effectiveDate": "2026-02-15" })).await.problem(403, "forbidden");
    s.post(&reprice, Some(OPERATOR), json!({ "annualPrice": "10000000.01" })).await.problem(400, "validation_failed");
    assert_eq!(s.head().await, head, "refusals append nothing");
    s.post(&reprice, Some(OPERATOR), json!({ "annualPrice": "4000.00" })).await.expect(200);
    s.post(&end, Some(OPERATOR), json!({ "effectiveDate": "2026-02-15" })).await.expect(200);

    // The next run of January issues Acme's invoice; then February's.
    let january = run(json!({ "period": "2026-01" })).await.expect(200);
    assert_eq!(billing_run_failures(&s).await, 2.0, "a run that issued everything is no failure");
    assert_eq!((organizations(&january), &january["failed"]), (vec![acme.clone()], &json!([])));
    let january_lines = lines(&january["invoices"][0]);
    // 1,000 TB × 4,000.00 a year: 4,000,000.00 / 12 for the whole month.
    assert_eq!(january_lines[1], ("addon".to_owned(), Some(31), "333333.33".to_owned()));
    let february = run(json!({ "period": "2026-02" })).await.expect(200);
    assert_eq!((organizations(&february), &february["failed"]), (vec![acme.clone()], &json!([])));
    // Ended from 15 February: 14 days of 28.
    assert_eq!(lines(&february["invoices"][0])[1], ("addon".to_owned(), Some(14), "166666.67".to_owned()));
    let cli = backend.cli(&["billing", "run", "--period", "2026-02"]).await;
    assert!(cli.status.success(), "nothing is left failing: {}", String::from_utf8_lossy(&cli.stderr));
}

/// Finding 2 of issue 11: customers chose their own prices. An
/// organization's admin buys at the catalog price; a price in its request,
/// or an add-on without a catalog price, is the operator's alone.
async fn customers_buy_at_catalog_prices(backend: Backend) {
    let s = backend.start().await;
    let acme = s.create_org("Acme").await;
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    let admin =
        s.post(&format!("/api/v1/organizations/{acme}/tokens"), Some(OPERATOR), json!({ "role": "admin" })).await;
    let admin = id(&admin.expect(201)["token"]);
    let addons = format!("/api/v1/subscriptions/{acme}/addons");
    let upgrade = format!("/api/v1/subscriptions/{acme}/upgrade");
    let head = s.head().await;
    let refused = [
        (
            &addons,
            json!({ "kind": "extra_data_tb", "quantity": 1000, "annualPrice": "0.01", "effectiveDate": "2026-01-01" }),
        ),
        (
            &addons,
            json!({ "kind": "extra_data_tb", "quantity": 1, "annualPrice": "5000.00", "effectiveDate": "2026-01-01" }),
        ),
        (
            &addons,
            json!({ "kind": "training_session", "quantity": 1, "oneTimePrice": "1.00", "effectiveDate": "2026-01-01" }),
        ),
        (&addons, json!({ "kind": "custom_module", "quantity": 1, "effectiveDate": "2026-01-01" })),
        (&addons, json!({ "kind": "dedicated_support", "quantity": 1, "effectiveDate": "2026-01-01" })),
        (&addons, json!({ "kind": "training_session", "quantity": 1, "effectiveDate": "2026-01-01" })),
        (
            &upgrade,
            json!({ "targetTier": "professional",
            "addons": [ { "kind": "extra_data_tb", "quantity": 10, "annualPrice": "0.01" } ] }),
        ),
        (&upgrade, json!({ "targetTier": "enterprise", "addons": [ { "kind": "extra_data_tb", "quantity": 1 } ] })),
    ];
    for (path, body) in refused {
        s.post(path, Some(&admin), body.clone()).await.problem(403, "forbidden");
    }
    assert_eq!(s.head().await, head, "refusals append nothing");

    // At the catalog price: 5,000.00 a TB a year on starter.
    let bought = json!({ "kind": "extra_data_tb", "quantity": 2, "effectiveDate": "2026-01-01" });
    s.post(&addons, Some(&admin), bought).await.expect(201);
    let details = s.subscription(&acme, &admin).await;
    assert_eq!(
        (&details["addons"][0]["annualPrice"], &details["addons"][0]["quantity"]),
        (&json!("5000.00"), &json!(2))
    );
    // Upgraded with an add-on: professional's price, 4,000.00.
    let body = json!({ "targetTier": "professional", "addons": [ { "kind": "extra_data_tb", "quantity": 1 } ] });
    s.post(&upgrade, Some(&admin), body).await.expect(200);
    let details = s.subscription(&acme, &admin).await;
    assert_eq!(details["addons"][1]["annualPrice"], "4000.00");

    // The operator sets prices, within the bounds.
    let price = |price: &str| json!({ "kind": "custom_module", "quantity": 1, "annualPrice": price, "effectiveDate": "2026-01-01" });
    s.post(&addons, Some(OPERATOR), price("10000000.00")).await.expect(201);
    for bad in ["10000000.01", "1.001", "0", "-5"] {
        s.post(&addons, Some(OPERATOR), price(bad)).await.problem(400, "validation_failed");
    }
    let many = json!({ "kind": "extra_data_tb", "quantity": 1001, "effectiveDate": "2026-01-01" });
    s.post(&addons, Some(OPERATOR), many).await.problem(400, "validation_failed");
    let other = s.create_org("Initech").await;
    let enterprise = |rate: &str| {
        json!({ "organizationId": other, "tier": "enterprise", "startDate": "2026-01-01",
        "enterpriseOverageRate": rate })
    };
    for bad in ["10000000.01", "3000.001"] {
        s.post("/api/v1/subscriptions", Some(OPERATOR), enterprise(bad)).await.problem(400, "validation_failed");
    }
    s.post("/api/v1/subscriptions", Some(OPERATOR), enterprise("3500.00")).await.expect(201);
}

/// The `replay` binary built beside `ledger` (`cargo test --workspace`).
fn replay_binary() -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_ledger")).with_file_name("replay");
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "{} is missing: CI runs `cargo test --workspace`", path.display());
    eprintln!("SKIPPED: the replay check needs the replay binary; build it with `cargo test --workspace`");
    None
}

/// January's invoice as the billing run of a ledger before issue 11 wrote
/// it: `InvoiceIssued` at schema version 1, computed from the log as that
/// run computed it.
async fn plant_a_version_1_invoice(backend: &Backend, subscription_id: &str) {
    use domain::billing::{InvoiceIssuedV1, InvoiceV1, invoice, invoice_id};
    use domain::event::LedgerEvent;
    let log = backend.open_log().await;
    let head = log.head().await.unwrap().sequence;
    let (mut subscription, mut usage) =
        (domain::subscription::Subscription::default(), domain::usage::Usage::default());
    for record in log.read_page(1..=head, 10_000).await.unwrap() {
        let payload = record.payload.as_deref().unwrap_or_default();
        match LedgerEvent::decode(&record.header, payload).unwrap() {
            Some(LedgerEvent::Subscription(event)) if record.header.stream_id.as_str().ends_with(subscription_id) => {
                cqrs_es::Aggregate::apply(&mut subscription, event);
            }
            Some(LedgerEvent::Usage(domain::usage::UsageEvent::UsageReported(report))) => {
                usage.apply(&report, record.header.sequence);
            }
            _ => {}
        }
    }
    let january = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let computed = invoice(&subscription, &usage, &domain::catalog::Catalog::builtin(), january, []).unwrap().unwrap();
    let v1 = InvoiceV1::from(&computed);
    let id = domain::SubscriptionId(subscription_id.parse().unwrap());
    let issued = InvoiceIssuedV1 {
        invoice_id: invoice_id(id, january),
        subscription_id: id,
        organization_id: subscription.organization_id.unwrap(),
        digest: v1.digest(),
        invoice: v1,
        usage_sequence: head,
    };
    let event = NewEvent {
        event_id: EventId(Uuid::now_v7()),
        event_type: "InvoiceIssued".into(),
        schema_version: 1,
        occurred_at: Timestamp::parse_rfc3339("2026-02-01T00:00:00Z").unwrap(),
        metadata: Metadata::default().encode(),
        payload: domain::codec::encode(&issued),
    };
    let stream_id = domain::billing::stream(id, january);
    let command = Command { stream_id, expected: ExpectedRevision::NoStream, idempotency: None, events: vec![event] };
    log.append_one(command).await.expect("the store appends").expect("the command is accepted");
}

/// Finding 7 of issue 11: adjustment lines name their reports, which
/// changed what `InvoiceIssued` stores. An invoice issued at version 1 (a
/// log from before) still counts as issued, is adjusted by a version 2
/// invoice, and `replay verify` re-derives both byte for byte.
async fn invoices_of_both_schema_versions_verify(backend: Backend) {
    let s = backend.start().await;
    let acme = s.create_org("Acme").await;
    let created = s.create_subscription(&acme, "professional", "2026-01-01", true).await;
    let (sub, key) = (id(&created["subscriptionId"]), id(&created["licenseKey"]));
    s.post("/api/v1/license/validate", None, json!({ "licenseKey": key })).await.expect(200);
    let report = |day: &str, gb: u64| {
        json!({ "licenseKey": key, "reportingPeriod": day,
            "metrics": { "activeUsers": 1, "dataVolumeGB": gb, "apiCallsCount": 0, "trainingHours": 0 } })
    };
    s.move_clock("2026-01-06T12:00:00Z").await;
    s.post("/api/v1/usage/report", None, report("2026-01-06", 4500)).await.expect(200);
    s.move_clock("2026-02-01T00:00:00Z").await;
    plant_a_version_1_invoice(&backend, &sub).await;
    let invoices = format!("/api/v1/organizations/{acme}/invoices");
    common::poll("the server to see January's invoice", || async {
        let listed = s.get(&invoices, Some(OPERATOR)).await.expect(200);
        (listed[0]["total"] == "13000.00").then_some(())
    })
    .await;
    let run = |period: &str| s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": period }));
    assert_eq!(run("2026-01").await.expect(200)["invoices"], json!([]), "January is issued already");

    s.move_clock("2026-02-02T00:00:00Z").await;
    let lowered = s.post("/api/v1/usage/report", None, report("2026-01-06", 100)).await.expect(200);
    s.move_clock("2026-03-01T00:00:00Z").await;
    let february = run("2026-02").await.expect(200);
    let line = &february["invoices"][0]["lines"][1];
    assert_eq!((&line["amount"], &line["reports"]), (&json!("-8000.00"), &json!([lowered["sequence"]])));

    let Some(replay) = replay_binary() else { return };
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    let mut command = std::process::Command::new(replay);
    command.args(["verify", "--public-key", keys["checkpoints"]["current"].as_str().unwrap()]);
    match backend.database_url() {
        Some(url) => command.args(["--database-url", url]),
        None => command.arg("--data-dir").arg(backend.data_dir()),
    };
    let output = command.env_remove("DATABASE_URL").output().expect("replay runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("ok invoices: 2 re-derived"), "{stdout}");
}

/// Issue #14: a change of plan previewed over HTTP appends nothing and
/// answers what its command then does; another organization's admin gets
/// 404, a price in an admin's preview 403, a bad body problem+json 400;
/// the issued invoice is `open` and `amountDue` holds it.
async fn a_plan_change_is_previewed_then_confirmed(backend: Backend) {
    let s = backend.start().await;
    let acme = s.create_org("Acme").await;
    let other = s.create_org("Other").await;
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    s.create_subscription(&other, "starter", "2026-01-01", true).await;
    s.move_clock("2026-01-10T00:00:00Z").await;
    let mut tokens = Vec::new();
    for org in [&acme, &other] {
        let issued =
            s.post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), json!({ "role": "admin" })).await;
        tokens.push(id(&issued.expect(201)["token"]));
    }
    let (admin, other_admin) = (tokens[0].clone(), tokens[1].clone());
    let preview = format!("/api/v1/subscriptions/{acme}/changes/preview");
    let upgrade = json!({ "change": "upgrade", "targetTier": "professional", "effectiveDate": "2026-01-16" });
    let head = s.head().await;
    let answer = s.post(&preview, Some(&admin), upgrade.clone()).await.expect(200);
    assert_eq!((&answer["proratedAmount"], &answer["invoiceAfter"]["total"]), (&json!("1290.32"), &json!("3790.33")));
    assert_eq!((&answer["limitsBefore"]["maxUsers"], &answer["limitsAfter"]["maxUsers"]), (&json!(5), &json!(10)));
    s.post(&preview, Some(&other_admin), upgrade.clone()).await.problem(404, "not_found");
    let priced = json!({ "change": "addon", "kind": "extra_data_tb", "quantity": 1, "annualPrice": "1.00",
                         "effectiveDate": "2026-01-16" });
    s.post(&preview, Some(&admin), priced).await.problem(403, "forbidden");
    s.post(&preview, Some(&admin), json!({ "change": "refund" })).await.problem(400, "validation_failed");
    assert_eq!(s.head().await, head, "no preview appended anything");

    let confirm = json!({ "targetTier": "professional", "effectiveDate": "2026-01-16" });
    let upgraded = s.post(&format!("/api/v1/subscriptions/{acme}/upgrade"), Some(&admin), confirm).await.expect(200);
    assert_eq!(upgraded["proratedAmount"], answer["proratedAmount"]);

    s.move_clock("2026-02-01T00:00:00Z").await;
    let licenses = format!("/api/v1/organizations/{acme}/licenses");
    common::poll("the old key's supersede window to close", || async {
        let listed = s.get(&licenses, Some(OPERATOR)).await.expect(200);
        listed.as_array().unwrap().iter().any(|l| l["revocationReason"] == "superseded").then_some(())
    })
    .await;
    s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    let invoices = s.get(&format!("/api/v1/organizations/{acme}/invoices"), Some(&admin)).await.expect(200);
    assert_eq!((&invoices[0]["status"], &invoices[0]["total"]), (&json!("open"), &json!("3790.33")));
    let billing = &s.subscription(&acme, &admin).await["billing"];
    assert_eq!((&billing["amountDue"], &billing["paymentMethod"]), (&json!("3790.33"), &json!("invoice")));
}

backends!(
    a_plan_change_is_previewed_then_confirmed,
    invoices_of_both_schema_versions_verify,
    a_month_is_invoiced_once,
    the_command_line_run_matches_the_route,
    an_invoice_that_cannot_be_computed_fails_alone_until_the_operator_fixes_it,
    customers_buy_at_catalog_prices
);
