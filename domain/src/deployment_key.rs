//! Deployment identity (issue 18 item 2): each on-premises deployment holds
//! an Ed25519 key pair of its own and proves, at every validation, that it
//! holds the private key, by signing a challenge the server minted a moment
//! before.
//!
//! The exchange, in two requests:
//! 1. `POST /api/v1/license/challenge` answers a fresh challenge: 16 random
//!    bytes, its expiry (system clock, [`CHALLENGE_LIFETIME_MICROS`]) and a
//!    keyed hash of both under the server secret, base64url. It is
//!    stateless, so any server process sharing the data directory's secret
//!    accepts it.
//! 2. The validation request carries `deploymentKey` (the public key),
//!    `challenge` and `signature`, the deployment key's signature over
//!    [`PROOF_DOMAIN`] ‖ challenge ‖ 0 ‖ key binding ‖ 0 ‖ deployment id ‖
//!    0 ‖ nonce ([`proof_message`]): one challenge, for one license key,
//!    deployment and request. The server remembers each challenge it
//!    accepted until it expires, so a replayed signature is refused.
//!
//! The lease then names the public key (`LeaseBody::deployment_key`), and
//! a client accepts only a lease bound to its own key: a lease copied to
//! another machine is of no use there.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::keys::{ServerSecret, constant_time_eq};

/// Signed before every proof of a deployment key.
pub const PROOF_DOMAIN: &[u8] = b"ledger 2026-12-01 deployment proof v1\0";
/// How long a challenge may be answered after it was minted.
pub const CHALLENGE_LIFETIME_MICROS: i64 = 60 * 1_000_000;
/// The keyed hash's context of challenges (under the server secret).
const CHALLENGE_CONTEXT: &str = "ledger 2026-12-01 deployment challenge v1";
/// Random bytes of a challenge: its identity, remembered once used.
pub const CHALLENGE_ID_BYTES: usize = 16;
/// Bytes of a challenge before base64url: id, expiry (i64 BE), keyed hash.
const CHALLENGE_BYTES: usize = CHALLENGE_ID_BYTES + 8 + 32;
/// The length of a challenge's text (base64url, no padding).
pub const CHALLENGE_CHARS: usize = (CHALLENGE_BYTES * 4).div_ceil(3);
/// The length of a public key's text (base64url of 32 bytes).
pub const PUBLIC_KEY_CHARS: usize = 43;
/// The length of a signature's text (base64url of 64 bytes).
pub const SIGNATURE_CHARS: usize = 86;

/// Why a proof of a deployment key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the deployment key is not the base64url of a 32-byte Ed25519 public key")]
    MalformedKey,
    #[error("the challenge is not one this server minted")]
    ForgedChallenge,
    #[error("the challenge has expired: ask for a new one")]
    ExpiredChallenge,
    #[error("the signature is not the deployment key's over this challenge and request")]
    BadSignature,
}

/// A challenge's identity (its random bytes) and when it expires (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Challenge {
    pub id: [u8; CHALLENGE_ID_BYTES],
    pub expires_at_us: i64,
}

fn challenge_mac(secret: &ServerSecret, id: &[u8; CHALLENGE_ID_BYTES], expires_at_us: i64) -> crate::record::Hash {
    secret.keyed(CHALLENGE_CONTEXT, &[id.as_slice(), &expires_at_us.to_be_bytes()].concat())
}

/// A challenge's text: `id` (random), expiring at `expires_at_us`.
pub fn mint_challenge(secret: &ServerSecret, id: [u8; CHALLENGE_ID_BYTES], expires_at_us: i64) -> String {
    let mac = challenge_mac(secret, &id, expires_at_us);
    URL_SAFE_NO_PAD.encode([id.as_slice(), &expires_at_us.to_be_bytes(), mac.as_bytes()].concat())
}

/// A challenge this server minted and that has not expired at `now_us`.
pub fn check_challenge(secret: &ServerSecret, text: &str, now_us: i64) -> Result<Challenge, ProofError> {
    if text.len() != CHALLENGE_CHARS {
        return Err(ProofError::ForgedChallenge);
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| ProofError::ForgedChallenge)?;
    let (id, rest) = bytes.split_at(CHALLENGE_ID_BYTES);
    let (expiry, mac) = rest.split_at(8);
    let id: [u8; CHALLENGE_ID_BYTES] = id.try_into().map_err(|_| ProofError::ForgedChallenge)?;
    let expires_at_us = i64::from_be_bytes(expiry.try_into().map_err(|_| ProofError::ForgedChallenge)?);
    if !constant_time_eq(challenge_mac(secret, &id, expires_at_us).as_bytes(), mac) {
        return Err(ProofError::ForgedChallenge);
    }
    if now_us >= expires_at_us || expires_at_us - now_us > CHALLENGE_LIFETIME_MICROS {
        return Err(ProofError::ExpiredChallenge);
    }
    Ok(Challenge { id, expires_at_us })
}

/// A deployment's public key from its text (base64url, no padding).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, ProofError> {
    if text.len() != PUBLIC_KEY_CHARS {
        return Err(ProofError::MalformedKey);
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| ProofError::MalformedKey)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| ProofError::MalformedKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| ProofError::MalformedKey)
}

/// A deployment's public key as text.
pub fn public_key_text(key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// What a deployment signs: one challenge, for one license key (its
/// binding, `lease::key_binding`), deployment and request nonce.
pub fn proof_message(challenge: &str, key_binding: &str, deployment_id: &str, nonce: &str) -> Vec<u8> {
    [
        PROOF_DOMAIN,
        challenge.as_bytes(),
        b"\0",
        key_binding.as_bytes(),
        b"\0",
        deployment_id.as_bytes(),
        b"\0",
        nonce.as_bytes(),
    ]
    .concat()
}

/// The deployment's signature over [`proof_message`], base64url.
pub fn sign_proof(key: &SigningKey, challenge: &str, key_binding: &str, deployment_id: &str, nonce: &str) -> String {
    let signature = key.sign(&proof_message(challenge, key_binding, deployment_id, nonce));
    URL_SAFE_NO_PAD.encode(signature.to_bytes())
}

/// Checks a deployment's signature over [`proof_message`].
pub fn verify_proof(
    key: &VerifyingKey,
    signature: &str,
    challenge: &str,
    key_binding: &str,
    deployment_id: &str,
    nonce: &str,
) -> Result<(), ProofError> {
    if signature.len() != SIGNATURE_CHARS {
        return Err(ProofError::BadSignature);
    }
    let bytes = URL_SAFE_NO_PAD.decode(signature).map_err(|_| ProofError::BadSignature)?;
    let signature = Signature::from_slice(&bytes).map_err(|_| ProofError::BadSignature)?;
    key.verify(&proof_message(challenge, key_binding, deployment_id, nonce), &signature)
        .map_err(|_| ProofError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ServerSecret {
        ServerSecret::from_bytes([7; 32])
    }

    #[test]
    fn a_challenge_is_accepted_until_it_expires_and_only_as_minted() {
        let text = mint_challenge(&secret(), [1; 16], 1_000_000 + CHALLENGE_LIFETIME_MICROS);
        assert_eq!(text.len(), CHALLENGE_CHARS);
        let challenge = check_challenge(&secret(), &text, 1_000_000).unwrap();
        assert_eq!(challenge.id, [1; 16]);
        assert_eq!(
            check_challenge(&secret(), &text, 1_000_000 + CHALLENGE_LIFETIME_MICROS),
            Err(ProofError::ExpiredChallenge)
        );
        let other = ServerSecret::from_bytes([8; 32]);
        assert_eq!(check_challenge(&other, &text, 1_000_000), Err(ProofError::ForgedChallenge));
        let far = mint_challenge(&secret(), [1; 16], 1_000_000 + 2 * CHALLENGE_LIFETIME_MICROS);
        assert_eq!(check_challenge(&secret(), &far, 1_000_000), Err(ProofError::ExpiredChallenge));
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        bytes[17] ^= 1;
        assert_eq!(
            check_challenge(&secret(), &URL_SAFE_NO_PAD.encode(bytes), 1_000_000),
            Err(ProofError::ForgedChallenge)
        );
    }

    #[test]
    fn a_proof_verifies_only_for_its_challenge_key_deployment_and_nonce() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = parse_public_key(&public_key_text(&key.verifying_key())).unwrap();
        let signature = sign_proof(&key, "c", "k", "d", "n");
        assert_eq!(signature.len(), SIGNATURE_CHARS);
        assert_eq!(verify_proof(&public, &signature, "c", "k", "d", "n"), Ok(()));
        for (c, k, d, n) in [("c2", "k", "d", "n"), ("c", "k2", "d", "n"), ("c", "k", "d2", "n"), ("c", "k", "d", "n2")]
        {
            assert_eq!(verify_proof(&public, &signature, c, k, d, n), Err(ProofError::BadSignature));
        }
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
        assert_eq!(verify_proof(&other, &signature, "c", "k", "d", "n"), Err(ProofError::BadSignature));
        assert_eq!(parse_public_key("short"), Err(ProofError::MalformedKey));
    }
}
