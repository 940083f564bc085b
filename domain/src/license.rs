//! The license aggregate: one key of a subscription (BILLING-RULES.md,
//! "License keys and validation").
//!
//! Stream `license/{id}`. An upgrade issues a new key at once; the old one
//! stays valid until the effective day, answers SUPERSEDED for 7 × 24 hours
//! from the start of that day, then is revoked (the scheduler appends that).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

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
}

crate::stored_events! {
    /// What happened to a license key.
    pub enum LicenseEvent {
        LicenseIssued = 1,
        LicenseSuperseded = 1,
        LicenseRevoked = 1,
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
        if self.revoked.is_some() {
            return Err(E::AlreadyRevoked);
        }
        Ok(match command {
            LicenseCommand::Issue { .. } => unreachable!("handled above"),
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
        })
    }
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
        }
    }
}
