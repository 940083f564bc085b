//! The stored form of a record, shared by both backends.

use domain::record::{Record, RecordHeader};
use domain::{EventId, StreamId, Timestamp};

use crate::{StoreError, hash_column, unsigned};

/// The columns every record query selects, in [`StoredRecord`]'s order.
pub(crate) const RECORD_COLUMNS: &str = "sequence, event_id, stream_id, stream_revision, event_type, schema_version, \
     occurred_at_us, recorded_at_us, idempotency_key, metadata, metadata_hash, payload, payload_hash, leaf_hash, chain_hash";

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
}

impl TryFrom<StoredRecord> for Record {
    type Error = StoreError;

    fn try_from(row: StoredRecord) -> Result<Self, StoreError> {
        let sequence = unsigned(0, "sequence", row.sequence)?;
        let corrupt = |what: String| StoreError::Corrupt { sequence, what };
        Ok(Record {
            // Issue 16 stub: the store fills these from its columns.
            format: domain::record::HEADER_FORMAT_V1,
            salt: None,
            erasure: None,
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

pub(crate) fn records(rows: Vec<StoredRecord>) -> Result<Vec<Record>, StoreError> {
    rows.into_iter().map(Record::try_from).collect()
}
