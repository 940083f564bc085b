//! Air-gapped sites (issue 18 item 1; the files are `domain::airgap`'s): a
//! deployment that cannot reach the server writes an activation request
//! ([`LicenseClient::write_activation_request`]), loads the license file an
//! admin got for it ([`LicenseClient::load_license_file`]) and exports its
//! usage for import on the server ([`LicenseClient::export_usage`]); none
//! of it touches the network.
//!
//! The request is kept in the state directory ([`PENDING_REQUEST_FILE`]):
//! a license file is accepted only if it verifies with a pinned lease key,
//! was issued to this license key, deployment and key pair, and answers the
//! pending request's nonce and clock. It is then stored
//! ([`LICENSE_FILE`]) and judged offline like a lease (`crate::offline`:
//! the clock set back is detected), up to its own end rather than the
//! seven-day grace: the one exception to it. Its time is measured from the
//! request's clock, so the days the request and the file took to cross the
//! gap count as used.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::Timestamp;
use domain::airgap::{
    ACTIVATION_REQUEST_FORMAT, ActivationRequest, ExportedDay, FileError, LICENSE_FILE_FORMAT, SignedFile, UsageExport,
};
use domain::lease::LeaseBody;
use ed25519_dalek::SigningKey;

use crate::offline::HeldLease;
use crate::{ClientError, Config, LeaseRejection, UsageReport, files};

/// The activation request last written, until its license file is loaded.
pub const PENDING_REQUEST_FILE: &str = "offline-request.json";
/// The license file loaded, exactly as the server signed it.
pub const LICENSE_FILE: &str = "offline-license.json";

/// Random bytes in a nonce or export id.
const ID_BYTES: usize = 16;

fn random_id() -> Result<String, ClientError> {
    let mut bytes = [0u8; ID_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| ClientError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn file_refused(error: FileError) -> ClientError {
    ClientError::LeaseRejected(match error {
        FileError::BadSignature => LeaseRejection::Lease(domain::lease::LeaseError::BadSignature),
        FileError::OtherKey => LeaseRejection::Lease(domain::lease::LeaseError::OtherKey),
        FileError::Malformed(_) | FileError::WrongFormat(_) => {
            LeaseRejection::Lease(domain::lease::LeaseError::Malformed)
        }
    })
}

/// A new activation request of this deployment, signed with its key.
pub(crate) fn activation_request(config: &Config, key: &SigningKey, public: &str) -> Result<SignedFile, ClientError> {
    let license_id = domain::keys::license_id_unverified(&config.license_key)
        .ok_or_else(|| ClientError::Config("the license key is not well-formed".into()))?;
    let request = ActivationRequest {
        version: 1,
        license_id,
        key_binding: domain::lease::key_binding(&config.license_key),
        deployment_id: config.deployment_id.clone(),
        deployment_key: public.to_owned(),
        nonce: random_id()?,
        client_time: Timestamp::from_datetime(config.time.wall()),
    };
    Ok(request.sign(key))
}

/// The pending request, as this deployment wrote it.
pub(crate) fn pending_request(config: &Config) -> Result<ActivationRequest, ClientError> {
    let bytes = files::read_optional(&config.state_dir.join(PENDING_REQUEST_FILE))?
        .ok_or(ClientError::LeaseRejected(LeaseRejection::StaleNonce))?;
    let file = SignedFile::parse(&bytes, ACTIVATION_REQUEST_FORMAT).map_err(file_refused)?;
    ActivationRequest::open(&file).map_err(file_refused)
}

/// A license file's document, once it verifies with one of the pinned
/// lease keys, was issued to this license key, deployment and key pair and
/// carries a valid code; `request`, when given, is the request it must
/// answer (its nonce and clock).
pub(crate) fn open_license_file(
    config: &Config,
    public: &str,
    bytes: &[u8],
    request: Option<&ActivationRequest>,
) -> Result<LeaseBody, ClientError> {
    let file = SignedFile::parse(bytes, LICENSE_FILE_FORMAT).map_err(file_refused)?;
    let mut last = FileError::BadSignature;
    let mut body = None;
    for key in &config.lease_public_keys {
        match domain::airgap::open_license_file(&file, key, &config.license_key) {
            Ok(opened) => {
                body = Some(opened);
                break;
            }
            Err(FileError::BadSignature) => continue,
            Err(other) => {
                last = other;
                break;
            }
        }
    }
    let body = body.ok_or_else(|| file_refused(last))?;
    let (nonce, client_time) = match request {
        Some(request) => (Some(request.nonce.as_str()), Some(request.client_time)),
        None => (None, None),
    };
    crate::license::check_body(&body, config, public, nonce, client_time)?;
    Ok(body)
}

/// A usage export of `reports` under the license file `license`, signed
/// with the deployment's key.
pub(crate) fn usage_export(
    config: &Config,
    key: &SigningKey,
    public: &str,
    license: &LeaseBody,
    reports: &[UsageReport],
) -> Result<SignedFile, ClientError> {
    let days = reports
        .iter()
        .map(|report| ExportedDay {
            day: report.reporting_period,
            active_users: report.metrics.active_users.to_string(),
            data_volume_gb: report.metrics.data_volume_gb.normalize().to_string(),
            api_calls_count: report.metrics.api_calls_count.to_string(),
            training_hours: report.metrics.training_hours.normalize().to_string(),
        })
        .collect();
    let export = UsageExport {
        version: 1,
        license_id: license.license_id,
        key_binding: domain::lease::key_binding(&config.license_key),
        deployment_id: config.deployment_id.clone(),
        deployment_key: public.to_owned(),
        license_nonce: license.nonce.clone(),
        export_id: random_id()?,
        created_at: Timestamp::from_datetime(config.time.wall()),
        days,
    };
    let file = export.sign(key);
    // What the server would refuse for its shape is refused here.
    UsageExport::open(&file).map_err(|e| ClientError::InvalidReport(e.to_string()))?;
    Ok(file)
}

/// Writes `file` to `path` atomically.
pub(crate) fn write_file(path: &Path, file: &SignedFile) -> Result<(), ClientError> {
    files::write_atomic(path, file.to_text().as_bytes())
}

/// The stored license file's document, if there is one that still
/// verifies (as a stored lease, every check but the nonce).
pub(crate) fn stored_license_file(config: &Config, public: &str) -> Result<Option<LeaseBody>, ClientError> {
    Ok(files::read_optional(&config.state_dir.join(LICENSE_FILE))?
        .and_then(|bytes| open_license_file(config, public, &bytes, None).ok()))
}

/// A license file held as a lease: valid to its own end, not the
/// configured offline grace.
pub(crate) fn held_license_file(body: LeaseBody, anchor_server_us: i64, at: std::time::Instant) -> HeldLease {
    let client_time_us = body.client_time.expect("license files are checked to carry a clientTime").as_micros();
    let expires_at_us = body.lease_expires_at.as_micros();
    HeldLease { body, client_time_us, expires_at_us, anchor_server_us, anchor_at: at }
}
