//! White-label branding ("branding-v1"): each organization's current
//! branding from its `branding/{organization}` stream (`BrandingSet`,
//! `BrandingRemoved`; the last one counts).
//!
//! A row keeps the display name, the colour and the logo's digest, size
//! and the sequence of the record whose event holds the logo's bytes,
//! never the bytes themselves: rows stay small (the runner's row cache
//! holds up to `ROW_CACHE_ROWS_MAX` of them), and the logo is read from
//! the log by that sequence (`usecases::branding::logo`). A rebuild from
//! the log writes the same rows.

use domain::OrganizationId;
use domain::branding::BrandingEvent;
use domain::event::LedgerEvent;
use domain::record::Record;
use serde::{Deserialize, Serialize};

use super::{decoded, encoded};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Table};

pub const BRANDING: Table = Table::new("rm_branding", &[Column::blob("organization_id"), Column::blob("branding")], 1);

/// The projection's name (its checkpoint's).
pub const NAME: &str = "branding-v1";

/// Where an organization's logo is: its digest, its size, and the record
/// whose `BrandingSet` holds its PNG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoRef {
    pub digest: String,
    pub width: u32,
    pub height: u32,
    pub sequence: u64,
}

/// An organization's branding as the read model keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandingRow {
    pub organization_id: OrganizationId,
    pub display_name: String,
    pub primary_color: String,
    pub logo: Option<LogoRef>,
    pub set_at: domain::Timestamp,
    /// The sequence of the `BrandingSet` record.
    pub sequence: u64,
}

/// The organization a branding event belongs to.
pub fn organization_of(event: &BrandingEvent) -> OrganizationId {
    match event {
        BrandingEvent::BrandingSet(set) => set.organization_id,
        BrandingEvent::BrandingRemoved(removed) => removed.organization_id,
    }
}

/// Keeps [`BRANDING`].
pub struct Branding;

impl Projection for Branding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [Table] {
        &[BRANDING]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        let Some(LedgerEvent::Branding(event)) = event else { return Ok(()) };
        let sequence = record.header.sequence;
        match event {
            BrandingEvent::BrandingSet(set) => {
                let row = BrandingRow {
                    organization_id: set.organization_id,
                    display_name: set.display_name.clone(),
                    primary_color: set.primary_color.clone(),
                    logo: set.logo.as_ref().map(|logo| LogoRef {
                        digest: logo.digest(),
                        width: logo.width,
                        height: logo.height,
                        sequence,
                    }),
                    set_at: set.at,
                    sequence,
                };
                changes.upsert(&BRANDING, vec![set.organization_id.0.into(), encoded(&row)])?;
            }
            BrandingEvent::BrandingRemoved(removed) => {
                changes.delete(&BRANDING, vec![removed.organization_id.0.into()])?;
            }
        }
        Ok(())
    }
}

/// An organization's branding, if set.
pub async fn branding(db: &ReadModelDb, organization_id: OrganizationId) -> Result<Option<BrandingRow>, DbError> {
    let row = db
        .query_opt("SELECT branding FROM rm_branding WHERE organization_id = $1", vec![organization_id.0.into()])
        .await?;
    row.map(|row| decoded(&row, 0)).transpose()
}
