//! The stored form of a record, shared by both backends.

use domain::record::{Erasure, HEADER_FORMAT_V1, HEADER_FORMAT_V2, Record, RecordHeader, SALT_BYTES};
use domain::{EventId, StreamId, Timestamp};

use crate::{StoreError, hash_column, unsigned};

/// The columns of `events` an append writes, in [`StoredRecord`]'s order.
pub(crate) const INSERT_COLUMNS: &str = "sequence, event_id, stream_id, stream_revision, event_type, schema_version, \
     occurred_at_us, recorded_at_us, idempotency_key, metadata, metadata_hash, payload, payload_hash, leaf_hash, \
     chain_hash, format, salt";

/// The columns every record query selects from [`RECORD_FROM`], in
/// [`StoredRecord`]'s order: the record's, then its erasure's (NULL when
/// it was not erased).
pub(crate) const RECORD_COLUMNS: &str = "e.sequence, e.event_id, e.stream_id, e.stream_revision, e.event_type, \
     e.schema_version, e.occurred_at_us, e.recorded_at_us, e.idempotency_key, e.metadata, e.metadata_hash, e.payload, \
     e.payload_hash, e.leaf_hash, e.chain_hash, e.format, e.salt, x.erased_by, x.facts";

/// What every record query selects from: `events` as `e`, with each
/// record's erasure, if any, as `x`.
pub(crate) const RECORD_FROM: &str = "events e LEFT JOIN erasures x ON x.sequence = e.sequence";

/// One row of `events` as the databases return it.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredRecord {
    pub(crate) sequence: i64,
    pub(crate) event_id: uuid::Uuid,
    pub(crate) stream_id: String,
    pub(crate) stream_revision: i64,
    pub(crate) event_type: String,
    pub(crate) schema_version: i64,
    pub(crate) occurred_at_us: i64,
    pub(crate) recorded_at_us: i64,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) metadata: Option<Vec<u8>>,
    pub(crate) metadata_hash: Vec<u8>,
    pub(crate) payload: Option<Vec<u8>>,
    pub(crate) payload_hash: Vec<u8>,
    pub(crate) leaf_hash: Vec<u8>,
    pub(crate) chain_hash: Vec<u8>,
    pub(crate) format: i32,
    pub(crate) salt: Option<Vec<u8>>,
    pub(crate) erased_by: Option<i64>,
    pub(crate) facts: Option<Vec<u8>>,
}

impl TryFrom<StoredRecord> for Record {
    type Error = StoreError;

    fn try_from(row: StoredRecord) -> Result<Self, StoreError> {
        let sequence = unsigned(0, "sequence", row.sequence)?;
        let corrupt = |what: String| StoreError::Corrupt { sequence, what };
        Ok(Record {
            format: format_column(sequence, i64::from(row.format))?,
            salt: salt_column(sequence, row.salt)?,
            erasure: erasure_columns(sequence, row.erased_by, row.facts)?,
            header: RecordHeader {
                sequence,
                event_id: EventId(row.event_id),
                stream_id: StreamId::new(row.stream_id).map_err(|e| corrupt(e.to_string()))?,
                stream_revision: unsigned(sequence, "stream revision", row.stream_revision)?,
                event_type: row.event_type,
                schema_version: u32::try_from(row.schema_version)
                    .map_err(|_| corrupt("schema version is not a u32".into()))?,
                occurred_at: Timestamp::from_micros(row.occurred_at_us),
                recorded_at: Timestamp::from_micros(row.recorded_at_us),
                idempotency_key: row.idempotency_key,
            },
            metadata: row.metadata,
            metadata_hash: hash_column(sequence, "metadata hash", &row.metadata_hash)?,
            payload: row.payload,
            payload_hash: hash_column(sequence, "payload hash", &row.payload_hash)?,
            leaf_hash: hash_column(sequence, "leaf hash", &row.leaf_hash)?,
            chain_hash: hash_column(sequence, "chain hash", &row.chain_hash)?,
        })
    }
}

/// The stored record format: 1 or 2.
pub(crate) fn format_column(sequence: u64, format: i64) -> Result<u8, StoreError> {
    match u8::try_from(format) {
        Ok(format @ (HEADER_FORMAT_V1 | HEADER_FORMAT_V2)) => Ok(format),
        _ => Err(StoreError::Corrupt { sequence, what: format!("record format {format} is not 1 or 2") }),
    }
}

/// A stored salt: absent, or exactly [`SALT_BYTES`] bytes.
pub(crate) fn salt_column(sequence: u64, salt: Option<Vec<u8>>) -> Result<Option<[u8; SALT_BYTES]>, StoreError> {
    salt.map(|bytes| {
        <[u8; SALT_BYTES]>::try_from(bytes.as_slice())
            .map_err(|_| StoreError::Corrupt { sequence, what: format!("the salt is not {SALT_BYTES} bytes") })
    })
    .transpose()
}

/// A record's erasure from the `erasures` columns of its row.
pub(crate) fn erasure_columns(
    sequence: u64,
    erased_by: Option<i64>,
    facts: Option<Vec<u8>>,
) -> Result<Option<Erasure>, StoreError> {
    erased_by.map(|by| Ok(Erasure { by: unsigned(sequence, "erased by", by)?, facts })).transpose()
}

pub(crate) fn records(rows: Vec<StoredRecord>) -> Result<Vec<Record>, StoreError> {
    rows.into_iter().map(Record::try_from).collect()
}

/// The columns `verify` selects from [`RECORD_FROM`], in
/// [`crate::verify::Columns`]' order: [`RECORD_COLUMNS`] without the
/// erasure's facts, which no check reads.
pub(crate) const VERIFY_COLUMNS: &str = "e.sequence, e.event_id, e.stream_id, e.stream_revision, e.event_type, \
     e.schema_version, e.occurred_at_us, e.recorded_at_us, e.idempotency_key, e.metadata, e.metadata_hash, e.payload, \
     e.payload_hash, e.leaf_hash, e.chain_hash, e.format, e.salt, x.erased_by";

/// The query `verify` reads a page with: [`VERIFY_COLUMNS`] of the records
/// from sequence `$1`/`?1` to `$2`/`?2`, at most `$3`/`?3`, in order.
pub(crate) fn verify_query(placeholder: char) -> String {
    format!(
        "SELECT {VERIFY_COLUMNS} FROM {RECORD_FROM} WHERE e.sequence >= {placeholder}1 AND e.sequence <= \
         {placeholder}2 ORDER BY e.sequence LIMIT {placeholder}3"
    )
}
