//! The retention job (issue 16): the plan's periods as configuration
//! ([`RetentionSettings`], on `ledger serve` and the CLI).
//!
//! A run, at `now`:
//! - **usage**: `UsageReported` records of days before the first of the
//!   month `usage_years` before `now` (whole months, so no invoiced month
//!   is left half retired), that occurred before `now - usage_years`, are
//!   retired: the run appends one `RetentionApplied { usage_before,
//!   up_to_sequence, … }` on `privacy/log`, then `EventLog::erase`s them
//!   with no facts kept (sanctioned by it: `privacy::sanctions`), then
//!   the read models drop the same daily rows (`ReadModelDb::retire_usage`).
//!   Invoices and their lines stay (they are the monthly totals the law
//!   and the revenue figures need); a month whose usage was retired is not
//!   adjusted for late usage any more (`domain::billing`), and `replay
//!   verify` checks its invoice against its recorded inputs.
//! - **organizations** whose subscriptions all ended
//!   `anonymize_years_after_end` years ago are erased
//!   (`privacy::erase`, `Subject::Organization`, `ErasureReason::Retention`).
//! - **license keys** whose license ended (its subscription ended, it was
//!   revoked, or superseded and its window closed) more than
//!   `key_archive_years_after_expiry` before `now` and not archived yet are
//!   archived: one `LicenseKeysArchived` on `privacy/log` lists them (after
//!   the run's `RetentionApplied`, which counts them), at most
//!   [`KEYS_ARCHIVED_PER_RUN_MAX`] a run, found by reading at most
//!   [`LICENSES_SCANNED_PER_RUN_MAX`] unarchived licenses of the read
//!   models. An archived license is left out of its organization's license
//!   listings; its key validates as before (expired).
//!
//! A run that changes something appends one `RetentionApplied` (and the
//! next run resumes after its `up_to_sequence`); an idle run (nothing
//! retired, nobody anonymized) appends nothing, so a ledger without old
//! data does not grow by a record a day, and says what it did in the
//! server's log. A run that read up to its limit without retiring
//! anything records how far it read all the same. Scanning stops at the
//! first usage report not yet due, so none is ever skipped; a run retires
//! at most [`RETIRED_PER_RUN_MAX`] records and reads at most
//! [`RECORDS_SCANNED_PER_RUN_MAX`], and the next run continues. A run that
//! died between its `RetentionApplied` and the erasure is completed by the
//! next (its range is read again and what it sanctions erased, by it).
//! One run at a time (the log's `retention` lock). The server's scheduler
//! runs it once a day ([`Daily`]); `ledger privacy retention [--dry-run]`
//! once.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use chrono::{Datelike, Months, NaiveDate};
use domain::event::LedgerEvent;
use domain::privacy::{self, ErasureReason, LicenseKeysArchived, PrivacyEvent, RetentionApplied, Subject};
use domain::subscription::Subscription;
use domain::{LicenseId, Metadata, OrganizationId, Timestamp};
use projections::models::{licenses, subscriptions};
use serde::Serialize;
use store::{Command, ErasedRow, EventLog, ExpectedRevision, NewEvent};

pub use domain::subscription::RetentionSettings;

use crate::command::{Context, new_event_id};
use crate::stripe::Stripe;
use crate::{Caller, Error, Ledger};

/// The log's lock a run holds (`EventLog::try_lock`).
pub const LOCK: &str = "retention";
/// How long a run waits for another to end before it is refused.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Usage records one run retires at most; the next run continues.
pub const RETIRED_PER_RUN_MAX: usize = 10 * privacy::ERASED_RECORDS_PER_EVENT_MAX;
/// Records one run reads looking for due usage, at most.
pub const RECORDS_SCANNED_PER_RUN_MAX: u64 = 2_000_000;
/// Organizations one run anonymizes at most (each is a scan of the log).
pub const ANONYMIZED_PER_RUN_MAX: usize = 50;
/// Subscriptions one run reads looking for ended organizations, at most.
const SUBSCRIPTIONS_SCANNED_MAX: usize = 10_000_000;
/// License keys one run archives at most (one `LicenseKeysArchived`).
pub const KEYS_ARCHIVED_PER_RUN_MAX: usize = privacy::ARCHIVED_LICENSES_PER_EVENT_MAX;
/// Unarchived licenses one run reads looking for keys to archive, at most.
pub const LICENSES_SCANNED_PER_RUN_MAX: usize = 1_000_000;
/// Records of the log read at a time.
const SCAN_PAGE_RECORDS: usize = store::READ_PAGE_RECORDS;
/// Records of `privacy/log` read at a time.
const PRIVACY_PAGE_RECORDS: usize = 256;
/// How often the scheduler runs the job, by the business clock.
pub const RUN_EVERY_MICROS: i64 = 24 * 60 * 60 * 1_000_000;
/// How long the scheduler waits after a failed run before trying again.
pub const RETRY_AFTER_MICROS: i64 = 60 * 60 * 1_000_000;

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionOutcome {
    pub dry_run: bool,
    /// The `RetentionApplied` appended (none when dry).
    pub sequence: Option<u64>,
    pub usage_before: String,
    pub up_to_sequence: u64,
    pub usage_records: u64,
    /// Records of an earlier run that died before erasing them, erased now.
    pub completed_records: u64,
    pub read_model_rows_retired: u64,
    pub keys_archived: u64,
    pub organizations_anonymized: Vec<OrganizationId>,
    pub subscriptions_anonymized: u64,
}

/// Runs the job once at `now` (see the module). `stripe` redacts an
/// anonymized organization's Stripe customer when it has a client.
pub async fn run(
    ledger: &Ledger,
    stripe: &Stripe,
    now: Timestamp,
    settings: RetentionSettings,
    dry_run: bool,
) -> Result<RetentionOutcome, Error> {
    settings.check().map_err(Error::Validation)?;
    let _lock = lock(&ledger.log).await?;
    let past = past_runs(&ledger.log).await?;
    let completed_records = if dry_run { 0 } else { complete(&ledger.log, &past).await? };
    let cut = Cut::at(now, settings.usage_years)?;
    let from = past.last.as_ref().map_or(0, |(_, run)| run.up_to_sequence).saturating_add(1);
    let head = ledger.log.head().await?.sequence;
    let due = due_usage(&ledger.log, from..=head, &cut, RETIRED_PER_RUN_MAX).await?;
    let organizations = anonymizable(ledger, now, settings.anonymize_years_after_end, &past.anonymized).await?;
    let expired_before = years_before(now, settings.key_archive_years_after_expiry)?;
    let keys = archivable(ledger, now, expired_before).await?;
    let mut outcome = RetentionOutcome {
        dry_run,
        sequence: None,
        usage_before: cut.usage_before.to_rfc3339(),
        up_to_sequence: due.up_to,
        usage_records: due.rows.len() as u64,
        completed_records,
        read_model_rows_retired: 0,
        keys_archived: keys.len() as u64,
        subscriptions_anonymized: organizations.iter().map(|(_, n)| *n).sum(),
        organizations_anonymized: organizations.iter().map(|(id, _)| *id).collect(),
    };
    if dry_run {
        return Ok(outcome);
    }
    anonymize(ledger, stripe, &outcome.organizations_anonymized).await?;
    // An idle run leaves nothing in the log; one that read up to its
    // limit records how far it read, so the next goes on from there.
    if !due.rows.is_empty() || !organizations.is_empty() || due.capped || !keys.is_empty() {
        let event = RetentionApplied {
            at: now,
            usage_before: cut.usage_before,
            up_to_sequence: due.up_to,
            usage_records: outcome.usage_records,
            keys_archived: outcome.keys_archived,
            subscriptions_anonymized: outcome.subscriptions_anonymized,
        };
        let sequence = append(ledger, PrivacyEvent::RetentionApplied(event)).await?;
        erase(&ledger.log, sequence, &due.rows).await?;
        outcome.sequence = Some(sequence);
    }
    if !keys.is_empty() {
        append(
            ledger,
            PrivacyEvent::LicenseKeysArchived(LicenseKeysArchived { at: now, expired_before, licenses: keys }),
        )
        .await?;
    }
    if outcome.sequence.is_some() || completed_records > 0 {
        outcome.read_model_rows_retired = ledger.models.db.retire_usage(cut.before_day, due.up_to).await?;
    }
    Ok(outcome)
}

/// The run's lock, waiting up to [`LOCK_WAIT`] for a run that is ending
/// (a PostgreSQL session's lock goes a moment after its holder drops it).
async fn lock(log: &EventLog) -> Result<store::ExclusiveLock, Error> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        if let Some(lock) = log.try_lock(LOCK).await? {
            return Ok(lock);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::conflict("retention_running", "another retention run is under way"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Where a run cuts usage off: reports of days before `before_day` (a
/// first of a month) that occurred before `usage_before`.
struct Cut {
    usage_before: Timestamp,
    before_day: NaiveDate,
}

impl Cut {
    fn at(now: Timestamp, years: u32) -> Result<Self, Error> {
        let usage_before = years_before(now, years)?;
        let date = usage_before.to_datetime().date_naive();
        let before_day = date.with_day0(0).unwrap_or(date);
        Ok(Self { usage_before, before_day })
    }

    /// Whether a record is a usage report this cut retires; `None` for a
    /// record that is no usage report.
    fn due(&self, record: &domain::record::Record) -> Option<bool> {
        let header = &record.header;
        if header.event_type != "UsageReported" {
            return None;
        }
        let day = usage_day(header.stream_id.as_str());
        Some(header.occurred_at < self.usage_before && day.is_some_and(|day| day < self.before_day))
    }
}

/// The day a usage report's stream names (`usage/{subscription}:{day}`).
fn usage_day(stream: &str) -> Option<NaiveDate> {
    stream.strip_prefix("usage/")?.split_once(':')?.1.parse().ok()
}

fn years_before(now: Timestamp, years: u32) -> Result<Timestamp, Error> {
    let months = years.checked_mul(12).ok_or_else(|| Error::Validation("a retention period overflows".into()))?;
    now.to_datetime()
        .checked_sub_months(Months::new(months))
        .map(Timestamp::from_datetime)
        .ok_or_else(|| Error::Validation(format!("{years} years before {} is out of range", now.to_rfc3339())))
}

/// The usage records a scan found due, and the last sequence it covers.
struct Due {
    rows: Vec<ErasedRow>,
    up_to: u64,
    /// It stopped at [`RECORDS_SCANNED_PER_RUN_MAX`].
    capped: bool,
}

/// The usage reports in `range` that `cut` retires and that are not erased
/// yet, at most `max`, up to the first usage report not yet due (or the
/// first record recorded after the cut): every report at or before
/// `up_to` is then retired, none skipped for a later run.
async fn due_usage(log: &EventLog, range: RangeInclusive<u64>, cut: &Cut, max: usize) -> Result<Due, Error> {
    let (mut from, end) = range.into_inner();
    let mut due = Due { rows: Vec::new(), up_to: from.saturating_sub(1), capped: false };
    let mut scanned = 0u64;
    while from <= end && scanned < RECORDS_SCANNED_PER_RUN_MAX {
        let page = log.read_page(from..=end, SCAN_PAGE_RECORDS).await?;
        let Some(last) = page.last().map(|r| r.header.sequence) else { break };
        for record in &page {
            let retires = cut.due(record);
            if record.header.recorded_at >= cut.usage_before || retires == Some(false) {
                return Ok(due);
            }
            if retires == Some(true) && record.erasure.is_none() {
                due.rows.push(ErasedRow { sequence: record.header.sequence, facts: None });
            }
            due.up_to = record.header.sequence;
            scanned += 1;
            due.capped = scanned >= RECORDS_SCANNED_PER_RUN_MAX;
            if due.rows.len() >= max || due.capped {
                return Ok(due);
            }
        }
        from = last + 1;
    }
    Ok(due)
}

/// What earlier runs and erasures left on `privacy/log`: the last run
/// (its sequence and event), the `up_to_sequence` of the run before it,
/// and the organizations already anonymized by retention.
#[derive(Default)]
struct Past {
    last: Option<(u64, RetentionApplied)>,
    before_last_up_to: u64,
    anonymized: BTreeSet<OrganizationId>,
}

async fn past_runs(log: &EventLog) -> Result<Past, Error> {
    let stream = privacy::privacy_stream();
    let mut past = Past::default();
    let mut revision = 1;
    loop {
        let page = log.read_stream(&stream, revision, PRIVACY_PAGE_RECORDS).await?;
        let Some(last) = page.last() else { break };
        revision = last.header.stream_revision + 1;
        for record in &page {
            let Some(bytes) = record.event_bytes() else { continue };
            match LedgerEvent::decode(&record.header, bytes) {
                Ok(Some(LedgerEvent::Privacy(PrivacyEvent::RetentionApplied(run)))) => {
                    if let Some((_, before)) = past.last.replace((record.header.sequence, run)) {
                        past.before_last_up_to = before.up_to_sequence;
                    }
                }
                Ok(Some(LedgerEvent::Privacy(PrivacyEvent::SubjectErased(erased)))) => {
                    if let (Subject::Organization { organization_id }, ErasureReason::Retention) =
                        (&erased.subject, erased.reason)
                    {
                        past.anonymized.insert(*organization_id);
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    return Err(Error::Internal(format!("privacy/log at {}: {error}", record.header.sequence)));
                }
            }
        }
        if page.len() < PRIVACY_PAGE_RECORDS {
            break;
        }
    }
    Ok(past)
}

/// Erases what the last run sanctioned and did not erase (it died between
/// its event and the erasure): its range read again. Answers how many.
async fn complete(log: &EventLog, past: &Past) -> Result<u64, Error> {
    let Some((sequence, run)) = &past.last else { return Ok(0) };
    let usage_before = run.usage_before;
    let date = usage_before.to_datetime().date_naive();
    let cut = Cut { usage_before, before_day: date.with_day0(0).unwrap_or(date) };
    let range = past.before_last_up_to.saturating_add(1)..=run.up_to_sequence;
    let due = due_usage(log, range, &cut, usize::MAX).await?;
    // What the last run covered is what its event sanctions.
    let rows: Vec<ErasedRow> = due.rows.into_iter().filter(|row| row.sequence <= run.up_to_sequence).collect();
    erase(log, *sequence, &rows).await
}

/// `EventLog::erase` in chunks of what one call takes.
async fn erase(log: &EventLog, by: u64, rows: &[ErasedRow]) -> Result<u64, Error> {
    let mut erased = 0;
    for chunk in rows.chunks(privacy::ERASED_RECORDS_PER_EVENT_MAX) {
        erased += log.erase(by, chunk).await?;
    }
    Ok(erased)
}

/// Appends one of the run's events on `privacy/log`.
async fn append(ledger: &Ledger, event: PrivacyEvent) -> Result<u64, Error> {
    let metadata = Metadata { actor: Some("retention".into()), ..Metadata::default() };
    let command = Command {
        stream_id: privacy::privacy_stream(),
        expected: ExpectedRevision::Any,
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), ledger.now(), &metadata)],
    };
    let appended = ledger.log.append_one(command).await?.map_err(|r| Error::Internal(r.to_string()))?;
    ledger.acknowledged.record_command(appended.last_sequence);
    Ok(appended.last_sequence)
}

/// The day a subscription ended, if it has ended by `today`: cancelled
/// from a day, or expired at its term's end.
fn ended_on(subscription: &Subscription, today: NaiveDate) -> Option<NaiveDate> {
    if !subscription.status_on(today).is_ended() {
        return None;
    }
    match subscription.cancelled_from {
        Some(from) if from <= today => Some(from),
        _ => subscription.end_date,
    }
}

/// Organizations not anonymized yet whose subscriptions all ended before
/// `years` before `now`, with how many subscriptions each had; at most
/// [`ANONYMIZED_PER_RUN_MAX`], the rest next run.
async fn anonymizable(
    ledger: &Ledger,
    now: Timestamp,
    years: u32,
    done: &BTreeSet<OrganizationId>,
) -> Result<Vec<(OrganizationId, u64)>, Error> {
    let today = now.to_datetime().date_naive();
    let cutoff = years_before(now, years)?.to_datetime().date_naive();
    let db = &ledger.models.db;
    let (mut found, mut seen, mut after) = (Vec::new(), BTreeSet::new(), None);
    let page_items = projections::models::PAGE_ITEMS_MAX;
    for _ in 0..SUBSCRIPTIONS_SCANNED_MAX.div_ceil(page_items) {
        let page = subscriptions::page(db, after, page_items).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        for (_, subscription) in &page {
            let Some(organization_id) = subscription.organization_id else { continue };
            let old = ended_on(subscription, today).is_some_and(|day| day < cutoff);
            if !old || done.contains(&organization_id) || !seen.insert(organization_id) {
                continue;
            }
            let all = subscriptions::of_organization(db, organization_id).await?;
            if all.iter().all(|(_, s)| ended_on(s, today).is_some_and(|day| day < cutoff)) {
                found.push((organization_id, all.len() as u64));
                if found.len() >= ANONYMIZED_PER_RUN_MAX {
                    return Ok(found);
                }
            }
        }
        if page.len() < page_items {
            break;
        }
    }
    Ok(found)
}

/// When a license's key stopped being valid, if it has by `now`: revoked,
/// superseded and its window closed, or its subscription ended (from the
/// start of the day it ended); the earliest of these.
async fn key_ended(
    ledger: &Ledger,
    now: Timestamp,
    license: &licenses::UnarchivedLicense,
) -> Result<Option<Timestamp>, Error> {
    let window = license.state.superseded.as_ref().map(|s| s.window_ends_at).filter(|end| *end <= now);
    let mut ended = [license.revoked_at, window].into_iter().flatten().min();
    if let Some(issued) = &license.state.issued {
        let today = now.to_datetime().date_naive();
        let subscription = subscriptions::subscription(&ledger.models.db, issued.subscription_id).await?;
        let on = subscription.as_ref().and_then(|s| ended_on(s, today));
        let at = on.and_then(|day| day.and_hms_opt(0, 0, 0)).map(|t| Timestamp::from_datetime(t.and_utc()));
        ended = ended.into_iter().chain(at).min();
    }
    Ok(ended)
}

/// Licenses not archived yet whose key stopped being valid before
/// `expired_before`, in id order: at most [`KEYS_ARCHIVED_PER_RUN_MAX`],
/// reading at most [`LICENSES_SCANNED_PER_RUN_MAX`]; the rest next run.
async fn archivable(ledger: &Ledger, now: Timestamp, expired_before: Timestamp) -> Result<Vec<LicenseId>, Error> {
    let (mut found, mut after) = (Vec::new(), None);
    let page_items = projections::models::PAGE_ITEMS_MAX;
    for _ in 0..LICENSES_SCANNED_PER_RUN_MAX.div_ceil(page_items) {
        let page = licenses::unarchived_page(&ledger.models.db, after, page_items).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for license in &page {
            if key_ended(ledger, now, license).await?.is_some_and(|at| at < expired_before) {
                found.push(license.id);
                if found.len() >= KEYS_ARCHIVED_PER_RUN_MAX {
                    return Ok(found);
                }
            }
        }
        if page.len() < page_items {
            break;
        }
    }
    Ok(found)
}

/// Erases each organization's personal data, for retention.
async fn anonymize(ledger: &Ledger, stripe: &Stripe, organizations: &[OrganizationId]) -> Result<(), Error> {
    let context = Context {
        metadata: Metadata { actor: Some("retention".into()), ..Metadata::default() },
        idempotency: None,
        credential: None,
    };
    for organization_id in organizations {
        let subject = Subject::Organization { organization_id: *organization_id };
        crate::privacy::erase(ledger, &Caller::Operator, &context, stripe, &subject, ErasureReason::Retention).await?;
    }
    Ok(())
}

/// The scheduler's side: a run once every [`RUN_EVERY_MICROS`] of the
/// business clock (the first at the first tick after the last recorded
/// run is a day old), and after a failure, again after
/// [`RETRY_AFTER_MICROS`].
#[derive(Default)]
pub struct Daily {
    next: Option<Timestamp>,
}

impl Daily {
    /// Runs the job if it is due; logs what it did or why it failed.
    pub async fn tick(&mut self, ledger: &Ledger) {
        let now = ledger.now();
        if self.next.is_none() {
            match past_runs(&ledger.log).await {
                Ok(past) => {
                    let last = past.last.map(|(_, run)| run.at.as_micros());
                    self.next =
                        Some(Timestamp::from_micros(last.map_or(i64::MIN, |at| at.saturating_add(RUN_EVERY_MICROS))));
                }
                Err(error) => {
                    tracing::warn!(%error, "retention: the last run could not be read; trying again");
                    return;
                }
            }
        }
        if self.next.is_some_and(|next| now < next) {
            return;
        }
        let settings = ledger.subscription_services.policy.retention;
        let stripe = Stripe::off();
        let wait = match run(ledger, &stripe, now, settings, false).await {
            Ok(outcome) => {
                tracing::info!(
                    sequence = ?outcome.sequence,
                    usage_records = outcome.usage_records,
                    keys_archived = outcome.keys_archived,
                    organizations = outcome.organizations_anonymized.len(),
                    "retention run"
                );
                RUN_EVERY_MICROS
            }
            Err(error) => {
                tracing::warn!(%error, "retention run failed; trying again later");
                RETRY_AFTER_MICROS
            }
        };
        self.next = Some(Timestamp::from_micros(now.as_micros().saturating_add(wait)));
    }
}
