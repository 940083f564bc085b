//! Usage reports from on-premises deployments, and the usage query
//! (BILLING-RULES.md, "Usage reports").
//!
//! A report is refused, appending nothing, unless its key is known and
//! valid, its deployment is one the key activated (as validation does), the
//! key is within its rate (`reports_per_key_per_minute`, in memory, per
//! server process) and the subscription's reports for the reported day are
//! below their cap (`reports_per_day_max`, counted from the log: a day's
//! reports are one stream, appended with `ExpectedRevision::Below`, exactly
//! like a key's validations of a day).

use chrono::NaiveDate;
use domain::LicenseId;
use domain::lease::DEPLOYMENT_ID_CHARS_MAX;
use domain::license::{KeyState, License, valid_deployment_id};
use domain::notification::UsageLevel;
use domain::subscription::Subscription;
use domain::usage::{Usage, UsageReported, check};
use domain::{Metadata, OrganizationId, SubscriptionId};
use rust_decimal::Decimal;
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use crate::acknowledged::{self, Credential};
use crate::caller::{Caller, Need};
use crate::command::{load, new_event_id};
use crate::error::Error;
use crate::limits::KeyedLimiter;
use crate::views::usage::{UsageReportResponse, UsageView};
use crate::{Ledger, validation};

/// The name of the per-key rate, in a rate-limited answer: waiting lifts it.
pub const REPORTS_PER_KEY_PER_MINUTE: &str = "reports_per_key_per_minute";
/// The name of the per-day cap, in a rate-limited answer: a report for a
/// day that reached it is refused from then on, so a client must not keep
/// retrying it.
pub const REPORTS_PER_DAY: &str = "reports_per_day";

/// The limits on usage reports (README, "Usage reports").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSettings {
    /// Reports one license key may send a minute, on each server process;
    /// 0 turns the limit off (benchmarks).
    pub reports_per_key_per_minute: u32,
    /// Reports one subscription may make for one reported day, counted from
    /// the log (at least 1).
    pub reports_per_day_max: u64,
    /// How many days back a report may correct usage.
    pub correction_days_max: u32,
    /// How long a license file of an air-gapped deployment is valid
    /// (`crate::airgap`; at most `domain::airgap::OFFLINE_LICENSE_DAYS_MAX`).
    pub offline_license_days: u32,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            reports_per_key_per_minute: 60,
            reports_per_day_max: domain::usage::REPORTS_PER_DAY_DEFAULT,
            correction_days_max: domain::usage::CORRECTION_DAYS_DEFAULT,
            offline_license_days: domain::airgap::OFFLINE_LICENSE_DAYS_DEFAULT,
        }
    }
}

/// The usage reports' settings and their per-key rate limiter, whose
/// memory is bounded (`KeyedLimiter`: idle keys are swept, and past
/// `LIMITER_KEYS_MAX` keys new ones share one bucket).
pub struct UsageIntake {
    pub settings: UsageSettings,
    limiter: KeyedLimiter<LicenseId>,
}

impl UsageIntake {
    pub fn new(settings: UsageSettings) -> Self {
        let limiter = KeyedLimiter::per_minute("usage_reports_per_key", settings.reports_per_key_per_minute);
        Self { settings, limiter }
    }

    /// The per-key limiter, for sweeping and for `/metrics`.
    pub fn limiter(&self) -> &KeyedLimiter<LicenseId> {
        &self.limiter
    }
}

/// A usage report, parsed: the seed's `UsageReportRequest` plus
/// `deploymentId`. The values are as sent (checked by the report).
#[derive(Debug, Clone)]
pub struct UsageReportInput {
    pub license_key: String,
    /// `default` when absent.
    pub deployment_id: Option<String>,
    pub day: NaiveDate,
    /// `activeUsers`, `dataVolumeGB`, `apiCallsCount`, `trainingHours`.
    pub values: [(&'static str, Decimal); 4],
}

/// Records a usage report and answers the seed's `UsageReportResponse`.
pub async fn report(
    ledger: &Ledger,
    intake: &UsageIntake,
    input: UsageReportInput,
) -> Result<UsageReportResponse, Error> {
    let deployment_id = input.deployment_id.unwrap_or_else(|| "default".into());
    valid_deployment_id(&deployment_id).map_err(|_| {
        Error::Validation(format!("deploymentId must be 1 to {DEPLOYMENT_ID_CHARS_MAX} visible ASCII characters"))
    })?;
    let (license_id, _) = validation::known_license(ledger, &input.license_key).await.ok_or(Error::NotFound)?;
    let settings = intake.settings;
    intake.limiter.check(&license_id).map_err(|seconds| Error::RateLimited {
        limit: REPORTS_PER_KEY_PER_MINUTE,
        retry_after_seconds: seconds,
        message: format!("this key may report {} times a minute", settings.reports_per_key_per_minute),
    })?;
    // The month read below includes this key's earlier reports (and its
    // revocation) acknowledged by this node.
    let credential = Credential::License(license_id);
    acknowledged::catch_up(ledger, Some(credential), None).await?;
    let day = input.day;
    let (subscription_id, subscription, mut usage) = reported_for(ledger, license_id, &deployment_id, day).await?;
    let (now, today) = (ledger.now(), ledger.today());
    let start = subscription.start_date.ok_or(Error::NotFound)?;
    let metrics = check(input.values, day, today, start, settings.correction_days_max)?;
    let reported = UsageReported { subscription_id, license_id, deployment_id, day, metrics };
    let event = domain::usage::UsageEvent::from(reported.clone());
    let metadata = Metadata { actor: Some(format!("license:{license_id}")), ..Metadata::default() };
    let command = Command {
        stream_id: domain::usage::stream(subscription_id, day),
        // The day's cap holds exactly, across processes and restarts (the
        // writer checks it in order), and reports never conflict otherwise:
        // the latest for a day and deployment wins.
        expected: ExpectedRevision::Below(settings.reports_per_day_max),
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), now, &metadata)],
    };
    let appended = match ledger.log.append_one(command).await? {
        Ok(appended) => appended,
        Err(Rejection::WrongRevision { .. }) => {
            return Err(Error::RateLimited {
                limit: REPORTS_PER_DAY,
                retry_after_seconds: validation::seconds_to_midnight(now, today),
                message: format!(
                    "{day} has had its {} reports for this subscription; reports for it are refused from now on",
                    settings.reports_per_day_max
                ),
            });
        }
        Err(other) => return Err(Error::Internal(other.to_string())),
    };
    ledger.acknowledged.record(credential, appended.last_sequence);
    usage.apply(&reported, appended.last_sequence);
    Ok(acknowledgement(ledger, &subscription, &usage, day, today, appended.last_sequence))
}

/// The key's subscription and its month of usage from the read model,
/// refusing a revoked key, a day its subscription did not cover, and a
/// deployment the key has not activated.
async fn reported_for(
    ledger: &Ledger,
    license_id: LicenseId,
    deployment_id: &str,
    day: NaiveDate,
) -> Result<(SubscriptionId, Subscription, Usage), Error> {
    let (active, found) = {
        let db = &ledger.models.db;
        let license = projections::models::licenses::license(db, license_id).await?.ok_or(Error::NotFound)?;
        let issued = license.issued.as_ref().ok_or(Error::NotFound)?;
        let subscription = projections::models::subscriptions::subscription(db, issued.subscription_id)
            .await?
            .ok_or(Error::NotFound)?;
        // A subscription that has ended still takes reports for the days it
        // covered: late usage is billed as an adjustment (BILLING-RULES.md).
        if license.state_at(ledger.now()) == KeyState::Revoked || subscription.status_on(day).is_ended() {
            return Err(Error::conflict(
                "license_not_valid",
                "the key is revoked, or its subscription did not cover the reported day",
            ));
        }
        // Only the reported month's days are needed for the answer.
        let usage = projections::models::usage::month(db, issued.subscription_id, day).await?;
        (license.reports_from(deployment_id), (issued.subscription_id, subscription, usage))
    };
    // The read model may not include a validation that just activated the
    // deployment (another process's, or one a moment ago): the key's own
    // stream decides. Unknown deployments are rate-limited before this.
    if !active && !load::<License>(ledger, license_id.stream()).await?.state.reports_from(deployment_id) {
        return Err(Error::conflict(
            "deployment_not_activated",
            format!(
                "deployment {deployment_id:?} has not validated this key: validate it first (POST /api/v1/license/validate)"
            ),
        ));
    }
    Ok(found)
}

/// The seed's `UsageReportResponse`: limits as of the reported day, against
/// the month with this report, by the same rule as the usage warnings
/// e-mailed (`domain::notification::usage_levels`).
fn acknowledgement(
    ledger: &Ledger,
    subscription: &Subscription,
    usage: &Usage,
    day: NaiveDate,
    today: NaiveDate,
    sequence: u64,
) -> UsageReportResponse {
    let month = usage.month(day).total;
    let (mut approaching, mut warnings) = (Vec::new(), Vec::new());
    if let Some((spec, extra_gb)) = subscription.spec_on(&ledger.catalog, day) {
        for check in domain::notification::usage_levels(&month, spec, extra_gb) {
            match check.level {
                UsageLevel::Reached => warnings.push(check.metric.as_str()),
                UsageLevel::Approaching => approaching.push(check.metric.as_str()),
            }
        }
    }
    let next_due = today.succ_opt().expect("dates stay far from the end of time");
    UsageReportResponse {
        acknowledged: true,
        warnings_issued: warnings,
        limits_approaching: approaching,
        next_report_due: domain::license::start_of_day(next_due),
        sequence,
    }
}

/// The first day of the month a `YYYY-MM` period names.
fn month_of(period: &str) -> Result<NaiveDate, Error> {
    NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d")
        .ok()
        .filter(|_| period.len() == 7)
        .ok_or_else(|| Error::Validation("period is YYYY-MM".into()))
}

/// An organization's usage in the month `period` names (`YYYY-MM`; this
/// month when `None`): over all its subscriptions that month (an upgrade
/// keeps one; a new term after an expiry is another), each day summed.
pub async fn usage(
    ledger: &Ledger,
    caller: &Caller,
    organization_id: OrganizationId,
    period: Option<&str>,
) -> Result<UsageView, Error> {
    caller.require_org(organization_id, Need::Read)?;
    let month = match period {
        Some(period) => month_of(period)?,
        None => domain::calendar::first_of_month(ledger.today()),
    };
    let (db, sequence) = (&ledger.models.db, ledger.models.applied());
    if !projections::models::organizations::exists(db, organization_id).await? {
        return Err(Error::NotFound);
    }
    let mut usages = Vec::new();
    // An organization's subscriptions, capped by the model
    // (`SUBSCRIPTIONS_PER_ORGANIZATION_MAX`); one month of each.
    for (id, _) in projections::models::subscriptions::of_organization(db, organization_id).await? {
        usages.push(projections::models::usage::month(db, id, month).await?);
    }
    Ok(UsageView::of_usages(organization_id, month, &usages, sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u128) -> LicenseId {
        LicenseId(uuid::Uuid::from_u128(n))
    }

    fn check(intake: &UsageIntake, key: LicenseId) -> Result<(), u64> {
        intake.limiter().check(&key)
    }

    #[test]
    fn the_per_key_limit_holds_per_key() {
        let intake = UsageIntake::new(UsageSettings { reports_per_key_per_minute: 2, ..UsageSettings::default() });
        assert_eq!((check(&intake, key(1)), check(&intake, key(1))), (Ok(()), Ok(())));
        let wait = check(&intake, key(1)).unwrap_err();
        assert!((1..=30).contains(&wait), "a refill every 30 s: {wait}");
        assert_eq!(check(&intake, key(2)), Ok(()), "another key is not held back");
        let off = UsageIntake::new(UsageSettings { reports_per_key_per_minute: 0, ..UsageSettings::default() });
        assert!((0..100).all(|_| check(&off, key(1)).is_ok()));
    }

    /// Memory never grows with the number of keys: past the bound, new keys
    /// share one bucket instead of adding entries (`KeyedLimiter`).
    #[test]
    fn the_limiter_tracks_a_bounded_number_of_keys() {
        let intake = UsageIntake::new(UsageSettings::default());
        for n in 0..crate::limits::LIMITER_KEYS_MAX as u128 {
            assert_eq!(check(&intake, key(n)), Ok(()));
        }
        for n in 0..1_000 {
            let _ = check(&intake, key(u128::MAX - n));
        }
        assert_eq!(intake.limiter().len(), crate::limits::LIMITER_KEYS_MAX + 1, "the keys, and one shared bucket");
    }
}
