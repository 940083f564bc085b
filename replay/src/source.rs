//! Where the history comes from: a data directory (SQLite), a PostgreSQL
//! URL, or an export file; and the export format (JSON Lines).
//!
//! A log is opened read-only (`store::ReadOnlyLog`): no migration, no
//! writer, no snapshot saved, no file created in a data directory. A log
//! whose schema is not this version's is reported (exit 2), not migrated.
//!
//! Records arrive in pages, read ahead of the one being checked. Reading
//! goes past the head row, so rows written behind the writer's back are
//! seen, and past gaps, so a missing record is named where it is missing.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use domain::record::{Hash, Record, RecordHeader};
use domain::{EventId, StreamId, Timestamp};
use serde::{Deserialize, Serialize};
use store::{Head, READ_PAGE_RECORDS, ReadOnlyLog, Snapshot};
use tokio::sync::mpsc;

/// Pages read ahead of the one being checked.
const PAGES_AHEAD: usize = 4;
/// The first line of an export names its format. Version 2 lines carry
/// each record's format, salt and erasure (issue 16).
pub const EXPORT_FORMAT: &str = "ledger-export-v2";
/// The format before record format 2: its lines lack those fields, which
/// read as a version 1 record never erased.
pub const EXPORT_FORMAT_V1: &str = "ledger-export-v1";

pub enum Source {
    Log { log: ReadOnlyLog, data_dir: Option<PathBuf> },
    File { path: PathBuf },
}

impl Source {
    pub async fn open(
        data_dir: Option<&Path>,
        database_url: Option<&str>,
        file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        match (data_dir, database_url, file) {
            (_, _, Some(path)) => {
                anyhow::ensure!(path.exists(), "{} does not exist", path.display());
                Ok(Self::File { path: path.to_owned() })
            }
            (data_dir, Some(url), None) => {
                let options = url.parse().context("--database-url is not a PostgreSQL URL")?;
                let log = ReadOnlyLog::open_postgres(options).await?;
                Ok(Self::Log { log, data_dir: data_dir.map(Path::to_owned) })
            }
            (Some(dir), None, None) => {
                let path = dir.join("ledger.sqlite");
                anyhow::ensure!(path.exists(), "{} holds no log (ledger.sqlite)", dir.display());
                let log = ReadOnlyLog::open_sqlite(&path).await?;
                Ok(Self::Log { log, data_dir: Some(dir.to_owned()) })
            }
            (None, None, None) => bail!("name the history: --data-dir DIR, --database-url URL or --file EXPORT.jsonl"),
        }
    }

    /// The data directory, for its public keys.
    pub fn data_dir(&self) -> Option<&Path> {
        match self {
            Self::Log { data_dir, .. } => data_dir.as_deref(),
            Self::File { .. } => None,
        }
    }

    /// The head the log claims (an export's first line).
    pub async fn head(&self) -> anyhow::Result<Option<Head>> {
        match self {
            Self::Log { log, .. } => Ok(Some(log.head().await?)),
            Self::File { path } => {
                let file = std::io::BufReader::new(std::fs::File::open(path)?);
                let Some(first) = file.lines().next().transpose()? else { return Ok(None) };
                let header: ExportHeader = serde_json::from_str(&first).context("the export's first line")?;
                anyhow::ensure!(
                    header.format == EXPORT_FORMAT || header.format == EXPORT_FORMAT_V1,
                    "not a {EXPORT_FORMAT} (or {EXPORT_FORMAT_V1}) file"
                );
                Ok(Some(Head {
                    sequence: header.head.sequence,
                    chain_hash: hash(&header.head.chain_hash)?,
                    recorded_at: Timestamp::from_micros(header.head.recorded_at_us),
                }))
            }
        }
    }

    /// The live projection snapshot, if the source keeps one.
    pub async fn snapshot(&self) -> anyhow::Result<Option<Snapshot>> {
        match self {
            Self::Log { log, .. } => Ok(log.load_snapshot(projections::SNAPSHOT_NAME).await?),
            Self::File { .. } => Ok(None),
        }
    }

    /// Every record in stored order, a page at a time, read ahead: from a
    /// log, those up to `head` (the head [`Source::head`] read), which a
    /// server may be appending past meanwhile; from a file, all of them.
    pub fn pages(&self, head: u64) -> mpsc::Receiver<anyhow::Result<Vec<Record>>> {
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        match self {
            Self::Log { log, .. } => {
                tokio::spawn(log_pages(log.clone(), head, tx));
            }
            Self::File { path } => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || file_pages(&path, &tx));
            }
        }
        rx
    }
}

/// Where a page goes: to the walk, which may have stopped listening.
type Pages = mpsc::Sender<anyhow::Result<Vec<Record>>>;

/// The log's pages up to `head`: ranges computed ahead, read several at
/// once (a missing record just makes a short page, which linking names).
async fn log_pages(log: ReadOnlyLog, head: u64, tx: Pages) {
    use futures::StreamExt;
    let page = READ_PAGE_RECORDS as u64;
    let ranges = (1..=head).step_by(READ_PAGE_RECORDS).map(move |from| from..=(from + page - 1).min(head));
    let mut reads = std::pin::pin!(
        futures::stream::iter(ranges).map(|range| log.read_page(range, READ_PAGE_RECORDS)).buffered(PAGES_AHEAD)
    );
    while let Some(page) = reads.next().await {
        let failed = page.is_err();
        if tx.send(page.map_err(Into::into)).await.is_err() || failed {
            return;
        }
    }
}

impl Source {
    /// Rows past `head` that no head acknowledges: written behind the
    /// writer's back. A server appending while replay runs moves the head
    /// past its new rows in the same transaction, so every row read here
    /// before the head is read again is covered by it; one that is not
    /// comes back as (the last row's sequence, the head now).
    pub async fn past_the_head(&self, head: u64) -> anyhow::Result<Option<(u64, u64)>> {
        let Self::Log { log, .. } = self else { return Ok(None) };
        let (mut from, mut last) = (head.saturating_add(1), None);
        loop {
            let page = log.read_page(from..=i64::MAX as u64, READ_PAGE_RECORDS).await?;
            let Some(record) = page.last() else { break };
            last = Some(record.header.sequence);
            from = record.header.sequence.saturating_add(1);
        }
        let now = log.head().await?.sequence;
        Ok(last.filter(|last| *last > now).map(|last| (last, now)))
    }
}

/// An export file's records (after its header line), a page at a time.
fn file_pages(path: &Path, tx: &Pages) {
    let send = |page| tx.blocking_send(page).is_ok();
    let file = match std::fs::File::open(path) {
        Ok(file) => std::io::BufReader::new(file),
        Err(error) => {
            send(Err(error.into()));
            return;
        }
    };
    let mut page = Vec::with_capacity(READ_PAGE_RECORDS);
    for (number, line) in file.lines().enumerate().skip(1) {
        let record = line
            .map_err(anyhow::Error::from)
            .and_then(|line| parse_line(&line))
            .with_context(|| format!("{} line {}", path.display(), number + 1));
        match record {
            Ok(record) => page.push(record),
            Err(error) => {
                send(Err(error));
                return;
            }
        }
        if page.len() == READ_PAGE_RECORDS
            && !send(Ok(std::mem::replace(&mut page, Vec::with_capacity(READ_PAGE_RECORDS))))
        {
            return;
        }
    }
    if !page.is_empty() {
        send(Ok(page));
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportHeader {
    pub format: String,
    pub head: ExportHead,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportHead {
    pub sequence: u64,
    pub chain_hash: String,
    pub recorded_at_us: i64,
}

/// One record as a line of an export: every header field, the content
/// (hex, `null` once erased), the four hashes (hex), the record format,
/// the salt (hex, `null` for version 1 and once erased) and the erasure
/// (`erasedBy`, and `facts` in hex), so an export re-imports to the same
/// records.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportRecord {
    pub sequence: u64,
    pub event_id: uuid::Uuid,
    pub stream_id: String,
    pub stream_revision: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at_us: i64,
    pub recorded_at_us: i64,
    pub idempotency_key: Option<String>,
    pub metadata: Option<String>,
    pub metadata_hash: String,
    pub payload: Option<String>,
    pub payload_hash: String,
    pub leaf_hash: String,
    pub chain_hash: String,
    /// The record format (1 or 2); absent in a version 1 export.
    #[serde(default = "format_v1")]
    pub format: u8,
    #[serde(default)]
    pub salt: Option<String>,
    /// The sequence of the privacy event that erased the record, if erased.
    #[serde(default)]
    pub erased_by: Option<u64>,
    /// The facts the erasure kept (hex), if any.
    #[serde(default)]
    pub facts: Option<String>,
}

fn format_v1() -> u8 {
    domain::record::HEADER_FORMAT_V1
}

impl From<&Record> for ExportRecord {
    fn from(record: &Record) -> Self {
        let header = &record.header;
        Self {
            sequence: header.sequence,
            event_id: header.event_id.0,
            stream_id: header.stream_id.to_string(),
            stream_revision: header.stream_revision,
            event_type: header.event_type.clone(),
            schema_version: header.schema_version,
            occurred_at_us: header.occurred_at.as_micros(),
            recorded_at_us: header.recorded_at.as_micros(),
            idempotency_key: header.idempotency_key.clone(),
            metadata: record.metadata.as_ref().map(hex::encode),
            metadata_hash: record.metadata_hash.to_hex(),
            payload: record.payload.as_ref().map(hex::encode),
            payload_hash: record.payload_hash.to_hex(),
            leaf_hash: record.leaf_hash.to_hex(),
            chain_hash: record.chain_hash.to_hex(),
            format: record.format,
            salt: record.salt.as_ref().map(hex::encode),
            erased_by: record.erasure.as_ref().map(|erasure| erasure.by),
            facts: record.erasure.as_ref().and_then(|erasure| erasure.facts.as_ref().map(hex::encode)),
        }
    }
}

pub fn hash(text: &str) -> anyhow::Result<Hash> {
    Hash::from_slice(&hex::decode(text).context("a hash is not hex")?).context("a hash is not 32 bytes")
}

impl TryFrom<ExportRecord> for Record {
    type Error = anyhow::Error;

    fn try_from(line: ExportRecord) -> anyhow::Result<Self> {
        let bytes = |text: Option<String>| text.map(hex::decode).transpose().context("content is not hex");
        use domain::record::{HEADER_FORMAT_V1, HEADER_FORMAT_V2, SALT_BYTES};
        anyhow::ensure!(
            line.format == HEADER_FORMAT_V1 || line.format == HEADER_FORMAT_V2,
            "record format {} is not 1 or 2",
            line.format
        );
        let salt = bytes(line.salt)?
            .map(|salt| <[u8; SALT_BYTES]>::try_from(salt.as_slice()).context("a salt is not 32 bytes"))
            .transpose()?;
        anyhow::ensure!(line.erased_by.is_some() || line.facts.is_none(), "facts without an erasure");
        let erasure = match line.erased_by {
            Some(by) => Some(domain::record::Erasure { by, facts: bytes(line.facts)? }),
            None => None,
        };
        Ok(Record {
            format: line.format,
            salt,
            erasure,
            header: RecordHeader {
                sequence: line.sequence,
                event_id: EventId(line.event_id),
                stream_id: StreamId::new(line.stream_id)?,
                stream_revision: line.stream_revision,
                event_type: line.event_type,
                schema_version: line.schema_version,
                occurred_at: Timestamp::from_micros(line.occurred_at_us),
                recorded_at: Timestamp::from_micros(line.recorded_at_us),
                idempotency_key: line.idempotency_key,
            },
            metadata: bytes(line.metadata)?,
            metadata_hash: hash(&line.metadata_hash)?,
            payload: bytes(line.payload)?,
            payload_hash: hash(&line.payload_hash)?,
            leaf_hash: hash(&line.leaf_hash)?,
            chain_hash: hash(&line.chain_hash)?,
        })
    }
}

fn parse_line(line: &str) -> anyhow::Result<Record> {
    serde_json::from_str::<ExportRecord>(line)?.try_into()
}

/// Writes the history as JSON Lines: a header with the head, then one
/// record a line, in order, up to that head (a server may append on).
pub async fn export(source: &Source, out: &mut impl Write) -> anyhow::Result<u64> {
    let head = source.head().await?.unwrap_or_default();
    let header = ExportHeader {
        format: EXPORT_FORMAT.into(),
        head: ExportHead {
            sequence: head.sequence,
            chain_hash: head.chain_hash.to_hex(),
            recorded_at_us: head.recorded_at.as_micros(),
        },
    };
    serde_json::to_writer(&mut *out, &header)?;
    out.write_all(b"\n")?;
    let mut pages = source.pages(head.sequence);
    let mut written = 0;
    while let Some(page) = pages.recv().await {
        for record in page? {
            serde_json::to_writer(&mut *out, &ExportRecord::from(&record))?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    if let Some((last, now)) = source.past_the_head(head.sequence).await? {
        anyhow::bail!(
            "the log holds rows to sequence {last} that its head (sequence {now}) never acknowledged: \
             `replay verify` names them; the export stops at the head"
        );
    }
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use domain::record::{CHAIN_GENESIS, Erasure, HEADER_FORMAT_V1, HEADER_FORMAT_V2, Record, RecordHeader};
    use domain::{EventId, StreamId, Timestamp};

    use super::{ExportRecord, parse_line};

    fn header(sequence: u64) -> RecordHeader {
        RecordHeader {
            sequence,
            event_id: EventId(uuid::Uuid::from_u128(u128::from(sequence))),
            stream_id: StreamId::new("org/a".to_owned()).unwrap(),
            stream_revision: sequence,
            event_type: "UserAdded".into(),
            schema_version: 1,
            occurred_at: Timestamp::from_micros(10),
            recorded_at: Timestamp::from_micros(20),
            idempotency_key: None,
        }
    }

    fn line(record: &Record) -> String {
        serde_json::to_string(&ExportRecord::from(record)).unwrap()
    }

    #[test]
    fn an_export_line_re_imports_to_the_same_record() {
        let v1 = Record::seal(header(1), b"meta".to_vec(), b"payload".to_vec(), &CHAIN_GENESIS);
        let v2 = Record::seal_v2(header(2), b"meta".to_vec(), b"alice@example.com".to_vec(), [7; 32], &v1.chain_hash);
        let mut erased =
            Record::seal_v2(header(3), b"m".to_vec(), b"bob@example.com".to_vec(), [9; 32], &v2.chain_hash);
        (erased.metadata, erased.payload, erased.salt) = (None, None, None);
        erased.erasure = Some(Erasure { by: 4, facts: Some(b"facts".to_vec()) });
        let mut retired = erased.clone();
        retired.erasure = Some(Erasure { by: 5, facts: None });
        for record in [&v1, &v2, &erased, &retired] {
            assert_eq!(&parse_line(&line(record)).unwrap(), record);
        }
        assert_eq!((v1.format, v2.format), (HEADER_FORMAT_V1, HEADER_FORMAT_V2));
        let text = line(&erased);
        assert!(text.contains("\"erasedBy\":4") && text.contains(&hex::encode(b"facts")), "{text}");
        assert!(text.contains("\"salt\":null") && text.contains("\"format\":2"), "{text}");
    }

    #[test]
    fn a_version_1_export_line_reads_as_a_version_1_record_never_erased() {
        let v1 = Record::seal(header(1), b"meta".to_vec(), b"payload".to_vec(), &CHAIN_GENESIS);
        let mut json: serde_json::Value = serde_json::from_str(&line(&v1)).unwrap();
        for field in ["format", "salt", "erasedBy", "facts"] {
            json.as_object_mut().unwrap().remove(field);
        }
        assert_eq!(parse_line(&json.to_string()).unwrap(), v1);
        let mut bad = serde_json::from_str::<serde_json::Value>(&line(&v1)).unwrap();
        bad["format"] = 3.into();
        assert!(parse_line(&bad.to_string()).is_err(), "only formats 1 and 2");
        bad["format"] = 2.into();
        bad["facts"] = "00".into();
        assert!(parse_line(&bad.to_string()).is_err(), "facts without an erasure");
    }
}
