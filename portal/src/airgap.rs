//! Offline sites (issue 18 item 1): an organization admin uploads an
//! air-gapped deployment's activation request and carries back the signed
//! license file (answered as a download), and uploads the usage file the
//! deployment exported. The files are `domain::airgap`'s; every action is
//! `usecases::airgap`'s, with the portal user as the actor, as over the
//! API (`POST /api/v1/licenses/offline-activations`, `/usage/imports`).
//!
//! A refused file is shown on the page with its named reason (the API's
//! code: `offline_file_malformed`, `_altered`, `_foreign`, `_replayed`,
//! `_expired`, …) and the status the API would answer; nothing is
//! recorded. Only admins see the page; another role's post is refused
//! before its body is read.

use std::collections::BTreeSet;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::multipart::MultipartError;
use axum::extract::{Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use domain::OrganizationId;
use domain::airgap::{FILE_BYTES_MAX, SignedFile, USAGE_EXPORT_FORMAT, UsageExport};
use domain::calendar::first_of_month;
use usecases::views::billing::InvoiceStatus;

use crate::pages::{Nav, context};
use crate::session::Signed;
use crate::{Portal, PortalError};

/// The largest upload form: one file (a signed file is at most
/// `domain::airgap::FILE_BYTES_MAX`) and the CSRF token, with room for
/// the multipart framing.
pub const UPLOAD_FORM_BYTES_MAX: usize = FILE_BYTES_MAX + 4 * 1024;
/// Offline activations the page lists, at most (a key's deployments are
/// few; this bounds the page whatever an organization holds).
pub const ACTIVATIONS_LISTED_MAX: usize = 200;
/// The longest text field of an upload form (the CSRF token is 43 characters).
const FORM_TEXT_BYTES_MAX: usize = 256;
/// The file input of each form.
const REQUEST_FIELD: &str = "request";
const EXPORT_FIELD: &str = "export";

/// A deployment activated by a license file.
pub struct ActivationRow {
    pub license: String,
    pub deployment: String,
    pub public_key: String,
    pub issued: String,
    pub valid_until: String,
    /// The last export imported: its id and clock, or "none yet".
    pub last_export: String,
}

/// One day of an imported export.
pub struct DayRow {
    pub day: String,
    pub active_users: String,
    pub data_volume_gb: String,
    pub api_calls: String,
    pub training_hours: String,
    /// The deployment had reported the day: this import replaces it.
    pub replaced: bool,
    /// The day's month is invoiced: billed as a late-usage adjustment.
    pub late: bool,
}

/// What an import recorded.
pub struct ImportSummary {
    pub deployment: String,
    pub export_id: String,
    pub days: Vec<DayRow>,
    pub replaced: usize,
    pub late: usize,
    pub sequence: u64,
}

/// A refused upload: the status the API would answer, its stable code.
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl ToString) -> Self {
        Self { status, code, message: message.to_string() }
    }

    fn too_large() -> Self {
        let message = format!("The file is larger than {} KiB: it is not an offline file.", FILE_BYTES_MAX / 1024);
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    fn unreadable() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_failed", "The form could not be read.")
    }

    /// A use case's refusal, named as the API names it; anything else is
    /// the portal's error page.
    fn of(error: usecases::Error) -> Result<Self, PortalError> {
        use domain::license::LicenseError as L;
        use usecases::Error as E;
        Ok(match error {
            E::BadRequest { code, message } | E::Refused { code, message } => {
                Self::new(StatusCode::BAD_REQUEST, code, message)
            }
            E::Validation(message) => Self::new(StatusCode::BAD_REQUEST, "validation_failed", message),
            E::Usage(refused) => Self::new(StatusCode::BAD_REQUEST, "validation_failed", refused),
            E::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            E::License(refused @ L::OfflineReplayed) => {
                Self::new(StatusCode::CONFLICT, "offline_file_replayed", refused)
            }
            E::License(refused @ L::OfflineForeign) => Self::new(StatusCode::CONFLICT, "offline_file_foreign", refused),
            E::License(refused @ L::TooManyDeployments { .. }) => {
                Self::new(StatusCode::CONFLICT, "too_many_deployments", refused)
            }
            E::License(refused) => Self::new(StatusCode::CONFLICT, "conflict", refused),
            E::NotFound => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "The file names a license this organization does not hold.",
            ),
            E::RateLimited { message, .. } => Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message),
            other => return Err(other.into()),
        })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "airgap.html")]
pub struct OfflineSitesPage {
    nav: Nav,
    activations: Vec<ActivationRow>,
    imported: Option<ImportSummary>,
    refusal: Option<Refusal>,
    file_kib: usize,
}

fn time(at: domain::Timestamp) -> String {
    at.to_datetime().to_rfc3339()
}

/// The organization's deployments activated by a license file, as the
/// read models hold them once they include the user's own writes.
async fn activations(portal: &Portal, signed: &Signed) -> Result<Vec<ActivationRow>, PortalError> {
    let (ledger, caller) = (&portal.ledger, signed.caller());
    usecases::acknowledged::catch_up(ledger, Some(caller.credential()), None).await?;
    let views = usecases::queries::licenses(ledger, &caller, signed.user.organization_id).await?;
    let mut rows = Vec::new();
    for view in views {
        let license = projections::models::licenses::license(&ledger.models.db, view.id)
            .await
            .map_err(|e| PortalError::from(usecases::Error::from(e)))?;
        let Some(license) = license else { continue };
        for (deployment, grant) in &license.offline {
            if rows.len() == ACTIVATIONS_LISTED_MAX {
                return Ok(rows);
            }
            rows.push(ActivationRow {
                license: view.id.to_string(),
                deployment: deployment.clone(),
                public_key: grant.public_key.clone(),
                issued: time(grant.issued_at),
                valid_until: time(grant.valid_until),
                last_export: grant
                    .last_export
                    .as_ref()
                    .map_or_else(|| "none yet".to_owned(), |(id, at)| format!("{id} (made {})", time(*at))),
            });
        }
    }
    Ok(rows)
}

async fn page(
    portal: &Portal,
    signed: &Signed,
    imported: Option<ImportSummary>,
    refusal: Option<Refusal>,
) -> Result<Response, PortalError> {
    let status = refusal.as_ref().map_or(StatusCode::OK, |r| r.status);
    let activations = activations(portal, signed).await?;
    let page = OfflineSitesPage {
        nav: Nav::of(signed, "offline-sites"),
        activations,
        imported,
        refusal,
        file_kib: FILE_BYTES_MAX / 1024,
    };
    Ok((status, page).into_response())
}

/// The page's organization, for an admin only (as the API's roles table:
/// offline activations and imports are an admin's).
fn admin_of(signed: &Signed, org: uuid::Uuid) -> Result<OrganizationId, PortalError> {
    let org = signed.organization(org)?;
    if signed.is_admin() { Ok(org) } else { Err(PortalError::Forbidden) }
}

/// `GET /portal/orgs/{org}/offline-sites`.
pub async fn form(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
) -> Result<Response, PortalError> {
    admin_of(&signed, org)?;
    page(&portal, &signed, None, None).await
}

/// An upload form's fields.
#[derive(Default)]
struct Upload {
    csrf: String,
    file: Vec<u8>,
}

fn multipart_refusal(error: &MultipartError) -> Refusal {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE { Refusal::too_large() } else { Refusal::unreadable() }
}

/// Reads an upload form: the CSRF token and the file of `file_field`, each
/// refused past its limit without reading further.
async fn read_upload(mut multipart: Multipart, file_field: &str) -> Result<Upload, Refusal> {
    let mut upload = Upload::default();
    while let Some(mut field) = multipart.next_field().await.map_err(|e| multipart_refusal(&e))? {
        let name = field.name().unwrap_or_default().to_owned();
        let is_file = name == file_field;
        let max = if is_file { FILE_BYTES_MAX } else { FORM_TEXT_BYTES_MAX };
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_refusal(&e))? {
            if bytes.len().saturating_add(chunk.len()) > max {
                return Err(if is_file { Refusal::too_large() } else { Refusal::unreadable() });
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            _ if is_file => upload.file = bytes,
            "csrf" => upload.csrf = String::from_utf8(bytes).map_err(|_| Refusal::unreadable())?,
            _ => return Err(Refusal::unreadable()),
        }
    }
    if upload.file.is_empty() {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "validation_failed", "Choose a file to upload."));
    }
    Ok(upload)
}

/// A download's file name: the deployment id's safe characters.
fn file_name(deployment: &str) -> String {
    let safe: String = deployment
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(domain::lease::DEPLOYMENT_ID_CHARS_MAX)
        .collect();
    let safe = safe.trim_start_matches('.');
    format!("license-{}.json", if safe.is_empty() { "deployment" } else { safe })
}

/// The deployment an activation request names (the use case opened the
/// same bytes and took them).
fn requested_deployment(bytes: &[u8]) -> String {
    SignedFile::parse(bytes, domain::airgap::ACTIVATION_REQUEST_FORMAT)
        .and_then(|file| domain::airgap::ActivationRequest::open(&file))
        .map_or_else(|_| String::new(), |request| request.deployment_id)
}

/// `POST /portal/orgs/{org}/offline-sites/activate`: the license file as
/// a download, or the page with the refusal.
pub async fn activate(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    multipart: Multipart,
) -> Result<Response, PortalError> {
    admin_of(&signed, org)?;
    let upload = match read_upload(multipart, REQUEST_FIELD).await {
        Ok(upload) => upload,
        Err(refusal) => return page(&portal, &signed, None, Some(refusal)).await,
    };
    signed.check_csrf(&upload.csrf)?;
    let settings = portal.settings.usage;
    let (caller, context) = (signed.caller(), context(&signed));
    match usecases::airgap::activate_offline(&portal.ledger, &caller, &context, &upload.file, &settings).await {
        Ok(file) => {
            let disposition = format!("attachment; filename=\"{}\"", file_name(&requested_deployment(&upload.file)));
            let headers = [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ];
            Ok((headers, file.to_text()).into_response())
        }
        Err(error) => page(&portal, &signed, None, Some(Refusal::of(error)?)).await,
    }
}

/// What the log held before an import, for its summary: the days the
/// deployment had reported, the months invoiced.
struct Before {
    export: UsageExport,
    reported: BTreeSet<NaiveDate>,
    invoiced: BTreeSet<String>,
}

/// Reads [`Before`] for an export of this organization's license; `None`
/// for a file the use case will refuse anyway.
async fn before(portal: &Portal, signed: &Signed, bytes: &[u8]) -> Result<Option<Before>, PortalError> {
    let Ok(file) = SignedFile::parse(bytes, USAGE_EXPORT_FORMAT) else { return Ok(None) };
    let Ok(export) = UsageExport::open(&file) else { return Ok(None) };
    let (ledger, caller, org) = (&portal.ledger, signed.caller(), signed.user.organization_id);
    let to_error = |e| PortalError::from(usecases::Error::from(e));
    let license =
        projections::models::licenses::license(&ledger.models.db, export.license_id).await.map_err(to_error)?;
    let Some(issued) = license.and_then(|l| l.issued).filter(|i| i.organization_id == org) else { return Ok(None) };
    usecases::acknowledged::catch_up(ledger, Some(caller.credential()), None).await?;
    // An export holds at most `EXPORT_DAYS_MAX` days: a few months.
    let months: BTreeSet<NaiveDate> = export.days.iter().map(|d| first_of_month(d.day)).collect();
    let mut reported = BTreeSet::new();
    for month in months {
        let usage = projections::models::usage::month(&ledger.models.db, issued.subscription_id, month)
            .await
            .map_err(to_error)?;
        let days = usage.days.into_iter().filter(|(_, by)| by.contains_key(&export.deployment_id));
        reported.extend(days.map(|(day, _)| day));
    }
    let invoiced = usecases::billing::invoices(ledger, &caller, org)
        .await?
        .into_iter()
        .filter(|i| i.subscription_id == issued.subscription_id.0 && i.status != InvoiceStatus::Void)
        .map(|i| i.period)
        .collect();
    Ok(Some(Before { export, reported, invoiced }))
}

fn summary(before: Before, sequence: u64) -> ImportSummary {
    let days: Vec<DayRow> = before
        .export
        .days
        .iter()
        .map(|d| DayRow {
            day: d.day.to_string(),
            active_users: d.active_users.clone(),
            data_volume_gb: d.data_volume_gb.clone(),
            api_calls: d.api_calls_count.clone(),
            training_hours: d.training_hours.clone(),
            replaced: before.reported.contains(&d.day),
            late: before.invoiced.contains(&d.day.format("%Y-%m").to_string()),
        })
        .collect();
    ImportSummary {
        deployment: before.export.deployment_id,
        export_id: before.export.export_id,
        replaced: days.iter().filter(|d| d.replaced).count(),
        late: days.iter().filter(|d| d.late).count(),
        days,
        sequence,
    }
}

/// `POST /portal/orgs/{org}/offline-sites/import`: the page with what was
/// imported, or with the refusal.
pub async fn import(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    multipart: Multipart,
) -> Result<Response, PortalError> {
    admin_of(&signed, org)?;
    let upload = match read_upload(multipart, EXPORT_FIELD).await {
        Ok(upload) => upload,
        Err(refusal) => return page(&portal, &signed, None, Some(refusal)).await,
    };
    signed.check_csrf(&upload.csrf)?;
    let before = before(&portal, &signed, &upload.file).await?;
    let settings = portal.settings.usage;
    let (caller, context) = (signed.caller(), context(&signed));
    match usecases::airgap::import_usage(&portal.ledger, &caller, &context, &upload.file, &settings).await {
        Ok(imported) => {
            // The use case opened the same file: `before` is there unless
            // the license changed hands in between (then nothing to show).
            let summary = before.map(|b| summary(b, imported.sequence));
            page(&portal, &signed, summary, None).await
        }
        Err(error) => page(&portal, &signed, None, Some(Refusal::of(error)?)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_is_named_by_the_deployment_s_safe_characters() {
        assert_eq!(file_name("vault-1"), "license-vault-1.json");
        assert_eq!(file_name("a\"b/c\r\n"), "license-abc.json");
        assert_eq!(file_name("../.."), "license-deployment.json");
        assert_eq!(file_name("\"/"), "license-deployment.json");
    }
}
