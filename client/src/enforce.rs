//! The four enforcement checks of BILLING-RULES ("Enforcement", the seed's
//! `validateUsage`), decided from the signed lease so they work offline.

use domain::lease::LeaseBody;
use rust_decimal::Decimal;

use crate::{UNLIMITED, ValidationCode};

/// Something the deployment is about to do, with the usage it has now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// `ADD_USER`: allowed while the org's active users are below the seats.
    AddUser { active_users: u64 },
    /// `UPLOAD_DATA`: allowed while the latest data volume is below the limit.
    UploadData { data_volume_gb: Decimal },
    /// `API_CALL`: allowed while this month's calls are below the limit.
    ApiCall { calls_this_month: u64 },
    /// `ACCESS_FEATURE`: allowed when the tier includes the feature.
    AccessFeature(&'a str),
}

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
    /// The usage given is at or over the limit.
    LimitReached { limit: i64 },
    /// The tier does not include the feature.
    FeatureNotIncluded,
}

/// Decides `action` under a lease already judged valid.
pub(crate) fn decide(lease: &LeaseBody, action: &Action<'_>) -> Decision {
    let limits = &lease.limits;
    match *action {
        Action::AddUser { active_users } => below(Decimal::from(active_users), limits.max_users),
        Action::UploadData { data_volume_gb } => below(data_volume_gb, limits.max_data_volume_gb),
        Action::ApiCall { calls_this_month } => below(Decimal::from(calls_this_month), limits.max_api_calls),
        Action::AccessFeature(name) => {
            if lease.features.iter().any(|feature| feature == name) {
                Decision::Allowed
            } else {
                Decision::Denied(Denial::FeatureNotIncluded)
            }
        }
    }
}

/// `current < limit`, with `-1` meaning no limit. Any other negative limit
/// is not in the contract and denies everything (fail closed).
fn below(current: Decimal, limit: i64) -> Decision {
    if limit == UNLIMITED || current < Decimal::from(limit) {
        Decision::Allowed
    } else {
        Decision::Denied(Denial::LimitReached { limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::lease::{LeaseLimits, key_binding};
    use domain::{LicenseId, OrganizationId, Timestamp};

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
