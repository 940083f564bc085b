//! Purging a data subject's personal data from the read models (issue 16).
//!
//! After a sanctioned erasure the log yields each erased record's facts
//! (`Record::event_bytes`) and no metadata. [`ReadModelDb::purge_subject`]
//! brings the rows built from the records as they were to what a rebuild
//! from the erased log builds: every personal value is replaced by what
//! `domain::privacy::facts` makes of it (an e-mail address by its unique
//! placeholder, names and other text as the redaction leaves them), search
//! keys are derived again, and the audit index's actor and address of each
//! erased record are taken again from the record as the log now holds it.
//!
//! One transaction per backend. It first counts itself in the
//! [`super::PURGE_FENCE`] row, which every runner commit is fenced on: a
//! batch built from rows (cached, or in a projection's memory) before the
//! purge is never written, and its runner loads again from the purged rows.

use std::collections::BTreeSet;

use domain::billing::InvoiceEvent;
use domain::branding::BrandingEvent;
use domain::event::{LedgerEvent, StoredEvent};
use domain::license::{License, LicenseEvent};
use domain::organization::{Organization, OrganizationCreated, OrganizationEvent, Role, UserAdded};
use domain::privacy::Subject;
use domain::record::{Record, RecordHeader};
use domain::staff::{StaffEvent, StaffId, StaffUserAdded};
use domain::stripe::StripeEvent;
use domain::{EventId, OrganizationId, StreamId, Timestamp, UserId};

use super::table::{Row, Value};
use super::{Backend, Checkpoint, DbError, PURGE_FENCE, ReadModelDb};
use crate::models::branding::BrandingRow;
use crate::models::customers::{domain_key, name_keys};
use crate::models::staff::{ServiceTokenRow, StaffRow};
use crate::models::{audit, decoded, encoded};

/// Statements inside one read-model transaction, written with `$n`
/// placeholders, run on a blocking thread.
pub(crate) trait Tx {
    fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError>;
    /// Rows changed.
    fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DbError>;
}

impl ReadModelDb {
    /// Removes or redacts every read-model row that holds personal data of
    /// `subject` (e-mail addresses, names, search keys of its addresses'
    /// domains, the audit index's actors and session addresses), keeping
    /// the facts every query answers from, so the read models equal a
    /// rebuild from the erased log. `erased` are the records the erasure
    /// erased, as the log holds them after `EventLog::erase` (their
    /// metadata gone, their payload replaced by facts); records the read
    /// models have not applied yet are skipped (the runner applies them
    /// erased). One transaction; on SQLite the `-wal` is checkpointed
    /// (TRUNCATE) afterwards. Idempotent. Returns the rows changed.
    pub async fn purge_subject(&self, subject: &Subject, erased: &[Record]) -> Result<u64, DbError> {
        let (subject, erased) = (subject.clone(), erased.to_vec());
        let work = move |tx: &mut dyn Tx| purge(tx, &subject, &erased);
        match &self.backend {
            Backend::Sqlite(db) => db.transaction(work).await,
            Backend::Postgres(pool) => super::postgres::transaction(pool, work).await,
        }
    }
}

impl ReadModelDb {
    /// The retention job's read-model side (issue 16): deletes the daily
    /// usage rows of days before `before` whose report is at or before
    /// `up_to_sequence` (`rm_usage`), and the notification outbox's daily
    /// copies of days before `before` that no usage row is left for
    /// (`rm_notify_usage_days`): what a rebuild holds once every
    /// `UsageReported` of those days up to `up_to_sequence` is retired
    /// (erased with no facts). Invoices, their lines and the revenue
    /// tables are kept (they hold each month's billed totals, from the
    /// invoice events, which are never retired). One transaction, fenced
    /// like [`ReadModelDb::purge_subject`]. Returns the rows deleted.
    pub async fn retire_usage(&self, before: chrono::NaiveDate, up_to_sequence: u64) -> Result<u64, DbError> {
        let work = move |tx: &mut dyn Tx| retire_usage(tx, before, up_to_sequence);
        match &self.backend {
            Backend::Sqlite(db) => db.transaction(work).await,
            Backend::Postgres(pool) => super::postgres::transaction(pool, work).await,
        }
    }
}

fn retire_usage(tx: &mut dyn Tx, before: chrono::NaiveDate, up_to_sequence: u64) -> Result<u64, DbError> {
    fence(tx)?;
    let before = crate::models::day(before);
    let deleted = tx.execute(
        "DELETE FROM rm_usage WHERE day < $1 AND sequence <= $2",
        vec![before.clone(), Value::uint(up_to_sequence)?],
    )?;
    Ok(deleted
        + tx.execute(
            "DELETE FROM rm_notify_usage_days WHERE day < $1 AND NOT EXISTS \
             (SELECT 1 FROM rm_usage u WHERE u.subscription_id = rm_notify_usage_days.subscription_id \
              AND u.day = rm_notify_usage_days.day)",
            vec![before],
        )?)
}

/// Counts a purge in the [`PURGE_FENCE`] row, first in its transaction:
/// from here no runner commits a batch built before it.
fn fence(tx: &mut dyn Tx) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES ($1, 1, $2) \
         ON CONFLICT (name) DO UPDATE SET sequence = readmodel_checkpoints.sequence + 1",
        vec![PURGE_FENCE.into(), Checkpoint::START.chain_hash.into()],
    )?;
    Ok(())
}

fn purge(tx: &mut dyn Tx, subject: &Subject, erased: &[Record]) -> Result<u64, DbError> {
    fence(tx)?;
    let mut changed = match subject {
        Subject::User { organization_id, user_id } => purge_organization(tx, *organization_id, Some(*user_id))?,
        Subject::Organization { organization_id } => purge_organization(tx, *organization_id, None)?,
        Subject::Staff { staff_id } => purge_staff(tx, *staff_id)?,
    };
    for record in erased {
        changed += purge_audit_entry(tx, record)?;
        changed += purge_record_rows(tx, record)?;
    }
    Ok(changed)
}

/// Rows that copy free text or names from one record, taken again from
/// its facts: a void's or credit note's reason, a license's revocation
/// reason, a branding's display name, a Stripe refusal's message, a
/// service token's name. Each only while the row still holds that
/// record's copy.
fn purge_record_rows(tx: &mut dyn Tx, record: &Record) -> Result<u64, DbError> {
    let Some(facts) = record.erasure.as_ref().and_then(|e| e.facts.as_deref()) else { return Ok(0) };
    let Ok(Some(event)) = LedgerEvent::decode(&record.header, facts) else { return Ok(0) };
    let sequence = Value::uint(record.header.sequence)?;
    Ok(match event {
        LedgerEvent::Invoice(InvoiceEvent::InvoiceVoided(voided)) => tx.execute(
            "UPDATE rm_voided_invoices SET voided = $1 WHERE invoice_id = $2 AND sequence = $3 AND voided <> $1",
            vec![encoded(&voided), voided.invoice_id.into(), sequence],
        )?,
        LedgerEvent::Invoice(InvoiceEvent::CreditNoteIssued(note)) => {
            tx.execute(
                "UPDATE rm_credit_notes SET note = $1 WHERE invoice_id = $2 AND number = $3 AND sequence = $4 \
                 AND note <> $1",
                vec![encoded(&note), note.invoice_id.into(), Value::uint(u64::from(note.number))?, sequence.clone()],
            )? + tx.execute(
                "UPDATE rm_stripe_pending_credit_notes SET note = $1 WHERE credit_note_id = $2 AND sequence = $3 \
                 AND note <> $1",
                vec![encoded(&note), note.credit_note_id.into(), sequence],
            )?
        }
        LedgerEvent::Stripe(StripeEvent::StripeSyncRefused(refused)) => tx.execute(
            "UPDATE rm_stripe_refused SET message = $1 WHERE target = $2 AND refused_at = $3 AND message <> $1",
            vec![refused.message.into(), refused.target.into(), Value::Int(record.header.recorded_at.as_micros())],
        )?,
        LedgerEvent::License(LicenseEvent::LicenseRevoked(revoked)) => {
            let Some(id) = crate::models::stream_uuid(record, "license") else { return Ok(0) };
            update_blob::<License>(tx, "rm_licenses", "state", "id", id, |license| {
                if license.revoked.is_some() {
                    license.revoked = Some(revoked.reason.clone());
                }
            })?
        }
        LedgerEvent::Branding(BrandingEvent::BrandingSet(set)) => {
            let id = set.organization_id.0;
            update_blob::<BrandingRow>(tx, "rm_branding", "branding", "organization_id", id, |row| {
                if row.sequence == record.header.sequence {
                    row.display_name = set.display_name.clone();
                }
            })?
        }
        LedgerEvent::Staff(StaffEvent::ServiceTokenIssued(issued)) => {
            let id = issued.token_id.0;
            update_blob::<ServiceTokenRow>(tx, "rm_service_tokens", "token", "token_id", id, |row| {
                row.name = issued.name.clone();
            })?
        }
        _ => 0,
    })
}

/// Reads one row's encoded column by its id, changes it, and writes it
/// back if it changed; rows changed.
fn update_blob<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq>(
    tx: &mut dyn Tx,
    table: &str,
    column: &str,
    key: &str,
    id: uuid::Uuid,
    change: impl FnOnce(&mut T),
) -> Result<u64, DbError> {
    let rows = tx.query(&format!("SELECT {column} FROM {table} WHERE {key} = $1"), vec![id.into()])?;
    let Some(row) = rows.first() else { return Ok(0) };
    let old: T = decoded(row, 0)?;
    let mut new: T = decoded(row, 0)?;
    change(&mut new);
    if new == old {
        return Ok(0);
    }
    tx.execute(&format!("UPDATE {table} SET {column} = $1 WHERE {key} = $2"), vec![encoded(&new), id.into()])
}

/// `event` as a rebuild from the erased log applies it: encoded at its own
/// type and version, redacted by `domain::privacy::facts`, decoded again.
fn redacted<E: StoredEvent>(stream: &str, event: &E) -> Result<E, DbError> {
    let header = RecordHeader {
        sequence: 1,
        event_id: EventId(uuid::Uuid::nil()),
        stream_id: StreamId::new(stream).map_err(|e| DbError::Schema(e.to_string()))?,
        stream_revision: 1,
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        occurred_at: Timestamp::from_micros(0),
        recorded_at: Timestamp::from_micros(0),
        idempotency_key: None,
    };
    let facts = domain::privacy::facts(&header, &event.encode_payload())
        .map_err(|e| DbError::Decode(format!("redacting {}: {e}", header.event_type)))?;
    E::decode(&header.event_type, header.schema_version, &facts)
        .map_err(|e| DbError::Decode(format!("the facts of {}: {e}", header.event_type)))?
        .ok_or_else(|| DbError::Decode(format!("the facts of {} are another type", header.event_type)))
}

/// The e-mail address a rebuild keeps for `user_id` (the facts of its
/// `UserAdded`).
fn redacted_email(organization_id: OrganizationId, user_id: UserId, email: &str) -> Result<String, DbError> {
    let added = OrganizationEvent::UserAdded(UserAdded { user_id, email: email.to_owned(), role: Role::Viewer });
    match redacted(&format!("org/{organization_id}"), &added)? {
        OrganizationEvent::UserAdded(added) => Ok(added.email),
        _ => Err(DbError::Decode("the facts of UserAdded are another event".into())),
    }
}

/// The organization's row (its aggregate's users' e-mails, and for the
/// whole organization its own creation details), its users' rows and its
/// search keys; `only` one user, or all of them.
fn purge_organization(tx: &mut dyn Tx, id: OrganizationId, only: Option<UserId>) -> Result<u64, DbError> {
    let rows = tx.query("SELECT created, state FROM rm_organizations WHERE id = $1", vec![id.0.into()])?;
    let Some(row) = rows.first() else { return Ok(0) };
    let (created, state): (OrganizationCreated, Organization) = (decoded(row, 0)?, decoded(row, 1)?);
    let (mut new_created, mut new_state) = (created.clone(), state.clone());
    if only.is_none() {
        match redacted(&format!("org/{id}"), &OrganizationEvent::OrganizationCreated(created.clone()))? {
            OrganizationEvent::OrganizationCreated(facts) => new_created = facts,
            _ => return Err(DbError::Decode("the facts of OrganizationCreated are another event".into())),
        }
        new_state.name.clone_from(&new_created.name);
    }
    let mut changed = 0;
    for (user_id, user) in &mut new_state.users {
        if only.is_some_and(|only| only != *user_id) {
            continue;
        }
        user.email = redacted_email(id, *user_id, &user.email)?;
        changed += tx.execute(
            "UPDATE rm_users SET email = $1 WHERE organization_id = $2 AND user_id = $3 AND email <> $1",
            vec![user.email.as_str().into(), id.0.into(), user_id.0.into()],
        )?;
    }
    if (&new_created, &new_state) != (&created, &state) {
        changed += tx.execute(
            "UPDATE rm_organizations SET name = $1, created = $2, state = $3 WHERE id = $4",
            vec![new_created.name.as_str().into(), encoded(&new_created), encoded(&new_state), id.0.into()],
        )?;
    }
    Ok(changed + purge_search_keys(tx, id, (&created, &state), (&new_created, &new_state))?)
}

/// The customer search keys of an organization as the customers projection
/// derives them: its name's words, its domain, each user's address's domain.
fn search_keys(created: &OrganizationCreated, state: &Organization) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = name_keys(&created.name).into_iter().collect();
    keys.extend(created.domain.as_deref().and_then(domain_key));
    keys.extend(state.users.values().filter_map(|user| domain_key(&user.email)));
    keys
}

fn purge_search_keys(
    tx: &mut dyn Tx,
    id: OrganizationId,
    before: (&OrganizationCreated, &Organization),
    after: (&OrganizationCreated, &Organization),
) -> Result<u64, DbError> {
    let (old, new) = (search_keys(before.0, before.1), search_keys(after.0, after.1));
    let mut changed = 0;
    for key in old.difference(&new) {
        changed += tx.execute(
            "DELETE FROM rm_customer_search WHERE search_key = $1 AND organization_id = $2",
            vec![key.as_str().into(), id.0.into()],
        )?;
    }
    for key in new.difference(&old) {
        changed += tx.execute(
            "INSERT INTO rm_customer_search (search_key, organization_id) VALUES ($1, $2) \
             ON CONFLICT (search_key, organization_id) DO NOTHING",
            vec![key.as_str().into(), id.0.into()],
        )?;
    }
    Ok(changed)
}

/// A staff user's row: name and e-mail as the facts of their
/// `StaffUserAdded` keep them.
fn purge_staff(tx: &mut dyn Tx, staff_id: StaffId) -> Result<u64, DbError> {
    let rows = tx.query("SELECT staff FROM rm_staff WHERE staff_id = $1", vec![staff_id.0.into()])?;
    let Some(row) = rows.first() else { return Ok(0) };
    let staff: StaffRow = decoded(row, 0)?;
    let added = StaffEvent::StaffUserAdded(StaffUserAdded {
        staff_id,
        name: staff.name.clone(),
        email: staff.email.clone(),
        role: staff.role,
    });
    let StaffEvent::StaffUserAdded(facts) = redacted("staff/directory", &added)? else {
        return Err(DbError::Decode("the facts of StaffUserAdded are another event".into()));
    };
    let new = StaffRow { name: facts.name, email: facts.email, ..staff.clone() };
    if new == staff {
        return Ok(0);
    }
    tx.execute(
        "UPDATE rm_staff SET email = $1, staff = $2 WHERE staff_id = $3",
        vec![new.email.as_str().into(), encoded(&new), staff_id.0.into()],
    )
}

/// The audit entry of an erased record: its actor and address as the
/// audit projection takes them from the record as the log now holds it.
fn purge_audit_entry(tx: &mut dyn Tx, record: &Record) -> Result<u64, DbError> {
    let sequence = Value::uint(record.header.sequence)?;
    let rows = tx.query("SELECT actor, source_ip FROM rm_audit WHERE sequence = $1", vec![sequence.clone()])?;
    let Some(row) = rows.first() else { return Ok(0) };
    let event = match record.event_bytes() {
        Some(bytes) => LedgerEvent::decode(&record.header, bytes).ok().flatten(),
        None => None,
    };
    let (_, metadata) = audit::who(record, event.as_ref());
    let (actor, source_ip) = (metadata.actor, metadata.source_ip);
    if row.opt_text(0)? == actor.as_deref() && row.opt_text(1)? == source_ip.as_deref() {
        return Ok(0);
    }
    // A NULL parameter binds as an integer on PostgreSQL: NULLs are written
    // as literals.
    let set = |column: &str, value: &Option<String>, at: usize| match value {
        Some(_) => format!("{column} = ${at}"),
        None => format!("{column} = NULL"),
    };
    let sql = format!(
        "UPDATE rm_audit SET {}, {} WHERE sequence = $1",
        set("actor", &actor, 2),
        set("source_ip", &source_ip, 2 + usize::from(actor.is_some()))
    );
    let mut params = vec![sequence];
    params.extend(actor.map(Value::Text));
    params.extend(source_ip.map(Value::Text));
    tx.execute(&sql, params)
}
