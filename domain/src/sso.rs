//! Enterprise SSO (issue 14): an organization's OpenID Connect issuer,
//! the sealing of its client secret, the short-lived pending sign-in, and
//! the events that record configuration, links and sign-ins.
//!
//! The client secret is sealed with ChaCha20-Poly1305 under a key derived
//! from the server secret, with the organization, issuer and client id as
//! associated data (a sealed secret copied to another configuration does
//! not open); only the sealed bytes reach the log. The pending sign-in
//! (state, nonce, PKCE verifier, organization, expiry) is sealed the same
//! way under another derived key and kept in the browser's cookie, so the
//! server keeps nothing per sign-in attempt.
//!
//! Streams: `sso-config/{organization}` (configured, removed),
//! `sso-link/{keyed hash of organization, issuer and subject}` (one link,
//! appended expecting no stream), `sso-signin/{session}` (a sign-in).
//! Their categories are not `LedgerEvent`'s: the read models skip them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

use crate::keys::ServerSecret;
use crate::record::Hash;
use crate::{OrganizationId, StreamId, Timestamp, UserId};

const SECRET_SEAL_CONTEXT: &str = "ledger 2026-12-01 sso client secret seal v1";
const PENDING_SEAL_CONTEXT: &str = "ledger 2026-12-01 sso pending sign-in seal v1";
const LINK_HASH_CONTEXT: &str = "ledger 2026-12-01 sso link hash v1";
const NONCE_BYTES: usize = 12;

/// The longest issuer URL a configuration may name.
pub const ISSUER_CHARS_MAX: usize = 200;
/// The longest client id.
pub const CLIENT_ID_CHARS_MAX: usize = 200;
/// The longest client secret.
pub const CLIENT_SECRET_CHARS_MAX: usize = 512;
/// The longest subject an issuer may name (OpenID Connect: 255 ASCII).
pub const SUBJECT_CHARS_MAX: usize = 255;
/// A pending sign-in is valid this long: 10 minutes.
pub const PENDING_MICROS: i64 = 10 * 60 * 1_000_000;
/// The longest sealed pending sign-in a cookie may bring.
pub const PENDING_CHARS_MAX: usize = 2048;
/// The catalog's tier that may configure SSO.
pub const SSO_TIER: &str = "enterprise";

fn cipher(secret: &ServerSecret, context: &str) -> ChaCha20Poly1305 {
    let key = secret.keyed(context, b"");
    ChaCha20Poly1305::new(Key::from_slice(&key.0))
}

fn seal(cipher: &ChaCha20Poly1305, aad: &[u8], plain: &[u8], nonce: [u8; NONCE_BYTES]) -> String {
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .expect("ChaCha20-Poly1305 encrypts any message this short");
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&sealed);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn open(cipher: &ChaCha20Poly1305, aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let (nonce, body) = bytes.split_at_checked(NONCE_BYTES)?;
    cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad }).ok()
}

fn secret_aad(organization_id: OrganizationId, issuer: &str, client_id: &str) -> Vec<u8> {
    let mut aad = organization_id.0.as_bytes().to_vec();
    for part in [issuer, client_id] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// An organization's SSO settings, as the log keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoConfigured {
    pub organization_id: OrganizationId,
    pub issuer: String,
    pub client_id: String,
    /// nonce ‖ ChaCha20-Poly1305(client secret), base64url; never the secret.
    pub sealed_secret: String,
    pub at: Timestamp,
}

impl SsoConfigured {
    /// Seals `client_secret` for this organization, issuer and client id.
    pub fn seal_secret(
        secret: &ServerSecret,
        organization_id: OrganizationId,
        issuer: &str,
        client_id: &str,
        client_secret: &str,
        nonce: [u8; NONCE_BYTES],
    ) -> String {
        let aad = secret_aad(organization_id, issuer, client_id);
        seal(&cipher(secret, SECRET_SEAL_CONTEXT), &aad, client_secret.as_bytes(), nonce)
    }

    /// The client secret, if this server sealed it for this configuration.
    pub fn client_secret(&self, secret: &ServerSecret) -> Option<String> {
        let aad = secret_aad(self.organization_id, &self.issuer, &self.client_id);
        let plain = open(&cipher(secret, SECRET_SEAL_CONTEXT), &aad, &self.sealed_secret)?;
        String::from_utf8(plain).ok()
    }
}

/// An organization's SSO settings were removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoRemoved {
    pub organization_id: OrganizationId,
    pub at: Timestamp,
}

/// A user was linked to an issuer's subject (at their first SSO sign-in);
/// later sign-ins find the user by this link, not by e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoLinked {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub issuer: String,
    pub subject: String,
    /// Whether the user was created by this sign-in (else matched by e-mail).
    pub created: bool,
    pub at: Timestamp,
}

/// A user signed in through their organization's issuer: a session began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoSignedIn {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub issuer: String,
    /// The session's public id (never its cookie value).
    pub session_id: uuid::Uuid,
    pub address: String,
    pub at: Timestamp,
}

crate::stored_events! {
    /// Enterprise SSO's configuration, links and sign-ins.
    pub enum SsoEvent {
        SsoConfigured = "SsoConfigured" version 1,
        SsoRemoved = "SsoRemoved" version 1,
        SsoLinked = "SsoLinked" version 1,
        SsoSignedIn = "SsoSignedIn" version 1,
        SsoSecretResealed = "SsoSecretResealed" version 1,
        SsoLinkRehashed = "SsoLinkRehashed" version 1,
    }
}

/// An organization's client secret sealed again, under the server secret
/// `secret_id` names (`ledger keys retire-secret`): the settings are those
/// of the configuration it replaces, the client secret unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoSecretResealed {
    pub organization_id: OrganizationId,
    pub issuer: String,
    pub client_id: String,
    pub sealed_secret: String,
    pub secret_id: Hash,
    pub at: Timestamp,
}

impl SsoSecretResealed {
    /// The settings in force from this event on.
    pub fn config(&self) -> SsoConfigured {
        SsoConfigured {
            organization_id: self.organization_id,
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            sealed_secret: self.sealed_secret.clone(),
            at: self.at,
        }
    }
}

/// A link (`SsoLinked`) on the stream the server secret `secret_id` names
/// ([`link_stream`]; `ledger keys retire-secret`): the same organization,
/// user, issuer and subject, found once the old secret is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoLinkRehashed {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub issuer: String,
    pub subject: String,
    pub secret_id: Hash,
    pub at: Timestamp,
}

/// The stream of an organization's SSO settings.
pub fn config_stream(organization_id: OrganizationId) -> StreamId {
    StreamId::of("sso-config", organization_id.0)
}

/// The stream of the link of one subject of one issuer in one organization.
pub fn link_stream(secret: &ServerSecret, organization_id: OrganizationId, issuer: &str, subject: &str) -> StreamId {
    let mut data = secret_aad(organization_id, issuer, "");
    data.extend_from_slice(subject.as_bytes());
    let hash = secret.keyed(LINK_HASH_CONTEXT, &data);
    StreamId::new(format!("sso-link/{}", hex::encode(hash.0))).expect("hex forms a valid stream id")
}

/// The stream of one SSO sign-in, by its session's public id.
pub fn signin_stream(session_id: uuid::Uuid) -> StreamId {
    StreamId::of("sso-signin", session_id)
}

/// A sign-in on its way through the issuer: what the callback checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub organization_id: OrganizationId,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub expires_at: Timestamp,
}

impl Pending {
    /// Sealed for the browser's cookie.
    pub fn seal(&self, secret: &ServerSecret, nonce: [u8; NONCE_BYTES]) -> String {
        let plain = serde_json::to_vec(self).expect("a pending sign-in serializes");
        seal(&cipher(secret, PENDING_SEAL_CONTEXT), b"pending", &plain, nonce)
    }

    /// A pending sign-in this server sealed and that has not expired at `now`.
    pub fn open(secret: &ServerSecret, sealed: &str, now: Timestamp) -> Option<Self> {
        if sealed.len() > PENDING_CHARS_MAX {
            return None;
        }
        let plain = open(&cipher(secret, PENDING_SEAL_CONTEXT), b"pending", sealed)?;
        let pending: Self = serde_json::from_slice(&plain).ok()?;
        (now < pending.expires_at).then_some(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(n: u128) -> OrganizationId {
        OrganizationId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_configuration_and_server() {
        let secret = ServerSecret::from_bytes([7; 32]);
        let sealed = SsoConfigured::seal_secret(&secret, org(1), "https://idp.test", "ledger", "s3cr3t-value", [1; 12]);
        assert!(!sealed.contains("s3cr3t-value"));
        let config = SsoConfigured {
            organization_id: org(1),
            issuer: "https://idp.test".into(),
            client_id: "ledger".into(),
            sealed_secret: sealed.clone(),
            at: Timestamp::from_micros(0),
        };
        assert_eq!(config.client_secret(&secret).as_deref(), Some("s3cr3t-value"));
        let other_org = SsoConfigured { organization_id: org(2), ..config.clone() };
        assert_eq!(other_org.client_secret(&secret), None, "another organization's configuration");
        let other_issuer = SsoConfigured { issuer: "https://evil.test".into(), ..config.clone() };
        assert_eq!(other_issuer.client_secret(&secret), None, "another issuer");
        assert_eq!(config.client_secret(&ServerSecret::from_bytes([8; 32])), None, "another server");
    }

    #[test]
    fn a_pending_sign_in_opens_until_it_expires_and_not_when_changed() {
        let secret = ServerSecret::from_bytes([7; 32]);
        let pending = Pending {
            organization_id: org(1),
            state: "state".into(),
            nonce: "nonce".into(),
            pkce_verifier: "verifier".into(),
            expires_at: Timestamp::from_micros(1_000),
        };
        let sealed = pending.seal(&secret, [3; 12]);
        assert!(!sealed.contains("verifier"));
        assert_eq!(Pending::open(&secret, &sealed, Timestamp::from_micros(999)), Some(pending));
        assert_eq!(Pending::open(&secret, &sealed, Timestamp::from_micros(1_000)), None, "expired");
        let mut changed = sealed.clone().into_bytes();
        changed[20] = if changed[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(Pending::open(&secret, std::str::from_utf8(&changed).unwrap(), Timestamp::from_micros(0)), None);
    }

    #[test]
    fn each_organization_has_its_own_link_for_a_subject() {
        let secret = ServerSecret::from_bytes([7; 32]);
        let a = link_stream(&secret, org(1), "https://idp.test", "alice");
        assert_eq!(a, link_stream(&secret, org(1), "https://idp.test", "alice"));
        assert_ne!(a, link_stream(&secret, org(2), "https://idp.test", "alice"));
        assert_ne!(a, link_stream(&secret, org(1), "https://idp.test", "bob"));
    }
}

/// Whether an issuer may be reached at `ip`: a public address, or (only
/// with the test setting) a loopback one. Private, link-local (cloud
/// metadata), shared, documentation, multicast and unspecified addresses
/// never are, nor IPv6 forms that embed them.
pub fn address_allowed(ip: std::net::IpAddr, allow_loopback: bool) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                return allow_loopback;
            }
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return address_allowed(IpAddr::V4(v4), allow_loopback);
            }
            if v6.is_loopback() {
                return allow_loopback;
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b
                || first == 0)
        }
    }
}

#[cfg(test)]
mod address_tests {
    use super::address_allowed;

    #[test]
    fn only_public_addresses_are_allowed_and_loopback_only_with_the_test_setting() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!address_allowed(private.parse().unwrap(), false), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(address_allowed(public.parse().unwrap(), false), "{public}");
        }
        assert!(address_allowed("127.0.0.1".parse().unwrap(), true));
        assert!(address_allowed("::1".parse().unwrap(), true));
        assert!(!address_allowed("10.0.0.1".parse().unwrap(), true), "the test setting allows loopback only");
    }
}
