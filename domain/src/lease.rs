//! The lease: what the server tells an on-premises deployment it may do,
//! signed, so the deployment can keep working offline until it expires.
//!
//! A lease is a JSON document ([`LeaseBody`]) and an Ed25519 signature by
//! the server's *lease* key over [`LEASE_DOMAIN`] ‖ the document's bytes.
//! The bytes travel base64url-encoded, so the signature covers exactly what
//! was signed, and no re-serialization can change it. The domain prefix
//! differs from the license keys', so neither can pass for the other.
//!
//! The lease binds itself to the license key (a hash of it, not the key),
//! the deployment, the client's nonce, the client's clock at the request
//! and the server's time, and never outlives the license's own end.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{LicenseId, OrganizationId, Timestamp};

/// Signed before every lease document.
pub const LEASE_DOMAIN: &[u8] = b"ledger 2026-11-29 lease v1\0";
/// How long a deployment may work offline after a validation.
pub const LEASE_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;
const KEY_BINDING_CONTEXT: &str = "ledger 2026-11-29 lease key binding v1";
/// The longest nonce and deployment id a client may send.
pub const NONCE_CHARS_MAX: usize = 128;
pub const DEPLOYMENT_ID_CHARS_MAX: usize = 128;

/// Limits as the seed's `SubscriptionLimits`, `-1` for unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseLimits {
    pub max_users: i64,
    #[serde(rename = "maxDataVolumeGB")]
    pub max_data_volume_gb: i64,
    pub max_api_calls: i64,
    pub model_size: String,
}

/// The signed document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseBody {
    /// Format version, 1.
    pub version: u32,
    pub license_id: LicenseId,
    pub organization_id: OrganizationId,
    /// [`key_binding`] of the license key the lease was issued to.
    pub key_binding: String,
    pub deployment_id: String,
    /// The client's nonce, echoed: a lease answers one request.
    pub nonce: String,
    /// The client's wall clock when it asked, as it said, if it did.
    #[serde(with = "crate::time::rfc3339::option")]
    pub client_time: Option<Timestamp>,
    /// The server's time when it answered.
    #[serde(with = "crate::time::rfc3339")]
    pub issued_at: Timestamp,
    /// Until when the deployment may work without the server.
    #[serde(with = "crate::time::rfc3339")]
    pub lease_expires_at: Timestamp,
    /// The validation code (VALID, PAST_DUE or SUPERSEDED: leases are only
    /// issued for valid answers).
    pub code: String,
    pub tier: String,
    pub limits: LeaseLimits,
    pub features: Vec<String>,
}

/// A lease as it travels: the document's bytes and their signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedLease {
    /// base64url (no padding) of the JSON document's bytes.
    pub payload: String,
    /// base64url (no padding) of the Ed25519 signature.
    pub signature: String,
}

/// Why a lease was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease is not well-formed")]
    Malformed,
    #[error("the lease's signature does not verify with this server's lease key")]
    BadSignature,
    #[error("the lease was issued to another license key")]
    OtherKey,
}

/// A hash of the license key that binds a lease to it without revealing it.
pub fn key_binding(license_key: &str) -> String {
    let hash = blake3::Hasher::new_derive_key(KEY_BINDING_CONTEXT).update(license_key.as_bytes()).finalize();
    hash.to_hex().to_string()
}

impl SignedLease {
    pub fn sign(body: &LeaseBody, key: &SigningKey) -> Self {
        let bytes = serde_json::to_vec(body).expect("a lease body serializes");
        let signature = key.sign(&[LEASE_DOMAIN, &bytes].concat());
        Self { payload: URL_SAFE_NO_PAD.encode(&bytes), signature: URL_SAFE_NO_PAD.encode(signature.to_bytes()) }
    }

    /// Checks the signature with the server's public lease key and that
    /// the lease was issued to `license_key`; returns the document.
    pub fn verify(&self, key: &VerifyingKey, license_key: &str) -> Result<LeaseBody, LeaseError> {
        let bytes = URL_SAFE_NO_PAD.decode(&self.payload).map_err(|_| LeaseError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(&self.signature).map_err(|_| LeaseError::Malformed)?;
        let signature = Signature::from_slice(&signature).map_err(|_| LeaseError::Malformed)?;
        key.verify(&[LEASE_DOMAIN, &bytes].concat(), &signature).map_err(|_| LeaseError::BadSignature)?;
        let body: LeaseBody = serde_json::from_slice(&bytes).map_err(|_| LeaseError::Malformed)?;
        if !crate::keys::constant_time_eq(body.key_binding.as_bytes(), key_binding(license_key).as_bytes()) {
            return Err(LeaseError::OtherKey);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> LeaseBody {
        LeaseBody {
            version: 1,
            license_id: LicenseId(uuid::Uuid::from_u128(1)),
            organization_id: OrganizationId(uuid::Uuid::from_u128(2)),
            key_binding: key_binding("LK1-key"),
            deployment_id: "default".into(),
            nonce: "n-1".into(),
            client_time: Some(Timestamp::from_micros(-5)),
            issued_at: Timestamp::from_micros(0),
            lease_expires_at: Timestamp::from_micros(LEASE_MICROS),
            code: "VALID".into(),
            tier: "starter".into(),
            limits: LeaseLimits {
                max_users: 5,
                max_data_volume_gb: 1000,
                max_api_calls: 10_000,
                model_size: "small".into(),
            },
            features: vec!["basic_analytics".into()],
        }
    }

    #[test]
    fn a_lease_verifies_only_unchanged_with_its_key_and_for_its_license_key() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let lease = SignedLease::sign(&body(), &key);
        assert_eq!(lease.verify(&key.verifying_key(), "LK1-key"), Ok(body()));
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&lease.payload).unwrap()).unwrap();
        assert!(
            text.contains(r#""issuedAt":"1970-01-01T00:00:00Z""#)
                && text.contains(r#""clientTime":"1969-12-31T23:59:59.999995Z""#),
            "{text}"
        );
        assert_eq!(lease.verify(&key.verifying_key(), "LK1-other"), Err(LeaseError::OtherKey));
        assert_eq!(
            lease.verify(&SigningKey::from_bytes(&[2; 32]).verifying_key(), "LK1-key"),
            Err(LeaseError::BadSignature)
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&lease.payload).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        let tampered = SignedLease { payload: URL_SAFE_NO_PAD.encode(bytes), ..lease.clone() };
        assert_eq!(tampered.verify(&key.verifying_key(), "LK1-key"), Err(LeaseError::BadSignature));
        // A license-key signature over the same bytes is not a lease signature.
        let raw = URL_SAFE_NO_PAD.decode(&lease.payload).unwrap();
        let foreign = key.sign(&[crate::keys::LICENSE_KEY_DOMAIN, &raw].concat());
        let foreign = SignedLease { signature: URL_SAFE_NO_PAD.encode(foreign.to_bytes()), ..lease };
        assert_eq!(foreign.verify(&key.verifying_key(), "LK1-key"), Err(LeaseError::BadSignature));
    }
}
