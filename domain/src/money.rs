//! Money: an exact decimal amount with its ISO 4217 currency.
//!
//! Amounts are never floats. Arithmetic is exact; rounding to cents happens
//! once per invoice line, half away from zero (BILLING-RULES.md, "Money").

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// An ISO 4217 alphabetic code, three uppercase ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn new(code: &str) -> Option<Self> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        bytes.iter().all(u8::is_ascii_uppercase).then_some(Self(bytes))
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).expect("constructed from ASCII letters")
    }
}

/// An amount of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

/// Arithmetic across two currencies is refused, never converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot combine {left} with {right}")]
pub struct CurrencyMismatch {
    pub left: String,
    pub right: String,
}

/// Why an amount could not be computed: never a panic, always a value the
/// caller can name (the billing run names it per subscription).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error(transparent)]
    CurrencyMismatch(#[from] CurrencyMismatch),
    /// The result lies beyond what a decimal holds (about 7.9 × 10^28).
    #[error("the amount overflows")]
    Overflow,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn usd(amount: Decimal) -> Self {
        Self::new(amount, Currency::USD)
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(Decimal::ZERO, currency)
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        let amount = self.amount.checked_add(other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Self::new(amount, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        let amount = self.amount.checked_sub(other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Self::new(amount, self.currency))
    }

    /// The amount times a factor (a quantity, a number of started TB).
    pub fn checked_mul(self, factor: Decimal) -> Result<Money, MoneyError> {
        let amount = self.amount.checked_mul(factor).ok_or(MoneyError::Overflow)?;
        Ok(Self::new(amount, self.currency))
    }

    /// Rounds to cents, half away from zero: the one rounding of a line.
    /// It cannot overflow: rounding drops digits first, so the one unit it
    /// may add lands far below the largest decimal.
    pub fn round_cents(self) -> Money {
        Self::new(self.amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero), self.currency)
    }

    fn same_currency(&self, other: &Money) -> Result<(), CurrencyMismatch> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(CurrencyMismatch { left: self.to_string(), right: other.to_string() })
        }
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.amount, self.currency.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn usd(text: &str) -> Money {
        Money::usd(Decimal::from_str(text).unwrap())
    }

    #[test]
    fn rounds_once_half_away_from_zero() {
        assert_eq!(usd("2.345").round_cents(), usd("2.35"));
        assert_eq!(usd("-2.345").round_cents(), usd("-2.35"));
        assert_eq!(usd("2.344999").round_cents(), usd("2.34"));
        // 2,500 × 19 / 28, worked example 4 of BILLING-RULES.md.
        let line = Money::usd(Decimal::from(2_500) * Decimal::from(19) / Decimal::from(28));
        assert_eq!(line.round_cents(), usd("1696.43"));
    }

    #[test]
    fn refuses_mixed_currencies() {
        let eur = Money::new(Decimal::ONE, Currency::new("EUR").unwrap());
        assert!(usd("1").checked_add(eur).is_err());
        assert_eq!(usd("1.10").checked_add(usd("2.25")).unwrap(), usd("3.35"));
        assert_eq!(usd("1.10").checked_sub(usd("2.25")).unwrap(), usd("-1.15"));
        assert!(Currency::new("usd").is_none() && Currency::new("US").is_none());
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let max = Money::usd(Decimal::MAX);
        assert_eq!(max.checked_add(usd("1")), Err(MoneyError::Overflow));
        assert_eq!(Money::usd(Decimal::MIN).checked_sub(usd("1")), Err(MoneyError::Overflow));
        assert_eq!(max.checked_mul(Decimal::from(1000)), Err(MoneyError::Overflow));
        assert_eq!(usd("4000.00").checked_mul(Decimal::from(3)).unwrap(), usd("12000.00"));
        // The largest amount with cents rounds without overflowing.
        let cents = Money::usd(Decimal::from_i128_with_scale(Decimal::MAX.mantissa(), 3));
        assert_eq!(cents.round_cents().amount().scale(), 2);
    }
}
