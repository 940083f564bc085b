//! Sanctioned erasure (issue 16): a record whose payload or metadata is
//! gone must name, in its erasure, the privacy event that sanctioned it, a
//! later record on `privacy/log` whose rule covers it
//! (`domain::privacy::sanctions`): a `SubjectErased` listing its sequence
//! with exactly the facts kept beside it, or a `RetentionApplied` retiring
//! it, which keeps nothing. Any other NULL is an unsanctioned erasure.
//!
//! The sanctioning event is later than the record it erased, so the walk
//! has not met it yet: it is read by its sequence (one read) and kept,
//! decoded, in a small cache, since consecutive erased records share one.
//! Nothing else is kept: no set of erased sequences.

use std::collections::VecDeque;
use std::sync::Arc;

use domain::event::LedgerEvent;
use domain::privacy::{self, PrivacyEvent};
use domain::record::{Erasure, Record};

use crate::source::Source;
use crate::walk::Failure;

/// Decoded privacy events kept between records; a `SubjectErased` lists at
/// most `ERASED_RECORDS_PER_EVENT_MAX` records, so this bounds the memory.
pub const SANCTIONS_CACHED: usize = 16;

/// The record at an erasure's `by`: a privacy event, or why it is none.
type Sanction = Result<PrivacyEvent, String>;

/// The cache of sanctioning events, most recently read last.
#[derive(Default)]
pub struct Sanctions {
    cache: VecDeque<(u64, Arc<Sanction>)>,
}

fn unsanctioned(sequence: u64, why: impl std::fmt::Display) -> Failure {
    Failure { sequence: Some(sequence), what: format!("unsanctioned erasure at sequence {sequence}: {why}") }
}

impl Sanctions {
    /// The first record of `page` whose erased payload or metadata no
    /// privacy event sanctions, by index.
    pub async fn judge(&mut self, source: &Source, page: &[Record]) -> anyhow::Result<Option<(usize, Failure)>> {
        for (index, record) in page.iter().enumerate() {
            let sequence = record.header.sequence;
            let Some(erasure) = &record.erasure else {
                if record.payload.is_none() || record.metadata.is_none() {
                    let what = if record.payload.is_none() { "its payload" } else { "its metadata" };
                    return Ok(Some((
                        index,
                        unsanctioned(sequence, format!("{what} is NULL and no erasure names it")),
                    )));
                }
                continue;
            };
            if erasure.by <= sequence {
                let why = format!("its erasure names sequence {}, not a later record", erasure.by);
                return Ok(Some((index, unsanctioned(sequence, why))));
            }
            let sanction = self.get(source, erasure.by).await?;
            if let Err(why) = covers(sanction.as_ref(), record, erasure) {
                return Ok(Some((index, unsanctioned(sequence, why))));
            }
        }
        Ok(None)
    }

    /// The privacy event at `by`, from the cache or read once.
    async fn get(&mut self, source: &Source, by: u64) -> anyhow::Result<Arc<Sanction>> {
        if let Some((_, found)) = self.cache.iter().find(|(at, _)| *at == by) {
            return Ok(found.clone());
        }
        let sanction = Arc::new(read(source, by).await?);
        if self.cache.len() >= SANCTIONS_CACHED {
            self.cache.pop_front();
        }
        self.cache.push_back((by, sanction.clone()));
        Ok(sanction)
    }
}

/// Whether the privacy event sanctions this record's erasure as kept.
fn covers(sanction: &Sanction, record: &Record, erasure: &Erasure) -> Result<(), String> {
    let by = erasure.by;
    let event = sanction.as_ref().map_err(|why| format!("the record at sequence {by} {why}"))?;
    if !privacy::sanctions(event, &record.header) {
        return Err(format!("the privacy event at sequence {by} does not cover it"));
    }
    match event {
        PrivacyEvent::SubjectErased(erased) => {
            let listed = erased
                .records
                .binary_search_by_key(&record.header.sequence, |r| r.sequence)
                .map(|i| &erased.records[i])
                .map_err(|_| format!("the SubjectErased at sequence {by} does not list it"))?;
            if listed.facts != erasure.facts {
                return Err(format!(
                    "the facts kept beside it are not the ones the SubjectErased at sequence {by} lists"
                ));
            }
        }
        PrivacyEvent::RetentionApplied(_) if erasure.facts.is_some() => {
            return Err(format!("the RetentionApplied at sequence {by} keeps nothing, yet facts are kept beside it"));
        }
        PrivacyEvent::RetentionApplied(_) => {}
        PrivacyEvent::LicenseKeysArchived(_) => {
            return Err(format!("the LicenseKeysArchived at sequence {by} erases nothing"));
        }
    }
    Ok(())
}

/// The record at `sequence` decoded as a privacy event, or why it is none.
async fn read(source: &Source, sequence: u64) -> anyhow::Result<Sanction> {
    let Some(record) = fetch(source, sequence).await? else { return Ok(Err("is missing".into())) };
    if let Err(defect) = record.check_leaf() {
        return Ok(Err(format!("does not verify: {defect}")));
    }
    let Some(payload) = record.payload.as_deref() else { return Ok(Err("has no payload".into())) };
    Ok(match LedgerEvent::decode(&record.header, payload) {
        Ok(Some(LedgerEvent::Privacy(event))) if record.header.stream_id == privacy::privacy_stream() => Ok(event),
        Ok(_) => Err(format!("is a {} on {}, not a privacy event", record.header.event_type, record.header.stream_id)),
        Err(error) => Err(format!("does not decode: {error}")),
    })
}

/// One record by its sequence: one read from a log; from an export file,
/// read through the file up to it.
async fn fetch(source: &Source, sequence: u64) -> anyhow::Result<Option<Record>> {
    match source {
        Source::Log { log, .. } => Ok(log.read_page(sequence..=sequence, 1).await?.into_iter().next()),
        Source::File { .. } => {
            let mut pages = source.pages(u64::MAX);
            while let Some(page) = pages.recv().await {
                let page = page?;
                if let Some(record) = page.iter().find(|r| r.header.sequence == sequence) {
                    return Ok(Some(record.clone()));
                }
                if page.last().is_some_and(|r| r.header.sequence > sequence) {
                    break;
                }
            }
            Ok(None)
        }
    }
}
