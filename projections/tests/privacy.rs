//! The read models under erasure and retention (issue 16), on both
//! backends (PostgreSQL when `DATABASE_URL` is set): a user with an e-mail
//! address, sign-ins from an address and an SSO link is erased at the
//! store level as the erasure use case does it (`SubjectErased` appended,
//! `EventLog::erase` with `privacy::facts`), the read models are purged,
//! and every table must equal a rebuild from the erased log; on SQLite no
//! byte of the address or the IP is left in the read models' file or its
//! `-wal`. The same for a whole organization and a staff user, and for
//! retired usage (erased with no facts: skipped by every projection).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::NaiveDate;
use domain::catalog::Catalog;
use domain::event::StoredEvent;
use domain::organization::{OrganizationCreated, OrganizationEvent, Role, UserAdded, UserDeactivated, UserRoleChanged};
use domain::privacy::{ErasedRecord, ErasureReason, PrivacyEvent, RetentionApplied, Subject, SubjectErased};
use domain::record::Record;
use domain::signin::{self, SignInEvent, SignedIn};
use domain::sso::{SsoEvent, SsoLinked, SsoSignedIn};
use domain::staff::{StaffEvent, StaffId, StaffRole, StaffUserAdded};
use domain::usage::{Metrics, UsageEvent, UsageReported};
use domain::{Clock, EventId, LicenseId, Metadata, OrganizationId, StreamId, SubscriptionId, Timestamp, UserId};
use ledger_projections::db::{ReadModelDb, Rebuild, Runner, compare};
use ledger_projections::models::{self, customers, organizations, staff, usage};
use rust_decimal::Decimal;
use store::{Command, ErasedRow, EventLog, ExpectedRevision, NewEvent};

const START: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
const ALICE_EMAIL: &str = "alice.erasable@acme.example";
const ALICE_IP: &str = "203.0.113.77";
const ALICE_SUBJECT: &str = "oidc-subject-of-alice-4711";
const BOB_EMAIL: &str = "bob@acme.example";
const OTHER_EMAIL: &str = "carol.gone@other.example";
const STAFF_EMAIL: &str = "dave.staff@vendor.example";

struct Ticking(AtomicI64);

impl Clock for Ticking {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.fetch_add(1_000_000, Ordering::Relaxed))
    }
}

fn id(kind: u128, n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128((kind << 64) | n)
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

const ACME: OrganizationId = OrganizationId(uuid::Uuid::from_u128(1 << 64 | 1));
const OTHER: OrganizationId = OrganizationId(uuid::Uuid::from_u128(1 << 64 | 2));
const ALICE: UserId = UserId(uuid::Uuid::from_u128(4 << 64 | 1));
const BOB: UserId = UserId(uuid::Uuid::from_u128(4 << 64 | 2));
const CAROL: UserId = UserId(uuid::Uuid::from_u128(4 << 64 | 3));
const DAVE: StaffId = StaffId(uuid::Uuid::from_u128(0x5a01));

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    Postgres,
}

struct Fixture {
    dir: tempfile::TempDir,
    log: EventLog,
    db: ReadModelDb,
    kind: Kind,
    events: u64,
}

async fn fixture(kind: Kind, test: &str) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(Ticking(AtomicI64::new(START)));
    let (log, db) = match kind {
        Kind::Sqlite => {
            let log = EventLog::open_sqlite(&dir.path().join("ledger.sqlite"), clock).await.unwrap();
            (log, ReadModelDb::open_sqlite(dir.path()).await.unwrap())
        }
        Kind::Postgres => {
            let url = store::testing::postgres_url(test)?;
            let schema = store::testing::fresh_schema(&url).await;
            let db = ReadModelDb::open_postgres(schema.options.clone()).await.unwrap();
            (EventLog::open_postgres(schema.options, clock).await.unwrap(), db)
        }
    };
    Some(Fixture { dir, log, db, kind, events: 0 })
}

impl Fixture {
    /// Appends one event; returns its sequence.
    async fn push<E: StoredEvent>(&mut self, stream: StreamId, event: &E, metadata: Metadata) -> u64 {
        let at = Timestamp::from_micros(START + self.events as i64 * 1000);
        self.push_at(stream, event, metadata, at).await
    }

    /// Appends one event that occurred `at`; returns its sequence.
    async fn push_at<E: StoredEvent>(&mut self, stream: StreamId, event: &E, metadata: Metadata, at: Timestamp) -> u64 {
        self.events += 1;
        let new = NewEvent::from_event(event, EventId(id(99, u128::from(self.events))), at, &metadata);
        let command =
            Command { stream_id: stream, expected: ExpectedRevision::Any, idempotency: None, events: vec![new] };
        self.log.append(vec![command]).await.unwrap().pop().unwrap().unwrap();
        self.log.head().await.unwrap().sequence
    }

    fn runner(&self, db: &ReadModelDb) -> Runner {
        Runner::new(self.log.clone(), db.clone(), models::all(Catalog::builtin())).unwrap()
    }

    /// A fresh rebuild of the whole log into a scratch file equals the
    /// live read models, table by table.
    async fn assert_equals_rebuild(&self, what: &str) {
        let scratch = tempfile::tempdir().unwrap();
        let rebuilt = ReadModelDb::open_sqlite_file(&scratch.path().join("rebuild.sqlite")).await.unwrap();
        let head = self.log.head().await.unwrap().sequence;
        assert_eq!(self.runner(&rebuilt).catch_up().await.unwrap(), head);
        let difference = compare(&self.db, &rebuilt, &models::tables()).await.unwrap();
        assert_eq!(difference, None, "{:?}, {what}: the purged read models differ from a rebuild", self.kind);
    }

    /// Every record that holds `subject`'s personal data (as the erasure
    /// use case finds them), erased under one `SubjectErased`; returns the
    /// records as the log now holds them.
    async fn erase(&mut self, subject: &Subject) -> Vec<Record> {
        let head = self.log.head().await.unwrap().sequence;
        let mut records = Vec::new();
        for record in self.log.read_page(1..=head, 10_000).await.unwrap() {
            let Some(payload) = record.payload.as_deref() else { continue };
            if domain::privacy::concerns(&record.header, payload, record.metadata.as_deref(), subject) {
                let facts = domain::privacy::facts(&record.header, payload).unwrap();
                records.push(ErasedRecord { sequence: record.header.sequence, facts: Some(facts) });
            }
        }
        assert!(!records.is_empty(), "{subject:?} has records");
        let rows: Vec<ErasedRow> =
            records.iter().map(|r| ErasedRow { sequence: r.sequence, facts: r.facts.clone() }).collect();
        let erased = SubjectErased {
            subject: subject.clone(),
            reason: ErasureReason::Request,
            at: Timestamp::from_micros(START + 86_400_000_000),
            records,
        };
        let by = self.push(domain::privacy::privacy_stream(), &PrivacyEvent::from(erased), Metadata::default()).await;
        assert_eq!(self.log.erase(by, &rows).await.unwrap(), rows.len() as u64);
        let mut now = Vec::new();
        for row in &rows {
            now.extend(self.log.read_page(row.sequence..=row.sequence, 1).await.unwrap());
        }
        assert!(now.iter().all(|r| r.payload.is_none() && r.metadata.is_none() && r.erasure.is_some()));
        now
    }

    /// Which of the read models' SQLite file and its `-wal` hold `needle`.
    fn files_holding(&self, needle: &str) -> Vec<&'static str> {
        ["readmodels.sqlite", "readmodels.sqlite-wal"]
            .into_iter()
            .filter(|name| {
                let bytes = std::fs::read(self.dir.path().join(name)).unwrap_or_default();
                bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            })
            .collect()
    }

    /// The read models' SQLite file and its `-wal` hold none of `needles`.
    fn assert_files_clean(&self, needles: &[&str]) {
        if !matches!(self.kind, Kind::Sqlite) {
            return;
        }
        for needle in needles {
            assert_eq!(self.files_holding(needle), Vec::<&str>::new(), "{needle:?} is still in the read models");
        }
    }
}

fn by(actor: String, ip: &str) -> Metadata {
    Metadata { actor: Some(actor), source_ip: Some(ip.to_owned()), ..Metadata::default() }
}

/// Two organizations; Acme's Alice (deactivated since) signed in by a link
/// and by SSO from [`ALICE_IP`], with an SSO link; Bob added her; the
/// other organization's Carol; a staff user.
async fn history(f: &mut Fixture) {
    let operator = Metadata { actor: Some("operator".into()), ..Metadata::default() };
    for (org, name, domain) in [(ACME, "Acme Widgets", Some("acme.example")), (OTHER, "Other Things", None)] {
        let created = OrganizationCreated {
            id: org,
            name: name.into(),
            domain: domain.map(str::to_owned),
            industry: Some("testing".into()),
            employee_count: Some(12),
        };
        f.push(org.stream(), &OrganizationEvent::from(created), operator.clone()).await;
    }
    let bob_actor = format!("org:{ACME}:admin:user:{BOB}");
    let add =
        |user_id, email: &str| OrganizationEvent::from(UserAdded { user_id, email: email.into(), role: Role::Admin });
    f.push(ACME.stream(), &add(BOB, BOB_EMAIL), operator.clone()).await;
    f.push(ACME.stream(), &add(ALICE, ALICE_EMAIL), by(bob_actor.clone(), "198.51.100.2")).await;
    f.push(OTHER.stream(), &add(CAROL, OTHER_EMAIL), operator.clone()).await;
    let alice = by(format!("org:{ACME}:user:{ALICE}"), ALICE_IP);
    let at = Timestamp::from_micros(START);
    let secret = domain::keys::ServerSecret::from_bytes([3; 32]);
    let signed_in =
        SignedIn { organization_id: ACME, user_id: ALICE, session_id: id(8, 1), address: ALICE_IP.into(), at };
    f.push(signin::link_stream(&secret, "a link"), &SignInEvent::from(signed_in), alice.clone()).await;
    let linked = SsoLinked {
        organization_id: ACME,
        user_id: ALICE,
        issuer: "https://issuer.example".into(),
        subject: ALICE_SUBJECT.into(),
        created: false,
        at,
    };
    let link = domain::sso::link_stream(&secret, ACME, "https://issuer.example", ALICE_SUBJECT);
    f.push(link, &SsoEvent::from(linked), alice.clone()).await;
    let sso = SsoSignedIn {
        organization_id: ACME,
        user_id: ALICE,
        issuer: "https://issuer.example".into(),
        session_id: id(8, 2),
        address: ALICE_IP.into(),
        at,
    };
    f.push(domain::sso::signin_stream(id(8, 2)), &SsoEvent::from(sso), alice).await;
    let deactivated = OrganizationEvent::from(UserDeactivated { user_id: ALICE });
    f.push(ACME.stream(), &deactivated, by(bob_actor, "198.51.100.2")).await;
    let staff = StaffUserAdded {
        staff_id: DAVE,
        name: "Dave Staffer".into(),
        email: STAFF_EMAIL.into(),
        role: StaffRole::Support,
    };
    f.push(domain::staff::stream(), &StaffEvent::from(staff), operator).await;
}

async fn erase_a_user(kind: Kind) {
    let Some(mut f) = fixture(kind, "privacy erase user").await else { return };
    history(&mut f).await;
    // A runner that stays loaded across the purge: its cached rows and
    // memory predate it.
    let mut live = f.runner(&f.db);
    live.catch_up().await.unwrap();
    assert_eq!(organizations::active_users_by_email(&f.db, BOB_EMAIL).await.unwrap().len(), 1);

    let subject = Subject::User { organization_id: ACME, user_id: ALICE };
    let erased = f.erase(&subject).await;
    live.catch_up().await.unwrap();
    let changed = f.db.purge_subject(&subject, &erased).await.unwrap();
    assert!(changed > 0, "the purge changed rows");
    f.assert_equals_rebuild("after the purge").await;
    f.assert_files_clean(&[ALICE_EMAIL, ALICE_IP, ALICE_SUBJECT]);
    assert_eq!(f.db.purge_subject(&subject, &erased).await.unwrap(), 0, "a second purge changes nothing");

    // What stays: Alice's seat and role, Bob, the other organization, the
    // organization's own search keys.
    let users = organizations::users(&f.db, ACME, None, 10).await.unwrap();
    let alice = users.iter().find(|u| u.user_id == ALICE).expect("her seat stays");
    assert!(!alice.active && alice.role == Some(Role::Admin) && alice.email != ALICE_EMAIL, "{alice:?}");
    assert_eq!(organizations::active_users_by_email(&f.db, BOB_EMAIL).await.unwrap().len(), 1);
    assert_eq!(customers::search(&f.db, "d:acme.example", 10).await.unwrap(), vec![ACME]);
    assert_eq!(customers::search(&f.db, "n:acme", 10).await.unwrap(), vec![ACME]);

    // The runner loaded before the purge carries on from the purged rows:
    // a later event on the organization does not write her address back.
    let role = OrganizationEvent::from(UserRoleChanged { user_id: ALICE, role: Role::Viewer });
    f.push(ACME.stream(), &role, Metadata::default()).await;
    live.catch_up().await.unwrap();
    f.assert_equals_rebuild("after a later event").await;
    let state = organizations::organization(&f.db, ACME).await.unwrap().unwrap().state;
    assert!(state.users.values().all(|u| u.email != ALICE_EMAIL));
}

async fn erase_an_organization(kind: Kind) {
    let Some(mut f) = fixture(kind, "privacy erase organization").await else { return };
    history(&mut f).await;
    f.runner(&f.db).catch_up().await.unwrap();
    let subject = Subject::Organization { organization_id: OTHER };
    let erased = f.erase(&subject).await;
    f.db.purge_subject(&subject, &erased).await.unwrap();
    f.runner(&f.db).catch_up().await.unwrap();
    f.assert_equals_rebuild("after purging an organization").await;
    f.assert_files_clean(&[OTHER_EMAIL]);
    assert!(customers::search(&f.db, "d:other.example", 10).await.unwrap().is_empty());
    // Acme is untouched.
    assert_eq!(organizations::active_users_by_email(&f.db, BOB_EMAIL).await.unwrap().len(), 1);
}

async fn erase_a_staff_user(kind: Kind) {
    let Some(mut f) = fixture(kind, "privacy erase staff").await else { return };
    history(&mut f).await;
    f.runner(&f.db).catch_up().await.unwrap();
    let subject = Subject::Staff { staff_id: DAVE };
    let erased = f.erase(&subject).await;
    f.runner(&f.db).catch_up().await.unwrap();
    assert!(f.db.purge_subject(&subject, &erased).await.unwrap() > 0);
    f.assert_equals_rebuild("after purging a staff user").await;
    f.assert_files_clean(&[STAFF_EMAIL]);
    let dave = staff::staff_user(&f.db, DAVE).await.unwrap().expect("the staff user's row stays");
    assert!(dave.email != STAFF_EMAIL && dave.role == StaffRole::Support && dave.active, "{dave:?}");
}

/// Usage reports of January and February; January's are retired (erased
/// with no facts): every projection skips them, the read models drop
/// January's daily rows and keep February's.
async fn retire_usage(kind: Kind) {
    let Some(mut f) = fixture(kind, "privacy retire usage").await else { return };
    let (subscription_id, january) = usage_history(&mut f).await;
    f.runner(&f.db).catch_up().await.unwrap();
    assert_eq!(usage::month(&f.db, subscription_id, d(2026, 1, 1)).await.unwrap().days.len(), 3);
    let up_to_sequence = *january.last().unwrap();
    let by = retention_applied(&mut f, up_to_sequence, january.len()).await;
    let rows: Vec<ErasedRow> = january.iter().map(|&sequence| ErasedRow { sequence, facts: None }).collect();
    f.log.erase(by, &rows).await.unwrap();
    let deleted = f.db.retire_usage(d(2026, 2, 1), up_to_sequence).await.unwrap();
    assert!(deleted >= 3, "January's rows went: {deleted}");
    f.runner(&f.db).catch_up().await.unwrap();
    assert!(usage::month(&f.db, subscription_id, d(2026, 1, 1)).await.unwrap().days.is_empty());
    assert_eq!(usage::month(&f.db, subscription_id, d(2026, 2, 1)).await.unwrap().days.len(), 2);
    f.assert_equals_rebuild("after retiring January's usage").await;
}

/// The same with the retired records made in memory, as the store hands
/// them over (no payload, no facts): the rebuild skips them.
async fn retire_usage_in_memory(kind: Kind) {
    let Some(mut f) = fixture(kind, "privacy retire usage in memory").await else { return };
    let (subscription_id, january) = usage_history(&mut f).await;
    let up_to_sequence = *january.last().unwrap();
    let by = retention_applied(&mut f, up_to_sequence, january.len()).await;
    f.runner(&f.db).catch_up().await.unwrap();
    let mut records = f.log.read_page(1..=by, 10_000).await.unwrap();
    for &sequence in &january {
        let record = &mut records[sequence as usize - 1];
        (record.payload, record.metadata, record.salt) = (None, None, None);
        record.erasure = Some(domain::record::Erasure { by, facts: None });
    }
    assert!(f.db.retire_usage(d(2026, 2, 1), up_to_sequence).await.unwrap() >= 3);
    assert_eq!(usage::retired(&f.db).await.unwrap(), Some((d(2026, 2, 1), up_to_sequence)));
    assert!(usage::month(&f.db, subscription_id, d(2026, 1, 1)).await.unwrap().days.is_empty());
    assert_eq!(usage::month(&f.db, subscription_id, d(2026, 2, 1)).await.unwrap().days.len(), 2);
    let scratch = tempfile::tempdir().unwrap();
    let rebuilt = ReadModelDb::open_sqlite_file(&scratch.path().join("rebuild.sqlite")).await.unwrap();
    let mut rebuild = Rebuild::new(rebuilt.clone(), models::all(Catalog::builtin()), by).await.unwrap();
    rebuild.apply(Arc::from(records)).await.unwrap();
    rebuild.finish().await.unwrap();
    let difference = compare(&f.db, &rebuilt, &models::tables()).await.unwrap();
    assert_eq!(difference, None, "{kind:?}: the read models differ from a rebuild without the retired usage");
}

async fn retention_applied(f: &mut Fixture, up_to_sequence: u64, records: usize) -> u64 {
    let applied = RetentionApplied {
        at: Timestamp::from_micros(START + 86_400_000_000 * 40),
        usage_before: Timestamp::from_micros(START + 86_400_000_000 * 31),
        up_to_sequence,
        usage_records: records as u64,
        keys_archived: 0,
        subscriptions_anonymized: 0,
    };
    f.push(domain::privacy::privacy_stream(), &PrivacyEvent::from(applied), Metadata::default()).await
}

/// The [`history`], then usage reports of three January days and two
/// February days, each occurring on its day; the January sequences.
async fn usage_history(f: &mut Fixture) -> (SubscriptionId, Vec<u64>) {
    history(f).await;
    let subscription_id = SubscriptionId(id(2, 1));
    let mut january = Vec::new();
    for (month, days) in [(1, 3), (2, 2)] {
        for day in 1..=days {
            let report = UsageReported {
                subscription_id,
                license_id: LicenseId(id(3, 1)),
                deployment_id: "dep-1".into(),
                day: d(2026, month, day),
                metrics: Metrics {
                    active_users: 3,
                    data_volume_gb: Decimal::new(15, 1),
                    api_calls_count: 100,
                    training_hours: Decimal::ZERO,
                },
            };
            let stream = domain::usage::stream(subscription_id, report.day);
            let at = Timestamp::from_micros(START + 86_400_000_000 * (i64::from(month - 1) * 31 + i64::from(day)));
            let sequence = f.push_at(stream, &UsageEvent::from(report), Metadata::default(), at).await;
            if month == 1 {
                january.push(sequence);
            }
        }
    }
    (subscription_id, january)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_user_purges_the_read_models_to_a_rebuild_on_sqlite() {
    erase_a_user(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_user_purges_the_read_models_to_a_rebuild_on_postgres() {
    erase_a_user(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_an_organization_purges_the_read_models_to_a_rebuild_on_sqlite() {
    erase_an_organization(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_an_organization_purges_the_read_models_to_a_rebuild_on_postgres() {
    erase_an_organization(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_staff_user_purges_the_read_models_to_a_rebuild_on_sqlite() {
    erase_a_staff_user(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_staff_user_purges_the_read_models_to_a_rebuild_on_postgres() {
    erase_a_staff_user(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_usage_is_skipped_and_its_daily_rows_go_on_sqlite() {
    retire_usage(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_usage_is_skipped_and_its_daily_rows_go_on_postgres() {
    retire_usage(Kind::Postgres).await;
}

/// A runner loaded before a purge never writes back what it cached or
/// holds from before it: here a row is changed behind its back (as a
/// purge changes it) and a purge counted; its next batch builds on the
/// changed row.
async fn runner_reloads_after_a_purge(kind: Kind) {
    let Some(mut f) = fixture(kind, "privacy runner reloads").await else { return };
    let operator = Metadata { actor: Some("operator".into()), ..Metadata::default() };
    let created = OrganizationCreated {
        id: ACME,
        name: "Acme Widgets".into(),
        domain: None,
        industry: None,
        employee_count: None,
    };
    f.push(ACME.stream(), &OrganizationEvent::from(created.clone()), operator.clone()).await;
    let add = OrganizationEvent::from(UserAdded { user_id: BOB, email: BOB_EMAIL.into(), role: Role::Admin });
    f.push(ACME.stream(), &add, operator.clone()).await;
    let mut live = f.runner(&f.db);
    live.catch_up().await.unwrap();

    let renamed = OrganizationCreated { name: "Renamed Behind Its Back".into(), ..created };
    let hex: String = domain::codec::encode(&renamed).iter().map(|b| format!("{b:02x}")).collect();
    let id: String = ACME.0.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let (blob, key) = match kind {
        Kind::Sqlite => (format!("X'{hex}'"), format!("X'{id}'")),
        Kind::Postgres => (format!("'\\x{hex}'::bytea"), format!("'\\x{id}'::bytea")),
    };
    f.db.execute_script(&format!("UPDATE rm_organizations SET created = {blob} WHERE id = {key}")).await.unwrap();
    // A purge of a subject the read models do not hold changes no row but
    // is counted.
    let nobody = Subject::User { organization_id: OrganizationId(id_of(77)), user_id: UserId(id_of(78)) };
    assert_eq!(f.db.purge_subject(&nobody, &[]).await.unwrap(), 0);

    let role = OrganizationEvent::from(UserRoleChanged { user_id: BOB, role: Role::Viewer });
    f.push(ACME.stream(), &role, operator).await;
    live.catch_up().await.unwrap();
    assert_eq!(organizations::name(&f.db, ACME).await.unwrap().as_deref(), Some("Renamed Behind Its Back"));
    let users = organizations::users(&f.db, ACME, None, 10).await.unwrap();
    assert_eq!(users[0].role, Some(Role::Viewer), "the event was applied");
}

fn id_of(n: u128) -> uuid::Uuid {
    id(7, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_loaded_before_a_purge_builds_on_the_purged_rows_on_sqlite() {
    runner_reloads_after_a_purge(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_loaded_before_a_purge_builds_on_the_purged_rows_on_postgres() {
    runner_reloads_after_a_purge(Kind::Postgres).await;
}

/// The erased log as the store will hand it over, made in memory: the
/// records concerning `subject` with no metadata, payload or salt and
/// their facts kept, under a real `SubjectErased`. Returns every record of
/// the log so and the erased ones.
async fn erase_in_memory(f: &mut Fixture, subject: &Subject) -> (Vec<Record>, Vec<Record>) {
    let head = f.log.head().await.unwrap().sequence;
    let mut records = f.log.read_page(1..=head, 10_000).await.unwrap();
    let mut listed = Vec::new();
    for record in &records {
        let payload = record.payload.as_deref().unwrap();
        if domain::privacy::concerns(&record.header, payload, record.metadata.as_deref(), subject) {
            let facts = domain::privacy::facts(&record.header, payload).unwrap();
            listed.push(ErasedRecord { sequence: record.header.sequence, facts: Some(facts) });
        }
    }
    let erased_event = SubjectErased {
        subject: subject.clone(),
        reason: ErasureReason::Request,
        at: Timestamp::from_micros(START + 86_400_000_000),
        records: listed.clone(),
    };
    let by = f.push(domain::privacy::privacy_stream(), &PrivacyEvent::from(erased_event), Metadata::default()).await;
    records.extend(f.log.read_page(by..=by, 1).await.unwrap());
    let mut erased = Vec::new();
    for listed in listed {
        let record = &mut records[listed.sequence as usize - 1];
        record.payload = None;
        record.metadata = None;
        record.salt = None;
        record.erasure = Some(domain::record::Erasure { by, facts: listed.facts });
        erased.push(record.clone());
    }
    (records, erased)
}

/// The purged read models equal a rebuild from exactly the records the
/// store hands over after the erasure (made in memory here; the tests
/// above erase through the store).
async fn purge_equals_a_rebuild_of_the_erased_records(kind: Kind) {
    for subject in [
        Subject::User { organization_id: ACME, user_id: ALICE },
        Subject::Organization { organization_id: OTHER },
        Subject::Staff { staff_id: DAVE },
    ] {
        let Some(mut f) = fixture(kind, "privacy purge in memory").await else { return };
        history(&mut f).await;
        let (records, erased) = erase_in_memory(&mut f, &subject).await;
        assert!(!erased.is_empty());
        f.runner(&f.db).catch_up().await.unwrap();
        let needles: &[&str] = match subject {
            Subject::User { .. } => &[ALICE_EMAIL, ALICE_IP],
            Subject::Organization { .. } => &[OTHER_EMAIL, "Other Things"],
            Subject::Staff { .. } => &[STAFF_EMAIL, "Dave Staffer"],
        };
        if matches!(kind, Kind::Sqlite) {
            assert!(needles.iter().all(|n| !f.files_holding(n).is_empty()), "the read models held them before");
        }
        assert!(f.db.purge_subject(&subject, &erased).await.unwrap() > 0, "{subject:?}");
        assert_eq!(f.db.purge_subject(&subject, &erased).await.unwrap(), 0, "{subject:?}: a second purge");

        let scratch = tempfile::tempdir().unwrap();
        let rebuilt = ReadModelDb::open_sqlite_file(&scratch.path().join("rebuild.sqlite")).await.unwrap();
        let until = records.last().unwrap().header.sequence;
        let mut rebuild = Rebuild::new(rebuilt.clone(), models::all(Catalog::builtin()), until).await.unwrap();
        rebuild.apply(Arc::from(records)).await.unwrap();
        rebuild.finish().await.unwrap();
        let difference = compare(&f.db, &rebuilt, &models::tables()).await.unwrap();
        assert_eq!(difference, None, "{kind:?}, {subject:?}: the purged read models differ from a rebuild");
        f.assert_files_clean(needles);
        f.assert_files_clean(&[ALICE_SUBJECT]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_equals_a_rebuild_of_the_erased_records_on_sqlite() {
    purge_equals_a_rebuild_of_the_erased_records(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_equals_a_rebuild_of_the_erased_records_on_postgres() {
    purge_equals_a_rebuild_of_the_erased_records(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_usage_made_in_memory_equals_a_rebuild_on_sqlite() {
    retire_usage_in_memory(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_usage_made_in_memory_equals_a_rebuild_on_postgres() {
    retire_usage_in_memory(Kind::Postgres).await;
}
