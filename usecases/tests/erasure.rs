//! Erasure and export of a data subject (issue 16, `usecases::privacy`),
//! called as the API and the CLI call them, on SQLite and (with
//! `DATABASE_URL`) PostgreSQL:
//! - a user erased: the export before listed every record holding their
//!   data (checked against an independent filter over the log), nothing of
//!   theirs is left in the log's payloads and metadata, every command on
//!   the organization still works, the read models equal a rebuild from the
//!   erased log, and the store's `verify` passes; erasing again changes
//!   nothing and answers the same;
//! - an active user (or an organization with a live subscription) is
//!   refused with nothing appended;
//! - an erased organization's unsent notifications are dropped;
//! - an erased organization's Stripe customer is redacted (localstripe).

// Test code: a scenario reads best in one piece; the 70-line limit
// (clippy.toml) is for production code.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::NaiveDate;
use domain::catalog::Tier;
use domain::organization::Role;
use domain::privacy::{ErasureReason, Subject};
use domain::record::Record;
use domain::{Metadata, OrganizationId, Timestamp, UserId};
use projections::db::{ReadModelDb, Runner};
use usecases::command::Context;
use usecases::organizations::{self, AddUserInput, CreateOrganizationInput, IssueTokenInput};
use usecases::privacy::{self, ErasureOutcome};
use usecases::stripe::Stripe;
use usecases::subscriptions::{self, CreateSubscriptionInput, UpgradeInput};
use usecases::{Caller, Error, Ledger, LedgerConfig};

const WAIT: Duration = Duration::from_secs(30);
const ERIN: &str = "erin.erasable@example.test";
const ERIN_IP: &str = "198.51.100.23";
const ERIN_AGENT: &str = "ErinsBrowser/7.1";

struct Fixture {
    ledger: Ledger,
    _dir: tempfile::TempDir,
}

async fn open(database_url: Option<String>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        data_dir: dir.path().to_path_buf(),
        database_url,
        clock: "manual:2026-01-01T00:00:00Z".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    };
    Fixture { ledger: Ledger::open(&config).await.expect("the ledger opens"), _dir: dir }
}

impl store::testing::BackendFixture for Fixture {
    async fn sqlite(_test: &str) -> Self {
        open(None).await
    }

    async fn postgres(test: &str) -> Option<Self> {
        let url = store::testing::postgres_url(test)?;
        let schema = store::testing::fresh_schema(&url).await.name;
        let separator = if url.contains('?') { '&' } else { '?' };
        Some(open(Some(format!("{url}{separator}options=-c%20search_path%3D{schema}"))).await)
    }
}

store::backend_tests!(Fixture;
    a_user_erased_leaves_every_command_working_and_nothing_of_theirs_in_the_log,
    an_active_user_or_a_live_subscription_is_refused_with_nothing_changed,
    an_erased_organizations_unsent_notifications_are_dropped,
);

fn context(caller: &Caller) -> Context {
    Context {
        metadata: Metadata { actor: Some(caller.actor()), ..Metadata::default() },
        idempotency: None,
        credential: Some(caller.credential()),
    }
}

fn operator() -> (Caller, Context) {
    (Caller::Operator, context(&Caller::Operator))
}

async fn organization(ledger: &Ledger, name: &str) -> OrganizationId {
    let (caller, context) = operator();
    let input = CreateOrganizationInput { name: name.into(), domain: None, industry: None, employee_count: None };
    OrganizationId(organizations::create_organization(ledger, &caller, &context, input).await.unwrap().id)
}

async fn subscription(ledger: &Ledger, organization_id: OrganizationId, auto_renew: bool) {
    let (caller, context) = operator();
    let input = CreateSubscriptionInput {
        organization_id,
        tier: Tier::Starter,
        start_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        auto_renew,
        max_deployments: 1,
        enterprise_overage_rate: None,
    };
    subscriptions::create_subscription(ledger, &caller, &context, input).await.unwrap();
}

async fn add_user(ledger: &Ledger, by: (&Caller, &Context), organization_id: OrganizationId, email: &str) -> UserId {
    let input = AddUserInput { email: email.into(), role: Role::Admin };
    UserId(organizations::add_user(ledger, by.0, by.1, organization_id, input).await.unwrap().id)
}

async fn head(ledger: &Ledger) -> u64 {
    ledger.log.head().await.unwrap().sequence
}

async fn records(ledger: &Ledger) -> Vec<Record> {
    let head = head(ledger).await;
    ledger.log.read_page(1..=head, usize::try_from(head).unwrap() + 1).await.unwrap()
}

fn contains(haystack: Option<&[u8]>, needle: &[u8]) -> bool {
    haystack.is_some_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
}

/// Every page of the subject's export, two records a page.
async fn export_all(ledger: &Ledger, subject: &Subject) -> (Vec<privacy::ExportRecord>, serde_json::Value) {
    let mut page = privacy::export(ledger, &Caller::Operator, subject, 0, Some(2)).await.unwrap();
    let read_models = page.read_models.clone().expect("the first page has the read models");
    let mut all = Vec::new();
    loop {
        all.append(&mut page.records);
        let Some(after) = page.next else { break };
        page = privacy::export(ledger, &Caller::Operator, subject, after, Some(2)).await.unwrap();
        assert!(page.read_models.is_none(), "only the first page has the read models");
    }
    (all, read_models)
}

async fn erase(ledger: &Ledger, subject: &Subject) -> Result<ErasureOutcome, Error> {
    let (caller, context) = operator();
    privacy::erase(ledger, &caller, &context, &Stripe::off(), subject, ErasureReason::Request).await
}

/// The read models at the log's head equal a rebuild from the log.
async fn assert_read_models_equal_a_rebuild(ledger: &Ledger) {
    let head = head(ledger).await;
    ledger.models.wait_for(head, WAIT).await.expect("the read models reach the head");
    let scratch = tempfile::tempdir().unwrap();
    let rebuilt = ReadModelDb::open_sqlite_file(&scratch.path().join("rebuild.sqlite")).await.unwrap();
    let all = || usecases::readmodels::all_projections(&ledger.catalog);
    let mut runner = Runner::new(ledger.log.clone(), rebuilt.clone(), all()).unwrap();
    assert_eq!(runner.catch_up().await.unwrap(), head);
    let tables: Vec<_> = all().iter().flat_map(|p| p.tables().iter().copied()).collect();
    let difference = projections::db::compare(&ledger.models.db, &rebuilt, &tables).await.unwrap();
    assert!(difference.is_none(), "the read models differ from a rebuild: {}", difference.unwrap());
}

async fn a_user_erased_leaves_every_command_working_and_nothing_of_theirs_in_the_log(fixture: Fixture) {
    let ledger = &fixture.ledger;
    let (op, op_context) = operator();
    let organization_id = organization(ledger, "Acme").await;
    subscription(ledger, organization_id, true).await;
    let ada = add_user(ledger, (&op, &op_context), organization_id, "ada@example.test").await;
    let erin = add_user(ledger, (&op, &op_context), organization_id, ERIN).await;
    // Erin acts from the portal: her address and user agent are in the metadata.
    let as_erin = Caller::User { organization_id, role: Role::Admin, user_id: erin };
    let mut erins = context(&as_erin);
    erins.metadata.source_ip = Some(ERIN_IP.into());
    erins.metadata.user_agent = Some(ERIN_AGENT.into());
    let victor = add_user(ledger, (&as_erin, &erins), organization_id, "victor@example.test").await;
    organizations::change_role(ledger, &as_erin, &erins, organization_id, victor, Role::Viewer).await.unwrap();

    // The export lists every record an independent filter finds: the
    // e-mail in the payload, or Erin as the actor; and nothing that does
    // not name her at all.
    let subject = Subject::User { organization_id, user_id: erin };
    let (exported, read_models) = export_all(ledger, &subject).await;
    assert_eq!(read_models["profile"]["email"], ERIN, "{read_models}");
    let exported: BTreeSet<u64> = exported.iter().map(|r| r.sequence).collect();
    let all = records(ledger).await;
    let actor = format!("user:{}", erin.0);
    let must: BTreeSet<u64> = all
        .iter()
        .filter(|r| {
            contains(r.payload.as_deref(), ERIN.as_bytes()) || contains(r.metadata.as_deref(), actor.as_bytes())
        })
        .map(|r| r.header.sequence)
        .collect();
    let may: BTreeSet<u64> = all
        .iter()
        .filter(|r| must.contains(&r.header.sequence) || contains(r.payload.as_deref(), erin.0.as_bytes()))
        .map(|r| r.header.sequence)
        .collect();
    assert!(must.len() >= 3, "the user's own record and the two she made: {must:?}");
    assert!(must.is_subset(&exported), "the export {exported:?} misses some of {must:?}");
    assert!(exported.is_subset(&may), "the export {exported:?} lists records that do not name her ({may:?})");

    // Still active: refused, nothing appended.
    let before = head(ledger).await;
    let refused = erase(ledger, &subject).await.unwrap_err();
    assert!(matches!(refused, Error::Conflict { code: "subject_active", .. }), "{refused:?}");
    assert_eq!(head(ledger).await, before);

    organizations::deactivate_user(ledger, &op, &op_context, organization_id, erin).await.unwrap();
    let erased = erase(ledger, &subject).await.unwrap();
    assert!(erased.erased_records >= must.len() as u64, "{erased:?} against {must:?}");
    assert_eq!(erased.erasure_sequences.len(), 1, "{erased:?}");
    for record in records(ledger).await {
        for needle in [ERIN.as_bytes(), ERIN_IP.as_bytes(), ERIN_AGENT.as_bytes()] {
            let held = contains(record.payload.as_deref(), needle) || contains(record.metadata.as_deref(), needle);
            let kept = record.erasure.as_ref().and_then(|e| e.facts.as_deref());
            assert!(!held && !contains(kept, needle), "sequence {} still holds her data", record.header.sequence);
        }
        if must.contains(&record.header.sequence) {
            assert!(record.erasure.is_some(), "sequence {} was not erased", record.header.sequence);
        }
    }
    let after = head(ledger).await;
    assert_eq!(erase(ledger, &subject).await.unwrap(), erased, "erasing again answers the same");
    assert_eq!(head(ledger).await, after, "erasing again appends nothing");
    let (exported, _) = export_all(ledger, &subject).await;
    assert!(exported.iter().filter(|r| must.contains(&r.sequence)).all(|r| r.erased), "erased records are marked");

    // Every command on the organization still works.
    add_user(ledger, (&op, &op_context), organization_id, "nina@example.test").await;
    organizations::change_role(ledger, &op, &op_context, organization_id, ada, Role::Analyst).await.unwrap();
    organizations::change_role(ledger, &op, &op_context, organization_id, victor, Role::Admin).await.unwrap();
    let token = IssueTokenInput { role: Role::Viewer, expires_at: None };
    let token = organizations::issue_token(ledger, &op, &op_context, organization_id, token).await.unwrap();
    let token_id = domain::TokenId(token.token_id);
    organizations::revoke_token(ledger, &op, &op_context, organization_id, token_id).await.unwrap();
    let upgrade = UpgradeInput { target_tier: Tier::Professional, effective_date: None, addons: vec![] };
    subscriptions::upgrade(ledger, &op, &op_context, organization_id, upgrade).await.unwrap();
    ledger.clock.advance(Timestamp::parse_rfc3339("2026-02-02T00:00:00Z").unwrap()).unwrap().unwrap();
    let run = usecases::billing::run(ledger, &op, "test", "2026-01", false).await.unwrap();
    assert!(run.failed.is_empty() && !run.invoices.is_empty(), "January is invoiced: {:?}", run.failed);

    assert_read_models_equal_a_rebuild(ledger).await;
    let verified = ledger.log.verify(1..=head(ledger).await).await.unwrap();
    assert_eq!(verified.failure, None, "the store's verify after the erasure");
}

async fn an_active_user_or_a_live_subscription_is_refused_with_nothing_changed(fixture: Fixture) {
    let ledger = &fixture.ledger;
    let (op, op_context) = operator();
    let organization_id = organization(ledger, "Initech").await;
    subscription(ledger, organization_id, true).await;
    let user_id = add_user(ledger, (&op, &op_context), organization_id, "peter@example.test").await;
    let before = head(ledger).await;
    for (subject, code) in [
        (Subject::User { organization_id, user_id }, "subject_active"),
        (Subject::Organization { organization_id }, "subscription_live"),
    ] {
        match erase(ledger, &subject).await {
            Err(Error::Conflict { code: refused, .. }) => assert_eq!(refused, code),
            other => panic!("{subject:?}: {other:?}"),
        }
    }
    let unknown = Subject::User { organization_id, user_id: UserId(uuid::Uuid::now_v7()) };
    assert!(matches!(erase(ledger, &unknown).await, Err(Error::NotFound)));
    // Not a staff admin: forbidden, whoever asks.
    let auditor = Caller::Auditor;
    let subject = Subject::User { organization_id, user_id };
    let (auditors, off) = (context(&auditor), Stripe::off());
    let denied = privacy::erase(ledger, &auditor, &auditors, &off, &subject, ErasureReason::Request).await;
    assert!(matches!(denied, Err(Error::Forbidden)), "{denied:?}");
    assert!(matches!(privacy::export(ledger, &auditor, &subject, 0, None).await, Err(Error::Forbidden)));
    assert_eq!(head(ledger).await, before, "nothing was appended");
    let stored = records(ledger).await;
    assert!(stored.iter().all(|r| r.erasure.is_none() && r.payload.is_some()), "nothing was erased");
    let row = projections::models::organizations::organization(&ledger.models.db, organization_id).await.unwrap();
    assert_eq!(row.unwrap().state.users[&user_id].email, "peter@example.test", "the read models are untouched");
}

async fn an_erased_organizations_unsent_notifications_are_dropped(fixture: Fixture) {
    let ledger = &fixture.ledger;
    let organization_id = organization(ledger, "Umbrella").await;
    // No admin yet: the onboarding e-mail with the license key waits.
    subscription(ledger, organization_id, false).await;
    ledger.models.wait_for(head(ledger).await, WAIT).await.unwrap();
    let pending =
        || projections::models::notifications::pending_of_organization(&ledger.models.db, organization_id, 10);
    let waiting = pending().await.unwrap();
    assert!(!waiting.is_empty(), "the onboarding notice waits for an admin");

    // The term ended (it does not renew): nothing is live any more.
    let subject = Subject::Organization { organization_id };
    assert!(matches!(erase(ledger, &subject).await, Err(Error::Conflict { code: "subscription_live", .. })));
    ledger.clock.advance(Timestamp::parse_rfc3339("2027-01-02T00:00:00Z").unwrap()).unwrap().unwrap();
    usecases::scheduler::tick(ledger).await.unwrap();
    let erased = erase(ledger, &subject).await.unwrap();
    assert_eq!(erased.erasure_sequences.len(), 1, "{erased:?}");
    assert_eq!(pending().await.unwrap(), vec![], "no notice of the organization is left to send");
    for notice in waiting {
        let recorded = ledger.log.read_stream(&notice.id.stream(), 1, 10).await.unwrap();
        assert_eq!(recorded.len(), 1, "{}", notice.id);
        assert_eq!(recorded[0].header.event_type, "NotificationSkipped");
    }
    assert_read_models_equal_a_rebuild(ledger).await;
}

/// Where `cargo xtask test` installs the peers (api/tests/stripe/peers.rs).
fn peers_dir() -> std::path::PathBuf {
    std::env::var_os("LEDGER_PEERS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/peers"))
}

/// A running localstripe, stopped when dropped; `None` (after the skip
/// notice, a failure under CI) when it is not installed.
async fn localstripe(test: &str) -> Option<(tokio::process::Child, String)> {
    let program = peers_dir().join("localstripe/bin/localstripe");
    if !program.is_file() {
        let why = format!("localstripe is not installed in {}", peers_dir().display());
        store::testing::skip(test, store::testing::Peer::LocalStripe, &why);
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new(program)
        .args(["--port", &port.to_string(), "--from-scratch"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "localstripe did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((child, format!("http://127.0.0.1:{port}/")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_organizations_stripe_customer_is_redacted() {
    use stripe_core::customer::{CreateCustomer, RetrieveCustomer, RetrieveCustomerReturned};
    let Some((_localstripe, base)) = localstripe("erasure::an_erased_organizations_stripe_customer_is_redacted").await
    else {
        return;
    };
    let settings = usecases::stripe::Settings {
        secret_key: Some("sk_test_ledger".into()),
        api_base: Some(base),
        ..Default::default()
    };
    let stripe = Stripe::new(settings).unwrap();
    let client = stripe.client.as_ref().unwrap();
    let mut created = None;
    for _ in 0..50 {
        let request = CreateCustomer::new().name("Umbrella Holdings").email("billing@umbrella.test").phone("+15550100");
        match request.send(client).await {
            Ok(customer) => {
                created = Some(customer);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let customer_id = created.expect("localstripe answers").id.as_str().to_owned();

    let fixture = open(None).await;
    let ledger = &fixture.ledger;
    let organization_id = organization(ledger, "Umbrella Holdings").await;
    let linked: domain::stripe::StripeEvent =
        domain::stripe::StripeCustomerLinked { organization_id, customer_id: customer_id.clone() }.into();
    let command = store::Command {
        stream_id: domain::stripe::customer_stream(organization_id),
        expected: store::ExpectedRevision::NoStream,
        idempotency: None,
        events: vec![store::NewEvent::from_event(
            &linked,
            usecases::command::new_event_id(),
            ledger.now(),
            &Metadata::default(),
        )],
    };
    ledger.log.append_one(command).await.unwrap().unwrap();

    let (caller, context) = operator();
    let subject = Subject::Organization { organization_id };
    privacy::erase(ledger, &caller, &context, &stripe, &subject, ErasureReason::Request).await.unwrap();
    let RetrieveCustomerReturned::Customer(customer) =
        RetrieveCustomer::new(customer_id.as_str()).send(client).await.unwrap()
    else {
        panic!("the customer is redacted, not deleted");
    };
    let empty = |field: Option<String>| field.is_none_or(|text| text.is_empty());
    assert!(empty(customer.name.clone()), "name {:?}", customer.name);
    assert!(empty(customer.email.clone()), "email {:?}", customer.email);
    assert!(empty(customer.phone.clone()), "phone {:?}", customer.phone);
}

/// Whether a subject may be erased is decided on read models that hold the
/// whole log. Before, an erasure by a process whose models had not yet
/// applied a deactivation another process appended (the command line run
/// right after the server stopped) was refused with "still active", or
/// found no such user: CI saw it on PostgreSQL. Here the models are held
/// back deterministically: the test holds the read models' leadership
/// lock while the organization, its user and the deactivation are
/// appended, and lets go just before the erasure, which must wait for the
/// models to catch up rather than decide on what they held.
#[tokio::test]
async fn an_erasure_waits_for_read_models_behind_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let leadership = std::fs::File::create(dir.path().join(projections::db::LEADER_LOCK_FILE)).unwrap();
    leadership.try_lock().expect("the test leads first");
    let config = LedgerConfig {
        data_dir: dir.path().to_path_buf(),
        database_url: None,
        clock: "manual:2026-01-01T00:00:00Z".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    };
    let ledger = Ledger::open(&config).await.expect("the ledger opens");
    // No credential: as a separate process, nothing of these writes is
    // waited for by the erasure below except through the log's head.
    let quiet = Context { credential: None, ..context(&Caller::Operator) };
    let input = CreateOrganizationInput { name: "Lagging".into(), domain: None, industry: None, employee_count: None };
    let created = organizations::create_organization(&ledger, &Caller::Operator, &quiet, input).await.unwrap();
    let organization_id = OrganizationId(created.id);
    let user_id = add_user(&ledger, (&Caller::Operator, &quiet), organization_id, "lagging@example.test").await;
    organizations::deactivate_user(&ledger, &Caller::Operator, &quiet, organization_id, user_id).await.unwrap();
    assert_eq!(ledger.models.applied(), 0, "the models are held back");
    drop(leadership);
    let subject = Subject::User { organization_id, user_id };
    let erased = privacy::erase(&ledger, &Caller::Operator, &quiet, &Stripe::off(), &subject, ErasureReason::Request)
        .await
        .expect("the erasure waits for the models, then erases");
    assert!(erased.erased_records > 0, "{erased:?}");
}
