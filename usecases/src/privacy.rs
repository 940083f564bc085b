//! Erasure and export of a data subject's personal data (issue 16,
//! /work/notes/privacy-design.md "Erasure").
//!
//! [`erase`] finds every record holding the subject's personal data by
//! scanning the log a page at a time ([`privacy::concerns`]), appends
//! `SubjectErased` events on `privacy/log` naming those records and the
//! facts each keeps ([`privacy::facts`]), erases them in the store
//! (`EventLog::erase`), purges the read models, ends the user's portal
//! sessions, drops the organization's unsent notifications and redacts its
//! Stripe customer. A user who is still active, a staff user not yet
//! disabled, or an organization with a live subscription is refused with
//! nothing changed, so no decision can depend on what is erased. Erasing
//! again is a no-op that answers what was erased; an erasure interrupted
//! between its event and the store's erase is completed by the next erase
//! and at the server's start ([`complete_interrupted`]).
//!
//! [`export`] answers everything the ledger holds about a subject, a page
//! at a time: the records the same scan finds (decoded), and on the first
//! page what the read models hold (profile, sessions).
//!
//! Memory is bounded by named constants, never by the log's length: the
//! scan holds one page, an erasure at most [`ERASED_RECORDS_PER_EVENT_MAX`]
//! records before it writes them.

use std::time::Duration;

use domain::event::{LedgerEvent, StoredEvent};
use domain::privacy::{
    self, ERASED_RECORDS_PER_EVENT_MAX, ErasedRecord, ErasureReason, PrivacyEvent, Subject, SubjectErased,
    privacy_stream,
};
use domain::record::Record;
use domain::staff::StaffPermission;
use domain::{OrganizationId, UserId};
use projections::models::{organizations as organization_model, staff as staff_model, subscriptions};
use serde::Serialize;
use serde_json::Value;
use store::{Command, ErasedRow, ExpectedRevision, NewEvent};

use crate::acknowledged;
use crate::command::{Context, new_event_id};
use crate::stripe::Stripe;
use crate::{Caller, Error, Ledger};

/// Records read per page of the scan.
pub const SCAN_PAGE_RECORDS: usize = 1024;
/// Facts bytes one `SubjectErased` carries at most (a record's payload is
/// at most 1 MiB: this leaves room for the event's own fields); a larger
/// erasure is several events.
pub const ERASURE_EVENT_FACTS_BYTES_MAX: usize = 512 * 1024;
/// The lock one erasure at a time holds, among all processes on the log.
pub const ERASURE_LOCK: &str = "privacy-erasure";
/// How long an erasure waits for another one to finish before it answers
/// `erasure_in_progress`.
pub const ERASURE_LOCK_WAIT: Duration = Duration::from_secs(20);
/// Privacy events read per page when looking through `privacy/log`.
pub const PRIVACY_EVENTS_PAGE: usize = 64;
/// Sequences of `SubjectErased` events one answer lists at most (a
/// subject erased again and again lists its first ones).
pub const ERASURE_SEQUENCES_LISTED_MAX: usize = 1000;
/// Records one export page lists when the caller names no limit…
pub const EXPORT_LIMIT_DEFAULT: usize = 100;
/// …and at most.
pub const EXPORT_LIMIT_MAX: usize = 500;
/// Records one export page looks at, at most: a page over a long log with
/// few matches ends early with `next`, so no request scans the whole log.
pub const EXPORT_SCAN_RECORDS_MAX: usize = 50_000;
/// Users of an organization one export lists.
pub const EXPORT_USERS_MAX: usize = 200;
/// How long an erasure waits for the read models to include it before
/// purging them.
pub const PURGE_WAIT: Duration = Duration::from_secs(30);

/// What an erasure answers: every record erased for this subject, and the
/// `SubjectErased` events that sanctioned them (earlier erasures included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasureOutcome {
    pub erased_records: u64,
    pub erasure_sequences: Vec<u64>,
}

/// Only a staff admin (or the operator's bootstrap token, or a staff
/// admin's service token) answers data-subject requests.
fn require_admin(caller: &Caller) -> Result<(), Error> {
    caller.require(StaffPermission::ManageStaff)
}

/// Erases the subject's personal data (see the module's documentation).
/// `stripe` redacts the organization's Stripe customer when a client is
/// configured (`Stripe::off()` otherwise).
pub async fn erase(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    stripe: &Stripe,
    subject: &Subject,
    reason: ErasureReason,
) -> Result<ErasureOutcome, Error> {
    require_admin(caller)?;
    let lock = lock(ledger).await?;
    complete_interrupted_locked(ledger).await?;
    // Whether the subject may be erased is read from the read models, so
    // they must hold the whole log first: another process (the server, or
    // a command line before this one) may have appended the deactivation a
    // moment ago, and this process's models may not have applied it yet.
    let head = ledger.log.head().await?.sequence;
    acknowledged::catch_up(ledger, context.credential, Some(head)).await?;
    refuse_live(ledger, subject).await?;
    let mut batch = Batch::default();
    let mut from = 1;
    while from <= head {
        let page = ledger.log.read_page(from..=head, SCAN_PAGE_RECORDS).await?;
        let Some(last) = page.last().map(|r| r.header.sequence) else { break };
        for record in &page {
            if let Some(row) = erasable(record, subject)? {
                batch.push(row);
                if batch.full() {
                    batch.flush(ledger, context, subject, reason).await?;
                }
            }
        }
        from = last + 1;
    }
    batch.flush(ledger, context, subject, reason).await?;
    let last = ledger.log.head().await?.sequence;
    after_erasure(ledger, stripe, subject).await?;
    drop(lock);
    ledger.acknowledged.record_command(last);
    if let Some(credential) = context.credential {
        ledger.acknowledged.record(credential, last);
    }
    outcome(ledger, subject).await
}

/// Waits (at most [`ERASURE_LOCK_WAIT`]) for the erasure lock.
async fn lock(ledger: &Ledger) -> Result<store::ExclusiveLock, Error> {
    let deadline = tokio::time::Instant::now() + ERASURE_LOCK_WAIT;
    loop {
        if let Some(lock) = ledger.log.try_lock(ERASURE_LOCK).await? {
            return Ok(lock);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::conflict("erasure_in_progress", "another erasure is running; try again shortly"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The subject as the read models know it: 404 when unknown; 409 while it
/// is active (a user, a staff user) or has a live subscription.
async fn refuse_live(ledger: &Ledger, subject: &Subject) -> Result<(), Error> {
    let db = &ledger.models.db;
    match subject {
        Subject::User { organization_id, user_id } => {
            let organization = organization_model::organization(db, *organization_id).await?.ok_or(Error::NotFound)?;
            let user = organization.state.users.get(user_id).ok_or(Error::NotFound)?;
            if user.active {
                return Err(Error::conflict(
                    "subject_active",
                    "the user is still active: deactivate them first; nothing was erased",
                ));
            }
        }
        Subject::Organization { organization_id } => {
            if !organization_model::exists(db, *organization_id).await? {
                return Err(Error::NotFound);
            }
            let live = subscriptions::live(db, *organization_id).await?;
            if live.is_some_and(|(_, subscription)| !subscription.status_on(ledger.today()).is_ended()) {
                return Err(Error::conflict(
                    "subscription_live",
                    "the organization has a live subscription: it must end first; nothing was erased",
                ));
            }
        }
        Subject::Staff { staff_id } => {
            let row = staff_model::staff_user(db, *staff_id).await?.ok_or(Error::NotFound)?;
            if row.active {
                return Err(Error::conflict(
                    "subject_active",
                    "the staff user is still active: disable them first; nothing was erased",
                ));
            }
        }
    }
    Ok(())
}

/// The record's erasure for `subject`, if it holds their personal data and
/// is not erased yet: the facts of its payload when the payload holds it,
/// else (only the metadata names them) the payload itself, so what every
/// reader applies does not change.
fn erasable(record: &Record, subject: &Subject) -> Result<Option<ErasedRecord>, Error> {
    if record.erasure.is_some() {
        return Ok(None);
    }
    let (Some(payload), metadata) = (record.payload.as_deref(), record.metadata.as_deref()) else {
        return Ok(None);
    };
    if !privacy::concerns(&record.header, payload, metadata, subject) {
        return Ok(None);
    }
    let facts = if privacy::concerns(&record.header, payload, None, subject) {
        privacy::facts(&record.header, payload).map_err(|e| Error::Internal(e.to_string()))?
    } else {
        payload.to_vec()
    };
    Ok(Some(ErasedRecord { sequence: record.header.sequence, facts: Some(facts) }))
}

/// Records found and not yet written, bounded by
/// [`ERASED_RECORDS_PER_EVENT_MAX`] and [`ERASURE_EVENT_FACTS_BYTES_MAX`].
#[derive(Default)]
struct Batch {
    records: Vec<ErasedRecord>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, record: ErasedRecord) {
        self.bytes += record.facts.as_ref().map_or(0, Vec::len);
        self.records.push(record);
    }

    fn full(&self) -> bool {
        self.records.len() >= ERASED_RECORDS_PER_EVENT_MAX || self.bytes >= ERASURE_EVENT_FACTS_BYTES_MAX
    }

    /// Appends one `SubjectErased` for the records held, then erases them.
    async fn flush(
        &mut self,
        ledger: &Ledger,
        context: &Context,
        subject: &Subject,
        reason: ErasureReason,
    ) -> Result<(), Error> {
        if self.records.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.records);
        self.bytes = 0;
        let erased = SubjectErased { subject: subject.clone(), reason, at: ledger.now(), records };
        let rows = rows(&erased);
        let event = PrivacyEvent::SubjectErased(erased);
        let command = Command {
            stream_id: privacy_stream(),
            expected: ExpectedRevision::Any,
            idempotency: None,
            events: vec![NewEvent::from_event(&event, new_event_id(), ledger.now(), &context.metadata)],
        };
        let appended = ledger.log.append_one(command).await?.map_err(|r| Error::Internal(r.to_string()))?;
        ledger.log.erase(appended.last_sequence, &rows).await?;
        purge(ledger, subject, &rows).await
    }
}

/// Purges the read models of the subject's data, given the records just
/// erased (read back from the log: the read models recompute what they
/// derived from them, e.g. the audit index's actor and address).
async fn purge(ledger: &Ledger, subject: &Subject, rows: &[ErasedRow]) -> Result<(), Error> {
    let mut erased = Vec::with_capacity(rows.len());
    for row in rows {
        erased.extend(ledger.log.read_page(row.sequence..=row.sequence, 1).await?);
    }
    ledger.models.db.purge_subject(subject, &erased).await?;
    Ok(())
}

fn rows(erased: &SubjectErased) -> Vec<ErasedRow> {
    erased.records.iter().map(|r| ErasedRow { sequence: r.sequence, facts: r.facts.clone() }).collect()
}

/// What holds the subject's data besides the log: the read models (once
/// they include the erasure), the portal's sessions, unsent notifications,
/// Stripe's customer. Each step is idempotent, so a repeated erasure
/// repeats them (one that failed half-way, at Stripe say, completes).
async fn after_erasure(ledger: &Ledger, stripe: &Stripe, subject: &Subject) -> Result<(), Error> {
    let head = ledger.log.head().await?.sequence;
    ledger.models.wait_for(head, PURGE_WAIT).await.map_err(|_| Error::ProjectionLagging(head))?;
    // The customer is looked up before the purge, which may touch its row.
    let customer = match subject {
        Subject::Organization { organization_id } => {
            projections::models::stripe::customer(&ledger.models.db, *organization_id).await?
        }
        _ => None,
    };
    purge(ledger, subject, &[]).await?;
    end_sessions(ledger, subject).await?;
    if let Subject::Organization { organization_id } = subject {
        crate::notify::drop_unsent(ledger, *organization_id).await?;
        if let Some(customer) = customer {
            crate::stripe::erasure::redact_customer(stripe, *organization_id, &customer).await?;
        }
    }
    Ok(())
}

/// Ends the portal sessions of the erased users (their addresses and user
/// agents go with them).
async fn end_sessions(ledger: &Ledger, subject: &Subject) -> Result<(), Error> {
    let sessions = ledger.log.sessions().await?;
    for user_id in users_of(ledger, subject).await? {
        sessions.delete_user(user_id.0).await?;
    }
    Ok(())
}

/// The users an erasure covers: one user, every user of an organization
/// (bounded by the organization's seats), none for a staff user.
async fn users_of(ledger: &Ledger, subject: &Subject) -> Result<Vec<UserId>, Error> {
    Ok(match subject {
        Subject::User { user_id, .. } => vec![*user_id],
        Subject::Organization { organization_id } => {
            organization_model::organization(&ledger.models.db, *organization_id)
                .await?
                .map(|row| row.state.users.keys().copied().collect())
                .unwrap_or_default()
        }
        Subject::Staff { .. } => Vec::new(),
    })
}

/// One page of the `SubjectErased` events of `privacy/log` from stream
/// revision `revision`, each with its sequence, and the revision the next
/// page begins at (`None` after the last).
async fn erasures_page(ledger: &Ledger, revision: u64) -> Result<(Vec<(u64, SubjectErased)>, Option<u64>), Error> {
    let page = ledger.log.read_stream(&privacy_stream(), revision, PRIVACY_EVENTS_PAGE).await?;
    let next = match page.last() {
        Some(last) if page.len() == PRIVACY_EVENTS_PAGE => Some(last.header.stream_revision + 1),
        _ => None,
    };
    let mut erasures = Vec::new();
    for record in &page {
        let bytes = record.event_bytes().unwrap_or_default();
        let event = PrivacyEvent::decode(&record.header.event_type, record.header.schema_version, bytes)
            .map_err(|e| Error::Internal(format!("privacy/log at {}: {e}", record.header.sequence)))?;
        if let Some(PrivacyEvent::SubjectErased(erased)) = event {
            erasures.push((record.header.sequence, erased));
        }
    }
    Ok((erasures, next))
}

/// What was erased for `subject`, from its `SubjectErased` events.
async fn outcome(ledger: &Ledger, subject: &Subject) -> Result<ErasureOutcome, Error> {
    let mut outcome = ErasureOutcome { erased_records: 0, erasure_sequences: Vec::new() };
    let mut revision = Some(1);
    while let Some(from) = revision {
        let (erasures, next) = erasures_page(ledger, from).await?;
        for (sequence, erased) in erasures.into_iter().filter(|(_, erased)| erased.subject == *subject) {
            outcome.erased_records += erased.records.len() as u64;
            if outcome.erasure_sequences.len() < ERASURE_SEQUENCES_LISTED_MAX {
                outcome.erasure_sequences.push(sequence);
            }
        }
        revision = next;
    }
    Ok(outcome)
}

/// Completes every erasure whose event was appended but whose records were
/// not erased (the process stopped in between): erases them and purges the
/// read models for its subject. Run at the server's start; every erasure
/// runs it first. Returns the records erased.
pub async fn complete_interrupted(ledger: &Ledger) -> Result<u64, Error> {
    let _lock = lock(ledger).await?;
    complete_interrupted_locked(ledger).await
}

async fn complete_interrupted_locked(ledger: &Ledger) -> Result<u64, Error> {
    let mut erased = 0;
    let mut revision = Some(1);
    while let Some(from) = revision {
        let (erasures, next) = erasures_page(ledger, from).await?;
        for (by, event) in erasures {
            // One event's records are erased in one transaction: all or none.
            let Some(first) = event.records.first() else { continue };
            let record = ledger.log.read_page(first.sequence..=first.sequence, 1).await?;
            if record.first().is_none_or(|r| r.erasure.is_some()) {
                continue;
            }
            let rows = rows(&event);
            let count = ledger.log.erase(by, &rows).await?;
            tracing::warn!(sequence = by, records = count, "completed an interrupted erasure");
            erased += count;
            purge(ledger, &event.subject, &rows).await?;
        }
        revision = next;
    }
    Ok(erased)
}

/// The organization of a user, from the read models (`ledger privacy
/// --user ID`); 404 when no organization has that user.
pub async fn organization_of_user(ledger: &Ledger, user_id: UserId) -> Result<OrganizationId, Error> {
    let row = ledger
        .models
        .db
        .query_opt("SELECT organization_id FROM rm_users WHERE user_id = $1 LIMIT 1", vec![user_id.0.into()])
        .await?
        .ok_or(Error::NotFound)?;
    let id = uuid::Uuid::from_slice(row.blob(0)?).map_err(|_| Error::Internal("rm_users.organization_id".into()))?;
    Ok(OrganizationId(id))
}

/// One page of a subject's export.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportPage {
    /// The subject, as the request named it.
    #[schema(value_type = Object)]
    pub subject: Value,
    /// What the read models hold about the subject (first page only).
    #[schema(value_type = Option<Object>)]
    pub read_models: Option<Value>,
    /// The records holding the subject's data, in sequence order.
    pub records: Vec<ExportRecord>,
    /// The `after` of the next page; absent on the last.
    pub next: Option<u64>,
}

/// One record of an export.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportRecord {
    pub sequence: u64,
    pub stream: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: String,
    /// The decoded event (for an erased record, the facts it kept).
    #[schema(value_type = Option<Object>)]
    pub event: Option<Value>,
    /// The decoded metadata (actor, source address, user agent); absent
    /// once erased.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub erased: bool,
}

/// The subject as JSON, as the API names it.
pub fn subject_json(subject: &Subject) -> Value {
    match subject {
        Subject::User { organization_id, user_id } => {
            serde_json::json!({ "user": { "organizationId": organization_id.0, "userId": user_id.0 } })
        }
        Subject::Organization { organization_id } => {
            serde_json::json!({ "organization": { "organizationId": organization_id.0 } })
        }
        Subject::Staff { staff_id } => serde_json::json!({ "staff": { "staffId": staff_id.0 } }),
    }
}

/// One page of everything the ledger holds about `subject`: records after
/// sequence `after` (at most `limit`, 1 to [`EXPORT_LIMIT_MAX`]), and on
/// the first page (`after` 0) what the read models hold.
pub async fn export(
    ledger: &Ledger,
    caller: &Caller,
    subject: &Subject,
    after: u64,
    limit: Option<usize>,
) -> Result<ExportPage, Error> {
    require_admin(caller)?;
    let limit = limit.unwrap_or(EXPORT_LIMIT_DEFAULT);
    if limit == 0 || limit > EXPORT_LIMIT_MAX {
        return Err(Error::Validation(format!("limit: 1 to {EXPORT_LIMIT_MAX}")));
    }
    let read_models = read_models(ledger, subject).await?;
    let head = ledger.log.head().await?.sequence;
    let (mut records, mut from, mut scanned) = (Vec::new(), after.saturating_add(1), 0);
    'scan: while from <= head && scanned < EXPORT_SCAN_RECORDS_MAX {
        let page = ledger.log.read_page(from..=head, SCAN_PAGE_RECORDS).await?;
        if page.is_empty() {
            from = head.saturating_add(1);
            break;
        }
        for record in &page {
            scanned += 1;
            from = record.header.sequence + 1;
            if holds(record, subject) {
                records.push(export_record(record));
                if records.len() == limit {
                    break 'scan;
                }
            }
        }
    }
    let next = (from <= head).then(|| from - 1);
    Ok(ExportPage { subject: subject_json(subject), read_models: (after == 0).then_some(read_models), records, next })
}

/// Whether a record holds (or, erased, held) the subject's data: its
/// payload and metadata, or once erased the facts it kept.
pub fn holds(record: &Record, subject: &Subject) -> bool {
    match (&record.erasure, record.payload.as_deref()) {
        (None, Some(payload)) => privacy::concerns(&record.header, payload, record.metadata.as_deref(), subject),
        (Some(_), _) => {
            record.event_bytes().is_some_and(|facts| privacy::concerns(&record.header, facts, None, subject))
        }
        (None, None) => false,
    }
}

fn export_record(record: &Record) -> ExportRecord {
    let header = &record.header;
    let metadata = record
        .metadata
        .as_deref()
        .and_then(|bytes| domain::Metadata::decode(bytes).ok())
        .and_then(|metadata| serde_json::to_value(metadata).ok());
    ExportRecord {
        sequence: header.sequence,
        stream: header.stream_id.to_string(),
        event_type: header.event_type.clone(),
        schema_version: header.schema_version,
        occurred_at: header.occurred_at.to_rfc3339(),
        event: record.event_bytes().and_then(|bytes| event_json(header, bytes)),
        metadata,
        erased: record.erasure.is_some(),
    }
}

/// A stored event as JSON, whichever enum reads its type (the ledger's,
/// and the portal's sign-in and SSO records).
fn event_json(header: &domain::RecordHeader, bytes: &[u8]) -> Option<Value> {
    fn as_json<E: StoredEvent + Serialize>(header: &domain::RecordHeader, bytes: &[u8]) -> Option<Value> {
        let event = E::decode(&header.event_type, header.schema_version, bytes).ok()??;
        serde_json::to_value(event).ok()
    }
    let ledger = LedgerEvent::decode(header, bytes).ok().flatten().and_then(|event| ledger_json(&event));
    ledger
        .or_else(|| as_json::<domain::signin::SignInEvent>(header, bytes))
        .or_else(|| as_json::<domain::sso::SsoEvent>(header, bytes))
}

fn ledger_json(event: &LedgerEvent) -> Option<Value> {
    use LedgerEvent as E;
    let value = match event {
        E::Organization(e) => serde_json::to_value(e),
        E::Subscription(e) => serde_json::to_value(e),
        E::License(e) => serde_json::to_value(e),
        E::Validation(e) => serde_json::to_value(e),
        E::Usage(e) => serde_json::to_value(e),
        E::Invoice(e) => serde_json::to_value(e),
        E::Checkpoint(e) => serde_json::to_value(e),
        E::Notification(e) => serde_json::to_value(e),
        E::Stripe(e) => serde_json::to_value(e),
        E::Branding(e) => serde_json::to_value(e),
        E::Staff(e) => serde_json::to_value(e),
        E::Privacy(e) => serde_json::to_value(e),
    };
    value.ok()
}

/// What the read models hold about the subject: the profile (a user's
/// e-mail, role and state; an organization's name and users; a staff
/// user's name, e-mail and role) and a user's portal sessions (address,
/// user agent). 404 when the read models do not know the subject.
async fn read_models(ledger: &Ledger, subject: &Subject) -> Result<Value, Error> {
    let db = &ledger.models.db;
    Ok(match subject {
        Subject::User { organization_id, user_id } => {
            let organization = organization_model::organization(db, *organization_id).await?.ok_or(Error::NotFound)?;
            let user = organization.state.users.get(user_id).ok_or(Error::NotFound)?;
            let sessions = ledger.log.sessions().await?.of_user(user_id.0).await?;
            let sessions: Vec<Value> = sessions
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id, "createdAt": s.created_at.to_rfc3339(), "lastSeen": s.last_seen.to_rfc3339(),
                        "expiresAt": s.expires_at.to_rfc3339(), "address": s.address, "userAgent": s.user_agent,
                    })
                })
                .collect();
            serde_json::json!({
                "profile": { "email": user.email, "role": user.role.map(|r| r.as_str()), "active": user.active },
                "sessions": sessions,
            })
        }
        Subject::Organization { organization_id } => {
            let organization = organization_model::organization(db, *organization_id).await?.ok_or(Error::NotFound)?;
            let users = organization_model::users(db, *organization_id, None, EXPORT_USERS_MAX).await?;
            let users: Vec<Value> = users
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "userId": u.user_id.0, "email": u.email, "role": u.role.map(|r| r.as_str()), "active": u.active,
                    })
                })
                .collect();
            let created = serde_json::to_value(&organization.created).unwrap_or(Value::Null);
            serde_json::json!({ "profile": created, "users": users })
        }
        Subject::Staff { staff_id } => {
            let row = staff_model::staff_user(db, *staff_id).await?.ok_or(Error::NotFound)?;
            serde_json::json!({
                "profile": { "name": row.name, "email": row.email, "role": row.role.as_str(), "active": row.active },
            })
        }
    })
}
