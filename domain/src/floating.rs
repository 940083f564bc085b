//! Floating deployments (issue 18 part 2): deployments that come and go
//! (containers) and hold a place of their key's `maxDeployments` only while
//! they send heartbeats.
//!
//! The operator allows a subscription some floating deployments
//! ([`FloatingPolicy`], `FloatingDeploymentsSet` on the subscription's
//! stream); they count toward `maxDeployments` with the fixed ones. A
//! heartbeat is a validation that says it is floating. The first takes a
//! place for [`FloatingPolicy::lease_seconds`] (`FloatingDeploymentLeased`
//! on the key's stream); later ones extend it, recorded only once less than
//! half of it is left ([`FloatingPolicy::needs_renewal`]), so a deployment
//! heartbeating every 10 minutes with a one-hour lease writes to the key's
//! stream twice an hour, not six times. The place is held exactly as long
//! as the lease the deployment was given: a deployment that stops
//! heartbeating frees it when that lease ends, decided from the log's
//! clock at the next validation, with no admin and no scheduler.
//!
//! Fixed deployments keep their seven-day leases.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The default interval between heartbeats.
pub const HEARTBEAT_INTERVAL_SECONDS_DEFAULT: u32 = 10 * 60;
/// The default time a floating deployment's place is held after a heartbeat.
pub const FLOATING_LEASE_SECONDS_DEFAULT: u32 = 3600;
/// The shortest heartbeat interval the operator may set: one a minute is
/// already the whole daily cap of validations (1,440) for one deployment.
pub const HEARTBEAT_INTERVAL_SECONDS_MIN: u32 = 60;
/// The longest heartbeat interval.
pub const HEARTBEAT_INTERVAL_SECONDS_MAX: u32 = 24 * 3600;
/// The longest place lease: a day. The shortest is two heartbeat
/// intervals, so one lost heartbeat does not free a running deployment's place.
pub const FLOATING_LEASE_SECONDS_MAX: u32 = 24 * 3600;

/// What the operator allows a subscription: how many of its
/// `maxDeployments` may be floating (0: none), how often they heartbeat,
/// and how long a place is held after a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingPolicy {
    pub deployments: u32,
    pub heartbeat_interval_seconds: u32,
    pub lease_seconds: u32,
}

impl Default for FloatingPolicy {
    fn default() -> Self {
        Self {
            deployments: 0,
            heartbeat_interval_seconds: HEARTBEAT_INTERVAL_SECONDS_DEFAULT,
            lease_seconds: FLOATING_LEASE_SECONDS_DEFAULT,
        }
    }
}

/// Why a floating policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FloatingPolicyError {
    #[error("floatingDeployments must be 0 to maxDeployments ({0})")]
    TooManyFloating(u32),
    #[error("heartbeatIntervalSeconds must be {HEARTBEAT_INTERVAL_SECONDS_MIN} to {HEARTBEAT_INTERVAL_SECONDS_MAX}")]
    HeartbeatInterval,
    #[error("leaseSeconds must be two heartbeat intervals to {FLOATING_LEASE_SECONDS_MAX}")]
    Lease,
}

impl FloatingPolicy {
    /// Checks the policy against the subscription's `maxDeployments`.
    pub fn check(&self, max_deployments: u32) -> Result<(), FloatingPolicyError> {
        if self.deployments > max_deployments {
            return Err(FloatingPolicyError::TooManyFloating(max_deployments));
        }
        let interval = self.heartbeat_interval_seconds;
        if !(HEARTBEAT_INTERVAL_SECONDS_MIN..=HEARTBEAT_INTERVAL_SECONDS_MAX).contains(&interval) {
            return Err(FloatingPolicyError::HeartbeatInterval);
        }
        if self.lease_seconds < interval.saturating_mul(2) || self.lease_seconds > FLOATING_LEASE_SECONDS_MAX {
            return Err(FloatingPolicyError::Lease);
        }
        Ok(())
    }

    /// When a place taken or extended at `now` frees.
    pub fn slot_frees_at(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_micros(now.as_micros().saturating_add(i64::from(self.lease_seconds) * 1_000_000))
    }

    /// Whether a heartbeat at `now` for a place held until `held_until`
    /// records an extension: when less than half of the lease is left.
    pub fn needs_renewal(&self, held_until: Timestamp, now: Timestamp) -> bool {
        let left = held_until.as_micros().saturating_sub(now.as_micros());
        left < i64::from(self.lease_seconds) * 1_000_000 / 2
    }
}

/// A floating deployment took or extended its place until `slot_frees_at`
/// (the end of the lease it was given), at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatingDeploymentLeased {
    pub deployment_id: String,
    pub at: Timestamp,
    pub slot_frees_at: Timestamp,
}

/// The operator set a subscription's floating deployments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatingDeploymentsSet {
    pub deployments: u32,
    pub heartbeat_interval_seconds: u32,
    pub lease_seconds: u32,
}

impl From<FloatingDeploymentsSet> for FloatingPolicy {
    fn from(e: FloatingDeploymentsSet) -> Self {
        Self {
            deployments: e.deployments,
            heartbeat_interval_seconds: e.heartbeat_interval_seconds,
            lease_seconds: e.lease_seconds,
        }
    }
}

impl From<FloatingPolicy> for FloatingDeploymentsSet {
    fn from(p: FloatingPolicy) -> Self {
        Self {
            deployments: p.deployments,
            heartbeat_interval_seconds: p.heartbeat_interval_seconds,
            lease_seconds: p.lease_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_bounded_and_renews_past_half_its_lease() {
        let policy = FloatingPolicy { deployments: 2, ..FloatingPolicy::default() };
        assert_eq!(policy.check(2), Ok(()));
        assert_eq!(policy.check(1), Err(FloatingPolicyError::TooManyFloating(1)));
        let short = FloatingPolicy { heartbeat_interval_seconds: 59, ..policy };
        assert_eq!(short.check(2), Err(FloatingPolicyError::HeartbeatInterval));
        let lease = FloatingPolicy { lease_seconds: 1199, ..policy };
        assert_eq!(lease.check(2), Err(FloatingPolicyError::Lease));
        let long = FloatingPolicy { lease_seconds: FLOATING_LEASE_SECONDS_MAX + 1, ..policy };
        assert_eq!(long.check(2), Err(FloatingPolicyError::Lease));
        let now = Timestamp::from_micros(0);
        let until = policy.slot_frees_at(now);
        assert_eq!(until.as_micros(), 3600 * 1_000_000);
        assert!(!policy.needs_renewal(until, Timestamp::from_micros(1800 * 1_000_000)));
        assert!(policy.needs_renewal(until, Timestamp::from_micros(1800 * 1_000_000 + 1)));
    }
}
