//! The scheduler decides nothing while the read-model tables have failed:
//! what they say is due may no longer be what the log holds (a log rolled
//! back behind them, a record this version cannot read). On SQLite, and on
//! PostgreSQL when `DATABASE_URL` is set.
//!
//! The use cases are called directly, without HTTP, as the scheduler and
//! the CLI call them.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use domain::catalog::Tier;
use domain::{Metadata, OrganizationId, Timestamp};
use usecases::command::Context;
use usecases::organizations::{self, CreateOrganizationInput};
use usecases::subscriptions::{self, CreateSubscriptionInput};
use usecases::{Caller, Ledger, LedgerConfig};

/// The longest wait for the read models to apply, or to notice what they cannot.
const FAILURE_WAIT: Duration = Duration::from_secs(10);

fn context() -> Context {
    Context {
        metadata: Metadata { actor: Some("operator".into()), ..Metadata::default() },
        idempotency: None,
        credential: Some(usecases::acknowledged::Credential::Operator),
    }
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

/// Moves every read-model checkpoint past the log's head, behind the
/// runner's back (as a restored backup of the read models from another
/// log would): the runner finds the log does not hold what its
/// checkpoints say at its next batch, and stops. The in-memory read
/// models are not touched.
async fn corrupt_checkpoints(ledger: &Ledger) {
    ledger
        .models
        .db
        .execute_script("UPDATE readmodel_checkpoints SET sequence = sequence + 1000")
        .await
        .expect("the checkpoints are written");
}

async fn the_scheduler_pauses_while_the_read_models_have_failed(ledger: Ledger) {
    // A subscription that does not renew, its term over by the clock.
    let input = CreateOrganizationInput { name: "Acme".into(), domain: None, industry: None, employee_count: None };
    let organization = organizations::create_organization(&ledger, &Caller::Operator, &context(), input).await.unwrap();
    let input = CreateSubscriptionInput {
        organization_id: OrganizationId(organization.id),
        tier: Tier::Starter,
        start_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        auto_renew: false,
        max_deployments: 1,
        enterprise_overage_rate: None,
    };
    let subscription = subscriptions::create_subscription(&ledger, &Caller::Operator, &context(), input).await.unwrap();
    ledger.clock.advance(Timestamp::parse_rfc3339("2027-01-02T00:00:00Z").unwrap()).unwrap().unwrap();
    let head = ledger.log.head().await.unwrap().sequence;
    ledger.models.wait_for(head, FAILURE_WAIT).await.expect("the tables include the subscription");

    corrupt_checkpoints(&ledger).await;
    // Any record makes the runner look at the log again.
    let input = CreateOrganizationInput { name: "Other".into(), domain: None, industry: None, employee_count: None };
    let _ = organizations::create_organization(&ledger, &Caller::Operator, &context(), input).await;
    let started = Instant::now();
    while ledger.models.failed().is_none() {
        assert!(started.elapsed() < FAILURE_WAIT, "the read-model tables did not stop at the corrupt checkpoints");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What the tables had applied says the term's end is due.
    let id = domain::SubscriptionId(subscription.subscription_id);
    let stale = projections::models::subscriptions::subscription(&ledger.models.db, id).await.unwrap().unwrap();
    assert!(!stale.status_on(ledger.today()).is_ended() && stale.end_date <= Some(ledger.today()));

    let head = ledger.log.head().await.unwrap().sequence;
    assert_eq!(usecases::scheduler::tick(&ledger).await.unwrap(), 0, "nothing is decided on a failed read model");
    assert_eq!(ledger.log.head().await.unwrap().sequence, head, "nothing is appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_scheduler_pauses_while_the_read_models_have_failed() {
    let dir = tempfile::tempdir().unwrap();
    the_scheduler_pauses_while_the_read_models_have_failed(open(dir.path(), None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_scheduler_pauses_while_the_read_models_have_failed() {
    let test = "usecases::scheduler::postgres_the_scheduler_pauses_while_the_read_models_have_failed";
    let Some(url) = store::testing::postgres_url(test) else { return };
    let schema = store::testing::fresh_schema(&url).await.name;
    let separator = if url.contains('?') { '&' } else { '?' };
    let database_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    the_scheduler_pauses_while_the_read_models_have_failed(open(dir.path(), Some(database_url)).await).await;
}
