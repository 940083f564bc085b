//! The validation hot path's cache (`usecases::validation_cache`): a key
//! revoked through this node is refused by its next validation, although
//! the key's facts were cached a moment before; a key revoked through
//! another node on the same PostgreSQL schema is refused here within 1 s.
//!
//! The use cases are called directly, without HTTP.

use std::time::{Duration, Instant};

use domain::catalog::Tier;
use domain::keys::license_key_hash;
use domain::{LicenseId, Metadata, OrganizationId};
use usecases::command::Context;
use usecases::organizations::{self, CreateOrganizationInput};
use usecases::subscriptions::{self, CreateSubscriptionInput};
use usecases::validation::{Origin, ValidationRequest};
use usecases::validation_cache::VALIDATION_CACHE_TTL;
use usecases::{Caller, Ledger, LedgerConfig, validation};

/// How soon a key revoked through another node must be refused here.
const REVOKED_ELSEWHERE_REFUSED_WITHIN: Duration = Duration::from_secs(1);
/// How often the first node validates while it waits for the revocation.
const RETRY_EVERY: Duration = Duration::from_millis(10);

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
        clock: "system".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    };
    Ledger::open(&config).await.expect("the ledger opens")
}

/// An organization with a subscription; its license key.
async fn key_of_new_subscription(ledger: &Ledger) -> String {
    let input = CreateOrganizationInput { name: "Acme".into(), domain: None, industry: None, employee_count: None };
    let organization = organizations::create_organization(ledger, &Caller::Operator, &context(), input).await.unwrap();
    let input = CreateSubscriptionInput {
        organization_id: OrganizationId(organization.id),
        tier: Tier::Starter,
        start_date: ledger.today(),
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
    };
    subscriptions::create_subscription(ledger, &Caller::Operator, &context(), input).await.unwrap().license_key
}

async fn validate(ledger: &Ledger, key: &str) -> (&'static str, LicenseId) {
    let request = ValidationRequest { license_key: Some(key.into()), ..Default::default() };
    let answer = validation::validate(ledger, request, Origin::default()).await.unwrap();
    (answer.code, answer.license_id.unwrap())
}

/// Validates twice, so that the key's facts are in `ledger`'s cache; its
/// license.
async fn validated_and_cached(ledger: &Ledger, key: &str) -> LicenseId {
    assert_eq!(validate(ledger, key).await.0, "VALID");
    let (code, license_id) = validate(ledger, key).await;
    assert_eq!(code, "VALID");
    let cached = ledger.validation_cache.get(&license_key_hash(&ledger.keys.secret, key));
    assert_eq!(cached.map(|c| c.facts.license_id), Some(license_id), "the key's facts are cached");
    license_id
}

async fn revoke(ledger: &Ledger, license_id: LicenseId) {
    usecases::licenses::revoke_license(ledger, &Caller::Operator, &context(), license_id, "test".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_here_is_refused_at_once_although_cached() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), None).await;
    let key = key_of_new_subscription(&ledger).await;
    let license_id = validated_and_cached(&ledger, &key).await;
    let cached_at = Instant::now();
    revoke(&ledger, license_id).await;
    assert_eq!(validate(&ledger, &key).await.0, "REVOKED");
    assert!(cached_at.elapsed() < VALIDATION_CACHE_TTL, "the entry had not expired: the floor refused it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_key_revoked_through_another_node_is_refused_here_within_a_second() {
    let test =
        "usecases::validation_cache::postgres_a_key_revoked_through_another_node_is_refused_here_within_a_second";
    let Some(url) = store::testing::postgres_url(test) else { return };
    let schema = store::testing::fresh_schema(&url).await.name;
    let separator = if url.contains('?') { '&' } else { '?' };
    let database_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    // Two nodes: the same log, read models and server keys.
    let dir = tempfile::tempdir().unwrap();
    let here = open(dir.path(), Some(database_url.clone())).await;
    let there = open(dir.path(), Some(database_url)).await;
    let key = key_of_new_subscription(&here).await;
    let license_id = validated_and_cached(&here, &key).await;
    revoke(&there, license_id).await;
    let revoked = Instant::now();
    let mut validations = 0;
    loop {
        validations += 1;
        if validate(&here, &key).await.0 == "REVOKED" {
            break;
        }
        assert!(revoked.elapsed() < REVOKED_ELSEWHERE_REFUSED_WITHIN, "still valid here after {:?}", revoked.elapsed());
        tokio::time::sleep(RETRY_EVERY).await;
    }
    let elapsed = revoked.elapsed();
    println!("revoked through another node: refused here after {elapsed:?} ({validations} validations)");
    assert!(elapsed < REVOKED_ELSEWHERE_REFUSED_WITHIN, "{elapsed:?}");
}
