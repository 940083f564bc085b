//! Projections wrapped for the simulation: a failure in the middle of a
//! batch (a fault: the runner stops, and the next one applies it all), and
//! a skipped record (a planted bug, [`crate::Bug::SkipAuditRecord`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use domain::event::LedgerEvent;
use domain::record::Record;
use projections::db::{ApplyError, Changes, Load, Projection, Table};

pub(crate) struct Hooked {
    pub inner: Box<dyn Projection>,
    /// Fails once at this sequence (0: never), set between steps on the
    /// runner the world keeps; shared by the hooked projections, and taken
    /// by the first that meets it.
    pub fail_at: Option<Arc<AtomicU64>>,
    /// Skips every record whose sequence is 3 modulo 4 (a bug).
    pub skip: bool,
}

impl Projection for Hooked {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn tables(&self) -> &'static [Table] {
        self.inner.tables()
    }

    fn load(&mut self, load: &Load<'_>) -> Result<(), ApplyError> {
        self.inner.load(load)
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        let sequence = record.header.sequence;
        let taken =
            |at: &Arc<AtomicU64>| at.compare_exchange(sequence, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok();
        if self.fail_at.as_ref().is_some_and(taken) {
            return Err("injected fault: the projection failed in the middle of a batch".into());
        }
        if self.skip && record.header.sequence % 4 == 3 {
            return Ok(());
        }
        self.inner.apply(changes, record, event)
    }
}
