//! Releasing a deployment of a license key (docs/API.md: an organization
//! admin's). A released deployment's place stays taken until the last lease
//! it was given ends, so releasing and activating in turn hands out no more
//! leases than the key's `maxDeployments`.

use chrono::NaiveDate;
use domain::event::{LedgerEvent, StoredEvent};
use domain::license::{License, LicenseCommand, LicenseEvent};
use domain::validation::{LicenseValidated, VALIDATIONS_PER_DAY_MAX, ValidationEvent};
use domain::{LicenseId, Timestamp};

use crate::Ledger;
use crate::caller::{Caller, Need};
use crate::command::{self, Context, load};
use crate::error::Error;
use crate::limits::KeyedLimiter;
use crate::views::licensing::ReleaseResponse;

/// The name of the per-key hourly limit on releases, in a rate-limited
/// answer.
pub const RELEASES_PER_LICENSE_PER_HOUR: &str = "releases_per_license_per_hour";

/// Releases `deployment_id` of a key (organization admin, or the operator).
/// Each release is an event, so a key's releases are limited by
/// `releases` (per hour). Another organization's key is not found.
pub async fn release(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    releases: &KeyedLimiter<LicenseId>,
    license_id: LicenseId,
    deployment_id: &str,
) -> Result<ReleaseResponse, Error> {
    let license = projections::models::licenses::license(&ledger.models.db, license_id).await?;
    let organization_id = license.and_then(|l| l.issued).map(|i| i.organization_id);
    caller.require_org(organization_id.ok_or(Error::NotFound)?, Need::Admin)?;
    releases.check(&license_id).map_err(|seconds| Error::RateLimited {
        limit: RELEASES_PER_LICENSE_PER_HOUR,
        retry_after_seconds: seconds,
        message: "too many releases of this key this hour".into(),
    })?;
    let appended = command::execute(ledger, context, || async {
        let mut license = load::<License>(ledger, license_id.stream()).await?;
        let (now, today) = (ledger.now(), ledger.today());
        let last_lease_ends = last_lease_end(ledger, license_id, deployment_id, today).await?;
        let release =
            LicenseCommand::ReleaseDeployment { deployment_id: deployment_id.to_owned(), now, last_lease_ends };
        license.decide(release, &()).await?;
        Ok(vec![license.into_command(context, now)])
    })
    .await?;
    let slot_frees_at = appended.find(|e| match e {
        LedgerEvent::License(LicenseEvent::DeploymentReleased(r)) => Some(r.slot_frees_at),
        _ => None,
    })?;
    Ok(ReleaseResponse { sequence: appended.sequence, slot_frees_at })
}

/// Days of a key's validations that may hold a running lease: a lease
/// lasts at most `LEASE_MICROS` (seven days), so the days before cannot.
const LEASE_DAYS_MAX: u64 = (domain::lease::LEASE_MICROS as u64).div_ceil(24 * 3600 * 1_000_000);

/// When the last lease given to `deployment_id` of a key ends, from the
/// key's validations of the last days, newest day first. Each day's stream
/// holds at most `VALIDATIONS_PER_DAY_MAX` events.
async fn last_lease_end(
    ledger: &Ledger,
    license_id: LicenseId,
    deployment_id: &str,
    today: NaiveDate,
) -> Result<Option<Timestamp>, Error> {
    for back in 0..=LEASE_DAYS_MAX {
        let Some(day) = today.checked_sub_days(chrono::Days::new(back)) else { break };
        let stream = domain::validation::stream(license_id, day);
        let records = ledger.log.read_stream(&stream, 1, VALIDATIONS_PER_DAY_MAX as usize).await?;
        let validations: Vec<LicenseValidated> = records
            .iter()
            .filter_map(|r| {
                let payload = r.event_bytes()?;
                match ValidationEvent::decode(&r.header.event_type, r.header.schema_version, payload) {
                    Ok(Some(ValidationEvent::LicenseValidated(validated))) => Some(validated),
                    _ => None,
                }
            })
            .collect();
        if let Some(end) = domain::license::last_lease_end(&validations, deployment_id) {
            return Ok(Some(end));
        }
    }
    Ok(None)
}
