//! The retention job (issue 16) on a ledger driven through its use cases
//! with the manual clock, then checked by the `replay` binary: moved 3
//! years, the usage is retired (the invoice is checked against its
//! recorded inputs, the read models keep the invoice), and moved 7 years,
//! the cancelled organization is anonymized (no e-mail left in the read
//! models). `replay verify` passes after each. On SQLite, and on
//! PostgreSQL when `DATABASE_URL` is set.

#![allow(clippy::too_many_lines)]

use std::time::Duration;

use chrono::NaiveDate;
use domain::catalog::Tier;
use domain::organization::Role;
use domain::{Metadata, OrganizationId, SubscriptionId, Timestamp};
use rust_decimal::Decimal;
use usecases::command::Context;
use usecases::organizations::{self, AddUserInput, CreateOrganizationInput};
use usecases::retention::{self, RetentionSettings};
use usecases::subscriptions::{self, CancelInput, CreateSubscriptionInput};
use usecases::usage::{UsageIntake, UsageReportInput, UsageSettings};
use usecases::{Caller, Ledger, LedgerConfig};

const EMAIL: &str = "ada.retention@acme.example";
const WAIT: Duration = Duration::from_secs(30);

fn context() -> Context {
    Context {
        metadata: Metadata { actor: Some("operator".into()), ..Metadata::default() },
        idempotency: None,
        credential: Some(usecases::acknowledged::Credential::Operator),
    }
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

async fn open(dir: &std::path::Path, database_url: Option<String>) -> Ledger {
    let config = LedgerConfig {
        data_dir: dir.to_path_buf(),
        database_url,
        clock: "manual:2026-01-01T00:00:00Z".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    };
    Ledger::open(&config).await.expect("the ledger opens")
}

async fn move_to(ledger: &Ledger, at: &str) {
    ledger.clock.advance(Timestamp::parse_rfc3339(at).unwrap()).unwrap().unwrap();
}

async fn caught_up(ledger: &Ledger) {
    let head = ledger.log.head().await.unwrap().sequence;
    ledger.models.wait_for(head, WAIT).await.expect("the read models apply the log");
}

/// An organization with a user, a subscription, January's usage and
/// invoice, then cancelled: its subscription and the usage of it.
async fn history(ledger: &Ledger) -> (OrganizationId, SubscriptionId) {
    let input = CreateOrganizationInput { name: "Acme".into(), domain: None, industry: None, employee_count: None };
    let created = organizations::create_organization(ledger, &Caller::Operator, &context(), input).await.unwrap();
    let organization_id = OrganizationId(created.id);
    let input = AddUserInput { email: EMAIL.into(), role: Role::Admin };
    organizations::add_user(ledger, &Caller::Operator, &context(), organization_id, input).await.unwrap();
    let input = CreateSubscriptionInput {
        organization_id,
        tier: Tier::Starter,
        start_date: day("2026-01-01"),
        auto_renew: false,
        max_deployments: 1,
        enterprise_overage_rate: None,
    };
    let subscription = subscriptions::create_subscription(ledger, &Caller::Operator, &context(), input).await.unwrap();
    caught_up(ledger).await;
    let request = usecases::validation::ValidationRequest {
        license_key: Some(subscription.license_key.clone()),
        deployment_id: None,
        nonce: None,
        client_time: None,
        client_version: None,
        floating: false,
        proof: None,
    };
    usecases::validation::validate(ledger, request, usecases::validation::Origin::default()).await.unwrap();
    caught_up(ledger).await;
    let intake = UsageIntake::new(UsageSettings::default());
    for (at, on, gb) in [("2026-01-05T12:00:00Z", "2026-01-05", 120), ("2026-01-20T12:00:00Z", "2026-01-20", 400)] {
        move_to(ledger, at).await;
        let input = UsageReportInput {
            license_key: subscription.license_key.clone(),
            deployment_id: None,
            day: day(on),
            values: [
                ("activeUsers", Decimal::from(3)),
                ("dataVolumeGB", Decimal::from(gb)),
                ("apiCallsCount", Decimal::from(100)),
                ("trainingHours", Decimal::ONE),
            ],
        };
        usecases::usage::report(ledger, &intake, input).await.unwrap();
    }
    move_to(ledger, "2026-02-01T01:00:00Z").await;
    let run = usecases::billing::run(ledger, &Caller::Operator, "operator", "2026-01", false).await.unwrap();
    assert!(run.failed.is_empty(), "January is billed");
    move_to(ledger, "2026-02-02T00:00:00Z").await;
    let input = CancelInput { immediate: true, effective_date: None };
    subscriptions::cancel(ledger, &Caller::Operator, &context(), organization_id, input).await.unwrap();
    caught_up(ledger).await;
    (organization_id, SubscriptionId(subscription.subscription_id))
}

fn verify(source: &[String]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_replay"))
        .arg("verify")
        .args(source)
        .env_remove("DATABASE_URL")
        .output()
        .expect("the replay binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

async fn retention_after_3_and_7_years(ledger: Ledger, source: Vec<String>, files: Option<std::path::PathBuf>) {
    let (organization_id, subscription_id) = history(&ledger).await;
    let settings = RetentionSettings::default();
    let stripe = usecases::stripe::Stripe::off();
    let stdout = verify(&source);
    assert!(stdout.contains("ok invoices: 1 re-derived"), "{stdout}");

    // Three years and a month on: January's usage is retired.
    move_to(&ledger, "2029-03-15T00:00:00Z").await;
    let dry = retention::run(&ledger, &stripe, ledger.now(), settings, true).await.unwrap();
    assert_eq!((dry.usage_records, dry.sequence), (2, None), "{dry:?}");
    let head = ledger.log.head().await.unwrap().sequence;
    let outcome = retention::run(&ledger, &stripe, ledger.now(), settings, false).await.unwrap();
    assert_eq!(outcome.usage_records, 2, "{outcome:?}");
    assert!(outcome.organizations_anonymized.is_empty(), "{outcome:?}");
    assert_eq!(outcome.sequence, Some(head + 1), "one RetentionApplied: {outcome:?}");
    caught_up(&ledger).await;
    let db = &ledger.models.db;
    let january = projections::models::usage::month(db, subscription_id, day("2026-01-01")).await.unwrap();
    assert!(january.days.is_empty(), "the daily usage rows are retired");
    let invoices = projections::models::invoices::of_subscription(db, subscription_id).await.unwrap();
    assert!(invoices.contains_key(&day("2026-01-01")), "January's invoice (its monthly totals) stays");
    let stdout = verify(&source);
    assert!(
        stdout.contains(
            "0 re-derived from their events byte for byte, 1 checked against recorded inputs (usage retired)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("(2 usage records retired)"), "{stdout}");

    // A run with nothing to do appends nothing.
    let head = ledger.log.head().await.unwrap().sequence;
    let again = retention::run(&ledger, &stripe, ledger.now(), settings, false).await.unwrap();
    assert_eq!((again.usage_records, again.organizations_anonymized.len(), again.sequence), (0, 0, None));
    assert_eq!(ledger.log.head().await.unwrap().sequence, head, "{again:?}");

    // Seven years after the cancellation: the organization is anonymized.
    move_to(&ledger, "2033-03-01T00:00:00Z").await;
    let outcome = retention::run(&ledger, &stripe, ledger.now(), settings, false).await.unwrap();
    assert_eq!(outcome.organizations_anonymized, vec![organization_id], "{outcome:?}");
    caught_up(&ledger).await;
    if let Some(dir) = &files {
        // The purge checkpoints the read models' WAL (TRUNCATE) itself.
        for name in ["readmodels.sqlite", "readmodels.sqlite-wal"] {
            let bytes = std::fs::read(dir.join(name)).unwrap_or_default();
            assert!(!bytes.windows(EMAIL.len()).any(|w| w == EMAIL.as_bytes()), "{name} still holds the e-mail");
        }
    } else {
        let rows = ledger
            .models
            .db
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
                 AND table_name LIKE 'rm_%'",
                Vec::new(),
            )
            .await
            .unwrap();
        for row in rows {
            let table = row.text(0).unwrap().to_owned();
            let sql = format!("SELECT COUNT(*) FROM {table} t WHERE t::text LIKE '%{EMAIL}%'");
            let found = ledger.models.db.query_opt(&sql, Vec::new()).await.unwrap().unwrap().uint(0).unwrap();
            assert_eq!(found, 0, "{table} still holds the e-mail");
        }
    }
    // A later run finds it done.
    let again = retention::run(&ledger, &stripe, ledger.now(), settings, true).await.unwrap();
    assert!(again.organizations_anonymized.is_empty(), "{again:?}");
    let stdout = verify(&source);
    assert!(stdout.contains("checked against recorded inputs (usage retired)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_retention_after_3_and_7_years() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), None).await;
    let source = vec!["--data-dir".to_owned(), dir.path().display().to_string()];
    retention_after_3_and_7_years(ledger, source, Some(dir.path().to_path_buf())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_retention_after_3_and_7_years() {
    let test = "replay::retention::postgres_retention_after_3_and_7_years";
    let Some(url) = store::testing::postgres_url(test) else { return };
    let schema = store::testing::fresh_schema(&url).await.name;
    let separator = if url.contains('?') { '&' } else { '?' };
    let database_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), Some(database_url.clone())).await;
    let source =
        vec!["--data-dir".to_owned(), dir.path().display().to_string(), "--database-url".to_owned(), database_url];
    retention_after_3_and_7_years(ledger, source, None).await;
}

/// A subscription of a new organization starting `start`: its organization,
/// license key and license.
async fn subscribed(ledger: &Ledger, name: &str, start: &str) -> (OrganizationId, String, domain::LicenseId) {
    let input = CreateOrganizationInput { name: name.into(), domain: None, industry: None, employee_count: None };
    let created = organizations::create_organization(ledger, &Caller::Operator, &context(), input).await.unwrap();
    let organization_id = OrganizationId(created.id);
    let input = CreateSubscriptionInput {
        organization_id,
        tier: Tier::Starter,
        start_date: day(start),
        auto_renew: false,
        max_deployments: 1,
        enterprise_overage_rate: None,
    };
    let subscription = subscriptions::create_subscription(ledger, &Caller::Operator, &context(), input).await.unwrap();
    caught_up(ledger).await;
    let listed = usecases::queries::licenses(ledger, &Caller::Operator, organization_id).await.unwrap();
    assert_eq!(listed.len(), 1, "one license listed");
    (organization_id, subscription.license_key, listed[0].id)
}

/// What a validation of `key` answers, without its id and time.
async fn answer(ledger: &Ledger, key: &str) -> (bool, bool, &'static str, Option<domain::LicenseId>) {
    let request = usecases::validation::ValidationRequest {
        license_key: Some(key.to_owned()),
        deployment_id: None,
        nonce: None,
        client_time: None,
        client_version: None,
        floating: false,
        proof: None,
    };
    let answer =
        usecases::validation::validate(ledger, request, usecases::validation::Origin::default()).await.unwrap();
    caught_up(ledger).await;
    (answer.is_valid, answer.is_expired, answer.code, answer.license_id)
}

fn listed(views: &[usecases::views::licensing::LicenseView]) -> Vec<domain::LicenseId> {
    views.iter().map(|view| view.id).collect()
}

/// The privacy log's `LicenseKeysArchived` events' licenses.
async fn archived_events(ledger: &Ledger) -> Vec<Vec<domain::LicenseId>> {
    let page = ledger.log.read_stream(&domain::privacy::privacy_stream(), 1, 1_000).await.unwrap();
    let mut found = Vec::new();
    for record in &page {
        let event = domain::event::LedgerEvent::decode(&record.header, record.event_bytes().unwrap()).unwrap();
        if let Some(domain::event::LedgerEvent::Privacy(domain::privacy::PrivacyEvent::LicenseKeysArchived(e))) = event
        {
            found.push(e.licenses);
        }
    }
    found
}

async fn keys_archived_a_year_after_expiry(ledger: Ledger, source: Vec<String>) {
    let settings = RetentionSettings::default();
    let stripe = usecases::stripe::Stripe::off();
    // A subscription cancelled on 2026-02-02: its key ends then.
    let (ended_org, ended_key, ended_license) = subscribed(&ledger, "Ended", "2026-01-01").await;
    // A license revoked on 2026-02-03 while its subscription runs on.
    let (revoked_org, revoked_key, revoked_license) = subscribed(&ledger, "Revoked", "2026-01-01").await;
    move_to(&ledger, "2026-02-02T00:00:00Z").await;
    let input = CancelInput { immediate: true, effective_date: None };
    subscriptions::cancel(&ledger, &Caller::Operator, &context(), ended_org, input).await.unwrap();
    move_to(&ledger, "2026-02-03T00:00:00Z").await;
    let reason = "key leaked".to_owned();
    usecases::licenses::revoke_license(&ledger, &Caller::Operator, &context(), revoked_license, reason).await.unwrap();
    caught_up(&ledger).await;

    // Less than a year on: nothing archived.
    move_to(&ledger, "2027-01-15T00:00:00Z").await;
    let outcome = retention::run(&ledger, &stripe, ledger.now(), settings, false).await.unwrap();
    assert_eq!((outcome.keys_archived, outcome.sequence), (0, None), "{outcome:?}");

    // A live license, issued later.
    move_to(&ledger, "2027-02-01T00:00:00Z").await;
    let (live_org, live_key, live_license) = subscribed(&ledger, "Live", "2027-02-01").await;

    // A year and a month after the end: the ended key is archived, the live one is not.
    move_to(&ledger, "2027-03-05T00:00:00Z").await;
    let before = answer(&ledger, &ended_key).await;
    assert_eq!((before.0, before.2), (false, "EXPIRED"), "{before:?}");
    let live_before = answer(&ledger, &live_key).await;
    assert!(live_before.0, "{live_before:?}");
    let revoked_before = answer(&ledger, &revoked_key).await;
    assert_eq!((revoked_before.0, revoked_before.2), (false, "REVOKED"), "{revoked_before:?}");
    let revoked_listed = usecases::queries::licenses(&ledger, &Caller::Operator, revoked_org).await.unwrap();
    assert_eq!(listed(&revoked_listed), vec![revoked_license], "listed before it is archived");
    let dry = retention::run(&ledger, &stripe, ledger.now(), settings, true).await.unwrap();
    assert_eq!((dry.keys_archived, dry.sequence), (2, None), "{dry:?}");
    assert!(archived_events(&ledger).await.is_empty(), "a dry run archives nothing");
    let outcome = retention::run(&ledger, &stripe, ledger.now(), settings, false).await.unwrap();
    assert_eq!(outcome.keys_archived, 2, "{outcome:?}");
    assert!(outcome.sequence.is_some(), "the run is recorded: {outcome:?}");
    let mut expected = vec![ended_license, revoked_license];
    expected.sort_by_key(|id| id.0);
    assert_eq!(archived_events(&ledger).await, vec![expected], "in id order");
    caught_up(&ledger).await;
    let ended_listing = usecases::queries::licenses(&ledger, &Caller::Operator, ended_org).await.unwrap();
    assert!(ended_listing.is_empty(), "the archived license is not listed: {ended_listing:?}");
    let live_listing = usecases::queries::licenses(&ledger, &Caller::Operator, live_org).await.unwrap();
    assert_eq!(listed(&live_listing), vec![live_license]);
    assert_eq!(answer(&ledger, &ended_key).await, before, "the archived key answers as before");
    let revoked_listed = usecases::queries::licenses(&ledger, &Caller::Operator, revoked_org).await.unwrap();
    assert!(revoked_listed.is_empty(), "the archived revoked license is not listed: {revoked_listed:?}");
    assert_eq!(answer(&ledger, &revoked_key).await, revoked_before, "the revoked key answers as before");
    assert_eq!(answer(&ledger, &live_key).await, live_before);
    let stdout = verify(&source);
    assert!(stdout.contains("match the live read models"), "{stdout}");

    // A second run archives nothing new, and appends nothing.
    let head = ledger.log.head().await.unwrap().sequence;
    let again = retention::run(&ledger, &stripe, ledger.now(), settings, false).await.unwrap();
    assert_eq!((again.keys_archived, again.sequence), (0, None), "{again:?}");
    assert_eq!(ledger.log.head().await.unwrap().sequence, head);
    assert_eq!(archived_events(&ledger).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keys_archived_a_year_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), None).await;
    let source = vec!["--data-dir".to_owned(), dir.path().display().to_string()];
    keys_archived_a_year_after_expiry(ledger, source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keys_archived_a_year_after_expiry() {
    let test = "replay::retention::postgres_keys_archived_a_year_after_expiry";
    let Some(url) = store::testing::postgres_url(test) else { return };
    let schema = store::testing::fresh_schema(&url).await.name;
    let separator = if url.contains('?') { '&' } else { '?' };
    let database_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), Some(database_url.clone())).await;
    let source =
        vec!["--data-dir".to_owned(), dir.path().display().to_string(), "--database-url".to_owned(), database_url];
    keys_archived_a_year_after_expiry(ledger, source).await;
}
