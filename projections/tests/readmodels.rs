//! The durable read-model machinery (`ledger_projections::db`) on both
//! backends, through a test projection that counts records per stream
//! category and keeps each stream's last record (reads, upserts, counters,
//! deletes, every column type), and the Merkle projection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use domain::event::LedgerEvent;
use domain::merkle::{Blake3Hasher, MerkleTree, record_leaf, verify_consistency, verify_inclusion};
use domain::record::Record;
use domain::time::FixedClock;
use domain::{EventId, Metadata, StreamId, Timestamp};
use ledger_projections::db::merkle::{MERKLE_NODES, MERKLE_PROJECTION, MerkleNodes, MerkleProjection};
use ledger_projections::db::{
    Applied, ApplyError, Changes, Column, Leadership, Projection, ReadModelDb, Row, Runner, RunnerError, Table, Value,
    compare, digest,
};
use store::{Command, EventLog, ExpectedRevision, NewEvent};

const NOW: Timestamp = Timestamp::from_micros(1_767_225_600_000_000);

const COUNTS: Table = Table::new(
    "test_category_counts",
    &[Column::text("category"), Column::int("events").counter(), Column::int("last_sequence")],
    1,
);
const STREAMS: Table = Table::new(
    "test_streams",
    &[
        Column::text("stream"),
        Column::int("revision"),
        Column::blob("last_leaf"),
        Column::bool("even"),
        Column::text("note").nullable(),
    ],
    1,
);
const TABLES: &[Table] = &[COUNTS, STREAMS];

const SQLITE_DDL: &str = "
CREATE TABLE test_category_counts (category TEXT PRIMARY KEY, events INTEGER NOT NULL, last_sequence INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE test_streams (stream TEXT PRIMARY KEY, revision INTEGER NOT NULL, last_leaf BLOB NOT NULL, even INTEGER NOT NULL, note TEXT) WITHOUT ROWID;";
const POSTGRES_DDL: &str = "
CREATE TABLE test_category_counts (category TEXT PRIMARY KEY, events BIGINT NOT NULL, last_sequence BIGINT NOT NULL);
CREATE TABLE test_streams (stream TEXT PRIMARY KEY, revision BIGINT NOT NULL, last_leaf BYTEA NOT NULL, even BOOLEAN NOT NULL, note TEXT);";

/// Counts records per category; keeps each stream's record count since it
/// was last removed, last leaf, and whether that count is even; a
/// `Removed` record deletes the stream's row. Fails at `fail_at`.
#[derive(Default)]
struct StreamCounts {
    fail_at: Option<u64>,
}

impl Projection for StreamCounts {
    fn name(&self) -> &'static str {
        "test-stream-counts"
    }

    fn tables(&self) -> &'static [Table] {
        TABLES
    }

    fn apply(&mut self, changes: &mut Changes<'_>, record: &Record, _: Option<&LedgerEvent>) -> Result<(), ApplyError> {
        let sequence = record.header.sequence;
        if self.fail_at == Some(sequence) {
            return Err("told to fail here".into());
        }
        let stream = record.header.stream_id.as_str();
        changes.add(&COUNTS, vec![record.header.stream_id.category().into(), Value::Int(1), Value::uint(sequence)?])?;
        if record.header.event_type == "Removed" {
            return Ok(changes.delete(&STREAMS, vec![stream.into()])?);
        }
        let revision = match changes.get(&STREAMS, &[stream.into()])? {
            Some(row) => row.int(1)? + 1,
            None => 1,
        };
        let note = (revision % 3 == 0).then(|| format!("third at {sequence}"));
        changes.upsert(
            &STREAMS,
            vec![stream.into(), Value::Int(revision), record.leaf_hash.into(), (revision % 2 == 0).into(), note.into()],
        )?;
        Ok(())
    }
}

/// What the test projection must hold after `records`, folded directly.
fn expected(records: &[Record]) -> (BTreeMap<String, (i64, i64)>, BTreeMap<String, i64>) {
    let mut counts = BTreeMap::new();
    let mut streams = BTreeMap::new();
    for record in records {
        let entry = counts.entry(record.header.stream_id.category().to_owned()).or_insert((0, 0));
        *entry = (entry.0 + 1, record.header.sequence as i64);
        let stream = record.header.stream_id.as_str().to_owned();
        if record.header.event_type == "Removed" {
            streams.remove(&stream);
        } else {
            *streams.entry(stream).or_insert(0) += 1;
        }
    }
    (counts, streams)
}

async fn check_expected(db: &ReadModelDb, log: &EventLog) {
    let head = log.head().await.unwrap().sequence;
    let records = log.read_page(1..=head, head as usize).await.unwrap();
    let (counts, streams) = expected(&records);
    let rows = db.query("SELECT category, events, last_sequence FROM test_category_counts", vec![]).await.unwrap();
    let found: BTreeMap<String, (i64, i64)> =
        rows.iter().map(|r| (r.text(0).unwrap().to_owned(), (r.int(1).unwrap(), r.int(2).unwrap()))).collect();
    assert_eq!(found, counts, "counts per category on {}", db.backend_name());
    let rows = db.query("SELECT stream, revision, even, note FROM test_streams", vec![]).await.unwrap();
    let found: BTreeMap<String, i64> = rows
        .iter()
        .map(|r: &Row| {
            let revision = r.int(1).unwrap();
            assert_eq!(r.bool(2).unwrap(), revision % 2 == 0);
            assert_eq!(r.opt_text(3).unwrap().is_some(), revision % 3 == 0);
            (r.text(0).unwrap().to_owned(), revision)
        })
        .collect();
    assert_eq!(found, streams, "streams on {}", db.backend_name());
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    Postgres,
}

struct Fixture {
    kind: Kind,
    dir: tempfile::TempDir,
    options: Option<sqlx::postgres::PgConnectOptions>,
    schema: Option<String>,
    log: EventLog,
    db: ReadModelDb,
}

async fn create_tables(db: &ReadModelDb) {
    let ddl = if db.backend_name() == "postgres" { POSTGRES_DDL } else { SQLITE_DDL };
    db.execute_script(ddl).await.unwrap();
}

async fn fixture(kind: Kind, test: &str) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock(NOW));
    let (options, schema, log, db) = match kind {
        Kind::Sqlite => {
            let log = EventLog::open_sqlite(&dir.path().join("ledger.sqlite"), clock).await.unwrap();
            (None, None, log, ReadModelDb::open_sqlite(dir.path()).await.unwrap())
        }
        Kind::Postgres => {
            let url = store::testing::postgres_url(test)?;
            let schema = store::testing::fresh_schema(&url).await;
            // The read models open first: their open migrates the whole schema.
            let db = ReadModelDb::open_postgres(schema.options.clone()).await.unwrap();
            let log = EventLog::open_postgres(schema.options.clone(), clock).await.unwrap();
            (Some(schema.options), Some(schema.name), log, db)
        }
    };
    create_tables(&db).await;
    Some(Fixture { kind, dir, options, schema, log, db })
}

impl Fixture {
    /// Another handle on the same read-model database, as another process has.
    async fn reopen(&self) -> ReadModelDb {
        match &self.options {
            None => ReadModelDb::open_sqlite(self.dir.path()).await.unwrap(),
            Some(options) => ReadModelDb::open_postgres(options.clone()).await.unwrap(),
        }
    }

    fn contend(&self) -> Leadership {
        match &self.options {
            None => Leadership::sqlite(self.dir.path()),
            Some(options) => Leadership::postgres(options.clone()),
        }
    }

    fn runner(&self, db: &ReadModelDb, fail_at: Option<u64>) -> Runner {
        let projections: Vec<Box<dyn Projection>> =
            vec![Box::new(StreamCounts { fail_at }), Box::new(MerkleProjection::new())];
        Runner::new(self.log.clone(), db.clone(), projections).unwrap()
    }

    /// A rebuild from sequence 0 into a scratch SQLite file, compared row
    /// by row with the live database.
    async fn assert_rebuild_equals_live(&self) {
        let scratch = tempfile::tempdir().unwrap();
        let rebuilt = ReadModelDb::open_sqlite_file(&scratch.path().join("rebuild.sqlite")).await.unwrap();
        create_tables(&rebuilt).await;
        let head = self.log.head().await.unwrap().sequence;
        assert_eq!(self.runner(&rebuilt, None).catch_up().await.unwrap(), head);
        let tables = [COUNTS, STREAMS, MERKLE_NODES];
        assert_eq!(compare(&self.db, &rebuilt, &tables).await.unwrap(), None, "{:?}: rebuild differs", self.kind);
        assert_eq!(digest(&self.db, &tables).await.unwrap(), digest(&rebuilt, &tables).await.unwrap());
    }
}

/// Appends `n` one-event commands over a few categories and streams; about
/// one in eight removes its stream.
async fn append(log: &EventLog, n: u64, seed: u64) -> u64 {
    let metadata = Metadata { actor: Some("tester".into()), ..Metadata::default() };
    let mut last = 0;
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut commands = Vec::new();
    for i in 0..n {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let pick = state >> 33;
        let category = ["test-a", "test-b", "test-c"][(pick % 3) as usize];
        let stream = StreamId::new(format!("{category}/s{}", (pick >> 2) % 17)).unwrap();
        let event_type = if (pick >> 8).is_multiple_of(8) { "Removed" } else { "Noted" };
        let event = NewEvent {
            event_id: EventId(uuid::Uuid::now_v7()),
            event_type: event_type.into(),
            schema_version: 1,
            occurred_at: NOW,
            metadata: metadata.encode(),
            payload: format!("{seed}:{i}").into_bytes(),
        };
        commands.push(Command {
            stream_id: stream,
            expected: ExpectedRevision::Any,
            idempotency: None,
            events: vec![event],
        });
        if commands.len() == 100 || i + 1 == n {
            for appended in log.append(std::mem::take(&mut commands)).await.unwrap() {
                last = last.max(appended.unwrap().last_sequence);
            }
        }
    }
    last
}

impl store::testing::BackendFixture for Fixture {
    async fn sqlite(test: &str) -> Self {
        fixture(Kind::Sqlite, test).await.expect("SQLite needs no peer")
    }

    async fn postgres(test: &str) -> Option<Self> {
        fixture(Kind::Postgres, test).await
    }
}

store::backend_tests!(
    Fixture;
    live_rows_equal_a_rebuild,
    a_crash_between_batches_loses_nothing_and_applies_nothing_twice,
    a_stale_runner_is_fenced_and_writes_nothing,
    a_checkpoint_the_log_does_not_hold_stops_the_runner,
    a_record_that_cannot_be_applied_stops_the_runner_naming_it,
    a_follower_learns_the_applied_sequence,
    the_stored_merkle_tree_matches_the_in_memory_tree,
    one_process_leads_and_another_takes_over,
    two_nodes_project_in_turn_and_nothing_is_applied_twice,
);

async fn live_rows_equal_a_rebuild(f: Fixture) {
    let mut runner = f.runner(&f.db, None).with_flush_records_max(64);
    let applied = runner.applied();
    let first = append(&f.log, 700, 1).await;
    assert_eq!(runner.catch_up().await.unwrap(), first);
    assert_eq!(applied.get(), first);
    check_expected(&f.db, &f.log).await;
    // Following: the runner wakes on this process's appends.
    let following = tokio::spawn(async move { runner.run().await });
    let last = append(&f.log, 500, 2).await;
    applied.wait_for(last, Duration::from_secs(10)).await.unwrap();
    following.abort();
    check_expected(&f.db, &f.log).await;
    let checkpoints = f.db.checkpoints(&["test-stream-counts", MERKLE_PROJECTION, "unknown"]).await.unwrap();
    let head = f.log.head().await.unwrap();
    assert_eq!(checkpoints[0].map(|c| (c.sequence, c.chain_hash)), Some((head.sequence, head.chain_hash)));
    assert_eq!(checkpoints[1].map(|c| c.sequence), Some(head.sequence));
    assert_eq!(checkpoints[2], None);
    f.assert_rebuild_equals_live().await;

    // A row changed behind the runner's back is named by the comparison.
    f.db.execute_script("UPDATE test_category_counts SET events = events + 1 WHERE category = 'test-b'").await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let rebuilt = ReadModelDb::open_sqlite_file(&scratch.path().join("r.sqlite")).await.unwrap();
    create_tables(&rebuilt).await;
    f.runner(&rebuilt, None).catch_up().await.unwrap();
    let difference = compare(&f.db, &rebuilt, TABLES).await.unwrap().expect("a difference");
    assert_eq!((difference.table, difference.key), ("test_category_counts", vec![Value::from("test-b")]));
    assert_ne!(digest(&f.db, TABLES).await.unwrap()[0], digest(&rebuilt, TABLES).await.unwrap()[0]);
}

async fn a_crash_between_batches_loses_nothing_and_applies_nothing_twice(f: Fixture) {
    let mut seed = 7u64;
    for round in 0..8u64 {
        let appending = {
            let log = f.log.clone();
            tokio::spawn(async move { append(&log, 400, round).await })
        };
        // A runner process that dies at a random moment: between batches,
        // while applying, or in the middle of a commit.
        let db = f.reopen().await;
        let mut runner = f.runner(&db, None).with_flush_records_max(50);
        let running = tokio::spawn(async move { runner.run().await });
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(5 + (seed >> 33) % 120)).await;
        running.abort();
        let _ = running.await;
        appending.await.unwrap();
    }
    // Give an aborted SQLite commit on its blocking thread time to finish
    // (it commits whole or not at all either way).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut runner = f.runner(&f.reopen().await, None);
    assert_eq!(runner.catch_up().await.unwrap(), f.log.head().await.unwrap().sequence);
    check_expected(&f.db, &f.log).await;
    f.assert_rebuild_equals_live().await;
}

async fn a_stale_runner_is_fenced_and_writes_nothing(f: Fixture) {
    append(&f.log, 30, 1).await;
    let mut stale = f.runner(&f.db, None);
    assert_eq!(stale.catch_up().await.unwrap(), 30);
    // The former leader stalls; another runner (another process, its own
    // connections) takes over and moves on.
    let other = f.reopen().await;
    append(&f.log, 30, 2).await;
    let mut leader = f.runner(&other, None);
    assert_eq!(leader.catch_up().await.unwrap(), 60);
    let before = digest(&f.db, TABLES).await.unwrap();
    // The stale one wakes up: its next commit is fenced.
    append(&f.log, 30, 3).await;
    match stale.catch_up().await {
        Err(RunnerError::Fenced { projection, expected }) => {
            assert_eq!(expected, 30);
            assert!(["test-stream-counts", MERKLE_PROJECTION].contains(&projection.as_str()));
        }
        other => panic!("expected the stale runner to be fenced, got {other:?}"),
    }
    assert_eq!(digest(&f.db, TABLES).await.unwrap(), before, "the fenced runner wrote nothing");
    assert_eq!(f.db.applied(&["test-stream-counts"]).await.unwrap(), 60);
    // Restarted, it loads the new checkpoints and carries on correctly.
    assert_eq!(stale.catch_up().await.unwrap(), 90);
    check_expected(&f.db, &f.log).await;
    f.assert_rebuild_equals_live().await;
}

async fn a_checkpoint_the_log_does_not_hold_stops_the_runner(f: Fixture) {
    append(&f.log, 20, 1).await;
    f.runner(&f.db, None).catch_up().await.unwrap();
    // The same read models against another log: a restored backup behind
    // them, then a different history past them.
    let other_dir = tempfile::tempdir().unwrap();
    let other =
        EventLog::open_sqlite(&other_dir.path().join("ledger.sqlite"), Arc::new(FixedClock(NOW))).await.unwrap();
    append(&other, 10, 9).await;
    let runner = |log: &EventLog| {
        let projections: Vec<Box<dyn Projection>> =
            vec![Box::new(StreamCounts::default()), Box::new(MerkleProjection::new())];
        Runner::new(log.clone(), f.db.clone(), projections).unwrap()
    };
    match runner(&other).catch_up().await {
        Err(RunnerError::Mismatch { sequence: 20, reason, .. }) => assert!(reason.contains("behind"), "{reason}"),
        result => panic!("expected a mismatch at 20, got {result:?}"),
    }
    append(&other, 15, 10).await;
    match runner(&other).catch_up().await {
        Err(RunnerError::Mismatch { sequence: 20, reason, .. }) => assert!(reason.contains("chain hash"), "{reason}"),
        result => panic!("expected a mismatch at 20, got {result:?}"),
    }
    assert_eq!(f.db.applied(&["test-stream-counts", MERKLE_PROJECTION]).await.unwrap(), 20, "nothing was rebuilt");
    // A rollback of the live log under a running runner: the runner sees
    // the head behind its checkpoint before its next batch. Simulated by
    // moving this log's checkpoint row past the head.
    f.db.execute_script("UPDATE readmodel_checkpoints SET sequence = 21 WHERE name = 'test-stream-counts'")
        .await
        .unwrap();
    match f.runner(&f.db, None).catch_up().await {
        Err(RunnerError::Mismatch { sequence: 21, projection: "test-stream-counts", .. }) => {}
        result => panic!("expected a mismatch at 21, got {result:?}"),
    }
    // Only an explicit rebuild continues.
    f.db.reset("test-stream-counts", TABLES).await.unwrap();
    f.db.reset(MERKLE_PROJECTION, &[MERKLE_NODES]).await.unwrap();
    assert_eq!(runner(&other).catch_up().await.unwrap(), 25);
    check_expected(&f.db, &other).await;
}

async fn a_record_that_cannot_be_applied_stops_the_runner_naming_it(f: Fixture) {
    append(&f.log, 10, 1).await;
    f.runner(&f.db, None).catch_up().await.unwrap();
    append(&f.log, 10, 2).await;
    let mut failing = f.runner(&f.db, Some(15));
    for _ in 0..2 {
        match failing.catch_up().await {
            Err(RunnerError::Apply { sequence: 15, projection: "test-stream-counts", reason }) => {
                assert_eq!(reason, "told to fail here")
            }
            result => panic!("expected the runner to stop at 15, got {result:?}"),
        }
    }
    assert_eq!(f.db.applied(&["test-stream-counts"]).await.unwrap(), 10, "nothing of the failed batch was committed");
    // A payload that does not decode as its event type stops it too.
    let organization = StreamId::new(format!("org/{}", uuid::Uuid::from_u128(5))).unwrap();
    let garbage = NewEvent {
        event_id: EventId(uuid::Uuid::now_v7()),
        event_type: "OrganizationCreated".into(),
        schema_version: 1,
        occurred_at: NOW,
        metadata: Metadata::default().encode(),
        payload: vec![0xff; 3],
    };
    let command =
        Command { stream_id: organization, expected: ExpectedRevision::Any, idempotency: None, events: vec![garbage] };
    let bad = f.log.append_one(command).await.unwrap().unwrap().last_sequence;
    assert_eq!(bad, 21);
    match f.runner(&f.db, None).catch_up().await {
        Err(error @ RunnerError::Undecodable { sequence: 21, .. }) => assert_eq!(error.sequence(), Some(21)),
        result => panic!("expected the runner to stop at 21, got {result:?}"),
    }
    assert_eq!(f.db.applied(&["test-stream-counts"]).await.unwrap(), 10, "the batch holding it was not committed");
}

async fn a_follower_learns_the_applied_sequence(f: Fixture) {
    // The follower is another process's view: its own connections.
    let follower = Applied::follow(f.reopen().await, vec!["test-stream-counts".into(), MERKLE_PROJECTION.into()]);
    let mut runner = f.runner(&f.db, None);
    let running = tokio::spawn(async move { runner.run().await });
    for round in 0..5 {
        let last = append(&f.log, 20, round).await;
        let started = std::time::Instant::now();
        follower.wait_for(last, Duration::from_secs(5)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        // Once the follower says so, the rows are there for it to read.
        let rows = f.reopen().await.query("SELECT MAX(last_sequence) FROM test_category_counts", vec![]).await;
        assert_eq!(rows.unwrap()[0].uint(0).unwrap(), last);
    }
    assert!(follower.wait_for(10_000, Duration::from_millis(300)).await.is_err());
    running.abort();
}

async fn the_stored_merkle_tree_matches_the_in_memory_tree(f: Fixture) {
    // Built in two runs, the second loading its frontier at a size in the
    // middle of a block (1000 = 3·256 + 232).
    append(&f.log, 1000, 1).await;
    f.runner(&f.db, None).catch_up().await.unwrap();
    append(&f.log, 1000, 2).await;
    f.runner(&f.db, None).with_flush_records_max(300).catch_up().await.unwrap();
    let records = f.log.read_page(1..=2000, 2000).await.unwrap();
    let mut tree = MerkleTree::new();
    records.iter().for_each(|record| tree.push_record(&record.leaf_hash));
    let nodes = MerkleNodes::new(f.db.clone(), f.log.clone());
    assert_eq!(nodes.size().await.unwrap(), 2000);
    for size in 0..=2000 {
        assert_eq!(nodes.root(size).await.unwrap(), tree.root(size).unwrap(), "root of size {size}");
    }
    assert!(nodes.root(2001).await.is_err());
    let mut state = 99u64;
    let mut next = |bound: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % bound
    };
    for _ in 0..300 {
        let size = 1 + next(2000);
        let index = next(size);
        let proof = nodes.inclusion_proof(index, size).await.unwrap();
        assert_eq!(proof, tree.inclusion_proof(index, size).unwrap(), "inclusion of {index} in {size}");
        let leaf = record_leaf(&records[index as usize].leaf_hash);
        verify_inclusion(&Blake3Hasher, index, size, &leaf, &proof, &tree.root(size).unwrap()).unwrap();
        let from = next(size + 1);
        let proof = nodes.consistency_proof(from, size).await.unwrap();
        assert_eq!(proof, tree.consistency_proof(from, size).unwrap(), "consistency {from} to {size}");
        let (from_root, to_root) = (tree.root(from).unwrap(), tree.root(size).unwrap());
        verify_consistency(&Blake3Hasher, from, size, &proof, &from_root, &to_root).unwrap();
    }
    // Aligned edge cases: whole blocks, powers of two, one past them.
    for (index, size) in [(0, 256), (255, 256), (256, 257), (511, 512), (1023, 1024), (1024, 1025), (1999, 2000)] {
        assert_eq!(nodes.inclusion_proof(index, size).await.unwrap(), tree.inclusion_proof(index, size).unwrap());
    }
    for (from, to) in [(256, 512), (255, 1024), (1024, 2000), (1, 2000), (1999, 2000), (512, 513)] {
        assert_eq!(nodes.consistency_proof(from, to).await.unwrap(), tree.consistency_proof(from, to).unwrap());
    }
    // About two rows a block of 256, not one a record.
    let stored = f.db.query("SELECT COUNT(*) FROM merkle_nodes", vec![]).await.unwrap()[0].int(0).unwrap();
    assert_eq!(stored, 7 + 3 + 1, "levels 8, 9 and 10 of 2000 leaves");
}

async fn one_process_leads_and_another_takes_over(f: Fixture) {
    let contend = || f.contend();
    let first = contend();
    tokio::time::timeout(Duration::from_secs(5), first.acquired()).await.expect("the first process leads");
    let second = contend();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(first.is_leader() && !second.is_leader(), "exactly one leader");
    let mut watch = second.watch();
    drop(first);
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), watch.wait_for(|leader| *leader)).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "taken over in {:?}", started.elapsed());
    assert!(second.is_leader());
}

async fn two_nodes_project_in_turn_and_nothing_is_applied_twice(f: Fixture) {
    let node = |db: ReadModelDb| {
        let leadership = f.contend();
        let mut runner = f.runner(&db, None).with_flush_records_max(50);
        tokio::spawn(async move { runner.lead(&leadership).await })
    };
    let appending = {
        let log = f.log.clone();
        tokio::spawn(async move {
            for round in 0..10 {
                append(&log, 200, round).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let a = node(f.reopen().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = node(f.reopen().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Node A dies in the middle of its work; B takes over.
    a.abort();
    appending.await.unwrap();
    let head = f.log.head().await.unwrap().sequence;
    let follower = Applied::follow(f.reopen().await, vec!["test-stream-counts".into(), MERKLE_PROJECTION.into()]);
    follower.wait_for(head, Duration::from_secs(15)).await.expect("node B caught up");
    assert!(!b.is_finished(), "node B still leads");
    b.abort();
    check_expected(&f.db, &f.log).await;
    f.assert_rebuild_equals_live().await;
}

/// A leader whose lock session the server ends (what `idle_session_timeout`
/// does to a stalled one) learns it lost, and another process takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_session_ends_loses_and_another_takes_over() {
    let Some(f) = fixture(Kind::Postgres, "a_leader_whose_session_ends_loses_and_another_takes_over").await else {
        return;
    };
    let first = f.contend();
    tokio::time::timeout(Duration::from_secs(5), first.acquired()).await.unwrap();
    let second = f.contend();
    let terminated: Vec<Row> =
        f.db.query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::text::bigint = 1279543122 AND objid::text::bigint = (hashtext($1)::bigint & 4294967295)",
            vec![f.schema.clone().unwrap().into()],
        )
        .await
        .unwrap();
    assert_eq!(terminated.len(), 1, "one session holds this schema's lock");
    tokio::time::timeout(Duration::from_secs(5), first.lost()).await.expect("the leader learns it lost");
    // Either may lead next (the first reconnects and contends again), but
    // someone does, and never both.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(first.is_leader() || second.is_leader()) {
        assert!(std::time::Instant::now() < deadline, "nobody took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!(first.is_leader() && second.is_leader()));
}
