//! Helpers of the end-to-end privacy test (`tests/privacy.rs`, issue 16):
//! records written "before this change" (record format version 1), and
//! the searches for a person's bytes in everything the ledger keeps.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sqlx::Row;

use crate::common::Backend;

/// One value to look for, and what it is (for the failure message).
#[derive(Debug, Clone)]
pub struct Needle {
    pub what: &'static str,
    pub text: String,
}

impl Needle {
    pub fn new(what: &'static str, text: &str) -> Self {
        Self { what, text: text.to_owned() }
    }

    /// The forms it may take: its UTF-8 bytes, and PostgreSQL's text form
    /// of a `bytea` holding them (`\x` and lower-case hex).
    fn forms(&self) -> [Vec<u8>; 2] {
        [self.text.as_bytes().to_vec(), hex::encode(self.text.as_bytes()).into_bytes()]
    }
}

/// Where a needle was found: the place and a short excerpt around it.
pub fn find_in(haystack: &[u8], needles: &[Needle], place: &str) -> Vec<String> {
    let mut found = Vec::new();
    for needle in needles {
        for form in needle.forms() {
            if let Some(at) = haystack.windows(form.len()).position(|w| w == form.as_slice()) {
                let from = at.saturating_sub(40);
                let to = (at + form.len() + 40).min(haystack.len());
                found.push(format!(
                    "{} ({}) in {place} at byte {at}: …{}…",
                    needle.what,
                    needle.text,
                    String::from_utf8_lossy(&haystack[from..to]).escape_debug()
                ));
            }
        }
    }
    found
}

/// Every regular file under `dir`, recursively (the SQLite files and their
/// `-wal`/`-shm`, read-model files, snapshots, keys, the clock file).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Searches every file under `dir` (and the files named besides); the
/// findings, empty when no byte of any needle is there.
pub fn search_files(dir: &Path, extra: &[PathBuf], needles: &[Needle]) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = files_under(dir);
    files.extend(extra.iter().cloned());
    let mut found = Vec::new();
    for file in &files {
        // A file may vanish between listing and reading (a -wal removed at
        // a checkpoint): then it holds nothing.
        let Ok(bytes) = std::fs::read(file) else { continue };
        found.extend(find_in(&bytes, needles, &file.display().to_string()));
    }
    (files, found)
}

/// Searches every table of the backend's PostgreSQL schema, row by row
/// (`SELECT t::text FROM <table> t`: every column's text form, `bytea` as
/// hex, which [`Needle`] also looks for); the tables searched and the
/// findings.
pub async fn search_postgres(database_url: &str, needles: &[Needle]) -> (Vec<String>, Vec<String>) {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(database_url).await.expect("PostgreSQL");
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .fetch_all(&pool)
    .await
    .expect("the schema's tables")
    .into_iter()
    .map(|row| row.get::<String, _>(0))
    .collect();
    let mut found = Vec::new();
    for table in &tables {
        let sql = format!("SELECT t::text FROM \"{}\" t", table.replace('"', "\"\""));
        let rows = sqlx::query(&sql).fetch_all(&pool).await.unwrap_or_else(|e| panic!("{table}: {e}"));
        for (index, row) in rows.iter().enumerate() {
            let text: String = row.get(0);
            found.extend(find_in(text.as_bytes(), needles, &format!("table {table}, row {index}")));
        }
    }
    pool.close().await;
    (tables, found)
}

/// The sequences of an export's records (a page of
/// `GET /api/v1/privacy/exports`, or `ledger privacy export`'s document).
pub fn sequences(export: &Value) -> BTreeSet<u64> {
    let records = export["records"].as_array().unwrap_or_else(|| panic!("records in the export: {export}"));
    records.iter().map(|r| r["sequence"].as_u64().unwrap_or_else(|| panic!("a sequence in {r}"))).collect()
}

/// Appends records in format version 1, as a ledger before issue 16 wrote
/// them (`EventLog::append_legacy_v1_for_tests`, see `store::testing`): a user added to `org` with
/// `email`, and a portal sign-in of theirs from `address` (its metadata
/// with `address` and `agent`). The server must be stopped. Returns the
/// two records' sequences.
pub async fn append_v1_user(
    backend: &Backend,
    org: &str,
    user: uuid::Uuid,
    email: &str,
    address: &str,
    agent: &str,
) -> [u64; 2] {
    use domain::organization::{OrganizationEvent, UserAdded};
    use domain::signin::{SignInEvent, SignedIn};

    let log = backend.open_log().await;
    let organization_id = domain::OrganizationId(org.parse().expect("a UUID"));
    let user_id = domain::UserId(user);
    let now = log.head().await.expect("the head").recorded_at;
    let operator =
        domain::Metadata { actor: Some("operator".into()), correlation_id: None, source_ip: None, user_agent: None };
    let added = OrganizationEvent::from(UserAdded {
        user_id,
        email: email.to_owned(),
        role: domain::organization::Role::Admin,
    });
    let session_id = uuid::Uuid::new_v4();
    let signed_in =
        SignInEvent::from(SignedIn { organization_id, user_id, session_id, address: address.to_owned(), at: now });
    let as_user = domain::Metadata {
        actor: Some(format!("org:{org}:admin:user:{user}")),
        correlation_id: None,
        source_ip: Some(address.to_owned()),
        user_agent: Some(agent.to_owned()),
    };
    let commands = vec![
        store::Command {
            stream_id: organization_id.stream(),
            expected: store::ExpectedRevision::Any,
            idempotency: None,
            events: vec![store::NewEvent::from_event(&added, domain::EventId(uuid::Uuid::now_v7()), now, &operator)],
        },
        store::Command {
            stream_id: domain::signin::session_stream(session_id),
            expected: store::ExpectedRevision::Any,
            idempotency: None,
            events: vec![store::NewEvent::from_event(&signed_in, domain::EventId(uuid::Uuid::now_v7()), now, &as_user)],
        },
    ];
    let appended = log.append_legacy_v1_for_tests(commands).await.expect("a version 1 append");
    let mut sequences = [0; 2];
    for (slot, appended) in sequences.iter_mut().zip(appended) {
        *slot = appended.expect("appended").last_sequence;
    }
    for sequence in sequences {
        let record = log.read_page(sequence..=sequence, 1).await.expect("read").pop().expect("the record");
        assert_eq!(record.format, domain::record::HEADER_FORMAT_V1, "sequence {sequence} is a version 1 record");
    }
    sequences
}
