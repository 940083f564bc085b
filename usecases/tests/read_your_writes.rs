//! Read-your-writes by default (issue 13, item 3), with read models that
//! really lag: the ledger under test is a follower node. Another `Ledger`
//! on the same SQLite data directory opened first and leads (it holds the
//! leadership lock and runs the projections into the shared read-model
//! tables); the follower's appends reach the leader's runner at its next
//! poll (`RUNNER_POLL_INTERVAL`, not woken by another process's appends),
//! and the follower sees the tables move only at its next checkpoint poll
//! (`FOLLOW_POLL_INTERVAL`). Commands answer without waiting for them; a
//! credential's next request waits for its own writes (and a token's or
//! key's own revocation), and never for another's.

use std::time::{Duration, Instant};

use domain::catalog::Tier;
use domain::organization::Role;
use domain::{Metadata, OrganizationId, TokenId};
use projections::db::FOLLOW_POLL_INTERVAL;
use usecases::acknowledged::Credential;
use usecases::command::Context;
use usecases::organizations::{self, CreateOrganizationInput, IssueTokenInput};
use usecases::subscriptions::{self, CreateSubscriptionInput};
use usecases::validation::{Origin, ValidationRequest};
use usecases::views::subscriptions::CreateSubscriptionResponse;
use usecases::{Caller, Ledger, LedgerConfig, caller, queries, validation};

const OPERATOR: &str = "oooooooooooooooooooooooooooooooooooooooo";
const AUDITOR: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// Trials of a write and an immediate read; a trial counts when the read
/// models had not yet seen the write when the read began.
const TRIALS: usize = 6;

fn context(caller: &Caller) -> Context {
    Context {
        metadata: Metadata { actor: Some(caller.actor()), ..Metadata::default() },
        idempotency: None,
        credential: Some(caller.credential()),
    }
}

/// A ledger whose read-model tables lag behind its own appends by up to
/// two polls: a follower, and the leader that runs the projections (keep
/// it alive as long as the follower is used).
async fn lagging_ledger(dir: &std::path::Path) -> (Ledger, Ledger) {
    let config = LedgerConfig {
        data_dir: dir.to_path_buf(),
        database_url: None,
        clock: "system".into(),
        operator_token: Some(OPERATOR.into()),
        auditor_token: Some(AUDITOR.into()),
        policy: Default::default(),
    };
    let leader = Ledger::open(&config).await.expect("the leader opens");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !leader.models.is_leader() {
        assert!(Instant::now() < deadline, "the first ledger never led");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let follower = Ledger::open(&config).await.expect("the follower opens");
    tokio::time::sleep(FOLLOW_POLL_INTERVAL).await;
    assert!(!follower.models.is_leader(), "two leaders on one data directory");
    (follower, leader)
}

async fn create_organization(ledger: &Ledger, name: &str) -> (OrganizationId, u64) {
    let input = CreateOrganizationInput { name: name.into(), domain: None, industry: None, employee_count: None };
    let created = organizations::create_organization(ledger, &Caller::Operator, &context(&Caller::Operator), input)
        .await
        .unwrap();
    (OrganizationId(created.id), created.sequence)
}

async fn listed(ledger: &Ledger, caller: &Caller, id: OrganizationId) -> bool {
    let page = queries::organizations(ledger, caller, Some(200), None).await.unwrap();
    page.items.iter().any(|organization| organization.id == id)
}

/// The operator's read right after its own write sees it; an auditor's
/// read right after a license key's validation does not wait for that
/// validation (it returns before the read models include it).
#[tokio::test]
async fn a_caller_reads_its_own_writes_and_never_waits_for_a_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _leader) = lagging_ledger(dir.path()).await;
    let (organization_id, _) = create_organization(&ledger, "Acme").await;
    let key = subscribe(&ledger, organization_id).await.license_key;
    let head = ledger.log.head().await.unwrap().sequence;
    ledger.models.wait_for(head, Duration::from_secs(5)).await.unwrap();
    let (mut own_lagged, mut other_lagged) = (0, 0);
    for trial in 0..TRIALS {
        // The auditor reads right after the key's validation.
        let request = ValidationRequest { license_key: Some(key.clone()), ..Default::default() };
        let sequence = validation::validate(&ledger, request, Origin::default()).await.unwrap().sequence.unwrap();
        let lagged = ledger.models.applied() < sequence;
        let started = Instant::now();
        let auditor = caller::authenticate(&ledger, AUDITOR, ledger.now(), None).await.unwrap();
        let _ = listed(&ledger, &auditor, organization_id).await;
        if lagged {
            other_lagged += 1;
            assert!(
                ledger.models.applied() < sequence,
                "the auditor's read waited for the key's validation ({:?})",
                started.elapsed()
            );
            assert!(started.elapsed() < FOLLOW_POLL_INTERVAL / 4, "{:?}", started.elapsed());
        }
        // The operator reads right after its own write.
        let (id, sequence) = create_organization(&ledger, &format!("Own {trial}")).await;
        own_lagged += usize::from(ledger.models.applied() < sequence);
        let operator = caller::authenticate(&ledger, OPERATOR, ledger.now(), None).await.unwrap();
        assert!(listed(&ledger, &operator, id).await, "the operator's own write is not seen (trial {trial})");
    }
    // The commands did not wait: most writes were not yet in the read
    // models when they were answered, so the reads above were tested.
    assert!(own_lagged > 0 && other_lagged > 0, "no trial lagged: own {own_lagged}, other {other_lagged}");
}

async fn subscribe(ledger: &Ledger, organization_id: OrganizationId) -> CreateSubscriptionResponse {
    let input = CreateSubscriptionInput {
        organization_id,
        tier: Tier::Starter,
        start_date: ledger.today(),
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
    };
    let operator = Caller::Operator;
    subscriptions::create_subscription(ledger, &operator, &context(&operator), input).await.unwrap()
}

/// A token issued here is usable at once; revoked here, it is refused at
/// once. A license key revoked here validates as REVOKED at once.
#[tokio::test]
async fn a_credential_revoked_here_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _leader) = lagging_ledger(dir.path()).await;
    let operator = Caller::Operator;
    let (organization_id, _) = create_organization(&ledger, "Acme").await;
    for _ in 0..3 {
        let input = IssueTokenInput { role: Role::Admin, expires_at: None };
        let issued =
            organizations::issue_token(&ledger, &operator, &context(&operator), organization_id, input).await.unwrap();
        let admin = caller::authenticate(&ledger, &issued.token, ledger.now(), None).await.expect("usable at once");
        assert_eq!(admin.credential(), Credential::Token(TokenId(issued.token_id)));
        let token_id = TokenId(issued.token_id);
        organizations::revoke_token(&ledger, &admin, &context(&admin), organization_id, token_id).await.unwrap();
        let refused = caller::authenticate(&ledger, &issued.token, ledger.now(), None).await;
        assert!(matches!(refused, Err(usecases::Error::Unauthorized)), "{refused:?}");
    }
    let created = subscribe(&ledger, organization_id).await;
    let validate = || {
        let request = ValidationRequest { license_key: Some(created.license_key.clone()), ..Default::default() };
        validation::validate(&ledger, request, Origin::default())
    };
    assert_eq!(validate().await.unwrap().code, "VALID");
    let license_id = validate().await.unwrap().license_id.unwrap();
    let context = context(&operator);
    let revoked = usecases::licenses::revoke_license(&ledger, &operator, &context, license_id, "test".into());
    let sequence = revoked.await.unwrap().sequence;
    let lagged = ledger.models.applied() < sequence;
    assert_eq!(validate().await.unwrap().code, "REVOKED", "read models lagged: {lagged}");
}

/// Through the real `Ledger`: a credential waits for nothing another key
/// was acknowledged, however far the read models are from it.
#[tokio::test]
async fn an_unknown_credential_does_not_wait_for_a_keys_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _leader) = lagging_ledger(dir.path()).await;
    let key = Credential::License(domain::LicenseId(uuid::Uuid::now_v7()));
    ledger.acknowledged.record(key, 1_000_000);
    assert_eq!(ledger.acknowledged.len(), 1);
    let started = Instant::now();
    let token = Credential::Token(TokenId(uuid::Uuid::now_v7()));
    usecases::acknowledged::catch_up(&ledger, Some(token), None).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(20), "{:?}", started.elapsed());
}
