//! The projections runner's step and the invariants checked after every
//! step.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::event::LedgerEvent;
use domain::notification::NotificationEvent;
use domain::record::Record;
use projections::db::{Projection, ReadModelDb, Rebuild, Runner, RunnerError, compare};
use projections::models;

use super::hooks::Hooked;
use super::{KeyState, World};
use crate::Bug;

/// The chance (per mille) that a runner step meets a projection failing
/// in the middle of its batch.
const APPLY_FAULT_PER_MILLE: u64 = 200;
/// Records read per page by the checks and the rebuild.
const PAGE_RECORDS: usize = 512;
/// The largest batch a runner step commits.
const FLUSH_RECORDS_MAX: u64 = 64;

fn err(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// The projections' names, listed once per process.
fn names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| models::all(super::catalog().clone()).iter().map(|p| p.name()).collect())
}

/// The simulation's own rebuild, following the log: its read models and
/// the sequence it applied through.
pub(crate) struct Shadow {
    db: ReadModelDb,
    rebuild: Rebuild,
    at: u64,
}

impl super::Seen {
    /// Whether every read-model table holds the same rows live and in the
    /// shadow rebuild, asked of SQLite itself (`EXCEPT` both ways, on one
    /// connection kept open with the rebuild attached): a comparison in
    /// Rust, table by table through the scans, made much of a step's time.
    fn same_tables(&mut self) -> Result<bool, String> {
        if self.attached.is_none() {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let live = self.dir.join(projections::db::READMODELS_FILE);
            let connection = rusqlite::Connection::open_with_flags(live, flags).map_err(err)?;
            let rebuilt = self.dir.join(SHADOW_FILE);
            connection.execute("ATTACH DATABASE ?1 AS rebuilt", [rebuilt.to_string_lossy()]).map_err(err)?;
            self.attached = Some(connection);
        }
        let connection = self.attached.as_ref().expect("attached above");
        let read = || -> rusqlite::Result<bool> {
            connection.execute_batch("BEGIN")?;
            for table in models::tables() {
                let name = table.name;
                let sql = format!(
                    "SELECT EXISTS (SELECT * FROM main.{name} EXCEPT SELECT * FROM rebuilt.{name}) \
                     OR EXISTS (SELECT * FROM rebuilt.{name} EXCEPT SELECT * FROM main.{name})"
                );
                if connection.prepare_cached(&sql)?.query_row([], |row| row.get::<_, bool>(0))? {
                    connection.execute_batch("COMMIT")?;
                    return Ok(false);
                }
            }
            connection.execute_batch("COMMIT")?;
            Ok(true)
        };
        read().map_err(|e| format!("comparing the read models: {e}"))
    }
}

impl super::Seen {
    /// Every invoice's payment status in the live read models, by its
    /// subscription and month (`YYYY-MM-DD`), read on the checker's
    /// connection (opened by [`super::Seen::same_tables`]).
    pub(crate) fn invoice_statuses(&mut self) -> Result<BTreeMap<(uuid::Uuid, String), String>, String> {
        let connection = self.attached.as_ref().ok_or("the checker's connection is not open")?;
        let read = || -> rusqlite::Result<BTreeMap<(uuid::Uuid, String), String>> {
            let sql =
                format!("SELECT subscription_id, period, status FROM main.{}", models::payments::INVOICE_PAYMENTS.name);
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement.query_map([], |row| {
                let id: Vec<u8> = row.get(0)?;
                let id = uuid::Uuid::from_slice(&id).unwrap_or_default();
                Ok(((id, row.get(1)?), row.get(2)?))
            })?;
            rows.collect()
        };
        read().map_err(|e| format!("reading the invoices' payment status: {e}"))
    }
}

/// The shadow rebuild's file in the run's directory.
const SHADOW_FILE: &str = "rebuild.sqlite";

/// Applies the log to the shadow rebuild up to `applied`, and commits.
async fn follow(log: &store::EventLog, shadow: &mut Shadow, applied: u64) -> Result<(), String> {
    let failed = |e: RunnerError| format!("the rebuild failed: {e}");
    while shadow.at < applied {
        let page = log.read_page(shadow.at + 1..=applied, PAGE_RECORDS).await.map_err(err)?;
        let Some(last) = page.last().map(|record| record.header.sequence) else {
            return Err(format!("the log ends before sequence {applied}"));
        };
        shadow.rebuild.apply(Arc::from(page)).await.map_err(failed)?;
        shadow.at = last;
    }
    shadow.rebuild.commit_applied().await.map_err(failed)
}

impl World {
    /// The live runner's projections: the models, the audit one with the
    /// planted bug, if any, and the world's failure cell.
    fn projections(&self) -> Vec<Box<dyn Projection>> {
        let skip = self.config.bug == Some(Bug::SkipAuditRecord);
        (models::all(super::catalog().clone()).into_iter())
            .map(|inner| {
                let audit = inner.name().starts_with("audit");
                let fail_at = audit.then(|| self.fail_at.clone());
                Box::new(Hooked { fail_at, skip: skip && audit, inner }) as Box<dyn Projection>
            })
            .collect()
    }

    /// The node's runner, one for the node's life as in the server (made
    /// at the first step that needs it, gone in a crash), taking batches of
    /// at most `flush` records from now on.
    fn take_runner(&mut self, flush: u64) -> Result<Runner, String> {
        let kept = self.node.as_mut().expect("the node is open between steps").runner.take();
        let runner = match kept {
            Some(runner) => runner,
            None => Runner::new(self.log().clone(), self.db().clone(), self.projections()).map_err(err)?,
        };
        Ok(runner.with_flush_records_max(flush as usize))
    }

    /// Runs the node's runner up to the log's head; answers what its
    /// `catch_up` answered, and keeps the runner (after an error it
    /// reloads from the checkpoints, as the server's does).
    async fn runner_catch_up(&mut self) -> Result<Result<u64, RunnerError>, String> {
        let flush = 1 + self.rng.below(FLUSH_RECORDS_MAX);
        let mut runner = self.take_runner(flush)?;
        let caught_up = runner.catch_up().await;
        self.node.as_mut().expect("the node is open between steps").runner = Some(runner);
        Ok(caught_up)
    }

    /// Applies the log up to its head; answers the sequence applied.
    pub(crate) async fn catch_up(&mut self) -> Result<u64, String> {
        self.runner_catch_up().await?.map_err(|e| format!("the runner failed: {e}"))
    }

    /// A runner step; now and then a projection fails in the middle of its
    /// batch, and the same runner, reloaded from its checkpoints as after
    /// any error, applies it all.
    pub(crate) async fn run_projections(&mut self) -> Result<(), String> {
        let head = self.log().head().await.map_err(err)?.sequence;
        let applied = self.db().applied(names()).await.map_err(err)?;
        if head > applied && self.rng.chance(APPLY_FAULT_PER_MILLE) {
            let fail_at = applied + 1 + self.rng.below(head - applied);
            self.fail_at.store(fail_at, std::sync::atomic::Ordering::Relaxed);
            let failed = self.runner_catch_up().await?;
            let taken = self.fail_at.swap(0, std::sync::atomic::Ordering::Relaxed) == 0;
            match failed {
                Err(RunnerError::Apply { sequence, .. }) if sequence == fail_at && taken => {}
                other => return Err(format!("a projection failing at {fail_at} stopped the runner with {other:?}")),
            }
            self.trace(&format!("runner failed at {fail_at}"));
        }
        let at = self.catch_up().await?;
        if at != head {
            return Err(format!("the runner caught up to {at}, the head is {head}"));
        }
        self.trace(&format!("runner {at}"));
        Ok(())
    }

    /// The invariants, after every step: the new records' chain verifies,
    /// sequences and stream revisions have no gaps, issued invoices
    /// re-derive, every e-mail recorded as sent was accepted by the peer;
    /// and the read models equal a rebuild from the log when they moved.
    pub(crate) async fn check(&mut self) -> Result<(), String> {
        let head = self.log().head().await.map_err(err)?;
        let from = self.seen.scanned + 1;
        if head.sequence >= from {
            let report = self.log().verify(from..=head.sequence).await.map_err(err)?;
            if let Some(failure) = report.failure {
                return Err(format!("the chain does not verify: {failure}"));
            }
        }
        while self.seen.scanned < head.sequence {
            let range = self.seen.scanned + 1..=head.sequence;
            let page = self.log().read_page(range, PAGE_RECORDS).await.map_err(err)?;
            if page.is_empty() {
                return Err(format!("the head is {}, and nothing follows {}", head.sequence, self.seen.scanned));
            }
            page.iter().try_for_each(|record| self.scan(record))?;
        }
        let applied = self.db().applied(names()).await.map_err(err)?;
        if applied > head.sequence {
            return Err(format!("the read models are at {applied}, past the head {}", head.sequence));
        }
        if self.seen.compared != Some(applied) {
            self.compare_rebuild(applied).await?;
            self.check_payments(applied)?;
            self.seen.compared = Some(applied);
        }
        self.trace(&format!("head {} {} applied {applied}", head.sequence, head.chain_hash));
        Ok(())
    }

    fn scan(&mut self, record: &Record) -> Result<(), String> {
        let header = &record.header;
        if header.sequence != self.seen.scanned + 1 {
            return Err(format!("the log skips from {} to {}", self.seen.scanned, header.sequence));
        }
        let last = self.seen.streams.entry(header.stream_id.clone()).or_insert(0);
        if header.stream_revision != *last + 1 {
            return Err(format!(
                "stream {} goes from revision {last} to {} at sequence {}",
                header.stream_id, header.stream_revision, header.sequence
            ));
        }
        *last = header.stream_revision;
        self.seen.scanned = header.sequence;
        let payload = record.event_bytes().ok_or("a payload is missing")?;
        let event = LedgerEvent::decode(header, payload).map_err(|e| format!("record {}: {e}", header.sequence))?;
        let Some(event) = event else { return Err(format!("record {} is of no known type", header.sequence)) };
        self.seen
            .invoices
            .apply(header, &event)
            .map_err(|mismatch| format!("an invoice does not re-derive: {mismatch}"))?;
        if let LedgerEvent::Stripe(stripe) = &event {
            self.check_stripe(header.sequence, stripe)?;
        }
        if let LedgerEvent::Subscription(subscription) = &event {
            self.check_payment(header.sequence, subscription)?;
            self.seen.check_term(header, subscription)?;
        }
        if let LedgerEvent::Notification(NotificationEvent::NotificationSent(sent)) = &event {
            if !self.peer.accepted.contains(&sent.message_id) {
                return Err(format!(
                    "record {} says {} was sent; the peer never accepted it",
                    header.sequence, sent.message_id
                ));
            }
            self.counts.notices += 1;
        }
        Ok(())
    }

    /// The read models as they are equal a rebuild from the log up to the
    /// sequence they include, table by table: the simulation's own
    /// rebuild, which applied every record from sequence 1 in order, with
    /// no fault, and follows the log as it grows (a rebuild from scratch
    /// each time made most of a seed's time; [`World::full_rebuild`]
    /// makes one at the end of every run).
    async fn compare_rebuild(&mut self, applied: u64) -> Result<(), String> {
        if self.seen.shadow.is_none() {
            let path = self.dir.path().join(SHADOW_FILE);
            let db = self.scratch(&path).await?;
            let all = models::all(super::catalog().clone());
            let rebuild = Rebuild::new(db.clone(), all, u64::MAX).await.map_err(err)?;
            self.seen.shadow = Some(Shadow { db, rebuild, at: 0 });
        }
        let log = self.log().clone();
        let shadow = self.seen.shadow.as_mut().expect("made above");
        if applied < shadow.at {
            return Err(format!("the read models went back from sequence {} to {applied}", shadow.at));
        }
        if applied > shadow.at {
            follow(&log, shadow, applied).await?;
        }
        let shadow_db = shadow.db.clone();
        self.seen.rebuilds += 1;
        if self.seen.same_tables()? {
            return Ok(());
        }
        // They differ: the row-by-row comparison names the first row.
        self.compare_with(&shadow_db, applied).await?;
        Err(format!("the read models at sequence {applied} differ from a rebuild (SQLite's EXCEPT says so)"))
    }

    /// The live read models against `other`, both read in one snapshot.
    async fn compare_with(&self, other: &ReadModelDb, applied: u64) -> Result<(), String> {
        let (live, rebuilt) = (self.db().snapshot().await.map_err(err)?, other.snapshot().await.map_err(err)?);
        match compare(&live, &rebuilt, &models::tables()).await.map_err(err)? {
            Some(difference) => {
                Err(format!("the read models at sequence {applied} differ from a rebuild: {difference}"))
            }
            None => Ok(()),
        }
    }

    /// A rebuild from scratch into a new file, compared with the read
    /// models (at the end of a run).
    pub(crate) async fn full_rebuild(&mut self) -> Result<(), String> {
        let applied = self.db().applied(names()).await.map_err(err)?;
        let path = self.dir.path().join("rebuild-full.sqlite");
        let scratch = self.scratch(&path).await?;
        let all = models::all(super::catalog().clone());
        let mut rebuild = Rebuild::new(scratch.clone(), all, applied).await.map_err(err)?;
        let mut next = 1;
        while next <= applied {
            let page = self.log().read_page(next..=applied, PAGE_RECORDS).await.map_err(err)?;
            let Some(last) = page.last().map(|record| record.header.sequence) else { break };
            rebuild.apply(Arc::from(page)).await.map_err(|e| format!("the rebuild failed: {e}"))?;
            next = last + 1;
        }
        rebuild.finish().await.map_err(|e| format!("the rebuild failed: {e}"))?;
        self.compare_with(&scratch, applied).await
    }

    /// An empty read-model file at `path`: the migrated template written
    /// out (migrating a new file each time took most of a run's time).
    async fn scratch(&mut self, path: &std::path::Path) -> Result<ReadModelDb, String> {
        super::files::templates().await?.readmodels.write(path)?;
        ReadModelDb::open_sqlite_file(path).await.map_err(err)
    }

    /// Every idempotency key the callers used is in the log as far as
    /// they know it (after a crash and at the end): an acknowledged command
    /// where it was answered, one whose outcome was lost committed, one
    /// whose commit failed absent.
    pub(crate) async fn check_keys(&self) -> Result<(), String> {
        for (key, state) in &self.model.keys {
            let found = self.log().find_idempotency_key(key).await.map_err(err)?.map(|(_, appended)| appended);
            let holds = match (state, found) {
                (KeyState::Acknowledged(first), Some(found)) => {
                    (first.first_sequence, first.last_sequence, first.stream_revision)
                        == (found.first_sequence, found.last_sequence, found.stream_revision)
                }
                (KeyState::Unseen, found) => found.is_some(),
                (KeyState::NotCommitted, found) => found.is_none(),
                (KeyState::Acknowledged(_), None) => false,
            };
            if !holds {
                return Err(format!("{key} was {state:?}, and the log holds {found:?}"));
            }
        }
        Ok(())
    }

    /// The whole chain from sequence 1 (at the end of a run).
    pub(crate) async fn verify_all(&self) -> Result<(), String> {
        let head = self.log().head().await.map_err(err)?.sequence;
        let report = self.log().verify(1..=head.max(1)).await.map_err(err)?;
        match report.failure {
            Some(failure) => Err(format!("the chain does not verify: {failure}")),
            None if report.checked != head => Err(format!("verify checked {} of {head} records", report.checked)),
            None => Ok(()),
        }
    }
}
