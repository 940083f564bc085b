//! Read-your-writes by default (issue 13, item 3): what this node last
//! acknowledged to each credential, and the bounded wait before reading.
//!
//! A command answers as soon as its append is durable; the read models
//! follow asynchronously. So that a caller still sees its own writes
//! without `?minSequence=`, this node remembers, per credential, the last
//! sequence it acknowledged to it ([`Acknowledged::record`]), and before
//! anything is read on a credential's behalf, [`catch_up`] waits (at most
//! [`READ_YOUR_WRITES_WAIT`](crate::command::READ_YOUR_WRITES_WAIT)) until the read models include
//! `max(minSequence, that sequence)`. A credential's floor moves with
//! what was acknowledged to it, with commands that change that very
//! credential (a token's issue or revocation, a license's revocation:
//! [`named_by`]; a revoked credential is refused on this node from the
//! moment the revocation was answered), and with every *command* this node
//! answered ([`Acknowledged::record_command`]): commands are few, and the
//! API's tests read one credential's commands with another without
//! `minSequence` (an operator's cancellation, read by the admin). Nobody
//! waits for another key's validations or usage reports, the volume; a
//! plain validation does not even raise its own key's floor (nothing reads
//! it on the key's behalf, and the key's next validation would miss the
//! validation cache for it), only one that activates a deployment does.
//!
//! **Bounded memory.** At most [`ACKNOWLEDGED_CREDENTIALS_MAX`] entries;
//! past that the credential acknowledged longest ago is dropped, and its
//! sequence raises the *evicted high-water mark*. A credential without an
//! entry (one that never wrote on this node, or one dropped) waits for
//! that mark: an evicted credential's own sequence is at most the mark, so
//! the wait is never too short (never wrong), and since the oldest entry
//! goes first the mark is old and almost always applied already (no
//! wait). The alternative, waiting for the log's head, would make every
//! new caller wait for everyone's writes.
//!
//! Where the wait happens, once for every path: [`crate::caller::authenticate`]
//! (every HTTP request with a bearer credential, query or command, before
//! anything is read: a route cannot serve a caller without authenticating
//! it), [`crate::command::execute`] (commands called in process, as the
//! CLI and tests do, before deciding), and a license key's validation and
//! usage report once the key is known.

use std::sync::Mutex;

use domain::event::LedgerEvent;
use domain::license::LicenseEvent;
use domain::organization::OrganizationEvent;
use domain::record::Record;
use domain::{LicenseId, TokenId};
use hashlink::LinkedHashMap;
use tokio::time::Instant;

use crate::Ledger;
use crate::command::READ_YOUR_WRITES_WAIT;
use crate::error::Error;

/// Credentials whose last acknowledged sequence this node remembers.
/// About 50 bytes an entry: some 5 MB at the bound.
pub const ACKNOWLEDGED_CREDENTIALS_MAX: usize = 100_000;

/// Who a sequence was acknowledged to: the identity of a credential, not
/// its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    Operator,
    Auditor,
    /// An organization's API token.
    Token(TokenId),
    /// An organization's user signed in to the portal.
    User(domain::UserId),
    /// A license key (validations, usage reports), by the license it names:
    /// one key per license, and revocations name the license.
    License(LicenseId),
    /// A vendor's staff user signed in to the console.
    Staff(domain::staff::StaffId),
    /// A vendor's service token.
    Service(domain::staff::ServiceTokenId),
}

/// The last sequence acknowledged to each credential, bounded.
pub struct Acknowledged {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    /// Oldest acknowledgement first.
    last: LinkedHashMap<Credential, u64>,
    /// The highest sequence of an entry dropped to stay within the bound.
    evicted: u64,
    /// The highest sequence of a command (`command::execute`) this node
    /// acknowledged to anyone: see [`Acknowledged::record_command`].
    commands: u64,
}

impl Default for Acknowledged {
    fn default() -> Self {
        Self::with_capacity(ACKNOWLEDGED_CREDENTIALS_MAX)
    }
}

impl Acknowledged {
    /// A map of at most `capacity` entries (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let inner = Inner { last: LinkedHashMap::new(), evicted: 0, commands: 0 };
        Self { inner: Mutex::new(inner), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain numbers: a panic elsewhere leaves nothing half-written.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers that `sequence` was acknowledged to `credential` (keeping
    /// the higher, as concurrent commands may answer out of order), as its
    /// newest entry; drops the oldest entry past the bound.
    pub fn record(&self, credential: Credential, sequence: u64) {
        let mut inner = self.lock();
        let sequence = inner.last.remove(&credential).map_or(sequence, |known| known.max(sequence));
        inner.last.insert(credential, sequence);
        while inner.last.len() > self.capacity {
            let Some((_, dropped)) = inner.last.pop_front() else { break };
            inner.evicted = inner.evicted.max(dropped);
        }
    }

    /// Remembers a command's sequence as seen by every credential on this
    /// node. Commands (organizations, tokens, subscriptions, licenses,
    /// billing) are few and change what other credentials read: an
    /// operator's cancellation is read by the organization's admin, a
    /// revocation by the key's next validation, and the API's black-box
    /// tests read another credential's writes without `minSequence`. The
    /// volume writes, validations and usage reports, stay per credential:
    /// nobody waits for another key's.
    pub fn record_command(&self, sequence: u64) {
        let mut inner = self.lock();
        inner.commands = inner.commands.max(sequence);
    }

    /// The sequence a read on behalf of `credential` must wait for: its own
    /// last acknowledged one, or, without an entry, the evicted high-water
    /// mark (0 while nothing was dropped); and at least the last command
    /// acknowledged here ([`Acknowledged::record_command`]). `None` (the
    /// server's own jobs) waits for nothing.
    pub fn floor(&self, credential: Option<Credential>) -> u64 {
        let Some(credential) = credential else { return 0 };
        let inner = self.lock();
        inner.last.get(&credential).copied().unwrap_or(inner.evicted).max(inner.commands)
    }

    /// Entries held (`/metrics`: `ledger_acknowledged_credentials`).
    pub fn len(&self) -> usize {
        self.lock().last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest sequence dropped to stay within the bound.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }
}

/// The credentials a record changes, beyond the one that wrote it: a
/// token's issue and revocation, and every change of a license (revoked,
/// superseded, a deployment released), so that the token or key itself is
/// judged on this node by state that includes the change.
pub fn named_by(record: &Record, event: &LedgerEvent) -> Option<Credential> {
    match event {
        LedgerEvent::Organization(OrganizationEvent::ApiTokenIssued(issued)) => {
            Some(Credential::Token(issued.token_id))
        }
        LedgerEvent::Organization(OrganizationEvent::ApiTokenRevoked(revoked)) => {
            Some(Credential::Token(revoked.token_id))
        }
        LedgerEvent::Staff(event) => Some(staff_named_by(event)),
        LedgerEvent::License(LicenseEvent::LicenseIssued(_)) => None,
        LedgerEvent::License(_) => {
            let stream = &record.header.stream_id;
            let id = stream.as_str().strip_prefix("license/")?;
            uuid::Uuid::parse_str(id).ok().map(|id| Credential::License(LicenseId(id)))
        }
        _ => None,
    }
}

/// The staff user or service token a staff event changes: its next
/// request reads state that includes the change (a revoked token, a
/// disabled user is refused from the moment the change was answered).
fn staff_named_by(event: &domain::staff::StaffEvent) -> Credential {
    use domain::staff::StaffEvent as E;
    match event {
        E::StaffUserAdded(e) => Credential::Staff(e.staff_id),
        E::StaffRoleChanged(e) => Credential::Staff(e.staff_id),
        E::StaffUserDisabled(e) => Credential::Staff(e.staff_id),
        E::ServiceTokenIssued(e) => Credential::Service(e.token_id),
        E::ServiceTokenRevoked(e) => Credential::Service(e.token_id),
        E::ServiceTokenRehashed(e) => Credential::Service(e.token_id),
    }
}

/// Waits, until `deadline`, for the read models to include `sequence`;
/// [`Error::ProjectionLagging`] past it. No wait when they already do.
pub async fn wait_until(ledger: &Ledger, sequence: u64, deadline: Instant) -> Result<(), Error> {
    if ledger.models.applied() < sequence {
        let left = deadline.saturating_duration_since(Instant::now());
        ledger.models.wait_for(sequence, left).await.map_err(|_| Error::ProjectionLagging(sequence))?;
    }
    Ok(())
}

/// Before reading on `credential`'s behalf: waits (at most
/// [`READ_YOUR_WRITES_WAIT`]) until the read models include
/// `max(min_sequence, the credential's floor)`.
pub async fn catch_up(ledger: &Ledger, credential: Option<Credential>, min_sequence: Option<u64>) -> Result<(), Error> {
    let target = ledger.acknowledged.floor(credential).max(min_sequence.unwrap_or(0));
    wait_until(ledger, target, Instant::now() + READ_YOUR_WRITES_WAIT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u128) -> Credential {
        Credential::Token(TokenId(uuid::Uuid::from_u128(n)))
    }

    #[test]
    fn a_credential_waits_for_its_own_writes_only() {
        let acknowledged = Acknowledged::default();
        acknowledged.record(token(1), 10);
        acknowledged.record(Credential::Operator, 12);
        assert_eq!(acknowledged.floor(Some(token(1))), 10);
        assert_eq!(acknowledged.floor(Some(Credential::Operator)), 12);
        assert_eq!(acknowledged.floor(Some(token(2))), 0, "another caller's writes are not waited for");
        assert_eq!(acknowledged.floor(Some(Credential::Auditor)), 0);
        assert_eq!(acknowledged.floor(None), 0, "the server's own jobs wait for nothing");
        // Out of order answers keep the higher sequence.
        acknowledged.record(token(1), 7);
        assert_eq!(acknowledged.floor(Some(token(1))), 10);
    }

    #[test]
    fn past_the_bound_the_oldest_goes_and_raises_the_mark() {
        let acknowledged = Acknowledged::with_capacity(3);
        for (n, sequence) in [(1, 5), (2, 9), (3, 7)] {
            acknowledged.record(token(n), sequence);
        }
        // Token 1 acknowledged again: now the newest, so token 2 is the oldest.
        acknowledged.record(token(1), 11);
        acknowledged.record(token(4), 12);
        assert_eq!(acknowledged.len(), 3);
        assert_eq!(acknowledged.evicted(), 9, "token 2 was dropped");
        assert_eq!(acknowledged.floor(Some(token(2))), 9, "a dropped credential waits for the mark: never too short");
        assert_eq!(acknowledged.floor(Some(token(99))), 9, "as does one never seen");
        assert_eq!(acknowledged.floor(Some(token(1))), 11);
        assert_eq!(acknowledged.floor(Some(token(3))), 7, "a kept entry keeps its own, lower floor");
        acknowledged.record(token(5), 13);
        assert_eq!(
            (acknowledged.evicted(), acknowledged.floor(Some(token(3)))),
            (9, 9),
            "token 3 (7) went; the mark stays 9"
        );
    }

    #[test]
    fn a_command_is_seen_by_every_credential_a_validation_only_by_its_key() {
        let acknowledged = Acknowledged::default();
        let key = Credential::License(LicenseId(uuid::Uuid::from_u128(7)));
        acknowledged.record(key, 40);
        assert_eq!(acknowledged.floor(Some(Credential::Auditor)), 0, "another key's validation is not waited for");
        acknowledged.record_command(30);
        assert_eq!(acknowledged.floor(Some(Credential::Auditor)), 30);
        assert_eq!(acknowledged.floor(Some(key)), 40);
        assert_eq!(acknowledged.floor(None), 0);
    }

    #[test]
    fn memory_stays_within_the_bound() {
        let acknowledged = Acknowledged::with_capacity(1_000);
        for n in 0..10_000u64 {
            acknowledged.record(token(u128::from(n)), n + 1);
        }
        assert_eq!(acknowledged.len(), 1_000);
        assert_eq!(acknowledged.evicted(), 9_000);
        assert_eq!(acknowledged.floor(Some(token(9_999))), 10_000);
    }
}
