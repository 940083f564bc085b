//! Customers as staff find them: a search's page and one customer's
//! timeline (`usecases::customers`).

use serde::Serialize;
use utoipa::ToSchema;

use super::queries::{AuditEntryView, OrganizationView};

/// The organizations a search found.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerPage {
    pub items: Vec<OrganizationView>,
    /// More organizations match than the page holds: narrow the search.
    pub more: bool,
    /// The read models' sequence the search was read at.
    pub sequence: u64,
}

/// A page of one customer's timeline, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub items: Vec<TimelineEntry>,
    /// The `cursor` (a sequence) of the next page; `null` on the last.
    pub next_cursor: Option<u64>,
}

/// One record of a customer's history and what kind of thing it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// `invoice` (an invoice issued or changed), `payment` (a payment
    /// succeeded, a Stripe record), `dunning` (a payment failed, a
    /// suspension) or `event` (everything else).
    #[schema(example = "invoice")]
    pub kind: &'static str,
    #[serde(flatten)]
    pub entry: AuditEntryView,
}

impl TimelineEntry {
    /// An audit entry with its kind, by its event type.
    pub fn of(entry: AuditEntryView) -> Self {
        Self { kind: kind(&entry.event_type), entry }
    }
}

/// The kind of an event type.
pub fn kind(event_type: &str) -> &'static str {
    match event_type {
        "PaymentFailed" | "SubscriptionSuspended" => "dunning",
        "PaymentSucceeded" => "payment",
        other if other.starts_with("Stripe") => "payment",
        other if other.starts_with("Invoice") || other.starts_with("CreditNote") => "invoice",
        _ => "event",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kinds() {
        assert_eq!(super::kind("InvoiceIssued"), "invoice");
        assert_eq!(super::kind("PaymentFailed"), "dunning");
        assert_eq!(super::kind("SubscriptionSuspended"), "dunning");
        assert_eq!(super::kind("PaymentSucceeded"), "payment");
        assert_eq!(super::kind("StripeInvoiceCreated"), "payment");
        assert_eq!(super::kind("SubscriptionUpgraded"), "event");
    }
}
