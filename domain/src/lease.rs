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
//!
//! A refusal ("not valid": revoked, expired, suspended, too many
//! deployments, not found) is signed the same way with the same key under
//! its own prefix ([`REFUSAL_DOMAIN`], [`SignedRefusal`]), bound to the
//! same key hash, deployment and nonce, so a client acts only on a refusal
//! the server made for this very request: a man in the middle can keep a
//! deployment from reaching the server, never switch it off.
//!
//! The server announces its next lease key signed by the current one
//! ([`NEXT_KEY_DOMAIN`], [`sign_next_key`]), so a client learns a key only
//! from the key it already trusts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{LicenseId, OrganizationId, Timestamp};

/// Signed before every lease document.
pub const LEASE_DOMAIN: &[u8] = b"ledger 2026-11-29 lease v1\0";
/// Signed before every refusal document.
pub const REFUSAL_DOMAIN: &[u8] = b"ledger 2026-11-29 refusal v1\0";
/// Signed (by the current lease key) before the current and the next
/// lease public keys (32 bytes each).
pub const NEXT_KEY_DOMAIN: &[u8] = b"ledger 2026-11-29 next lease key v1\0";
/// How long a deployment may work offline after a validation.
pub const LEASE_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;
const KEY_BINDING_CONTEXT: &str = "ledger 2026-11-29 lease key binding v1";
/// The longest nonce and deployment id a client may send.
pub const NONCE_CHARS_MAX: usize = 128;
pub const DEPLOYMENT_ID_CHARS_MAX: usize = 128;

/// The latest moment a lease issued at `issued_at` may reach: seven days
/// offline ([`LEASE_MICROS`]), before the license's own end is considered.
pub fn longest_end(issued_at: Timestamp) -> Timestamp {
    Timestamp::from_micros(issued_at.as_micros().saturating_add(LEASE_MICROS))
}

/// When a lease issued at `issued_at` ends: seven days later, never past
/// `license_end`, the license's own end (its term's end, or its supersede
/// window's): a lease never outlives its license (BILLING-RULES.md,
/// "License keys and validation"). A license already over gets a lease
/// that has already ended.
pub fn expires_at(issued_at: Timestamp, license_end: Timestamp) -> Timestamp {
    longest_end(issued_at).min(license_end)
}

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
    /// A floating deployment's (`crate::floating`): send a heartbeat this
    /// often; its lease ends when its place frees. Absent for a fixed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_seconds: Option<u32>,
    /// The public key of the deployment that proved it holds its private
    /// key (`crate::deployment_key`), base64url; absent when the request
    /// presented none. A client accepts only a lease bound to its own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_key: Option<String>,
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

/// Signs `body`'s JSON bytes under `domain`: (payload, signature), base64url.
pub(crate) fn sign_document<T: Serialize>(domain: &[u8], body: &T, key: &SigningKey) -> (String, String) {
    let bytes = serde_json::to_vec(body).expect("a signed document serializes");
    let signature = key.sign(&[domain, &bytes].concat());
    (URL_SAFE_NO_PAD.encode(&bytes), URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// Checks a document's signature under `domain` and reads it.
pub(crate) fn verify_document<T: for<'de> Deserialize<'de>>(
    domain: &[u8],
    payload: &str,
    signature: &str,
    key: &VerifyingKey,
) -> Result<T, LeaseError> {
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LeaseError::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| LeaseError::Malformed)?;
    let signature = Signature::from_slice(&signature).map_err(|_| LeaseError::Malformed)?;
    key.verify(&[domain, &bytes].concat(), &signature).map_err(|_| LeaseError::BadSignature)?;
    serde_json::from_slice(&bytes).map_err(|_| LeaseError::Malformed)
}

pub(crate) fn bound_to(binding: &str, license_key: &str) -> Result<(), LeaseError> {
    if crate::keys::constant_time_eq(binding.as_bytes(), key_binding(license_key).as_bytes()) {
        Ok(())
    } else {
        Err(LeaseError::OtherKey)
    }
}

impl SignedLease {
    pub fn sign(body: &LeaseBody, key: &SigningKey) -> Self {
        let (payload, signature) = sign_document(LEASE_DOMAIN, body, key);
        Self { payload, signature }
    }

    /// Checks the signature with the server's public lease key and that
    /// the lease was issued to `license_key`; returns the document.
    pub fn verify(&self, key: &VerifyingKey, license_key: &str) -> Result<LeaseBody, LeaseError> {
        let body: LeaseBody = verify_document(LEASE_DOMAIN, &self.payload, &self.signature, key)?;
        bound_to(&body.key_binding, license_key)?;
        Ok(body)
    }
}

/// A signed "not valid": what the server answered one validation request
/// (this key, deployment and nonce) when it refused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusalBody {
    /// Format version, 1.
    pub version: u32,
    /// [`key_binding`] of the license key the request presented.
    pub key_binding: String,
    pub deployment_id: String,
    /// The request's nonce, echoed (empty when it sent none).
    pub nonce: String,
    /// The validation code: REVOKED, EXPIRED, SUSPENDED,
    /// TOO_MANY_DEPLOYMENTS, NOT_FOUND, …
    pub code: String,
    /// The server's time when it answered.
    #[serde(with = "crate::time::rfc3339")]
    pub issued_at: Timestamp,
}

/// A refusal as it travels, like a [`SignedLease`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedRefusal {
    /// base64url (no padding) of the JSON document's bytes.
    pub payload: String,
    /// base64url (no padding) of the Ed25519 signature.
    pub signature: String,
}

impl SignedRefusal {
    pub fn sign(body: &RefusalBody, key: &SigningKey) -> Self {
        let (payload, signature) = sign_document(REFUSAL_DOMAIN, body, key);
        Self { payload, signature }
    }

    /// Checks the signature with the server's public lease key and that
    /// the refusal answers a request for `license_key`; returns the document.
    pub fn verify(&self, key: &VerifyingKey, license_key: &str) -> Result<RefusalBody, LeaseError> {
        let body: RefusalBody = verify_document(REFUSAL_DOMAIN, &self.payload, &self.signature, key)?;
        bound_to(&body.key_binding, license_key)?;
        Ok(body)
    }
}

/// The current lease key's signature announcing `next` as the next lease
/// key: Ed25519 over [`NEXT_KEY_DOMAIN`] ‖ current public key ‖ next public key.
pub fn sign_next_key(current: &SigningKey, next: &VerifyingKey) -> [u8; 64] {
    crate::keys::announce_next_key(NEXT_KEY_DOMAIN, current, next)
}

/// Whether `signature` is `current`'s announcement of `next` ([`sign_next_key`]).
pub fn verify_next_key(current: &VerifyingKey, next: &VerifyingKey, signature: &[u8]) -> bool {
    crate::keys::verify_next_key_announcement(NEXT_KEY_DOMAIN, current, next, signature)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn refusal() -> RefusalBody {
        RefusalBody {
            version: 1,
            key_binding: key_binding("LK1-key"),
            deployment_id: "default".into(),
            nonce: "n-1".into(),
            code: "REVOKED".into(),
            issued_at: Timestamp::from_micros(0),
        }
    }

    #[test]
    fn a_refusal_verifies_only_with_its_key_for_its_license_key_and_is_no_lease() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let refusal = SignedRefusal::sign(&refusal(), &key);
        assert_eq!(refusal.verify(&key.verifying_key(), "LK1-key"), Ok(super::tests::refusal()));
        assert_eq!(refusal.verify(&key.verifying_key(), "LK1-other"), Err(LeaseError::OtherKey));
        let other = SigningKey::from_bytes(&[2; 32]).verifying_key();
        assert_eq!(refusal.verify(&other, "LK1-key"), Err(LeaseError::BadSignature));
        // Neither document passes for the other, though the key is the same.
        let as_lease = SignedLease { payload: refusal.payload.clone(), signature: refusal.signature.clone() };
        assert_eq!(as_lease.verify(&key.verifying_key(), "LK1-key"), Err(LeaseError::BadSignature));
        let lease = SignedLease::sign(&body(), &key);
        let as_refusal = SignedRefusal { payload: lease.payload, signature: lease.signature };
        assert_eq!(as_refusal.verify(&key.verifying_key(), "LK1-key"), Err(LeaseError::BadSignature));
    }

    #[test]
    fn a_next_key_is_announced_only_by_the_current_key() {
        let (current, next) = (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]).verifying_key());
        let signature = sign_next_key(&current, &next);
        assert!(verify_next_key(&current.verifying_key(), &next, &signature));
        let stranger = SigningKey::from_bytes(&[3; 32]);
        assert!(!verify_next_key(&stranger.verifying_key(), &next, &signature));
        assert!(!verify_next_key(&current.verifying_key(), &stranger.verifying_key(), &signature));
        assert!(!verify_next_key(&current.verifying_key(), &next, &sign_next_key(&stranger, &next)));
        assert!(!verify_next_key(&current.verifying_key(), &next, &signature[..63]));
    }

    pub(crate) fn body() -> LeaseBody {
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
            heartbeat_interval_seconds: None,
            deployment_key: None,
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
