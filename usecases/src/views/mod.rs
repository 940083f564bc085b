//! The typed response shapes of the ledger: what the HTTP API answers and
//! what `replay` prints, one struct per resource, with their OpenAPI
//! schemas. JSON is camelCase, dates `YYYY-MM-DD`, times RFC 3339 UTC,
//! money a two-decimal string, unlimited limits `-1` (docs/API.md).

use domain::Money;
use serde::{Serialize, Serializer};

pub mod billing;
pub mod customers;
pub mod licensing;
pub mod log;
pub mod ops;
pub mod organizations;
pub mod queries;
pub mod revenue;
pub mod staff;
pub mod stripe;
pub mod subscriptions;
pub mod usage;

/// What a command that creates nothing new answers: the log position it
/// was appended at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequenceResponse {
    pub sequence: u64,
}

/// An amount of money as the API writes it: a decimal string with exactly
/// two places, rounded half away from zero (docs/BILLING-RULES.md, "Money").
/// The one place money becomes text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(pub Money);

impl Amount {
    pub fn text(&self) -> String {
        format!("{:.2}", self.0.round_cents().amount())
    }
}

impl From<Money> for Amount {
    fn from(money: Money) -> Self {
        Self(money)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^-?[0-9]+\.[0-9]{2}$"))
            .examples([serde_json::json!("2500.00")])
            .description(Some("An amount in the invoice's currency, two decimals, half away from zero."))
            .into()
    }
}

impl utoipa::ToSchema for Amount {}

/// A limit as the seed writes it: a number, or `-1` for unlimited.
pub fn limit(value: Option<u64>) -> i64 {
    value.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use super::*;

    #[test]
    fn money_is_two_places_half_away_from_zero() {
        for (amount, text) in [("2500", "2500.00"), ("1290.325", "1290.33"), ("-17.005", "-17.01"), ("0.004", "0.00")] {
            let amount = Amount(Money::usd(Decimal::from_str(amount).unwrap()));
            assert_eq!(serde_json::to_value(amount).unwrap(), serde_json::json!(text), "{amount:?}");
        }
    }

    #[test]
    fn unlimited_is_minus_one() {
        assert_eq!((limit(None), limit(Some(5))), (-1, 5));
    }
}
