//! The `replay` binary, driven as an auditor would: on a scripted history
//! (an organization, its subscription, usage, an invoice, checkpoints kept
//! in the log), untouched and then tampered with by someone with write
//! access to the database, on SQLite and PostgreSQL.

// Test code: a scenario or fixture reads best in one piece; the 70-line
// limit (clippy.toml) is for production code.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use cqrs_es::Aggregate;
use domain::billing::{InvoiceEvent, InvoiceIssued};
use domain::catalog::{Catalog, Tier};
use domain::checkpoint::{CHECKPOINT_STREAM, Checkpoint, CheckpointEvent, CheckpointKeyRotated, CheckpointSigned};
use domain::event::StoredEvent;
use domain::merkle::MerkleTree;
use domain::organization::{OrganizationCreated, OrganizationEvent};
use domain::privacy::{self, ErasedRecord, ErasureReason, PrivacyEvent, RetentionApplied, Subject, SubjectErased};
use domain::record::{Hash, Record, RecordHeader};
use domain::subscription::{Subscription, SubscriptionCreated, SubscriptionEvent};
use domain::usage::{Metrics, Usage, UsageEvent, UsageReported};
use domain::{Clock, EventId, LicenseId, Metadata, OrganizationId, StreamId, SubscriptionId, Timestamp};
use ed25519_dalek::SigningKey;
use store::{Command, EventLog, ExpectedRevision, NewEvent};

/// A clock the script sets before each append: recordedAt is known.
#[derive(Default)]
struct ScriptClock(AtomicI64);

impl Clock for ScriptClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::SeqCst))
    }
}

fn day(text: &str) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn micros(text: &str) -> i64 {
    Timestamp::parse_rfc3339(text).unwrap().as_micros()
}

const ORG: OrganizationId = OrganizationId(uuid::uuid!("0194a000-0000-7000-8000-000000000001"));
const SUBSCRIPTION: SubscriptionId = SubscriptionId(uuid::uuid!("0194a000-0000-7000-8000-000000000002"));
const LICENSE: LicenseId = LicenseId(uuid::uuid!("0194a000-0000-7000-8000-000000000003"));

enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// A scripted history in a data directory (SQLite) or a PostgreSQL schema.
struct History {
    dir: tempfile::TempDir,
    log: EventLog,
    clock: Arc<ScriptClock>,
    key: SigningKey,
    database_url: Option<String>,
    db: Db,
    /// Checkpoints the script kept, as an auditor would have.
    kept: Vec<String>,
}

impl History {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ScriptClock::default());
        let path = dir.path().join("ledger.sqlite");
        let log = EventLog::open_sqlite(&path, clock.clone()).await.unwrap();
        let db = Db::Sqlite(
            sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path)).await.unwrap(),
        );
        Self::with(dir, log, clock, None, db)
    }

    async fn postgres(test: &str) -> Option<Self> {
        let url = store::testing::postgres_url(test)?;
        let schema = store::testing::fresh_schema(&url).await;
        let clock = Arc::new(ScriptClock::default());
        let log = EventLog::open_postgres(schema.options.clone(), clock.clone()).await.unwrap();
        let db = Db::Postgres(sqlx::PgPool::connect_with(schema.options.clone()).await.unwrap());
        let separator = if url.contains('?') { '&' } else { '?' };
        let database_url = format!("{url}{separator}options=-c%20search_path%3D{}", schema.name);
        Some(Self::with(tempfile::tempdir().unwrap(), log, clock, Some(database_url), db))
    }

    fn with(dir: tempfile::TempDir, log: EventLog, clock: Arc<ScriptClock>, url: Option<String>, db: Db) -> Self {
        let key = SigningKey::from_bytes(&[42; 32]);
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/checkpoint.ed25519"), key.to_bytes()).unwrap();
        Self { dir, log, clock, key, database_url: url, db, kept: Vec::new() }
    }

    fn public_key(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.key.verifying_key().to_bytes())
    }

    async fn append<E: StoredEvent>(&self, at: &str, stream: StreamId, event: E) -> u64 {
        self.clock.0.store(micros(at), Ordering::SeqCst);
        let metadata =
            Metadata { actor: Some("operator".into()), source_ip: Some("203.0.113.7".into()), ..Default::default() };
        let event =
            NewEvent::from_event(&event, EventId(uuid::Uuid::now_v7()), Timestamp::from_micros(micros(at)), &metadata);
        let command =
            Command { stream_id: stream, expected: ExpectedRevision::Any, idempotency: None, events: vec![event] };
        self.log.append_one(command).await.unwrap().unwrap().last_sequence
    }

    async fn records(&self) -> Vec<Record> {
        self.log.read_page(1..=u64::MAX >> 1, 100_000).await.unwrap()
    }

    /// Signs a checkpoint of the log as it is and keeps it in the log.
    async fn keep_checkpoint(&mut self, at: &str) -> u64 {
        let note = self.sign_head(at, &self.key.clone()).await;
        self.kept.push(note.clone());
        let stream = StreamId::new(CHECKPOINT_STREAM).unwrap();
        self.append(at, stream, CheckpointEvent::CheckpointSigned(CheckpointSigned { note })).await
    }

    async fn sign_head(&self, at: &str, key: &SigningKey) -> String {
        let records = self.records().await;
        let mut tree = MerkleTree::new();
        records.iter().for_each(|r| tree.push_record(&r.leaf_hash));
        let size = tree.size();
        let checkpoint = Checkpoint {
            origin: "replay-test".into(),
            size,
            root: tree.root(size).unwrap(),
            chain: records.last().map_or(domain::record::CHAIN_GENESIS, |r| r.chain_hash),
            time: Timestamp::from_micros(micros(at)),
        };
        checkpoint.sign(key).unwrap()
    }

    /// The script: 1 the organization, 2 its starter subscription, 3–4
    /// January usage, 5 a checkpoint, 6 January's invoice, 7 February
    /// usage, 8 a checkpoint, 9 an organization created later.
    async fn scripted() -> Self {
        let mut history = Self::sqlite().await;
        history.script().await;
        history
    }

    async fn script(&mut self) {
        let subscription_created = self.subscribe().await;
        let (usage, last) = self.january_usage().await;
        self.keep_checkpoint("2026-01-31T00:00:00Z").await;
        self.january_invoice(subscription_created, &usage, last).await;
        self.february().await;
    }

    /// 1 the organization, 2 its starter subscription (returned).
    async fn subscribe(&mut self) -> SubscriptionEvent {
        let created = OrganizationCreated {
            id: ORG,
            name: "Acme GmbH".into(),
            domain: Some("acme.example".into()),
            industry: None,
            employee_count: Some(120),
        };
        self.append("2026-01-01T09:00:00Z", ORG.stream(), OrganizationEvent::OrganizationCreated(created)).await;
        let subscription_created = SubscriptionEvent::SubscriptionCreated(SubscriptionCreated {
            id: SUBSCRIPTION,
            organization_id: ORG,
            tier: Tier::Starter,
            catalog_version: 1,
            start_date: day("2026-01-01"),
            end_date: day("2027-01-01"),
            auto_renew: true,
            max_deployments: 3,
            enterprise_overage_rate: None,
            license_id: LICENSE,
        });
        self.append("2026-01-01T09:00:01Z", SUBSCRIPTION.stream(), subscription_created.clone()).await;
        subscription_created
    }

    /// 3–4 January usage: the usage and the last report's sequence.
    async fn january_usage(&mut self) -> (Usage, u64) {
        let mut usage = Usage::default();
        let mut last = 0;
        for (at, on, gb) in [("2026-01-05T12:00:00Z", "2026-01-05", 120), ("2026-01-20T12:00:00Z", "2026-01-20", 400)] {
            let report = UsageReported {
                subscription_id: SUBSCRIPTION,
                license_id: LICENSE,
                deployment_id: "edge-1".into(),
                day: day(on),
                metrics: Metrics {
                    active_users: 7,
                    data_volume_gb: gb.into(),
                    api_calls_count: 1000,
                    training_hours: 2.into(),
                },
            };
            let stream = domain::usage::stream(SUBSCRIPTION, day(on));
            last = self.append(at, stream, UsageEvent::UsageReported(report.clone())).await;
            usage.apply(&report, last);
        }
        (usage, last)
    }

    /// 6 January's invoice.
    async fn january_invoice(&mut self, subscription_created: SubscriptionEvent, usage: &Usage, last: u64) {
        let mut subscription = Subscription::default();
        subscription.apply(subscription_created);
        let catalog = Catalog::builtin();
        let january = day("2026-01-01");
        let invoice = domain::billing::invoice(&subscription, usage, &catalog, january, []).unwrap().unwrap();
        let issued = InvoiceIssued {
            invoice_id: domain::billing::invoice_id(SUBSCRIPTION, january),
            subscription_id: SUBSCRIPTION,
            organization_id: ORG,
            digest: invoice.digest(),
            invoice,
            usage_sequence: last,
        };
        self.append(
            "2026-02-01T01:00:00Z",
            domain::billing::stream(SUBSCRIPTION, january),
            InvoiceEvent::InvoiceIssued(issued),
        )
        .await;
    }

    /// 7 February usage, 8 a checkpoint, 9 an organization created later.
    async fn february(&mut self) {
        let report = UsageReported {
            subscription_id: SUBSCRIPTION,
            license_id: LICENSE,
            deployment_id: "edge-1".into(),
            day: day("2026-02-03"),
            metrics: Metrics {
                active_users: 9,
                data_volume_gb: 800.into(),
                api_calls_count: 50,
                training_hours: 0.into(),
            },
        };
        self.append(
            "2026-02-03T12:00:00Z",
            domain::usage::stream(SUBSCRIPTION, day("2026-02-03")),
            UsageEvent::UsageReported(report),
        )
        .await;
        self.keep_checkpoint("2026-02-04T00:00:00Z").await;
        let other = OrganizationId(uuid::uuid!("0194a000-0000-7000-8000-000000000009"));
        let created =
            OrganizationCreated { id: other, name: "Other".into(), domain: None, industry: None, employee_count: None };
        self.append("2026-02-05T00:00:00Z", other.stream(), OrganizationEvent::OrganizationCreated(created)).await;
    }

    fn source_args(&self) -> Vec<String> {
        match &self.database_url {
            Some(url) => vec!["--database-url".into(), url.clone()],
            None => vec!["--data-dir".into(), self.dir.path().display().to_string()],
        }
    }

    fn replay(&self, args: &[&str]) -> Output {
        replay_with(args, &self.source_args())
    }

    /// Runs `replay verify` with the public key and the checkpoints the
    /// script kept; returns its exit code and standard output.
    fn verify(&self) -> (i32, String) {
        let files: Vec<PathBuf> = self
            .kept
            .iter()
            .enumerate()
            .map(|(n, note)| {
                let path = self.dir.path().join(format!("kept-{n}.checkpoint"));
                std::fs::write(&path, note).unwrap();
                path
            })
            .collect();
        let key = self.public_key();
        let mut args = vec!["verify", "--public-key", &key];
        let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        for path in &paths {
            args.extend(["--checkpoint", path]);
        }
        let output = self.replay(&args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let code = output.status.code().unwrap();
        assert!(code == 0 || code == 1, "replay could not run ({code}): {}", String::from_utf8_lossy(&output.stderr));
        (code, stdout)
    }

    /// Asserts `replay verify` fails, naming `sequence` and `what`.
    #[track_caller]
    fn fails_at(&self, sequence: Option<u64>, what: &str) {
        let (code, stdout) = self.verify();
        assert_eq!(code, 1, "verify must fail: {stdout}");
        let named = match sequence {
            Some(sequence) => format!("FAILED sequence {sequence}: "),
            None => "FAILED ".into(),
        };
        assert!(stdout.contains(&named) && stdout.contains(what), "expected {named}…{what}…, got: {stdout}");
    }

    async fn sql(&self, sql: &str, values: &[Value]) {
        let result = match &self.db {
            Db::Sqlite(pool) => bind(sqlx::query(sql), values).execute(pool).await.map(drop),
            Db::Postgres(pool) => {
                let numbered = (1..=values.len()).fold(sql.to_owned(), |s, n| s.replacen('?', &format!("${n}"), 1));
                bind(sqlx::query(&numbered), values).execute(pool).await.map(drop)
            }
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Drops the triggers that keep `events` append-only, as an attacker
    /// with full database access can.
    async fn drop_guards(&self) {
        match &self.db {
            Db::Sqlite(_) => {
                self.sql("DROP TRIGGER events_immutable", &[]).await;
                self.sql("DROP TRIGGER events_append_only", &[]).await;
            }
            Db::Postgres(_) => self.sql("DROP TRIGGER events_immutable ON events", &[]).await,
        }
    }

    /// Rewrites the record at `sequence` with a new payload and re-seals
    /// it and every later record, moving the head: a chain that verifies.
    async fn rewrite(&self, sequence: u64, payload: Vec<u8>) {
        self.reseal(sequence, payload, false).await;
    }

    /// [`Self::rewrite`] as the server would have written it: the
    /// checkpoints kept in the log after it, and the auditor's, signed over
    /// the rewritten history, so only what the record says is wrong.
    async fn rewrite_as_written(&mut self, sequence: u64, payload: Vec<u8>) {
        let chains = self.reseal(sequence, payload, true).await;
        let mut tree = MerkleTree::new();
        self.records().await.iter().for_each(|r| tree.push_record(&r.leaf_hash));
        for note in &mut self.kept {
            let (mut checkpoint, _, _) = Checkpoint::parse(note).unwrap();
            checkpoint.root = tree.root(checkpoint.size).unwrap();
            checkpoint.chain = chains[checkpoint.size as usize];
            *note = checkpoint.sign(&self.key).unwrap();
        }
    }

    /// Re-seals from `sequence` on (with `resign`, the checkpoints kept in
    /// the log signed again over the new records); the chain hash after
    /// every record (genesis first).
    async fn reseal(&self, sequence: u64, payload: Vec<u8>, resign: bool) -> Vec<Hash> {
        self.drop_guards().await;
        let records = self.records().await;
        let mut tree = MerkleTree::new();
        let mut chains = vec![domain::record::CHAIN_GENESIS];
        for record in &records[..sequence as usize - 1] {
            tree.push_record(&record.leaf_hash);
            chains.push(record.chain_hash);
        }
        for record in &records[sequence as usize - 1..] {
            let mut content =
                if record.header.sequence == sequence { payload.clone() } else { record.payload.clone().unwrap() };
            if resign && record.header.stream_id.as_str() == CHECKPOINT_STREAM {
                content = self.resigned(&record.header, &content, &tree, &chains);
            }
            let (header, metadata) = (record.header.clone(), record.metadata.clone().unwrap());
            let previous = *chains.last().unwrap();
            // Re-sealed in the record's own format (version 2 keeps its salt).
            let sealed = match record.salt {
                Some(salt) => Record::seal_v2(header, metadata, content, salt, &previous),
                None => Record::seal(header, metadata, content, &previous),
            };
            tree.push_record(&sealed.leaf_hash);
            chains.push(sealed.chain_hash);
            self.sql(
                "UPDATE events SET payload = ?, payload_hash = ?, leaf_hash = ?, chain_hash = ? WHERE sequence = ?",
                &[
                    Value::Bytes(sealed.payload.clone().unwrap()),
                    Value::Bytes(sealed.payload_hash.0.to_vec()),
                    Value::Bytes(sealed.leaf_hash.0.to_vec()),
                    Value::Bytes(sealed.chain_hash.0.to_vec()),
                    Value::Int(sealed.header.sequence as i64),
                ],
            )
            .await;
        }
        let head = chains.last().unwrap().0.to_vec();
        self.sql("UPDATE log_head SET chain_hash = ? WHERE id = 1", &[Value::Bytes(head)]).await;
        chains
    }

    /// A kept checkpoint's payload signed again over `tree` and `chains`.
    fn resigned(&self, header: &RecordHeader, payload: &[u8], tree: &MerkleTree, chains: &[Hash]) -> Vec<u8> {
        let Ok(Some(domain::event::LedgerEvent::Checkpoint(CheckpointEvent::CheckpointSigned(signed)))) =
            domain::event::LedgerEvent::decode(header, payload)
        else {
            return payload.to_vec();
        };
        let (mut checkpoint, _, _) = Checkpoint::parse(&signed.note).unwrap();
        checkpoint.root = tree.root(checkpoint.size).unwrap();
        checkpoint.chain = chains[checkpoint.size as usize];
        let note = checkpoint.sign(&self.key).unwrap();
        CheckpointEvent::CheckpointSigned(CheckpointSigned { note }).encode_payload()
    }
}

enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    Uuid(uuid::Uuid),
}

fn bind<'q, DB: sqlx::Database>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    values: &[Value],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    uuid::Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for value in values {
        query = match value {
            Value::Int(v) => query.bind(*v),
            Value::Bytes(v) => query.bind(v.clone()),
            Value::Uuid(v) => query.bind(*v),
        };
    }
    query
}

fn replay_with(args: &[&str], source: &[String]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .args(source)
        .env_remove("DATABASE_URL")
        .output()
        .expect("the replay binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn organization_payload(name: &str) -> Vec<u8> {
    let created = OrganizationCreated {
        id: ORG,
        name: name.into(),
        domain: Some("acme.example".into()),
        industry: None,
        employee_count: Some(120),
    };
    OrganizationEvent::OrganizationCreated(created).encode_payload()
}

// ---- the tests, each on both backends ----

async fn an_untouched_history_verifies(h: History) {
    let (code, stdout) = h.verify();
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok records: 9"), "{stdout}");
    assert!(stdout.contains("ok checkpoints: 2 kept in the log, 2 of yours"), "{stdout}");
    assert!(stdout.contains("ok invoices: 1 re-derived"), "{stdout}");
    // Without --public-key, the data directory's key is used (SQLite).
    if h.database_url.is_none() {
        let output = h.replay(&["verify"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    }
    // A live snapshot of the projections is compared at its sequence.
    let state = projections::LedgerState::rebuild(&h.log, 6).await.unwrap();
    let (bytes, digest) = state.encode();
    let chain_hash = Some(h.records().await[5].chain_hash);
    let snapshot =
        store::Snapshot { name: projections::SNAPSHOT_NAME.into(), sequence: 6, chain_hash, digest, state: bytes };
    h.log.save_snapshot(snapshot.clone(), Timestamp::from_micros(0)).await.unwrap();
    let (code, stdout) = h.verify();
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("at sequence 6 matches the live snapshot"), "{stdout}");
    let forged = store::Snapshot { sequence: 7, digest: Hash([1; 32]), ..snapshot };
    h.log.save_snapshot(forged, Timestamp::from_micros(0)).await.unwrap();
    h.fails_at(Some(7), "differ from the live snapshot");
}

async fn a_changed_payload_byte_is_named(h: History) {
    h.drop_guards().await;
    let mut payload = h.records().await[3].payload.clone().unwrap();
    payload[0] ^= 1;
    h.sql("UPDATE events SET payload = ? WHERE sequence = 4", &[Value::Bytes(payload)]).await;
    h.fails_at(Some(4), "payload bytes do not match their stored hash");
}

async fn a_changed_metadata_byte_is_named(h: History) {
    h.drop_guards().await;
    let mut metadata = h.records().await[2].metadata.clone().unwrap();
    metadata[1] ^= 1;
    h.sql("UPDATE events SET metadata = ? WHERE sequence = 3", &[Value::Bytes(metadata)]).await;
    h.fails_at(Some(3), "metadata bytes do not match their stored hash");
}

async fn a_changed_header_field_is_named(h: History) {
    h.drop_guards().await;
    h.sql("UPDATE events SET occurred_at_us = occurred_at_us + 1 WHERE sequence = 6", &[]).await;
    h.fails_at(Some(6), "leaf hash does not match");
}

async fn swapped_rows_are_named(h: History) {
    h.drop_guards().await;
    for sql in [
        "UPDATE events SET sequence = -3 WHERE sequence = 3",
        "UPDATE events SET sequence = 3 WHERE sequence = 4",
        "UPDATE events SET sequence = 4 WHERE sequence = -3",
    ] {
        h.sql(sql, &[]).await;
    }
    h.fails_at(Some(3), "leaf hash does not match");
}

async fn an_inserted_row_is_named(h: History) {
    h.drop_guards().await;
    for sequence in (5..=9).rev() {
        h.sql("UPDATE events SET sequence = sequence + 1 WHERE sequence = ?", &[Value::Int(sequence)]).await;
    }
    // A copy of record 2 with a fresh id and revision, placed at 5.
    h.sql(
        "INSERT INTO events (sequence, event_id, stream_id, stream_revision, event_type, schema_version, occurred_at_us, \
         recorded_at_us, idempotency_key, metadata, metadata_hash, payload, payload_hash, leaf_hash, chain_hash, format, \
         salt) SELECT 5, ?, stream_id, 1000, event_type, schema_version, occurred_at_us, recorded_at_us, \
         idempotency_key, metadata, metadata_hash, payload, payload_hash, leaf_hash, chain_hash, format, salt \
         FROM events WHERE sequence = 2",
        &[Value::Uuid(uuid::Uuid::now_v7())],
    )
    .await;
    h.fails_at(Some(5), "leaf hash does not match");
}

async fn a_deleted_row_and_a_cut_tail_are_named(h: History) {
    h.drop_guards().await;
    h.sql("DELETE FROM events WHERE sequence = 5", &[]).await;
    h.fails_at(Some(5), "sequence gap: expected sequence 5, found 6");
    h.sql("DELETE FROM events WHERE sequence > 4", &[]).await;
    // The head row still says 9; the checkpoints the auditor kept, too.
    h.fails_at(Some(5), "the log ends at sequence 4 but its head says sequence 9");
}

async fn a_well_forged_row_behind_the_writer_is_named(h: History) {
    // A record sealed correctly onto the real chain, written straight to
    // the table: every hash holds, but the head row never acknowledged it.
    let last = h.records().await.pop().unwrap();
    let mut header = last.header.clone();
    header.sequence = 10;
    header.stream_revision += 1;
    header.event_id = EventId(uuid::Uuid::now_v7());
    let (metadata, payload) = (last.metadata.clone().unwrap(), last.payload.clone().unwrap());
    let forged = Record::seal_v2(header.clone(), metadata, payload, last.salt.unwrap(), &last.chain_hash);
    h.sql(
        "INSERT INTO events (sequence, event_id, stream_id, stream_revision, event_type, schema_version, occurred_at_us, \
         recorded_at_us, idempotency_key, metadata, metadata_hash, payload, payload_hash, leaf_hash, chain_hash, format, \
         salt) SELECT 10, ?, stream_id, stream_revision + 1, event_type, schema_version, occurred_at_us, recorded_at_us, \
         idempotency_key, metadata, metadata_hash, payload, payload_hash, ?, ?, format, salt FROM events WHERE sequence = 9",
        &[
            Value::Uuid(header.event_id.0),
            Value::Bytes(forged.leaf_hash.0.to_vec()),
            Value::Bytes(forged.chain_hash.0.to_vec()),
        ],
    )
    .await;
    h.fails_at(Some(10), "the log ends at sequence 10 but its head says sequence 9");
}

async fn a_rewritten_history_with_a_valid_chain_is_caught_by_kept_checkpoints(h: History) {
    // Record 1 renamed, every later hash recomputed and the head moved: the
    // chain verifies, but the checkpoint kept in the log at sequence 5
    // states another Merkle root.
    h.rewrite(1, organization_payload("Acme Evil GmbH")).await;
    h.fails_at(Some(5), "kept checkpoint: the Merkle root of the first 4 records is");
    // With the kept checkpoints removed from the log as well (the attacker
    // rewrites them away), the checkpoints the auditor kept still catch it.
    h.sql("DELETE FROM events WHERE sequence >= 5", &[]).await;
    h.sql("UPDATE log_head SET sequence = 4, chain_hash = (SELECT chain_hash FROM events WHERE sequence = 4) WHERE id = 1", &[])
        .await;
    h.fails_at(Some(4), "the log no longer holds your checkpoint");
}

async fn an_invoice_that_does_not_follow_from_its_events_is_named(mut h: History) {
    // January's invoice rewritten with a changed description, its digest
    // made to match, and the chain re-sealed: every hash holds, but the
    // events do not give this invoice.
    let record = h.records().await[5].clone();
    let Some(domain::event::LedgerEvent::Invoice(InvoiceEvent::InvoiceIssued(mut issued))) =
        domain::event::LedgerEvent::decode(&record.header, record.payload.as_ref().unwrap()).unwrap()
    else {
        panic!("record 6 is the invoice")
    };
    issued.invoice.lines[0].description.push_str(" (discounted)");
    issued.digest = issued.invoice.digest();
    h.rewrite_as_written(6, InvoiceEvent::InvoiceIssued(issued).encode_payload()).await;
    h.fails_at(Some(6), "does not follow from the events");
}

async fn forged_checkpoints_are_refused(mut h: History) {
    // A checkpoint in the log signed by another key.
    let impostor = SigningKey::from_bytes(&[7; 32]);
    let note = h.sign_head("2026-02-06T00:00:00Z", &impostor).await;
    let stream = StreamId::new(CHECKPOINT_STREAM).unwrap();
    let at = h
        .append(
            "2026-02-06T00:00:00Z",
            stream,
            CheckpointEvent::CheckpointSigned(CheckpointSigned { note: note.clone() }),
        )
        .await;
    assert_eq!(at, 10);
    h.fails_at(Some(10), "is not signed by the checkpoint key");
    // A kept checkpoint of the auditor's own, forged.
    h.kept.push(note);
    let (code, stdout) = h.verify();
    assert_eq!(code, 1, "{stdout}");
}

async fn a_key_rotation_is_followed(mut h: History) {
    let next = SigningKey::from_bytes(&[43; 32]);
    let rotation = CheckpointKeyRotated::announce(&h.key, &next.verifying_key());
    let stream = StreamId::new(CHECKPOINT_STREAM).unwrap();
    h.append("2026-02-06T00:00:00Z", stream.clone(), CheckpointEvent::CheckpointKeyRotated(rotation)).await;
    let note = h.sign_head("2026-02-07T00:00:00Z", &next).await;
    h.append("2026-02-07T00:00:00Z", stream.clone(), CheckpointEvent::CheckpointSigned(CheckpointSigned { note }))
        .await;
    let (code, stdout) = h.verify();
    assert_eq!(code, 0, "a checkpoint by the announced key holds: {stdout}");
    // A checkpoint by the old key after the rotation does not.
    let old = h.key.clone();
    let note = h.sign_head("2026-02-08T00:00:00Z", &old).await;
    let at = h
        .append("2026-02-08T00:00:00Z", stream.clone(), CheckpointEvent::CheckpointSigned(CheckpointSigned { note }))
        .await;
    h.fails_at(Some(at), "is not signed by the checkpoint key");
    h.kept.clear();
    // A rotation signed by someone else than the key in force.
    let mut h2 = History::sqlite().await;
    h2.script().await;
    let rogue = SigningKey::from_bytes(&[8; 32]);
    let mut forged = CheckpointKeyRotated::announce(&rogue, &rogue.verifying_key());
    forged.old_key = h2.key.verifying_key().to_bytes();
    let at = h2.append("2026-02-06T00:00:00Z", stream, CheckpointEvent::CheckpointKeyRotated(forged)).await;
    h2.fails_at(Some(at), "key rotation");
}

async fn export_round_trips_and_verifies_alone(h: History) {
    let file = h.dir.path().join("export.jsonl");
    let output = h.replay(&["export", "--out", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 10, "a header and nine records");
    let key = h.public_key();
    let from_file = ["--file".to_owned(), file.display().to_string()];
    let output = replay_with(&["verify", "--public-key", &key], &from_file);
    assert!(output.status.success(), "{}", stdout(&output));
    // One changed character in the file is named.
    let tampered = h.dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("\"streamRevision\":1,", "\"streamRevision\":2,", 1)).unwrap();
    let output = replay_with(&["verify", "--public-key", &key], &["--file".to_owned(), tampered.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("FAILED sequence 1: leaf hash does not match"), "{}", stdout(&output));
}

async fn proofs_are_made_and_checked_offline(h: History) {
    let key = h.public_key();
    // Record 3 against the latest kept checkpoint covering it (size 7).
    let output = h.replay(&["prove", "--sequence", "3"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let proof: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(proof["treeSize"], 7);
    let path = h.dir.path().join("proof.json");
    std::fs::write(&path, &output.stdout).unwrap();
    let check =
        |path: &Path| replay_with(&["check-proof", "--proof", path.to_str().unwrap(), "--public-key", &key], &[]);
    let output = check(&path);
    assert!(output.status.success(), "{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
    assert!(stdout(&output).contains("ok record 3"), "{}", stdout(&output));
    // Every hash of the proof changed, the record changed, the size or the
    // checkpoint changed: refused.
    let mutate = |name: &str, change: &dyn Fn(&mut serde_json::Value)| {
        let mut bad = proof.clone();
        change(&mut bad);
        let path = h.dir.path().join(format!("bad-{name}.json"));
        std::fs::write(&path, bad.to_string()).unwrap();
        let output = check(&path);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{name}: {}{}",
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    for i in 0..proof["proof"].as_array().unwrap().len() {
        mutate(&format!("hash-{i}"), &|p| {
            let hash = p["proof"][i].as_str().unwrap().to_owned();
            let flipped = format!("{}{}", if hash.starts_with('0') { '1' } else { '0' }, &hash[1..]);
            p["proof"][i] = flipped.into();
        });
    }
    mutate("short", &|p| {
        p["proof"].as_array_mut().unwrap().pop();
    });
    mutate("long", &|p| {
        let root = p["rootHash"].clone();
        p["proof"].as_array_mut().unwrap().push(root);
    });
    mutate("revision", &|p| p["record"]["streamRevision"] = 2.into());
    mutate("type", &|p| p["record"]["eventType"] = "UsageRemoved".into());
    mutate("index", &|p| p["leafIndex"] = 3.into());
    mutate("size", &|p| p["treeSize"] = 8.into());
    mutate("checkpoint", &|p| {
        let note = p["checkpoint"].as_str().unwrap().replacen("\n7\n", "\n8\n", 1);
        p["checkpoint"] = note.into();
    });
}

async fn as_of_answers_what_was_recorded_then(h: History) {
    let ask = |at: &str| {
        let output = h.replay(&["as-of", at, "--org", &ORG.0.to_string()]);
        assert!(output.status.success(), "{at}: {}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    // Mid-January: the starter subscription and one usage report, no
    // invoice. Each part is the API's shape (`usecases::views`): the
    // subscription as `GET /subscriptions/{orgId}`, the usage as `GET
    // /organizations/{id}/usage`, the invoices as `GET …/invoices`.
    let then = ask("2026-01-10");
    assert_eq!(then["asOf"]["sequence"], 3);
    let subscription = &then["subscriptions"][0];
    assert_eq!(subscription["status"], "active");
    assert_eq!(subscription["tier"], "starter");
    assert_eq!(subscription["limits"]["maxUsers"], 5);
    assert_eq!(then["usage"]["total"]["dataVolumeGB"], "120");
    assert_eq!(then["invoices"].as_array().unwrap().len(), 0);
    // By sequence 5 (recorded on January 31st), both January reports.
    let then = ask("5");
    assert_eq!(then["usage"]["total"]["dataVolumeGB"], "400");
    assert_eq!(then["invoices"].as_array().unwrap().len(), 0);
    // Built by the API's own constructors from the state at that sequence,
    // to the letter.
    let state = projections::LedgerState::rebuild(&h.log, 5).await.unwrap();
    let date = chrono::NaiveDate::parse_from_str(then["asOf"]["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    let catalog = domain::catalog::Catalog::builtin();
    let api = usecases::views::queries::SubscriptionDetails::on(&state, &catalog, ORG, SUBSCRIPTION, date).unwrap();
    assert_eq!(then["subscriptions"][0], serde_json::to_value(api).unwrap());
    let api = usecases::views::usage::UsageView::of(&state, ORG, date).unwrap();
    assert_eq!(then["usage"], serde_json::to_value(api).unwrap());
    // By sequence 6 (February 1st), January's invoice; February has no usage yet.
    let then = ask("6");
    let invoices = then["invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["period"], "2026-01");
    // The API's invoice shape (`usecases::views::billing::Invoice`), not one of replay's own.
    assert_eq!(invoices[0]["status"], "open");
    assert_eq!(invoices[0]["currency"], "USD");
    assert_eq!(invoices[0]["lines"][0]["kind"], "base");
    assert!(invoices[0]["lines"][0]["reports"].is_array());
    assert!(invoices[0]["inputs"]["runs"][0]["annualPrice"].is_string());
    assert_eq!(then["usage"]["period"], "2026-02");
    assert_eq!(then["usage"]["total"]["dataVolumeGB"], "0");
    // Before the organization existed: it did not.
    let output = h.replay(&["as-of", "2025-12-31", "--org", &ORG.0.to_string()]);
    assert_eq!(output.status.code(), Some(1));
    // The audit trail: who, what, when, from where; only this organization's.
    let output = h.replay(&["audit", "--org", &ORG.0.to_string()]);
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = stdout(&output).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sequences: Vec<u64> = lines.iter().map(|l| l["sequence"].as_u64().unwrap()).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 6, 7]);
    assert_eq!(lines[0]["actor"], "operator");
    assert_eq!(lines[0]["sourceIp"], "203.0.113.7");
    assert_eq!(lines[0]["eventType"], "OrganizationCreated");
    // Each line is the API's audit entry (`GET /audit`'s items), to the letter.
    let state = projections::LedgerState::rebuild(&h.log, 9).await.unwrap();
    let api: Vec<serde_json::Value> = state
        .audit
        .iter()
        .filter(|entry| entry.organization_id == Some(ORG))
        .map(|entry| serde_json::to_value(usecases::views::queries::AuditEntryView::from(entry)).unwrap())
        .collect();
    assert_eq!(lines, api);
    // Rebuild prints the digest of the state it built.
    let output = h.replay(&["rebuild"]);
    assert!(output.status.success());
    let (_, digest) = projections::LedgerState::rebuild(&h.log, 9).await.unwrap().encode();
    assert!(stdout(&output).contains(&digest.to_hex()), "{}", stdout(&output));
}

/// Each test gets the scripted history on its backend. (`History::sqlite`
/// and `History::postgres` below are the inherent constructors, which make
/// an empty log.)
impl store::testing::BackendFixture for History {
    async fn sqlite(_test: &str) -> Self {
        History::scripted().await
    }

    async fn postgres(test: &str) -> Option<Self> {
        let mut history = History::postgres(test).await?;
        history.script().await;
        Some(history)
    }
}

// ---- erasure (issue 16) ----

/// Appends a `RetentionApplied` retiring the usage reports that occurred
/// before `usage_before` (up to sequence 9), at sequence 10.
async fn retention_run(h: &History, usage_before: &str) -> u64 {
    let run = RetentionApplied {
        at: Timestamp::from_micros(micros("2029-03-01T00:00:00Z")),
        usage_before: Timestamp::from_micros(micros(usage_before)),
        up_to_sequence: 9,
        usage_records: 2,
        keys_archived: 0,
        subscriptions_anonymized: 0,
    };
    h.append("2029-03-01T00:00:00Z", privacy::privacy_stream(), PrivacyEvent::RetentionApplied(run)).await
}

async fn retired_usage_is_checked_against_the_invoices_recorded_inputs(mut h: History) {
    let by = retention_run(&h, "2026-02-01T00:00:00Z").await;
    let rows = [3, 4].map(|sequence| store::ErasedRow { sequence, facts: None });
    assert_eq!(h.log.erase(by, &rows).await.unwrap(), 2);
    let (code, stdout) = h.verify();
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok erasures: 2 records erased"), "{stdout}");
    assert!(stdout.contains("(2 usage records retired)"), "{stdout}");
    assert!(
        stdout.contains("ok invoices: 0 re-derived from their events byte for byte, 1 checked against recorded inputs (usage retired)"),
        "{stdout}"
    );
    // The invoice is still checked: a changed total is named.
    let records = h.records().await;
    let Some(Ok(Some(domain::event::LedgerEvent::Invoice(InvoiceEvent::InvoiceIssued(mut issued))))) =
        records[5].payload.as_deref().map(|p| domain::event::LedgerEvent::decode(&records[5].header, p))
    else {
        panic!("sequence 6 is the invoice")
    };
    issued.invoice.total = domain::Money::usd(1.into());
    h.rewrite_as_written(6, InvoiceEvent::InvoiceIssued(issued).encode_payload()).await;
    let (code, stdout) = h.verify();
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAILED sequence 6: ") && stdout.contains("(usage retired)"), "{stdout}");
}

async fn an_erasure_its_event_does_not_cover_is_named(h: History) {
    // The run covers the report of January 5 (sequence 3), not the one of
    // January 20 (sequence 4), which the store erases all the same.
    let by = retention_run(&h, "2026-01-10T00:00:00Z").await;
    let rows = [store::ErasedRow { sequence: 4, facts: None }];
    assert_eq!(h.log.erase(by, &rows).await.unwrap(), 1);
    h.fails_at(Some(4), "unsanctioned erasure at sequence 4: the privacy event at sequence 10 does not cover it");
}

/// A subject erasure of record 1 that keeps beside it the facts the
/// event lists, changed by `change`; what `replay verify` then says.
async fn subject_erasure(h: &History, change: fn(&mut Vec<u8>)) -> (i32, String) {
    let records = h.records().await;
    let facts = privacy::facts(&records[0].header, records[0].payload.as_deref().unwrap()).unwrap();
    let erased = SubjectErased {
        subject: Subject::Organization { organization_id: ORG },
        reason: ErasureReason::Request,
        at: Timestamp::from_micros(micros("2026-03-01T00:00:00Z")),
        records: vec![ErasedRecord { sequence: 1, facts: Some(facts.clone()) }],
    };
    let by = h.append("2026-03-01T00:00:00Z", privacy::privacy_stream(), PrivacyEvent::SubjectErased(erased)).await;
    let mut kept = facts;
    change(&mut kept);
    assert_eq!(h.log.erase(by, &[store::ErasedRow { sequence: 1, facts: Some(kept) }]).await.unwrap(), 1);
    h.verify()
}

async fn a_subject_erasure_keeps_exactly_the_facts_it_lists(h: History) {
    // Other facts than the event lists are not sanctioned.
    let (code, stdout) = subject_erasure(&h, |facts| facts.push(0)).await;
    assert_eq!(code, 1, "{stdout}");
    let named = "FAILED sequence 1: unsanctioned erasure at sequence 1: the facts kept beside it are not the ones";
    assert!(stdout.contains(named), "{stdout}");
}

async fn a_subject_erasure_verifies(h: History) {
    let (code, stdout) = subject_erasure(&h, |_| {}).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok erasures: 1 records erased"), "{stdout}");
    assert!(stdout.contains("ok invoices: 1 re-derived"), "{stdout}");
}

async fn an_unsanctioned_null_is_named(h: History) {
    // Today's "1 shredded" is gone: a NULL payload no erasure names fails.
    h.drop_guards().await;
    h.sql("UPDATE events SET payload = NULL WHERE sequence = 7", &[]).await;
    h.fails_at(Some(7), "unsanctioned erasure at sequence 7: its payload is NULL and no erasure names it");
}

async fn the_integrity_phase_names_a_tampered_record_before_any_rebuild(h: History) {
    h.drop_guards().await;
    // A defect only the rebuild names (an unsanctioned NULL, sequence 2)
    // before a tampered record (sequence 4): one ordered pass over both
    // named sequence 2; the integrity phase names 4 and stops there.
    let mut payload = h.records().await[3].payload.clone().unwrap();
    payload[0] ^= 1;
    h.sql("UPDATE events SET payload = NULL WHERE sequence = 2", &[]).await;
    h.sql("UPDATE events SET payload = ? WHERE sequence = 4", &[Value::Bytes(payload)]).await;
    h.fails_at(Some(4), "payload bytes do not match their stored hash");
    let (_, stdout) = h.verify();
    assert!(
        !stdout.contains("ok records") && !stdout.contains("ok payloads") && !stdout.contains("rebuild ("),
        "{stdout}"
    );
}

async fn the_report_names_each_phase_with_its_time_and_rate(h: History) {
    let (code, stdout) = h.verify();
    assert_eq!(code, 0, "{stdout}");
    let line = |start: &str| {
        stdout.lines().position(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line {start}…: {stdout}"))
    };
    let timed = |start: &str| {
        let at = line(start);
        let said = stdout.lines().nth(at).unwrap();
        assert!(said.contains(" s (") && said.ends_with(" records/s)"), "{said}");
        at
    };
    let integrity = timed("integrity (records, chain, Merkle tree, checkpoints): 9 records in ");
    let rebuild = timed("rebuild (payloads, erasures, projections, read models, invoices): 9 records in ");
    let verified = timed("verified in ");
    assert!(
        line("ok checkpoints: 2 kept") < integrity && integrity < line("ok payloads") && line("ok invoices") < rebuild
    );
    assert!(rebuild < verified, "{stdout}");
}

store::backend_tests!(
    History;
    an_untouched_history_verifies,
    a_changed_payload_byte_is_named,
    a_changed_metadata_byte_is_named,
    a_changed_header_field_is_named,
    swapped_rows_are_named,
    an_inserted_row_is_named,
    a_deleted_row_and_a_cut_tail_are_named,
    a_well_forged_row_behind_the_writer_is_named,
    a_rewritten_history_with_a_valid_chain_is_caught_by_kept_checkpoints,
    an_invoice_that_does_not_follow_from_its_events_is_named,
    forged_checkpoints_are_refused,
    a_key_rotation_is_followed,
    export_round_trips_and_verifies_alone,
    proofs_are_made_and_checked_offline,
    as_of_answers_what_was_recorded_then,
    retired_usage_is_checked_against_the_invoices_recorded_inputs,
    an_erasure_its_event_does_not_cover_is_named,
    a_subject_erasure_keeps_exactly_the_facts_it_lists,
    a_subject_erasure_verifies,
    an_unsanctioned_null_is_named,
    the_integrity_phase_names_a_tampered_record_before_any_rebuild,
    the_report_names_each_phase_with_its_time_and_rate,
);
