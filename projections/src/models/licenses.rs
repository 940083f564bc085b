//! Licenses, the keyed hashes of their keys (the validation hot path's
//! lookup: key hash → license), and their deployments.
//!
//! The license row keeps the aggregate's state (`domain::license::License`,
//! applied by its own `apply`); deployments are rows of their own, written
//! from that state after each deployment event (active, or released with
//! the moment its place frees, or floating with the end of its lease; gone
//! once none). Floating leases are extended on the key's per-day floating
//! streams (`FloatingLeaseExtended`), which this projection applies too.

use std::collections::BTreeSet;

use cqrs_es::Aggregate;
use domain::event::LedgerEvent;
use domain::license::{License, LicenseEvent};
use domain::privacy::{LicenseKeysArchived, PrivacyEvent};
use domain::record::{Hash, Record};
use domain::validation::{FloatingLeaseExtended, ValidationEvent};
use domain::{LicenseId, OrganizationId, Timestamp};

use super::{decoded, encoded, limit_param, stream_uuid, text_order, uuid};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Row, Table};

pub const LICENSES: Table = Table::new(
    "rm_licenses",
    &[
        Column::blob("id"),
        Column::blob("organization_id").nullable(),
        Column::blob("subscription_id").nullable(),
        Column::int("issued_sequence").nullable(),
        Column::bool("revoked"),
        Column::blob("state"),
        // While superseded and not revoked: when the window ends (µs).
        Column::int("window_ends_at").nullable(),
        // When it was revoked (µs): the end of its key's validity then.
        Column::int("revoked_at").nullable(),
        // Archived by retention (`LicenseKeysArchived`): left out of the
        // organization's listings; its key validates as before.
        Column::bool("archived"),
    ],
    1,
);
pub const LICENSE_KEYS: Table =
    Table::new("rm_license_keys", &[Column::blob("key_hash"), Column::blob("license_id")], 1);
pub const DEPLOYMENTS: Table = Table::new(
    "rm_deployments",
    &[
        Column::blob("license_id"),
        Column::text("deployment_id"),
        Column::bool("active"),
        Column::int("slot_frees_at").nullable(),
        // A floating deployment (`active` false): `slot_frees_at` is the
        // end of the lease its last heartbeat got; past it, its place is free.
        Column::bool("floating"),
    ],
    2,
);

/// The most licenses of one organization a query lists: one per
/// subscription and upgrade, far fewer in practice; it bounds the query.
pub const LICENSES_PER_ORGANIZATION_MAX: usize = 1_000;
/// The most deployments of one license a query lists (a key's deployments
/// are capped by its subscription's `maxDeployments`).
pub const DEPLOYMENTS_PER_LICENSE_MAX: usize = 1_000;

/// Keeps [`LICENSES`], [`LICENSE_KEYS`] and [`DEPLOYMENTS`].
pub struct Licenses;

impl Projection for Licenses {
    fn name(&self) -> &'static str {
        "licenses-v1"
    }

    fn tables(&self) -> &'static [Table] {
        &[LICENSES, LICENSE_KEYS, DEPLOYMENTS]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        if let Some(LedgerEvent::Validation(ValidationEvent::FloatingLeaseExtended(extended))) = event {
            return extend(changes, extended);
        }
        if let Some(LedgerEvent::Privacy(PrivacyEvent::LicenseKeysArchived(archived))) = event {
            return archive(changes, archived);
        }
        let (Some(LedgerEvent::License(event)), Some(id)) = (event, stream_uuid(record, "license")) else {
            return Ok(());
        };
        let stored = changes.get(&LICENSES, &[id.into()])?;
        let (mut state, mut kept) = match &stored {
            Some(row) => (decoded::<License>(row, 5)?, Kept::of(row)?),
            None => (License::default(), Kept::default()),
        };
        let before = places(&state);
        if let LicenseEvent::LicenseIssued(issued) = event {
            changes.upsert(&LICENSE_KEYS, vec![issued.key_hash.into(), id.into()])?;
            kept.issued_sequence = Some(i64::try_from(record.header.sequence).map_err(|e| e.to_string())?);
        }
        if let LicenseEvent::LicenseKeyRehashed(rehashed) = event {
            // The hash under the secret rotated away from finds nothing.
            if let Some(issued) = &state.issued {
                changes.delete(&LICENSE_KEYS, vec![issued.key_hash.into()])?;
            }
            changes.upsert(&LICENSE_KEYS, vec![rehashed.key_hash.into(), id.into()])?;
        }
        let deployments = matches!(
            event,
            LicenseEvent::DeploymentActivated(_)
                | LicenseEvent::DeploymentReleased(_)
                | LicenseEvent::FloatingDeploymentLeased(_)
                | LicenseEvent::OfflineActivated(_)
        );
        if matches!(event, LicenseEvent::LicenseRevoked(_)) && state.revoked.is_none() {
            kept.revoked_at = Some(record.header.occurred_at.as_micros());
        }
        state.apply(event.clone());
        if deployments {
            write_deployments(changes, id, before, &state)?;
        }
        write_license(changes, id, &state, kept)?;
        Ok(())
    }
}

/// What a license's row keeps besides its state.
#[derive(Debug, Clone, Copy, Default)]
struct Kept {
    issued_sequence: Option<i64>,
    revoked_at: Option<i64>,
    archived: bool,
}

impl Kept {
    fn of(row: &Row) -> Result<Self, DbError> {
        Ok(Self { issued_sequence: row.opt_int(3)?, revoked_at: row.opt_int(7)?, archived: row.bool(8)? })
    }
}

/// Marks the listed licenses archived (a license the read models do not
/// hold is skipped).
fn archive(changes: &mut Changes<'_>, archived: &LicenseKeysArchived) -> Result<(), ApplyError> {
    for license_id in &archived.licenses {
        let Some(row) = changes.get(&LICENSES, &[license_id.0.into()])? else { continue };
        let state = decoded::<License>(&row, 5)?;
        let kept = Kept { archived: true, ..Kept::of(&row)? };
        write_license(changes, license_id.0, &state, kept)?;
    }
    Ok(())
}

/// A heartbeat's extension (the key's per-day floating stream,
/// `domain::validation::FloatingLeaseExtended`): the license's state and
/// its deployment's row.
fn extend(changes: &mut Changes<'_>, extended: &FloatingLeaseExtended) -> Result<(), ApplyError> {
    let id = extended.license_id.0;
    let Some(row) = changes.get(&LICENSES, &[id.into()])? else { return Ok(()) };
    let (mut state, kept) = (decoded::<License>(&row, 5)?, Kept::of(&row)?);
    let before = places(&state);
    state.extend_floating(extended);
    write_deployments(changes, id, before, &state)?;
    write_license(changes, id, &state, kept)?;
    Ok(())
}

/// The deployments a license's rows name: active, released and still
/// holding a place, floating.
fn places(state: &License) -> BTreeSet<String> {
    state.deployments.iter().chain(state.released.keys()).chain(state.floating.keys()).cloned().collect()
}

fn write_license(changes: &mut Changes<'_>, id: uuid::Uuid, state: &License, kept: Kept) -> Result<(), DbError> {
    let issued = state.issued.as_ref();
    changes.upsert(
        &LICENSES,
        vec![
            id.into(),
            issued.map(|i| i.organization_id.0).into(),
            issued.map(|i| i.subscription_id.0).into(),
            kept.issued_sequence.into(),
            state.revoked.is_some().into(),
            encoded(state),
            open_window(state).map(Timestamp::as_micros).into(),
            kept.revoked_at.into(),
            kept.archived.into(),
        ],
    )
}

/// Writes the rows of every deployment the license mentioned before or
/// mentions now (at most its cap, twice), as its state now says.
fn write_deployments(
    changes: &mut Changes<'_>,
    id: uuid::Uuid,
    before: BTreeSet<String>,
    state: &License,
) -> Result<(), DbError> {
    let now = places(state);
    for deployment in before.union(&now) {
        let active = state.deployments.contains(deployment);
        let floating = !active && state.floating.contains_key(deployment);
        let frees_at = match floating {
            true => state.floating.get(deployment),
            false => state.released.get(deployment),
        };
        let frees_at = frees_at.copied().map(Timestamp::as_micros);
        if active || frees_at.is_some() {
            let row = vec![id.into(), deployment.as_str().into(), active.into(), frees_at.into(), floating.into()];
            changes.upsert(&DEPLOYMENTS, row)?;
        } else {
            changes.delete(&DEPLOYMENTS, vec![id.into(), deployment.as_str().into()])?;
        }
    }
    Ok(())
}

fn decode(row: &Row) -> Result<(LicenseId, License), DbError> {
    Ok((LicenseId(uuid(row, 0)?), decoded(row, 1)?))
}

/// One license's state.
pub async fn license(db: &ReadModelDb, id: LicenseId) -> Result<Option<License>, DbError> {
    let row = db.query_opt("SELECT state FROM rm_licenses WHERE id = $1", vec![id.0.into()]).await?;
    row.map(|row| decoded(&row, 0)).transpose()
}

/// The license a key's keyed hash names, and its state: the validation hot
/// path (`LedgerState::license_keys`, then `licenses`), one indexed join.
pub async fn by_key_hash(db: &ReadModelDb, key_hash: Hash) -> Result<Option<(LicenseId, License)>, DbError> {
    let row = db
        .query_opt(
            "SELECT l.id, l.state FROM rm_license_keys k JOIN rm_licenses l ON l.id = k.license_id \
             WHERE k.key_hash = $1",
            vec![key_hash.into()],
        )
        .await?;
    row.as_ref().map(decode).transpose()
}

/// An organization's licenses not archived, in the order they were issued
/// (`OrganizationEntry::licenses`), at most [`LICENSES_PER_ORGANIZATION_MAX`].
pub async fn of_organization(
    db: &ReadModelDb,
    organization_id: OrganizationId,
) -> Result<Vec<(LicenseId, License)>, DbError> {
    let rows = db
        .query(
            "SELECT id, state FROM rm_licenses WHERE organization_id = $1 AND issued_sequence IS NOT NULL \
             AND NOT archived ORDER BY issued_sequence LIMIT $2",
            vec![organization_id.0.into(), limit_param(LICENSES_PER_ORGANIZATION_MAX)],
        )
        .await?;
    rows.iter().map(decode).collect()
}

/// One deployment of a license: active, or released and still holding
/// its place until `slot_frees_at`, or floating with a lease (possibly
/// run out) until `slot_frees_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRow {
    pub deployment_id: String,
    pub active: bool,
    pub slot_frees_at: Option<Timestamp>,
    pub floating: bool,
}

/// A license's deployments in id order, at most [`DEPLOYMENTS_PER_LICENSE_MAX`].
pub async fn deployments(db: &ReadModelDb, license_id: LicenseId) -> Result<Vec<DeploymentRow>, DbError> {
    let sql = format!(
        "SELECT deployment_id, active, slot_frees_at, floating FROM rm_deployments WHERE license_id = $1 \
         ORDER BY {} LIMIT $2",
        text_order(db, "deployment_id")
    );
    let rows = db.query(&sql, vec![license_id.0.into(), limit_param(DEPLOYMENTS_PER_LICENSE_MAX)]).await?;
    rows.iter()
        .map(|row| {
            Ok(DeploymentRow {
                deployment_id: row.text(0)?.to_owned(),
                active: row.bool(1)?,
                slot_frees_at: row.opt_int(2)?.map(Timestamp::from_micros),
                floating: row.bool(3)?,
            })
        })
        .collect()
}

/// When a license's supersede window ends, while it is open (superseded,
/// not revoked).
fn open_window(state: &License) -> Option<Timestamp> {
    state.superseded.as_ref().filter(|_| state.revoked.is_none()).map(|s| s.window_ends_at)
}

/// The licenses whose supersede window is open and ended at `now` or
/// before, earliest first, at most `size` (capped at
/// [`super::PAGE_ITEMS_MAX`]): what the scheduler revokes, read by the
/// `rm_licenses_by_window_end` index, so a read costs what is due, not
/// every license ever issued.
pub async fn windows_ended(db: &ReadModelDb, now: Timestamp, size: usize) -> Result<Vec<LicenseId>, DbError> {
    let rows = db
        .query(
            "SELECT id FROM rm_licenses WHERE window_ends_at <= $1 ORDER BY window_ends_at, id LIMIT $2",
            vec![now.as_micros().into(), limit_param(super::page_limit(size))],
        )
        .await?;
    rows.iter().map(|row| Ok(LicenseId(uuid(row, 0)?))).collect()
}

/// A license not archived yet, as retention reads it: its state and when
/// it was revoked, if it was.
#[derive(Debug, Clone, PartialEq)]
pub struct UnarchivedLicense {
    pub id: LicenseId,
    pub state: License,
    pub revoked_at: Option<Timestamp>,
}

/// Issued licenses not archived, in id order after `after`, at most `size`
/// (capped at [`super::PAGE_ITEMS_MAX`]): what the retention job reads
/// looking for keys to archive.
pub async fn unarchived_page(
    db: &ReadModelDb,
    after: Option<LicenseId>,
    size: usize,
) -> Result<Vec<UnarchivedLicense>, DbError> {
    let after = after.map_or_else(Vec::new, |id| id.0.as_bytes().to_vec());
    let rows = db
        .query(
            "SELECT id, state, revoked_at FROM rm_licenses WHERE id > $1 AND NOT archived \
             AND issued_sequence IS NOT NULL ORDER BY id LIMIT $2",
            vec![after.into(), limit_param(super::page_limit(size))],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let (id, state) = decode(row)?;
            Ok(UnarchivedLicense { id, state, revoked_at: row.opt_int(2)?.map(Timestamp::from_micros) })
        })
        .collect()
}
