//! Licensing's response shapes: a subscription's limits, the validation
//! answer, the license list, a released deployment.

use chrono::NaiveDate;
use domain::catalog::{Catalog, TierSpec};
use domain::lease::{LeaseLimits, SignedLease, SignedRefusal};
use domain::license::ValidationCode;
use domain::subscription::Subscription;
use domain::{LicenseId, OrganizationId, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::limit;

/// The seed's `SubscriptionLimits`: what a subscription allows on a day,
/// `-1` for unlimited. Built by [`Limits::of`] only, wherever limits are
/// shown (subscription details, validation, `replay as-of`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Seats: the organization's active users, all roles.
    pub max_users: i64,
    /// The tier's data limit plus the extra data its add-ons buy.
    #[serde(rename = "maxDataVolumeGB")]
    pub max_data_volume_gb: i64,
    /// API calls a month.
    pub max_api_calls: i64,
    /// The tier's feature keys.
    pub allowed_features: Vec<String>,
    pub model_size: String,
}

impl Limits {
    /// A tier's limits with `extra_data_gb` bought as add-ons.
    pub fn of(spec: &TierSpec, extra_data_gb: u64) -> Self {
        Self {
            max_users: limit(spec.seats.map(u64::from)),
            max_data_volume_gb: limit(Some(spec.data_gb.saturating_add(extra_data_gb))),
            max_api_calls: limit(spec.api_calls_per_month),
            allowed_features: spec.features.clone(),
            model_size: spec.model_size.clone(),
        }
    }

    /// The limits of `subscription` in effect on `day` (its tier then, its
    /// add-ons running then).
    pub fn on(subscription: &Subscription, catalog: &Catalog, day: NaiveDate) -> Option<Self> {
        subscription.spec_on(catalog, day).map(|(spec, extra_data_gb)| Self::of(spec, extra_data_gb))
    }

    /// The limits a lease carries (its features travel beside them).
    pub fn lease_limits(&self) -> LeaseLimits {
        LeaseLimits {
            max_users: self.max_users,
            max_data_volume_gb: self.max_data_volume_gb,
            max_api_calls: self.max_api_calls,
            model_size: self.model_size.clone(),
        }
    }
}

/// A signed lease or refusal as it travels (`domain::lease`): the JSON
/// document's bytes and an Ed25519 signature by the server's lease key.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SignedDocument {
    /// base64url (no padding) of the JSON document's bytes.
    payload: String,
    /// base64url (no padding) of the Ed25519 signature.
    signature: String,
}

/// The seed's `LicenseValidationResponse`, plus `licenseId`, `code`,
/// `warnings`, a signed `lease` (when valid), a signed `refusal` (when not)
/// and `sequence`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationResponse {
    pub is_valid: bool,
    pub is_expired: bool,
    /// VALID, PAST_DUE, SUPERSEDED, NOT_FOUND, REVOKED, EXPIRED, SUSPENDED
    /// or TOO_MANY_DEPLOYMENTS.
    pub code: &'static str,
    pub warnings: Vec<String>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub license_id: Option<LicenseId>,
    pub validation_id: Option<Uuid>,
    /// The server's time; absent from a NOT_FOUND answer.
    #[serde(skip_serializing_if = "Option::is_none", with = "domain::time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub server_time: Option<Timestamp>,
    pub subscription: Option<ValidatedSubscription>,
    pub organization: Option<OrganizationRef>,
    #[schema(value_type = Option<SignedDocument>)]
    pub lease: Option<SignedLease>,
    /// When not valid: the refusal of this request (key, deployment and
    /// nonce), signed with the lease key, so a client can act on it.
    #[schema(value_type = Option<SignedDocument>)]
    pub refusal: Option<SignedRefusal>,
    /// Where the validation was recorded; `null` for NOT_FOUND.
    pub sequence: Option<u64>,
}

impl ValidationResponse {
    /// `NOT_FOUND`: an unknown key (with a signed refusal when the request
    /// named a key well-formed enough to bind one to) or none at all.
    pub fn not_found(refusal: Option<SignedRefusal>) -> Self {
        Self {
            is_valid: false,
            is_expired: false,
            code: ValidationCode::NotFound.as_str(),
            warnings: Vec::new(),
            license_id: None,
            validation_id: None,
            server_time: None,
            subscription: None,
            organization: None,
            lease: None,
            refusal,
            sequence: None,
        }
    }
}

/// The key's subscription as validation shows it. The feature list appears
/// three ways, as each of the seed's types reads one of them:
/// `features`, `allowedFeatures` and `limits.allowedFeatures`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidatedSubscription {
    pub tier: Option<&'static str>,
    pub limits: Option<Limits>,
    pub features: Vec<String>,
    pub allowed_features: Vec<String>,
    /// The key's own end: its supersede window's, or its term's.
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

/// An organization named in an answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationRef {
    #[schema(value_type = String, format = Uuid)]
    pub id: OrganizationId,
    pub name: Option<String>,
}

/// A released deployment: its place is taken until `slotFreesAt`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseResponse {
    pub sequence: u64,
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub slot_frees_at: Timestamp,
}

/// One license of an organization (never its key).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LicenseView {
    #[schema(value_type = String, format = Uuid)]
    pub id: LicenseId,
    /// `valid`, `superseded`, `revoked` or `expired`.
    pub status: &'static str,
    /// The tier in effect now: a superseded key reports the new key's.
    pub tier: Option<&'static str>,
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: Timestamp,
    /// The key's own end: its supersede window's, or its term's.
    #[serde(with = "domain::time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[serde(with = "domain::time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub superseded_until: Option<Timestamp>,
    pub revocation_reason: Option<String>,
    /// The deployments the key is active on.
    pub deployments: Vec<String>,
    /// Released, but their place is taken until their last lease ends.
    pub released_deployments: Vec<ReleasedDeployment>,
    /// Floating deployments holding a place: each until the end of the
    /// lease its last heartbeat got (`domain::floating`).
    pub floating_deployments: Vec<FloatingDeployment>,
    /// The public keys bound to deployments (trust on first use), which
    /// those deployments must keep presenting until an admin resets them.
    pub deployment_keys: Vec<BoundDeploymentKey>,
    pub validation_count: u64,
    #[serde(with = "domain::time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_validated_at: Option<Timestamp>,
}

/// A released deployment whose place is still taken.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleasedDeployment {
    pub deployment_id: String,
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub slot_frees_at: Timestamp,
}

/// A floating deployment holding a place until `leaseEndsAt`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FloatingDeployment {
    pub deployment_id: String,
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub lease_ends_at: Timestamp,
}

/// A deployment's bound public key (base64url of 32 bytes, Ed25519).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BoundDeploymentKey {
    pub deployment_id: String,
    pub public_key: String,
}

/// A challenge for a deployment to sign in its next validation
/// (`domain::deployment_key`): answered once, before `expiresAt`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeResponse {
    pub challenge: String,
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}
