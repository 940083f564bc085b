//! The actors a step may run, chosen by the seed: callers, retries, the
//! projections runner, the scheduler, the billing run, the e-mail outbox,
//! the clock, a crash; Stripe's charges, webhook deliveries and the
//! reactor (`payments`).

use chrono::{Months, NaiveDate};
use domain::billing::{Billed, InvoiceEvent, InvoiceIssued, invoice_id};
use domain::catalog::Tier;
use domain::event::StoredEvent;
use domain::license::{LicenseEvent, LicenseIssued, LicenseRevoked};
use domain::notification::{NotificationEvent, NotificationSent};
use domain::organization::{
    OrganizationCreated, OrganizationEvent, Role, SubscriptionEnded, SubscriptionStarted, UserAdded,
};
use domain::subscription::{Status, SubscriptionCancelled, SubscriptionCreated, SubscriptionEvent};
use domain::usage::{Metrics, UsageEvent, UsageReported};
use domain::{Clock, EventId, LicenseId, Metadata, OrganizationId, StreamId, SubscriptionId, UserId};
use projections::models::{invoices, notifications, subscriptions, usage};
use rust_decimal::Decimal;
use store::{Command, ExpectedRevision, Idempotency, NewEvent};

use super::{Effect, Request, World};

/// Each actor's weight when a step picks one.
const WEIGHTS: [u64; 16] = [6, 8, 20, 4, 10, 12, 7, 9, 6, 3, 16, 9, 6, 8, 6, 5];
/// Organizations the callers create, at most.
const ORGANIZATIONS_MAX: usize = 12;
/// Usage reports one step sends at once (one group commit), at most.
const REPORTS_PER_STEP_MAX: u64 = 3;
/// Live subscriptions the scheduler and the billing run read per step.
const PAGE: usize = projections::models::PAGE_ITEMS_MAX;
/// Pending notices one outbox round sends, at most.
const NOTICES_PER_ROUND_MAX: usize = 8;
/// Months one billing run looks back over per subscription, at most.
const MONTHS_BACK_MAX: u32 = 24;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;

impl World {
    /// One step: an actor chosen by the seed.
    pub(crate) async fn act(&mut self) -> Result<(), String> {
        match self.rng.weighted(&WEIGHTS) {
            0 => self.new_organization().await,
            1 => self.start_subscription().await,
            2 => self.report_usage().await,
            3 => self.cancel().await,
            4 => self.retry().await,
            5 => self.run_projections().await,
            6 => self.schedule().await,
            7 => self.bill().await,
            8 => self.send_notices().await,
            9 => self.crash().await,
            11 => self.sync_stripe().await,
            12 => self.charge().await,
            13 => self.deliver_webhook().await,
            14 => self.react().await,
            15 => self.change_tier().await,
            _ => {
                self.move_clock();
                Ok(())
            }
        }
    }

    pub(super) fn command<E: StoredEvent>(
        &mut self,
        key: &str,
        stream: StreamId,
        expected: ExpectedRevision,
        events: &[E],
    ) -> Command {
        let at = self.clock.now();
        let metadata = Metadata { actor: Some("sim".into()), ..Metadata::default() };
        let events: Vec<NewEvent> =
            events.iter().map(|event| NewEvent::from_event(event, EventId(self.uuid(0xE)), at, &metadata)).collect();
        let idempotency = Some(Idempotency::of_events(key, &stream, &events));
        Command { stream_id: stream, expected, idempotency, events }
    }

    fn revision(&self, stream: &StreamId) -> ExpectedRevision {
        self.model.revisions.get(stream).map_or(ExpectedRevision::NoStream, |r| ExpectedRevision::Exactly(*r))
    }

    pub(super) async fn new_organization(&mut self) -> Result<(), String> {
        if self.model.orgs.len() + self.model.pending.len() >= ORGANIZATIONS_MAX {
            return self.report_usage().await;
        }
        let (id, user) = (OrganizationId(self.uuid(1)), UserId(self.uuid(2)));
        let created = OrganizationCreated {
            id,
            name: format!("Org {}", self.ids),
            domain: None,
            industry: None,
            employee_count: Some(10),
        };
        let added = UserAdded { user_id: user, email: format!("admin{}@sim.example", self.ids), role: Role::Admin };
        let events = [OrganizationEvent::from(created), OrganizationEvent::from(added)];
        let key = format!("org:{id}");
        let command = self.command(&key, id.stream(), ExpectedRevision::NoStream, &events);
        let effect = Effect::Organization(id);
        self.submit(vec![Request {
            name: format!("organization {id}"),
            keys: vec![key],
            commands: vec![command],
            effect,
        }])
        .await
    }

    /// An organization without a live subscription, none of whose streams
    /// a pending request writes.
    fn idle_organization(&mut self) -> Option<OrganizationId> {
        let idle: Vec<OrganizationId> = (self.model.orgs.iter())
            .filter(|(id, org)| org.live.is_none() && !self.model.busy.contains(&id.stream()))
            .map(|(id, _)| *id)
            .collect();
        (!idle.is_empty()).then(|| idle[self.rng.below(idle.len() as u64) as usize])
    }

    pub(super) async fn start_subscription(&mut self) -> Result<(), String> {
        let Some(organization) = self.idle_organization() else { return self.new_organization().await };
        let (id, license) = (SubscriptionId(self.uuid(3)), LicenseId(self.uuid(4)));
        let start = self.today();
        let tier = [Tier::Starter, Tier::Professional, Tier::Enterprise][self.rng.below(3) as usize];
        let created = SubscriptionCreated {
            id,
            organization_id: organization,
            tier,
            catalog_version: 1,
            start_date: start,
            end_date: start.checked_add_months(Months::new(12)).ok_or("no end date")?,
            auto_renew: true,
            max_deployments: 2,
            enterprise_overage_rate: None,
            license_id: license,
        };
        let issued = LicenseIssued {
            license_id: license,
            subscription_id: id,
            organization_id: organization,
            nonce: [self.ids as u8; 16],
            key_hash: domain::record::Hash(*blake3::hash(license.0.as_bytes()).as_bytes()),
            issued_at: self.clock.now(),
        };
        let keys: Vec<String> = ["subscription", "started", "license"].iter().map(|k| format!("{k}:{id}")).collect();
        let org_expected = self.revision(&organization.stream());
        let commands = vec![
            self.command(&keys[0], id.stream(), ExpectedRevision::NoStream, &[SubscriptionEvent::from(created)]),
            self.command(
                &keys[1],
                organization.stream(),
                org_expected,
                &[OrganizationEvent::from(SubscriptionStarted { subscription_id: id })],
            ),
            self.command(&keys[2], license.stream(), ExpectedRevision::NoStream, &[LicenseEvent::from(issued)]),
        ];
        let effect = Effect::Subscription { organization, id, license, start };
        self.submit(vec![Request { name: format!("subscription {id}"), keys, commands, effect }]).await
    }

    /// Live subscriptions as the callers know them, started by today.
    pub(super) fn live_subscriptions(&self) -> Vec<(SubscriptionId, LicenseId)> {
        let today = self.today();
        (self.model.subs.iter())
            .filter(|(id, sub)| !sub.ended && sub.start <= today && !self.model.busy.contains(&id.stream()))
            .map(|(id, sub)| (*id, sub.license))
            .collect()
    }

    pub(super) async fn report_usage(&mut self) -> Result<(), String> {
        let live = self.live_subscriptions();
        if live.is_empty() {
            self.trace("usage nothing");
            return Ok(());
        }
        let mut requests = Vec::new();
        for _ in 0..=self.rng.below(REPORTS_PER_STEP_MAX) {
            let (subscription_id, license_id) = live[self.rng.below(live.len() as u64) as usize];
            let day = self.today();
            let report = UsageReported {
                subscription_id,
                license_id,
                deployment_id: format!("dep-{}", self.rng.below(2)),
                day,
                metrics: Metrics {
                    active_users: 1 + self.rng.below(40),
                    data_volume_gb: Decimal::new(self.rng.below(3_000_000) as i64, 2),
                    api_calls_count: self.rng.below(2_000_000),
                    training_hours: Decimal::new(self.rng.below(500) as i64, 1),
                },
            };
            let key = format!("usage:{}", self.uuid(5));
            let command = self.command(
                &key,
                domain::usage::stream(subscription_id, day),
                ExpectedRevision::Any,
                &[UsageEvent::from(report)],
            );
            requests.push(Request {
                name: key.clone(),
                keys: vec![key],
                commands: vec![command],
                effect: Effect::None,
            });
        }
        self.submit(requests).await
    }

    async fn cancel(&mut self) -> Result<(), String> {
        let candidates: Vec<SubscriptionId> = self
            .live_subscriptions()
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !self.model.subs[id].cancelled)
            .collect();
        if candidates.is_empty() {
            return self.report_usage().await;
        }
        let id = candidates[self.rng.below(candidates.len() as u64) as usize];
        let effective_date = self.today() + chrono::Days::new(self.rng.below(40));
        let key = format!("cancel:{id}");
        let expected = self.revision(&id.stream());
        let event = SubscriptionEvent::from(SubscriptionCancelled { effective_date });
        let command = self.command(&key, id.stream(), expected, &[event]);
        self.submit(vec![Request {
            name: key.clone(),
            keys: vec![key],
            commands: vec![command],
            effect: Effect::Cancelled(id),
        }])
        .await
    }

    /// Forward by hours or days, or back by seconds.
    fn move_clock(&mut self) {
        let micros = match self.rng.below(4) {
            0 => (1 + self.rng.below(48) as i64) * MICROS_PER_HOUR,
            1 | 2 => (1 + self.rng.below(30) as i64) * 24 * MICROS_PER_HOUR,
            _ => -(1 + self.rng.below(600) as i64) * MICROS_PER_SECOND,
        };
        self.clock.shift(micros);
        self.trace(&format!("clock {micros}"));
    }

    /// The scheduler's tick: a cancelled subscription whose cancellation
    /// took effect ends (its organization's live subscription, its key),
    /// under a key named after the change, as `usecases::scheduler` does.
    async fn schedule(&mut self) -> Result<(), String> {
        let live = subscriptions::live_page(self.db(), None, PAGE).await.map_err(|e| e.to_string())?;
        let today = self.today();
        let mut requests = Vec::new();
        for (organization, id, subscription) in live {
            requests.extend(self.due(id, &subscription).await?);
            // A term that ended is the term end's, as the scheduler decides.
            let status = subscription.status_on(today);
            let ends = !status.is_ended() && subscription.end_date.is_some_and(|end| end <= today);
            if status != Status::Cancelled || ends {
                continue;
            }
            let Some(license) = subscription.license_id else { continue };
            let keys = vec![format!("scheduler:end-cancelled:{id}"), format!("scheduler:end-cancelled:{id}:license")];
            let ended = OrganizationEvent::from(SubscriptionEnded { subscription_id: id });
            let revoked = LicenseEvent::from(LicenseRevoked { reason: "subscription cancelled".into() });
            let commands = vec![
                self.command(&keys[0], organization.stream(), ExpectedRevision::Any, &[ended]),
                self.command(&keys[1], license.stream(), ExpectedRevision::Any, &[revoked]),
            ];
            requests.push(Request { name: keys[0].clone(), keys, commands, effect: Effect::Ended(id) });
        }
        self.trace(&format!("tick {}", requests.len()));
        if requests.is_empty() { Ok(()) } else { self.submit(requests).await }
    }

    /// The billing run: the read models caught up, each live subscription's
    /// oldest month before this one that bills something and has no
    /// invoice is issued, computed from the tables as the billing run does.
    async fn bill(&mut self) -> Result<(), String> {
        let usage_sequence = self.catch_up().await?;
        let live = subscriptions::live_page(self.db(), None, PAGE).await.map_err(|e| e.to_string())?;
        let this_month = domain::calendar::first_of_month(self.today());
        let mut requests = Vec::new();
        for (organization_id, id, subscription) in live {
            let Some(start) = subscription.start_date else { continue };
            let Some(issued) = self.due_invoice(id, &subscription, start, this_month).await? else { continue };
            let issued = InvoiceIssued { organization_id, usage_sequence, ..issued };
            let key = format!("billing:{id}:{}", issued.invoice.period);
            let stream = domain::billing::stream(id, issued.invoice.period);
            let command = self.command(&key, stream, ExpectedRevision::NoStream, &[InvoiceEvent::from(issued)]);
            requests.push(Request {
                name: key.clone(),
                keys: vec![key],
                commands: vec![command],
                effect: Effect::None,
            });
        }
        self.trace(&format!("billing {} at {usage_sequence}", requests.len()));
        if requests.is_empty() { Ok(()) } else { self.submit(requests).await }
    }

    async fn due_invoice(
        &self,
        id: SubscriptionId,
        subscription: &domain::subscription::Subscription,
        start: NaiveDate,
        this_month: NaiveDate,
    ) -> Result<Option<InvoiceIssued>, String> {
        let issued = invoices::of_subscription(self.db(), id).await.map_err(|e| e.to_string())?;
        let mut month = domain::calendar::first_of_month(start);
        for _ in 0..MONTHS_BACK_MAX {
            if month >= this_month {
                break;
            }
            if !issued.contains_key(&month) {
                let months = std::iter::once(month).chain(issued.keys().copied());
                let usage = usage::months(self.db(), id, months).await.map_err(|e| e.to_string())?;
                let computed = domain::billing::invoice(
                    subscription,
                    &usage,
                    super::catalog(),
                    month,
                    issued.values().map(Billed::from),
                )
                .map_err(|e| format!("billing {id} {month}: {e}"))?;
                if let Some(invoice) = computed {
                    let organization_id = subscription.organization_id.ok_or("a subscription without organization")?;
                    let (invoice_id, digest) = (invoice_id(id, month), invoice.digest());
                    let issued = InvoiceIssued {
                        invoice_id,
                        subscription_id: id,
                        organization_id,
                        digest,
                        invoice,
                        usage_sequence: 0,
                    };
                    return Ok(Some(issued));
                }
            }
            month = month.checked_add_months(Months::new(1)).ok_or("no next month")?;
        }
        Ok(None)
    }

    /// The e-mail outbox: pending notices, in order, to the fake SMTP
    /// peer, which refuses now and then; each accepted one recorded as
    /// sent under a key named after the notice (the stream must not exist).
    async fn send_notices(&mut self) -> Result<(), String> {
        let pending = notifications::pending(self.db(), NOTICES_PER_ROUND_MAX).await.map_err(|e| e.to_string())?;
        let mut sent = 0;
        for notice in pending {
            if self.rng.chance(150) {
                self.trace("smtp refused");
                break;
            }
            let message_id = format!("<{}@sim>", notice.id.0);
            self.peer.accepted.insert(message_id.clone());
            let event = NotificationSent { id: notice.id, notice: notice.notice, recipients: Vec::new(), message_id };
            let key = format!("notify:{}", notice.id.0);
            let command =
                self.command(&key, notice.id.stream(), ExpectedRevision::NoStream, &[NotificationEvent::from(event)]);
            self.submit(vec![Request {
                name: key.clone(),
                keys: vec![key],
                commands: vec![command],
                effect: Effect::None,
            }])
            .await?;
            sent += 1;
        }
        self.trace(&format!("outbox {sent}"));
        Ok(())
    }
}
