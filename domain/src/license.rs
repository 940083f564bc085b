//! The license aggregate: one key of a subscription (BILLING-RULES.md,
//! "License keys and validation").
//!
//! Stream `license/{id}`. An upgrade issues a new key at once; the old one
//! stays valid until the effective day, answers SUPERSEDED for 7 × 24 hours
//! from the start of that day, then is revoked (the scheduler appends that).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub use crate::floating::FloatingDeploymentLeased;
use crate::floating::FloatingPolicy;
use crate::record::Hash;
use crate::{LicenseId, OrganizationId, SubscriptionId, Timestamp};

/// How long a superseded key keeps working, from the start of the
/// upgrade's effective day.
pub const SUPERSEDE_WINDOW_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;
/// The longest revocation reason.
pub const REASON_CHARS_MAX: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub enum LicenseCommand {
    Issue {
        license_id: LicenseId,
        subscription_id: SubscriptionId,
        organization_id: OrganizationId,
        /// Random bytes from which the key is derived (keys module).
        nonce: [u8; 16],
        key_hash: Hash,
        issued_at: Timestamp,
    },
    Supersede {
        by: LicenseId,
        effective_date: NaiveDate,
    },
    Revoke {
        reason: String,
    },
    /// The scheduler's: the supersede window is over at `now`.
    EndSupersedeWindow {
        now: Timestamp,
    },
    /// A deployment validates the key for the first time.
    ActivateDeployment {
        deployment_id: String,
        max_deployments: u32,
    },
    /// An organization admin releases a deployment. Its place stays taken
    /// until the last lease it was given ends (`last_lease_ends`, from its
    /// validations; `None` when it has none that is still running), so
    /// releasing and activating in turn hands out no more leases than the
    /// key's `maxDeployments`.
    ReleaseDeployment {
        deployment_id: String,
        now: Timestamp,
        last_lease_ends: Option<Timestamp>,
    },
    /// A floating deployment's heartbeat takes its place, or extends the
    /// one it holds, until `policy.slot_frees_at(now)` (`crate::floating`).
    LeaseFloating {
        deployment_id: String,
        now: Timestamp,
        policy: FloatingPolicy,
        max_deployments: u32,
    },
    /// A deployment that validates with a key pair for the first time
    /// binds its public key (trust on first use): from then on it must
    /// present that key (`crate::deployment_key`).
    BindDeploymentKey {
        deployment_id: String,
        public_key: String,
    },
    /// An organization admin forgets a deployment's bound key: the next
    /// validation of the deployment binds whichever key it presents.
    ResetDeploymentKey {
        deployment_id: String,
    },
    /// The server secret behind the keyed hashes is rotated: the key's hash
    /// under the new secret (`secret_id` names it) replaces the stored one,
    /// revoked keys included (they keep answering REVOKED).
    RehashKey {
        key_hash: Hash,
        secret_id: Hash,
    },
    /// An air-gapped deployment's activation request, uploaded by an
    /// admin (`crate::airgap`): takes a place as an activation does, binds
    /// the request's key, and records the license file's nonce and
    /// validity. A request whose nonce was used, or made no later (by its
    /// own clock) than the last one accepted, is a replay.
    ActivateOffline {
        deployment_id: String,
        public_key: String,
        nonce: String,
        client_time: Timestamp,
        now: Timestamp,
        valid_until: Timestamp,
        max_deployments: u32,
    },
    /// An air-gapped deployment's usage export, imported: refused unless
    /// it comes from the deployment's key under its license file (nonce),
    /// and is newer than the last one imported.
    ImportUsage {
        deployment_id: String,
        public_key: String,
        license_nonce: String,
        export_id: String,
        created_at: Timestamp,
        now: Timestamp,
        days: u32,
    },
}

crate::stored_events! {
    /// What happened to a license key.
    pub enum LicenseEvent {
        LicenseIssued = "LicenseIssued" version 1,
        LicenseSuperseded = "LicenseSuperseded" version 1,
        LicenseRevoked = "LicenseRevoked" version 1,
        DeploymentActivated = "DeploymentActivated" version 1,
        DeploymentReleased = "DeploymentReleased" version 2 { 1 => DeploymentReleasedV1 },
        FloatingDeploymentLeased = "FloatingDeploymentLeased" version 1,
        DeploymentKeyBound = "DeploymentKeyBound" version 1,
        DeploymentKeyReset = "DeploymentKeyReset" version 1,
        LicenseKeyRehashed = "LicenseKeyRehashed" version 1,
        OfflineActivated = "OfflineActivated" version 1,
        OfflineUsageImported = "OfflineUsageImported" version 1,
    }
}

/// An air-gapped deployment activated by a license file (`crate::airgap`):
/// it holds a place (as `DeploymentActivated`), its key is bound, and the
/// file answers `nonce` until `valid_until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfflineActivated {
    pub deployment_id: String,
    pub public_key: String,
    /// The activation request's nonce, echoed by the license file.
    pub nonce: String,
    /// The request's clock, as it said.
    pub client_time: Timestamp,
    pub activated_at: Timestamp,
    pub valid_until: Timestamp,
}

/// A usage export of an air-gapped deployment, imported (its days are
/// `UsageReported` events appended with this one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfflineUsageImported {
    pub deployment_id: String,
    pub export_id: String,
    /// The export's clock, as it said.
    pub created_at: Timestamp,
    pub imported_at: Timestamp,
    /// How many days it carried.
    pub days: u32,
}

/// What the key remembers of an air-gapped deployment: the license file
/// last issued to it, and the last export imported from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineGrant {
    pub public_key: String,
    pub nonce: String,
    pub client_time: Timestamp,
    /// Its first offline activation: usage is imported from this day on.
    pub since: Timestamp,
    pub issued_at: Timestamp,
    pub valid_until: Timestamp,
    /// The last export imported: its id and clock.
    pub last_export: Option<(String, Timestamp)>,
}

/// A deployment's public key (base64url, no padding, of the 32 bytes of an
/// Ed25519 key), bound at its first validation that presented one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentKeyBound {
    pub deployment_id: String,
    pub public_key: String,
}

/// A deployment's bound key, forgotten by an organization admin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentKeyReset {
    pub deployment_id: String,
}

/// The key's keyed hash under the server secret `secret_id` names
/// (`crate::keys::secret_id`), replacing the one kept before: a rotation of
/// the secret (`ledger keys rehash-secret`). The key itself is unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseKeyRehashed {
    pub key_hash: Hash,
    pub secret_id: Hash,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentActivated {
    pub deployment_id: String,
}

/// A deployment released at `released_at`; its place is taken until
/// `slot_frees_at` (the end of its last lease, or the release itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentReleased {
    pub deployment_id: String,
    pub released_at: Timestamp,
    pub slot_frees_at: Timestamp,
}

/// Schema version 1 of `DeploymentReleased`: the place was free at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentReleasedV1 {
    pub deployment_id: String,
}

impl From<DeploymentReleasedV1> for DeploymentReleased {
    /// A release recorded before places were held freed its place at once:
    /// it reads as released and freed at the same moment (the epoch; version
    /// 1 did not record when), which holds no place at any time.
    fn from(old: DeploymentReleasedV1) -> Self {
        Self {
            deployment_id: old.deployment_id,
            released_at: Timestamp::from_micros(0),
            slot_frees_at: Timestamp::from_micros(0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseIssued {
    pub license_id: LicenseId,
    pub subscription_id: SubscriptionId,
    pub organization_id: OrganizationId,
    pub nonce: [u8; 16],
    pub key_hash: Hash,
    pub issued_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseSuperseded {
    pub by: LicenseId,
    pub effective_date: NaiveDate,
    pub window_ends_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseRevoked {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    #[error("the license already exists")]
    AlreadyExists,
    #[error("the license does not exist")]
    NotFound,
    #[error("the license is already revoked")]
    AlreadyRevoked,
    #[error("the license is already superseded")]
    AlreadySuperseded,
    #[error("the reason must be 1 to {REASON_CHARS_MAX} characters")]
    InvalidReason,
    #[error("the license is not in a supersede window that has ended")]
    WindowNotOver,
    #[error("the key is active on {max} deployments already")]
    TooManyDeployments { max: u32 },
    #[error("no deployment {0:?} is active on this key")]
    DeploymentNotFound(String),
    #[error("a deployment id is 1 to {} visible ASCII characters", crate::lease::DEPLOYMENT_ID_CHARS_MAX)]
    InvalidDeploymentId,
    #[error("the deployment {0:?} has a key bound already")]
    DeploymentKeyAlreadyBound(String),
    #[error("the deployment {0:?} has no key bound")]
    DeploymentKeyNotBound(String),
    #[error("a deployment key is the base64url (no padding) of a 32-byte Ed25519 public key")]
    InvalidDeploymentKey,
    #[error("this file was used before, or is older than the last one accepted from the deployment")]
    OfflineReplayed,
    #[error("this file is not from the deployment's bound key, or not under its license file")]
    OfflineForeign,
}

/// A key's own state at a moment, before the subscription's is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Valid,
    /// Valid, with the new key's limits, until the window ends.
    Superseded {
        until: Timestamp,
    },
    Revoked,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct License {
    pub issued: Option<LicenseIssued>,
    pub superseded: Option<LicenseSuperseded>,
    pub revoked: Option<String>,
    /// Deployments the key is active on, in id order.
    pub deployments: std::collections::BTreeSet<String>,
    /// Released deployments and when their place frees (the end of their
    /// last lease). Entries whose time has passed are dropped at the next
    /// release, so with the cap counting them this holds at most
    /// `maxDeployments` entries (see [`License::places_taken`]).
    pub released: std::collections::BTreeMap<String, Timestamp>,
    /// Floating deployments and when their place frees (the end of the
    /// lease of their last recorded heartbeat). Entries whose time has
    /// passed are dropped at the next floating lease, and a new place is
    /// only taken under the cap, so this holds at most `maxDeployments`
    /// live entries (`crate::floating`).
    pub floating: std::collections::BTreeMap<String, Timestamp>,
    /// The public keys bound to deployments (base64url), by deployment id:
    /// only of deployments active or still holding a place, so this holds
    /// no more entries than those two.
    pub deployment_keys: std::collections::BTreeMap<String, String>,
    /// Air-gapped deployments (`crate::airgap`), by deployment id: only of
    /// deployments active or still holding a place, like `deployment_keys`.
    pub offline: std::collections::BTreeMap<String, OfflineGrant>,
}

/// The answer to a validation (BILLING-RULES.md), in order of precedence:
/// the first that applies wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ValidationCode {
    NotFound,
    Revoked,
    Expired,
    Suspended,
    TooManyDeployments,
    Superseded,
    PastDue,
    Valid,
}

impl ValidationCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "NOT_FOUND",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
            Self::Suspended => "SUSPENDED",
            Self::TooManyDeployments => "TOO_MANY_DEPLOYMENTS",
            Self::Superseded => "SUPERSEDED",
            Self::PastDue => "PAST_DUE",
            Self::Valid => "VALID",
        }
    }

    /// Valid for use: the last three codes.
    pub fn is_valid(self) -> bool {
        matches!(self, Self::Superseded | Self::PastDue | Self::Valid)
    }
}

/// What a validation needs to know of the key's subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionFacts {
    /// The subscription's status today.
    pub status: crate::subscription::Status,
    /// The term's (exclusive) end.
    pub term_end: NaiveDate,
    pub auto_renew: bool,
    pub max_deployments: u32,
}

impl License {
    /// The answer to a validation from `deployment_id` at `now`.
    pub fn validation_code(
        &self,
        facts: &SubscriptionFacts,
        deployment_id: &str,
        now: Timestamp,
        today: NaiveDate,
    ) -> ValidationCode {
        use crate::subscription::Status;
        use ValidationCode as C;
        if self.issued.is_none() {
            return C::NotFound;
        }
        let key = self.state_at(now);
        if key == KeyState::Revoked {
            return C::Revoked;
        }
        // A term that ended without renewal is over even before the
        // scheduler has recorded the expiry.
        if facts.status.is_ended() || (today >= facts.term_end && !facts.auto_renew) {
            return C::Expired;
        }
        if facts.status == Status::Suspended {
            return C::Suspended;
        }
        if !self.deployments.contains(deployment_id)
            && self.floating_until(deployment_id, now).is_none()
            && self.places_taken(deployment_id, now) >= facts.max_deployments as usize
        {
            return C::TooManyDeployments;
        }
        if matches!(key, KeyState::Superseded { .. }) {
            return C::Superseded;
        }
        if facts.status == Status::PastDue {
            return C::PastDue;
        }
        C::Valid
    }

    /// The places of the key's deployment cap taken at `now` for a
    /// deployment `asking`: every active deployment, every released one
    /// whose last lease has not ended yet and every floating one whose
    /// lease has not ended yet, except `asking` itself (a released or
    /// floating deployment may come back to its own place).
    pub fn places_taken(&self, asking: &str, now: Timestamp) -> usize {
        let held = self.held_places(now).filter(|(deployment, _)| *deployment != asking).count();
        self.deployments.len() + held + self.floating_held(asking, now)
    }

    /// Floating deployments other than `asking` whose place is held at `now`.
    pub fn floating_held(&self, asking: &str, now: Timestamp) -> usize {
        self.floating
            .iter()
            .filter(|(deployment, frees_at)| {
                **frees_at > now && *deployment != asking && !self.deployments.contains(*deployment)
            })
            .count()
    }

    /// Whether `deployment_id` may report usage for this key: an active
    /// fixed deployment, or a floating one the key remembers (its place is
    /// held, or freed since the last floating lease was recorded).
    pub fn reports_from(&self, deployment_id: &str) -> bool {
        self.deployments.contains(deployment_id) || self.floating.contains_key(deployment_id)
    }

    /// A heartbeat's extension, kept on the key's per-day floating stream
    /// (`crate::validation::FloatingLeaseExtended`): extends a place held at
    /// `at` (never takes one: that is the key's own `FloatingDeploymentLeased`).
    pub fn extend_floating(&mut self, extended: &crate::validation::FloatingLeaseExtended) {
        if let Some(frees_at) = self.floating.get_mut(&extended.deployment_id)
            && *frees_at > extended.at
        {
            *frees_at = (*frees_at).max(extended.slot_frees_at);
        }
    }

    /// Until when the floating deployment `deployment_id` holds its place,
    /// if it does at `now`.
    pub fn floating_until(&self, deployment_id: &str, now: Timestamp) -> Option<Timestamp> {
        self.floating.get(deployment_id).copied().filter(|frees_at| *frees_at > now)
    }

    /// The answer to a heartbeat (a floating validation) from
    /// `deployment_id` at `now`: as [`validation_code`](Self::validation_code),
    /// but a place is one of the policy's floating ones, held only while
    /// its lease runs. A subscription that allows none answers
    /// TOO_MANY_DEPLOYMENTS.
    pub fn floating_validation_code(
        &self,
        facts: &SubscriptionFacts,
        policy: &FloatingPolicy,
        deployment_id: &str,
        now: Timestamp,
        today: NaiveDate,
    ) -> ValidationCode {
        let code = self.validation_code(facts, deployment_id, now, today);
        if !code.is_valid() || self.floating_until(deployment_id, now).is_some() {
            return code;
        }
        let room = self.places_taken(deployment_id, now) < facts.max_deployments as usize
            && self.floating_held(deployment_id, now) < policy.deployments as usize;
        if room { code } else { ValidationCode::TooManyDeployments }
    }

    /// Released deployments whose place is still taken at `now`, with the
    /// moment each frees, in id order.
    pub fn held_places(&self, now: Timestamp) -> impl Iterator<Item = (&str, Timestamp)> {
        self.released
            .iter()
            .filter(move |(deployment, frees_at)| **frees_at > now && !self.deployments.contains(*deployment))
            .map(|(deployment, frees_at)| (deployment.as_str(), *frees_at))
    }

    /// The latest moment a lease for this key may reach: its supersede
    /// window's end, or its term's end.
    pub fn end(&self, facts: &SubscriptionFacts) -> Timestamp {
        let term = start_of_day(facts.term_end);
        match &self.superseded {
            Some(s) => s.window_ends_at.min(term),
            None => term,
        }
    }

    /// When a lease this key is given at `now` ends: seven days later,
    /// never past the key's own [`end`](Self::end).
    pub fn lease_expires_at(&self, facts: &SubscriptionFacts, now: Timestamp) -> Timestamp {
        crate::lease::expires_at(now, self.end(facts))
    }
}

impl License {
    pub fn state_at(&self, now: Timestamp) -> KeyState {
        match (&self.revoked, &self.superseded) {
            (Some(_), _) => KeyState::Revoked,
            (None, Some(s)) if now >= s.window_ends_at => KeyState::Revoked,
            (None, Some(s)) if now >= start_of_day(s.effective_date) => {
                KeyState::Superseded { until: s.window_ends_at }
            }
            _ => KeyState::Valid,
        }
    }

    fn decide(&self, command: LicenseCommand) -> Result<LicenseEvent, LicenseError> {
        use LicenseError as E;
        if let LicenseCommand::Issue { license_id, subscription_id, organization_id, nonce, key_hash, issued_at } =
            command
        {
            return match self.issued {
                Some(_) => Err(E::AlreadyExists),
                None => {
                    Ok(LicenseIssued { license_id, subscription_id, organization_id, nonce, key_hash, issued_at }
                        .into())
                }
            };
        }
        if self.issued.is_none() {
            return Err(E::NotFound);
        }
        if let LicenseCommand::RehashKey { key_hash, secret_id } = command {
            return Ok(LicenseKeyRehashed { key_hash, secret_id }.into());
        }
        if self.revoked.is_some() {
            return Err(E::AlreadyRevoked);
        }
        Ok(match command {
            LicenseCommand::Issue { .. } | LicenseCommand::RehashKey { .. } => unreachable!("handled above"),
            LicenseCommand::Supersede { by, effective_date } => {
                if self.superseded.is_some() {
                    return Err(E::AlreadySuperseded);
                }
                let window_ends_at =
                    Timestamp::from_micros(start_of_day(effective_date).as_micros() + SUPERSEDE_WINDOW_MICROS);
                LicenseSuperseded { by, effective_date, window_ends_at }.into()
            }
            LicenseCommand::Revoke { reason } => {
                let reason = reason.trim().to_owned();
                if reason.is_empty() || reason.chars().count() > REASON_CHARS_MAX {
                    return Err(E::InvalidReason);
                }
                LicenseRevoked { reason }.into()
            }
            LicenseCommand::EndSupersedeWindow { now } => match &self.superseded {
                Some(s) if now >= s.window_ends_at => LicenseRevoked { reason: "superseded".into() }.into(),
                _ => return Err(E::WindowNotOver),
            },
            LicenseCommand::ActivateDeployment { deployment_id, max_deployments } => {
                valid_deployment_id(&deployment_id)?;
                if self.deployments.len() >= max_deployments as usize {
                    return Err(E::TooManyDeployments { max: max_deployments });
                }
                DeploymentActivated { deployment_id }.into()
            }
            LicenseCommand::ReleaseDeployment { deployment_id, now, last_lease_ends } => {
                self.release(deployment_id, now, last_lease_ends)?.into()
            }
            LicenseCommand::LeaseFloating { deployment_id, now, policy, max_deployments } => {
                self.decide_floating(deployment_id, now, policy, max_deployments)?
            }
            LicenseCommand::BindDeploymentKey { deployment_id, public_key } => {
                self.bind_key(deployment_id, public_key)?.into()
            }
            LicenseCommand::ResetDeploymentKey { deployment_id } => {
                if !self.deployment_keys.contains_key(&deployment_id) {
                    return Err(E::DeploymentKeyNotBound(deployment_id));
                }
                DeploymentKeyReset { deployment_id }.into()
            }
            command @ LicenseCommand::ActivateOffline { .. } => self.activate_offline(command)?.into(),
            command @ LicenseCommand::ImportUsage { .. } => self.import_usage(command)?.into(),
        })
    }

    /// A release frees the place when the deployment's last lease ends, or
    /// an air-gapped deployment's license file (its lease), if later.
    fn release(
        &self,
        deployment_id: String,
        now: Timestamp,
        last_lease_ends: Option<Timestamp>,
    ) -> Result<DeploymentReleased, LicenseError> {
        if !self.deployments.contains(&deployment_id) {
            return Err(LicenseError::DeploymentNotFound(deployment_id));
        }
        let file_ends = self.offline.get(&deployment_id).map(|grant| grant.valid_until);
        let slot_frees_at = last_lease_ends.max(file_ends).map_or(now, |ends| ends.max(now));
        Ok(DeploymentReleased { deployment_id, released_at: now, slot_frees_at })
    }

    fn bind_key(&self, deployment_id: String, public_key: String) -> Result<DeploymentKeyBound, LicenseError> {
        if !self.deployments.contains(&deployment_id) {
            return Err(LicenseError::DeploymentNotFound(deployment_id));
        }
        if self.deployment_keys.contains_key(&deployment_id) {
            return Err(LicenseError::DeploymentKeyAlreadyBound(deployment_id));
        }
        crate::deployment_key::parse_public_key(&public_key).map_err(|_| LicenseError::InvalidDeploymentKey)?;
        Ok(DeploymentKeyBound { deployment_id, public_key })
    }
}

impl License {
    /// A floating place for `deployment_id` from `now`: extended when it
    /// holds one, else taken under both caps (`maxDeployments` and the
    /// policy's floating deployments).
    fn decide_floating(
        &self,
        deployment_id: String,
        now: Timestamp,
        policy: FloatingPolicy,
        max_deployments: u32,
    ) -> Result<LicenseEvent, LicenseError> {
        valid_deployment_id(&deployment_id)?;
        if self.floating_until(&deployment_id, now).is_none() {
            if self.places_taken(&deployment_id, now) >= max_deployments as usize {
                return Err(LicenseError::TooManyDeployments { max: max_deployments });
            }
            if self.floating_held(&deployment_id, now) >= policy.deployments as usize {
                return Err(LicenseError::TooManyDeployments { max: policy.deployments });
            }
        }
        let slot_frees_at = policy.slot_frees_at(now);
        Ok(FloatingDeploymentLeased { deployment_id, at: now, slot_frees_at }.into())
    }
}

impl License {
    /// An air-gapped deployment's activation (`LicenseCommand::ActivateOffline`).
    fn activate_offline(&self, command: LicenseCommand) -> Result<OfflineActivated, LicenseError> {
        let LicenseCommand::ActivateOffline {
            deployment_id,
            public_key,
            nonce,
            client_time,
            now,
            valid_until,
            max_deployments,
        } = command
        else {
            unreachable!("called with ActivateOffline")
        };
        valid_deployment_id(&deployment_id)?;
        crate::deployment_key::parse_public_key(&public_key).map_err(|_| LicenseError::InvalidDeploymentKey)?;
        if self.deployment_keys.get(&deployment_id).is_some_and(|bound| *bound != public_key) {
            return Err(LicenseError::OfflineForeign);
        }
        if let Some(grant) = self.offline.get(&deployment_id)
            && (grant.nonce == nonce || client_time <= grant.client_time)
        {
            return Err(LicenseError::OfflineReplayed);
        }
        if !self.deployments.contains(&deployment_id)
            && self.places_taken(&deployment_id, now) >= max_deployments as usize
        {
            return Err(LicenseError::TooManyDeployments { max: max_deployments });
        }
        Ok(OfflineActivated { deployment_id, public_key, nonce, client_time, activated_at: now, valid_until })
    }

    /// An air-gapped deployment's usage export (`LicenseCommand::ImportUsage`).
    fn import_usage(&self, command: LicenseCommand) -> Result<OfflineUsageImported, LicenseError> {
        let LicenseCommand::ImportUsage { deployment_id, public_key, license_nonce, export_id, created_at, now, days } =
            command
        else {
            unreachable!("called with ImportUsage")
        };
        let grant = self.offline.get(&deployment_id).ok_or(LicenseError::OfflineForeign)?;
        if grant.public_key != public_key || grant.nonce != license_nonce {
            return Err(LicenseError::OfflineForeign);
        }
        if let Some((last_id, last_at)) = &grant.last_export
            && (*last_id == export_id || created_at <= *last_at)
        {
            return Err(LicenseError::OfflineReplayed);
        }
        Ok(OfflineUsageImported { deployment_id, export_id, created_at, imported_at: now, days })
    }

    fn apply_offline(&mut self, e: OfflineActivated) {
        self.released.remove(&e.deployment_id);
        self.floating.remove(&e.deployment_id);
        self.deployments.insert(e.deployment_id.clone());
        self.deployment_keys.insert(e.deployment_id.clone(), e.public_key.clone());
        let before = self.offline.remove(&e.deployment_id);
        let grant = OfflineGrant {
            public_key: e.public_key,
            nonce: e.nonce,
            client_time: e.client_time,
            since: before.as_ref().map_or(e.activated_at, |b| b.since),
            issued_at: e.activated_at,
            valid_until: e.valid_until,
            last_export: before.and_then(|b| b.last_export),
        };
        self.offline.insert(e.deployment_id, grant);
    }
}

/// When the last lease handed to `deployment_id` ends, from the key's
/// validations (any order): each valid answer carried a lease of
/// [`LEASE_MICROS`](crate::lease::LEASE_MICROS) from its time. `None` when
/// none was valid.
pub fn last_lease_end<'a>(
    validations: impl IntoIterator<Item = &'a crate::validation::LicenseValidated>,
    deployment_id: &str,
) -> Option<Timestamp> {
    validations
        .into_iter()
        .filter(|v| v.deployment_id == deployment_id && v.code.is_valid())
        .map(|v| crate::lease::longest_end(v.at))
        .max()
}

/// A deployment id: 1 to 128 visible ASCII characters.
pub fn valid_deployment_id(deployment_id: &str) -> Result<(), LicenseError> {
    let ok = !deployment_id.is_empty()
        && deployment_id.len() <= crate::lease::DEPLOYMENT_ID_CHARS_MAX
        && deployment_id.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(()) } else { Err(LicenseError::InvalidDeploymentId) }
}

/// 00:00 UTC of a day.
pub fn start_of_day(date: NaiveDate) -> Timestamp {
    Timestamp::from_datetime(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
}

impl cqrs_es::Aggregate for License {
    const TYPE: &'static str = "license";
    type Command = LicenseCommand;
    type Event = LicenseEvent;
    type Error = LicenseError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            LicenseEvent::LicenseIssued(e) => self.issued = Some(e),
            LicenseEvent::LicenseSuperseded(e) => self.superseded = Some(e),
            LicenseEvent::LicenseRevoked(e) => self.revoked = Some(e.reason),
            LicenseEvent::DeploymentActivated(e) => {
                self.released.remove(&e.deployment_id);
                self.floating.remove(&e.deployment_id);
                self.deployments.insert(e.deployment_id);
            }
            LicenseEvent::FloatingDeploymentLeased(e) => {
                // Places freed by now are forgotten, which keeps the map
                // as small as the cap.
                self.floating.retain(|_, frees_at| *frees_at > e.at);
                self.released.remove(&e.deployment_id);
                self.floating.insert(e.deployment_id, e.slot_frees_at);
            }
            LicenseEvent::DeploymentReleased(e) => {
                self.deployments.remove(&e.deployment_id);
                // Places freed by the time of this release are forgotten,
                // which keeps the map as small as the cap.
                self.released.retain(|_, frees_at| *frees_at > e.released_at);
                if e.slot_frees_at > e.released_at {
                    self.released.insert(e.deployment_id, e.slot_frees_at);
                }
                let (deployments, released) = (&self.deployments, &self.released);
                self.deployment_keys.retain(|d, _| deployments.contains(d) || released.contains_key(d));
                self.offline.retain(|d, _| deployments.contains(d) || released.contains_key(d));
            }
            LicenseEvent::DeploymentKeyBound(e) => {
                self.deployment_keys.insert(e.deployment_id, e.public_key);
            }
            LicenseEvent::DeploymentKeyReset(e) => {
                self.deployment_keys.remove(&e.deployment_id);
            }
            LicenseEvent::LicenseKeyRehashed(e) => {
                if let Some(issued) = &mut self.issued {
                    issued.key_hash = e.key_hash;
                }
            }
            LicenseEvent::OfflineActivated(e) => self.apply_offline(e),
            LicenseEvent::OfflineUsageImported(e) => {
                if let Some(grant) = self.offline.get_mut(&e.deployment_id) {
                    grant.last_export = Some((e.export_id, e.created_at));
                }
            }
        }
    }
}
