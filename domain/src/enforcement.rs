//! The enforcement decision (BILLING-RULES.md, "Enforcement"; the seed's
//! `validateUsage`): may an organization do this now?
//!
//! One pure function, [`decide`], used by the server's enforcement query
//! (from the read models) and by the on-premises client (from its signed
//! lease, offline), so both answer by the same rules.

use rust_decimal::Decimal;

use crate::catalog::TierSpec;
use crate::subscription::Status;

/// Something the organization is about to do, with the usage it has now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// `ADD_USER`: allowed while the organization's active users (all
    /// roles) are below the seats.
    AddUser { active_users: u64 },
    /// `UPLOAD_DATA`: allowed while the latest reported data volume is
    /// below the data limit (with add-ons), compared exactly.
    UploadData { data_volume_gb: Decimal },
    /// `API_CALL`: allowed while this month's calls are below the limit.
    ApiCall { calls_this_month: u64 },
    /// `ACCESS_FEATURE`: allowed when the tier includes the feature.
    AccessFeature(&'a str),
}

/// A limit: a number, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Max(u64),
}

impl Limit {
    /// From the catalog's form: `None` is unlimited.
    pub fn from_option(limit: Option<u64>) -> Self {
        limit.map_or(Self::Unlimited, Self::Max)
    }

    /// From the seed's JSON form: `-1` is unlimited. Any other negative
    /// number is not in the contract and allows nothing (fail closed).
    pub fn from_seed(limit: i64) -> Self {
        match limit {
            -1 => Self::Unlimited,
            n => Self::Max(u64::try_from(n).unwrap_or(0)),
        }
    }

    /// The seed's JSON form: `-1` for unlimited.
    pub fn to_seed(self) -> i64 {
        match self {
            Self::Unlimited => -1,
            Self::Max(n) => i64::try_from(n).unwrap_or(i64::MAX),
        }
    }

    /// Whether `current` is below the limit.
    pub fn allows(self, current: Decimal) -> bool {
        match self {
            Self::Unlimited => true,
            Self::Max(limit) => current < Decimal::from(limit),
        }
    }
}

/// What the organization's live subscription grants today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entitlement<'a> {
    /// The subscription's status today.
    pub status: Status,
    pub seats: Limit,
    /// The tier's data limit plus the extra data its add-ons buy.
    pub data_gb: Limit,
    pub api_calls_per_month: Limit,
    /// The tier's feature keys.
    pub features: &'a [String],
}

impl<'a> Entitlement<'a> {
    /// A tier's limits with `extra_data_gb` of add-ons, under `status`.
    pub fn of_tier(status: Status, spec: &'a TierSpec, extra_data_gb: u64) -> Self {
        Self {
            status,
            seats: Limit::from_option(spec.seats.map(u64::from)),
            data_gb: Limit::Max(spec.data_gb.saturating_add(extra_data_gb)),
            api_calls_per_month: Limit::from_option(spec.api_calls_per_month),
            features: &spec.features,
        }
    }
}

/// Why an action is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The organization has no live subscription.
    NoSubscription,
    Suspended,
    /// Cancelled, from its effective day on.
    Cancelled,
    Expired,
    /// The usage is at or over the limit.
    LimitReached,
    /// The tier does not include the feature.
    FeatureNotInTier,
}

impl Reason {
    /// As the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSubscription => "no_subscription",
            Self::Suspended => Status::Suspended.as_str(),
            Self::Cancelled => Status::Cancelled.as_str(),
            Self::Expired => Status::Expired.as_str(),
            Self::LimitReached => "limit_reached",
            Self::FeatureNotInTier => "feature_not_in_tier",
        }
    }
}

/// The limit a usage was compared with, and the usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub limit: Limit,
    pub current: Decimal,
}

/// The answer: allowed or not, and for the three limit checks the limit
/// and the usage it was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `None` when allowed.
    pub denied: Option<Reason>,
    pub measured: Option<Measured>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.denied.is_none()
    }

    fn denied(reason: Reason) -> Self {
        Self { denied: Some(reason), measured: None }
    }

    fn against(limit: Limit, current: Decimal) -> Self {
        let denied = (!limit.allows(current)).then_some(Reason::LimitReached);
        Self { denied, measured: Some(Measured { limit, current }) }
    }
}

/// Decides `action` for an organization whose live subscription grants
/// `entitlement` (`None`: it has none). A subscription that is suspended,
/// cancelled from its effective day, or expired allows nothing; unlimited
/// always allows.
pub fn decide(action: &Action<'_>, entitlement: Option<&Entitlement<'_>>) -> Decision {
    let Some(entitlement) = entitlement else { return Decision::denied(Reason::NoSubscription) };
    match entitlement.status {
        Status::Suspended => return Decision::denied(Reason::Suspended),
        Status::Cancelled => return Decision::denied(Reason::Cancelled),
        Status::Expired => return Decision::denied(Reason::Expired),
        Status::Active | Status::PastDue => {}
    }
    match *action {
        Action::AddUser { active_users } => Decision::against(entitlement.seats, Decimal::from(active_users)),
        Action::UploadData { data_volume_gb } => Decision::against(entitlement.data_gb, data_volume_gb),
        Action::ApiCall { calls_this_month } => {
            Decision::against(entitlement.api_calls_per_month, Decimal::from(calls_this_month))
        }
        Action::AccessFeature(name) if entitlement.features.iter().any(|feature| feature == name) => {
            Decision { denied: None, measured: None }
        }
        Action::AccessFeature(_) => Decision::denied(Reason::FeatureNotInTier),
    }
}
