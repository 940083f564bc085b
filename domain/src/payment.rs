//! Whether an issued invoice is paid: the rule the invoice read models
//! (`projections::models::payments`) and `replay`'s state both apply, so
//! the server and an auditor derive the same status from the same log.
//!
//! An invoice is sent for collection as a Stripe invoice
//! (`StripeInvoiceCreated` links the two); Stripe reports each charge of
//! that Stripe invoice, and the reactor records it on the subscription as
//! `PaymentFailed` or `PaymentSucceeded` with the Stripe invoice's id as the
//! `reference` (docs/BILLING-RULES.md, "Payment failure (dunning)"). The
//! subscription aggregate already drops stale and out-of-order reports, so
//! the last report recorded for a reference is its outcome, and a reference
//! once paid stays paid.

use serde::{Deserialize, Serialize};

use crate::{Money, Timestamp};

/// Where an issued invoice stands with its payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// Issued, and no payment recorded for it (not sent to Stripe yet, its
    /// charge not reported yet, or Stripe not configured: collected outside
    /// the ledger).
    Open,
    /// Its Stripe invoice's payment succeeded, or it asks for nothing (a
    /// total of zero or a credit, as Stripe marks such invoices paid when
    /// it finalizes them).
    Paid,
    /// Its Stripe invoice's last reported charge failed: the dunning of its
    /// subscription (past due, then suspended after the grace) runs until
    /// a payment succeeds.
    PastDue,
    /// Voided by the billing team before it was paid (`InvoiceVoided`): it
    /// asks for nothing, whatever Stripe reports of it afterwards.
    Void,
}

impl PaymentStatus {
    /// The API's and the tables' name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Open => "open",
            PaymentStatus::Paid => "paid",
            PaymentStatus::PastDue => "past_due",
            PaymentStatus::Void => "void",
        }
    }

    /// The inverse of [`PaymentStatus::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(PaymentStatus::Open),
            "paid" => Some(PaymentStatus::Paid),
            "past_due" => Some(PaymentStatus::PastDue),
            "void" => Some(PaymentStatus::Void),
            _ => None,
        }
    }

    /// Whether the invoice still asks for its total.
    pub fn is_due(self) -> bool {
        matches!(self, PaymentStatus::Open | PaymentStatus::PastDue)
    }
}

/// The last recorded report of a charge of one Stripe invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentOutcome {
    /// `PaymentSucceeded`, recorded at `at` (the ledger's time).
    Paid { at: Timestamp },
    /// `PaymentFailed`, recorded at `at`.
    Failed { at: Timestamp },
}

impl PaymentOutcome {
    /// The outcome after `next` is recorded: paid is final (the aggregate
    /// records no failure for a reference known paid; this holds even if
    /// a log had one).
    pub fn then(current: Option<Self>, next: Self) -> Self {
        match current {
            Some(paid @ PaymentOutcome::Paid { .. }) => paid,
            _ => next,
        }
    }

    /// When it was recorded.
    pub fn at(self) -> Timestamp {
        match self {
            PaymentOutcome::Paid { at } | PaymentOutcome::Failed { at } => at,
        }
    }
}

/// The status of an invoice of `total` whose Stripe invoice (if it has
/// one) last reported `outcome`.
pub fn status(total: Money, outcome: Option<PaymentOutcome>) -> PaymentStatus {
    if total.amount() <= rust_decimal::Decimal::ZERO {
        return PaymentStatus::Paid;
    }
    match outcome {
        None => PaymentStatus::Open,
        Some(PaymentOutcome::Paid { .. }) => PaymentStatus::Paid,
        Some(PaymentOutcome::Failed { .. }) => PaymentStatus::PastDue,
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn usd(text: &str) -> Money {
        Money::usd(text.parse::<Decimal>().unwrap())
    }

    #[test]
    fn the_status_follows_the_last_outcome_and_paid_is_final() {
        let (t1, t2) = (Timestamp::from_micros(1), Timestamp::from_micros(2));
        let cases = [
            ("2500.00", None, PaymentStatus::Open),
            ("2500.00", Some(PaymentOutcome::Failed { at: t1 }), PaymentStatus::PastDue),
            ("2500.00", Some(PaymentOutcome::Paid { at: t1 }), PaymentStatus::Paid),
            ("0.00", None, PaymentStatus::Paid),
            ("-17.01", Some(PaymentOutcome::Failed { at: t1 }), PaymentStatus::Paid),
        ];
        for (total, outcome, expected) in cases {
            assert_eq!(status(usd(total), outcome), expected, "{total} {outcome:?}");
        }
        let failed = PaymentOutcome::Failed { at: t1 };
        let paid = PaymentOutcome::then(Some(failed), PaymentOutcome::Paid { at: t2 });
        assert_eq!(paid, PaymentOutcome::Paid { at: t2 });
        assert_eq!(PaymentOutcome::then(Some(paid), PaymentOutcome::Failed { at: t2 }), paid);
        for s in [PaymentStatus::Open, PaymentStatus::Paid, PaymentStatus::PastDue, PaymentStatus::Void] {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        assert!(!PaymentStatus::Paid.is_due() && PaymentStatus::PastDue.is_due() && PaymentStatus::Open.is_due());
        assert!(!PaymentStatus::Void.is_due());
    }
}
