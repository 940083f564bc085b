//! The fuzz targets' bodies, one function per target (`fuzz_targets/*.rs`
//! only call them), so the seed corpora also run through them on stable in
//! `cargo test -p ledger-fuzz` (tests/corpus.rs).
//!
//! Each target feeds its bytes to a decoder or verifier that meets
//! untrusted input and asserts what must hold of whatever it accepts (a
//! decoded event re-encodes to an equal one, an accepted license key is
//! the canonical encoding of what it names, an accepted lease answers this
//! client's request); a panic anywhere is a finding. The keys and secrets
//! below are fixed and public: they sign the seeds, nothing else.

use client::fuzzing::{self, Judged};
use client::{Config, ValidationCode};
use domain::checkpoint::{Checkpoint, CheckpointKeyRotated};
use domain::event::{LedgerEvent, StoredEvent};
use domain::keys::{ServerSecret, api_token, license_key as make_license_key, verify_api_token, verify_license_key};
use domain::proof::InclusionProof;
use domain::record::{ChainVerifier, Hash, Metadata, Record, RecordHeader};
use domain::stripe::{event_stream, valid_stripe_id};
use domain::webhook::{EVENT_TYPE_BYTES_MAX, WebhookSecret, parse_event, verify};
use domain::{EventId, StreamId, Timestamp};
use ed25519_dalek::SigningKey;

/// What a target made of its input, so the seed test can check that the
/// seeds reach the accepting paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused,
}

impl From<bool> for Outcome {
    fn from(accepted: bool) -> Self {
        if accepted { Self::Accepted } else { Self::Refused }
    }
}

/// The server's signing key of the seeds (leases, refusals, checkpoints,
/// license keys).
pub fn server_key() -> SigningKey {
    SigningKey::from_bytes(&[0x11; 32])
}

/// Another key: what an attacker signs with.
pub fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[0x22; 32])
}

/// The server secret of the seeds' API tokens.
pub fn server_secret() -> ServerSecret {
    ServerSecret::from_bytes([0x33; 32])
}

/// The webhook secret of the seeds, and the system time they are checked at.
pub const WEBHOOK_SECRET: &str = "whsec_fuzz";
pub const WEBHOOK_NOW: i64 = 1_800_000_000;

/// The client's request the `client_answer` seeds answer.
pub const CLIENT_NONCE: &str = "fuzz-nonce";
pub const CLIENT_TIME_US: i64 = 1_767_225_600_000_000;

/// The public key of the deployment the `client_answer` seeds answer.
pub fn client_deployment_key() -> String {
    domain::deployment_key::public_key_text(&ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key())
}

/// The license key of the client seeds: a real one, for license id 1.
pub fn client_license_key() -> String {
    make_license_key(&server_key(), domain::LicenseId(uuid::Uuid::from_u128(1)), [7; 16])
}

/// The stream category of each aggregate of [`LedgerEvent::STORED_TYPES`],
/// in its order (the `ledger_events!` list in domain/src/event.rs).
pub const CATEGORIES: [&str; 12] = [
    "org",
    "subscription",
    "license",
    "validation",
    "usage",
    "invoice",
    "checkpoint",
    "notification",
    "stripe-event",
    "branding",
    "staff",
    "privacy",
];

fn header(category: &str, event_type: &str, schema_version: u32) -> RecordHeader {
    RecordHeader {
        sequence: 1,
        event_id: EventId(uuid::Uuid::nil()),
        stream_id: StreamId::new(format!("{category}/fuzz")).expect("a valid stream id"),
        stream_revision: 1,
        event_type: event_type.to_owned(),
        schema_version,
        occurred_at: Timestamp::from_micros(0),
        recorded_at: Timestamp::from_micros(0),
        idempotency_key: None,
    }
}

/// Record metadata (postcard), and the record format over arbitrary
/// contents: a record sealed over the input verifies and links from the
/// genesis, and one flipped bit of its contents is caught.
pub fn record(data: &[u8]) -> Outcome {
    let metadata = Metadata::decode(data);
    if let Ok(decoded) = &metadata {
        assert_eq!(&Metadata::decode(&decoded.encode()).expect("re-encoded metadata decodes"), decoded);
    }
    let (meta, payload) = data.split_at(data.len() / 2);
    let time = data.get(..8).map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
    let mut sealed = header("org", "Fuzzed", 1);
    (sealed.occurred_at, sealed.recorded_at) = (Timestamp::from_micros(time), Timestamp::from_micros(time));
    let record = Record::seal(sealed, meta.to_vec(), payload.to_vec(), &Hash([0; 32]));
    record.check_leaf().expect("a sealed record verifies");
    ChainVerifier::from_genesis().link(&record).expect("a sealed first record links to the genesis");
    if let Some(&byte) = data.first() {
        let mut flipped = record.clone();
        let contents = if flipped.payload.as_ref().is_some_and(|p| !p.is_empty()) {
            flipped.payload.as_mut()
        } else {
            flipped.metadata.as_mut()
        };
        let contents = contents.expect("contents are kept");
        let at = usize::from(byte) % contents.len();
        contents[at] ^= 1 << (byte % 8);
        assert!(flipped.check_leaf().is_err(), "a flipped bit of a record's contents went unnoticed");
    }
    metadata.is_ok().into()
}

/// (event type, schema version, payload) of any event.
fn encode(event: &LedgerEvent) -> (&'static str, u32, Vec<u8>) {
    fn of<E: StoredEvent>(e: &E) -> (&'static str, u32, Vec<u8>) {
        (e.event_type(), e.schema_version(), e.encode_payload())
    }
    match event {
        LedgerEvent::Organization(e) => of(e),
        LedgerEvent::Subscription(e) => of(e),
        LedgerEvent::License(e) => of(e),
        LedgerEvent::Validation(e) => of(e),
        LedgerEvent::Usage(e) => of(e),
        LedgerEvent::Invoice(e) => of(e),
        LedgerEvent::Checkpoint(e) => of(e),
        LedgerEvent::Notification(e) => of(e),
        LedgerEvent::Stripe(e) => of(e),
        LedgerEvent::Branding(e) => of(e),
        LedgerEvent::Staff(e) => of(e),
        LedgerEvent::Privacy(e) => of(e),
    }
}

/// Every stored event decoder. Input: the event type, a NUL, the schema
/// version (one byte), then the payload; the stream's category is the one
/// whose aggregate stores that type. A decoded event (upcast or not)
/// re-encodes at its current version to an equal event.
pub fn events(data: &[u8]) -> Outcome {
    let Some(nul) = data.iter().position(|b| *b == 0) else { return Outcome::Refused };
    let Ok(name) = std::str::from_utf8(&data[..nul]) else { return Outcome::Refused };
    let Some((&version, payload)) = data[nul + 1..].split_first() else { return Outcome::Refused };
    let category = LedgerEvent::STORED_TYPES
        .iter()
        .position(|types| types.iter().any(|t| t.name == name))
        .map_or("org", |aggregate| CATEGORIES[aggregate]);
    let Ok(Some(event)) = LedgerEvent::decode(&header(category, name, u32::from(version)), payload) else {
        return Outcome::Refused;
    };
    let (event_type, schema_version, bytes) = encode(&event);
    assert_eq!(event_type, name, "decoding kept the event type");
    let again = LedgerEvent::decode(&header(category, event_type, schema_version), &bytes);
    let again = again.expect("a re-encoded event decodes").expect("of a known type");
    assert_eq!(again, event, "{name} v{version} changed through encode and decode");
    Outcome::Accepted
}

/// An inclusion proof document (`replay check-proof`'s input, JSON) with
/// its own checkpoint, checked against the server's key.
pub fn proof(data: &[u8]) -> Outcome {
    let Ok(proof) = serde_json::from_slice::<InclusionProof>(data) else { return Outcome::Refused };
    let note = proof.checkpoint.clone().unwrap_or_default();
    let Ok(checkpoint) = proof.check(&note, &server_key().verifying_key()) else { return Outcome::Refused };
    assert_eq!(checkpoint.size, proof.tree_size);
    assert_eq!(proof.leaf_index.checked_add(1), Some(proof.record.sequence));
    Outcome::Accepted
}

/// A signed checkpoint note (parsed, then verified with the server's key),
/// and a key rotation (old key ‖ new key ‖ signature, from the first 128
/// bytes). A note that parses is exactly the body it states.
pub fn checkpoint(data: &[u8]) -> Outcome {
    let mut accepted = false;
    if let Ok(note) = std::str::from_utf8(data) {
        if let Ok((stated, body, _)) = Checkpoint::parse(note) {
            assert_eq!(stated.body(), body, "a checkpoint's body is not canonical");
        }
        if let Ok(verified) = Checkpoint::verify(note, &server_key().verifying_key()) {
            assert!(note.starts_with(&verified.body()));
            accepted = true;
        }
    }
    if data.len() >= 128 {
        let rotation = CheckpointKeyRotated {
            old_key: data[..32].try_into().expect("32 bytes"),
            new_key: data[32..64].try_into().expect("32 bytes"),
            signature: data[64..128].to_vec(),
        };
        accepted |= rotation.verify().is_ok();
    }
    accepted.into()
}

/// The client's configuration of the `client_answer` seeds.
pub fn client_config() -> Config {
    Config::new("https://ledger.invalid", client_license_key(), "/nonexistent", vec![server_key().verifying_key()])
}

/// The client's reading of a validation answer, of its lease file and of
/// the server's key list. What it trusts answers this very request.
pub fn client_answer(data: &[u8]) -> Outcome {
    let config = client_config();
    let client_time = Timestamp::from_micros(CLIENT_TIME_US);
    let deployment_key = client_deployment_key();
    let answer = match fuzzing::validation_answer(data, &config, CLIENT_NONCE, client_time, &deployment_key) {
        Ok(Judged::Lease(body)) => {
            assert_eq!(body.nonce, CLIENT_NONCE);
            assert_eq!(body.deployment_id, config.deployment_id);
            assert_eq!(body.client_time, Some(client_time));
            assert_eq!(body.deployment_key.as_deref(), Some(deployment_key.as_str()));
            assert!(ValidationCode::parse(&body.code).is_valid());
            true
        }
        Ok(Judged::Refused(code)) => {
            assert!(!code.is_valid(), "a trusted refusal carries a valid code");
            true
        }
        Ok(Judged::Ignored) | Err(_) => false,
    };
    let stored = fuzzing::stored_lease(&config, &deployment_key, data).inspect(|body| {
        assert_eq!(body.deployment_id, config.deployment_id);
        assert_eq!(body.deployment_key.as_deref(), Some(deployment_key.as_str()));
        assert!(ValidationCode::parse(&body.code).is_valid());
    });
    let keys = fuzzing::lease_keys(data);
    (answer || stored.is_ok() || keys.is_ok()).into()
}

/// A webhook delivery: the `Stripe-Signature` header (up to the first
/// newline) and the body (the rest), checked with [`WEBHOOK_SECRET`] at
/// [`WEBHOOK_NOW`]; the body is also read as an event whatever its
/// signature, as after a match.
pub fn webhook(data: &[u8]) -> Outcome {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let header = std::str::from_utf8(header).unwrap_or("\u{fffd}");
    let signed = verify(Some(header), body, &[WebhookSecret::new(WEBHOOK_SECRET)], WEBHOOK_NOW);
    if let Ok(at) = signed {
        assert!((WEBHOOK_NOW - at).abs() <= domain::webhook::TOLERANCE_SECS);
    }
    let event = parse_event(body);
    if let Ok(event) = &event {
        assert!(event_stream(&event.event_id).is_some());
        assert!(event.event_type.len() <= EVENT_TYPE_BYTES_MAX);
        assert!(event.object_id.as_deref().is_none_or(valid_stripe_id));
        assert_eq!(event.body.as_bytes(), body);
    }
    (signed.is_ok() && event.is_ok()).into()
}

/// A license key or an API token, as a caller presents it. One that is
/// accepted is exactly the canonical key of what it names (no second
/// spelling of the same key).
pub fn license_key(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else { return Outcome::Refused };
    let mut accepted = false;
    if let Some(id) = verify_license_key(&server_key().verifying_key(), text) {
        let nonce = license_key_nonce(text).expect("an accepted key decodes");
        assert_eq!(make_license_key(&server_key(), id, nonce), text, "a second spelling of a license key");
        accepted = true;
    }
    if let Some(id) = verify_api_token(&server_secret(), text) {
        assert_eq!(api_token(&server_secret(), id), text, "a second spelling of an API token");
        accepted = true;
    }
    accepted.into()
}

/// The random bytes a license key carries (after its version byte and id).
fn license_key_nonce(key: &str) -> Option<[u8; 16]> {
    use base64::Engine;
    let body = key.strip_prefix(domain::keys::LICENSE_KEY_PREFIX)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).ok()?;
    bytes.get(17..33)?.try_into().ok()
}
