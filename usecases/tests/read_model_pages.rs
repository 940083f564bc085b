//! The billing run, the scheduler and the active-subscriptions gauge read
//! the read-model tables a page at a time: with one subscription more than
//! a page holds, each still sees every one of them.
//!
//! The use cases are called directly, without HTTP, as the scheduler and
//! the CLI call them.

use chrono::NaiveDate;
use domain::catalog::Tier;
use domain::{Metadata, OrganizationId, Timestamp};
use usecases::command::Context;
use usecases::organizations::{self, CreateOrganizationInput};
use usecases::subscriptions::{self, CreateSubscriptionInput};
use usecases::{Caller, Ledger, LedgerConfig};

/// One more subscription than a page of the tables holds.
const SUBSCRIPTIONS: usize = projections::models::PAGE_ITEMS_MAX + 1;
/// The longest wait for the read-model tables to include the log's head.
const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn context() -> Context {
    Context {
        metadata: Metadata { actor: Some("operator".into()), ..Metadata::default() },
        idempotency: None,
        credential: Some(usecases::acknowledged::Credential::Operator),
    }
}

async fn open(dir: &std::path::Path) -> Ledger {
    let config = LedgerConfig {
        data_dir: dir.to_path_buf(),
        database_url: None,
        clock: "manual:2026-01-01T00:00:00Z".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    };
    Ledger::open(&config).await.expect("the ledger opens")
}

async fn subscribe(ledger: &Ledger, name: String) {
    let input = CreateOrganizationInput { name, domain: None, industry: None, employee_count: None };
    let organization = organizations::create_organization(ledger, &Caller::Operator, &context(), input).await.unwrap();
    let input = CreateSubscriptionInput {
        organization_id: OrganizationId(organization.id),
        tier: Tier::Starter,
        start_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        auto_renew: false,
        max_deployments: 1,
        enterprise_overage_rate: None,
    };
    subscriptions::create_subscription(ledger, &Caller::Operator, &context(), input).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_subscriptions_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    for n in 0..SUBSCRIPTIONS {
        subscribe(&ledger, format!("Org {n}")).await;
    }

    // A command answers before the tables include it; a scrape does not wait.
    let head = ledger.log.head().await.unwrap().sequence;
    ledger.models.wait_for(head, WAIT).await.unwrap();
    let active = usecases::metrics::active_subscriptions(&ledger).await.unwrap();
    assert_eq!(active[0], (Tier::Starter, SUBSCRIPTIONS as i64), "{active:?}");

    let preview = usecases::billing::run(&ledger, &Caller::Operator, "test", "2026-01", true).await.unwrap();
    assert_eq!((preview.invoices.len(), preview.failed.len()), (SUBSCRIPTIONS, 0));

    ledger.clock.advance(Timestamp::parse_rfc3339("2026-02-01T00:00:00Z").unwrap()).unwrap().unwrap();
    let run = usecases::billing::run(&ledger, &Caller::Operator, "test", "2026-01", false).await.unwrap();
    assert_eq!((run.invoices.len(), run.failed.len()), (SUBSCRIPTIONS, 0));
    assert_eq!(run.invoices, preview.invoices, "the run issues what the preview showed");

    ledger.clock.advance(Timestamp::parse_rfc3339("2027-01-02T00:00:00Z").unwrap()).unwrap().unwrap();
    assert_eq!(usecases::scheduler::tick(&ledger).await.unwrap(), SUBSCRIPTIONS, "every term's end is due");
    let head = ledger.log.head().await.unwrap().sequence;
    ledger.models.wait_for(head, WAIT).await.unwrap();
    let active = usecases::metrics::active_subscriptions(&ledger).await.unwrap();
    assert_eq!(active[0], (Tier::Starter, 0), "every subscription ended: {active:?}");
}
