//! One conformance suite for every backend of the log.
//!
//! Each test is written once against `Harness` and instantiated for SQLite
//! and PostgreSQL by `ledger_store::backend_tests!` at the bottom. Tamper tests reach past
//! the log with plain SQL, as an attacker with database access would.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use domain::record::{Defect, Hash, Record, VerifyFailure};
use domain::{Clock, EventId, StreamId, Timestamp};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use ledger_store::{
    Appended, Command, EventLog, ExpectedRevision, Idempotency, NewEvent, READ_PAGE_RECORDS, Rejection, StoreError,
    SystemClock, testing,
};

/// A clock the test moves by hand.
#[derive(Default)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::SeqCst))
    }
}

enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

type Reopen = Box<dyn Fn(Arc<dyn Clock>) -> BoxFuture<'static, Result<EventLog, StoreError>> + Send + Sync>;

struct Harness {
    log: EventLog,
    raw: Raw,
    reopen: Reopen,
    _dir: Option<tempfile::TempDir>,
}

/// Binds values in order to a raw query.
enum Value {
    Int(i64),
    Bytes(Option<Vec<u8>>),
    Text(Option<String>),
    Uuid(uuid::Uuid),
}

macro_rules! bind_all {
    ($query:expr, $values:expr) => {{
        let mut query = $query;
        for value in $values {
            query = match value {
                Value::Int(v) => query.bind(*v),
                Value::Bytes(v) => query.bind(v.clone()),
                Value::Text(v) => query.bind(v.clone()),
                Value::Uuid(v) => query.bind(*v),
            };
        }
        query
    }};
}

impl testing::BackendFixture for Harness {
    async fn sqlite(_test: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sqlite");
        let log = EventLog::open_sqlite(&path, Arc::new(SystemClock)).await.unwrap();
        let raw =
            sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path)).await.unwrap();
        Self {
            log,
            raw: Raw::Sqlite(raw),
            reopen: Box::new(move |clock| {
                let path = path.clone();
                Box::pin(async move { EventLog::open_sqlite(&path, clock).await })
            }),
            _dir: Some(dir),
        }
    }

    async fn postgres(test: &str) -> Option<Self> {
        let url = testing::postgres_url(test)?;
        let options = testing::fresh_schema(&url).await.options;
        let log = EventLog::open_postgres(options.clone(), Arc::new(SystemClock)).await.unwrap();
        let raw = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
        Some(Self {
            log,
            raw: Raw::Postgres(raw),
            reopen: Box::new(move |clock| {
                let options = options.clone();
                Box::pin(async move { EventLog::open_postgres(options, clock).await })
            }),
            _dir: None,
        })
    }
}

impl Harness {
    /// Runs SQL directly; `?` placeholders become `$n` on PostgreSQL.
    async fn try_sql(&self, sql: &str, values: &[Value]) -> Result<(), sqlx::Error> {
        match &self.raw {
            Raw::Sqlite(pool) => bind_all!(sqlx::query(sql), values).execute(pool).await.map(drop),
            Raw::Postgres(pool) => {
                let numbered = (1..=values.len()).fold(sql.to_owned(), |sql, n| sql.replacen('?', &format!("${n}"), 1));
                bind_all!(sqlx::query(&numbered), values).execute(pool).await.map(drop)
            }
        }
    }

    async fn sql(&self, sql: &str, values: &[Value]) {
        self.try_sql(sql, values).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Drops the triggers that keep `events` and `erasures` append-only,
    /// as an attacker with full database access can.
    async fn drop_guards(&self) {
        match &self.raw {
            Raw::Sqlite(_) => {
                for trigger in ["events_immutable", "events_append_only", "erasures_immutable", "erasures_append_only"]
                {
                    self.sql(&format!("DROP TRIGGER {trigger}"), &[]).await;
                }
            }
            Raw::Postgres(_) => {
                self.sql("DROP TRIGGER events_immutable ON events", &[]).await;
                self.sql("DROP TRIGGER erasures_immutable ON erasures", &[]).await;
            }
        }
    }

    /// Writes a record straight into `events`, bypassing the writer.
    async fn insert_raw(&self, record: &Record) {
        let header = &record.header;
        self.sql(
            "INSERT INTO events (sequence, event_id, stream_id, stream_revision, event_type, schema_version, occurred_at_us, \
             recorded_at_us, idempotency_key, metadata, metadata_hash, payload, payload_hash, leaf_hash, chain_hash, \
             format, salt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                Value::Int(header.sequence as i64),
                Value::Uuid(header.event_id.0),
                Value::Text(Some(header.stream_id.to_string())),
                Value::Int(header.stream_revision as i64),
                Value::Text(Some(header.event_type.clone())),
                Value::Int(header.schema_version.into()),
                Value::Int(header.occurred_at.as_micros()),
                Value::Int(header.recorded_at.as_micros()),
                Value::Text(header.idempotency_key.clone()),
                Value::Bytes(record.metadata.clone()),
                Value::Bytes(Some(record.metadata_hash.0.to_vec())),
                Value::Bytes(record.payload.clone()),
                Value::Bytes(Some(record.payload_hash.0.to_vec())),
                Value::Bytes(Some(record.leaf_hash.0.to_vec())),
                Value::Bytes(Some(record.chain_hash.0.to_vec())),
                Value::Int(record.format.into()),
                Value::Bytes(record.salt.map(|salt| salt.to_vec())),
            ],
        )
        .await;
    }

    async fn record(&self, sequence: u64) -> Record {
        self.log.read_page(sequence..=sequence, 1).await.unwrap().remove(0)
    }

    async fn first_failure(&self) -> Option<VerifyFailure> {
        self.log.verify(1..=u64::MAX).await.unwrap().failure
    }
}

fn stream(name: &str) -> StreamId {
    StreamId::new(format!("org/{name}")).unwrap()
}

fn event(payload: &[u8]) -> NewEvent {
    NewEvent {
        event_id: EventId(uuid::Uuid::now_v7()),
        event_type: "TestEvent".into(),
        schema_version: 1,
        occurred_at: Timestamp::from_micros(1_767_225_600_000_000),
        metadata: domain::Metadata { actor: Some("tester".into()), ..Default::default() }.encode(),
        payload: payload.to_vec(),
    }
}

fn command(stream_id: StreamId, expected: ExpectedRevision, payloads: &[&[u8]]) -> Command {
    Command { stream_id, expected, idempotency: None, events: payloads.iter().map(|p| event(p)).collect() }
}

fn keyed(key: &str, stream_id: StreamId, payloads: &[&[u8]]) -> Command {
    let events: Vec<NewEvent> = payloads.iter().map(|p| event(p)).collect();
    Command {
        idempotency: Some(Idempotency::of_events(key, &stream_id, &events)),
        stream_id,
        expected: ExpectedRevision::Any,
        events,
    }
}

async fn append(log: &EventLog, command: Command) -> Result<Appended, Rejection> {
    log.append_one(command).await.expect("the store answers")
}

/// Appends `n` single-event commands to stream `org/fill`, payload = index.
async fn fill(log: &EventLog, n: usize) {
    let commands =
        (0..n).map(|i| command(stream("fill"), ExpectedRevision::Any, &[&(i as u32).to_le_bytes()])).collect();
    for result in log.append(commands).await.unwrap() {
        result.unwrap();
    }
}

async fn appends_and_reads(h: Harness) {
    let a = append(&h.log, command(stream("a"), ExpectedRevision::NoStream, &[b"a1", b"a2"])).await.unwrap();
    assert_eq!(a, Appended { first_sequence: 1, last_sequence: 2, stream_revision: 2, replayed: false });
    let b = append(&h.log, command(stream("b"), ExpectedRevision::NoStream, &[b"b1"])).await.unwrap();
    assert_eq!((b.first_sequence, b.stream_revision), (3, 1));
    let a3 = append(&h.log, command(stream("a"), ExpectedRevision::Exactly(2), &[b"a3"])).await.unwrap();
    assert_eq!((a3.first_sequence, a3.stream_revision), (4, 3));

    let all: Vec<_> = h.log.read(1..=u64::MAX).try_collect().await.unwrap();
    let seen: Vec<(u64, &str, u64, &[u8])> = all
        .iter()
        .map(|r| {
            (r.header.sequence, r.header.stream_id.as_str(), r.header.stream_revision, r.payload.as_deref().unwrap())
        })
        .collect();
    assert_eq!(
        seen,
        [(1, "org/a", 1, &b"a1"[..]), (2, "org/a", 2, b"a2"), (3, "org/b", 1, b"b1"), (4, "org/a", 3, b"a3")]
    );
    let middle: Vec<_> = h.log.read(2..=3).try_collect().await.unwrap();
    assert_eq!(middle.iter().map(|r| r.header.sequence).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(h.log.stream_revision(&stream("a")).await.unwrap(), 3);
    assert_eq!(h.log.stream_revision(&stream("nothing")).await.unwrap(), 0);
    let of_a = h.log.read_stream(&stream("a"), 2, 10).await.unwrap();
    assert_eq!(of_a.iter().map(|r| r.header.stream_revision).collect::<Vec<_>>(), [2, 3]);

    // What was written is what is read, and the hashes recompute.
    assert_eq!(all[0].header.event_type, "TestEvent");
    assert_eq!(all[0].header.occurred_at, Timestamp::from_micros(1_767_225_600_000_000));
    assert_eq!(domain::Metadata::decode(all[0].metadata.as_ref().unwrap()).unwrap().actor.as_deref(), Some("tester"));
    let head = h.log.head().await.unwrap();
    assert_eq!((head.sequence, head.chain_hash), (4, all[3].chain_hash));
    let report = h.log.verify(1..=u64::MAX).await.unwrap();
    assert_eq!((report.checked, report.failure), (4, None));
}

async fn wrong_revision_names_expected_and_actual(h: Harness) {
    append(&h.log, command(stream("a"), ExpectedRevision::NoStream, &[b"1", b"2"])).await.unwrap();
    let again = append(&h.log, command(stream("a"), ExpectedRevision::NoStream, &[b"x"])).await;
    assert_eq!(
        again,
        Err(Rejection::WrongRevision { stream_id: stream("a"), expected: ExpectedRevision::NoStream, actual: 2 })
    );
    let stale = append(&h.log, command(stream("a"), ExpectedRevision::Exactly(1), &[b"x"])).await.unwrap_err();
    assert_eq!(stale.to_string(), "stream org/a expected revision 1 but is at revision 2");
    // A cap: appends succeed while the stream is below it, and only then.
    append(&h.log, command(stream("a"), ExpectedRevision::Below(3), &[b"3"])).await.unwrap();
    let capped = append(&h.log, command(stream("a"), ExpectedRevision::Below(3), &[b"4"])).await.unwrap_err();
    assert_eq!(capped.to_string(), "stream org/a expected fewer than 3 events but is at revision 3");
    let missing = append(&h.log, command(stream("new"), ExpectedRevision::Exactly(3), &[b"x"])).await;
    assert!(matches!(missing, Err(Rejection::WrongRevision { actual: 0, .. })));
    assert_eq!(h.log.head().await.unwrap().sequence, 3, "rejected commands append nothing");
}

async fn idempotent_retries_are_answered_not_reapplied(h: Harness) {
    let first = append(&h.log, keyed("k-1", stream("a"), &[b"one", b"two"])).await.unwrap();
    assert!(!first.replayed);
    append(&h.log, command(stream("a"), ExpectedRevision::Any, &[b"other"])).await.unwrap();
    let retry = append(&h.log, keyed("k-1", stream("a"), &[b"one", b"two"])).await.unwrap();
    assert_eq!(retry, Appended { replayed: true, ..first });
    let conflict = append(&h.log, keyed("k-1", stream("a"), &[b"changed"])).await;
    assert_eq!(conflict, Err(Rejection::IdempotencyConflict { key: "k-1".into() }));
    let other_stream = append(&h.log, keyed("k-1", stream("b"), &[b"one", b"two"])).await;
    assert!(matches!(other_stream, Err(Rejection::IdempotencyConflict { .. })));
    assert_eq!(h.log.head().await.unwrap().sequence, 3);

    // The same key twice in one batch: the second is the first's retry.
    let both =
        h.log.append(vec![keyed("k-2", stream("c"), &[b"x"]), keyed("k-2", stream("c"), &[b"x"])]).await.unwrap();
    let (one, two) = (both[0].clone().unwrap(), both[1].clone().unwrap());
    assert_eq!((one.first_sequence, one.replayed, two.first_sequence, two.replayed), (4, false, 4, true));

    // Keys survive a restart of the process.
    let reopened = (h.reopen)(Arc::new(SystemClock)).await.unwrap();
    assert_eq!(append(&reopened, keyed("k-1", stream("a"), &[b"one", b"two"])).await.unwrap(), retry);
    assert_eq!(reopened.head().await.unwrap().sequence, 4);
    let header = &reopened.read_page(1..=1, 1).await.unwrap()[0].header;
    assert_eq!(header.idempotency_key.as_deref(), Some("k-1"), "the key is part of the hashed header");
}

async fn commands_are_all_or_nothing(h: Harness) {
    append(&h.log, command(stream("b"), ExpectedRevision::NoStream, &[b"b1"])).await.unwrap();
    let results = h
        .log
        .append(vec![
            command(stream("a"), ExpectedRevision::NoStream, &[b"a1", b"a2"]),
            command(stream("b"), ExpectedRevision::NoStream, &[b"b2", b"b3", b"b4"]),
            command(stream("c"), ExpectedRevision::Any, &[]),
            command(stream("c"), ExpectedRevision::NoStream, &[b"c1"]),
        ])
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap().last_sequence, 3);
    assert!(matches!(results[1], Err(Rejection::WrongRevision { actual: 1, .. })));
    assert!(matches!(results[2], Err(Rejection::Invalid(_))));
    assert_eq!(results[3].as_ref().unwrap().first_sequence, 4);
    let b = h.log.read_stream(&stream("b"), 1, 10).await.unwrap();
    assert_eq!(b.len(), 1, "no event of the refused command was written");
    assert_eq!(h.first_failure().await, None);
}

async fn a_reused_event_id_fails_alone(h: Harness) {
    let taken = command(stream("a"), ExpectedRevision::Any, &[b"1"]);
    let reused = taken.events[0].event_id;
    append(&h.log, taken).await.unwrap();
    // Two appends reach the writer together; one reuses an event id, which
    // the database refuses. The other must still be appended.
    let mut bad = command(stream("b"), ExpectedRevision::Any, &[b"2"]);
    bad.events[0].event_id = reused;
    let (bad, good) =
        tokio::join!(h.log.append_one(bad), h.log.append_one(command(stream("c"), ExpectedRevision::Any, &[b"3"])));
    assert!(bad.is_err(), "a duplicate event id is a storage error");
    assert!(good.unwrap().is_ok());
    assert_eq!(h.log.head().await.unwrap().sequence, 2);
    assert_eq!(h.first_failure().await, None);
}

async fn oversized_input_is_refused_before_the_writer(h: Harness) {
    let mut huge = command(stream("a"), ExpectedRevision::Any, &[b"x"]);
    huge.events[0].payload = vec![0; domain::record::PAYLOAD_BYTES_MAX + 1];
    assert!(matches!(append(&h.log, huge).await, Err(Rejection::Invalid(_))));
    let mut long_key = keyed("k", stream("a"), &[b"x"]);
    long_key.idempotency.as_mut().unwrap().key = "k".repeat(domain::record::IDEMPOTENCY_KEY_BYTES_MAX + 1);
    assert!(matches!(append(&h.log, long_key).await, Err(Rejection::Invalid(_))));
    let too_many = command(stream("a"), ExpectedRevision::Any, &vec![&b"x"[..]; ledger_store::COMMAND_EVENTS_MAX + 1]);
    assert!(matches!(append(&h.log, too_many).await, Err(Rejection::Invalid(_))));
    assert_eq!(h.log.head().await.unwrap().sequence, 0);
}

async fn concurrent_appenders_build_one_linear_chain(h: Harness) {
    const TASKS: usize = 10;
    const EVENTS_PER_TASK: usize = 1000;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let log = h.log.clone();
            tokio::spawn(async move {
                let mut sequences = Vec::with_capacity(EVENTS_PER_TASK);
                for i in 0..EVENTS_PER_TASK {
                    // Half the tasks share one stream, half own theirs, so
                    // revisions are contended as well as sequences.
                    let name = if task % 2 == 0 { "shared".to_owned() } else { format!("own-{task}") };
                    let payload = format!("{task}:{i}");
                    let appended = append(&log, command(stream(&name), ExpectedRevision::Any, &[payload.as_bytes()]))
                        .await
                        .unwrap();
                    sequences.push(appended.first_sequence);
                }
                sequences
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let sequences = task.await.unwrap();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "one task's appends land in its order");
        all.extend(sequences);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=(TASKS * EVENTS_PER_TASK) as u64).collect::<Vec<_>>());
    let report = h.log.verify(1..=u64::MAX).await.unwrap();
    assert_eq!((report.checked, report.failure), ((TASKS * EVENTS_PER_TASK) as u64, None));
    let shared = h.log.read_stream(&stream("shared"), 1, 10_000).await.unwrap();
    assert_eq!(shared.len(), 5 * EVENTS_PER_TASK);
    assert!(shared.iter().enumerate().all(|(i, r)| r.header.stream_revision == i as u64 + 1));
}

async fn reads_page_through_a_long_log(h: Harness) {
    let total = READ_PAGE_RECORDS * 2 + 17;
    fill(&h.log, total).await;
    let mut expected = 1;
    let mut records = std::pin::pin!(h.log.read(1..=u64::MAX));
    while let Some(record) = records.try_next().await.unwrap() {
        assert_eq!(record.header.sequence, expected);
        assert_eq!(record.payload.unwrap(), ((expected - 1) as u32).to_le_bytes());
        expected += 1;
    }
    assert_eq!(expected - 1, total as u64);
    let report = h.log.verify(100..=200).await.unwrap();
    assert_eq!((report.checked, report.failure), (101, None));
}

async fn recorded_at_never_goes_back(h: Harness) {
    let clock = Arc::new(ManualClock::default());
    clock.0.store(2_000_000, Ordering::SeqCst);
    let log = (h.reopen)(clock.clone()).await.unwrap();
    append(&log, command(stream("a"), ExpectedRevision::Any, &[b"1"])).await.unwrap();
    clock.0.store(1_000_000, Ordering::SeqCst);
    append(&log, command(stream("a"), ExpectedRevision::Any, &[b"2"])).await.unwrap();
    let times: Vec<i64> = log.read(1..=2).map_ok(|r| r.header.recorded_at.as_micros()).try_collect().await.unwrap();
    assert_eq!(times, [2_000_000, 2_000_000]);
}

async fn the_database_refuses_changes_to_records(h: Harness) {
    fill(&h.log, 3).await;
    let update = h.try_sql("UPDATE events SET stream_revision = 9 WHERE sequence = 2", &[]).await.unwrap_err();
    assert!(update.to_string().contains("immutable"), "{update}");
    let delete = h.try_sql("DELETE FROM events WHERE sequence = 2", &[]).await.unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");
    // Setting content to NULL without a sanctioned erasure is refused too
    // (issue 16: it used to be allowed as "shredding").
    let shred = "UPDATE events SET payload = NULL, metadata = NULL, salt = NULL WHERE sequence = 2";
    let refused = h.try_sql(shred, &[]).await.unwrap_err();
    assert!(refused.to_string().contains("sanctioned erasure"), "{refused}");
    assert!(h.record(2).await.payload.is_some());
    assert_eq!(h.first_failure().await, None);
}

async fn tampering_is_caught_at_its_sequence(h: Harness) {
    fill(&h.log, 10).await;
    h.drop_guards().await;
    assert_eq!(h.first_failure().await, None);

    // One payload byte.
    let original = h.record(4).await.payload.unwrap();
    let mut changed = original.clone();
    changed[0] ^= 0x01;
    let set_payload = "UPDATE events SET payload = ? WHERE sequence = 4";
    h.sql(set_payload, &[Value::Bytes(Some(changed))]).await;
    assert_eq!(h.first_failure().await, Some(VerifyFailure { sequence: 4, defect: Defect::PayloadHash }));
    h.sql(set_payload, &[Value::Bytes(Some(original))]).await;
    assert_eq!(h.first_failure().await, None);

    // One header field.
    h.sql("UPDATE events SET occurred_at_us = occurred_at_us + 1 WHERE sequence = 6", &[]).await;
    assert_eq!(h.first_failure().await, Some(VerifyFailure { sequence: 6, defect: Defect::LeafHash }));
    h.sql("UPDATE events SET occurred_at_us = occurred_at_us - 1 WHERE sequence = 6", &[]).await;

    // Two rows swapped: each now sits at the other's position.
    let swap = [
        "UPDATE events SET sequence = -3 WHERE sequence = 3",
        "UPDATE events SET sequence = 3 WHERE sequence = 4",
        "UPDATE events SET sequence = 4 WHERE sequence = -3",
    ];
    for sql in swap {
        h.sql(sql, &[]).await;
    }
    assert_eq!(h.first_failure().await, Some(VerifyFailure { sequence: 3, defect: Defect::LeafHash }));
    for sql in swap {
        h.sql(sql, &[]).await;
    }
    assert_eq!(h.first_failure().await, None);

    // A row inserted in the middle, later rows renumbered to make room:
    // a copy of record 2 with a fresh id and its hashes, placed at 5.
    for sequence in (5..=10).rev() {
        h.sql("UPDATE events SET sequence = sequence + 1 WHERE sequence = ?", &[Value::Int(sequence)]).await;
    }
    let mut copy = h.record(2).await;
    copy.header.sequence = 5;
    copy.header.stream_revision = 1000;
    copy.header.event_id = EventId(uuid::Uuid::now_v7());
    h.insert_raw(&copy).await;
    assert_eq!(h.first_failure().await, Some(VerifyFailure { sequence: 5, defect: Defect::LeafHash }));
}

/// `verify` reads and checks several pages at once (issue 19): the first
/// defect in log order is the one named, with the records before it
/// counted, whichever page's check finishes first.
async fn tampering_in_pages_checked_at_once_is_named_in_order(h: Harness) {
    let page = READ_PAGE_RECORDS as i64;
    fill(&h.log, READ_PAGE_RECORDS * 4 + 3).await;
    h.drop_guards().await;
    let late = 3 * page + 2;
    let early = page + 7;
    let original = h.record(late as u64).await.payload.unwrap();
    let mut changed = original.clone();
    changed[0] ^= 0x01;
    h.sql("UPDATE events SET payload = ? WHERE sequence = ?", &[Value::Bytes(Some(changed)), Value::Int(late)]).await;
    h.sql("UPDATE events SET occurred_at_us = occurred_at_us + 1 WHERE sequence = ?", &[Value::Int(early)]).await;
    let report = h.log.verify(1..=u64::MAX).await.unwrap();
    let failure = VerifyFailure { sequence: early as u64, defect: Defect::LeafHash };
    assert_eq!((report.checked, report.failure), (early as u64 - 1, Some(failure)));
    h.sql("UPDATE events SET occurred_at_us = occurred_at_us - 1 WHERE sequence = ?", &[Value::Int(early)]).await;
    let report = h.log.verify(1..=u64::MAX).await.unwrap();
    let failure = VerifyFailure { sequence: late as u64, defect: Defect::PayloadHash };
    assert_eq!((report.checked, report.failure), (late as u64 - 1, Some(failure)));
    let report = h.log.verify(page as u64 + 1..=u64::MAX).await.unwrap();
    assert_eq!((report.checked, report.failure.map(|f| f.sequence)), ((late - page - 1) as u64, Some(late as u64)));
}

/// `verify_with` hands every record that holds to its visitor once, in
/// sequence order, with the stored leaf and chain hashes, across pages;
/// the record that fails and those after it are not handed on.
async fn verify_with_visits_each_record_that_holds_in_order(h: Harness) {
    let total = READ_PAGE_RECORDS * 2 + 5;
    fill(&h.log, total).await;
    let mut seen = Vec::new();
    let report = h
        .log
        .verify_with(1..=u64::MAX, |r| seen.push((r.sequence, *r.leaf_hash, *r.chain_hash, r.erased_by)))
        .await
        .unwrap();
    assert_eq!(report, ledger_store::VerifyReport { checked: total as u64, failure: None });
    assert_eq!(seen.len(), total);
    for (index, sequence) in [1, READ_PAGE_RECORDS as u64 + 1, total as u64].into_iter().enumerate() {
        let record = h.record(sequence).await;
        let (at, leaf, chain, erased_by) = seen[sequence as usize - 1];
        assert_eq!((at, leaf, chain, erased_by), (sequence, record.leaf_hash, record.chain_hash, None), "{index}");
    }
    assert!(seen.windows(2).all(|w| w[1].0 == w[0].0 + 1), "in sequence order, each once");
    h.drop_guards().await;
    let bad = READ_PAGE_RECORDS as i64 + 3;
    h.sql("UPDATE events SET occurred_at_us = occurred_at_us + 1 WHERE sequence = ?", &[Value::Int(bad)]).await;
    let mut visited = 0u64;
    let report = h.log.verify_with(1..=u64::MAX, |_| visited += 1).await.unwrap();
    assert_eq!((report.checked, visited), (bad as u64 - 1, bad as u64 - 1), "{report:?}");
}

async fn deleted_rows_are_caught(h: Harness) {
    fill(&h.log, 8).await;
    h.drop_guards().await;
    h.sql("DELETE FROM events WHERE sequence = 5", &[]).await;
    assert_eq!(
        h.first_failure().await,
        Some(VerifyFailure { sequence: 5, defect: Defect::SequenceGap { expected: 5, found: 6 } })
    );
    // The tail cut off: the chain verifies up to 4, but the head says 8.
    h.sql("DELETE FROM events WHERE sequence > 4", &[]).await;
    assert_eq!(
        h.first_failure().await,
        Some(VerifyFailure { sequence: 5, defect: Defect::HeadMismatch { last: 4, head: 8 } })
    );
}

async fn a_well_forged_row_behind_the_writer_is_caught(h: Harness) {
    fill(&h.log, 4).await;
    // A record sealed correctly onto the real chain by someone who knows
    // the format, written straight to the table: every hash holds, but the
    // head row never acknowledged it.
    let last = h.record(4).await;
    let mut header = last.header.clone();
    header.sequence = 5;
    header.stream_revision += 1;
    header.event_id = EventId(uuid::Uuid::now_v7());
    h.insert_raw(&Record::seal(header, vec![], b"forged".to_vec(), &last.chain_hash)).await;
    assert_eq!(
        h.first_failure().await,
        Some(VerifyFailure { sequence: 5, defect: Defect::HeadMismatch { last: 5, head: 4 } })
    );
}

async fn atomic_appends_are_all_or_none(h: Harness) {
    append(&h.log, command(stream("b"), ExpectedRevision::NoStream, &[b"b1"])).await.unwrap();
    // One refused command refuses the whole group, naming it.
    let refused = h
        .log
        .append_atomic(vec![
            command(stream("a"), ExpectedRevision::NoStream, &[b"a1"]),
            command(stream("b"), ExpectedRevision::NoStream, &[b"b2"]),
        ])
        .await
        .unwrap();
    assert!(matches!(refused, Err(Rejection::WrongRevision { actual: 1, .. })), "{refused:?}");
    assert_eq!(h.log.head().await.unwrap().sequence, 1, "nothing of the group was written");
    // A group next to it in the same batch is unaffected, and a group that
    // holds lands whole.
    let (refused, landed) = tokio::join!(
        h.log.append_atomic(vec![
            command(stream("c"), ExpectedRevision::NoStream, &[b"c1"]),
            command(stream("c"), ExpectedRevision::NoStream, &[b"c2"]),
        ]),
        h.log.append_atomic(vec![
            keyed("group-1", stream("a"), &[b"a1", b"a2"]),
            command(stream("b"), ExpectedRevision::Exactly(1), &[b"b2"]),
        ]),
    );
    assert!(matches!(refused.unwrap(), Err(Rejection::WrongRevision { .. })));
    let landed = landed.unwrap().unwrap();
    assert_eq!(landed.iter().map(|a| (a.first_sequence, a.last_sequence)).collect::<Vec<_>>(), [(2, 3), (4, 4)]);
    assert!(h.log.read_stream(&stream("c"), 1, 10).await.unwrap().is_empty());
    // A retried group is answered from its first result.
    let retried = h
        .log
        .append_atomic(vec![
            keyed("group-1", stream("a"), &[b"a1", b"a2"]),
            command(stream("b"), ExpectedRevision::Exactly(1), &[b"b2"]),
        ])
        .await
        .unwrap();
    assert!(matches!(retried, Err(Rejection::WrongRevision { .. })), "the unkeyed command's revision moved on");
    assert_eq!(h.first_failure().await, None);
}

async fn snapshots_only_move_forward(h: Harness) {
    let snapshot = |sequence: u64, state: &[u8]| ledger_store::Snapshot {
        name: "limits".into(),
        sequence,
        chain_hash: Some(domain::record::Hash([sequence as u8 + 1; 32])),
        digest: domain::record::Hash([sequence as u8; 32]),
        state: state.to_vec(),
    };
    let now = Timestamp::from_micros(0);
    assert_eq!(h.log.load_snapshot("limits").await.unwrap(), None);
    h.log.save_snapshot(snapshot(5, b"five"), now).await.unwrap();
    h.log.save_snapshot(snapshot(9, b"nine"), now).await.unwrap();
    h.log.save_snapshot(snapshot(7, b"seven"), now).await.unwrap();
    assert_eq!(h.log.load_snapshot("limits").await.unwrap(), Some(snapshot(9, b"nine")));
    assert_eq!(h.log.load_snapshot("other").await.unwrap(), None);
    let other = ledger_store::Snapshot { name: "other".into(), chain_hash: None, ..snapshot(3, b"three") };
    h.log.save_snapshot(other.clone(), now).await.unwrap();
    assert_eq!(h.log.load_snapshot("other").await.unwrap(), Some(other));
    let checkpoint = |name: &str, sequence: u64, chain_hash| ledger_store::SnapshotCheckpoint {
        name: name.into(),
        sequence,
        chain_hash,
    };
    assert_eq!(
        h.log.snapshot_checkpoints().await.unwrap(),
        [checkpoint("limits", 9, Some(domain::record::Hash([10; 32]))), checkpoint("other", 3, None)]
    );
    // A version from before chain hashes (during an upgrade) moves the
    // checkpoint without one: the chain hash it would leave is not known.
    h.sql("UPDATE projection_snapshots SET sequence = 11, saved_at_us = 1 WHERE name = 'limits'", &[]).await;
    assert_eq!(h.log.load_snapshot("limits").await.unwrap().map(|s| (s.sequence, s.chain_hash)), Some((11, None)));
    h.log.save_snapshot(snapshot(12, b"twelve"), now).await.unwrap();
    assert_eq!(h.log.load_snapshot("limits").await.unwrap(), Some(snapshot(12, b"twelve")));
    // Only an operator's accepted rollback removes one; then any sequence
    // may be saved again.
    h.log.delete_snapshot("limits").await.unwrap();
    assert_eq!(h.log.load_snapshot("limits").await.unwrap(), None);
    h.log.save_snapshot(snapshot(5, b"five"), now).await.unwrap();
    assert_eq!(h.log.load_snapshot("limits").await.unwrap(), Some(snapshot(5, b"five")));
}

async fn reads_past_what_the_databases_hold_are_empty_not_a_panic(h: Harness) {
    fill(&h.log, 3).await;
    for start in [i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
        assert!(h.log.read_page(start..=u64::MAX, 10).await.unwrap().is_empty(), "{start}");
        assert!(h.log.read_page(start..=start, 1).await.unwrap().is_empty(), "{start}");
        assert!(h.log.read_stream(&stream("fill"), start, 10).await.unwrap().is_empty(), "{start}");
    }
    assert_eq!(h.log.read_page(2..=u64::MAX, 10).await.unwrap().len(), 2);
}

async fn a_lock_is_held_by_one_process_at_a_time(h: Harness) {
    // A second handle on the same database stands for a second process.
    let other = (h.reopen)(Arc::new(SystemClock)).await.unwrap();
    let held = h.log.try_lock("stripe-sync").await.unwrap().expect("the first taker gets it");
    assert!(held.held().await);
    assert!(other.try_lock("stripe-sync").await.unwrap().is_none(), "a second taker does not");
    let another = other.try_lock("another-job").await.unwrap().expect("other names are other locks");
    drop(held);
    let taken = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(lock) = other.try_lock("stripe-sync").await.unwrap() {
                return lock;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("released when dropped");
    assert!(taken.held().await && another.held().await);
    assert!(h.log.try_lock("Not A Name").await.is_err());
}

async fn portal_sessions_are_found_by_hash_listed_and_end(h: Harness) {
    use ledger_store::sessions::SessionRow;
    let sessions = h.log.sessions().await.unwrap();
    let user = uuid::Uuid::from_u128(7);
    let row = |n: u128, created: i64| SessionRow {
        id: uuid::Uuid::from_u128(n),
        token_hash: Hash([n as u8; 32]),
        organization_id: uuid::Uuid::from_u128(1),
        user_id: user,
        created_at: Timestamp::from_micros(created),
        last_seen: Timestamp::from_micros(created),
        expires_at: Timestamp::from_micros(created + 1_000),
        address: "192.0.2.1".into(),
        user_agent: "test".into(),
    };
    sessions.create(&row(10, 100)).await.unwrap();
    sessions.create(&row(11, 200)).await.unwrap();
    assert!(sessions.create(&row(11, 300)).await.is_err(), "a session id is unique");
    assert_eq!(sessions.find(&Hash([10; 32])).await.unwrap(), Some(row(10, 100)));
    assert_eq!(sessions.find(&Hash([12; 32])).await.unwrap(), None);
    let listed: Vec<_> = sessions.of_user(user).await.unwrap().into_iter().map(|s| s.id.as_u128()).collect();
    assert_eq!(listed, [11, 10], "newest first");
    sessions.touch(uuid::Uuid::from_u128(10), Timestamp::from_micros(150)).await.unwrap();
    assert_eq!(sessions.find(&Hash([10; 32])).await.unwrap().unwrap().last_seen, Timestamp::from_micros(150));
    assert!(!sessions.delete(uuid::Uuid::from_u128(10), uuid::Uuid::from_u128(8)).await.unwrap(), "not another user's");
    // Idle since before 160: session 10 (seen at 150) goes, 11 (seen at 200) stays.
    assert_eq!(sessions.delete_expired(Timestamp::from_micros(1_000), Timestamp::from_micros(160)).await.unwrap(), 1);
    assert_eq!(sessions.find(&Hash([10; 32])).await.unwrap(), None);
    // Past its absolute expiry (200 + 1,000), 11 goes too.
    assert_eq!(sessions.delete_expired(Timestamp::from_micros(1_200), Timestamp::from_micros(0)).await.unwrap(), 1);
    sessions.create(&row(12, 400)).await.unwrap();
    assert!(sessions.delete(uuid::Uuid::from_u128(12), user).await.unwrap());
    assert_eq!(sessions.find(&Hash([12; 32])).await.unwrap(), None, "a deleted session is gone at once");
}

ledger_store::backend_tests!(
    Harness;
    appends_and_reads,
    wrong_revision_names_expected_and_actual,
    idempotent_retries_are_answered_not_reapplied,
    commands_are_all_or_nothing,
    a_reused_event_id_fails_alone,
    oversized_input_is_refused_before_the_writer,
    concurrent_appenders_build_one_linear_chain,
    reads_page_through_a_long_log,
    recorded_at_never_goes_back,
    the_database_refuses_changes_to_records,
    tampering_is_caught_at_its_sequence,
    tampering_in_pages_checked_at_once_is_named_in_order,
    verify_with_visits_each_record_that_holds_in_order,
    deleted_rows_are_caught,
    a_well_forged_row_behind_the_writer_is_caught,
    atomic_appends_are_all_or_none,
    snapshots_only_move_forward,
    reads_past_what_the_databases_hold_are_empty_not_a_panic,
    a_lock_is_held_by_one_process_at_a_time,
    portal_sessions_are_found_by_hash_listed_and_end,
    appends_are_sealed_in_format_2_with_fresh_salts,
    a_log_of_v1_then_v2_records_verifies,
    erasure_keeps_the_chain_and_the_facts,
    the_guard_allows_only_a_whole_sanctioned_erasure,
    an_unsanctioned_null_is_caught_at_its_sequence,
    erase_refuses_a_sanction_not_later_or_not_in_the_log,
);

/// Advisory locks belong to a PostgreSQL database, not a schema: the logs
/// of two schemas are two ledgers, and each holds its own locks (before
/// the schema was in the key, the second ledger's Stripe sync and
/// scheduler waited for the first's).
#[tokio::test]
async fn postgres_logs_in_two_schemas_hold_their_locks_apart() {
    use ledger_store::testing::BackendFixture;
    let Some(first) = Harness::postgres("postgres_logs_in_two_schemas_hold_their_locks_apart").await else { return };
    let second = Harness::postgres("postgres_logs_in_two_schemas_hold_their_locks_apart").await.unwrap();
    let held = first.log.try_lock("stripe-sync").await.unwrap().expect("the first ledger's taker gets it");
    let apart = second.log.try_lock("stripe-sync").await.unwrap();
    assert!(apart.is_some(), "another schema's ledger takes its own lock");
    let same = (first.reopen)(Arc::new(SystemClock)).await.unwrap();
    assert!(same.try_lock("stripe-sync").await.unwrap().is_none(), "the same ledger's second taker does not");
    drop(held);
}

/// A payload marker the privacy tests search for.
const MARKER: &[u8] = b"alice.privacy.marker@example.com";

/// A payload holding [`MARKER`].
fn personal(n: u8) -> Vec<u8> {
    [MARKER, &[n]].concat()
}

/// Appends `org/p`: three personal records (1..=3), then a privacy event (4).
async fn personal_log(log: &EventLog) {
    let (a, b, c) = (personal(1), personal(2), personal(3));
    append(log, command(stream("p"), ExpectedRevision::NoStream, &[&a, &b, &c])).await.unwrap();
    append(log, command(StreamId::new("privacy/log").unwrap(), ExpectedRevision::Any, &[b"erased"])).await.unwrap();
}

async fn appends_are_sealed_in_format_2_with_fresh_salts(h: Harness) {
    fill(&h.log, 3).await;
    let records: Vec<Record> = h.log.read(1..=3).try_collect().await.unwrap();
    assert!(records.iter().all(|r| r.format == domain::record::HEADER_FORMAT_V2), "every new append is format 2");
    let salts: Vec<_> = records.iter().map(|r| r.salt.expect("a format 2 record has its salt")).collect();
    assert!(salts[0] != salts[1] && salts[1] != salts[2] && salts[0] != salts[2], "a fresh salt per record");
    assert!(records.iter().all(|r| r.erasure.is_none()));
    // What is read recomputes: the salt is what the hashes commit to.
    for record in &records {
        assert_eq!(record.check_leaf(), Ok(()));
        let resealed = Record::seal_v2(
            record.header.clone(),
            record.metadata.clone().unwrap(),
            record.payload.clone().unwrap(),
            salts[0],
            &Hash([0; 32]),
        );
        assert_eq!(resealed.payload_hash == record.payload_hash, record.salt == Some(salts[0]));
    }
    assert_eq!(h.log.verify(1..=u64::MAX).await.unwrap(), ledger_store::VerifyReport { checked: 3, failure: None });
}

async fn a_log_of_v1_then_v2_records_verifies(h: Harness) {
    let old = vec![command(stream("a"), ExpectedRevision::NoStream, &[b"old1", b"old2"])];
    let appended = h.log.append_legacy_v1_for_tests(old).await.unwrap();
    assert_eq!(appended[0].as_ref().unwrap().last_sequence, 2);
    append(&h.log, command(stream("a"), ExpectedRevision::Exactly(2), &[b"new3"])).await.unwrap();
    fill(&h.log, 2).await;
    let formats: Vec<(u8, bool)> =
        h.log.read(1..=5).map_ok(|r| (r.format, r.salt.is_some())).try_collect().await.unwrap();
    assert_eq!(formats, [(1, false), (1, false), (2, true), (2, true), (2, true)]);
    let of_a = h.log.read_stream(&stream("a"), 1, 10).await.unwrap();
    assert_eq!(of_a.iter().map(|r| r.format).collect::<Vec<_>>(), [1, 1, 2]);
    assert_eq!(h.first_failure().await, None);
    // A version 1 record is still tamper-evident.
    h.drop_guards().await;
    h.sql("UPDATE events SET payload = ? WHERE sequence = 2", &[Value::Bytes(Some(b"old?".to_vec()))]).await;
    assert_eq!(h.first_failure().await, Some(VerifyFailure { sequence: 2, defect: Defect::PayloadHash }));
}

async fn erasure_keeps_the_chain_and_the_facts(h: Harness) {
    personal_log(&h.log).await;
    let rows = [
        ledger_store::ErasedRow { sequence: 2, facts: Some(b"facts of 2".to_vec()) },
        ledger_store::ErasedRow { sequence: 3, facts: None },
    ];
    assert_eq!(h.log.erase(4, &rows).await.unwrap(), 2);
    let records: Vec<Record> = h.log.read(1..=4).try_collect().await.unwrap();
    assert!(records[0].erasure.is_none() && records[0].payload.is_some(), "record 1 is untouched");
    for (record, facts) in records[1..3].iter().zip([Some(&b"facts of 2"[..]), None]) {
        assert_eq!((&record.metadata, &record.payload, record.salt), (&None, &None, None));
        let erasure = record.erasure.as_ref().expect("an erased record carries its erasure");
        assert_eq!((erasure.by, erasure.facts.as_deref()), (4, facts));
        assert_eq!(record.event_bytes(), facts, "readers decode the facts");
        assert_eq!(record.format, domain::record::HEADER_FORMAT_V2, "the format stays");
    }
    let of_p = h.log.read_stream(&stream("p"), 1, 10).await.unwrap();
    assert_eq!(of_p[1].erasure, records[1].erasure);
    assert_eq!(of_p[1].event_bytes(), Some(&b"facts of 2"[..]));
    assert_eq!(of_p[0].event_bytes(), Some(&personal(1)[..]));
    assert_eq!(h.first_failure().await, None, "the chain still verifies");
    // Erasing again skips what is erased: the first erasure stays.
    let again = [ledger_store::ErasedRow { sequence: 2, facts: Some(b"other".to_vec()) }];
    assert_eq!(h.log.erase(4, &again).await.unwrap(), 0);
    assert_eq!(h.record(2).await.event_bytes(), Some(&b"facts of 2"[..]));
    // A new log handle on the same database reads the same.
    let reopened = (h.reopen)(Arc::new(SystemClock)).await.unwrap();
    assert_eq!(reopened.read_page(3..=3, 1).await.unwrap()[0].erasure, records[2].erasure);
}

async fn the_guard_allows_only_a_whole_sanctioned_erasure(h: Harness) {
    personal_log(&h.log).await;
    let immutable = |error: sqlx::Error| {
        let text = error.to_string();
        assert!(text.contains("immutable") || text.contains("append-only"), "{text}");
    };
    // A raw NULL without an erasure row: refused.
    let all_three = "UPDATE events SET payload = NULL, metadata = NULL, salt = NULL WHERE sequence = 2";
    immutable(h.try_sql(all_three, &[]).await.unwrap_err());
    immutable(h.try_sql("UPDATE events SET payload = NULL WHERE sequence = 2", &[]).await.unwrap_err());
    // With an erasure row, still only all three at once, nothing else.
    h.sql("INSERT INTO erasures (sequence, erased_by, facts) VALUES (2, 4, NULL)", &[]).await;
    immutable(h.try_sql("UPDATE events SET payload = NULL WHERE sequence = 2", &[]).await.unwrap_err());
    immutable(
        h.try_sql("UPDATE events SET payload = NULL, metadata = NULL WHERE sequence = 2", &[]).await.unwrap_err(),
    );
    let and_more = "UPDATE events SET payload = NULL, metadata = NULL, salt = NULL, format = 1 WHERE sequence = 2";
    immutable(h.try_sql(and_more, &[]).await.unwrap_err());
    immutable(
        h.try_sql("UPDATE events SET payload = ? WHERE sequence = 2", &[Value::Bytes(Some(b"x".to_vec()))])
            .await
            .unwrap_err(),
    );
    assert_eq!(h.record(2).await.payload, Some(personal(2)), "nothing was changed");
    h.sql(all_three, &[]).await;
    assert_eq!(h.record(2).await.payload, None);
    // Erasures are never changed or removed.
    immutable(h.try_sql("UPDATE erasures SET erased_by = 3 WHERE sequence = 2", &[]).await.unwrap_err());
    immutable(h.try_sql("DELETE FROM erasures WHERE sequence = 2", &[]).await.unwrap_err());
    immutable(h.try_sql("DELETE FROM events WHERE sequence = 2", &[]).await.unwrap_err());
    assert_eq!(h.first_failure().await, None);
}

async fn an_unsanctioned_null_is_caught_at_its_sequence(h: Harness) {
    personal_log(&h.log).await;
    h.drop_guards().await;
    let unsanctioned = Some(VerifyFailure { sequence: 3, defect: Defect::UnsanctionedErasure });
    // Only the salt: a format 2 record that cannot be checked any more.
    h.sql("UPDATE events SET salt = NULL WHERE sequence = 3", &[]).await;
    assert_eq!(h.first_failure().await, unsanctioned);
    h.sql("UPDATE events SET payload = NULL, metadata = NULL WHERE sequence = 3", &[]).await;
    assert_eq!(h.first_failure().await, unsanctioned);
    // An erasure row that names the record itself, or an earlier one, as
    // its sanction does not sanction it.
    h.sql("INSERT INTO erasures (sequence, erased_by, facts) VALUES (3, 3, NULL)", &[]).await;
    assert_eq!(h.first_failure().await, unsanctioned);
    // One metadata NULL alone on a version 1 record is caught too.
    let v1 = h.log.append_legacy_v1_for_tests(vec![command(stream("q"), ExpectedRevision::Any, &[b"v1"])]).await;
    assert_eq!(v1.unwrap()[0].as_ref().unwrap().first_sequence, 5);
    h.sql("UPDATE events SET metadata = NULL WHERE sequence = 5", &[]).await;
    h.sql("DELETE FROM erasures WHERE sequence = 3", &[]).await;
    h.sql("INSERT INTO erasures (sequence, erased_by, facts) VALUES (3, 4, NULL)", &[]).await;
    assert_eq!(h.first_failure().await, Some(VerifyFailure { sequence: 5, defect: Defect::UnsanctionedErasure }));
}

async fn erase_refuses_a_sanction_not_later_or_not_in_the_log(h: Harness) {
    personal_log(&h.log).await;
    let row = |sequence| ledger_store::ErasedRow { sequence, facts: None };
    let not_later = h.log.erase(2, &[row(1), row(2)]).await.unwrap_err();
    assert!(matches!(not_later, StoreError::ErasureNotLater { by: 2, sequence: 2 }), "{not_later:?}");
    let missing = h.log.erase(9, &[row(1)]).await.unwrap_err();
    assert!(matches!(missing, StoreError::EraserMissing { by: 9 }), "{missing:?}");
    let many: Vec<_> = (0..=ledger_store::ERASE_ROWS_MAX as u64).map(|n| row(n % 3 + 1)).collect();
    let too_many = h.log.erase(4, &many).await.unwrap_err();
    assert!(matches!(too_many, StoreError::TooManyErasures { rows } if rows == many.len()), "{too_many:?}");
    let records: Vec<Record> = h.log.read(1..=4).try_collect().await.unwrap();
    assert!(records.iter().all(|r| r.payload.is_some() && r.erasure.is_none()), "nothing was erased");
    assert_eq!(h.log.erase(4, &many[..ledger_store::ERASE_ROWS_MAX]).await.unwrap(), 3, "duplicates erase once");
}

/// Whether `needle` occurs in the file at `path` (absent: no).
fn file_holds(path: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_bytes_leave_the_sqlite_file_and_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sqlite");
    let wal = dir.path().join("log.sqlite-wal");
    let log = EventLog::open_sqlite(&path, Arc::new(SystemClock)).await.unwrap();
    // A large payload too, which SQLite keeps in overflow pages.
    let large = [&MARKER.repeat(400)[..], b"large"].concat();
    append(&log, command(stream("p"), ExpectedRevision::NoStream, &[&personal(1), &large, b"kept"])).await.unwrap();
    append(&log, command(StreamId::new("privacy/log").unwrap(), ExpectedRevision::Any, &[b"erased"])).await.unwrap();
    assert!(file_holds(&path, MARKER) || file_holds(&wal, MARKER), "the marker is written before the erasure");
    let rows = [
        ledger_store::ErasedRow { sequence: 1, facts: Some(b"facts".to_vec()) },
        ledger_store::ErasedRow { sequence: 2, facts: None },
    ];
    assert_eq!(log.erase(4, &rows).await.unwrap(), 2);
    assert!(!file_holds(&path, MARKER), "the database file keeps no byte of the erased payloads");
    assert!(!file_holds(&wal, MARKER), "the -wal keeps none");
    assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0, "the -wal was checkpointed and truncated");
    assert_eq!(log.verify(1..=u64::MAX).await.unwrap().failure, None);
    log.close().await;
    assert!(!file_holds(&path, MARKER));
}
