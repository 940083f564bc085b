//! Signed checkpoints: the server's signed statement of what the log held.
//!
//! A checkpoint is a text note in the style of C2SP's `tlog-checkpoint`
//! and `signed-note` formats (exact bytes in ARCHITECTURE.md, "Signed
//! checkpoints"):
//!
//! ```text
//! <origin>
//! <size: the last sequence, decimal>
//! <Merkle root of the first `size` records, base64>
//! chain <chain hash after record `size`, base64>
//! time <when it was signed, RFC 3339 UTC>
//!
//! — <origin> <base64(key id (4 bytes) ‖ Ed25519 signature (64 bytes))>
//! ```
//!
//! The signature covers [`CHECKPOINT_DOMAIN`] ‖ the body (every line up
//! to and including the `time` line's newline), so no other signature of
//! the server's keys can pass for a checkpoint. An auditor who keeps
//! checkpoints can later prove the log still extends them (a consistency
//! proof), and a customer that one record is in them (an inclusion proof).
//!
//! The server keeps the checkpoints it signs at an interval in the log
//! itself, as [`CheckpointSigned`] on the stream [`CHECKPOINT_STREAM`]. A
//! new signing key is announced there too ([`CheckpointKeyRotated`]),
//! signed by the key it replaces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::record::Hash;

/// Signed before every checkpoint body.
pub const CHECKPOINT_DOMAIN: &[u8] = b"ledger 2026-11-29 checkpoint v1\0";
/// Signed before a key rotation's old and new public keys.
pub const KEY_ROTATION_DOMAIN: &[u8] = b"ledger 2026-11-29 checkpoint key rotation v1\0";
/// BLAKE3 context of a signature line's key id.
pub const CONTEXT_KEY_ID: &str = "ledger 2026-11-29 checkpoint key id v1";
/// The stream the server keeps its checkpoints and key rotations on.
pub const CHECKPOINT_STREAM: &str = "checkpoint/log";
/// The longest note accepted, signatures included.
pub const NOTE_BYTES_MAX: usize = 8 * 1024;
/// The longest origin line.
pub const ORIGIN_BYTES_MAX: usize = 256;
/// What begins a signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// A signature line: the key name, and the key id ‖ signature (68 bytes).
pub type SignatureLine<'a> = (&'a str, [u8; 68]);

/// What a checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log; the signature line names its key by it.
    pub origin: String,
    /// The number of records covered: the last sequence.
    pub size: u64,
    /// The Merkle root of the first `size` records.
    pub root: Hash,
    /// The chain hash after record `size`.
    pub chain: Hash,
    /// When it was signed.
    pub time: Timestamp,
}

/// A checkpoint that could not be read, or whose signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the note is malformed: {0}")]
    Malformed(String),
    #[error("no signature of the expected key (key id {key_id}) over this checkpoint")]
    NoSignature { key_id: String },
    #[error("the signature of key id {key_id} does not verify")]
    BadSignature { key_id: String },
}

fn malformed<T>(why: impl Into<String>) -> Result<T, CheckpointError> {
    Err(CheckpointError::Malformed(why.into()))
}

/// The 4-byte id a signature line names its key by: BLAKE3 under
/// [`CONTEXT_KEY_ID`] of the key name ‖ `0x0A` ‖ `0x01` (Ed25519) ‖ the
/// 32-byte public key, truncated (C2SP's shape, with BLAKE3 for SHA-256).
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let hash = blake3::Hasher::new_derive_key(CONTEXT_KEY_ID)
        .update(name.as_bytes())
        .update(b"\n\x01")
        .update(key.as_bytes())
        .finalize();
    let mut id = [0; 4];
    id.copy_from_slice(&hash.as_bytes()[..4]);
    id
}

impl Checkpoint {
    /// The signed body: five lines, each ending in `\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\nchain {}\ntime {}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root.0),
            STANDARD.encode(self.chain.0),
            self.time.to_rfc3339()
        )
    }

    /// The whole signed note.
    pub fn sign(&self, key: &SigningKey) -> Result<String, CheckpointError> {
        check_origin(&self.origin)?;
        let body = self.body();
        let signature = key.sign(&[CHECKPOINT_DOMAIN, body.as_bytes()].concat());
        let mut blob = key_id(&self.origin, &key.verifying_key()).to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!("{body}\n{SIGNATURE_PREFIX}{} {}\n", self.origin, STANDARD.encode(blob)))
    }

    /// Reads a note and checks that `key` signed it. Other signature lines
    /// (a witness's, say) are allowed and ignored.
    pub fn verify(note: &str, key: &VerifyingKey) -> Result<Self, CheckpointError> {
        let (checkpoint, body, signatures) = Self::parse(note)?;
        let id = key_id(&checkpoint.origin, key);
        let key_id_hex = id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut found = false;
        for (name, blob) in signatures {
            if name != checkpoint.origin || blob[..4] != id {
                continue;
            }
            found = true;
            let signature = Signature::from_bytes(blob[4..].try_into().expect("68-byte blobs"));
            if key.verify(&[CHECKPOINT_DOMAIN, body.as_bytes()].concat(), &signature).is_ok() {
                return Ok(checkpoint);
            }
        }
        Err(if found {
            CheckpointError::BadSignature { key_id: key_id_hex }
        } else {
            CheckpointError::NoSignature { key_id: key_id_hex }
        })
    }

    /// Reads a note without checking any signature: what it states, its
    /// body, and its signature lines (name, key id ‖ signature). Anything
    /// not exactly in the format is refused.
    pub fn parse(note: &str) -> Result<(Self, &str, Vec<SignatureLine<'_>>), CheckpointError> {
        if note.len() > NOTE_BYTES_MAX {
            return malformed(format!("longer than {NOTE_BYTES_MAX} bytes"));
        }
        let Some((body, signatures)) = note.split_once("\n\n") else {
            return malformed("no blank line between the body and the signatures");
        };
        let body = &note[..body.len() + 1];
        let lines: Vec<&str> = body[..body.len() - 1].split('\n').collect();
        let [origin, size, root, chain, time] = lines[..] else {
            return malformed(format!("the body has {} lines, not 5", lines.len()));
        };
        check_origin(origin)?;
        let size_value: u64 = size.parse().or_else(|_| malformed("the size is not a decimal number"))?;
        if size_value.to_string() != size {
            return malformed("the size is not in canonical decimal");
        }
        let hash = |text: &str, what: &str| -> Result<Hash, CheckpointError> {
            let bytes = STANDARD.decode(text).or_else(|_| malformed(format!("the {what} is not base64")))?;
            Hash::from_slice(&bytes).map_or_else(|| malformed(format!("the {what} is not 32 bytes")), Ok)
        };
        let root = hash(root, "root")?;
        let Some(chain) = chain.strip_prefix("chain ") else { return malformed("the fourth line is not `chain …`") };
        let chain = hash(chain, "chain hash")?;
        let Some(time_text) = time.strip_prefix("time ") else { return malformed("the fifth line is not `time …`") };
        let time = Timestamp::parse_rfc3339(time_text).or_else(|e| malformed(e.to_string()))?;
        if time.to_rfc3339() != time_text {
            return malformed("the time is not in canonical form (UTC, `Z`, no trailing zeros)");
        }
        let Some(signatures) = signatures.strip_suffix('\n') else {
            return malformed("the note does not end with a newline");
        };
        let mut parsed = Vec::new();
        for line in signatures.split('\n') {
            let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
                return malformed("a signature line does not start with an em dash and a space");
            };
            let Some((name, blob)) = rest.split_once(' ') else { return malformed("a signature line has no key name") };
            let blob = STANDARD.decode(blob).or_else(|_| malformed("a signature is not base64"))?;
            let Ok(blob) = <[u8; 68]>::try_from(blob.as_slice()) else {
                return malformed("a signature is not a 4-byte key id and 64 bytes");
            };
            parsed.push((name, blob));
        }
        Ok((Self { origin: origin.to_owned(), size: size_value, root, chain, time }, body, parsed))
    }
}

fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    if origin.is_empty()
        || origin.len() > ORIGIN_BYTES_MAX
        || origin.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return malformed("the origin is empty, too long, or holds whitespace");
    }
    Ok(())
}

crate::stored_events! {
    /// What the `checkpoint/log` stream holds: the log's own statements
    /// about itself.
    pub enum CheckpointEvent {
        CheckpointSigned = "CheckpointSigned" version 1,
        CheckpointKeyRotated = "CheckpointKeyRotated" version 1,
        LogRollbackAccepted = "LogRollbackAccepted" version 1,
        ServerSecretRotated = "ServerSecretRotated" version 1,
        ServerSecretRetired = "ServerSecretRetired" version 1,
    }
}

/// From this record on, servers hash and derive with the server secret
/// `new_secret_id` names and still accept `old_secret_id`'s, until it is
/// retired (`ledger keys rotate-secret`; ids: `crate::keys::ServerSecret::id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSecretRotated {
    pub old_secret_id: Hash,
    pub new_secret_id: Hash,
}

/// Every stored keyed hash was made again under the current secret
/// (`LicenseKeyRehashed`, `ApiTokenRehashed`: `license_keys` and `tokens`
/// of them in this retirement's run), and the secret `secret_id` names was
/// deleted (`ledger keys retire-secret`): nothing it made matches any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSecretRetired {
    pub secret_id: Hash,
    pub license_keys: u64,
    pub tokens: u64,
}

/// An operator accepted that the log lost records the read models had
/// applied (`ledger projections rebuild --accept-rollback`: a restored
/// backup, a failover that lost acknowledged writes), and the read models
/// were rebuilt from the log as it is. Names what was lost, so the loss is
/// part of the history instead of silently forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRollbackAccepted {
    /// The first and last sequence whose records the read models had
    /// applied and the log no longer holds (sequences from `lost_from` on
    /// may since hold other records).
    pub lost_from: u64,
    pub lost_to: u64,
    /// The chain hash after `lost_to` as the read models had applied it;
    /// `None` when that was not known.
    pub old_chain_hash: Option<Hash>,
    /// The log's head when the loss was accepted, and its chain hash: the
    /// history that continues.
    pub head_sequence: u64,
    pub new_chain_hash: Hash,
    /// The snapshots that no longer matched the log and were dropped.
    pub snapshots: Vec<String>,
}

/// A checkpoint the server signed and kept in the log. It covers records
/// before its own (`size` < its sequence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSigned {
    /// The whole note, signature included.
    pub note: String,
}

/// From this record on, checkpoints are signed by `new_key`; `signature`
/// is `old_key`'s over [`KEY_ROTATION_DOMAIN`] ‖ old key ‖ new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointKeyRotated {
    pub old_key: [u8; 32],
    pub new_key: [u8; 32],
    pub signature: Vec<u8>,
}

impl CheckpointKeyRotated {
    /// Announces `new` as the successor of `old`, signed by `old`.
    pub fn announce(old: &SigningKey, new: &VerifyingKey) -> Self {
        let old_key = old.verifying_key().to_bytes();
        let new_key = new.to_bytes();
        let signature = old.sign(&[KEY_ROTATION_DOMAIN, &old_key, &new_key].concat()).to_bytes().to_vec();
        Self { old_key, new_key, signature }
    }

    /// Checks the old key's signature; returns (old, new).
    pub fn verify(&self) -> Result<(VerifyingKey, VerifyingKey), CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(format!("key rotation: {why}"));
        let old = VerifyingKey::from_bytes(&self.old_key).map_err(|_| bad("the old key is not an Ed25519 key"))?;
        let new = VerifyingKey::from_bytes(&self.new_key).map_err(|_| bad("the new key is not an Ed25519 key"))?;
        let signature = Signature::from_slice(&self.signature).map_err(|_| bad("the signature is not 64 bytes"))?;
        old.verify(&[KEY_ROTATION_DOMAIN, &self.old_key, &self.new_key].concat(), &signature)
            .map_err(|_| bad("the old key's signature does not verify"))?;
        Ok((old, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "ledger.example/log".into(),
            size: 1234,
            root: Hash([7; 32]),
            chain: Hash([9; 32]),
            time: Timestamp::parse_rfc3339("2026-11-29T12:00:00.5Z").unwrap(),
        }
    }

    #[test]
    fn a_signed_checkpoint_reads_back_and_verifies() {
        let note = checkpoint().sign(&key(1)).unwrap();
        assert!(note.starts_with(
            "ledger.example/log\n1234\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\nchain CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\ntime 2026-11-29T12:00:00.500Z\n\n\u{2014} ledger.example/log "
        ), "{note}");
        assert_eq!(Checkpoint::verify(&note, &key(1).verifying_key()).unwrap(), checkpoint());
        assert!(matches!(Checkpoint::verify(&note, &key(2).verifying_key()), Err(CheckpointError::NoSignature { .. })));
    }

    #[test]
    fn forged_and_altered_notes_are_refused() {
        let public = key(1).verifying_key();
        let note = checkpoint().sign(&key(1)).unwrap();
        // Any changed byte of the body breaks the signature or the format.
        for (from, to) in [("1234", "1235"), ("BwcH", "BwcI"), ("chain CQ", "chain CA"), ("00.500Z", "00.600Z")] {
            let altered = note.replacen(from, to, 1);
            assert!(Checkpoint::verify(&altered, &public).is_err(), "{from} → {to}");
        }
        // A signature by another key, relabelled with the right key id.
        let forged = checkpoint().sign(&key(2)).unwrap();
        let (_, _, lines) = Checkpoint::parse(&forged).unwrap();
        let mut blob = lines[0].1;
        blob[..4].copy_from_slice(&key_id("ledger.example/log", &public));
        let relabelled = format!("{}\n\u{2014} ledger.example/log {}\n", checkpoint().body(), STANDARD.encode(blob));
        assert!(matches!(Checkpoint::verify(&relabelled, &public), Err(CheckpointError::BadSignature { .. })));
        // The same key's signature without the checkpoint domain prefix.
        let raw = key(1).sign(checkpoint().body().as_bytes()).to_bytes();
        let mut blob = key_id("ledger.example/log", &public).to_vec();
        blob.extend_from_slice(&raw);
        let undomained = format!("{}\n\u{2014} ledger.example/log {}\n", checkpoint().body(), STANDARD.encode(blob));
        assert!(matches!(Checkpoint::verify(&undomained, &public), Err(CheckpointError::BadSignature { .. })));
        // Malformed shapes.
        for bad in [
            note.replacen("\n\n", "\n", 1),
            note.trim_end().to_owned(),
            note.replacen("1234", "01234", 1),
            note.replacen("1234", "+1234", 1),
            note.replacen("time 2026-11-29T12:00:00.500Z", "time 2026-11-29T12:00:00.5+00:00", 1),
            note.replacen("chain ", "chain: ", 1),
            note.replacen("\u{2014} ", "- ", 1),
            format!("extra\n{note}"),
            "x".repeat(NOTE_BYTES_MAX + 1),
        ] {
            assert!(matches!(Checkpoint::verify(&bad, &public), Err(CheckpointError::Malformed(_))), "{bad:?}");
        }
        // A witness's extra signature line is ignored.
        let witnessed = format!("{note}\u{2014} witness.example {}\n", STANDARD.encode([0u8; 68]));
        assert_eq!(Checkpoint::verify(&witnessed, &public).unwrap(), checkpoint());
    }

    #[test]
    fn key_rotation_is_signed_by_the_old_key() {
        let rotation = CheckpointKeyRotated::announce(&key(1), &key(2).verifying_key());
        let (old, new) = rotation.verify().unwrap();
        assert_eq!((old, new), (key(1).verifying_key(), key(2).verifying_key()));
        let mut swapped = rotation.clone();
        swapped.new_key = key(3).verifying_key().to_bytes();
        assert!(swapped.verify().is_err(), "another new key");
        let self_signed = CheckpointKeyRotated::announce(&key(2), &key(3).verifying_key());
        let mut claimed = self_signed.clone();
        claimed.old_key = key(1).verifying_key().to_bytes();
        assert!(claimed.verify().is_err(), "signed by someone other than the old key");
        let mut short = rotation;
        short.signature.pop();
        assert!(short.verify().is_err());
    }
}
