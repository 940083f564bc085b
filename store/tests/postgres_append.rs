//! PostgreSQL appends in one round trip (issue 19): the writer plans on
//! its cached head and stream revisions and sends one statement, which the
//! database refuses if the cache was stale (another process appended); the
//! writer then re-plans on the actual state the refusal carries. These
//! tests pin that: several logs on one schema still build one chain with
//! exact answers, the steady state is one statement per commit, and after
//! `APPEND_ATTEMPTS_MAX` refusals the locking transaction appends.

use std::sync::Arc;

use domain::{EventId, StreamId, Timestamp};
use ledger_store::{
    APPEND_ATTEMPTS_MAX, Appended, Command, EventLog, ExpectedRevision, Idempotency, NewEvent, Rejection, SystemClock,
    testing,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// Statements of the locking transaction that appends: `BEGIN`, the head
/// lock, the lookups, the write, `COMMIT`.
const LOCKING_STATEMENTS: u64 = 5;

async fn schema(test: &str) -> Option<PgConnectOptions> {
    let url = testing::postgres_url(test)?;
    Some(testing::fresh_schema(&url).await.options)
}

async fn open(options: &PgConnectOptions) -> EventLog {
    EventLog::open_postgres(options.clone(), Arc::new(SystemClock)).await.unwrap()
}

fn events(count: usize, payload: &str) -> Vec<NewEvent> {
    (0..count)
        .map(|_| NewEvent {
            event_id: EventId(uuid::Uuid::now_v7()),
            event_type: "TestEvent".into(),
            schema_version: 1,
            occurred_at: Timestamp::from_micros(1_767_225_600_000_000),
            metadata: domain::Metadata::default().encode(),
            payload: payload.as_bytes().to_vec(),
        })
        .collect()
}

fn stream(name: &str) -> StreamId {
    StreamId::new(format!("org/{name}")).unwrap()
}

fn command(name: &str, expected: ExpectedRevision, count: usize) -> Command {
    Command { stream_id: stream(name), expected, idempotency: None, events: events(count, "{}") }
}

fn keyed(name: &str, key: &str, payload: &str) -> Command {
    let events = events(1, payload);
    let idempotency = Some(Idempotency::of_events(key, &stream(name), &events));
    Command { stream_id: stream(name), expected: ExpectedRevision::Any, idempotency, events }
}

fn appended(first_sequence: u64, last_sequence: u64, stream_revision: u64) -> Result<Appended, Rejection> {
    Ok(Appended { first_sequence, last_sequence, stream_revision, replayed: false })
}

fn wrong(name: &str, expected: ExpectedRevision, actual: u64) -> Result<Appended, Rejection> {
    Err(Rejection::WrongRevision { stream_id: stream(name), expected, actual })
}

/// Statements the log's writer has sent.
fn statements(log: &EventLog) -> u64 {
    log.metrics().append_statements.get()
}

async fn verified(log: &EventLog, sequence: u64) {
    let head = log.head().await.unwrap();
    assert_eq!(head.sequence, sequence);
    let report = log.verify(1..=sequence).await.unwrap();
    assert_eq!((report.checked, report.failure), (sequence, None));
}

#[tokio::test]
async fn two_logs_on_one_schema_take_turns_on_one_chain_with_exact_answers() {
    let Some(options) = schema("two_logs_on_one_schema_take_turns_on_one_chain_with_exact_answers").await else {
        return;
    };
    let (a, b) = (open(&options).await, open(&options).await);
    use ExpectedRevision::{Any, Exactly, NoStream};
    assert_eq!(a.append_one(command("one", NoStream, 1)).await.unwrap(), appended(1, 1, 1));
    assert_eq!(b.append_one(command("one", Exactly(1), 2)).await.unwrap(), appended(2, 3, 3));
    // a's cache holds `one` at 1 and the head at 1: refused by the
    // database, re-planned, and answered with the true revision.
    assert_eq!(a.append_one(command("one", Exactly(1), 1)).await.unwrap(), wrong("one", Exactly(1), 3));
    assert_eq!(a.append_one(command("one", Exactly(3), 1)).await.unwrap(), appended(4, 4, 4));
    assert_eq!(b.append_one(command("two", NoStream, 1)).await.unwrap(), appended(5, 5, 1));
    assert_eq!(b.append_one(command("one", NoStream, 1)).await.unwrap(), wrong("one", NoStream, 4));
    // A batch over a stream a never saw (assumed new) and one it saw.
    let answers = a.append(vec![command("two", Exactly(1), 1), command("one", Any, 2)]).await.unwrap();
    assert_eq!(answers, vec![appended(6, 6, 2), appended(7, 8, 6)]);
    // An atomic group refused on a stale revision, then exact.
    let refused = b.append_atomic(vec![command("two", Exactly(1), 1), command("three", NoStream, 1)]).await.unwrap();
    assert_eq!(refused, wrong("two", Exactly(1), 2).map(|appended| vec![appended]));

    // Idempotent retries answered across the two logs.
    let first = a.append_one(keyed("three", "key-1", "{\"n\":1}")).await.unwrap().unwrap();
    assert_eq!(first, appended(9, 9, 1).unwrap());
    let again = b.append_one(keyed("three", "key-1", "{\"n\":1}")).await.unwrap();
    assert_eq!(again, Ok(Appended { replayed: true, ..first }));
    let conflict = b.append_one(keyed("three", "key-1", "{\"n\":2}")).await.unwrap();
    assert_eq!(conflict, Err(Rejection::IdempotencyConflict { key: "key-1".into() }));
    assert_eq!(a.append_one(keyed("three", "key-1", "{\"n\":1}")).await.unwrap(), again);
    assert_eq!(b.append_one(command("three", Exactly(1), 1)).await.unwrap(), appended(10, 10, 2));
    assert_eq!(a.append_one(keyed("three", "key-2", "{}")).await.unwrap(), appended(11, 11, 3));

    verified(&a, 11).await;
    verified(&b, 11).await;
    assert_eq!(a.metrics().append_errors.get() + b.metrics().append_errors.get(), 0);
}

#[tokio::test]
async fn a_commit_in_the_steady_state_is_one_statement() {
    let Some(options) = schema("a_commit_in_the_steady_state_is_one_statement").await else { return };
    let log = open(&options).await;
    use ExpectedRevision::{Any, Exactly, NoStream};
    let mut sent = 0;
    let mut delta = |log: &EventLog| {
        let (before, now) = (sent, statements(log));
        sent = now;
        now - before
    };
    // Nothing cached yet: the locking transaction reads the head.
    assert_eq!(log.append_one(command("one", NoStream, 1)).await.unwrap(), appended(1, 1, 1));
    assert_eq!(delta(&log), LOCKING_STATEMENTS);
    assert_eq!(log.append_one(command("one", Exactly(1), 3)).await.unwrap(), appended(2, 4, 4));
    assert_eq!(delta(&log), 1, "one statement per commit");
    assert_eq!(log.append_one(command("two", NoStream, 1)).await.unwrap(), appended(5, 5, 1));
    assert_eq!(delta(&log), 1, "a new stream is assumed new");
    assert_eq!(log.append_one(command("one", NoStream, 1)).await.unwrap(), wrong("one", NoStream, 4));
    assert_eq!(delta(&log), 1, "a refusal decided on the cache is checked in the same one statement");
    assert_eq!(log.append_one(keyed("two", "key", "{}")).await.unwrap(), appended(6, 6, 2));
    assert_eq!(delta(&log), 1);
    // A retry's key is assumed unknown: the database answers its row.
    let replayed = log.append_one(keyed("two", "key", "{}")).await.unwrap();
    assert_eq!(replayed, Ok(Appended { replayed: true, ..appended(6, 6, 2).unwrap() }));
    assert_eq!(delta(&log), 2);

    // Another process appends: this log's cache is stale, refused once.
    let other = open(&options).await;
    other.append_one(command("one", Any, 1)).await.unwrap().unwrap();
    assert_eq!(log.append_one(command("one", Exactly(5), 1)).await.unwrap(), appended(8, 8, 6));
    assert_eq!(delta(&log), 2);
    assert_eq!(log.append_one(command("one", Exactly(6), 1)).await.unwrap(), appended(9, 9, 7));
    assert_eq!(delta(&log), 1);
    verified(&log, 9).await;
}

#[tokio::test]
async fn after_the_retry_bound_the_locking_transaction_appends() {
    let Some(options) = schema("after_the_retry_bound_the_locking_transaction_appends").await else { return };
    let log = open(&options).await;
    assert_eq!(log.append_one(command("one", ExpectedRevision::NoStream, 1)).await.unwrap(), appended(1, 1, 1));
    // Every call refused, as under endless contention: the real function
    // renamed, and one that counts its calls and asks the real one with a
    // head that never holds.
    let mut raw = PgConnection::connect_with(&options).await.unwrap();
    let (arguments, count): (String, i16) = sqlx::query_as(
        "SELECT pg_get_function_identity_arguments(oid), pronargs FROM pg_proc \
         WHERE proname = 'ledger_append' AND pronamespace = current_schema()::regnamespace",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    let passed: Vec<String> = (2..=count).map(|i| format!("${i}")).collect();
    for statement in [
        "CREATE TABLE refusals (n BIGINT NOT NULL)".to_owned(),
        "INSERT INTO refusals VALUES (0)".to_owned(),
        "ALTER FUNCTION ledger_append RENAME TO ledger_append_checked".to_owned(),
        format!(
            "CREATE FUNCTION ledger_append({arguments}) RETURNS TABLE (r_kind TEXT, r_name TEXT, r_hash BYTEA, \
             r_stream_id TEXT, r_first BIGINT, r_last BIGINT, r_revision BIGINT, r_recorded_at_us BIGINT) \
             LANGUAGE plpgsql AS $f$ BEGIN UPDATE refusals SET n = n + 1; \
             RETURN QUERY SELECT * FROM ledger_append_checked(-1, {}); END $f$",
            passed.join(", ")
        ),
    ] {
        sqlx::query(&statement).execute(&mut raw).await.unwrap();
    }
    let before = statements(&log);
    let answers = log
        .append(vec![command("one", ExpectedRevision::Exactly(1), 2), command("two", ExpectedRevision::Any, 1)])
        .await
        .unwrap();
    assert_eq!(answers, vec![appended(2, 3, 3), appended(4, 4, 1)]);
    assert_eq!(statements(&log) - before, APPEND_ATTEMPTS_MAX as u64 + LOCKING_STATEMENTS);
    let refusals: i64 = sqlx::query_scalar("SELECT n FROM refusals").fetch_one(&mut raw).await.unwrap();
    assert_eq!(refusals, APPEND_ATTEMPTS_MAX as i64, "the function was called up to the bound, then not again");

    // The real function back: one statement again, on the state the
    // locking transaction left in the cache.
    sqlx::query(&format!("DROP FUNCTION ledger_append({arguments})")).execute(&mut raw).await.unwrap();
    sqlx::query("ALTER FUNCTION ledger_append_checked RENAME TO ledger_append").execute(&mut raw).await.unwrap();
    let before = statements(&log);
    assert_eq!(log.append_one(command("two", ExpectedRevision::Exactly(1), 1)).await.unwrap(), appended(5, 5, 2));
    assert_eq!(statements(&log) - before, 1);
    verified(&log, 5).await;
}

#[tokio::test]
async fn a_failure_drops_the_cached_state_and_the_next_commit_reads_it_again() {
    let Some(options) = schema("a_failure_drops_the_cached_state_and_the_next_commit_reads_it_again").await else {
        return;
    };
    let log = open(&options).await;
    let taken = command("one", ExpectedRevision::NoStream, 1);
    let reused = taken.events[0].event_id;
    assert_eq!(log.append_one(taken).await.unwrap(), appended(1, 1, 1));
    assert_eq!(log.append_one(command("one", ExpectedRevision::Exactly(1), 1)).await.unwrap(), appended(2, 2, 2));
    // The server refuses a reused event id (a SQLSTATE): nothing committed.
    let mut bad = command("two", ExpectedRevision::Any, 1);
    bad.events[0].event_id = reused;
    let before = statements(&log);
    assert!(log.append_one(bad).await.is_err(), "a duplicate event id is a storage error");
    assert_eq!(statements(&log) - before, 1);
    // Nothing cached any more: the locking transaction reads the head again.
    let before = statements(&log);
    assert_eq!(log.append_one(command("one", ExpectedRevision::Exactly(2), 1)).await.unwrap(), appended(3, 3, 3));
    assert_eq!(statements(&log) - before, LOCKING_STATEMENTS);
    let before = statements(&log);
    assert_eq!(log.append_one(command("two", ExpectedRevision::NoStream, 1)).await.unwrap(), appended(4, 4, 1));
    assert_eq!(statements(&log) - before, 1);
    verified(&log, 4).await;
}

/// Group commits the log's writer has made (`batch_events`' count), as scraped.
fn batches(log: &EventLog) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("batch_events", "", log.metrics().batch_events.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let line = text.lines().find(|line| line.starts_with("batch_events_count ")).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn concurrent_appenders_of_one_process_are_never_refused() {
    let Some(options) = schema("concurrent_appenders_of_one_process_are_never_refused").await else { return };
    let log = open(&options).await;
    log.append_one(command("warm", ExpectedRevision::Any, 1)).await.unwrap().unwrap();
    let (statements_before, batches_before) = (statements(&log), batches(&log));
    for round in 0..4 {
        let appends = (0..64).map(|task| {
            let mut keyed = keyed(&format!("task-{task}"), &format!("key-{round}-{task}"), "{}");
            keyed.events.extend(events(task % 3, "{}"));
            log.append_one(keyed)
        });
        for answer in futures::future::join_all(appends).await {
            answer.unwrap().unwrap();
        }
    }
    let commits = batches(&log) - batches_before;
    assert_eq!(statements(&log) - statements_before, commits, "one statement per group commit, none refused");
    verified(&log, log.head().await.unwrap().sequence).await;
}

/// The writer's connection lives long. PL/pgSQL caches a generic plan of
/// each statement of `ledger_append` after five calls, made on whatever
/// the tables held then; on the benchmark those plans took 64 appenders
/// from 14,700 to 3,600 events/s and 100-event commands from 38,200 to
/// 25,500 (issue 19, README "Benchmarks"). Every call is planned with its
/// own arguments on the tables as they are now.
#[tokio::test]
async fn every_call_of_the_append_function_is_planned_on_the_tables_as_they_are() {
    let test = "every_call_of_the_append_function_is_planned_on_the_tables_as_they_are";
    let Some(options) = schema(test).await else { return };
    let log = open(&options).await;
    log.append_one(command("one", ExpectedRevision::NoStream, 1)).await.unwrap().unwrap();
    let mut raw = PgConnection::connect_with(&options).await.unwrap();
    let settings: Option<Vec<String>> = sqlx::query_scalar(
        "SELECT proconfig FROM pg_proc WHERE proname = 'ledger_append' AND pronamespace = current_schema()::regnamespace",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(settings, Some(vec!["plan_cache_mode=force_custom_plan".to_owned()]));
}
