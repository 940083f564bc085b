//! Appending a caller's request with an injected fault, and checking its
//! answer against what is known of its idempotency keys: a retry gives the
//! first outcome, a command is never appended twice.

use domain::{LicenseId, OrganizationId, SubscriptionId};
use store::faults::CommitFault;
use store::{Appended, Command, Rejection, StoreError};

use super::{Org, Sub, World};
use crate::Bug;

/// The chance (per mille) that an append meets a commit fault.
const COMMIT_FAULT_PER_MILLE: u64 = 150;
/// Acknowledged requests kept to retry again (duplicates).
const DONE_KEPT_MAX: usize = 16;

/// One caller's request: commands appended together (all or none), each
/// with its idempotency key.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// What it is, for the trace.
    pub name: String,
    pub keys: Vec<String>,
    pub commands: Vec<Command>,
    /// What the callers learn once it is acknowledged.
    pub effect: Effect,
}

#[derive(Debug, Clone)]
pub(crate) enum Effect {
    None,
    Organization(OrganizationId),
    Subscription {
        organization: OrganizationId,
        id: SubscriptionId,
        license: LicenseId,
        start: chrono::NaiveDate,
    },
    Cancelled(SubscriptionId),
    Ended(SubscriptionId),
    /// Upgraded, with a new license key.
    Upgraded {
        id: SubscriptionId,
        license: LicenseId,
    },
}

/// What is known of an idempotency key's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// Tried, and not committed (the commit failed before writing).
    NotCommitted,
    /// Committed, and its caller was told an error (outcome unknown).
    Unseen,
    /// Committed and answered: where it landed.
    Acknowledged(Appended),
}

type Answer = Result<Result<Vec<Appended>, Rejection>, StoreError>;

impl World {
    /// Appends each request (one group-committed batch when several), a
    /// commit fault armed now and then, and checks every answer.
    pub(crate) async fn submit(&mut self, requests: Vec<Request>) -> Result<(), String> {
        // An actor that decides again (the billing run, the outbox) makes
        // a new request under the same key: it replaces the pending one.
        let keys: std::collections::BTreeSet<&String> = requests.iter().flat_map(|r| &r.keys).collect();
        self.model.pending.retain(|pending| !pending.keys.iter().any(|key| keys.contains(key)));
        let fault = self.rng.chance(COMMIT_FAULT_PER_MILLE).then(|| {
            let fault = if self.rng.chance(500) { CommitFault::Fail } else { CommitFault::Unknown };
            self.faults.arm(fault);
            fault
        });
        let log = self.log().clone();
        let answers = futures::future::join_all(requests.iter().map(|request| append(&log, &request.commands))).await;
        // A fault that no commit took (every command refused up front) is
        // not one.
        let taken = fault.filter(|_| self.faults.disarm().is_none());
        for (request, answer) in requests.into_iter().zip(answers) {
            match answer {
                Err(error) => self.failed(request, taken, &error).await?,
                Ok(Err(rejection)) => self.rejected(&request, &rejection)?,
                Ok(Ok(appended)) => self.acknowledged(request, &appended).await?,
            }
        }
        self.model.busy =
            self.model.pending.iter().flat_map(|r| r.commands.iter().map(|c| c.stream_id.clone())).collect();
        Ok(())
    }

    /// Submits one request; answers whether it stands acknowledged.
    pub(crate) async fn submit_one(&mut self, request: Request) -> Result<bool, String> {
        let keys = request.keys.clone();
        self.submit(vec![request]).await?;
        Ok(keys.iter().all(|key| matches!(self.model.keys.get(key), Some(KeyState::Acknowledged(_)))))
    }

    /// Retries a request whose outcome its caller did not learn, or one
    /// acknowledged already (a duplicate).
    pub(crate) async fn retry(&mut self) -> Result<(), String> {
        let pending = !self.model.pending.is_empty() && (self.model.done.is_empty() || self.rng.chance(700));
        let request = if pending {
            let index = self.rng.below(self.model.pending.len() as u64) as usize;
            let mut request = self.model.pending.remove(index);
            if self.config.bug == Some(Bug::RetryWithoutKey) {
                request.commands.iter_mut().for_each(|command| command.idempotency = None);
            }
            request
        } else if let Some(count) = std::num::NonZeroUsize::new(self.model.done.len()) {
            self.model.done[self.rng.below(count.get() as u64) as usize].clone()
        } else {
            self.trace("retry nothing");
            return Ok(());
        };
        self.counts.retries += 1;
        self.trace(&format!("retry {}", request.name));
        self.submit(vec![request]).await
    }

    /// An append that failed: its keys are marked committed or not, as the
    /// log (the simulation sees it, the caller does not) holds them.
    async fn failed(&mut self, request: Request, taken: Option<CommitFault>, error: &StoreError) -> Result<(), String> {
        let Some(fault) = taken else {
            return Err(format!("{}: the log failed without an injected fault: {error}", request.name));
        };
        self.counts.commit_faults += 1;
        for key in &request.keys {
            if self.model.keys.get(key).is_some_and(|state| *state != KeyState::NotCommitted) {
                continue;
            }
            // A command the commit refused (say, a wrong revision) wrote
            // nothing, though the commit went through.
            let held = self.log().find_idempotency_key(key).await.map_err(|e| e.to_string())?.is_some();
            if held && fault == CommitFault::Fail {
                return Err(format!("{key}: a commit that failed before writing wrote it"));
            }
            self.model.keys.insert(key.clone(), if held { KeyState::Unseen } else { KeyState::NotCommitted });
        }
        self.trace(&format!("error {} {fault:?}", request.name));
        self.model.pending.push(request);
        Ok(())
    }

    fn rejected(&mut self, request: &Request, rejection: &Rejection) -> Result<(), String> {
        for key in &request.keys {
            if matches!(self.model.keys.get(key), Some(KeyState::Unseen | KeyState::Acknowledged(_))) {
                return Err(format!("{key} was committed, and its retry was refused: {rejection}"));
            }
        }
        let kind = match rejection {
            Rejection::WrongRevision { .. } => "revision",
            Rejection::IdempotencyConflict { .. } => "conflict",
            Rejection::Invalid(_) => "invalid",
        };
        self.trace(&format!("refused {} {kind}", request.name));
        Ok(())
    }

    async fn acknowledged(&mut self, request: Request, appended: &[Appended]) -> Result<(), String> {
        let mut first_answer = false;
        for ((key, command), answer) in request.keys.iter().zip(&request.commands).zip(appended) {
            first_answer |= self.check_answer(key, answer)?;
            self.check_landed(key, command, answer).await?;
            let first = Appended { replayed: false, ..*answer };
            self.model.keys.insert(key.clone(), KeyState::Acknowledged(first));
            self.model.revisions.insert(command.stream_id.clone(), answer.stream_revision);
        }
        let (first, last) = (appended.first().map(|a| a.first_sequence), appended.last().map(|a| a.last_sequence));
        self.trace(&format!("ack {} {first:?}-{last:?}", request.name));
        if first_answer {
            self.learn(&request.effect);
            self.model.done.push(request);
            if self.model.done.len() > DONE_KEPT_MAX {
                self.model.done.remove(0);
            }
        }
        Ok(())
    }

    /// The answer agrees with what is known of the key; true when it is
    /// the first answer the callers learn.
    fn check_answer(&self, key: &str, answer: &Appended) -> Result<bool, String> {
        match self.model.keys.get(key) {
            Some(KeyState::Acknowledged(first)) => {
                let same = answer.replayed
                    && (answer.first_sequence, answer.last_sequence, answer.stream_revision)
                        == (first.first_sequence, first.last_sequence, first.stream_revision);
                if !same {
                    return Err(format!("the retry of {key} was answered {answer:?}; the first answer was {first:?}"));
                }
                Ok(false)
            }
            Some(KeyState::Unseen) if !answer.replayed => Err(format!(
                "{key} was committed (its caller saw an error), and its retry was appended again at sequence {}",
                answer.first_sequence
            )),
            Some(KeyState::Unseen) => Ok(true),
            _ if answer.replayed => Err(format!("{key} was never committed, and its retry says it replays {answer:?}")),
            _ => Ok(true),
        }
    }

    /// The log holds the command where the answer says, under its key.
    async fn check_landed(&self, key: &str, command: &Command, answer: &Appended) -> Result<(), String> {
        let range = answer.first_sequence..=answer.last_sequence;
        let records = self.log().read_page(range.clone(), command.events.len()).await.map_err(|e| e.to_string())?;
        let landed = records.len() == command.events.len()
            && records.iter().zip(&command.events).all(|(record, event)| {
                // A retry built anew (the outbox deciding a notice again)
                // carries new event ids and the same payloads.
                record.header.idempotency_key.as_deref() == Some(key)
                    && record.header.stream_id == command.stream_id
                    && record.payload.as_deref() == Some(event.payload.as_slice())
                    && (answer.replayed || record.header.event_id == event.event_id)
            });
        if landed {
            Ok(())
        } else {
            Err(format!("{key} was answered {range:?}, and the log holds something else there"))
        }
    }

    /// What the callers learn from a first acknowledgement.
    fn learn(&mut self, effect: &Effect) {
        let model = &mut self.model;
        match effect {
            Effect::None => {}
            Effect::Organization(id) => {
                model.orgs.insert(*id, Org { live: None });
            }
            Effect::Subscription { organization, id, license, start } => {
                if let Some(org) = model.orgs.get_mut(organization) {
                    org.live = Some(*id);
                }
                let sub = Sub {
                    organization: *organization,
                    license: *license,
                    start: *start,
                    cancelled: false,
                    ended: false,
                };
                model.subs.insert(*id, sub);
            }
            Effect::Cancelled(id) => {
                if let Some(sub) = model.subs.get_mut(id) {
                    sub.cancelled = true;
                }
            }
            Effect::Upgraded { id, license } => {
                if let Some(sub) = model.subs.get_mut(id) {
                    sub.license = *license;
                }
            }
            Effect::Ended(id) => {
                let Some(sub) = model.subs.get_mut(id) else { return };
                sub.ended = true;
                if let Some(org) = model.orgs.get_mut(&sub.organization).filter(|org| org.live == Some(*id)) {
                    org.live = None;
                }
            }
        }
    }
}

/// One request's append: alone, or all its commands atomically.
async fn append(log: &store::EventLog, commands: &[Command]) -> Answer {
    if let [command] = commands {
        return log.append_one(command.clone()).await.map(|answer| answer.map(|appended| vec![appended]));
    }
    log.append_atomic(commands.to_vec()).await
}
