//! The Stripe outbox against a fake Stripe: the sync starts once
//! (`StripeSyncStarted`), then each issued invoice still to send gets its
//! organization's customer (created at the peer and linked, once) and a
//! Stripe invoice (`StripeInvoiceCreated`), as `usecases::stripe::sync`
//! does. The peer answers a repeated idempotency key with the first
//! object, as Stripe does, and is unreachable now and then.

use std::collections::BTreeMap;

use domain::billing::InvoiceIssued;
use domain::stripe::{
    StripeCustomerLinked, StripeEvent, StripeInvoiceCreated, StripeSyncStarted, customer_stream, invoice_stream,
    sync_started_stream,
};
use domain::{Money, OrganizationId};
use projections::models::stripe;
use store::ExpectedRevision;

use super::{Effect, Request, World};

/// Invoices one sync round sends, at most.
const INVOICES_PER_ROUND_MAX: usize = 8;
/// The chance (per mille) that a call to the peer fails (unreachable).
const UNREACHABLE_PER_MILLE: u64 = 150;

/// The fake Stripe: objects by the idempotency key they were created with.
#[derive(Default)]
pub(crate) struct FakeStripe {
    pub customers: BTreeMap<String, String>,
    /// Key → (Stripe invoice id, total).
    pub invoices: BTreeMap<String, (String, Money)>,
    /// Stripe invoice id → the ledger invoice's subscription, month and
    /// total (what the fake Stripe charges).
    pub sent: BTreeMap<String, (domain::SubscriptionId, chrono::NaiveDate, Money)>,
}

pub(crate) fn customer_key(organization_id: OrganizationId) -> String {
    format!("ledger:customer:{organization_id}")
}

pub(crate) fn invoice_key(invoice_id: uuid::Uuid) -> String {
    format!("ledger:invoice:{invoice_id}")
}

impl World {
    /// One round of the Stripe sync.
    pub(crate) async fn sync_stripe(&mut self) -> Result<(), String> {
        if stripe::sync_from(self.db()).await.map_err(|e| e.to_string())?.is_none() {
            let head = self.log().head().await.map_err(|e| e.to_string())?.sequence;
            let started = StripeEvent::from(StripeSyncStarted { from_sequence: head + 1 });
            // Once ever by its stream (expected absent, as the sync does);
            // a start decided again at another head is refused, not replayed.
            let key = format!("stripe:sync-started:{}", head + 1);
            let command = self.command(&key, sync_started_stream(), ExpectedRevision::NoStream, &[started]);
            self.trace("stripe start");
            let request = Request { name: key.clone(), keys: vec![key], commands: vec![command], effect: Effect::None };
            return self.submit_one(request).await.map(|_| ());
        }
        let pending = stripe::pending_invoices(self.db(), INVOICES_PER_ROUND_MAX).await.map_err(|e| e.to_string())?;
        let mut sent = 0;
        for issued in pending {
            if !self.send_invoice(&issued).await? {
                break;
            }
            sent += 1;
        }
        self.trace(&format!("stripe {sent}"));
        Ok(())
    }

    /// Sends one invoice; false when the round stops here (the peer is
    /// unreachable, or an outcome was not recorded).
    async fn send_invoice(&mut self, issued: &InvoiceIssued) -> Result<bool, String> {
        let organization_id = issued.organization_id;
        let customer_id = match stripe::customer(self.db(), organization_id).await.map_err(|e| e.to_string())? {
            Some(customer_id) => customer_id,
            None => {
                if self.rng.chance(UNREACHABLE_PER_MILLE) {
                    return Ok(false);
                }
                let n = self.stripe.customers.len();
                let customer_id =
                    self.stripe.customers.entry(customer_key(organization_id)).or_insert(format!("cus_{n}")).clone();
                let linked =
                    StripeEvent::from(StripeCustomerLinked { organization_id, customer_id: customer_id.clone() });
                let key = format!("stripe:customer:{organization_id}");
                let command =
                    self.command(&key, customer_stream(organization_id), ExpectedRevision::NoStream, &[linked]);
                let request =
                    Request { name: key.clone(), keys: vec![key], commands: vec![command], effect: Effect::None };
                if !self.submit_one(request).await? {
                    return Ok(false);
                }
                customer_id
            }
        };
        if self.rng.chance(UNREACHABLE_PER_MILLE) {
            return Ok(false);
        }
        let n = self.stripe.invoices.len();
        let total = issued.invoice.total;
        let entry =
            self.stripe.invoices.entry(invoice_key(issued.invoice_id)).or_insert((format!("in_{n}"), total)).clone();
        self.stripe.sent.insert(entry.0.clone(), (issued.subscription_id, issued.invoice.period, entry.1));
        let created = StripeInvoiceCreated {
            invoice_id: issued.invoice_id,
            subscription_id: issued.subscription_id,
            organization_id,
            period: issued.invoice.period,
            customer_id,
            stripe_invoice_id: entry.0.clone(),
            total: entry.1,
        };
        let key = format!("stripe:invoice:{}", issued.invoice_id);
        let stream = invoice_stream(issued.subscription_id, issued.invoice.period);
        let command = self.command(&key, stream, ExpectedRevision::NoStream, &[StripeEvent::from(created)]);
        let request = Request { name: key.clone(), keys: vec![key], commands: vec![command], effect: Effect::None };
        self.submit_one(request).await
    }

    /// A `StripeInvoiceCreated` names the Stripe invoice the peer created
    /// for that invoice, with its total; a `StripeCustomerLinked` the
    /// peer's customer of that organization.
    pub(crate) fn check_stripe(&mut self, sequence: u64, event: &StripeEvent) -> Result<(), String> {
        self.note_stripe(sequence, event);
        match event {
            StripeEvent::StripeInvoiceCreated(created) => {
                let held = self.stripe.invoices.get(&invoice_key(created.invoice_id));
                if held != Some(&(created.stripe_invoice_id.clone(), created.total)) {
                    return Err(format!("record {sequence}: {created:?}; the peer holds {held:?}"));
                }
                self.counts.stripe_invoices += 1;
            }
            StripeEvent::StripeCustomerLinked(linked) => {
                let held = self.stripe.customers.get(&customer_key(linked.organization_id));
                if held != Some(&linked.customer_id) {
                    return Err(format!("record {sequence}: {linked:?}; the peer holds {held:?}"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}
