//! Signing in to the customer portal (issue 14): magic links and the
//! events that record sign-ins, sign-outs and session revocations.
//!
//! A sign-in link's token is self-contained: the organization, the user,
//! the expiry and a random nonce, with the server secret's MAC. Nothing is
//! stored when a link is made; when it is used, the keyed hash of the
//! token names a stream (`signin/{hash}`) and the sign-in is appended to
//! it expecting no stream, so a link works once across all nodes, and
//! only the keyed hash (never the token) reaches the log.
//!
//! These streams' categories are not among `LedgerEvent`'s: the read
//! models and replay skip them as records of a feature they do not keep
//! (`LedgerEvent::decode`), and the portal reads them only by stream.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::keys::ServerSecret;
use crate::record::Hash;
use crate::{OrganizationId, StreamId, Timestamp, UserId};

const LINK_MAC_CONTEXT: &str = "ledger 2026-11-30 portal sign-in link mac v1";
const LINK_HASH_CONTEXT: &str = "ledger 2026-11-30 portal sign-in link hash v1";
const SESSION_HASH_CONTEXT: &str = "ledger 2026-11-30 portal session hash v1";
const CSRF_CONTEXT: &str = "ledger 2026-11-30 portal csrf token v1";

/// Refused sign-ins recorded per user and UTC day, at most: the stream's
/// revision counts them (as validations are counted), so the bound holds
/// across nodes, and only a link this server made (a known user) is
/// recorded, so anonymous callers cannot grow the log.
pub const REFUSALS_PER_USER_PER_DAY_MAX: u64 = 20;
/// Refused console sign-ins that name no staff user (an address that is
/// no staff user's, an identity the vendor's provider vouched for that
/// is none), recorded per UTC day, at most, all callers together: the
/// stream's revision counts them, so a hostile caller fills one bounded
/// stream a day and no more (beyond, only the server's log says so).
pub const CONSOLE_UNKNOWN_REFUSALS_PER_DAY_MAX: u64 = 200;
/// The longest identity provider's subject a refusal records (OpenID
/// Connect Core: at most 255 ASCII characters); a longer one is cut.
pub const SUBJECT_CHARS_MAX: usize = 255;
/// The organization console sign-ins name: the vendor's own, the nil id,
/// which no customer organization has (theirs are UUID v7).
pub const VENDOR: OrganizationId = OrganizationId(uuid::Uuid::nil());

/// A sign-in link asked for on the sign-in page is valid this long.
pub const SIGN_IN_LINK_MICROS: i64 = 15 * 60 * 1_000_000;
/// An invitation's or onboarding e-mail's link is valid this long.
pub const INVITATION_LINK_MICROS: i64 = 3 * 24 * 3600 * 1_000_000;

/// organization (16) + user (16) + expiry (8) + nonce (16).
const PAYLOAD_BYTES: usize = 56;
/// The MAC is BLAKE3's whole 32 bytes.
const MAC_BYTES: usize = 32;
/// The length of a link token's text (base64url of payload and MAC).
pub const LINK_TOKEN_CHARS: usize = (PAYLOAD_BYTES + MAC_BYTES) * 4 / 3 + 1;

/// What a valid link names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkClaims {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub expires_at: Timestamp,
}

/// A sign-in link's token for `claims`, with a random `nonce` from the caller.
pub fn link_token(secret: &ServerSecret, claims: LinkClaims, nonce: [u8; 16]) -> String {
    let mut bytes = Vec::with_capacity(PAYLOAD_BYTES + MAC_BYTES);
    bytes.extend_from_slice(claims.organization_id.0.as_bytes());
    bytes.extend_from_slice(claims.user_id.0.as_bytes());
    bytes.extend_from_slice(&claims.expires_at.as_micros().to_be_bytes());
    bytes.extend_from_slice(&nonce);
    let mac = secret.keyed(LINK_MAC_CONTEXT, &bytes);
    bytes.extend_from_slice(&mac.0);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The claims of a token this server made (its MAC checked), whatever its
/// expiry; `None` for anything else.
pub fn verify_link_token(secret: &ServerSecret, token: &str) -> Option<LinkClaims> {
    if token.len() != LINK_TOKEN_CHARS {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let (payload, mac) = bytes.split_at_checked(PAYLOAD_BYTES)?;
    let expected = secret.keyed(LINK_MAC_CONTEXT, payload);
    if !crate::keys::constant_time_eq(expected.0, mac) {
        return None;
    }
    let uuid = |range: std::ops::Range<usize>| uuid::Uuid::from_slice(&payload[range]).ok();
    let expires: [u8; 8] = payload[32..40].try_into().ok()?;
    Some(LinkClaims {
        organization_id: OrganizationId(uuid(0..16)?),
        user_id: UserId(uuid(16..32)?),
        expires_at: Timestamp::from_micros(i64::from_be_bytes(expires)),
    })
}

/// The stream a link's use is appended to: named by its keyed hash.
pub fn link_stream(secret: &ServerSecret, token: &str) -> StreamId {
    let hash = secret.keyed(LINK_HASH_CONTEXT, token.as_bytes());
    StreamId::new(format!("signin/{}", hex::encode(hash.0))).expect("hex forms a valid stream id")
}

/// What the server's database keeps of a session's cookie value.
pub fn session_hash(secret: &ServerSecret, session_token: &str) -> Hash {
    secret.keyed(SESSION_HASH_CONTEXT, session_token.as_bytes())
}

/// A session's CSRF token (the synchronizer token of its forms): derived
/// from the session's cookie value, so nothing more is stored and a new
/// session has a new one.
pub fn csrf_token(secret: &ServerSecret, session_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(secret.keyed(CSRF_CONTEXT, session_token.as_bytes()).0)
}

/// The stream of a user's refused sign-ins on one day.
pub fn refusals_stream(user_id: UserId, day: chrono::NaiveDate) -> StreamId {
    StreamId::new(format!("portal-refusals/{}:{day}", user_id.0)).expect("a UUID and a date form a valid stream id")
}

/// The stream of one UTC day's refused console sign-ins that name no
/// staff user ([`CONSOLE_UNKNOWN_REFUSALS_PER_DAY_MAX`]).
pub fn console_refusals_stream(day: chrono::NaiveDate) -> StreamId {
    StreamId::new(format!("portal-refusals/console:{day}")).expect("a date forms a valid stream id")
}

/// The stream of a session's end (sign-out or revocation), by its public id.
pub fn session_stream(session_id: uuid::Uuid) -> StreamId {
    StreamId::of("portal-session", session_id)
}

/// The stream of the e-mails staff resent to a user (`PortalMailResent`).
pub fn resend_stream(user_id: UserId) -> StreamId {
    StreamId::of("portal-resend", user_id.0)
}

crate::stored_events! {
    /// A portal sign-in, sign-out or revocation: who, when, from where.
    pub enum SignInEvent {
        SignedIn = "PortalSignedIn" version 1,
        SignedOut = "PortalSignedOut" version 1,
        SessionRevoked = "PortalSessionRevoked" version 1,
        SignInRefused = "PortalSignInRefused" version 1,
        MailResent = "PortalMailResent" version 1,
        ConsoleSignInRefused = "ConsoleSignInRefused" version 1,
    }
}

/// A link was used: a session began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedIn {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    /// The session's public id (never its cookie value).
    pub session_id: uuid::Uuid,
    /// The client's address as the server resolved it.
    pub address: String,
    pub at: Timestamp,
}

/// A user ended their own session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedOut {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub session_id: uuid::Uuid,
    pub address: String,
    pub at: Timestamp,
}

/// A user ended one of their other sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRevoked {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub session_id: uuid::Uuid,
    /// The session the revocation was made from.
    pub by_session_id: uuid::Uuid,
    pub address: String,
    pub at: Timestamp,
}

/// A known user's link was refused (expired, used, user deactivated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignInRefused {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    /// `expired`, `used` or `inactive`.
    pub reason: String,
    pub address: String,
    pub at: Timestamp,
}

/// Staff sent a user their invitation or a sign-in e-mail again, with a
/// new link. The staff user is the record's actor; neither the address nor
/// the link is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailResent {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    /// `invitation` or `signin`.
    pub kind: String,
    pub at: Timestamp,
}

/// A console sign-in that named no staff user was refused: a link asked
/// for an address that is no staff user's, or the vendor's provider
/// vouched for an identity that is none (or did not verify its address).
/// A staff user's refusals are `PortalSignInRefused`, naming [`VENDOR`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleSignInRefused {
    /// `link` or `oidc`.
    pub method: String,
    /// `unknown_email`, `unverified_email` or `no_email`.
    pub reason: String,
    /// The address asked for or vouched for, trimmed and lower case, at
    /// most `EMAIL_CHARS_MAX` characters (longer ones are refused before).
    pub email: Option<String>,
    /// The provider's subject (`oidc`), at most [`SUBJECT_CHARS_MAX`].
    pub subject: Option<String>,
    pub address: String,
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> LinkClaims {
        LinkClaims {
            organization_id: OrganizationId(uuid::Uuid::from_u128(1)),
            user_id: UserId(uuid::Uuid::from_u128(2)),
            expires_at: Timestamp::from_micros(1_700_000_000_000_000),
        }
    }

    #[test]
    fn a_link_token_round_trips_and_a_changed_one_is_refused() {
        let secret = ServerSecret::from_bytes([7; 32]);
        let token = link_token(&secret, claims(), [9; 16]);
        assert_eq!(token.len(), LINK_TOKEN_CHARS);
        assert_eq!(verify_link_token(&secret, &token), Some(claims()));
        let other = ServerSecret::from_bytes([8; 32]);
        assert_eq!(verify_link_token(&other, &token), None, "another server's secret");
        let mut changed = token.clone().into_bytes();
        changed[3] = if changed[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(verify_link_token(&secret, std::str::from_utf8(&changed).unwrap()), None);
        assert_eq!(verify_link_token(&secret, &token[1..]), None);
    }

    #[test]
    fn each_link_has_its_own_stream() {
        let secret = ServerSecret::from_bytes([7; 32]);
        let a = link_token(&secret, claims(), [1; 16]);
        let b = link_token(&secret, claims(), [2; 16]);
        assert_ne!(link_stream(&secret, &a), link_stream(&secret, &b));
        assert_eq!(link_stream(&secret, &a), link_stream(&secret, &a));
        assert!(!link_stream(&secret, &a).as_str().contains(&a), "the token is never in the stream id");
    }
}
