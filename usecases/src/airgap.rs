//! Air-gapped sites (issue 18 item 1; the files are `domain::airgap`'s):
//! an organization admin (or the operator) turns a deployment's activation
//! request into a license file, and imports the usage the deployment
//! exported.
//!
//! Every refusal changes nothing and names its reason: a file that does not
//! parse `offline_file_malformed` (400), one whose signature does not verify
//! `offline_file_altered` (400), one of another license or deployment key
//! `offline_file_foreign` (409), one used before (same nonce or export id,
//! or older than the last accepted) `offline_file_replayed` (409), and one
//! too old `offline_file_expired` (409): an activation request more than
//! `REQUEST_AGE_DAYS_MAX` days old, an export imported more than the
//! correction window after its license file ended.
//!
//! Usage imported follows the usage reports' rules (the latest report of a
//! day and deployment replaces the earlier ones; a day already invoiced is
//! billed as a late-usage adjustment), with one difference: the correction
//! window is measured from the import, not from the reported day. Any day
//! from the deployment's first offline activation up to the end of its
//! license file may be imported, until `correction_days_max` days after
//! that end.

use chrono::NaiveDate;
use domain::airgap::{
    ACTIVATION_REQUEST_FORMAT, ActivationRequest, ExportedDay, FileError, REQUEST_AGE_DAYS_MAX, SignedFile,
    USAGE_EXPORT_FORMAT, UsageExport,
};
use domain::lease::LeaseBody;
use domain::license::{License, LicenseCommand, LicenseError, OfflineGrant, start_of_day};
use domain::usage::{Metrics, UsageReported, parse_metric};
use domain::{LicenseId, Timestamp};
use serde::Serialize;
use store::{Command, ExpectedRevision, NewEvent, Rejection};
use utoipa::ToSchema;

use crate::Ledger;
use crate::caller::{Caller, Need};
use crate::command::{ATTEMPTS_MAX, Context, load, new_event_id};
use crate::error::Error;
use crate::usage::{REPORTS_PER_DAY, UsageSettings};
use crate::views::licensing::Limits;

const DAY_MICROS: i64 = 24 * 3600 * 1_000_000;

/// The answer to an import.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageImportResponse {
    #[schema(value_type = String, format = Uuid)]
    pub license_id: LicenseId,
    pub deployment_id: String,
    pub export_id: String,
    /// How many days the export carried (each recorded as a usage report).
    pub days_imported: u32,
    pub sequence: u64,
}

/// A file refused before anything was looked up.
fn refused(error: FileError) -> Error {
    match error {
        FileError::BadSignature => Error::BadRequest { code: "offline_file_altered", message: error.to_string() },
        FileError::OtherKey => foreign("the file was issued to another license key"),
        FileError::Malformed(_) | FileError::WrongFormat(_) => {
            Error::BadRequest { code: "offline_file_malformed", message: error.to_string() }
        }
    }
}

fn foreign(message: &str) -> Error {
    Error::conflict("offline_file_foreign", message)
}

fn expired(message: String) -> Error {
    Error::conflict("offline_file_expired", message)
}

fn license_refused(error: LicenseError) -> Error {
    match error {
        LicenseError::OfflineForeign => foreign(&error.to_string()),
        LicenseError::OfflineReplayed => Error::conflict("offline_file_replayed", error.to_string()),
        other => Error::License(other),
    }
}

/// The license a file names, for a caller who administers its
/// organization, once the file's key binding is that license's key: a
/// file of another key (or a license id it does not match) is foreign.
async fn license_for(
    ledger: &Ledger,
    caller: &Caller,
    license_id: LicenseId,
    key_binding: &str,
) -> Result<(License, String), Error> {
    let license =
        projections::models::licenses::license(&ledger.models.db, license_id).await?.ok_or(Error::NotFound)?;
    let issued = license.issued.as_ref().ok_or(Error::NotFound)?;
    caller.require_org(issued.organization_id, Need::Admin)?;
    let key =
        ledger.keys.issued_license_key(issued).ok_or_else(|| foreign("the license's key is not this server's"))?;
    if !domain::keys::constant_time_eq(domain::lease::key_binding(&key).as_bytes(), key_binding.as_bytes()) {
        return Err(foreign("the file names another license key"));
    }
    Ok((license, key))
}

/// Turns an activation request into a license file: records the offline
/// activation (`OfflineActivated`, which takes a place as an activation
/// does) and answers the file, signed with the lease key, valid until the
/// key's end or `offline_license_days` days on, whichever comes first.
pub async fn activate_offline(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    bytes: &[u8],
    settings: &UsageSettings,
) -> Result<SignedFile, Error> {
    let file = SignedFile::parse(bytes, ACTIVATION_REQUEST_FORMAT).map_err(refused)?;
    let request = ActivationRequest::open(&file).map_err(refused)?;
    let (license, key) = license_for(ledger, caller, request.license_id, &request.key_binding).await?;
    let issued = license.issued.clone().ok_or(Error::NotFound)?;
    let (now, today) = (ledger.now(), ledger.today());
    if request.client_time.as_micros() < now.as_micros().saturating_sub(REQUEST_AGE_DAYS_MAX * DAY_MICROS) {
        return Err(expired(format!("the request is more than {REQUEST_AGE_DAYS_MAX} days old: make a new one")));
    }
    let subscription = projections::models::subscriptions::subscription(&ledger.models.db, issued.subscription_id)
        .await?
        .ok_or(Error::NotFound)?;
    let facts = crate::validation::subscription_facts(&subscription, today)?;
    let days = i64::from(settings.offline_license_days.min(domain::airgap::OFFLINE_LICENSE_DAYS_MAX));
    let valid_until =
        Timestamp::from_micros(now.as_micros().saturating_add(days * DAY_MICROS)).min(license.end(&facts));
    let deployment_id = request.deployment_id.clone();
    let appended = crate::command::execute(ledger, context, || async {
        let mut fresh = load::<License>(ledger, request.license_id.stream()).await?;
        let code = fresh.state.validation_code(&facts, &deployment_id, now, today);
        if !code.is_valid() {
            let message = format!("the key answers {} for this deployment: no license file", code.as_str());
            return Err(Error::conflict("license_not_valid", message));
        }
        let command = LicenseCommand::ActivateOffline {
            deployment_id: deployment_id.clone(),
            public_key: request.deployment_key.clone(),
            nonce: request.nonce.clone(),
            client_time: request.client_time,
            now,
            valid_until,
            max_deployments: facts.max_deployments,
        };
        fresh.decide(command, &()).await.map_err(license_refused)?;
        Ok(vec![fresh.into_command(context, now)])
    })
    .await?;
    // The file answers what was recorded (a retry with the same
    // Idempotency-Key answers the first activation's file again).
    let activated = appended.find(|event| match event {
        domain::event::LedgerEvent::License(domain::license::LicenseEvent::OfflineActivated(e)) => Some(e.clone()),
        _ => None,
    })?;
    let code = license.validation_code(&facts, &deployment_id, now, today);
    let limits = Limits::on(&subscription, &ledger.catalog, today).ok_or(Error::NotFound)?;
    let tier = subscription.tier_on(today).map_or("none", |t| t.tier.as_str());
    let body = LeaseBody {
        version: 1,
        license_id: request.license_id,
        organization_id: issued.organization_id,
        key_binding: domain::lease::key_binding(&key),
        deployment_id,
        nonce: activated.nonce,
        client_time: Some(activated.client_time),
        issued_at: activated.activated_at,
        lease_expires_at: activated.valid_until,
        code: if code.is_valid() { code.as_str() } else { "VALID" }.into(),
        tier: tier.into(),
        limits: limits.lease_limits(),
        features: limits.allowed_features.clone(),
        heartbeat_interval_seconds: None,
        deployment_key: Some(activated.public_key),
    };
    tracing::info!(sequence = appended.sequence, license = %body.license_id, "offline activation recorded");
    Ok(domain::airgap::sign_license_file(&body, &ledger.keys.lease))
}

/// One exported day's metrics, checked as a usage report's are (the
/// window is [`import_usage`]'s).
fn day_metrics(day: &ExportedDay, today: NaiveDate, start: NaiveDate) -> Result<Metrics, Error> {
    let value = |name: &'static str, text: &str| {
        parse_metric(name, text).map(|v| (name, v)).map_err(|e| Error::Validation(format!("{}: {e}", day.day)))
    };
    let values = [
        value("activeUsers", &day.active_users)?,
        value("dataVolumeGB", &day.data_volume_gb)?,
        value("apiCallsCount", &day.api_calls_count)?,
        value("trainingHours", &day.training_hours)?,
    ];
    Ok(domain::usage::check(values, day.day, today, start, u32::MAX)?)
}

/// Whether the export may be imported now under the deployment's license
/// file: not past the correction window after the file's end, and every
/// day within the file's reach (the first offline activation's day to the
/// file's end).
fn within_grant(
    grant: &OfflineGrant,
    export: &UsageExport,
    now: Timestamp,
    settings: &UsageSettings,
) -> Result<(), Error> {
    let window = i64::from(settings.correction_days_max).saturating_mul(DAY_MICROS);
    if now.as_micros() > grant.valid_until.as_micros().saturating_add(window) {
        return Err(expired(format!(
            "the license file ended {}, more than {} days ago: its usage can no longer be imported",
            grant.valid_until, settings.correction_days_max
        )));
    }
    let first = grant.since.to_datetime().date_naive();
    for day in &export.days {
        if day.day < first || start_of_day(day.day) >= grant.valid_until {
            return Err(Error::Validation(format!(
                "{} is outside the license file's reach ({first} to before {})",
                day.day, grant.valid_until
            )));
        }
    }
    Ok(())
}

/// Imports a usage export: each day becomes a usage report of the
/// deployment (`UsageReported`), appended with `OfflineUsageImported` on
/// the key's stream, all at once or nothing.
pub async fn import_usage(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    bytes: &[u8],
    settings: &UsageSettings,
) -> Result<UsageImportResponse, Error> {
    let file = SignedFile::parse(bytes, USAGE_EXPORT_FORMAT).map_err(refused)?;
    let export = UsageExport::open(&file).map_err(refused)?;
    let (license, _) = license_for(ledger, caller, export.license_id, &export.key_binding).await?;
    let issued = license.issued.clone().ok_or(Error::NotFound)?;
    crate::acknowledged::catch_up(ledger, context.credential, None).await?;
    let subscription = projections::models::subscriptions::subscription(&ledger.models.db, issued.subscription_id)
        .await?
        .ok_or(Error::NotFound)?;
    let (now, today) = (ledger.now(), ledger.today());
    let start = subscription.start_date.ok_or(Error::NotFound)?;
    let mut reports = Vec::with_capacity(export.days.len());
    for day in &export.days {
        if subscription.status_on(day.day).is_ended() {
            return Err(Error::conflict("license_not_valid", format!("the subscription did not cover {}", day.day)));
        }
        reports.push((day.day, day_metrics(day, today, start)?));
    }
    for _ in 0..ATTEMPTS_MAX {
        let commands =
            match import_commands(ledger, context, &export, &reports, issued.subscription_id, settings).await? {
                Ok(commands) => commands,
                Err(refusal) => return Err(refusal),
            };
        match ledger.log.append_atomic(commands).await? {
            Ok(appended) => {
                let sequence = appended.iter().map(|a| a.last_sequence).max().unwrap_or_default();
                if let Some(credential) = context.credential {
                    ledger.acknowledged.record(credential, sequence);
                }
                return Ok(UsageImportResponse {
                    license_id: export.license_id,
                    deployment_id: export.deployment_id,
                    export_id: export.export_id,
                    days_imported: u32::try_from(reports.len()).unwrap_or(u32::MAX),
                    sequence,
                });
            }
            Err(Rejection::WrongRevision { stream_id, .. }) if stream_id == export.license_id.stream() => continue,
            Err(Rejection::WrongRevision { stream_id, .. }) => {
                return Err(Error::RateLimited {
                    limit: REPORTS_PER_DAY,
                    retry_after_seconds: crate::validation::seconds_to_midnight(now, today),
                    message: format!(
                        "{stream_id} has had its {} reports: the export is refused",
                        settings.reports_per_day_max
                    ),
                });
            }
            Err(other) => return Err(Error::Internal(other.to_string())),
        }
    }
    Err(Error::conflict("conflict", "the key kept changing; try again"))
}

/// The log commands of an import, decided on the key's stream as the log
/// has it: `Err` names why the export is refused.
async fn import_commands(
    ledger: &Ledger,
    context: &Context,
    export: &UsageExport,
    reports: &[(NaiveDate, Metrics)],
    subscription_id: domain::SubscriptionId,
    settings: &UsageSettings,
) -> Result<Result<Vec<Command>, Error>, Error> {
    let now = ledger.now();
    let mut fresh = load::<License>(ledger, export.license_id.stream()).await?;
    let Some(grant) = fresh.state.offline.get(&export.deployment_id).cloned() else {
        return Ok(Err(foreign("the deployment was not activated by a license file")));
    };
    let command = LicenseCommand::ImportUsage {
        deployment_id: export.deployment_id.clone(),
        public_key: export.deployment_key.clone(),
        license_nonce: export.license_nonce.clone(),
        export_id: export.export_id.clone(),
        created_at: export.created_at,
        now,
        days: u32::try_from(reports.len()).unwrap_or(u32::MAX),
    };
    if let Err(error) = fresh.decide(command, &()).await {
        return Ok(Err(license_refused(error)));
    }
    if let Err(refusal) = within_grant(&grant, export, now, settings) {
        return Ok(Err(refusal));
    }
    let mut commands = vec![fresh.into_command(context, now)];
    for (day, metrics) in reports {
        let reported = UsageReported {
            subscription_id,
            license_id: export.license_id,
            deployment_id: export.deployment_id.clone(),
            day: *day,
            metrics: *metrics,
        };
        let event = domain::usage::UsageEvent::from(reported);
        commands.push(Command {
            stream_id: domain::usage::stream(subscription_id, *day),
            expected: ExpectedRevision::Below(settings.reports_per_day_max),
            idempotency: None,
            events: vec![NewEvent::from_event(&event, new_event_id(), now, &context.metadata)],
        });
    }
    Ok(Ok(commands))
}
