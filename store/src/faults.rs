//! Commit faults for the deterministic simulation (`sim/`, feature `sim`,
//! which only `ledger-sim` enables; a workspace build that unifies it into
//! the server leaves it unarmed: no log but the simulation's has faults).
//!
//! A simulation arms one fault at a time; the SQLite writer takes it at its
//! next commit. [`CommitFault::Fail`] rolls the transaction back before it
//! writes (a lost connection, a full disk): the writer answers an error, or
//! retries a batch of several requests one by one as it does after any
//! failure before `COMMIT`. [`CommitFault::Unknown`] commits and then
//! answers an error, as when the connection is lost during `COMMIT`: the
//! caller cannot tell, and only its retry with the same idempotency key
//! learns the first outcome.

use std::sync::Mutex;

use domain::Timestamp;
use rusqlite::Connection;

use crate::StoreError;
use crate::writer::{CommitError, Outcomes, Slice};

/// One injected commit fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFault {
    /// Nothing is written; the caller sees an error.
    Fail,
    /// Everything is written; the caller sees an error.
    Unknown,
}

/// The fault the writer's next commit takes, if one is armed; and, when
/// seeded, the salts its records get.
#[derive(Debug, Default)]
pub struct CommitFaults {
    next: Mutex<Option<CommitFault>>,
    /// The seed and the count of salts drawn: a seed's run writes the same
    /// records, hashes included, every time (a random salt would make each
    /// run's chain, and so its trace, differ).
    salts: Mutex<Option<(u64, u64)>>,
}

impl CommitFaults {
    /// Hooks whose salts follow from `seed`: the n-th salt is the BLAKE3
    /// hash of the seed and n, under a context of its own. Only the
    /// simulation's logs are opened with these.
    pub fn seeded(seed: u64) -> Self {
        Self { next: Mutex::default(), salts: Mutex::new(Some((seed, 0))) }
    }

    /// The next `events` salts of a seeded writer; `None` when unseeded.
    pub(crate) fn salts(&self, events: usize) -> Option<Vec<[u8; domain::record::SALT_BYTES]>> {
        let mut state = self.salts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (seed, drawn) = state.as_mut()?;
        let salts = (0..events)
            .map(|_| {
                *drawn += 1;
                let mut hasher = blake3::Hasher::new_derive_key("ledger 2026-12-01 simulation salt");
                hasher.update(&seed.to_le_bytes());
                hasher.update(&drawn.to_le_bytes());
                *hasher.finalize().as_bytes()
            })
            .collect();
        Some(salts)
    }

    /// Arms `fault` for the next commit (replacing one not yet taken).
    pub fn arm(&self, fault: CommitFault) {
        *self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fault);
    }

    /// Disarms a fault no commit has taken; answers it.
    pub fn disarm(&self) -> Option<CommitFault> {
        self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// Commits as [`crate::sqlite`] does, with the armed fault, if any.
pub(crate) fn commit(
    faults: Option<&CommitFaults>,
    connection: &mut Connection,
    slice: Slice<'_>,
    now: Timestamp,
) -> Outcomes {
    match faults.and_then(CommitFaults::disarm) {
        None => crate::sqlite::commit(connection, slice, now),
        Some(CommitFault::Fail) => {
            Err(CommitError { error: StoreError::Io("injected fault: the commit failed".into()), at_commit: false })
        }
        Some(CommitFault::Unknown) => {
            crate::sqlite::commit(connection, slice, now)?;
            Err(CommitError {
                error: StoreError::Io("injected fault: the commit's outcome is unknown".into()),
                at_commit: true,
            })
        }
    }
}
