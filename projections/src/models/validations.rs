//! Validation statistics per license (the seed's `validation_count` and
//! `last_validated_at`, and the last answer): "add to" counters, so the
//! busiest records of the log cost one write each and no read.

use domain::event::LedgerEvent;
use domain::license::ValidationCode;
use domain::record::Record;
use domain::validation::ValidationEvent;
use domain::{LicenseId, Timestamp};

use super::micros;
use crate::ValidationStats;
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Table, Value};

pub const VALIDATION_STATS: Table = Table::new(
    "rm_validation_stats",
    &[
        Column::blob("license_id"),
        Column::int("count").counter(),
        Column::int("last_at"),
        Column::text("last_code"),
        Column::text("last_deployment"),
    ],
    1,
);

/// Every code, to read one back from its stored name.
const CODES: [ValidationCode; 8] = [
    ValidationCode::NotFound,
    ValidationCode::Revoked,
    ValidationCode::Expired,
    ValidationCode::Suspended,
    ValidationCode::TooManyDeployments,
    ValidationCode::Superseded,
    ValidationCode::PastDue,
    ValidationCode::Valid,
];

/// Keeps [`VALIDATION_STATS`].
pub struct Validations;

impl Projection for Validations {
    fn name(&self) -> &'static str {
        "validations-v1"
    }

    fn tables(&self) -> &'static [Table] {
        &[VALIDATION_STATS]
    }

    fn apply(&mut self, changes: &mut Changes<'_>, _: &Record, event: Option<&LedgerEvent>) -> Result<(), ApplyError> {
        if let Some(LedgerEvent::Validation(ValidationEvent::LicenseValidated(validated))) = event {
            changes.add(
                &VALIDATION_STATS,
                vec![
                    validated.license_id.0.into(),
                    Value::Int(1),
                    micros(validated.at),
                    validated.code.as_str().into(),
                    validated.deployment_id.as_str().into(),
                ],
            )?;
        }
        Ok(())
    }
}

/// A license's statistics; `None` when it was never validated.
pub async fn stats(db: &ReadModelDb, license_id: LicenseId) -> Result<Option<ValidationStats>, DbError> {
    let row = db
        .query_opt(
            "SELECT count, last_at, last_code, last_deployment FROM rm_validation_stats WHERE license_id = $1",
            vec![license_id.0.into()],
        )
        .await?;
    row.map(|row| {
        let code = row.text(2)?;
        Ok(ValidationStats {
            count: row.uint(0)?,
            last_at: Some(Timestamp::from_micros(row.int(1)?)),
            last_code: Some(
                CODES
                    .into_iter()
                    .find(|c| c.as_str() == code)
                    .ok_or_else(|| DbError::Decode(format!("{code:?} is not a validation code")))?,
            ),
            last_deployment: Some(row.text(3)?.to_owned()),
        })
    })
    .transpose()
}
