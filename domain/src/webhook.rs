//! A Stripe webhook delivery, checked and read without I/O: its
//! `Stripe-Signature` ([`verify`]) and the event its signed body holds
//! ([`parse_event`]). Pure, so the fuzz targets reach it without the
//! server (`fuzz/`); `usecases::stripe::webhook` records what it returns.
//!
//! The `Stripe-Signature` scheme: `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`,
//! where each `v1` is HMAC-SHA256 under a webhook secret of
//! `"{t}.{raw body}"`. Several `v1` appear while Stripe rolls a secret; the
//! ledger accepts a list of secrets for its side of a rotation. Every
//! candidate is compared in constant time, and the timestamp must lie
//! within the tolerance of the system clock (never the business clock: a
//! test clock moved a year ahead must not make real signatures stale).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::Timestamp;
use crate::stripe::{StripeEventReceived, event_stream, valid_stripe_id};

/// Stripe's default tolerance, in seconds, either way.
pub const TOLERANCE_SECS: i64 = 300;
/// The longest header looked at (Stripe's are a few hundred bytes).
const HEADER_BYTES_MAX: usize = 4096;
/// Signatures considered per header, at most.
const SIGNATURES_MAX: usize = 16;

/// A webhook signing secret (`whsec_…`), kept out of `Debug` output.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    pub fn new(secret: &str) -> Self {
        Self(secret.as_bytes().to_vec())
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Why a signature was refused. None of these says which secret came close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("no signature matches the body")]
    NoMatch,
    #[error("the signature's timestamp is outside the {TOLERANCE_SECS} s tolerance")]
    Stale,
}

/// Checks `header` against `body` under any of `secrets`, at `now` (Unix
/// seconds, the system clock). Returns the signed timestamp.
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[WebhookSecret], now: i64) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if header.len() > HEADER_BYTES_MAX {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp: Option<&str> = None;
    let mut signatures: Vec<[u8; 32]> = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(SignatureError::Malformed)?;
        match key {
            "t" if timestamp.is_none() => timestamp = Some(value),
            "t" => return Err(SignatureError::Malformed),
            // Other schemes (`v0`, a test scheme) are not signatures here;
            // a `v1` that is not 32 bytes of hex can never match.
            "v1" if signatures.len() < SIGNATURES_MAX => {
                let mut bytes = [0u8; 32];
                if hex::decode_to_slice(value, &mut bytes).is_ok() {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let text = timestamp.ok_or(SignatureError::Malformed)?;
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed);
    }
    let signed_at: i64 = text.parse().map_err(|_| SignatureError::Malformed)?;
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
        mac.update(text.as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        for candidate in &signatures {
            matched |= expected.as_slice().ct_eq(candidate);
        }
    }
    if !bool::from(matched) {
        return Err(SignatureError::NoMatch);
    }
    if (now - signed_at).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(signed_at)
}

/// The longest event type recorded (Stripe's are far shorter).
pub const EVENT_TYPE_BYTES_MAX: usize = 100;

/// Why a signed body is not a Stripe event the ledger can record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub &'static str);

/// The event a signed body holds.
pub fn parse_event(body: &[u8]) -> Result<StripeEventReceived, InvalidEvent> {
    let text = std::str::from_utf8(body).map_err(|_| InvalidEvent("the body is not UTF-8"))?;
    let event: serde_json::Value = serde_json::from_str(text).map_err(|_| InvalidEvent("the body is not JSON"))?;
    let id = event["id"].as_str().ok_or(InvalidEvent("the event has no id"))?;
    if event_stream(id).is_none() {
        return Err(InvalidEvent("the event id is not a Stripe id"));
    }
    let event_type = event["type"]
        .as_str()
        .filter(|t| !t.is_empty() && t.len() <= EVENT_TYPE_BYTES_MAX && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(InvalidEvent("the event has no type"))?;
    let created = event["created"]
        .as_i64()
        .and_then(|seconds| seconds.checked_mul(1_000_000))
        .ok_or(InvalidEvent("the event has no created time"))?;
    let object_id = event["data"]["object"]["id"].as_str().filter(|id| valid_stripe_id(id)).map(str::to_owned);
    Ok(StripeEventReceived {
        event_id: id.to_owned(),
        event_type: event_type.to_owned(),
        created: Timestamp::from_micros(created),
        livemode: event["livemode"].as_bool().unwrap_or(false),
        object_id,
        body: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
    const NOW: i64 = 1_800_000_000;

    fn secrets(list: &[&str]) -> Vec<WebhookSecret> {
        list.iter().map(|s| WebhookSecret::new(s)).collect()
    }

    #[test]
    fn a_signature_under_any_configured_secret_with_any_v1_is_accepted() {
        let header = format!("t={NOW},v1={},v1={}", sign("whsec_old", NOW, BODY), sign("whsec_new", NOW, BODY));
        assert_eq!(verify(Some(&header), BODY, &secrets(&["whsec_new"]), NOW), Ok(NOW));
        assert_eq!(verify(Some(&header), BODY, &secrets(&["whsec_other", "whsec_old"]), NOW), Ok(NOW));
        // A test scheme beside it is ignored.
        let header = format!("t={NOW},v0=abc,v1={}", sign("whsec_new", NOW, BODY));
        assert_eq!(verify(Some(&header), BODY, &secrets(&["whsec_new"]), NOW), Ok(NOW));
    }

    #[test]
    fn a_wrong_secret_a_changed_body_or_a_changed_timestamp_is_refused() {
        let header = format!("t={NOW},v1={}", sign("whsec_a", NOW, BODY));
        assert_eq!(verify(Some(&header), BODY, &secrets(&["whsec_b"]), NOW), Err(SignatureError::NoMatch));
        assert_eq!(verify(Some(&header), b"{}", &secrets(&["whsec_a"]), NOW), Err(SignatureError::NoMatch));
        let moved = format!("t={},v1={}", NOW + 1, sign("whsec_a", NOW, BODY));
        assert_eq!(verify(Some(&moved), BODY, &secrets(&["whsec_a"]), NOW), Err(SignatureError::NoMatch));
        assert_eq!(verify(Some(&header), BODY, &[], NOW), Err(SignatureError::NoMatch));
    }

    #[test]
    fn the_timestamp_must_lie_within_300_seconds_either_way() {
        for (t, ok) in [(NOW - 300, true), (NOW - 301, false), (NOW + 300, true), (NOW + 301, false)] {
            let header = format!("t={t},v1={}", sign("whsec_a", t, BODY));
            let result = verify(Some(&header), BODY, &secrets(&["whsec_a"]), NOW);
            assert_eq!(result.is_ok(), ok, "t = now {:+}", t - NOW);
            if !ok {
                assert_eq!(result, Err(SignatureError::Stale));
            }
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let v1 = sign("whsec_a", NOW, BODY);
        for header in [
            String::new(),
            format!("v1={v1}"),
            format!("t=,v1={v1}"),
            format!("t=-5,v1={v1}"),
            format!("t=12x,v1={v1}"),
            format!("t={NOW},t={NOW},v1={v1}"),
            format!("t={NOW};v1={v1}"),
            "x".repeat(5000),
        ] {
            assert_eq!(
                verify(Some(&header), BODY, &secrets(&["whsec_a"]), NOW),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
        assert_eq!(verify(None, BODY, &secrets(&["whsec_a"]), NOW), Err(SignatureError::Missing));
        // No v1 at all, or one that is not hex: nothing can match.
        let header = format!("t={NOW},v1=zz{}", &v1[2..]);
        assert_eq!(verify(Some(&header), BODY, &secrets(&["whsec_a"]), NOW), Err(SignatureError::NoMatch));
    }
}
