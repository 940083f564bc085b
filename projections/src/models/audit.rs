//! The audit index: one row per record (sequence, times, stream, event
//! type, organization, actor, source IP, leaf hash), pointing at the log's
//! record; indexed by organization and sequence, so one organization's
//! page after a cursor reads only that page, however long the log.
//!
//! Which organization a record belongs to is found as `LedgerState` found
//! it: the stream's own for organization events, the subscription's or
//! license's for theirs and for usage reports and validations (kept in
//! [`AUDIT_OWNERS`], one row per subscription and license), the invoice's.
//!
//! Version 2 ("audit-v2", migrations `sqlite-readmodels/0009_audit_sessions.sql`
//! and `postgres/0013_audit_sessions.sql`) also places the portal's
//! records under their organization: sign-ins (by link or SSO), sign-outs,
//! session revocations, refused links and SSO settings and links, whose
//! streams are not `LedgerEvent`'s ([`session_facts`]). Their entries say
//! who (the metadata's actor, else the event's user) and from where (the
//! metadata's address, else the event's), never a token, cookie value or
//! secret: only the record's stream id (a keyed hash or a session's public
//! id), event type, actor and address are kept.

use domain::billing::InvoiceEvent;
use domain::event::LedgerEvent;
use domain::event::{EventDecodeError, StoredEvent};
use domain::license::LicenseEvent;
use domain::record::{Record, RecordHeader};
use domain::signin::SignInEvent;
use domain::sso::SsoEvent;
use domain::subscription::SubscriptionEvent;
use domain::usage::UsageEvent;
use domain::validation::ValidationEvent;
use domain::{Metadata, OrganizationId, Timestamp, UserId};

use super::{limit_param, micros, opt_uuid, page_limit, stream_uuid, uuid};
use crate::AuditEntry;
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Row, Table, Value};

pub const AUDIT: Table = Table::new(
    "rm_audit",
    &[
        Column::int("sequence"),
        Column::int("recorded_at"),
        Column::int("occurred_at"),
        Column::text("stream_id"),
        Column::text("event_type"),
        Column::blob("organization_id").nullable(),
        Column::text("actor").nullable(),
        Column::text("source_ip").nullable(),
        Column::blob("leaf_hash"),
    ],
    1,
);
pub const AUDIT_OWNERS: Table =
    Table::new("rm_audit_owners", &[Column::blob("entity_id"), Column::blob("organization_id")], 1);

/// The most entries an audit page holds, whatever is asked.
pub const AUDIT_PAGE_MAX: usize = super::PAGE_ITEMS_MAX;

/// The audit index's projection name (its checkpoint's). Version 2 places
/// the portal's session records under their organization; its migration
/// empties the tables and drops version 1's checkpoint, so it fills again
/// from the log's first record.
pub const NAME: &str = "audit-v2";

/// Keeps [`AUDIT`] and [`AUDIT_OWNERS`].
pub struct Audit;

impl Projection for Audit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [Table] {
        &[AUDIT, AUDIT_OWNERS]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        let mut organization_id = organization_of(changes, record, event)?;
        let (session_organization, metadata) = who(record, event);
        if session_organization.is_some() {
            organization_id = session_organization;
        }
        let header = &record.header;
        changes.upsert(
            &AUDIT,
            vec![
                Value::uint(header.sequence)?,
                micros(header.recorded_at),
                micros(header.occurred_at),
                header.stream_id.as_str().into(),
                header.event_type.as_str().into(),
                organization_id.map(|o| o.0).into(),
                metadata.actor.into(),
                metadata.source_ip.into(),
                record.leaf_hash.into(),
            ],
        )?;
        Ok(())
    }
}

/// Who and from where, as the index records them for `record`: its
/// metadata's actor and source address (none once erased), completed for a
/// portal record from its event ([`session_facts`], which also names the
/// organization it goes under).
pub(crate) fn who(record: &Record, event: Option<&LedgerEvent>) -> (Option<OrganizationId>, Metadata) {
    let mut metadata = record.metadata.as_deref().and_then(|bytes| Metadata::decode(bytes).ok()).unwrap_or_default();
    let mut organization_id = None;
    if event.is_none()
        && let Some(facts) = session_facts(record)
    {
        organization_id = Some(facts.organization_id);
        facts.complete(&mut metadata);
    }
    (organization_id, metadata)
}

/// What a portal record (not a `LedgerEvent`'s) tells the audit: its
/// organization, its user and the client's address, from its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFacts {
    pub organization_id: OrganizationId,
    pub user_id: Option<UserId>,
    pub address: Option<String>,
}

impl SessionFacts {
    fn of(organization_id: OrganizationId, user_id: Option<UserId>, address: Option<String>) -> Self {
        Self { organization_id, user_id, address }
    }

    /// Fills what `metadata` does not say: the actor as the user's
    /// (`org:{organization}:user:{user}`, a refused link's record has
    /// none) and the address (an SSO sign-in's record has none).
    pub fn complete(self, metadata: &mut Metadata) {
        if metadata.actor.is_none() {
            metadata.actor = self.user_id.map(|user| format!("org:{}:user:{user}", self.organization_id));
        }
        if metadata.source_ip.is_none() {
            metadata.source_ip = self.address;
        }
    }
}

/// A portal record's event: sign-ins, sign-outs, revocations and refused
/// links, or SSO settings, links and sign-ins. Their streams are not
/// `LedgerEvent`'s; the audit and `replay` read them through [`portal_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum PortalEvent {
    SignIn(SignInEvent),
    Sso(SsoEvent),
}

/// The portal's event of a record on one of its streams (`signin/`,
/// `portal-session/`, `portal-refusals/`, `portal-resend/`; `sso-signin/`, `sso-config/`,
/// `sso-link/`); `Ok(None)` on any other stream, or for an event type this
/// version does not know; an error for a payload that does not decode.
pub fn portal_event(header: &RecordHeader, payload: &[u8]) -> Result<Option<PortalEvent>, EventDecodeError> {
    let (kind, version) = (header.event_type.as_str(), header.schema_version);
    Ok(match header.stream_id.category() {
        "signin" | "portal-session" | "portal-refusals" | "portal-resend" => {
            SignInEvent::decode(kind, version, payload)?.map(PortalEvent::SignIn)
        }
        "sso-signin" | "sso-config" | "sso-link" => SsoEvent::decode(kind, version, payload)?.map(PortalEvent::Sso),
        _ => None,
    })
}

/// The facts of a portal record ([`portal_event`]); `None` for any other
/// record, a shredded payload, an event type this version does not know
/// or a payload that does not decode (these records are not the runner's
/// to refuse; `replay verify` refuses the last).
pub fn session_facts(record: &Record) -> Option<SessionFacts> {
    let event = portal_event(&record.header, record.event_bytes()?).ok()??;
    Some(match event {
        PortalEvent::SignIn(SignInEvent::SignedIn(e)) => {
            SessionFacts::of(e.organization_id, Some(e.user_id), Some(e.address))
        }
        PortalEvent::SignIn(SignInEvent::SignedOut(e)) => {
            SessionFacts::of(e.organization_id, Some(e.user_id), Some(e.address))
        }
        PortalEvent::SignIn(SignInEvent::SessionRevoked(e)) => {
            SessionFacts::of(e.organization_id, Some(e.user_id), Some(e.address))
        }
        PortalEvent::SignIn(SignInEvent::SignInRefused(e)) => {
            SessionFacts::of(e.organization_id, Some(e.user_id), Some(e.address))
        }
        PortalEvent::SignIn(SignInEvent::MailResent(e)) => SessionFacts::of(e.organization_id, Some(e.user_id), None),
        PortalEvent::SignIn(SignInEvent::ConsoleSignInRefused(e)) => {
            SessionFacts::of(domain::signin::VENDOR, None, Some(e.address))
        }
        PortalEvent::Sso(SsoEvent::SsoSignedIn(e)) => {
            SessionFacts::of(e.organization_id, Some(e.user_id), Some(e.address))
        }
        PortalEvent::Sso(SsoEvent::SsoLinked(e)) => SessionFacts::of(e.organization_id, Some(e.user_id), None),
        PortalEvent::Sso(SsoEvent::SsoConfigured(e)) => SessionFacts::of(e.organization_id, None, None),
        PortalEvent::Sso(SsoEvent::SsoSecretResealed(e)) => SessionFacts::of(e.organization_id, None, None),
        PortalEvent::Sso(SsoEvent::SsoLinkRehashed(e)) => SessionFacts::of(e.organization_id, Some(e.user_id), None),
        PortalEvent::Sso(SsoEvent::SsoRemoved(e)) => SessionFacts::of(e.organization_id, None, None),
    })
}

/// The organization of an entity (a subscription or a license), if known.
fn owner(changes: &mut Changes<'_>, entity: uuid::Uuid) -> Result<Option<OrganizationId>, DbError> {
    changes.get(&AUDIT_OWNERS, &[entity.into()])?.map(|row| uuid(&row, 1).map(OrganizationId)).transpose()
}

fn organization_of(
    changes: &mut Changes<'_>,
    record: &Record,
    event: Option<&LedgerEvent>,
) -> Result<Option<OrganizationId>, DbError> {
    Ok(match event {
        Some(LedgerEvent::Organization(_)) => stream_uuid(record, "org").map(OrganizationId),
        Some(LedgerEvent::Subscription(event)) => {
            let Some(id) = stream_uuid(record, "subscription") else { return Ok(None) };
            if let SubscriptionEvent::SubscriptionCreated(created) = event {
                changes.upsert(&AUDIT_OWNERS, vec![id.into(), created.organization_id.0.into()])?;
            }
            owner(changes, id)?
        }
        Some(LedgerEvent::License(event)) => {
            let Some(id) = stream_uuid(record, "license") else { return Ok(None) };
            if let LicenseEvent::LicenseIssued(issued) = event {
                changes.upsert(&AUDIT_OWNERS, vec![id.into(), issued.organization_id.0.into()])?;
            }
            owner(changes, id)?
        }
        Some(LedgerEvent::Validation(ValidationEvent::LicenseValidated(validated))) => {
            owner(changes, validated.license_id.0)?
        }
        Some(LedgerEvent::Validation(ValidationEvent::FloatingLeaseExtended(extended))) => {
            owner(changes, extended.license_id.0)?
        }
        Some(LedgerEvent::Invoice(InvoiceEvent::InvoiceIssued(invoice))) => Some(invoice.organization_id),
        Some(LedgerEvent::Invoice(InvoiceEvent::InvoiceVoided(voided))) => Some(voided.organization_id),
        Some(LedgerEvent::Usage(UsageEvent::UsageReported(report))) => owner(changes, report.subscription_id.0)?,
        Some(LedgerEvent::Branding(event)) => Some(super::branding::organization_of(event)),
        _ => None,
    })
}

/// Which entries a page holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// One organization's entries; every entry when `None`.
    pub organization_id: Option<OrganizationId>,
    /// Entries after this sequence (the cursor; 0 from the start).
    pub after: u64,
    /// Recorded at or after.
    pub from: Option<Timestamp>,
    /// Recorded before.
    pub to: Option<Timestamp>,
    /// Entries asked for, capped at [`AUDIT_PAGE_MAX`].
    pub limit: usize,
}

/// One page of the audit, and the cursor of the next if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<u64>,
}

fn entry(row: &Row) -> Result<AuditEntry, DbError> {
    Ok(AuditEntry {
        sequence: row.uint(0)?,
        recorded_at: Timestamp::from_micros(row.int(1)?),
        occurred_at: Timestamp::from_micros(row.int(2)?),
        stream_id: row.text(3)?.to_owned(),
        event_type: row.text(4)?.to_owned(),
        organization_id: opt_uuid(row, 5)?.map(OrganizationId),
        actor: row.opt_text(6)?.map(str::to_owned),
        source_ip: row.opt_text(7)?.map(str::to_owned),
        leaf_hash: row.hash(8)?,
    })
}

/// Audit entries in log order after the cursor: by the organization index
/// (or the primary key), at most one page plus one row read. Time bounds
/// are applied to a window of at most [`AUDIT_SCAN_ROWS_MAX`] entries
/// after the cursor, so no page reads in proportion to history: a page
/// whose window ran out before it filled is shorter (even empty) and its
/// cursor continues after the window.
pub async fn page(db: &ReadModelDb, query: AuditQuery) -> Result<AuditPage, DbError> {
    let size = page_limit(query.limit);
    let timed = query.from.is_some() || query.to.is_some();
    let window = if timed { AUDIT_SCAN_ROWS_MAX } else { size + 1 };
    let mut wheres = vec!["sequence > $1".to_owned()];
    // Sequences fit an i64: a cursor past that is after every record (an
    // empty page), not an error (schemathesis sent 2^63).
    let mut params = vec![Value::Int(i64::try_from(query.after).unwrap_or(i64::MAX))];
    if let Some(organization_id) = query.organization_id {
        params.push(organization_id.0.into());
        wheres.push(format!("organization_id = ${}", params.len()));
    }
    params.push(limit_param(window));
    let sql = format!(
        "SELECT {} FROM rm_audit WHERE {} ORDER BY sequence LIMIT ${}",
        AUDIT.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", "),
        wheres.join(" AND "),
        params.len()
    );
    let rows = db.query(&sql, params).await?;
    let examined = rows.len();
    let last_examined = rows.last().map(|row| row.uint(0)).transpose()?;
    let within = |e: &AuditEntry| {
        query.from.is_none_or(|from| e.recorded_at >= from) && query.to.is_none_or(|to| e.recorded_at < to)
    };
    let mut items = Vec::with_capacity(size + 1);
    for row in &rows {
        let entry = entry(row)?;
        if within(&entry) {
            items.push(entry);
            if items.len() > size {
                break;
            }
        }
    }
    let next_cursor = if items.len() > size {
        Some(items[size - 1].sequence)
    } else if timed && examined == window {
        last_examined
    } else {
        None
    };
    items.truncate(size);
    Ok(AuditPage { items, next_cursor })
}

/// The most entries one time-bounded audit page examines.
pub const AUDIT_SCAN_ROWS_MAX: usize = 4_096;

/// The leaf hashes of the records after `after`, in order, at most `size`
/// (capped at [`AUDIT_PAGE_MAX`] × 16): what `first_divergence` compares
/// the log with, read by primary key a page at a time.
pub async fn leaves(db: &ReadModelDb, after: u64, size: usize) -> Result<Vec<(u64, domain::record::Hash)>, DbError> {
    let size = size.clamp(1, AUDIT_PAGE_MAX * 16);
    let rows = db
        .query(
            "SELECT sequence, leaf_hash FROM rm_audit WHERE sequence > $1 ORDER BY sequence LIMIT $2",
            vec![Value::uint(after)?, limit_param(size)],
        )
        .await?;
    rows.iter().map(|row| Ok((row.uint(0)?, row.hash(1)?))).collect()
}

/// The audit entry of the record at `sequence`, by primary key; `None`
/// for a sequence the index does not hold (not yet applied, or none).
pub async fn by_sequence(db: &ReadModelDb, sequence: u64) -> Result<Option<AuditEntry>, DbError> {
    let sql = format!(
        "SELECT {} FROM rm_audit WHERE sequence = $1",
        AUDIT.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    );
    db.query(&sql, vec![Value::uint(sequence)?]).await?.first().map(entry).transpose()
}
