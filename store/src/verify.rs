//! [`EventLog::verify`]'s pipeline (issue 19): large pages of the log are
//! read in order, a page per core at once; on the thread that reads a page
//! each row is checked straight from the database's row buffer (content
//! hashes, salted for format 2, erasure sanction, leaf), allocating nothing
//! per record; what linking needs (sequence, recordedAt, leaf, chain hash,
//! erasure, and the stream id and event type for the visitor, copied into
//! one buffer per page) is kept in a compact page. The caller links the
//! pages' records onto the chain in order, the one sequential step.

use std::ops::RangeInclusive;

use domain::record::{ChainVerifier, Defect, HEADER_FORMAT_V2, Hash, HeaderRef, RecordRef, SALT_BYTES, VerifyFailure};
use domain::{StreamId, Timestamp};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::row::format_column;
use crate::{
    EventLog, Reader, StoreError, VERIFY_PAGES_AHEAD, VERIFY_PAGES_IN_FLIGHT_MAX, VerifiedRecord, VerifyReport,
    hash_column, postgres, unsigned,
};

/// Records `verify` reads per query: large sequential pages, few round
/// trips. A page in flight holds at most this many compact rows (about
/// 100 bytes each, plus their stream ids and event types).
pub const VERIFY_PAGE_RECORDS: usize = 8192;

/// One record's columns as a backend hands them to `verify`, borrowed from
/// its row ([`crate::row::VERIFY_COLUMNS`]'s order).
pub(crate) struct Columns<'a> {
    pub(crate) sequence: i64,
    pub(crate) event_id: [u8; 16],
    pub(crate) stream_id: &'a str,
    pub(crate) stream_revision: i64,
    pub(crate) event_type: &'a str,
    pub(crate) schema_version: i64,
    pub(crate) occurred_at_us: i64,
    pub(crate) recorded_at_us: i64,
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) metadata: Option<&'a [u8]>,
    pub(crate) metadata_hash: &'a [u8],
    pub(crate) payload: Option<&'a [u8]>,
    pub(crate) payload_hash: &'a [u8],
    pub(crate) leaf_hash: &'a [u8],
    pub(crate) chain_hash: &'a [u8],
    pub(crate) format: i64,
    pub(crate) salt: Option<&'a [u8]>,
    pub(crate) erased_by: Option<i64>,
}

/// What linking needs of one checked record; its stream id and event type
/// are in the page's text, ending at `stream_end` and `type_end`.
struct CheckedRow {
    sequence: u64,
    recorded_at: Timestamp,
    leaf_hash: Hash,
    chain_hash: Hash,
    erased_by: Option<u64>,
    stream_end: u32,
    type_end: u32,
}

/// A page of records whose leaves were checked: the first leaf failure,
/// by index in the page, if any.
#[derive(Default)]
pub(crate) struct CheckedPage {
    rows: Vec<CheckedRow>,
    /// The stream ids and event types of `rows`, one after the other.
    text: String,
    leaf_failure: Option<(usize, VerifyFailure)>,
}

impl CheckedPage {
    pub(crate) fn with_capacity(records: usize) -> Self {
        Self { rows: Vec::with_capacity(records), text: String::with_capacity(records * 64), leaf_failure: None }
    }

    /// Decodes and checks one row, keeping what linking needs: a column
    /// that cannot be decoded is [`StoreError::Corrupt`] as when reading
    /// records; a leaf that does not verify is the page's leaf failure
    /// (rows after it are kept but not hashed: they are never linked).
    pub(crate) fn push(&mut self, columns: Columns<'_>) -> Result<(), StoreError> {
        let sequence = unsigned(0, "sequence", columns.sequence)?;
        let corrupt = |what: String| StoreError::Corrupt { sequence, what };
        if !StreamId::is_valid(columns.stream_id) {
            return Err(corrupt(domain::ids::StreamIdError(columns.stream_id.to_owned()).to_string()));
        }
        let header = HeaderRef {
            sequence,
            event_id: &columns.event_id,
            stream_id: columns.stream_id,
            stream_revision: unsigned(sequence, "stream revision", columns.stream_revision)?,
            event_type: columns.event_type,
            schema_version: u32::try_from(columns.schema_version)
                .map_err(|_| corrupt("schema version is not a u32".into()))?,
            occurred_at: Timestamp::from_micros(columns.occurred_at_us),
            recorded_at: Timestamp::from_micros(columns.recorded_at_us),
            idempotency_key: columns.idempotency_key,
        };
        let salt = salt_column(sequence, columns.salt)?;
        let erased_by = columns.erased_by.map(|by| unsigned(sequence, "erased by", by)).transpose()?;
        let record = RecordRef {
            header,
            format: format_column(sequence, columns.format)?,
            salt,
            metadata: columns.metadata,
            metadata_hash: &hash_column(sequence, "metadata hash", columns.metadata_hash)?,
            payload: columns.payload,
            payload_hash: &hash_column(sequence, "payload hash", columns.payload_hash)?,
            leaf_hash: &hash_column(sequence, "leaf hash", columns.leaf_hash)?,
        };
        let chain_hash = hash_column(sequence, "chain hash", columns.chain_hash)?;
        if self.leaf_failure.is_none()
            && let Err(defect) = check_erasure(&record, erased_by).and_then(|()| record.check_leaf())
        {
            self.leaf_failure = Some((self.rows.len(), VerifyFailure { sequence, defect }));
        }
        self.text.push_str(columns.stream_id);
        let stream_end = text_offset(&self.text);
        self.text.push_str(columns.event_type);
        let leaf_hash = *record.leaf_hash;
        let recorded_at = header.recorded_at;
        let type_end = text_offset(&self.text);
        self.rows.push(CheckedRow { sequence, recorded_at, leaf_hash, chain_hash, erased_by, stream_end, type_end });
        Ok(())
    }

    fn last_sequence(&self) -> Option<u64> {
        self.rows.last().map(|row| row.sequence)
    }
}

/// A page's text is bounded far below 4 GiB ([`VERIFY_PAGE_RECORDS`] rows
/// of bounded stream ids and event types).
fn text_offset(text: &str) -> u32 {
    u32::try_from(text.len()).expect("a page's text stays far below 4 GiB")
}

/// A stored salt, borrowed: absent, or exactly [`SALT_BYTES`] bytes.
fn salt_column(sequence: u64, salt: Option<&[u8]>) -> Result<Option<&[u8; SALT_BYTES]>, StoreError> {
    salt.map(|bytes| {
        <&[u8; SALT_BYTES]>::try_from(bytes)
            .map_err(|_| StoreError::Corrupt { sequence, what: format!("the salt is not {SALT_BYTES} bytes") })
    })
    .transpose()
}

/// Whether a record's erasable part is erased only as sanctioned: a NULL
/// metadata or payload (or a version 2 record's NULL salt) needs an
/// erasure made by a later record. Whether that record sanctions it is
/// `replay verify`'s check (`domain::privacy::sanctions`).
fn check_erasure(record: &RecordRef<'_>, erased_by: Option<u64>) -> Result<(), Defect> {
    let erased = record.metadata.is_none()
        || record.payload.is_none()
        || (record.format == HEADER_FORMAT_V2 && record.salt.is_none());
    let sanctioned = match erased_by {
        Some(by) => by > record.header.sequence,
        None => !erased,
    };
    if sanctioned { Ok(()) } else { Err(Defect::UnsanctionedErasure) }
}

/// The queue of pages [`EventLog::verify`] reads ahead.
type PageSender = mpsc::Sender<Result<CheckedPage, StoreError>>;
/// The receiving end of a [`PageSender`].
type PageReceiver = mpsc::Receiver<Result<CheckedPage, StoreError>>;

impl EventLog {
    /// [`EventLog::verify_with`]: pages are read and checked ahead while
    /// the records of the pages before are linked.
    pub(crate) async fn verify_pages(
        &self,
        range: RangeInclusive<u64>,
        visit: &mut (impl FnMut(VerifiedRecord<'_>) + Send),
    ) -> Result<VerifyReport, StoreError> {
        let head = self.head().await?;
        let start = (*range.start()).max(1);
        // Read past the head when the range reaches it: rows beyond the head
        // (inserted behind the writer's back) must be seen to be caught.
        let end = (*range.end()).min(i64::MAX as u64);
        let mut verifier = self.verifier_from(start).await?;
        let (producer, mut pages) = self.read_pages_ahead(start, end, head.sequence);
        let mut checked = 0;
        while let Some(page) = pages.recv().await {
            if let Some(failure) = link_page(&mut verifier, page?, &mut checked, visit) {
                producer.abort();
                return Ok(VerifyReport { checked, failure: Some(failure) });
            }
        }
        let failure = if *range.end() >= head.sequence {
            verifier.check_head(head.sequence, &head.chain_hash).err()
        } else {
            missing_before(&verifier, end)
        };
        Ok(VerifyReport { checked, failure })
    }

    /// A chain verifier starting at `start`: from the genesis at 1, else
    /// from the stored chain hash of the record before it.
    async fn verifier_from(&self, start: u64) -> Result<ChainVerifier, StoreError> {
        if start == 1 {
            return Ok(ChainVerifier::from_genesis());
        }
        Ok(match self.read_page(start - 1..=start - 1, 1).await?.pop() {
            Some(before) => ChainVerifier::resume(start, before.chain_hash, Some(before.header.recorded_at)),
            None => ChainVerifier::resume(start, crate::CHAIN_GENESIS, None),
        })
    }

    /// The producer: a task reads the pages of `start..=end` and checks
    /// their leaves, a page per core at once, and sends them in order into
    /// a small bounded queue, which it closes after the last page (or the
    /// first error).
    fn read_pages_ahead(&self, start: u64, end: u64, head: u64) -> (tokio::task::JoinHandle<()>, PageReceiver) {
        let (pages_tx, pages) = mpsc::channel(VERIFY_PAGES_AHEAD);
        let log = self.clone();
        let producer = tokio::spawn(async move {
            let bounded_end = end.min(head);
            if log.send_pages_to_head(start, bounded_end, &pages_tx).await {
                log.send_pages_past_head(bounded_end.max(start - 1) + 1, end, &pages_tx).await;
            }
        });
        (producer, pages)
    }

    /// Up to the head, page ranges are computed, not chained, so they are
    /// read and their leaves checked in parallel, a page per core, and
    /// handed on in order (a missing record just makes a short page, which
    /// linking reports). False when the receiver is gone.
    async fn send_pages_to_head(&self, start: u64, bounded_end: u64, pages_tx: &PageSender) -> bool {
        let page = VERIFY_PAGE_RECORDS as u64;
        let ranges = (start..=bounded_end)
            .step_by(VERIFY_PAGE_RECORDS)
            .map(move |from| from..=(from + page - 1).min(bounded_end));
        let in_flight = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(VERIFY_PAGES_AHEAD, VERIFY_PAGES_IN_FLIGHT_MAX);
        let mut reads = std::pin::pin!(
            futures::stream::iter(ranges).map(|range| self.reader.read_checked_page(range)).buffered(in_flight)
        );
        while let Some(page) = reads.next().await {
            if pages_tx.send(page).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Past the head, pages are read in turn until one comes back empty
    /// (or fails, or the receiver is gone).
    async fn send_pages_past_head(&self, mut from: u64, end: u64, pages_tx: &PageSender) {
        while from <= end {
            let page = self.reader.read_checked_page(from..=end).await;
            from = match &page {
                Ok(page) => page.last_sequence().map_or(u64::MAX, |last| last.saturating_add(1)),
                Err(_) => u64::MAX,
            };
            let empty = matches!(&page, Ok(page) if page.rows.is_empty());
            if empty || pages_tx.send(page).await.is_err() {
                return;
            }
        }
    }
}

impl Reader {
    /// Up to [`VERIFY_PAGE_RECORDS`] records of `range`, read and their
    /// leaves checked off the async threads: the parallel stage of
    /// `verify`'s pipeline. A range beyond 2^63 is empty.
    async fn read_checked_page(&self, range: RangeInclusive<u64>) -> Result<CheckedPage, StoreError> {
        if range.is_empty() || *range.start() > i64::MAX as u64 {
            return Ok(CheckedPage::default());
        }
        match self {
            Reader::Sqlite(readers) => readers.read_checked_page(range, VERIFY_PAGE_RECORDS).await,
            Reader::Postgres(pool) => postgres::read_checked_page(pool, range, VERIFY_PAGE_RECORDS).await,
        }
    }
}

/// Links one page's records, whose leaves were checked, onto `verifier`:
/// the sequential stage of `verify`'s pipeline, counting each record that
/// holds and handing it to `visit`; the first failure, if any.
fn link_page(
    verifier: &mut ChainVerifier,
    page: CheckedPage,
    checked: &mut u64,
    visit: &mut impl FnMut(VerifiedRecord<'_>),
) -> Option<VerifyFailure> {
    let CheckedPage { rows, text, leaf_failure } = page;
    let mut text_start = 0;
    for (index, row) in rows.iter().enumerate() {
        let failure = match leaf_failure {
            Some((at, ref failure)) if at == index => Some(failure.clone()),
            _ => verifier.link_parts(row.sequence, row.recorded_at, &row.leaf_hash, &row.chain_hash).err(),
        };
        if failure.is_some() {
            return failure;
        }
        let (stream_end, type_end) = (row.stream_end as usize, row.type_end as usize);
        visit(VerifiedRecord {
            sequence: row.sequence,
            stream_id: &text[text_start..stream_end],
            event_type: &text[stream_end..type_end],
            leaf_hash: &row.leaf_hash,
            chain_hash: &row.chain_hash,
            erased_by: row.erased_by,
        });
        text_start = type_end;
        *checked += 1;
    }
    None
}

/// When a range that stops short of the head ended early, a record in it
/// is missing: the gap at the next expected sequence.
fn missing_before(verifier: &ChainVerifier, end: u64) -> Option<VerifyFailure> {
    (verifier.next_sequence() <= end).then(|| VerifyFailure {
        sequence: verifier.next_sequence(),
        defect: Defect::SequenceGap { expected: verifier.next_sequence(), found: 0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::EventId;
    use domain::record::{CHAIN_GENESIS, Record, RecordHeader};

    fn chain(n: u64) -> Vec<Record> {
        let mut previous = CHAIN_GENESIS;
        (1..=n)
            .map(|sequence| {
                let header = RecordHeader {
                    sequence,
                    event_id: EventId(uuid::Uuid::from_u128(u128::from(sequence))),
                    stream_id: StreamId::new(format!("org/s{}", "x".repeat(sequence as usize))).unwrap(),
                    stream_revision: 1,
                    event_type: format!("Type{sequence}"),
                    schema_version: 1,
                    occurred_at: Timestamp::from_micros(10),
                    recorded_at: Timestamp::from_micros(sequence as i64),
                    idempotency_key: (sequence % 2 == 0).then(|| format!("key-{sequence}")),
                };
                let record = Record::seal_v2(header, vec![1; 9], vec![2; 300], [sequence as u8; 32], &previous);
                previous = record.chain_hash;
                record
            })
            .collect()
    }

    fn columns(record: &Record) -> Columns<'_> {
        let header = &record.header;
        Columns {
            sequence: header.sequence as i64,
            event_id: *header.event_id.as_bytes(),
            stream_id: header.stream_id.as_str(),
            stream_revision: header.stream_revision as i64,
            event_type: &header.event_type,
            schema_version: i64::from(header.schema_version),
            occurred_at_us: header.occurred_at.as_micros(),
            recorded_at_us: header.recorded_at.as_micros(),
            idempotency_key: header.idempotency_key.as_deref(),
            metadata: record.metadata.as_deref(),
            metadata_hash: &record.metadata_hash.0,
            payload: record.payload.as_deref(),
            payload_hash: &record.payload_hash.0,
            leaf_hash: &record.leaf_hash.0,
            chain_hash: &record.chain_hash.0,
            format: i64::from(record.format),
            salt: record.salt.as_ref().map(|salt| &salt[..]),
            erased_by: record.erasure.as_ref().map(|erasure| erasure.by as i64),
        }
    }

    fn page(records: &[Record]) -> CheckedPage {
        let mut page = CheckedPage::with_capacity(records.len());
        for record in records {
            page.push(columns(record)).unwrap();
        }
        page
    }

    /// The visitor sees each record's own stream id and event type (kept in
    /// one buffer per page), leaf and chain hash, in order.
    #[test]
    fn a_checked_page_links_and_hands_on_each_record_as_stored() {
        let records = chain(5);
        let mut verifier = ChainVerifier::from_genesis();
        let mut seen = Vec::new();
        let mut checked = 0;
        let visit = &mut |r: VerifiedRecord<'_>| {
            seen.push((r.sequence, r.stream_id.to_owned(), r.event_type.to_owned(), *r.leaf_hash, *r.chain_hash));
        };
        assert_eq!(link_page(&mut verifier, page(&records), &mut checked, visit), None);
        let expected: Vec<_> = records
            .iter()
            .map(|r| {
                let h = &r.header;
                (h.sequence, h.stream_id.as_str().to_owned(), h.event_type.clone(), r.leaf_hash, r.chain_hash)
            })
            .collect();
        assert_eq!((checked, seen), (5, expected));
        assert_eq!(verifier.chain(), records[4].chain_hash);
    }

    /// A row's defects are named as `Record::check_leaf` and the erasure
    /// check name them, at the record's sequence; a bad column is corrupt.
    #[test]
    fn a_checked_page_names_the_first_defect_as_the_owned_checks_do() {
        let mut records = chain(4);
        records[1].payload.as_mut().unwrap()[0] ^= 1;
        records[2].metadata = None;
        let mut verifier = ChainVerifier::from_genesis();
        let mut checked = 0;
        let failure = link_page(&mut verifier, page(&records), &mut checked, &mut |_| {});
        assert_eq!((checked, failure), (1, Some(VerifyFailure { sequence: 2, defect: Defect::PayloadHash })));
        let failure = page(&records[2..]).leaf_failure;
        assert_eq!(failure, Some((0, VerifyFailure { sequence: 3, defect: Defect::UnsanctionedErasure })));
        records[3].header.stream_id = StreamId::new("org/ok").unwrap();
        let mut bad = columns(&records[3]);
        bad.stream_id = "no slash";
        let error = CheckedPage::default().push(bad).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { sequence: 4, .. }), "{error:?}");
    }
}
