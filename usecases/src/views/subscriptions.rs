//! What the subscription commands answer: subscriptions, upgrades,
//! downgrades, cancellations, add-ons.

use chrono::NaiveDate;
use domain::subscription::SubscriptionUpgraded;
use serde::Serialize;
use uuid::Uuid;

use super::Amount;

/// `POST /subscriptions`: the new subscription and its license key (derived
/// again from its event for every answer, never stored; no `Debug`, so it
/// cannot reach a log).
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateSubscriptionResponse {
    pub subscription_id: Uuid,
    pub license_key: String,
    pub sequence: u64,
}

/// `POST /subscriptions/{orgId}/upgrade`: the seed's `UpgradeResponse` plus
/// `sequence`. An upgrade keeps the subscription, so `newSubscriptionId` is
/// its id; the new key is valid at once.
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeResponse {
    pub success: bool,
    pub new_subscription_id: Uuid,
    /// Information for the customer, never charged by itself: the month's
    /// invoice is the charge (BILLING-RULES, "Upgrade").
    pub prorated_amount: Amount,
    #[schema(value_type = String, format = Date)]
    pub effective_date: NaiveDate,
    pub new_license_key: String,
    pub sequence: u64,
}

impl UpgradeResponse {
    /// The answer to an upgrade, from its event.
    pub fn new(upgraded: &SubscriptionUpgraded, subscription_id: Uuid, new_license_key: String, sequence: u64) -> Self {
        Self {
            success: true,
            new_subscription_id: subscription_id,
            prorated_amount: Amount(upgraded.prorated_amount),
            effective_date: upgraded.effective_date,
            new_license_key,
            sequence,
        }
    }
}

/// `POST /subscriptions/{orgId}/downgrade`: the day the lower tier starts
/// (the renewal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DowngradeResponse {
    #[schema(value_type = String, format = Date)]
    pub effective_date: NaiveDate,
    pub sequence: u64,
}

/// `POST /subscriptions/{orgId}/cancel`: the term's end (auto-renewal off),
/// or the first day cancelled (immediate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelResponse {
    #[schema(value_type = String, format = Date)]
    pub effective_date: NaiveDate,
    pub sequence: u64,
}

/// `POST /subscriptions/{orgId}/addons`: the new add-on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddAddonResponse {
    pub addon_id: Uuid,
    pub sequence: u64,
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use domain::catalog::Tier;
    use domain::{LicenseId, Money};
    use rust_decimal::Decimal;

    use super::*;

    /// The prorated amount is money like any other: two places, half away
    /// from zero (BILLING-RULES, "Money"), where banker's rounding
    /// (`round_dp(2)`, what this answer used before) gives 1290.32.
    #[test]
    fn the_prorated_amount_rounds_half_away_from_zero() {
        let upgraded = SubscriptionUpgraded {
            from_tier: Tier::Starter,
            to_tier: Tier::Professional,
            effective_date: NaiveDate::from_ymd_opt(2026, 1, 16).unwrap(),
            prorated_amount: Money::usd(Decimal::from_str("1290.325").unwrap()),
            previous_license_id: LicenseId(Uuid::from_u128(1)),
            new_license_id: LicenseId(Uuid::from_u128(2)),
        };
        let answer = UpgradeResponse::new(&upgraded, Uuid::from_u128(3), "LK1-key".into(), 7);
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["proratedAmount"], "1290.33");
        assert_eq!(
            json,
            serde_json::json!({
                "success": true,
                "newSubscriptionId": Uuid::from_u128(3),
                "proratedAmount": "1290.33",
                "effectiveDate": "2026-01-16",
                "newLicenseKey": "LK1-key",
                "sequence": 7,
            })
        );
    }
}

/// `POST /subscriptions/{orgId}/changes/preview`: what a change of plan
/// would do, appending nothing. Confirming is its command (upgrade,
/// downgrade, cancel, add-on), which decides again on the state then.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePreview {
    /// `upgrade`, `downgrade`, `cancel` or `addon`.
    #[schema(example = "upgrade")]
    pub change: &'static str,
    /// The day the change takes effect.
    pub effective_date: NaiveDate,
    /// An upgrade's `proratedAmount` (information; the month's invoice is
    /// the charge); `null` for other changes.
    pub prorated_amount: Option<Amount>,
    /// The limits on `effectiveDate`, without and with the change.
    pub limits_before: Option<super::licensing::Limits>,
    pub limits_after: Option<super::licensing::Limits>,
    /// The invoice of `effectiveDate`'s month as it computes now (usage so
    /// far), without and with the change; `null` when that month has
    /// nothing to bill or is already invoiced.
    pub invoice_before: Option<super::billing::Invoice>,
    pub invoice_after: Option<super::billing::Invoice>,
    /// The read models' sequence the preview was computed at.
    pub sequence: u64,
}
