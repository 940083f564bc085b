//! Plan changes with a preview (issue #14): the preview answers what the
//! change's command would do (BILLING-RULES' worked example 2 for an
//! upgrade), appends nothing, and follows the command's role and price
//! rules; confirming is the command itself.

use chrono::NaiveDate;
use domain::catalog::Tier;
use domain::organization::Role;
use domain::subscription::{AddonKind, SubscriptionError};
use domain::{Metadata, OrganizationId, TokenId};
use serde_json::Value;
use usecases::caller::Caller;
use usecases::command::Context;
use usecases::organizations::{self, CreateOrganizationInput};
use usecases::subscriptions::{self, AddonInput, CancelInput, ChangeInput, CreateSubscriptionInput, UpgradeInput};
use usecases::{Error, Ledger, LedgerConfig};

fn context() -> Context {
    Context { metadata: Metadata::default(), idempotency: None, credential: None }
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, d).unwrap()
}

async fn ledger(dir: &tempfile::TempDir) -> Ledger {
    let config = LedgerConfig {
        data_dir: dir.path().to_owned(),
        database_url: None,
        clock: "fixed:2026-01-16T09:00:00Z".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    };
    Ledger::open(&config).await.unwrap()
}

async fn organization(ledger: &Ledger, name: &str) -> OrganizationId {
    let input = CreateOrganizationInput { name: name.into(), domain: None, industry: None, employee_count: None };
    let id = organizations::create_organization(ledger, &Caller::Operator, &context(), input).await.unwrap().id;
    let org = OrganizationId(id);
    let input = CreateSubscriptionInput {
        organization_id: org,
        tier: Tier::Starter,
        start_date: day(1),
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
    };
    subscriptions::create_subscription(ledger, &Caller::Operator, &context(), input).await.unwrap();
    // Queries and previews read the read models (over HTTP, a credential
    // waits for its own writes when authenticated).
    ledger.models.wait_for(head(ledger).await, std::time::Duration::from_secs(5)).await.unwrap();
    org
}

fn admin(org: OrganizationId) -> Caller {
    Caller::Member { organization_id: org, role: Role::Admin, token_id: TokenId(uuid::Uuid::now_v7()) }
}

fn upgrade() -> ChangeInput {
    ChangeInput::Upgrade(UpgradeInput {
        target_tier: Tier::Professional,
        effective_date: Some(day(16)),
        addons: vec![],
    })
}

fn lines(invoice: &Value) -> Vec<(String, String)> {
    let lines = invoice["lines"].as_array().unwrap();
    lines.iter().map(|l| (l["kind"].as_str().unwrap().into(), l["amount"].as_str().unwrap().into())).collect()
}

async fn head(ledger: &Ledger) -> u64 {
    ledger.log.head().await.unwrap().sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_preview_shows_worked_example_2_and_appends_nothing_until_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir).await;
    let org = organization(&ledger, "Acme").await;
    let before = head(&ledger).await;

    let preview = subscriptions::preview(&ledger, &admin(org), org, upgrade()).await.unwrap();
    assert_eq!(head(&ledger).await, before, "a preview appends nothing");
    let preview = serde_json::to_value(preview).unwrap();
    assert_eq!((preview["change"].as_str(), preview["effectiveDate"].as_str()), (Some("upgrade"), Some("2026-01-16")));
    assert_eq!(preview["proratedAmount"], "1290.32");
    assert_eq!(preview["limitsBefore"]["maxDataVolumeGB"], 1000);
    assert_eq!(preview["limitsAfter"]["maxDataVolumeGB"], 3000);
    assert_eq!(lines(&preview["invoiceBefore"]), vec![("base".into(), "2500.00".into())]);
    let after = vec![("base".to_string(), "1209.68".to_string()), ("base".to_string(), "2580.65".to_string())];
    assert_eq!(lines(&preview["invoiceAfter"]), after);
    assert_eq!(preview["invoiceAfter"]["total"], "3790.33");

    // Confirming is the upgrade command: the same amount, now appended.
    let input = UpgradeInput { target_tier: Tier::Professional, effective_date: Some(day(16)), addons: vec![] };
    let confirmed = subscriptions::upgrade(&ledger, &admin(org), &context(), org, input).await.unwrap();
    let confirmed = serde_json::to_value(confirmed).unwrap();
    assert_eq!(confirmed["proratedAmount"], preview["proratedAmount"]);
    assert!(head(&ledger).await > before);
    ledger.models.wait_for(head(&ledger).await, std::time::Duration::from_secs(5)).await.unwrap();
    let details = usecases::queries::subscription(&ledger, &Caller::Operator, org).await.unwrap();
    assert_eq!(details.tier, "professional");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_of_downgrade_cancel_and_add_on_follow_their_commands_rules() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(&dir).await;
    let org = organization(&ledger, "Acme").await;
    let other = organization(&ledger, "Other").await;
    let before = head(&ledger).await;

    let extra = |annual_price| AddonInput {
        kind: AddonKind::ExtraDataTb,
        quantity: 2,
        annual_price,
        one_time_price: None,
        effective_date: Some(day(16)),
    };
    let addon = subscriptions::preview(&ledger, &admin(org), org, ChangeInput::Addon(extra(None))).await.unwrap();
    let addon = serde_json::to_value(addon).unwrap();
    assert_eq!(
        (addon["change"].as_str(), addon["limitsAfter"]["maxDataVolumeGB"].as_i64()),
        (Some("addon"), Some(3000))
    );
    assert_eq!(addon["proratedAmount"], Value::Null);
    let kinds: Vec<String> = lines(&addon["invoiceAfter"]).into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(kinds, ["base", "addon"], "the add-on is billed from its day: {}", addon["invoiceAfter"]);

    let cancel = CancelInput { immediate: false, effective_date: None };
    let cancelled = subscriptions::preview(&ledger, &admin(org), org, ChangeInput::Cancel(cancel)).await.unwrap();
    let cancelled = serde_json::to_value(cancelled).unwrap();
    assert_eq!(cancelled["change"], "cancel");
    assert_eq!(
        cancelled["invoiceAfter"], cancelled["invoiceBefore"],
        "a cancellation at the term's end bills as before"
    );

    // A starter subscription has no lower tier: refused as the command is.
    let downgrade = ChangeInput::Downgrade { target_tier: Tier::Starter };
    assert!(matches!(subscriptions::preview(&ledger, &admin(org), org, downgrade).await, Err(Error::Subscription(_))));

    // The command's rules: a price is the operator's, an immediate
    // cancellation too; another organization's admin finds nothing.
    let priced = ChangeInput::Addon(extra(Some(rust_decimal::Decimal::ONE)));
    let refused = subscriptions::preview(&ledger, &admin(org), org, priced).await;
    assert!(matches!(refused, Err(Error::Subscription(SubscriptionError::PriceNotAllowed))), "{refused:?}");
    let immediate = ChangeInput::Cancel(CancelInput { immediate: true, effective_date: None });
    assert!(matches!(subscriptions::preview(&ledger, &admin(org), org, immediate).await, Err(Error::Forbidden)));
    assert!(matches!(subscriptions::preview(&ledger, &admin(other), org, upgrade()).await, Err(Error::NotFound)));
    let viewer = Caller::Member { organization_id: org, role: Role::Viewer, token_id: TokenId(uuid::Uuid::now_v7()) };
    assert!(matches!(subscriptions::preview(&ledger, &viewer, org, upgrade()).await, Err(Error::Forbidden)));

    // An add-on bought alone names its day, in the preview as in the command.
    let undated = AddonInput { effective_date: None, ..extra(None) };
    let refused = subscriptions::preview(&ledger, &admin(org), org, ChangeInput::Addon(undated.clone())).await;
    assert!(matches!(&refused, Err(Error::Validation(m)) if m.contains("effectiveDate")), "{refused:?}");
    let refused = subscriptions::add_addon(&ledger, &admin(org), &context(), org, undated).await;
    assert!(matches!(&refused, Err(Error::Validation(m)) if m.contains("effectiveDate")), "{refused:?}");
    assert_eq!(head(&ledger).await, before, "no preview (nor refused command) appended anything");
}
