//! The four enforcement checks of BILLING-RULES ("Enforcement", the seed's
//! `validateUsage`), decided from the signed lease so they work offline, by
//! the same rules as the server's enforcement query
//! (`domain::enforcement::decide`).

use domain::enforcement::{self, Entitlement, Limit, Reason};
use domain::lease::LeaseBody;
use domain::subscription::Status;

use crate::ValidationCode;

/// Something the deployment is about to do, with the usage it has now.
pub use domain::enforcement::Action;

/// The answer to [`LicenseClient::check`](crate::LicenseClient::check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied(Denial),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed)
    }
}

/// Why an action was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No valid lease (never validated, expired, or the file did not
    /// verify): nothing is allowed.
    NoLease,
    /// The wall clock went back: nothing is allowed.
    ClockTampered,
    /// The server said the license is not valid: nothing is allowed.
    Invalid(ValidationCode),
    /// The usage given is at or over the limit (as the lease writes it).
    LimitReached { limit: i64 },
    /// The tier does not include the feature.
    FeatureNotIncluded,
}

/// Decides `action` under a lease already judged valid. `-1` in a limit
/// means none; any other negative limit is not in the contract and denies
/// everything (fail closed).
pub(crate) fn decide(lease: &LeaseBody, action: &Action<'_>) -> Decision {
    let limits = &lease.limits;
    let entitlement = Entitlement {
        // Leases are issued only for valid answers (VALID, PAST_DUE,
        // SUPERSEDED), and this one was judged valid now: the subscription
        // allows use.
        status: Status::Active,
        seats: Limit::from_seed(limits.max_users),
        data_gb: Limit::from_seed(limits.max_data_volume_gb),
        api_calls_per_month: Limit::from_seed(limits.max_api_calls),
        features: &lease.features,
    };
    let Some(reason) = enforcement::decide(action, Some(&entitlement)).denied else { return Decision::Allowed };
    Decision::Denied(match reason {
        Reason::LimitReached => match action {
            Action::AddUser { .. } => Denial::LimitReached { limit: limits.max_users },
            Action::UploadData { .. } => Denial::LimitReached { limit: limits.max_data_volume_gb },
            Action::ApiCall { .. } => Denial::LimitReached { limit: limits.max_api_calls },
            // A feature check has no limit to reach.
            Action::AccessFeature(_) => Denial::FeatureNotIncluded,
        },
        Reason::FeatureNotInTier => Denial::FeatureNotIncluded,
        // Not reachable under a valid lease; denied all the same.
        Reason::NoSubscription => Denial::NoLease,
        Reason::Suspended => Denial::Invalid(ValidationCode::Suspended),
        Reason::Cancelled | Reason::Expired => Denial::Invalid(ValidationCode::Expired),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::lease::{LeaseLimits, key_binding};
    use domain::{LicenseId, OrganizationId, Timestamp};
    use rust_decimal::Decimal;

    fn lease(max_users: i64, max_data_volume_gb: i64, max_api_calls: i64) -> LeaseBody {
        LeaseBody {
            version: 1,
            license_id: LicenseId(Default::default()),
            organization_id: OrganizationId(Default::default()),
            key_binding: key_binding("k"),
            deployment_id: "default".into(),
            nonce: "n".into(),
            client_time: Some(Timestamp::from_micros(0)),
            issued_at: Timestamp::from_micros(0),
            lease_expires_at: Timestamp::from_micros(1),
            code: "VALID".into(),
            tier: "starter".into(),
            limits: LeaseLimits { max_users, max_data_volume_gb, max_api_calls, model_size: "small".into() },
            features: vec!["basic_analytics".into()],
            heartbeat_interval_seconds: None,
            deployment_key: None,
        }
    }

    fn check(lease: &LeaseBody, action: Action<'_>, expected: Decision) {
        assert_eq!(decide(lease, &action), expected, "{action:?}");
    }

    #[test]
    fn each_check_allows_below_the_limit_only() {
        let starter = lease(5, 1000, 10_000);
        let full = |limit| Decision::Denied(Denial::LimitReached { limit });
        check(&starter, Action::AddUser { active_users: 4 }, Decision::Allowed);
        check(&starter, Action::AddUser { active_users: 5 }, full(5));
        check(&starter, Action::UploadData { data_volume_gb: Decimal::new(99_999, 2) }, Decision::Allowed);
        check(&starter, Action::UploadData { data_volume_gb: Decimal::from(1000) }, full(1000));
        check(&starter, Action::ApiCall { calls_this_month: 9_999 }, Decision::Allowed);
        check(&starter, Action::ApiCall { calls_this_month: 10_000 }, full(10_000));
        check(&starter, Action::AccessFeature("basic_analytics"), Decision::Allowed);
        check(&starter, Action::AccessFeature("white_labeling"), Decision::Denied(Denial::FeatureNotIncluded));
    }

    #[test]
    fn minus_one_is_unlimited_and_other_negatives_deny() {
        let enterprise = lease(-1, 5000, -1);
        check(&enterprise, Action::AddUser { active_users: u64::MAX }, Decision::Allowed);
        check(&enterprise, Action::ApiCall { calls_this_month: u64::MAX }, Decision::Allowed);
        let broken = lease(-2, -2, -2);
        check(&broken, Action::AddUser { active_users: 0 }, Decision::Denied(Denial::LimitReached { limit: -2 }));
    }
}
