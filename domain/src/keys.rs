//! Secrets shown to callers: license keys and API tokens.
//!
//! Neither is ever stored. Each is *derived* from a server secret and data
//! in its event, so an idempotent retry (or the onboarding e-mail) can show
//! it again, and only a keyed hash of it is written to the log:
//! - a license key is `LK1-` and base64url(payload ‖ Ed25519 signature),
//!   payload = version 1 ‖ license id ‖ 16 random bytes from the event,
//!   signed under the domain prefix [`LICENSE_KEY_DOMAIN`] with the
//!   license-key signing key. Ed25519 signatures are deterministic, so the
//!   same event gives the same key; without the private key nobody can
//!   make one, and the on-premises client can check one with the public key;
//! - an API token is `lt1_` and base64url(token id ‖ a MAC of it under the
//!   server secret).
//!
//! Lookups compare keyed hashes in constant time ([`constant_time_eq`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::record::Hash;
use crate::{LicenseId, TokenId};

pub const LICENSE_KEY_PREFIX: &str = "LK1-";
pub const API_TOKEN_PREFIX: &str = "lt1_";
/// Signed before every license-key payload, so no other signature of the
/// server (leases, checkpoints) can pass for a key.
pub const LICENSE_KEY_DOMAIN: &[u8] = b"ledger 2026-11-29 license key v1\0";
const LICENSE_KEY_HASH_CONTEXT: &str = "ledger 2026-11-29 license key hash v1";
const API_TOKEN_MAC_CONTEXT: &str = "ledger 2026-11-29 api token mac v1";
const API_TOKEN_HASH_CONTEXT: &str = "ledger 2026-11-29 api token hash v1";
const SECRET_ID_CONTEXT: &str = "ledger 2026-12-01 server secret id v1";
const PAYLOAD_BYTES: usize = 1 + 16 + 16;
/// The longest text that can be a license key or token; longer input is
/// refused before any decoding.
pub const SECRET_TEXT_BYTES_MAX: usize = 256;

/// The server's secret for keyed hashes and derivations (32 random bytes,
/// created on first start, kept in the data directory).
#[derive(Clone)]
pub struct ServerSecret([u8; 32]);

impl ServerSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret's public name: a keyed hash of nothing under it, kept in
    /// the log by a rotation (`LicenseKeyRehashed`, `ApiTokenRehashed`,
    /// `ServerSecretRotated`); it tells nothing of the secret.
    pub fn id(&self) -> Hash {
        self.keyed(SECRET_ID_CONTEXT, b"")
    }

    pub(crate) fn keyed(&self, context: &str, data: &[u8]) -> Hash {
        let key = blake3::derive_key(context, &self.0);
        Hash(*blake3::keyed_hash(&key, data).as_bytes())
    }
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(…)")
    }
}

/// The license key for a license id and the random bytes of its event.
pub fn license_key(signing: &SigningKey, license_id: LicenseId, nonce: [u8; 16]) -> String {
    let mut payload = [0u8; PAYLOAD_BYTES];
    payload[0] = 1;
    payload[1..17].copy_from_slice(license_id.0.as_bytes());
    payload[17..].copy_from_slice(&nonce);
    let signature = signing.sign(&[LICENSE_KEY_DOMAIN, &payload].concat());
    let mut bytes = payload.to_vec();
    bytes.extend_from_slice(&signature.to_bytes());
    format!("{LICENSE_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The license id a key names, if the key is well-formed and signed by
/// `verifying`. Anything else (wrong length, prefix, encoding, signature)
/// is `None`, with no detail that would help guessing.
pub fn verify_license_key(verifying: &VerifyingKey, key: &str) -> Option<LicenseId> {
    if key.len() > SECRET_TEXT_BYTES_MAX {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(key.strip_prefix(LICENSE_KEY_PREFIX)?).ok()?;
    if bytes.len() != PAYLOAD_BYTES + 64 || bytes[0] != 1 {
        return None;
    }
    let (payload, signature) = bytes.split_at(PAYLOAD_BYTES);
    let signature = Signature::from_slice(signature).ok()?;
    verifying.verify(&[LICENSE_KEY_DOMAIN, payload].concat(), &signature).ok()?;
    let id: [u8; 16] = payload[1..17].try_into().ok()?;
    Some(LicenseId(uuid::Uuid::from_bytes(id)))
}

/// The license id a key names, read without checking its signature: for
/// a client that holds the key but not the server's signing key (its
/// air-gapped activation request names the license, `crate::airgap`). The
/// server trusts nothing of it: it finds the license by the id and compares
/// its key's binding.
pub fn license_id_unverified(key: &str) -> Option<LicenseId> {
    if key.len() > SECRET_TEXT_BYTES_MAX {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(key.strip_prefix(LICENSE_KEY_PREFIX)?).ok()?;
    if bytes.len() != PAYLOAD_BYTES + 64 || bytes[0] != 1 {
        return None;
    }
    let id: [u8; 16] = bytes[1..17].try_into().ok()?;
    Some(LicenseId(uuid::Uuid::from_bytes(id)))
}

/// What the log keeps of a license key.
pub fn license_key_hash(secret: &ServerSecret, key: &str) -> Hash {
    secret.keyed(LICENSE_KEY_HASH_CONTEXT, key.as_bytes())
}

/// The license key of an issued license, derived again from its event's
/// random bytes with whichever of `signers` (the current signing key, then
/// the retired ones) made the key whose hash the event kept: a key issued
/// before a rotation is shown as it was issued. `None` when no signer
/// makes it (a signing key that was lost).
pub fn issued_license_key<'a>(
    signers: impl IntoIterator<Item = &'a SigningKey>,
    secret: &ServerSecret,
    license_id: LicenseId,
    nonce: [u8; 16],
    key_hash: &Hash,
) -> Option<String> {
    signers
        .into_iter()
        .map(|signer| license_key(signer, license_id, nonce))
        .find(|key| constant_time_eq(license_key_hash(secret, key).as_bytes(), key_hash.as_bytes()))
}

/// Signed before the current license-key signing key's announcement of the
/// next one.
pub const NEXT_LICENSE_SIGNING_KEY_DOMAIN: &[u8] = b"ledger 2026-12-01 next license-key signing key v1\0";

/// The current key's announcement of the next key of one purpose: Ed25519
/// over `domain` ‖ current public key ‖ next public key, so a client learns
/// the next key only through the key it trusts.
pub fn announce_next_key(domain: &[u8], current: &SigningKey, next: &VerifyingKey) -> [u8; 64] {
    current.sign(&[domain, current.verifying_key().as_bytes(), next.as_bytes()].concat()).to_bytes()
}

/// Whether `signature` is `current`'s announcement of `next` under `domain`
/// ([`announce_next_key`]).
pub fn verify_next_key_announcement(
    domain: &[u8],
    current: &VerifyingKey,
    next: &VerifyingKey,
    signature: &[u8],
) -> bool {
    let Ok(signature) = Signature::from_slice(signature) else { return false };
    current.verify(&[domain, current.as_bytes(), next.as_bytes()].concat(), &signature).is_ok()
}

/// The API token of a token id.
pub fn api_token(secret: &ServerSecret, token_id: TokenId) -> String {
    let mac = secret.keyed(API_TOKEN_MAC_CONTEXT, token_id.0.as_bytes());
    let mut bytes = token_id.0.as_bytes().to_vec();
    bytes.extend_from_slice(mac.as_bytes());
    format!("{API_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The token id a token names, if it is one of ours (its MAC checks).
pub fn verify_api_token(secret: &ServerSecret, token: &str) -> Option<TokenId> {
    if token.len() > SECRET_TEXT_BYTES_MAX {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token.strip_prefix(API_TOKEN_PREFIX)?).ok()?;
    let id: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    let token_id = TokenId(uuid::Uuid::from_bytes(id));
    constant_time_eq(api_token(secret, token_id), token).then_some(token_id)
}

/// The token id a token names, if it has a token's shape, its MAC not
/// checked: a token issued under a server secret rotated away from carries
/// that secret's MAC, and is known by its stored hash alone
/// ([`api_token_hash`] under the current secret, `ledger keys rehash-secret`).
pub fn api_token_id(token: &str) -> Option<TokenId> {
    if token.len() > SECRET_TEXT_BYTES_MAX {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token.strip_prefix(API_TOKEN_PREFIX)?).ok()?;
    if bytes.len() != 16 + 32 {
        return None;
    }
    let id: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    Some(TokenId(uuid::Uuid::from_bytes(id)))
}

/// What the log keeps of an API token.
pub fn api_token_hash(secret: &ServerSecret, token: &str) -> Hash {
    secret.keyed(API_TOKEN_HASH_CONTEXT, token.as_bytes())
}

/// Compares two secrets' texts or hashes without leaking, through timing,
/// where they first differ. Every lookup of a presented secret ends here.
pub fn constant_time_eq(a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (a.as_ref(), b.as_ref());
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signing(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn license_keys_are_deterministic_signed_and_domain_separated() {
        let id = LicenseId(uuid::Uuid::from_u128(42));
        let key = license_key(&signing(1), id, [9; 16]);
        assert!(key.starts_with(LICENSE_KEY_PREFIX));
        assert_eq!(key, license_key(&signing(1), id, [9; 16]), "derivable again for a retry");
        assert_ne!(key, license_key(&signing(1), id, [8; 16]));
        assert_eq!(verify_license_key(&signing(1).verifying_key(), &key), Some(id));
        assert_eq!(verify_license_key(&signing(2).verifying_key(), &key), None, "another server's key");
        // One changed character anywhere breaks it.
        for at in [5, 40, key.len() - 1] {
            let mut bytes = key.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            assert_eq!(verify_license_key(&signing(1).verifying_key(), &String::from_utf8(bytes).unwrap()), None);
        }
        // A signature of the same payload without the domain prefix fails.
        let bytes = URL_SAFE_NO_PAD.decode(&key[4..]).unwrap();
        let bare = signing(1).sign(&bytes[..PAYLOAD_BYTES]);
        let forged = [&bytes[..PAYLOAD_BYTES], &bare.to_bytes()[..]].concat();
        let forged = format!("{LICENSE_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(forged));
        assert_eq!(verify_license_key(&signing(1).verifying_key(), &forged), None);
        assert_eq!(verify_license_key(&signing(1).verifying_key(), &"LK1-".repeat(100)), None);
    }

    #[test]
    fn an_issued_key_is_derived_with_the_signer_that_made_its_hash() {
        let secret = ServerSecret::from_bytes([7; 32]);
        let id = LicenseId(uuid::Uuid::from_bytes([4; 16]));
        let (old, new) = (signing(1), signing(2));
        let issued_before = license_key(&old, id, [9; 16]);
        let hash = license_key_hash(&secret, &issued_before);
        // After a rotation the current key comes first: the old key's hash
        // still picks the old key.
        assert_eq!(issued_license_key([&new, &old], &secret, id, [9; 16], &hash), Some(issued_before));
        assert_eq!(issued_license_key([&new], &secret, id, [9; 16], &hash), None, "its signer lost");
        assert_eq!(issued_license_key([&new, &old], &secret, id, [8; 16], &hash), None, "other random bytes");
        let other_secret = ServerSecret::from_bytes([6; 32]);
        assert_eq!(issued_license_key([&old], &other_secret, id, [9; 16], &hash), None);
    }

    #[test]
    fn a_next_key_announcement_is_bound_to_its_domain_and_both_keys() {
        let (current, next) = (signing(1), signing(2).verifying_key());
        let signature = announce_next_key(NEXT_LICENSE_SIGNING_KEY_DOMAIN, &current, &next);
        let domain = NEXT_LICENSE_SIGNING_KEY_DOMAIN;
        assert!(verify_next_key_announcement(domain, &current.verifying_key(), &next, &signature));
        assert!(!verify_next_key_announcement(
            crate::lease::NEXT_KEY_DOMAIN,
            &current.verifying_key(),
            &next,
            &signature
        ));
        assert!(!verify_next_key_announcement(domain, &signing(3).verifying_key(), &next, &signature));
        assert!(!verify_next_key_announcement(
            domain,
            &current.verifying_key(),
            &signing(3).verifying_key(),
            &signature
        ));
        assert!(!verify_next_key_announcement(domain, &current.verifying_key(), &next, &signature[..63]));
    }

    #[test]
    fn api_tokens_check_their_mac_and_hash_under_the_secret() {
        let secret = ServerSecret::from_bytes([3; 32]);
        let id = TokenId(uuid::Uuid::from_u128(7));
        let token = api_token(&secret, id);
        assert_eq!(verify_api_token(&secret, &token), Some(id));
        assert_eq!(verify_api_token(&ServerSecret::from_bytes([4; 32]), &token), None);
        assert_eq!(verify_api_token(&secret, &token[..token.len() - 1]), None);
        assert_ne!(api_token_hash(&secret, &token), license_key_hash(&secret, &token), "distinct contexts");
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"ab", b"abc")
        );
    }
}
