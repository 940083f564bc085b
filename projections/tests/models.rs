//! The table read models (`ledger_projections::models`) against the
//! in-memory `LedgerState`, on both backends (PostgreSQL when
//! `DATABASE_URL` is set): a scripted history of organizations, users,
//! tokens, subscriptions (upgrades, cancellations, add-ons, dunning),
//! licenses, deployments, validations, usage reports, invoices, Stripe
//! and notification events is appended to a real log, applied by both,
//! and every query must answer what `LedgerState` answers. The same run
//! crashes mid-history (applying nothing twice), pages the audit, and
//! compares a rebuild's digest with the live tables.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::NaiveDate;
use domain::billing::{CreditNoteIssued, InvoiceEvent, InvoiceIssued, InvoiceVoided, invoice_id, invoice_id_of};
use domain::catalog::{Catalog, Tier};
use domain::event::{LedgerEvent, StoredEvent};
use domain::floating::FloatingDeploymentLeased;
use domain::license::LicenseKeyRehashed;
use domain::license::{
    DeploymentActivated, DeploymentReleased, LicenseEvent, LicenseIssued, LicenseSuperseded, ValidationCode,
};
use domain::notification::{
    Notice, NotificationEvent, NotificationSent, NotificationSkipped, SkipReason, UsageLevel, UsageMetric,
    expiry_reminder,
};
use domain::organization::{
    ApiTokenIssued, ApiTokenRehashed, ApiTokenRevoked, OrganizationCreated, OrganizationEvent, Role, SubscriptionEnded,
    SubscriptionStarted, UserAdded, UserDeactivated,
};
use domain::payment::PaymentStatus;
use domain::record::{Hash, Record};
use domain::signin::{self, SessionRevoked, SignInEvent, SignInRefused, SignedIn, SignedOut};
use domain::sso::{SsoEvent, SsoSignedIn};
use domain::stripe::{
    Outcome, StripeCreditNoteCreated, StripeCustomerLinked, StripeDefaultPaymentMethodSet, StripeEvent,
    StripeEventHandled, StripeEventReceived, StripeInvoiceCreated, StripeInvoiceVoided, StripePaymentMethodSaved,
    StripeSyncRefused, StripeSyncStarted, credit_note_stream, invoice_stream, payment_method_stream, void_stream,
};
use domain::subscription::{
    AddonAdded, AddonKind, AutoRenewalCancelled, DowngradeScheduled, PaymentFailed, PaymentSucceeded,
    SubscriptionCancelled, SubscriptionCreated, SubscriptionEvent, SubscriptionSuspended, SubscriptionUpgraded,
};
use domain::usage::{Metrics, UsageEvent, UsageReported};
use domain::validation::{FloatingLeaseExtended, LicenseValidated, ValidationEvent};
use domain::{
    AddonId, Clock, EventId, LicenseId, Metadata, Money, OrganizationId, StreamId, SubscriptionId, Timestamp, TokenId,
    UserId,
};
use ledger_projections::LedgerState;
use ledger_projections::db::{ApplyError, Changes, Projection, ReadModelDb, Runner, Table, compare, digest};
use ledger_projections::models::{
    self, audit, invoices, licenses, notifications, organizations, payments, stripe, subscriptions, usage, validations,
};
use rust_decimal::Decimal;
use store::{Command, EventLog, ExpectedRevision, NewEvent};

const START: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
const ORGANIZATIONS: u128 = 14;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn id(kind: u128, n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128((kind << 64) | n)
}

/// A clock that moves a second each time it is read, so records carry
/// distinct recording times (the audit's time filters have work to do).
struct Ticking(AtomicI64);

impl Clock for Ticking {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.fetch_add(1_000_000, Ordering::Relaxed))
    }
}

/// Commands to append, built in script order.
#[derive(Default)]
struct Script {
    commands: Vec<Command>,
    events: u64,
}

impl Script {
    fn push<E: StoredEvent>(&mut self, stream: StreamId, event: &E, actor: &str) {
        let metadata = Metadata {
            actor: Some(actor.to_owned()),
            source_ip: (self.events + 1).is_multiple_of(3).then(|| format!("10.0.0.{}", (self.events + 1) % 250)),
            ..Metadata::default()
        };
        self.push_with(stream, event, metadata);
    }

    fn push_with<E: StoredEvent>(&mut self, stream: StreamId, event: &E, metadata: Metadata) {
        self.events += 1;
        let at = Timestamp::from_micros(START + self.events as i64 * 1000);
        let new = NewEvent::from_event(event, self.event_id(), at, &metadata);
        self.commands.push(Command {
            stream_id: stream,
            expected: ExpectedRevision::Any,
            idempotency: None,
            events: vec![new],
        });
    }

    fn event_id(&self) -> EventId {
        EventId(id(99, u128::from(self.events)))
    }

    async fn append(&mut self, log: &EventLog) {
        for chunk in std::mem::take(&mut self.commands).chunks(500) {
            for outcome in log.append(chunk.to_vec()).await.unwrap() {
                outcome.unwrap();
            }
        }
    }
}

fn organization(n: u128) -> OrganizationId {
    OrganizationId(id(1, n))
}

fn subscription(n: u128, generation: u128) -> SubscriptionId {
    SubscriptionId(id(2, n * 10 + generation))
}

fn license(n: u128, generation: u128) -> LicenseId {
    LicenseId(id(3, n * 10 + generation))
}

fn key_hash(license_id: LicenseId) -> Hash {
    Hash(*blake3::hash(license_id.0.as_bytes()).as_bytes())
}

fn tier(n: u128) -> Tier {
    match n % 3 {
        0 => Tier::Starter,
        1 => Tier::Professional,
        _ => Tier::Enterprise,
    }
}

/// Organizations with users and tokens, each with a subscription and its key.
fn onboarding(script: &mut Script) {
    for n in 0..ORGANIZATIONS {
        let org = organization(n);
        let created = OrganizationCreated {
            id: org,
            name: format!("Org {n}"),
            domain: (n % 2 == 0).then(|| format!("org{n}.example")),
            industry: Some("testing".into()),
            employee_count: Some(10 + n as u32),
        };
        script.push(org.stream(), &OrganizationEvent::from(created), "operator");
        for u in 0..3 {
            let added = UserAdded {
                user_id: UserId(id(4, n * 10 + u)),
                email: format!("u{u}@org{n}.example"),
                role: Role::Admin,
            };
            script.push(org.stream(), &OrganizationEvent::from(added), "operator");
        }
        let deactivated = UserDeactivated { user_id: UserId(id(4, n * 10 + 1)) };
        script.push(org.stream(), &OrganizationEvent::from(deactivated), "operator");
        for t in 0..2 {
            let issued = ApiTokenIssued {
                token_id: TokenId(id(5, n * 10 + t)),
                role: if t == 0 { Role::Admin } else { Role::Viewer },
                token_hash: Hash(*blake3::hash(&[n as u8, t as u8]).as_bytes()),
                expires_at: (t == 1).then(|| Timestamp::from_micros(START + 86_400_000_000 * 90)),
            };
            script.push(org.stream(), &OrganizationEvent::from(issued), "admin");
        }
        if n % 4 == 0 {
            let revoked = ApiTokenRevoked { token_id: TokenId(id(5, n * 10 + 1)) };
            script.push(org.stream(), &OrganizationEvent::from(revoked), "admin");
        }
        start_subscription(script, n, 0, d(2026, 1, 1));
    }
    // A record on a stream no entity is named by: only the audit sees it.
    let stray = OrganizationCreated {
        id: organization(999),
        name: "stray".into(),
        domain: None,
        industry: None,
        employee_count: None,
    };
    script.push(StreamId::new("org/not-a-uuid").unwrap(), &OrganizationEvent::from(stray), "tool");
}

fn start_subscription(script: &mut Script, n: u128, generation: u128, start: NaiveDate) {
    let (org, sub, lic) = (organization(n), subscription(n, generation), license(n, generation));
    let created = SubscriptionCreated {
        id: sub,
        organization_id: org,
        tier: tier(n),
        catalog_version: 1,
        start_date: start,
        end_date: start.checked_add_months(chrono::Months::new(12)).unwrap(),
        auto_renew: !n.is_multiple_of(5),
        max_deployments: 2,
        enterprise_overage_rate: None,
        license_id: lic,
    };
    script.push(sub.stream(), &SubscriptionEvent::from(created), "admin");
    script.push(org.stream(), &OrganizationEvent::from(SubscriptionStarted { subscription_id: sub }), "admin");
    issue_license(script, n, generation, sub);
}

fn issue_license(script: &mut Script, n: u128, generation: u128, sub: SubscriptionId) {
    let lic = license(n, generation);
    let issued = LicenseIssued {
        license_id: lic,
        subscription_id: sub,
        organization_id: organization(n),
        nonce: [n as u8; 16],
        key_hash: key_hash(lic),
        issued_at: Timestamp::from_micros(START),
    };
    script.push(lic.stream(), &LicenseEvent::from(issued), "admin");
}

fn metrics(n: u128, day: u32, replaced: bool) -> Metrics {
    Metrics {
        active_users: 2 + (n as u64 + u64::from(day)) % 7,
        data_volume_gb: Decimal::new(i64::from(day) * 1_000 + n as i64 * 37 + if replaced { 5 } else { 0 }, 2),
        api_calls_count: 40_000 * (1 + n as u64 % 4) + u64::from(day),
        training_hours: Decimal::new(i64::from(day % 5) * 25, 1),
    }
}

/// Deployments, validations and usage reports of every live key, in January.
fn traffic(script: &mut Script, month: u32, days: u32) {
    for n in 0..ORGANIZATIONS {
        let (sub, lic) = (subscription(n, 0), license(n, 0));
        for deployment in 0..2 {
            let activated = DeploymentActivated { deployment_id: format!("dep-{deployment}") };
            script.push(lic.stream(), &LicenseEvent::from(activated), "license-client");
        }
        for day in 1..=days {
            let date = d(2026, month, day);
            for v in 0..(1 + n % 3) {
                let validated = LicenseValidated {
                    license_id: lic,
                    validation_id: id(6, n * 100_000 + u128::from(day) * 100 + v),
                    deployment_id: format!("dep-{}", v % 2),
                    code: if v == 2 { ValidationCode::TooManyDeployments } else { ValidationCode::Valid },
                    client_version: Some("1.4.2".into()),
                    at: Timestamp::from_micros(START + i64::from(day) * 86_400_000_000 + v as i64),
                };
                script.push(domain::validation::stream(lic, date), &ValidationEvent::from(validated), "license-client");
            }
            for deployment in 0..2 {
                for replaced in [false, day % 4 == 0] {
                    let report = UsageReported {
                        subscription_id: sub,
                        license_id: lic,
                        deployment_id: format!("dep-{deployment}"),
                        day: date,
                        metrics: metrics(n + deployment, day, replaced),
                    };
                    script.push(domain::usage::stream(sub, date), &UsageEvent::from(report), "license-client");
                }
            }
        }
        if n % 3 == 1 {
            let released = DeploymentReleased {
                deployment_id: "dep-1".into(),
                released_at: Timestamp::from_micros(START + 86_400_000_000 * 10),
                slot_frees_at: Timestamp::from_micros(START + 86_400_000_000 * 17),
            };
            script.push(lic.stream(), &LicenseEvent::from(released), "license-client");
        }
    }
}

/// Upgrades (a new key superseding the old), downgrades, add-ons, auto
/// renewal off, dunning, and cancellations followed by a new subscription.
fn changes(script: &mut Script) {
    for n in 0..ORGANIZATIONS {
        let sub = subscription(n, 0);
        match n % 7 {
            0 => {
                let (old, new) = (license(n, 0), license(n, 1));
                let upgraded = SubscriptionUpgraded {
                    from_tier: tier(n),
                    to_tier: Tier::Enterprise,
                    effective_date: d(2026, 2, 16),
                    prorated_amount: Money::usd(Decimal::new(12_345, 2)),
                    previous_license_id: old,
                    new_license_id: new,
                };
                script.push(sub.stream(), &SubscriptionEvent::from(upgraded), "admin");
                issue_license(script, n, 1, sub);
                let superseded = LicenseSuperseded {
                    by: new,
                    effective_date: d(2026, 2, 16),
                    window_ends_at: Timestamp::from_micros(START + 86_400_000_000 * 52),
                };
                script.push(old.stream(), &LicenseEvent::from(superseded), "admin");
                if n % 2 == 0 {
                    // Revoked before its window ended: the window is closed.
                    let revoked = domain::license::LicenseRevoked { reason: "key leaked".into() };
                    script.push(old.stream(), &LicenseEvent::from(revoked), "admin");
                }
            }
            1 => {
                let added = AddonAdded {
                    addon_id: AddonId(id(7, n)),
                    kind: AddonKind::ExtraDataTb,
                    quantity: 2,
                    annual_price: Some(Money::usd(Decimal::new(1_200, 0))),
                    one_time_price: None,
                    effective_date: d(2026, 2, 1),
                };
                script.push(sub.stream(), &SubscriptionEvent::from(added), "operator");
            }
            2 => {
                let scheduled = DowngradeScheduled { to_tier: Tier::Starter, effective_date: d(2027, 1, 1) };
                script.push(sub.stream(), &SubscriptionEvent::from(scheduled), "admin");
                let off = AutoRenewalCancelled { effective_date: d(2027, 1, 1) };
                script.push(sub.stream(), &SubscriptionEvent::from(off), "admin");
            }
            3 => dunning(script, sub),
            4 => {
                let cancelled = SubscriptionCancelled { effective_date: d(2026, 2, 20) };
                script.push(sub.stream(), &SubscriptionEvent::from(cancelled), "admin");
                let ended = SubscriptionEnded { subscription_id: sub };
                script.push(organization(n).stream(), &OrganizationEvent::from(ended), "scheduler");
                let revoked = domain::license::LicenseRevoked { reason: "subscription cancelled".into() };
                script.push(license(n, 0).stream(), &LicenseEvent::from(revoked), "scheduler");
                if n % 2 == 0 {
                    start_subscription(script, n, 2, d(2026, 3, 1));
                }
            }
            5 => secret_rotated_and_floating(script, n),
            _ => {}
        }
    }
}

/// A floating place taken (the key's stream) and renewed (the key's
/// floating stream of the day), and the server secret rotated: the key's
/// and the admin token's hashes made again.
fn secret_rotated_and_floating(script: &mut Script, n: u128) {
    let lic = license(n, 0);
    let at = |minutes: i64| Timestamp::from_micros(START + 86_400_000_000 * 10 + minutes * 60_000_000);
    let leased = FloatingDeploymentLeased { deployment_id: "pod-a".into(), at: at(0), slot_frees_at: at(60) };
    script.push(lic.stream(), &LicenseEvent::from(leased), "license-client");
    let extended =
        FloatingLeaseExtended { license_id: lic, deployment_id: "pod-a".into(), at: at(31), slot_frees_at: at(91) };
    script.push(
        domain::validation::floating_stream(lic, d(2026, 1, 11)),
        &ValidationEvent::from(extended),
        "license-client",
    );
    let secret_id = Hash([0x5e; 32]);
    let rehashed = LicenseKeyRehashed { key_hash: Hash(*blake3::hash(&[n as u8, 0xee]).as_bytes()), secret_id };
    script.push(lic.stream(), &LicenseEvent::from(rehashed), "ledger keys retire-secret");
    let token_hash = Hash(*blake3::hash(&[n as u8, 0xef]).as_bytes());
    let rehashed = ApiTokenRehashed { token_id: TokenId(id(5, n * 10)), token_hash, secret_id };
    script.push(organization(n).stream(), &OrganizationEvent::from(rehashed), "ledger keys retire-secret");
}

fn dunning(script: &mut Script, sub: SubscriptionId) {
    let at = |days: i64| Timestamp::from_micros(START + 86_400_000_000 * days);
    let failed = PaymentFailed {
        reference: "in_1".into(),
        reported_at: at(32),
        at: at(32),
        first: true,
        past_due_since: at(32),
        suspend_at: at(46),
    };
    script.push(sub.stream(), &SubscriptionEvent::from(failed), "stripe");
    let suspended = SubscriptionSuspended { at: at(46), past_due_since: at(32) };
    script.push(sub.stream(), &SubscriptionEvent::from(suspended), "scheduler");
    let paid = PaymentSucceeded { reference: "in_1".into(), reported_at: at(47), at: at(47), reactivated: true };
    script.push(sub.stream(), &SubscriptionEvent::from(paid), "stripe");
}

/// January's invoices as the billing run computes them from the state.
fn invoices_of(state: &LedgerState, catalog: &Catalog, month: NaiveDate) -> Vec<InvoiceIssued> {
    let empty = domain::usage::Usage::default();
    state
        .subscriptions
        .iter()
        .filter_map(|(id, subscription)| {
            let usage = state.usage.get(id).unwrap_or(&empty);
            let invoice = domain::billing::invoice(subscription, usage, catalog, month, []).ok()??;
            Some(InvoiceIssued {
                invoice_id: invoice_id(*id, month),
                subscription_id: *id,
                organization_id: subscription.organization_id?,
                digest: invoice.digest(),
                invoice,
                usage_sequence: state.sequence,
            })
        })
        .collect()
}

/// Stripe: the sync starting after the first invoices, webhook events
/// (some handled), customers, Stripe invoices, refusals, payment methods.
/// Stripe refuses an invoice's sync; `retried`: the billing team retries
/// it, so its invoice is pending again in the tables as in the outbox.
fn refuse(script: &mut Script, target: StreamId, retried: bool) {
    let refused = StripeSyncRefused { target: target.to_string(), status: 400, message: "no such customer".into() };
    script.push(target.clone(), &StripeEvent::from(refused), "stripe-sync");
    if retried {
        let retried = domain::stripe::StripeSyncRetried { target: target.to_string() };
        script.push(target, &StripeEvent::from(retried), "staff:billing");
    }
}

fn stripe_events(script: &mut Script, issued: &[InvoiceIssued], sync_from: u64) {
    script.push(
        domain::stripe::sync_started_stream(),
        &StripeEvent::from(StripeSyncStarted { from_sequence: sync_from }),
        "stripe-sync",
    );
    for (i, invoice) in issued.iter().enumerate() {
        let org = invoice.organization_id;
        let customer = format!("cus_{i}");
        let linked = StripeCustomerLinked { organization_id: org, customer_id: customer.clone() };
        script.push(domain::stripe::customer_stream(org), &StripeEvent::from(linked), "stripe-sync");
        let target = invoice_stream(invoice.subscription_id, invoice.invoice.period);
        match i % 3 {
            0 => {
                let created = StripeInvoiceCreated {
                    invoice_id: invoice.invoice_id,
                    subscription_id: invoice.subscription_id,
                    organization_id: org,
                    period: invoice.invoice.period,
                    customer_id: customer.clone(),
                    stripe_invoice_id: format!("in_{i}"),
                    total: invoice.invoice.total,
                };
                script.push(target, &StripeEvent::from(created), "stripe-sync");
            }
            1 => refuse(script, target, i == 1),
            _ => {}
        }
        if i % 4 == 0 {
            let saved = StripePaymentMethodSaved {
                organization_id: org,
                customer_id: customer,
                setup_intent_id: format!("seti_{i}"),
            };
            script.push(payment_method_stream(org), &StripeEvent::from(saved), "stripe");
        }
        if i == 4 {
            let set = StripeDefaultPaymentMethodSet {
                organization_id: org,
                customer_id: "cus_4".into(),
                payment_method_id: "pm_4".into(),
            };
            script.push(payment_method_stream(org), &StripeEvent::from(set), "stripe-sync");
        }
        if i == 8 {
            let target = payment_method_stream(org).to_string();
            let refused = StripeSyncRefused { target: target.clone(), status: 402, message: "card declined".into() };
            script.push(StreamId::new(target).unwrap(), &StripeEvent::from(refused), "stripe-sync");
        }
    }
    for e in 0..9u32 {
        let event_id = format!("evt_{e}");
        let received = StripeEventReceived {
            event_id: event_id.clone(),
            event_type: if e % 2 == 0 { "customer.subscription.updated".into() } else { "invoice.paid".into() },
            created: Timestamp::from_micros(START + i64::from(9 - e) * 1_000_000),
            livemode: false,
            object_id: Some(format!("sub_{}", e % 3)),
            body: "{}".into(),
        };
        let stream = domain::stripe::event_stream(&event_id).unwrap();
        script.push(stream.clone(), &StripeEvent::from(received), "stripe");
        if e % 3 == 0 {
            let handled = StripeEventHandled { event_id, outcome: Outcome::Ignored { reason: "test".into() } };
            script.push(stream, &StripeEvent::from(handled), "stripe-reactor");
        }
    }
}

/// Payment reports for the Stripe invoices: `in_0` paid, `in_3` failed,
/// `in_6` failed then paid, and `in_early` failed before the sync recorded
/// which invoice it is (invoice 2, neither synced nor refused above).
fn payment_reports(script: &mut Script, issued: &[InvoiceIssued]) {
    let at = |days: i64| Timestamp::from_micros(START + 86_400_000_000 * days);
    let failed = |reference: &str, day: i64| PaymentFailed {
        reference: reference.into(),
        reported_at: at(day),
        at: at(day),
        first: true,
        past_due_since: at(day),
        suspend_at: at(day + 14),
    };
    let paid = |reference: &str, day: i64| PaymentSucceeded {
        reference: reference.into(),
        reported_at: at(day),
        at: at(day),
        reactivated: false,
    };
    let sub = |i: usize| issued[i].subscription_id.stream();
    script.push(sub(0), &SubscriptionEvent::from(paid("in_0", 33)), "stripe");
    script.push(sub(3), &SubscriptionEvent::from(failed("in_3", 33)), "stripe");
    script.push(sub(6), &SubscriptionEvent::from(failed("in_6", 33)), "stripe");
    script.push(sub(6), &SubscriptionEvent::from(paid("in_6", 34)), "stripe");
    script.push(sub(2), &SubscriptionEvent::from(failed("in_early", 33)), "stripe");
    let invoice = &issued[2];
    let created = StripeInvoiceCreated {
        invoice_id: invoice.invoice_id,
        subscription_id: invoice.subscription_id,
        organization_id: invoice.organization_id,
        period: invoice.invoice.period,
        customer_id: "cus_2".into(),
        stripe_invoice_id: "in_early".into(),
        total: invoice.invoice.total,
    };
    let target = invoice_stream(invoice.subscription_id, invoice.invoice.period);
    script.push(target, &StripeEvent::from(created), "stripe-sync");
}

/// Voids and credit notes (issue 15 part 2): invoice 5 (never sent)
/// voided before the sync sent it, and January billed again for it at
/// revision 1; invoice 12 (`in_12`) voided and voided in Stripe;
/// credit notes on invoice 6 (`in_6`, one mirrored to Stripe, one not yet)
/// and on invoice 4 (refused by Stripe: its credit note waits for it).
fn corrections(script: &mut Script, issued: &[InvoiceIssued]) {
    let void = |invoice: &InvoiceIssued| InvoiceVoided {
        invoice_id: invoice.invoice_id,
        subscription_id: invoice.subscription_id,
        organization_id: invoice.organization_id,
        period: invoice.invoice.period,
        reason: "test".into(),
    };
    let stream = |invoice: &InvoiceIssued| domain::billing::stream(invoice.subscription_id, invoice.invoice.period);
    for i in [5, 12] {
        script.push(stream(&issued[i]), &InvoiceEvent::InvoiceVoided(void(&issued[i])), "operator");
    }
    let (sub, month) = (issued[5].subscription_id, issued[5].invoice.period);
    let again = InvoiceIssued { invoice_id: invoice_id_of(sub, month, 1), ..issued[5].clone() };
    script.push(domain::billing::stream_of(sub, month, 1), &InvoiceEvent::from(again), "operator");
    let voided = StripeInvoiceVoided { invoice_id: issued[12].invoice_id, stripe_invoice_id: "in_12".into() };
    script.push(void_stream(issued[12].invoice_id), &StripeEvent::from(voided), "stripe-sync");
    let mut credits = Vec::new();
    for (i, n) in [(6, 1), (6, 2), (4, 1)] {
        let amount = Money::usd(Decimal::new(1000, 2));
        let lines = vec![(format!("credit {n}"), amount.amount())];
        let earlier: Vec<_> =
            credits.iter().filter(|c: &&CreditNoteIssued| c.invoice_id == issued[i].invoice_id).cloned().collect();
        let note = domain::billing::credit_note(&issued[i], &earlier, false, "test", &lines).unwrap();
        assert_eq!(note.number, n);
        script.push(stream(&issued[i]), &InvoiceEvent::CreditNoteIssued(note.clone()), "operator");
        credits.push(note);
    }
    let created = StripeCreditNoteCreated {
        credit_note_id: credits[0].credit_note_id,
        invoice_id: credits[0].invoice_id,
        stripe_invoice_id: "in_6".into(),
        stripe_credit_note_id: "cn_6".into(),
    };
    script.push(credit_note_stream(created.credit_note_id), &StripeEvent::from(created), "stripe-sync");
}

/// The organization whose portal sessions the script records.
const SESSIONS_ORGANIZATION: u128 = 3;

/// A user of [`SESSIONS_ORGANIZATION`] signs in by link, signs out,
/// revokes a session, has a link refused (a record without an actor) and
/// signs in by SSO (a record without an address): records whose streams
/// are not `LedgerEvent`'s, which the audit places under the organization.
fn sessions(script: &mut Script) {
    let n = SESSIONS_ORGANIZATION;
    let (organization_id, user_id) = (organization(n), UserId(id(4, n * 10)));
    let secret = domain::keys::ServerSecret::from_bytes([3; 32]);
    let (session, other) = (id(8, 1), id(8, 2));
    let at = Timestamp::from_micros(START);
    let user = |address: &str| Metadata {
        actor: Some(format!("org:{organization_id}:admin:user:{user_id}")),
        source_ip: Some(address.to_owned()),
        ..Metadata::default()
    };
    let address = "192.0.2.10".to_owned();
    let signed_in = SignedIn { organization_id, user_id, session_id: session, address: address.clone(), at };
    let stream = signin::link_stream(&secret, "a link's token");
    script.push_with(stream, &SignInEvent::from(signed_in), user(&address));
    let revoked = SessionRevoked {
        organization_id,
        user_id,
        session_id: other,
        by_session_id: session,
        address: address.clone(),
        at,
    };
    script.push_with(signin::session_stream(other), &SignInEvent::from(revoked), user(&address));
    let out = SignedOut { organization_id, user_id, session_id: session, address: address.clone(), at };
    script.push_with(signin::session_stream(session), &SignInEvent::from(out), user(&address));
    let refused = SignInRefused { organization_id, user_id, reason: "used".into(), address: "192.0.2.11".into(), at };
    let refusals = signin::refusals_stream(user_id, d(2026, 1, 1));
    let anonymous = Metadata { source_ip: Some("192.0.2.11".into()), ..Metadata::default() };
    script.push_with(refusals, &SignInEvent::from(refused), anonymous);
    let sso = SsoSignedIn {
        organization_id,
        user_id,
        issuer: "https://issuer.example".into(),
        session_id: id(8, 3),
        address: "192.0.2.12".into(),
        at,
    };
    let actor = Metadata { actor: Some(format!("org:{organization_id}:admin:user:{user_id}")), ..Metadata::default() };
    script.push_with(domain::sso::signin_stream(id(8, 3)), &SsoEvent::from(sso), actor);
}

/// A retention run's event (issue 16) that retired nothing here: the
/// usage projection keeps its rule ([`usage::retired`]).
fn retention_marker(script: &mut Script) {
    let applied = domain::privacy::RetentionApplied {
        at: Timestamp::from_micros(START + 86_400_000_000 * 60),
        usage_before: Timestamp::from_micros(START - 86_400_000_000 * 365),
        up_to_sequence: 1,
        usage_records: 0,
        keys_archived: 0,
        subscriptions_anonymized: 0,
    };
    script.push(domain::privacy::privacy_stream(), &domain::privacy::PrivacyEvent::from(applied), "retention");
}

/// The session records [`sessions`] wrote are in their organization's
/// audit, each with who and from where.
async fn assert_sessions_audited(db: &ReadModelDb) {
    let organization_id = organization(SESSIONS_ORGANIZATION);
    let user = format!("org:{organization_id}:admin:user:{}", UserId(id(4, SESSIONS_ORGANIZATION * 10)));
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let query =
            audit::AuditQuery { organization_id: Some(organization_id), after, limit: 200, ..Default::default() };
        let page = audit::page(db, query).await.unwrap();
        found.extend(
            page.items.into_iter().filter(|e| e.event_type.starts_with("Portal") || e.event_type == "SsoSignedIn"),
        );
        match page.next_cursor {
            Some(next) => after = next,
            None => break,
        }
    }
    let seen: Vec<_> = found.iter().map(|e| (e.event_type.as_str(), e.source_ip.as_deref())).collect();
    assert_eq!(
        seen,
        [
            ("PortalSignedIn", Some("192.0.2.10")),
            ("PortalSessionRevoked", Some("192.0.2.10")),
            ("PortalSignedOut", Some("192.0.2.10")),
            ("PortalSignInRefused", Some("192.0.2.11")),
            ("SsoSignedIn", Some("192.0.2.12")),
        ]
    );
    let refused_actor = format!("org:{organization_id}:user:{}", UserId(id(4, SESSIONS_ORGANIZATION * 10)));
    let actors: Vec<_> = found.iter().map(|e| e.actor.clone().unwrap()).collect();
    assert_eq!(actors, [user.clone(), user.clone(), user.clone(), refused_actor, user]);
    assert!(found.iter().all(|e| e.organization_id == Some(organization_id)));
}

/// Records the onboarding e-mail of every other organization as sent.
fn notifications_sent(script: &mut Script) {
    for n in (0..ORGANIZATIONS).step_by(2) {
        let notice = Notice::Onboarding {
            organization_id: organization(n),
            subscription_id: subscription(n, 0),
            license_id: license(n, 0),
        };
        let sent = NotificationSent {
            id: notice.id(),
            notice: notice.clone(),
            recipients: vec![UserId(id(4, n * 10))],
            message_id: format!("<{n}@ledger>"),
        };
        script.push(notice.id().stream(), &NotificationEvent::from(sent), "notifier");
    }
    let skipped =
        NotificationSkipped { id: january_warning().id(), notice: january_warning(), reason: SkipReason::Obsolete };
    script.push(january_warning().id().stream(), &NotificationEvent::from(skipped), "notifier");
}

/// White-label branding: every third organization sets one (some with a
/// logo), organization 3 sets it twice and then removes it.
fn branding(script: &mut Script) {
    use domain::branding::{BrandingEvent, BrandingRemoved, BrandingSet, Logo};
    for n in (0..ORGANIZATIONS).step_by(3).chain([3]) {
        let logo = n.is_multiple_of(2).then(|| Logo { png: vec![0x89, b'P', n as u8], width: 10, height: 5 });
        let set = BrandingSet {
            organization_id: organization(n),
            display_name: format!("Brand {n}"),
            primary_color: format!("#0000{n:02x}"),
            logo,
            at: Timestamp::from_micros(START),
        };
        script.push(domain::branding::stream(organization(n)), &BrandingEvent::from(set), "admin");
    }
    let removed = BrandingRemoved { organization_id: organization(3), at: Timestamp::from_micros(START) };
    script.push(domain::branding::stream(organization(3)), &BrandingEvent::from(removed), "admin");
}

/// The vendor's staff (issue 15): three users, one re-roled and one
/// disabled; two service tokens, one revoked.
fn staff(script: &mut Script) {
    use domain::staff::{
        ServiceTokenId, ServiceTokenIssued, ServiceTokenRevoked, StaffEvent, StaffId, StaffRole, StaffRoleChanged,
        StaffUserAdded, StaffUserDisabled,
    };
    let push = |script: &mut Script, event: StaffEvent| script.push(domain::staff::stream(), &event, "operator");
    for (n, role) in [(1, StaffRole::StaffAdmin), (2, StaffRole::Support), (3, StaffRole::Billing)] {
        let (staff_id, name, email) =
            (StaffId(uuid::Uuid::from_u128(0x5a00 + n)), format!("S{n}"), format!("s{n}@v.test"));
        push(script, StaffUserAdded { staff_id, name, email, role }.into());
    }
    push(
        script,
        StaffRoleChanged {
            staff_id: StaffId(uuid::Uuid::from_u128(0x5a02)),
            role: StaffRole::Auditor,
            at: domain::Timestamp::from_micros(1_800_000_000_000_000),
        }
        .into(),
    );
    push(script, StaffUserDisabled { staff_id: StaffId(uuid::Uuid::from_u128(0x5a03)) }.into());
    for n in [1, 2] {
        let token_id = ServiceTokenId(uuid::Uuid::from_u128(0x5b00 + n));
        let expires_at = Timestamp::from_micros(START + 86_400_000_000);
        let issued = ServiceTokenIssued {
            token_id,
            name: format!("t{n}"),
            role: StaffRole::Billing,
            token_hash: Hash([n as u8; 32]),
            expires_at,
        };
        push(script, issued.into());
    }
    push(script, ServiceTokenRevoked { token_id: ServiceTokenId(uuid::Uuid::from_u128(0x5b02)) }.into());
}

async fn assert_staff(db: &ReadModelDb) {
    use domain::staff::{ServiceTokenId, StaffRole};
    use ledger_projections::models::staff;
    let users = staff::staff_users(db).await.unwrap();
    let seen: Vec<_> = users.iter().map(|u| (u.email.as_str(), u.role, u.active)).collect();
    assert_eq!(
        seen,
        [
            ("s1@v.test", StaffRole::StaffAdmin, true),
            ("s2@v.test", StaffRole::Auditor, true),
            ("s3@v.test", StaffRole::Billing, false)
        ]
    );
    assert_eq!(staff::active_by_email(db, "s3@v.test").await.unwrap(), None, "a disabled user is not found");
    assert_eq!(staff::active_by_email(db, "s2@v.test").await.unwrap().map(|u| u.name), Some("S2".to_owned()));
    let tokens = staff::service_tokens(db).await.unwrap();
    assert_eq!(tokens.iter().map(|t| t.revoked).collect::<Vec<_>>(), [false, true]);
    let one = staff::service_token(db, ServiceTokenId(uuid::Uuid::from_u128(0x5b01))).await.unwrap().unwrap();
    assert_eq!((one.token_hash, one.role), (Hash([1; 32]), StaffRole::Billing));
}

async fn assert_branding(db: &ReadModelDb) {
    use ledger_projections::models::branding;
    for n in 0..ORGANIZATIONS {
        let row = branding::branding(db, organization(n)).await.unwrap();
        if n % 3 != 0 || n == 3 {
            assert_eq!(row, None, "organization {n}");
            continue;
        }
        let row = row.unwrap_or_else(|| panic!("organization {n} is branded"));
        assert_eq!((row.display_name.as_str(), row.organization_id), (format!("Brand {n}").as_str(), organization(n)));
        assert_eq!(row.primary_color, format!("#0000{n:02x}"));
        let logo = row.logo.map(|l| (l.digest, l.sequence));
        let expected =
            n.is_multiple_of(2).then(|| (domain::branding::logo_digest(&[0x89, b'P', n as u8]), row.sequence));
        assert_eq!(logo, expected, "organization {n}'s logo is the one its record holds");
    }
}

/// A usage warning the script records as done (skipped).
fn january_warning() -> Notice {
    Notice::UsageWarning {
        organization_id: organization(1),
        subscription_id: subscription(1, 0),
        metric: UsageMetric::ApiCalls,
        level: UsageLevel::Reached,
        month: d(2026, 1, 1),
    }
}

/// A model projection that fails once, at one sequence: a crash in the
/// middle of a batch.
struct FailOnce {
    inner: Box<dyn Projection>,
    at: Option<u64>,
}

impl Projection for FailOnce {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn tables(&self) -> &'static [Table] {
        self.inner.tables()
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        if self.at == Some(record.header.sequence) {
            self.at = None;
            return Err("a crash in the middle of a batch".into());
        }
        self.inner.apply(changes, record, event)
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    Postgres,
}

struct Fixture {
    _dir: tempfile::TempDir,
    log: EventLog,
    db: ReadModelDb,
}

async fn fixture(kind: Kind, test: &str) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(Ticking(AtomicI64::new(START)));
    let (log, db) = match kind {
        Kind::Sqlite => {
            let log = EventLog::open_sqlite(&dir.path().join("ledger.sqlite"), clock).await.unwrap();
            (log, ReadModelDb::open_sqlite(dir.path()).await.unwrap())
        }
        Kind::Postgres => {
            let url = store::testing::postgres_url(test)?;
            let schema = store::testing::fresh_schema(&url).await;
            let db = ReadModelDb::open_postgres(schema.options.clone()).await.unwrap();
            (EventLog::open_postgres(schema.options, clock).await.unwrap(), db)
        }
    };
    Some(Fixture { _dir: dir, log, db })
}

fn runner(fixture: &Fixture, db: &ReadModelDb, flush: usize) -> Runner {
    Runner::new(fixture.log.clone(), db.clone(), models::all(Catalog::builtin())).unwrap().with_flush_records_max(flush)
}

/// Appends the whole script, applying it in steps: a first runner after
/// onboarding, a crash in the middle of a batch during the traffic, a
/// runner aborted while applying, and a last one that catches up.
async fn build_history(fixture: &Fixture) -> LedgerState {
    let log = &fixture.log;
    let mut script = Script::default();
    onboarding(&mut script);
    script.append(log).await;
    runner(fixture, &fixture.db, 64).catch_up().await.unwrap();

    traffic(&mut script, 1, 31);
    changes(&mut script);
    script.append(log).await;
    let head = log.head().await.unwrap().sequence;
    let fail_at = (head * 2) / 3;
    let failing: Vec<Box<dyn Projection>> = models::all(Catalog::builtin())
        .into_iter()
        .map(|inner| Box::new(FailOnce { at: (inner.name() == "validations-v1").then_some(fail_at), inner }) as _)
        .collect();
    let error = Runner::new(log.clone(), fixture.db.clone(), failing)
        .unwrap()
        .with_flush_records_max(97)
        .catch_up()
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&fail_at.to_string()), "{error}");
    let applied = fixture.db.applied(&["validations-v1"]).await.unwrap();
    assert!(applied > 0 && applied < fail_at, "the batch holding the failure was not committed: {applied}");

    let state = LedgerState::rebuild(log, log.head().await.unwrap().sequence).await.unwrap();
    let issued = invoices_of(&state, &Catalog::builtin(), d(2026, 1, 1));
    assert!(issued.len() >= ORGANIZATIONS as usize, "every subscription has a January invoice");
    let (first, rest) = issued.split_at(3);
    for invoice in first {
        let stream = domain::billing::stream(invoice.subscription_id, invoice.invoice.period);
        script.push(stream, &InvoiceEvent::from(invoice.clone()), "operator");
    }
    script.append(log).await;
    let sync_from = log.head().await.unwrap().sequence + 1;
    for invoice in rest {
        let stream = domain::billing::stream(invoice.subscription_id, invoice.invoice.period);
        script.push(stream, &InvoiceEvent::from(invoice.clone()), "operator");
    }
    stripe_events(&mut script, &issued, sync_from);
    payment_reports(&mut script, &issued);
    corrections(&mut script, &issued);
    traffic(&mut script, 2, 20);
    notifications_sent(&mut script);
    branding(&mut script);
    staff(&mut script);
    sessions(&mut script);
    retention_marker(&mut script);
    script.append(log).await;

    // A runner that is stopped while it applies: whatever it committed
    // stays, the rest is applied by the next one, once.
    let mut aborted = runner(fixture, &fixture.db, 13);
    let task = tokio::spawn(async move { aborted.catch_up().await });
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    task.abort();
    let _ = task.await;
    let head = log.head().await.unwrap().sequence;
    assert_eq!(runner(fixture, &fixture.db, 500).catch_up().await.unwrap(), head);
    LedgerState::rebuild(log, head).await.unwrap()
}

async fn assert_organizations(db: &ReadModelDb, state: &LedgerState) {
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let (items, next) = organizations::page(db, after, 5).await.unwrap();
        assert!(items.len() <= 5);
        walked.extend(items);
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        walked.iter().map(|o| o.id).collect::<Vec<_>>(),
        state.organizations.keys().copied().collect::<Vec<_>>()
    );
    for (row, (id, entry)) in walked.iter().zip(&state.organizations) {
        assert_eq!((&row.created, row.created_at, &row.state), (&entry.created, entry.created_at, &entry.state));
        assert_eq!(organizations::name(db, *id).await.unwrap().as_deref(), Some(entry.created.name.as_str()));
        let subs = subscriptions::of_organization(db, *id).await.unwrap();
        assert_eq!(subs.iter().map(|(s, _)| *s).collect::<Vec<_>>(), entry.subscriptions, "{id}'s subscriptions");
        let live = subscriptions::live(db, *id).await.unwrap();
        assert_eq!(live.as_ref().map(|(s, v)| (*s, v)), state.live_subscription(*id));
        let latest = subscriptions::latest(db, *id).await.unwrap();
        assert_eq!(latest.as_ref().map(|(s, v)| (*s, v)), state.latest_subscription(*id));
        let lics = licenses::of_organization(db, *id).await.unwrap();
        assert_eq!(lics.iter().map(|(l, _)| *l).collect::<Vec<_>>(), entry.licenses, "{id}'s licenses");
        let users = organizations::users(db, *id, None, 100).await.unwrap();
        let active = users.iter().filter(|u| u.active).count() as u32;
        assert_eq!(active, entry.state.active_users());
        assert_eq!(users.len(), entry.state.users.len());
    }
    assert!(organizations::organization(db, organization(999)).await.unwrap().is_none(), "the stray record");
    for (token_id, entry) in &state.tokens {
        let row = organizations::token(db, *token_id).await.unwrap().expect("every token");
        assert_eq!(
            (row.organization_id, row.role, row.token_hash, row.revoked),
            (entry.organization_id, entry.role, entry.token_hash, entry.revoked)
        );
        let aggregate = &state.organizations[&entry.organization_id].state.tokens[token_id];
        assert_eq!(row.expires_at, aggregate.expires_at);
        assert_eq!(organizations::token_by_hash(db, entry.token_hash).await.unwrap(), Some(row));
    }
}

async fn assert_subscriptions(db: &ReadModelDb, state: &LedgerState) {
    let mut walked = Vec::new();
    loop {
        let page = subscriptions::page(db, walked.last().map(|(id, _)| *id), 4).await.unwrap();
        if page.is_empty() {
            break;
        }
        walked.extend(page);
    }
    let expected: Vec<_> = state.subscriptions.iter().map(|(id, s)| (*id, s.clone())).collect();
    assert_eq!(walked, expected, "every subscription, in id order");
    for (id, subscription) in &state.subscriptions {
        assert_eq!(subscriptions::subscription(db, *id).await.unwrap().as_ref(), Some(subscription));
        let usage = state.usage.get(id).cloned().unwrap_or_default();
        for month in [d(2026, 1, 1), d(2026, 2, 1), d(2026, 3, 1)] {
            let found = usage::month(db, *id, month).await.unwrap();
            assert_eq!(found, usage.of_month(month), "{id}'s usage of {month}");
            assert_eq!(found.month(month), usage.month(month));
        }
        // An invoice computed from the months read from the tables is the
        // one computed from the whole in-memory usage.
        let issued = state.invoices.get(id).cloned().unwrap_or_default();
        let billed = || issued.values().map(domain::billing::Billed::from);
        let march = d(2026, 3, 1);
        let read = usage::months(db, *id, issued.keys().copied().chain([march])).await.unwrap();
        let catalog = Catalog::builtin();
        assert_eq!(
            domain::billing::invoice(subscription, &read, &catalog, march, billed()),
            domain::billing::invoice(subscription, &usage, &catalog, march, billed()),
            "{id}'s March invoice"
        );
        let latest = usage::latest_day(db, *id).await.unwrap();
        assert_eq!(latest.latest_data_volume(), usage.latest_data_volume());
        let issued = state.invoices.get(id).cloned().unwrap_or_default();
        assert_eq!(invoices::of_subscription(db, *id).await.unwrap(), issued);
        assert_eq!(invoices::last_invoiced(db, *id).await.unwrap(), issued.keys().next_back().copied());
        for (month, invoice) in &issued {
            assert_eq!(invoices::invoice(db, *id, *month).await.unwrap().as_ref(), Some(invoice));
            let lines = invoices::lines(db, invoice.invoice_id).await.unwrap();
            assert_eq!(lines.len(), invoice.invoice.lines.len());
            assert_eq!(
                lines.iter().map(|l| l.description.as_str()).collect::<Vec<_>>(),
                invoice.invoice.lines.iter().map(|l| l.description.as_str()).collect::<Vec<_>>()
            );
        }
    }
    for (org, entry) in &state.organizations {
        let mut expected: Vec<&InvoiceIssued> =
            entry.subscriptions.iter().filter_map(|id| state.invoices.get(id)).flat_map(|m| m.values()).collect();
        expected.sort_by_key(|issued| (issued.invoice.period, issued.invoice_id));
        let found = invoices::of_organization(db, *org).await.unwrap();
        assert_eq!(found.iter().collect::<Vec<_>>(), expected, "{org}'s invoices");
    }
}

async fn assert_licenses(db: &ReadModelDb, state: &LedgerState) {
    for (id, license) in &state.licenses {
        assert_eq!(licenses::license(db, *id).await.unwrap().as_ref(), Some(license));
        assert_eq!(validations::stats(db, *id).await.unwrap().as_ref(), state.validations.get(id), "{id}'s stats");
        let deployments = licenses::deployments(db, *id).await.unwrap();
        let active: Vec<&str> = deployments.iter().filter(|d| d.active).map(|d| d.deployment_id.as_str()).collect();
        assert_eq!(active, license.deployments.iter().map(String::as_str).collect::<Vec<_>>());
        let held = |floating: bool| -> BTreeMap<String, Timestamp> {
            let rows = deployments.iter().filter(|d| d.floating == floating);
            rows.filter_map(|d| Some((d.deployment_id.clone(), d.slot_frees_at?))).collect()
        };
        assert_eq!(held(false), license.released);
        assert_eq!(held(true), license.floating, "{id}'s floating places, renewals included");
        // A key whose hash was made again is not found by the old one.
        let first = key_hash(*id);
        assert_eq!(licenses::by_key_hash(db, first).await.unwrap().is_some(), state.license_keys.contains_key(&first));
    }
    let floating = state.licenses.values().filter_map(|l| l.floating.get("pod-a")).count();
    assert!(floating > 0, "the history has floating places");
    for (hash, id) in &state.license_keys {
        let (found, license) = licenses::by_key_hash(db, *hash).await.unwrap().expect("every key");
        assert_eq!((found, &license), (*id, &state.licenses[id]));
    }
    assert!(licenses::by_key_hash(db, Hash([7; 32])).await.unwrap().is_none());
    assert_windows_ended(db, state).await;
    let validated: u64 = state.validations.values().map(|s| s.count).sum();
    assert!(validated > 500, "the history validates: {validated}");
}

/// The supersede windows the scheduler closes: open ones (superseded, not
/// revoked) that have ended, earliest first, as `LedgerState` says.
async fn assert_windows_ended(db: &ReadModelDb, state: &LedgerState) {
    let mut open: Vec<(Timestamp, LicenseId)> = state
        .licenses
        .iter()
        .filter_map(|(id, l)| Some((l.superseded.as_ref().filter(|_| l.revoked.is_none())?.window_ends_at, *id)))
        .collect();
    open.sort();
    let closed = state.licenses.values().filter(|l| l.superseded.is_some() && l.revoked.is_some()).count();
    assert!(!open.is_empty() && closed > 0, "the history has open and closed windows: {} and {closed}", open.len());
    let first = open[0].0;
    for now in [Timestamp::from_micros(first.as_micros() - 1), first, Timestamp::from_micros(i64::MAX)] {
        let expected: Vec<LicenseId> = open.iter().filter(|(end, _)| *end <= now).map(|(_, id)| *id).collect();
        let found = licenses::windows_ended(db, now, ledger_projections::models::PAGE_ITEMS_MAX).await.unwrap();
        assert_eq!(found, expected, "windows ended at {now:?}");
    }
    let two = licenses::windows_ended(db, Timestamp::from_micros(i64::MAX), 2).await.unwrap();
    assert_eq!(two, open.iter().take(2).map(|(_, id)| *id).collect::<Vec<_>>(), "a page of two");
}

/// Every audit entry of `organization` (all when `None`) through pages of
/// `size`, and the entries `LedgerState` lists.
async fn assert_audit(db: &ReadModelDb, state: &LedgerState, organization: Option<OrganizationId>, size: usize) {
    let (from, to) =
        (state.audit[state.audit.len() / 5].recorded_at, state.audit[state.audit.len() * 4 / 5].recorded_at);
    for (from, to) in [(None, None), (Some(from), Some(to))] {
        let mut walked = Vec::new();
        let mut after = 0;
        loop {
            let query = audit::AuditQuery { organization_id: organization, after, from, to, limit: size };
            let page = audit::page(db, query).await.unwrap();
            assert!(page.items.len() <= size.min(audit::AUDIT_PAGE_MAX));
            walked.extend(page.items);
            match page.next_cursor {
                Some(next) => after = next,
                None => break,
            }
        }
        let expected: Vec<_> = state
            .audit
            .iter()
            .filter(|e| organization.is_none_or(|id| e.organization_id == Some(id)))
            .filter(|e| from.is_none_or(|from| e.recorded_at >= from) && to.is_none_or(|to| e.recorded_at < to))
            .cloned()
            .collect();
        assert_eq!(walked, expected, "the audit of {organization:?} from {from:?} to {to:?}");
    }
    let mut leaves: Vec<(u64, Hash)> = Vec::new();
    loop {
        let page = audit::leaves(db, leaves.last().map_or(0, |(s, _)| *s), 1_000).await.unwrap();
        if page.is_empty() {
            break;
        }
        leaves.extend(page);
    }
    let expected: Vec<_> = state.audit.iter().map(|e| (e.sequence, e.leaf_hash)).collect();
    assert_eq!(leaves, expected, "every record's leaf hash, in order");
}

async fn assert_stripe(db: &ReadModelDb, state: &LedgerState) {
    let outbox = &state.stripe;
    let events = stripe::pending_events(db, 200).await.unwrap();
    assert_eq!(events, outbox.pending_events.values().cloned().collect::<Vec<_>>());
    assert!(!events.is_empty());
    for (org, customer) in &outbox.customers {
        assert_eq!(stripe::customer(db, *org).await.unwrap().as_ref(), Some(customer));
    }
    let pending: Vec<InvoiceIssued> = outbox
        .pending_invoices
        .keys()
        .filter(|(s, p)| !outbox.refused.contains_key(invoice_stream(*s, *p).as_str()))
        .filter_map(|(s, p)| state.invoices.get(s)?.get(p).cloned())
        .collect();
    assert!(!pending.is_empty(), "some invoices wait for Stripe");
    assert_eq!(stripe::pending_invoices(db, 200).await.unwrap(), pending);
    let methods: Vec<StripePaymentMethodSaved> = outbox
        .pending_payment_methods
        .values()
        .filter(|saved| !outbox.refused.contains_key(payment_method_stream(saved.organization_id).as_str()))
        .cloned()
        .collect();
    assert_eq!(stripe::pending_payment_methods(db, 200).await.unwrap(), methods);
    for ((subscription, period), stripe_id) in &outbox.invoices {
        assert_eq!(stripe::stripe_invoice(db, *subscription, *period).await.unwrap().as_ref(), Some(stripe_id));
    }
    for (target, refused) in &outbox.refused {
        assert_eq!(stripe::refused(db, target).await.unwrap().as_ref(), Some(refused));
    }
    // The refused list, a page at a time by target, is the outbox's
    // (a retried refusal is in neither).
    let first = stripe::refused_page(db, "", 2).await.unwrap();
    let rest = stripe::refused_page(db, &first.last().unwrap().target, 200).await.unwrap();
    let listed: Vec<(String, u16, String)> =
        first.into_iter().chain(rest).map(|r| (r.target, r.status, r.message)).collect();
    let expected: Vec<(String, u16, String)> =
        outbox.refused.values().map(|r| (r.target.clone(), r.status, r.message.clone())).collect();
    assert!(expected.len() > 2, "more than a page of refusals");
    assert_eq!(listed, expected);
    for (object, newest) in &outbox.subscription_events_newest {
        assert_eq!(stripe::subscription_newest(db, object).await.unwrap(), Some(*newest));
    }
    assert_eq!(stripe::sync_from(db).await.unwrap(), outbox.sync_from);
}

/// The outbox decided the onboarding of every key, usage warnings, and the
/// dunning notices; what was sent is pending no more, and nothing is
/// remembered of it but what could be decided again.
async fn assert_notifications(db: &ReadModelDb, state: &LedgerState) {
    let pending = notifications::pending(db, 200).await.unwrap();
    let onboarding: Vec<LicenseId> = pending
        .iter()
        .filter_map(|p| match p.notice {
            Notice::Onboarding { license_id, .. } => Some(license_id),
            _ => None,
        })
        .collect();
    let sent: Vec<LicenseId> = (0..ORGANIZATIONS).step_by(2).map(|n| license(n, 0)).collect();
    let expected: Vec<LicenseId> = state.license_keys.values().copied().filter(|l| !sent.contains(l)).collect();
    let mut sorted = onboarding.clone();
    sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted, "onboarding of every key not sent");
    assert!(pending.windows(2).all(|w| w[0].decided_at <= w[1].decided_at), "in the order decided");
    for kind in ["usage_warning", "payment_failed", "suspended", "restored"] {
        assert!(pending.iter().any(|p| p.notice.kind() == kind), "a {kind} notice is pending");
    }
    for p in &pending {
        if let Notice::UsageWarning { level: UsageLevel::Approaching, .. } = &p.notice {
            let mut reached = p.notice.clone();
            if let Notice::UsageWarning { level, .. } = &mut reached {
                *level = UsageLevel::Reached;
            }
            // 100% after 80% is a new warning; 80% after 100% is none.
            let later = pending.iter().filter(|q| q.id == reached.id()).all(|q| q.decided_at > p.decided_at);
            assert!(later, "an 80% warning decided after the month's 100% one");
        }
        assert_eq!(p.id, p.notice.id());
        assert_eq!(notifications::pending_notice(db, p.id).await.unwrap().as_ref(), Some(p));
    }
    // Onboarding is decided once: nothing is kept of it once sent. The
    // skipped warning is remembered in its slot, and not pending.
    let done = db.query("SELECT COUNT(*) FROM rm_notifications_done", vec![]).await.unwrap();
    assert_eq!(done[0].int(0).unwrap(), 1);
    assert!(pending.iter().all(|p| p.id != january_warning().id()));
    let today = d(2026, 12, 15);
    let reminders = notifications::due_reminders(db, today, None, 200).await.unwrap();
    let expected: Vec<Notice> = state.subscriptions.values().filter_map(|s| expiry_reminder(s, today)).collect();
    assert!(expected.len() >= 3, "terms that do not renew end in the window: {expected:?}");
    assert_eq!(reminders, expected);
}

/// Each invoice's payment status and each organization's payment method,
/// as `LedgerState` derives them, and the statuses the reports imply.
async fn assert_payments(db: &ReadModelDb, state: &LedgerState) {
    let known = &state.payments.invoices;
    assert!(known.len() >= ORGANIZATIONS as usize, "every issued invoice has a status");
    for ((subscription, period), expected) in known {
        assert_eq!(payments::invoice(db, *subscription, *period).await.unwrap().as_ref(), Some(expected));
        let due = known.values().filter(|p| p.subscription_id == *subscription && p.status.is_due());
        assert_eq!(payments::due_of_subscription(db, *subscription).await.unwrap(), due.cloned().collect::<Vec<_>>());
    }
    for n in 0..ORGANIZATIONS {
        let org = organization(n);
        let mut expected: Vec<_> = known.values().filter(|p| p.organization_id == org).cloned().collect();
        expected.sort_by_key(|p| (p.period, p.subscription_id.0));
        assert_eq!(payments::of_organization(db, org).await.unwrap(), expected);
        assert_eq!(payments::method(db, org).await.unwrap(), state.payments.method(org));
    }
    assert!((0..ORGANIZATIONS).any(|n| state.payments.method(organization(n)) == payments::METHOD_STRIPE));
    let status_of =
        |stripe_id: &str| known.values().find(|p| p.stripe_invoice_id.as_deref() == Some(stripe_id)).map(|p| p.status);
    assert_eq!(status_of("in_0"), Some(PaymentStatus::Paid));
    assert_eq!(status_of("in_3"), Some(PaymentStatus::PastDue));
    assert_eq!(status_of("in_6"), Some(PaymentStatus::Paid), "a failure then a success");
    assert_eq!(status_of("in_early"), Some(PaymentStatus::PastDue), "a report before its link");
    assert_eq!(status_of("in_9"), Some(PaymentStatus::Open), "linked, nothing reported");
    assert!(known.values().any(|p| p.stripe_invoice_id.is_none() && p.status == PaymentStatus::Open));
    assert_eq!(status_of("in_12"), Some(PaymentStatus::Void), "voided: Stripe's later reports do not revive it");
    let credited = known.values().find(|p| p.stripe_invoice_id.as_deref() == Some("in_6")).unwrap();
    assert_eq!(credited.credited, Money::usd(Decimal::new(2000, 2)), "two credit notes of 10.00");
    let rebilled = known.values().filter(|p| p.invoice_id != invoice_id(p.subscription_id, p.period));
    assert_eq!(rebilled.map(|p| p.status).collect::<Vec<_>>(), [PaymentStatus::Open], "the month billed again");
}

/// What a billing run reads of a page of subscriptions in one query each
/// (their invoices, the usage of each one's months) is what it reads of
/// each subscription alone.
async fn assert_billing_page(db: &ReadModelDb, state: &LedgerState) {
    let ids: Vec<SubscriptionId> = state.subscriptions.keys().copied().collect();
    assert!(ids.len() > 1 && ids.len() <= models::PAGE_ITEMS_MAX, "one page: {}", ids.len());
    let invoiced = invoices::of_subscriptions(db, &ids).await.unwrap();
    let mut wanted = BTreeMap::new();
    for (n, id) in ids.iter().enumerate() {
        let alone = invoices::of_subscription(db, *id).await.unwrap();
        assert_eq!(invoiced[id].as_ref().unwrap(), &alone, "{id:?}'s invoices");
        // Months that differ between subscriptions: a month one asks for
        // is not another's.
        let asked = if n % 2 == 0 { vec![d(2026, 1, 1)] } else { vec![d(2026, 2, 1), d(2026, 3, 1)] };
        wanted.insert(*id, asked.into_iter().chain(alone.keys().copied()).collect::<std::collections::BTreeSet<_>>());
    }
    assert!(invoiced.values().any(|i| !i.as_ref().unwrap().is_empty()), "some subscription has invoices");
    let used = usage::months_of(db, &wanted).await.unwrap();
    assert_eq!(used.len(), ids.len());
    for (id, months) in &wanted {
        let alone = usage::months(db, *id, months.iter().copied()).await.unwrap();
        assert_eq!(used[id].as_ref().unwrap(), &alone, "{id:?}'s usage of {months:?}");
    }
    assert!(used.values().filter(|u| !u.as_ref().unwrap().days.is_empty()).count() > 1, "usage was read");
    let too_many = vec![ids[0]; models::PAGE_ITEMS_MAX + 1];
    assert!(invoices::of_subscriptions(db, &too_many).await.is_err(), "a page is bounded");
}

/// The revenue figures of every month with an invoice (voided ones
/// included: the history voids two of January's and bills one again) are those `Book::of_state` folds from `LedgerState`: a void
/// takes its invoice's usage out of the month's billed rows.
async fn assert_revenue(db: &ReadModelDb, state: &LedgerState) {
    let voided = state.voided.values().map(|v| v.issued.invoice.period);
    let mut months: Vec<NaiveDate> =
        state.invoices.values().flat_map(|months| months.keys().copied()).chain(voided).collect();
    months.sort();
    months.dedup();
    assert!(!state.voided.is_empty() && !months.is_empty(), "the history voids invoices");
    for month in months {
        let through = month.checked_add_months(chrono::Months::new(1)).unwrap().pred_opt().unwrap();
        let read = ledger_projections::models::revenue::figures(db, month, through).await.unwrap();
        let folded = ledger_projections::revenue::Book::of_state(state, &Catalog::builtin(), month, through).unwrap();
        assert_eq!(read, folded, "revenue of {month}");
    }
}

async fn assert_all(db: &ReadModelDb, state: &LedgerState) {
    assert_billing_page(db, state).await;
    assert_organizations(db, state).await;
    assert_subscriptions(db, state).await;
    assert_licenses(db, state).await;
    assert_audit(db, state, None, 1000).await;
    for n in [0, 3, 7] {
        assert_audit(db, state, Some(organization(n)), 37).await;
    }
    assert_stripe(db, state).await;
    assert_payments(db, state).await;
    assert_notifications(db, state).await;
    assert_branding(db).await;
    assert_staff(db).await;
    assert_revenue(db, state).await;
}

async fn differential(kind: Kind) {
    let Some(fixture) = fixture(kind, "models differential").await else { return };
    let state = build_history(&fixture).await;
    assert_all(&fixture.db, &state).await;
    assert_sessions_audited(&fixture.db).await;
    assert_eq!(usage::retired(&fixture.db).await.unwrap(), Some((d(2025, 1, 1), 1)));

    // The page-size cap: one organization's history is far longer than a page.
    let org = organization(2);
    let query = audit::AuditQuery { organization_id: Some(org), limit: 100_000, ..Default::default() };
    let page = audit::page(&fixture.db, query).await.unwrap();
    assert_eq!(page.items.len(), audit::AUDIT_PAGE_MAX, "a page holds at most the cap");
    assert_eq!(page.next_cursor, Some(page.items.last().unwrap().sequence));
    // A time-bounded page examines a bounded window: one whose bounds
    // match nothing is empty, and its cursor continues after the window.
    let head = fixture.log.head().await.unwrap().sequence;
    assert!(head > audit::AUDIT_SCAN_ROWS_MAX as u64, "the history is longer than a window: {head}");
    let future = audit::AuditQuery { from: Some(Timestamp::from_micros(i64::MAX)), limit: 10, ..Default::default() };
    let page = audit::page(&fixture.db, future).await.unwrap();
    assert_eq!((page.items.len(), page.next_cursor), (0, Some(audit::AUDIT_SCAN_ROWS_MAX as u64)));
    let (organizations, next) = organizations::page(&fixture.db, None, 100_000).await.unwrap();
    assert_eq!((organizations.len(), next), (ORGANIZATIONS as usize, None));

    // A rebuild from sequence 0 into a scratch file gives the same rows.
    let scratch = tempfile::tempdir().unwrap();
    let rebuilt = ReadModelDb::open_sqlite_file(&scratch.path().join("rebuild.sqlite")).await.unwrap();
    let head = fixture.log.head().await.unwrap().sequence;
    assert_eq!(runner(&fixture, &rebuilt, 10_000).catch_up().await.unwrap(), head);
    let tables = models::tables();
    assert_eq!(compare(&fixture.db, &rebuilt, &tables).await.unwrap(), None, "{kind:?}: the rebuild differs");
    let (live, again) = (digest(&fixture.db, &tables).await.unwrap(), digest(&rebuilt, &tables).await.unwrap());
    assert_eq!(live, again);
    assert!(live.iter().all(|table| table.rows > 0), "every table has rows: {live:?}");
    assert_all(&rebuilt, &state).await;
    assert_sessions_audited(&rebuilt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_answer_as_ledger_state_does_on_sqlite() {
    differential(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_answer_as_ledger_state_does_on_postgres() {
    differential(Kind::Postgres).await;
}

#[test]
fn the_registry_names_each_projection_and_table_once() {
    let projections = models::all(Catalog::builtin());
    let mut names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), projections.len());
    let mut tables: Vec<&str> = models::tables().iter().map(|t| t.name).collect();
    let count = tables.len();
    tables.sort_unstable();
    tables.dedup();
    assert_eq!(tables.len(), count, "no table belongs to two projections");
}
