//! Billing runs for the billing team (issue 15): a month's preview compared
//! with the invoices issued (`new`, `same`, `differs`, `voided_would_rebill`),
//! a run in the background with its progress, a failing subscription named
//! while the others are issued, refusals; the console's Billing runs page in
//! a real browser (axe, screenshots in docs/console/); and a measurement at
//! 2,000 subscriptions. Against the real binary, on both backends.
#![allow(clippy::too_many_lines)]

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;
#[allow(dead_code)]
mod browser;

use std::time::Instant;

use browser::Browser;
use common::planted::{overflowing_addon, plant};
use common::{Backend, OPERATOR, Server, id};
use domain::catalog::Tier;
use domain::subscription::{SubscriptionCreated, SubscriptionEvent};
use domain::{EventId, LicenseId, Metadata, OrganizationId, SubscriptionId, Timestamp};
use serde_json::{Value, json};
use store::{Command, ExpectedRevision, NewEvent};
use uuid::Uuid;

const PORTAL: &str = "http://portal.test";

backends!(
    a_preview_compares_the_month_with_its_invoices_and_the_background_run_issues_it,
    a_failing_subscription_is_named_and_the_others_are_issued,
    bad_requests_and_other_roles_are_refused,
    the_console_previews_a_month_and_follows_its_run,
);

/// Every item of a preview, all pages, by subscription id.
async fn preview_all(s: &Server, period: &str, limit: usize) -> (Vec<Value>, Vec<Value>) {
    let (mut items, mut failed, mut cursor) = (Vec::new(), Vec::new(), String::new());
    for _ in 0..1_000 {
        let path = format!("/api/v1/billing/runs/preview?period={period}&limit={limit}&cursor={cursor}");
        let page = s.get(&path, Some(OPERATOR)).await.expect(200);
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        failed.extend(page["failed"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return (items, failed),
        }
    }
    panic!("the preview never ended");
}

fn by_subscription<'a>(items: &'a [Value], subscription: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["subscriptionId"] == subscription)
        .unwrap_or_else(|| panic!("{subscription} not in {items:?}"))
}

/// Starts a background run and waits (bounded) until it is no longer running.
async fn run_in_background(s: &Server, period: &str) -> Value {
    let started = s.post("/api/v1/billing/runs/background", Some(OPERATOR), json!({ "period": period })).await;
    let started = started.expect(202);
    assert_eq!((&started["period"], &started["state"]), (&json!(period), &json!("running")), "{started}");
    wait_for_run(s, &id(&started["id"])).await
}

async fn wait_for_run(s: &Server, run: &str) -> Value {
    common::poll("the background run to finish", || async {
        let progress = s.get(&format!("/api/v1/billing/runs/{run}"), Some(OPERATOR)).await.expect(200);
        (progress["state"] != "running").then_some(progress)
    })
    .await
}

fn report(key: &str, day: &str, gb: u64) -> Value {
    json!({ "licenseKey": key, "reportingPeriod": day,
        "metrics": { "activeUsers": 1, "dataVolumeGB": gb, "apiCallsCount": 0, "trainingHours": 0 } })
}

async fn a_preview_compares_the_month_with_its_invoices_and_the_background_run_issues_it(backend: Backend) {
    let s = backend.start().await;
    let (acme, globex, initech) =
        (s.create_org("Acme").await, s.create_org("Globex").await, s.create_org("Initech").await);
    let acme_sub = id(&s.create_subscription(&acme, "starter", "2026-01-01", true).await["subscriptionId"]);
    let created = s.create_subscription(&globex, "professional", "2026-01-01", true).await;
    let (globex_sub, globex_key) = (id(&created["subscriptionId"]), id(&created["licenseKey"]));
    let initech_sub = id(&s.create_subscription(&initech, "starter", "2026-01-01", true).await["subscriptionId"]);
    s.post("/api/v1/license/validate", None, json!({ "licenseKey": globex_key })).await.expect(200);
    s.move_clock("2026-01-06T12:00:00Z").await;
    s.post("/api/v1/usage/report", None, report(&globex_key, "2026-01-06", 2000)).await.expect(200);

    // Before the month ends: a forecast, every invoice new, nothing appended.
    let head = s.head().await;
    let (forecast, failed) = preview_all(&s, "2026-01", 200).await;
    assert_eq!(s.head().await, head, "a preview appends nothing");
    assert_eq!((forecast.len(), failed.len()), (3, 0), "{forecast:?}");
    assert!(forecast.iter().all(|i| i["comparison"] == "new" && i["issued"].is_null()), "{forecast:?}");

    // January is issued by the synchronous run, as before.
    s.move_clock("2026-02-01T00:00:00Z").await;
    let january = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    assert_eq!(january["invoices"].as_array().unwrap().len(), 3);
    let invoice_of = |org: &str| {
        january["invoices"].as_array().unwrap().iter().find(|i| i["organizationId"] == org).unwrap().clone()
    };
    let (acme_invoice, globex_invoice, initech_invoice) =
        (invoice_of(&acme), invoice_of(&globex), invoice_of(&initech));

    // Plant the differences: late usage over Globex's limit (3,000 GB), a
    // void of Initech's invoice, and a new subscription from 20 January.
    s.move_clock("2026-02-02T00:00:00Z").await;
    s.post("/api/v1/usage/report", None, report(&globex_key, "2026-01-06", 4250)).await.expect(200);
    let void = format!("/api/v1/invoices/{}/void", id(&initech_invoice["id"]));
    s.post(&void, Some(OPERATOR), json!({ "reason": "sent to the wrong address" })).await.expect(200);
    let hooli = s.create_org("Hooli").await;
    let hooli_sub = id(&s.create_subscription(&hooli, "starter", "2026-01-20", true).await["subscriptionId"]);

    // Pages of one subscription walk the same items as one page of all.
    let head = s.head().await;
    let (items, failed) = preview_all(&s, "2026-01", 1).await;
    assert_eq!(s.head().await, head, "a preview appends nothing");
    assert_eq!((items.len(), failed.len()), (4, 0), "{items:?}");
    assert_eq!(preview_all(&s, "2026-01", 200).await.0, items);

    let acme_item = by_subscription(&items, &acme_sub);
    assert_eq!(acme_item["comparison"], "same", "{acme_item}");
    assert_eq!(acme_item["issued"]["id"], acme_invoice["id"]);
    assert_eq!(acme_item["computed"]["digest"], acme_invoice["digest"]);
    assert_eq!(acme_item["differences"], json!([]));

    let globex_item = by_subscription(&items, &globex_sub);
    assert_eq!(globex_item["comparison"], "differs", "{globex_item}");
    assert_eq!(
        (&globex_item["issued"]["id"], &globex_item["issued"]["total"]),
        (&globex_invoice["id"], &json!("5000.00"))
    );
    // 1,250 GB over 3,000: two started TB at 4,000.00 each.
    assert_eq!(
        globex_item["differences"],
        json!([
            { "what": "data_overage", "issued": null, "now": "8000.00" },
            { "what": "total", "issued": "5000.00", "now": "13000.00" },
        ])
    );

    let initech_item = by_subscription(&items, &initech_sub);
    assert_eq!(initech_item["comparison"], "voided_would_rebill", "{initech_item}");
    assert_eq!(initech_item["issued"]["id"], initech_invoice["id"], "the voided invoice is shown");
    assert_ne!(initech_item["computed"]["id"], initech_invoice["id"], "a rebill takes a new id");
    assert_eq!(initech_item["computed"]["total"], initech_invoice["total"]);

    let hooli_item = by_subscription(&items, &hooli_sub);
    assert_eq!((&hooli_item["comparison"], &hooli_item["issued"]), (&json!("new"), &Value::Null), "{hooli_item}");
    // 12 days of 31 at 2,500.00 a month.
    assert_eq!(hooli_item["computed"]["total"], "967.74");

    // The background run issues exactly the two the preview called new or
    // rebilled, with the preview's ids and totals.
    let done = run_in_background(&s, "2026-01").await;
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(
        (&done["subscriptionsTotal"], &done["subscriptionsDone"], &done["invoicesIssued"], &done["failures"]),
        (&json!(4), &json!(4), &json!(2), &json!(0)),
        "{done}"
    );
    assert_eq!((&done["failed"], &done["actor"]), (&json!([]), &json!("operator")));
    assert!(done["sequence"].as_u64().unwrap() >= head + 2, "the run appended its two invoices: {done}");
    for (org, item) in [(&initech, initech_item), (&hooli, hooli_item)] {
        let seen = done["sequence"].as_u64().unwrap();
        let listed = s.get(&format!("/api/v1/organizations/{org}/invoices?minSequence={seen}"), Some(OPERATOR)).await;
        let listed = listed.expect(200);
        let issued = listed.as_array().unwrap().iter().find(|i| i["status"] != "void").unwrap().clone();
        assert_eq!(
            (&issued["id"], &issued["total"], &issued["digest"]),
            (&item["computed"]["id"], &item["computed"]["total"], &item["computed"]["digest"]),
            "the run issued what the preview showed"
        );
    }

    // Now every month is issued: the preview says so, and a second run
    // (background or synchronous) issues nothing.
    let (after, _) = preview_all(&s, "2026-01", 200).await;
    let comparisons: Vec<&Value> = after.iter().map(|i| &i["comparison"]).collect();
    assert_eq!(comparisons.iter().filter(|c| **c == "same").count(), 3, "{after:?}");
    assert_eq!(by_subscription(&after, &globex_sub)["comparison"], "differs");
    let head = s.head().await;
    let again = run_in_background(&s, "2026-01").await;
    assert_eq!((&again["state"], &again["invoicesIssued"]), (&json!("finished"), &json!(0)), "{again}");
    assert_ne!(again["id"], done["id"]);
    let sync = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    assert_eq!((&sync["invoices"], s.head().await), (&json!([]), head), "issuing twice issues nothing twice");

    // The runs this node remembers, newest first.
    let recent = s.get("/api/v1/billing/runs/background", Some(OPERATOR)).await.expect(200);
    let ids: Vec<&Value> = recent.as_array().unwrap().iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, vec![&again["id"], &done["id"]]);
}

async fn a_failing_subscription_is_named_and_the_others_are_issued(backend: Backend) {
    let s = backend.start().await;
    let (acme, globex) = (s.create_org("Acme").await, s.create_org("Globex").await);
    let acme_sub = id(&s.create_subscription(&acme, "starter", "2026-01-01", true).await["subscriptionId"]);
    let globex_sub = id(&s.create_subscription(&globex, "professional", "2026-01-01", true).await["subscriptionId"]);
    let addon = overflowing_addon();
    let addon_id = addon.addon_id.0.to_string();
    plant(&backend, &acme_sub, addon.into()).await;
    common::poll("the server to see the planted add-on", || async {
        let details = s.subscription(&acme, OPERATOR).await;
        details["addons"].as_array().unwrap().iter().any(|a| a["id"] == addon_id.as_str()).then_some(())
    })
    .await;
    s.move_clock("2026-02-01T00:00:00Z").await;

    let (items, failed) = preview_all(&s, "2026-01", 200).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!((&items[0]["subscriptionId"], &items[0]["comparison"]), (&json!(globex_sub), &json!("new")));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!((&failed[0]["subscriptionId"], &failed[0]["organizationId"]), (&json!(acme_sub), &json!(acme)));
    assert!(failed[0]["reason"].as_str().unwrap().contains(&addon_id), "{failed:?}");

    let done = run_in_background(&s, "2026-01").await;
    assert_eq!(done["state"], "finished", "a subscription's failure does not stop the run: {done}");
    assert_eq!(
        (&done["subscriptionsDone"], &done["invoicesIssued"], &done["failures"]),
        (&json!(2), &json!(1), &json!(1)),
        "{done}"
    );
    assert_eq!(done["failed"][0]["subscriptionId"], acme_sub.as_str());
    assert!(done["failed"][0]["reason"].as_str().unwrap().contains(&addon_id), "{done}");
    let listed_globex = s.get(&format!("/api/v1/organizations/{globex}/invoices"), Some(OPERATOR)).await.expect(200);
    assert_eq!(listed_globex[0]["id"], items[0]["computed"]["id"], "Globex's invoice is issued");
    let listed = s.get(&format!("/api/v1/organizations/{acme}/invoices"), Some(OPERATOR)).await.expect(200);
    assert_eq!(listed, json!([]), "Acme's is not");

    // Globex's add-on now overflows too: its issued invoice stands, and the
    // preview says it is issued and no longer computes (the run issues nothing).
    let globex_addon = overflowing_addon();
    let globex_addon_id = globex_addon.addon_id.0.to_string();
    plant(&backend, &globex_sub, globex_addon.into()).await;
    common::poll("the server to see Globex's planted add-on", || async {
        let details = s.subscription(&globex, OPERATOR).await;
        details["addons"].as_array().unwrap().iter().any(|a| a["id"] == globex_addon_id.as_str()).then_some(())
    })
    .await;
    let (items, failed) = preview_all(&s, "2026-01", 200).await;
    assert_eq!((items.len(), failed.len()), (1, 1), "{items:?} {failed:?}");
    assert_eq!(
        (&items[0]["subscriptionId"], &items[0]["comparison"], &items[0]["computed"]),
        (&json!(globex_sub), &json!("already_issued"), &Value::Null)
    );
    assert_eq!(items[0]["issued"]["id"], listed_globex[0]["id"]);
}

async fn bad_requests_and_other_roles_are_refused(backend: Backend) {
    let s = backend.start().await;
    let acme = s.create_org("Acme").await;
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    let head = s.head().await;
    let server = &s;
    let preview = |query: String| async move {
        let path = format!("/api/v1/billing/runs/preview?{query}");
        server.get(&path, Some(OPERATOR)).await
    };
    let start = |token: String, body: Value| async move {
        server.post("/api/v1/billing/runs/background", Some(&token), body).await
    };
    for period in ["2026-1", "2026-13", "January", "", "2026-01-01"] {
        preview(format!("period={period}")).await.problem(400, "validation_failed");
        start(OPERATOR.into(), json!({ "period": period })).await.problem(400, "validation_failed");
    }
    preview(String::new()).await.problem(400, "validation_failed");
    for query in ["limit=0", "limit=201", "cursor=not-a-uuid"] {
        preview(format!("period=2026-01&{query}")).await.problem(400, "validation_failed");
    }
    start(OPERATOR.into(), json!({ "period": "2026-01", "preview": true })).await.problem(400, "validation_failed");
    start(OPERATOR.into(), json!({ "period": "2026-01" })).await.problem(409, "month_not_ended");
    let unknown = format!("/api/v1/billing/runs/{}", Uuid::now_v7());
    s.get(&unknown, Some(OPERATOR)).await.problem(404, "not_found");
    assert_eq!(s.head().await, head, "refusals append nothing");
    let recent = s.get("/api/v1/billing/runs/background", Some(OPERATOR)).await.expect(200);
    assert_eq!(recent, json!([]), "no run was started");

    // Support staff and the auditor read, but run nothing and see no run.
    let body = json!({ "name": "support automation", "role": "support", "expiresInDays": 30 });
    let support = id(&s.post("/api/v1/staff/tokens", Some(OPERATOR), body).await.expect(201)["token"]);
    let head = s.head().await;
    for token in [support.as_str(), common::AUDITOR] {
        s.get("/api/v1/billing/runs/preview?period=2026-01", Some(token)).await.problem(403, "forbidden");
        start(token.into(), json!({ "period": "2025-12" })).await.problem(403, "forbidden");
        s.get("/api/v1/billing/runs/background", Some(token)).await.problem(403, "forbidden");
        s.get(&unknown, Some(token)).await.problem(403, "forbidden");
    }
    assert_eq!(s.head().await, head, "refusals append nothing");
}

/// Signs a staff user in to the console in the browser with a link from
/// `ledger staff login-link`.
async fn console_sign_in(b: &Browser, backend: &Backend, email: &str) {
    let link = backend.cli(&["staff", "login-link", "--email", email, "--portal-url", PORTAL]).await;
    assert!(link.status.success(), "login-link: {}", String::from_utf8_lossy(&link.stderr));
    let link = String::from_utf8(link.stdout).unwrap().trim().to_owned();
    b.go(link.strip_prefix(PORTAL).expect("a link on the portal's URL")).await;
    b.click("#use-link").await;
    b.find("#me").await;
}

async fn the_console_previews_a_month_and_follows_its_run(backend: Backend) {
    if !browser::peers_available(module_path!()) {
        return;
    }
    let s = backend.start_with(&["--portal-insecure-cookies", "--portal-url", PORTAL]).await;
    let (acme, globex) = (s.create_org("Acme").await, s.create_org("Globex").await);
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    s.create_subscription(&globex, "professional", "2026-01-01", true).await;
    s.move_clock("2026-02-01T00:00:00Z").await;
    let january = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    let globex_invoice = january["invoices"].as_array().unwrap().iter().find(|i| i["organizationId"] == globex);
    let void = format!("/api/v1/invoices/{}/void", id(&globex_invoice.unwrap()["id"]));
    s.post(&void, Some(OPERATOR), json!({ "reason": "sent twice" })).await.expect(200);
    let hooli = s.create_org("Hooli").await;
    s.create_subscription(&hooli, "starter", "2026-01-20", true).await;
    for (name, email, role) in [("Bea", "bea@vendor.test", "billing"), ("Sam", "sam@vendor.test", "support")] {
        let body = json!({ "name": name, "email": email, "role": role });
        s.post("/api/v1/staff", Some(OPERATOR), body).await.expect(201);
    }

    // Support staff see no Billing runs link, and the page refuses them.
    let b = Browser::start_with_shots(&s.base, &backend, "console").await;
    console_sign_in(&b, &backend, "sam@vendor.test").await;
    assert!(!b.client.source().await.unwrap().contains("/console/runs"), "no link for support");
    b.go("/console/runs").await;
    assert!(b.client.source().await.unwrap().contains("Not allowed"), "{}", b.client.source().await.unwrap());
    drop(b);

    let b = Browser::start_with_shots(&s.base, &backend, "console").await;
    console_sign_in(&b, &backend, "bea@vendor.test").await;
    b.click("nav a[href='/console/runs']").await;
    b.find("#run-period").await;
    b.client.execute("document.getElementById('run-period').value = '2026-01';", vec![]).await.unwrap();
    b.click("#preview").await;
    let table = b.text("#preview-table").await;
    assert_eq!(
        (table.matches("same").count(), table.matches("voided → would rebill").count(), table.matches("new").count()),
        (1, 1, 1),
        "{table}"
    );
    assert!(table.contains("967.74"), "Hooli's 12 days: {table}");
    b.accessible("the billing run preview").await;
    b.screenshot("billing-run-preview").await;

    let head = s.head().await;
    b.click("#issue").await;
    b.find("#run-state").await;
    let path = b.client.current_url().await.unwrap().path().to_owned();
    assert!(path.starts_with("/console/runs/"), "{path}");
    let state = common::poll("the run's page to say finished", || async {
        b.go(&path).await;
        let state = b.text("#run-state").await;
        (state == "finished").then_some(state)
    })
    .await;
    assert_eq!(state, "finished");
    assert_eq!(b.text("#run-done").await, "3 of 3");
    assert_eq!(b.text("#run-issued").await, "2");
    assert_eq!(b.text("#run-failures").await, "0");
    assert!(s.head().await > head, "the run appended its invoices");
    b.accessible("the billing run's progress").await;
    b.screenshot("billing-run-progress").await;

    // The issue form checks its CSRF token: a forged post starts nothing.
    let session = b.cookie("ledger_console_session").await;
    let forged = browser::http()
        .post(s.url("/console/runs"))
        .header("cookie", format!("ledger_console_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("period=2026-01&csrf=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let recent = s.get("/api/v1/billing/runs/background", Some(OPERATOR)).await.expect(200);
    assert_eq!(recent.as_array().unwrap().len(), 1, "{recent}");
}

/// Subscriptions of the measurement: a third each Starter, Professional
/// and Enterprise, from 1 January, appended straight to the log.
const MEASURED_SUBSCRIPTIONS: usize = 2_000;

async fn plant_subscriptions(backend: &Backend) {
    let log = backend.open_log().await;
    let january = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let at = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let mut commands = Vec::new();
    for n in 0..MEASURED_SUBSCRIPTIONS {
        let id = SubscriptionId(Uuid::now_v7());
        let created: SubscriptionEvent = SubscriptionCreated {
            id,
            organization_id: OrganizationId(Uuid::now_v7()),
            tier: [Tier::Starter, Tier::Professional, Tier::Enterprise][n % 3],
            catalog_version: 1,
            start_date: january,
            end_date: domain::calendar::term_end(january),
            auto_renew: true,
            max_deployments: 1,
            enterprise_overage_rate: None,
            license_id: LicenseId(Uuid::now_v7()),
        }
        .into();
        commands.push(Command {
            stream_id: id.stream(),
            expected: ExpectedRevision::NoStream,
            idempotency: None,
            events: vec![NewEvent::from_event(&created, EventId(Uuid::now_v7()), at, &Metadata::default())],
        });
        if commands.len() == 200 || n + 1 == MEASURED_SUBSCRIPTIONS {
            for outcome in log.append(std::mem::take(&mut commands)).await.unwrap() {
                outcome.unwrap();
            }
        }
    }
}

/// README, "Usage reports and the billing run": the whole preview (every
/// page) and a background run at 2,000 subscriptions, over HTTP, timed
/// once on SQLite.
#[tokio::test]
async fn a_preview_and_a_background_run_of_two_thousand_subscriptions() {
    let backend = Backend::sqlite().await;
    let s = backend.start().await;
    plant_subscriptions(&backend).await;
    s.move_clock("2026-02-01T00:00:00Z").await;
    common::poll("the server to see the planted subscriptions", || async {
        let page = s.get("/api/v1/billing/runs/preview?period=2026-01&limit=1", Some(OPERATOR)).await.expect(200);
        (page["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;

    let started = Instant::now();
    let (items, failed) = preview_all(&s, "2026-01", 200).await;
    let previewed = started.elapsed();
    assert_eq!((items.len(), failed.len()), (MEASURED_SUBSCRIPTIONS, 0));
    assert!(items.iter().all(|i| i["comparison"] == "new"));

    let started = Instant::now();
    let run = s.post("/api/v1/billing/runs/background", Some(OPERATOR), json!({ "period": "2026-01" })).await;
    let run = run.expect(202);
    let answered = started.elapsed();
    // A second start while it runs (ten pages of appends take far longer
    // than one request) answers the same run, 200, and starts none.
    let second = s.post("/api/v1/billing/runs/background", Some(OPERATOR), json!({ "period": "2026-01" })).await;
    let second = second.expect(200);
    assert_eq!((&second["id"], &second["state"]), (&run["id"], &json!("running")), "one run of a month at a time");
    let done = wait_for_run(&s, &id(&run["id"])).await;
    let ran = started.elapsed();
    let recent = s.get("/api/v1/billing/runs/background", Some(OPERATOR)).await.expect(200);
    assert_eq!(recent.as_array().unwrap().len(), 1, "{recent}");
    assert_eq!(
        (&done["state"], &done["subscriptionsDone"], &done["invoicesIssued"]),
        (&json!("finished"), &json!(MEASURED_SUBSCRIPTIONS), &json!(MEASURED_SUBSCRIPTIONS)),
        "{done}"
    );
    println!(
        "billing runs at {MEASURED_SUBSCRIPTIONS} subscriptions (SQLite): preview of every page {:.3} s, \
         background run answered in {:.3} s and finished within {:.3} s",
        previewed.as_secs_f64(),
        answered.as_secs_f64(),
        ran.as_secs_f64()
    );
}
