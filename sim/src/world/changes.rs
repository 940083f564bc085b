//! An organization's admin changing its live subscription, as
//! `usecases::subscriptions` does: an upgrade (`workflows::upgrade`: a
//! higher tier from a day of this month, the old key superseded, a new one
//! issued, three streams in one atomic append) or a downgrade scheduled for
//! the renewal (`ScheduleDowngrade`), each decided by the aggregates loaded
//! from the log. An upgrade's prorated month is billed by the billing run,
//! and re-derived like every invoice.
//!
//! Invariants (as the records are scanned, `Seen::check_change`): an
//! upgrade moves to a higher tier than the subscription's newest one, from
//! a day of the month it was decided in; a renewal takes the tier of the
//! downgrade scheduled, if any (`Seen::check_term`).

use chrono::Datelike;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use domain::catalog::Tier;
use domain::license::License;
use domain::record::RecordHeader;
use domain::subscription::{Pricing, Subscription, SubscriptionCommand, SubscriptionEvent};
use domain::workflows::{NewKey, UpgradeOrder};
use domain::{Clock, LicenseId, SubscriptionId};
use store::ExpectedRevision;

use super::{Effect, Request, World};

const TIERS: [Tier; 3] = [Tier::Starter, Tier::Professional, Tier::Enterprise];

fn expected(revision: u64) -> ExpectedRevision {
    if revision == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exactly(revision) }
}

impl World {
    /// An upgrade or a downgrade of a live subscription chosen by the seed
    /// (with none, a usage report).
    pub(crate) async fn change_tier(&mut self) -> Result<(), String> {
        let live: Vec<SubscriptionId> = (self.live_subscriptions().into_iter())
            .map(|(id, _)| id)
            .filter(|id| !self.model.subs[id].cancelled)
            .collect();
        if live.is_empty() {
            return self.report_usage().await;
        }
        let id = live[self.rng.below(live.len() as u64) as usize];
        let (subscription, revision) = self.load::<Subscription>(&id.stream()).await?;
        let Some(current) = subscription.latest_tier().map(|period| period.tier) else {
            return Err(format!("{id} is live and has no tier"));
        };
        let target = TIERS[self.rng.below(TIERS.len() as u64) as usize];
        let request = if target > current {
            self.upgrade(id, subscription, revision, target).await?
        } else {
            self.downgrade(id, subscription, revision, target).await?
        };
        match request {
            Some(request) => self.submit(vec![request]).await,
            None => {
                self.trace(&format!("change {id} to {target:?} refused"));
                Ok(())
            }
        }
    }

    async fn upgrade(
        &mut self,
        id: SubscriptionId,
        subscription: Subscription,
        revision: u64,
        target_tier: Tier,
    ) -> Result<Option<Request>, String> {
        let old_id = subscription.license_id.ok_or("a subscription without its license")?;
        let (old, old_revision) = self.load::<License>(&old_id.stream()).await?;
        let new_id = LicenseId(self.uuid(4));
        let today = self.today();
        // Today, or a day of this month up to today.
        let effective_date =
            self.rng.chance(500).then(|| today.with_day(1 + self.rng.below(today.day().into()) as u32));
        let order = UpgradeOrder {
            target_tier,
            effective_date: effective_date.flatten(),
            addons: Vec::new(),
            pricing: Pricing::Catalog,
            today,
        };
        let key = NewKey {
            license_id: new_id,
            nonce: [self.ids as u8; 16],
            key_hash: domain::record::Hash(*blake3::hash(new_id.0.as_bytes()).as_bytes()),
            issued_at: self.clock.now(),
        };
        let (fresh, services) = (License::default(), super::services());
        let decided = domain::workflows::upgrade(&subscription, &old, &fresh, order, key, &services).await;
        let Ok(decided) = decided else { return Ok(None) };
        let name = format!("upgrade:{id}:{}", self.ids);
        let keys: Vec<String> = ["subscription", "old", "new"].iter().map(|k| format!("{name}:{k}")).collect();
        let commands = vec![
            self.command(&keys[0], id.stream(), expected(revision), &decided.subscription),
            self.command(&keys[1], old_id.stream(), expected(old_revision), &decided.old_license),
            self.command(&keys[2], new_id.stream(), ExpectedRevision::NoStream, &decided.new_license),
        ];
        Ok(Some(Request { name, keys, commands, effect: Effect::Upgraded { id, license: new_id } }))
    }

    async fn downgrade(
        &mut self,
        id: SubscriptionId,
        mut subscription: Subscription,
        revision: u64,
        target_tier: Tier,
    ) -> Result<Option<Request>, String> {
        let sink = EventSink::<Subscription>::default();
        let command = SubscriptionCommand::ScheduleDowngrade { target_tier, today: self.today() };
        if subscription.handle(command, &super::services(), &sink).await.is_err() {
            return Ok(None);
        }
        let decided = sink.collect().await;
        let key = format!("downgrade:{id}:{}", self.ids);
        let command = self.command(&key, id.stream(), expected(revision), &decided);
        Ok(Some(Request { name: key.clone(), keys: vec![key], commands: vec![command], effect: Effect::None }))
    }
}

impl super::Seen {
    /// An upgrade against the subscription's state before it: a higher
    /// tier than its newest, from a day of the month it was decided in.
    pub(crate) fn check_change(
        before: &Subscription,
        header: &RecordHeader,
        event: &SubscriptionEvent,
    ) -> Result<(), String> {
        let SubscriptionEvent::SubscriptionUpgraded(upgraded) = event else { return Ok(()) };
        let day = header.occurred_at.to_datetime().date_naive();
        let newest = before.latest_tier().map(|period| period.tier);
        let same_month = (upgraded.effective_date.year(), upgraded.effective_date.month()) == (day.year(), day.month());
        if newest.is_none_or(|tier| upgraded.to_tier <= tier) || !same_month {
            return Err(format!(
                "record {} upgrades {} from {newest:?} to {:?} from {} (decided on {day})",
                header.sequence, header.stream_id, upgraded.to_tier, upgraded.effective_date
            ));
        }
        Ok(())
    }
}
