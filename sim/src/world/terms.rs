//! The seed's history and the scheduler's time-driven changes besides a
//! cancellation taking effect: a term's end (renewal, or expiry ending the
//! organization's live subscription) and dunning's suspension once the
//! grace is over, each decided by the `domain` aggregates loaded from the
//! log, under the key `usecases::scheduler` names the change with.
//!
//! Invariants (checked as the records are scanned, against each
//! subscription's state replayed from the log by the checker): a
//! suspension follows an unresolved failed payment whose grace was over at
//! its time; a renewal starts on the day the term ended, recorded on or
//! after it, at the tier of the downgrade scheduled (if any) or the
//! newest; an expiry is on the term's end.

use chrono::{Months, NaiveDate};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use domain::event::StoredEvent;
use domain::organization::{Organization, OrganizationEvent};
use domain::record::RecordHeader;
use domain::subscription::{Status, Subscription, SubscriptionCommand, SubscriptionEvent, SubscriptionSuspended};
use domain::{Clock, StreamId, SubscriptionId, Timestamp};
use store::ExpectedRevision;

use super::{Effect, Request, World};
use crate::Bug;

/// Subscriptions the seed's history starts, at most.
const HISTORY_SUBSCRIPTIONS_MAX: u64 = 3;
/// How far back the history starts them, at most: past a term's end.
const HISTORY_MONTHS_MAX: u64 = 13;
/// Events of one stream an aggregate is loaded from, at most.
const STREAM_EVENTS_MAX: usize = 4096;

fn err(error: impl std::fmt::Display) -> String {
    error.to_string()
}

fn expected(revision: u64) -> ExpectedRevision {
    if revision == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exactly(revision) }
}

impl World {
    /// Before the first step: organizations and subscriptions started up
    /// to [`HISTORY_MONTHS_MAX`] months back, with some usage, the clock
    /// moved back for them and then to the run's start: the first steps
    /// find months to bill, invoices to send and charge, terms ending.
    pub(crate) async fn history(&mut self) -> Result<(), String> {
        let count = 1 + self.rng.below(HISTORY_SUBSCRIPTIONS_MAX);
        let mut months: Vec<u32> = (0..count).map(|_| 1 + self.rng.below(HISTORY_MONTHS_MAX) as u32).collect();
        months.sort_unstable_by(|a, b| b.cmp(a));
        let start = self.clock.now();
        for back in months {
            let day = start.to_datetime().checked_sub_months(Months::new(back)).ok_or("no date that far back")?;
            self.clock.shift(day.timestamp_micros() - self.clock.now().as_micros());
            self.trace(&format!("history {back} months back"));
            self.new_organization().await?;
            self.start_subscription().await?;
            self.report_usage().await?;
        }
        self.clock.shift(start.as_micros() - self.clock.now().as_micros());
        Ok(())
    }

    /// An aggregate's state and revision, replayed from its stream.
    pub(crate) async fn load<A>(&self, stream: &StreamId) -> Result<(A, u64), String>
    where
        A: Aggregate + Default,
        A::Event: StoredEvent,
    {
        let records = self.log().read_stream(stream, 1, STREAM_EVENTS_MAX).await.map_err(err)?;
        let mut state = A::default();
        for record in &records {
            let (header, payload) = (&record.header, record.event_bytes().unwrap_or_default());
            let event = A::Event::decode(&header.event_type, header.schema_version, payload)
                .map_err(|e| format!("{stream} at {}: {e}", header.sequence))?
                .ok_or_else(|| format!("{stream}: unknown event {}", header.event_type))?;
            state.apply(event);
        }
        Ok((state, records.last().map_or(0, |record| record.header.stream_revision)))
    }

    /// What the scheduler appends for one live subscription besides a
    /// cancellation taking effect: a suspension, a term's end.
    pub(crate) async fn due(&mut self, id: SubscriptionId, listed: &Subscription) -> Result<Vec<Request>, String> {
        let (now, today) = (self.clock.now(), self.today());
        let status = listed.status_on(today);
        let mut due = Vec::new();
        if let Some(dunning) = listed.dunning.filter(|_| status == Status::PastDue) {
            let planted = self.config.bug == Some(Bug::SuspendInGrace);
            if now >= dunning.suspend_at || planted {
                let key = format!("scheduler:suspend:{id}:{}", dunning.past_due_since.as_micros());
                due.extend(self.suspension(id, key, now).await?);
            }
        }
        if let Some(end) = listed.end_date.filter(|end| !status.is_ended() && *end <= today) {
            due.extend(self.end_term(id, format!("scheduler:end-term:{id}:{end}")).await?);
        }
        Ok(due)
    }

    /// A suspension as the subscription aggregate decides it now (with the
    /// planted bug, one made without asking it, grace or not).
    async fn suspension(&mut self, id: SubscriptionId, key: String, now: Timestamp) -> Result<Option<Request>, String> {
        let (mut subscription, revision) = self.load::<Subscription>(&id.stream()).await?;
        let decided = if self.config.bug == Some(Bug::SuspendInGrace) {
            let Some(dunning) = subscription.dunning.filter(|d| !d.suspended) else { return Ok(None) };
            vec![SubscriptionEvent::from(SubscriptionSuspended { at: now, past_due_since: dunning.past_due_since })]
        } else {
            let sink = EventSink::<Subscription>::default();
            if subscription.handle(SubscriptionCommand::Suspend { now }, &super::services(), &sink).await.is_err() {
                return Ok(None);
            }
            sink.collect().await
        };
        let command = self.command(&key, id.stream(), expected(revision), &decided);
        Ok(Some(Request { name: key.clone(), keys: vec![key], commands: vec![command], effect: Effect::None }))
    }

    /// A term's end as `workflows::end_term` decides it: renewed, or
    /// expired and the organization's live subscription ended.
    async fn end_term(&mut self, id: SubscriptionId, key: String) -> Result<Option<Request>, String> {
        let (subscription, revision) = self.load::<Subscription>(&id.stream()).await?;
        let organization_id = subscription.organization_id.ok_or("a subscription without organization")?;
        let (organization, org_revision) = self.load::<Organization>(&organization_id.stream()).await?;
        let decided = domain::workflows::end_term(&subscription, &organization, self.today(), &super::services()).await;
        let Ok(mut decided) = decided else { return Ok(None) };
        if self.config.bug == Some(Bug::RenewIgnoringDowngrade) {
            let newest = subscription.latest_tier().map(|period| period.tier);
            for event in &mut decided.subscription {
                if let (SubscriptionEvent::SubscriptionRenewed(renewed), Some(tier)) = (event, newest) {
                    renewed.tier = tier;
                }
            }
        }
        let expired = decided.subscription.iter().any(|e| matches!(e, SubscriptionEvent::SubscriptionExpired(_)));
        let mut keys = vec![key.clone()];
        let mut commands = vec![self.command(&key, id.stream(), expected(revision), &decided.subscription)];
        if !decided.organization.is_empty() {
            let org_key = format!("{key}:organization");
            let events: &[OrganizationEvent] = &decided.organization;
            commands.push(self.command(&org_key, organization_id.stream(), expected(org_revision), events));
            keys.push(org_key);
        }
        let effect = if expired { Effect::Ended(id) } else { Effect::None };
        Ok(Some(Request { name: key, keys, commands, effect }))
    }
}

impl super::Seen {
    /// A subscription event against the subscription's state before it,
    /// replayed here from the log; then applied to it.
    pub(crate) fn check_term(&mut self, header: &RecordHeader, event: &SubscriptionEvent) -> Result<(), String> {
        let id = (header.stream_id.as_str().split_once('/'))
            .and_then(|(_, id)| id.parse().ok())
            .map(SubscriptionId)
            .ok_or_else(|| format!("record {}: not a subscription's stream", header.sequence))?;
        let before = self.subscriptions.entry(id).or_default();
        let at = header.sequence;
        let day: NaiveDate = header.occurred_at.to_datetime().date_naive();
        Self::check_change(before, header, event)?;
        match event {
            SubscriptionEvent::SubscriptionSuspended(suspended) => {
                let grace_over = before.dunning.is_some_and(|d| {
                    !d.suspended && d.past_due_since == suspended.past_due_since && suspended.at >= d.suspend_at
                });
                if !grace_over {
                    return Err(format!(
                        "record {at} suspends {id} at {}; its dunning before it was {:?}: not past due, or the grace \
                         not over",
                        suspended.at, before.dunning
                    ));
                }
            }
            SubscriptionEvent::SubscriptionRenewed(renewed) => {
                let tier = before.scheduled_downgrade.or(before.latest_tier().map(|period| period.tier));
                if before.end_date != Some(renewed.start_date) || day < renewed.start_date || tier != Some(renewed.tier)
                {
                    return Err(format!(
                        "record {at} renews {id} from {} on {day} at {:?}; its term ended {:?}, at {tier:?}",
                        renewed.start_date, renewed.tier, before.end_date
                    ));
                }
            }
            SubscriptionEvent::SubscriptionExpired(expired) if before.end_date != Some(expired.on) => {
                return Err(format!("record {at} expires {id} on {}; its term ends {:?}", expired.on, before.end_date));
            }
            _ => {}
        }
        before.apply(event.clone());
        Ok(())
    }
}
