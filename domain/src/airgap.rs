//! Air-gapped sites (issue 18 item 1): the three files that carry an
//! activation and a site's usage across an air gap (ARCHITECTURE.md,
//! "Air-gapped sites", documents them field by field).
//!
//! Each file is one JSON object, [`SignedFile`]: its `format` name, the
//! base64url bytes of a JSON document (`payload`) and an Ed25519 signature
//! over a domain prefix ‖ those bytes (`signature`), so the signature
//! covers exactly what was signed, as leases do (`crate::lease`).
//!
//! - An **activation request** ([`ActivationRequest`]) is written by a
//!   deployment that cannot reach the server and signed with its own
//!   deployment key (`crate::deployment_key`), whose public half it names:
//!   whoever uploads it cannot change it, nor forge one for a key pair they
//!   do not hold.
//! - A **license file** is the server's answer: a lease document
//!   ([`LeaseBody`]) signed with the lease key under its own prefix
//!   ([`LICENSE_FILE_DOMAIN`]), bound to the deployment's public key and the
//!   request's nonce, valid at most to the key's end and at most
//!   [`OFFLINE_LICENSE_DAYS_MAX`] days. Neither a lease nor a license file
//!   passes for the other.
//! - A **usage export** ([`UsageExport`]) is the site's usage of some days,
//!   signed with the deployment key, naming the license file it ran under
//!   (its nonce) and an export id of its own: an export is imported once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDate;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::lease::{LeaseBody, LeaseError, NONCE_CHARS_MAX, bound_to, sign_document, verify_document};
use crate::{LicenseId, Timestamp};

/// The `format` of an activation request file.
pub const ACTIVATION_REQUEST_FORMAT: &str = "ledger-offline-activation-request";
/// The `format` of a license file.
pub const LICENSE_FILE_FORMAT: &str = "ledger-offline-license";
/// The `format` of a usage export file.
pub const USAGE_EXPORT_FORMAT: &str = "ledger-usage-export";
/// Signed (by the deployment key) before an activation request's bytes.
pub const ACTIVATION_REQUEST_DOMAIN: &[u8] = b"ledger 2026-12-01 offline activation request v1\0";
/// Signed (by the lease key) before a license file's bytes.
pub const LICENSE_FILE_DOMAIN: &[u8] = b"ledger 2026-12-01 offline license file v1\0";
/// Signed (by the deployment key) before a usage export's bytes.
pub const USAGE_EXPORT_DOMAIN: &[u8] = b"ledger 2026-12-01 usage export v1\0";
/// The largest file of any of the three kinds, in bytes (an export of
/// [`EXPORT_DAYS_MAX`] days is about a third of it).
pub const FILE_BYTES_MAX: usize = 48 * 1024;
/// The most days one usage export may carry: a license file's longest
/// validity and a correction window on top.
pub const EXPORT_DAYS_MAX: usize = 130;
/// How long a license file is valid unless configured
/// (`--offline-license-days`), and the most it may be configured to.
pub const OFFLINE_LICENSE_DAYS_DEFAULT: u32 = 90;
pub const OFFLINE_LICENSE_DAYS_MAX: u32 = 90;
/// An activation request older than this (by its own clock, against the
/// server's) is refused as expired: make a new one.
pub const REQUEST_AGE_DAYS_MAX: i64 = 30;
/// Each metric's text in an export is at most this long.
const METRIC_CHARS_MAX: usize = 32;

/// A file as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedFile {
    /// [`ACTIVATION_REQUEST_FORMAT`], [`LICENSE_FILE_FORMAT`] or [`USAGE_EXPORT_FORMAT`].
    pub format: String,
    /// base64url (no padding) of the JSON document's bytes.
    pub payload: String,
    /// base64url (no padding) of the Ed25519 signature over domain ‖ bytes.
    pub signature: String,
}

/// Why a file is refused, before anything of the ledger is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("the file is not well-formed: {0}")]
    Malformed(String),
    #[error("the file is not a {0} file")]
    WrongFormat(&'static str),
    #[error("the file's signature does not verify: it was altered, or signed by another key")]
    BadSignature,
    #[error("the file was issued to another license key")]
    OtherKey,
}

impl From<LeaseError> for FileError {
    fn from(error: LeaseError) -> Self {
        match error {
            LeaseError::Malformed => FileError::Malformed("payload or signature".into()),
            LeaseError::BadSignature => FileError::BadSignature,
            LeaseError::OtherKey => FileError::OtherKey,
        }
    }
}

impl SignedFile {
    /// A file of `format` from its bytes (at most [`FILE_BYTES_MAX`]).
    pub fn parse(bytes: &[u8], format: &'static str) -> Result<Self, FileError> {
        if bytes.len() > FILE_BYTES_MAX {
            return Err(FileError::Malformed(format!("larger than {FILE_BYTES_MAX} bytes")));
        }
        let file: SignedFile = serde_json::from_slice(bytes).map_err(|e| FileError::Malformed(e.to_string()))?;
        if file.format != format {
            return Err(FileError::WrongFormat(format));
        }
        Ok(file)
    }

    /// The file as written to disk: JSON and a newline.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a file serializes");
        text.push('\n');
        text
    }

    /// The document, not yet verified: to learn which key must verify it.
    fn unverified<T: for<'de> Deserialize<'de>>(&self) -> Result<T, FileError> {
        let bytes = URL_SAFE_NO_PAD.decode(&self.payload).map_err(|_| FileError::Malformed("payload".into()))?;
        serde_json::from_slice(&bytes).map_err(|e| FileError::Malformed(e.to_string()))
    }

    fn signed<T: Serialize>(format: &'static str, domain: &[u8], body: &T, key: &SigningKey) -> Self {
        let (payload, signature) = sign_document(domain, body, key);
        Self { format: format.into(), payload, signature }
    }
}

/// A nonce or export id: 1 to 128 characters of A-Z a-z 0-9 - _ (as a
/// validation's nonce).
pub fn valid_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= NONCE_CHARS_MAX
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn deployment_key_of(text: &str) -> Result<VerifyingKey, FileError> {
    crate::deployment_key::parse_public_key(text).map_err(|_| FileError::Malformed("deploymentKey".into()))
}

fn check_fields(deployment_id: &str, tokens: &[(&str, &str)]) -> Result<(), FileError> {
    crate::license::valid_deployment_id(deployment_id).map_err(|_| FileError::Malformed("deploymentId".into()))?;
    match tokens.iter().find(|(_, token)| !valid_token(token)) {
        Some((name, _)) => Err(FileError::Malformed(format!("{name}: 1 to {NONCE_CHARS_MAX} of A-Z a-z 0-9 - _"))),
        None => Ok(()),
    }
}

/// What a deployment that cannot reach the server asks: a license file for
/// its key pair, answering its nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActivationRequest {
    /// Format version, 1.
    pub version: u32,
    /// The license the key names (its id is readable from the key).
    pub license_id: LicenseId,
    /// `lease::key_binding` of the license key: the key's hash, not the key.
    pub key_binding: String,
    pub deployment_id: String,
    /// The deployment's public key (base64url), which signs the request.
    pub deployment_key: String,
    /// Fresh for each request; the license file echoes it.
    pub nonce: String,
    /// The deployment's clock when it wrote the request.
    #[serde(with = "crate::time::rfc3339")]
    pub client_time: Timestamp,
}

impl ActivationRequest {
    /// The request, signed with the deployment's key (whose public half it names).
    pub fn sign(&self, key: &SigningKey) -> SignedFile {
        SignedFile::signed(ACTIVATION_REQUEST_FORMAT, ACTIVATION_REQUEST_DOMAIN, self, key)
    }

    /// The request in `file`, once its fields are well-formed and its
    /// signature verifies with the deployment key it names.
    pub fn open(file: &SignedFile) -> Result<Self, FileError> {
        let body: Self = file.unverified()?;
        if body.version != 1 {
            return Err(FileError::Malformed(format!("version {} (this server reads 1)", body.version)));
        }
        let key = deployment_key_of(&body.deployment_key)?;
        let body: Self = verify_document(ACTIVATION_REQUEST_DOMAIN, &file.payload, &file.signature, &key)?;
        check_fields(&body.deployment_id, &[("nonce", &body.nonce)])?;
        Ok(body)
    }
}

/// The server's license file for a deployment: `body` (a lease document
/// naming the deployment's key and the request's nonce) signed with the
/// lease key under [`LICENSE_FILE_DOMAIN`].
pub fn sign_license_file(body: &LeaseBody, lease_key: &SigningKey) -> SignedFile {
    SignedFile::signed(LICENSE_FILE_FORMAT, LICENSE_FILE_DOMAIN, body, lease_key)
}

/// A license file's document, once its signature verifies with
/// `lease_key` and it was issued to `license_key`. Its binding to the
/// deployment's key and nonce and its validity are the client's to check.
pub fn open_license_file(
    file: &SignedFile,
    lease_key: &VerifyingKey,
    license_key: &str,
) -> Result<LeaseBody, FileError> {
    if file.format != LICENSE_FILE_FORMAT {
        return Err(FileError::WrongFormat(LICENSE_FILE_FORMAT));
    }
    let body: LeaseBody = verify_document(LICENSE_FILE_DOMAIN, &file.payload, &file.signature, lease_key)?;
    bound_to(&body.key_binding, license_key)?;
    Ok(body)
}

/// One day of a site's usage, as the usage report's metrics (decimal text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportedDay {
    pub day: NaiveDate,
    pub active_users: String,
    #[serde(rename = "dataVolumeGB")]
    pub data_volume_gb: String,
    pub api_calls_count: String,
    pub training_hours: String,
}

/// A site's usage, exported for import on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageExport {
    /// Format version, 1.
    pub version: u32,
    pub license_id: LicenseId,
    /// `lease::key_binding` of the license key.
    pub key_binding: String,
    pub deployment_id: String,
    /// The deployment's public key (base64url), which signs the export.
    pub deployment_key: String,
    /// The nonce of the license file the site ran under.
    pub license_nonce: String,
    /// Fresh for each export: an export is imported once.
    pub export_id: String,
    /// The deployment's clock when it exported: each import must be newer
    /// than the last imported from the deployment.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    /// At most [`EXPORT_DAYS_MAX`] days, each at most once.
    pub days: Vec<ExportedDay>,
}

impl UsageExport {
    /// The export, signed with the deployment's key.
    pub fn sign(&self, key: &SigningKey) -> SignedFile {
        SignedFile::signed(USAGE_EXPORT_FORMAT, USAGE_EXPORT_DOMAIN, self, key)
    }

    /// The export in `file`, once its fields are well-formed and bounded and
    /// its signature verifies with the deployment key it names.
    pub fn open(file: &SignedFile) -> Result<Self, FileError> {
        let body: Self = file.unverified()?;
        if body.version != 1 {
            return Err(FileError::Malformed(format!("version {} (this server reads 1)", body.version)));
        }
        let key = deployment_key_of(&body.deployment_key)?;
        let body: Self = verify_document(USAGE_EXPORT_DOMAIN, &file.payload, &file.signature, &key)?;
        check_fields(&body.deployment_id, &[("licenseNonce", &body.license_nonce), ("exportId", &body.export_id)])?;
        if body.days.is_empty() || body.days.len() > EXPORT_DAYS_MAX {
            return Err(FileError::Malformed(format!("days: 1 to {EXPORT_DAYS_MAX}")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for day in &body.days {
            if !seen.insert(day.day) {
                return Err(FileError::Malformed(format!("days: {} twice", day.day)));
            }
            let texts = [&day.active_users, &day.data_volume_gb, &day.api_calls_count, &day.training_hours];
            if texts.iter().any(|t| t.len() > METRIC_CHARS_MAX) {
                return Err(FileError::Malformed(format!("days: a metric of {} is too long", day.day)));
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment_key::public_key_text;

    fn request(key: &SigningKey) -> ActivationRequest {
        ActivationRequest {
            version: 1,
            license_id: LicenseId(uuid::Uuid::from_u128(1)),
            key_binding: crate::lease::key_binding("LK1-key"),
            deployment_id: "vault-1".into(),
            deployment_key: public_key_text(&key.verifying_key()),
            nonce: "n-1".into(),
            client_time: Timestamp::from_micros(5),
        }
    }

    fn altered(file: &SignedFile) -> SignedFile {
        let mut bytes = URL_SAFE_NO_PAD.decode(&file.payload).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap().replace("vault-1", "vault-2");
        bytes = text.into_bytes();
        SignedFile { payload: URL_SAFE_NO_PAD.encode(bytes), ..file.clone() }
    }

    #[test]
    fn a_request_opens_only_as_signed_by_the_key_it_names() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let file = request(&key).sign(&key);
        let parsed = SignedFile::parse(file.to_text().as_bytes(), ACTIVATION_REQUEST_FORMAT).unwrap();
        assert_eq!(ActivationRequest::open(&parsed), Ok(request(&key)));
        assert_eq!(ActivationRequest::open(&altered(&file)), Err(FileError::BadSignature));
        let stranger = SigningKey::from_bytes(&[4; 32]);
        assert_eq!(ActivationRequest::open(&request(&key).sign(&stranger)), Err(FileError::BadSignature));
        assert_eq!(
            SignedFile::parse(file.to_text().as_bytes(), USAGE_EXPORT_FORMAT),
            Err(FileError::WrongFormat(USAGE_EXPORT_FORMAT))
        );
        let big = vec![b' '; FILE_BYTES_MAX + 1];
        assert!(matches!(SignedFile::parse(&big, ACTIVATION_REQUEST_FORMAT), Err(FileError::Malformed(_))));
        let bad_nonce = ActivationRequest { nonce: "a b".into(), ..request(&key) }.sign(&key);
        assert!(matches!(ActivationRequest::open(&bad_nonce), Err(FileError::Malformed(_))));
    }

    #[test]
    fn a_license_file_is_no_lease_and_a_lease_no_license_file() {
        let lease_key = SigningKey::from_bytes(&[1; 32]);
        let body = crate::lease::tests::body();
        let file = sign_license_file(&body, &lease_key);
        assert_eq!(open_license_file(&file, &lease_key.verifying_key(), "LK1-key"), Ok(body.clone()));
        assert_eq!(open_license_file(&file, &lease_key.verifying_key(), "LK1-other"), Err(FileError::OtherKey));
        let as_lease = crate::lease::SignedLease { payload: file.payload.clone(), signature: file.signature.clone() };
        assert_eq!(as_lease.verify(&lease_key.verifying_key(), "LK1-key"), Err(LeaseError::BadSignature));
        let lease = crate::lease::SignedLease::sign(&body, &lease_key);
        let as_file = SignedFile { payload: lease.payload, signature: lease.signature, ..file };
        assert_eq!(open_license_file(&as_file, &lease_key.verifying_key(), "LK1-key"), Err(FileError::BadSignature));
    }

    #[test]
    fn an_export_is_bounded_and_opens_only_unchanged() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let day = |d: u32| ExportedDay {
            day: NaiveDate::from_ymd_opt(2026, 12, d).unwrap(),
            active_users: "3".into(),
            data_volume_gb: "1.5".into(),
            api_calls_count: "10".into(),
            training_hours: "0".into(),
        };
        let export = UsageExport {
            version: 1,
            license_id: LicenseId(uuid::Uuid::from_u128(1)),
            key_binding: crate::lease::key_binding("LK1-key"),
            deployment_id: "vault-1".into(),
            deployment_key: public_key_text(&key.verifying_key()),
            license_nonce: "n-1".into(),
            export_id: "e-1".into(),
            created_at: Timestamp::from_micros(5),
            days: vec![day(1), day(2)],
        };
        assert_eq!(UsageExport::open(&export.sign(&key)), Ok(export.clone()));
        assert_eq!(UsageExport::open(&altered(&export.sign(&key))), Err(FileError::BadSignature));
        let twice = UsageExport { days: vec![day(1), day(1)], ..export.clone() };
        assert!(matches!(UsageExport::open(&twice.sign(&key)), Err(FileError::Malformed(_))));
        let none = UsageExport { days: vec![], ..export };
        assert!(matches!(UsageExport::open(&none.sign(&key)), Err(FileError::Malformed(_))));
    }
}
