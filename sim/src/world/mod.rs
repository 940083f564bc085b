//! The simulated world: the node (log and read models on files), the
//! callers' knowledge, the fake peer, the trace; the step loop.

mod actors;
mod changes;
mod checks;
mod files;
mod hooks;
mod payments;
mod stripe;
mod submit;
mod terms;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use domain::record::Hash;
use domain::{Clock, OrganizationId, StreamId, SubscriptionId, Timestamp};
use projections::db::ReadModelDb;
use projections::invoices::InvoiceCheck;
use store::EventLog;
use store::faults::CommitFaults;

use crate::rng::Rng;
use crate::{Config, Failure, Report, STEPS_MAX};

pub(crate) use submit::{Effect, KeyState, Request};

/// The built-in catalog, parsed once per process (parsing it made a few
/// per cent of a seed's time).
pub(crate) fn catalog() -> &'static domain::catalog::Catalog {
    static CATALOG: std::sync::OnceLock<domain::catalog::Catalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(domain::catalog::Catalog::builtin)
}

/// The services the subscription aggregate decides with.
pub(crate) fn services() -> domain::subscription::Services {
    static SERVICES: std::sync::OnceLock<Arc<domain::catalog::Catalog>> = std::sync::OnceLock::new();
    let catalog = SERVICES.get_or_init(|| Arc::new(catalog().clone())).clone();
    domain::subscription::Services { catalog, policy: domain::subscription::Policy::default() }
}

/// The log's file in the run's directory.
const LOG_FILE: &str = "ledger.sqlite";

/// 2026-01-01T00:00:00Z.
const START_MICROS: i64 = 1_767_225_600_000_000;

/// The simulation's clock: moved only by the seed's steps, forward by
/// hours or days and back by seconds (the log keeps recordedAt from going
/// back; the business dates follow the clock).
#[derive(Debug)]
pub struct SimClock(AtomicI64);

impl SimClock {
    pub fn new(micros: i64) -> Self {
        Self(AtomicI64::new(micros))
    }

    pub fn shift(&self, micros: i64) {
        self.0.fetch_add(micros, Ordering::Relaxed);
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::Relaxed))
    }
}

/// The node's in-process objects: all of them go in a crash.
struct Node {
    log: EventLog,
    db: ReadModelDb,
    /// The projections runner, kept across steps once made.
    runner: Option<projections::db::Runner>,
}

/// What the callers know of an organization.
#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub live: Option<SubscriptionId>,
}

/// What the callers know of a subscription.
#[derive(Debug, Clone)]
pub(crate) struct Sub {
    pub organization: OrganizationId,
    pub license: domain::LicenseId,
    pub start: chrono::NaiveDate,
    pub cancelled: bool,
    pub ended: bool,
}

/// The callers' side: what they were told, and what they still retry.
#[derive(Default)]
pub(crate) struct Model {
    pub orgs: BTreeMap<OrganizationId, Org>,
    pub subs: BTreeMap<SubscriptionId, Sub>,
    /// Each stream's revision as the callers last learnt it.
    pub revisions: BTreeMap<StreamId, u64>,
    /// Every idempotency key used, and what is known of its command.
    pub keys: BTreeMap<String, KeyState>,
    /// Requests whose outcome the caller did not learn, to retry.
    pub pending: Vec<Request>,
    /// Streams a pending request writes: callers leave them alone.
    pub busy: BTreeSet<StreamId>,
    /// Recently acknowledged requests, retried again as duplicates.
    pub done: Vec<Request>,
}

/// What the invariants have seen of the log so far.
struct Seen {
    /// Records scanned (sequences 1..=scanned).
    scanned: u64,
    streams: BTreeMap<StreamId, u64>,
    invoices: InvoiceCheck,
    /// The read models' sequence at the last rebuild comparison.
    compared: Option<u64>,
    rebuilds: u64,
    /// The simulation's rebuild, made at the first comparison.
    shadow: Option<checks::Shadow>,
    /// The run's directory, and a connection to the live read models with
    /// the rebuild's attached (the checker's, kept across crashes).
    dir: std::path::PathBuf,
    attached: Option<rusqlite::Connection>,
    /// Stripe invoices linked (`StripeInvoiceCreated`), at their sequence.
    links: BTreeMap<String, u64>,
    /// Per Stripe invoice, the charges whose report the ledger applied:
    /// at which sequence, and whether it succeeded.
    handled: BTreeMap<String, Vec<(u64, bool)>>,
    /// Each subscription's state, replayed from the records scanned.
    subscriptions: BTreeMap<SubscriptionId, domain::subscription::Subscription>,
}

/// The fake SMTP peer: the message ids it accepted.
#[derive(Default)]
struct Peer {
    accepted: BTreeSet<String>,
}

#[derive(Default)]
struct Counts {
    commit_faults: u64,
    crashes: u64,
    retries: u64,
    notices: u64,
    stripe_invoices: u64,
    webhooks: u64,
    payments: u64,
}

pub(crate) struct World {
    seed: u64,
    step: u32,
    config: Config,
    rng: Rng,
    clock: Arc<SimClock>,
    faults: Arc<CommitFaults>,
    /// The sequence at which the runner's audit projection fails once (0:
    /// none), a fault armed by [`World::run_projections`].
    fail_at: Arc<std::sync::atomic::AtomicU64>,
    dir: tempfile::TempDir,
    node: Option<Node>,
    model: Model,
    seen: Seen,
    peer: Peer,
    stripe: stripe::FakeStripe,
    charges: payments::Charges,
    counts: Counts,
    ids: u128,
    trace: blake3::Hasher,
}

impl World {
    pub(crate) async fn run(seed: u64, config: Config) -> Result<Report, Failure> {
        let steps = config.steps.min(STEPS_MAX);
        let failed = |step: u32| move |what: String| Failure { seed, step, what, steps };
        let mut world = World::new(seed, config).map_err(failed(0))?;
        world.lay_out().await.map_err(failed(0))?;
        world.open().await.map_err(failed(0))?;
        world.history().await.map_err(failed(0))?;
        world.check().await.map_err(failed(0))?;
        for step in 1..=config.steps.min(STEPS_MAX) {
            world.step = step;
            let done = async {
                world.act().await?;
                world.check().await
            };
            done.await.map_err(failed(step))?;
        }
        let last = world.step + 1;
        world.finish().await.map_err(failed(last))
    }

    fn new(seed: u64, config: Config) -> Result<Self, String> {
        // In memory where the system has a tmpfs: a crash here is a
        // process's (its files stay), and fsyncs to a disk only slow it.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
        let dir = dir.map_err(|e| format!("no temporary directory: {e}"))?;
        let path = dir.path().to_owned();
        let mut trace = blake3::Hasher::new_derive_key("ledger 2026-12-01 simulation trace v1");
        trace.update(&seed.to_le_bytes());
        Ok(Self {
            seed,
            step: 0,
            config,
            rng: Rng::new(seed),
            clock: Arc::new(SimClock::new(START_MICROS)),
            // Seeded salts: the seed's records, and so its trace, repeat.
            faults: Arc::new(CommitFaults::seeded(seed)),
            fail_at: Arc::default(),
            dir,
            node: None,
            model: Model::default(),
            seen: Seen {
                scanned: 0,
                streams: BTreeMap::new(),
                invoices: InvoiceCheck::new(catalog().clone()),
                compared: None,
                rebuilds: 0,
                shadow: None,
                dir: path,
                attached: None,
                links: BTreeMap::new(),
                handled: BTreeMap::new(),
                subscriptions: BTreeMap::new(),
            },
            peer: Peer::default(),
            stripe: stripe::FakeStripe::default(),
            charges: payments::Charges::default(),
            counts: Counts::default(),
            ids: 0,
            trace,
        })
    }

    /// The seed's first files: the migrated, empty log and read models.
    async fn lay_out(&mut self) -> Result<(), String> {
        let templates = files::templates().await?;
        templates.log.write(&self.dir.path().join(LOG_FILE))?;
        templates.readmodels.write(&self.dir.path().join(projections::db::READMODELS_FILE))
    }

    /// Opens the log and the read models from the directory's files.
    async fn open(&mut self) -> Result<(), String> {
        let path = self.dir.path().join(LOG_FILE);
        let clock: Arc<dyn Clock> = self.clock.clone();
        let log = EventLog::open_sqlite_with_faults(&path, clock, self.faults.clone())
            .await
            .map_err(|e| format!("reopening the log: {e}"))?;
        let db =
            ReadModelDb::open_sqlite(self.dir.path()).await.map_err(|e| format!("reopening the read models: {e}"))?;
        self.node = Some(Node { log, db, runner: None });
        Ok(())
    }

    fn log(&self) -> &EventLog {
        &self.node.as_ref().expect("the node is open between steps").log
    }

    fn db(&self) -> &ReadModelDb {
        &self.node.as_ref().expect("the node is open between steps").db
    }

    /// A fresh id, the same for the same seed and step.
    fn uuid(&mut self, kind: u128) -> uuid::Uuid {
        self.ids += 1;
        uuid::Uuid::from_u128((kind << 96) | (u128::from(self.seed) << 32) | self.ids)
    }

    fn today(&self) -> chrono::NaiveDate {
        self.clock.now().to_datetime().date_naive()
    }

    /// Adds a line to the trace.
    fn trace(&mut self, line: &str) {
        if self.config.print_trace {
            eprintln!("sim {} step {}: {line}", self.seed, self.step);
        }
        self.trace.update(&self.step.to_le_bytes());
        self.trace.update(&(line.len() as u64).to_le_bytes());
        self.trace.update(line.as_bytes());
    }

    /// A crash between two steps: every in-process object is dropped and
    /// the node reopens from its files.
    async fn crash(&mut self) -> Result<(), String> {
        self.counts.crashes += 1;
        self.faults.disarm();
        drop(self.node.take());
        // Let the dropped writer task end and close its connection.
        tokio::task::yield_now().await;
        self.open().await?;
        self.check_keys().await?;
        self.seen.compared = None;
        self.trace("crash");
        Ok(())
    }

    /// The last checks over the whole log, and the report.
    async fn finish(mut self) -> Result<Report, String> {
        self.step += 1;
        self.catch_up().await?;
        self.check().await?;
        self.verify_all().await?;
        self.full_rebuild().await?;
        self.check_keys().await?;
        let head = self.log().head().await.map_err(|e| e.to_string())?;
        self.trace(&format!("end {} {}", head.sequence, head.chain_hash));
        let head_hash: Hash = head.chain_hash;
        self.trace.update(&head_hash.0);
        Ok(Report {
            seed: self.seed,
            steps: self.config.steps.min(STEPS_MAX),
            records: head.sequence,
            invoices: self.seen.invoices.checked(),
            notices: self.counts.notices,
            stripe_invoices: self.counts.stripe_invoices,
            webhooks: self.counts.webhooks,
            payments: self.counts.payments,
            commit_faults: self.counts.commit_faults,
            crashes: self.counts.crashes,
            retries: self.counts.retries,
            trace: *self.trace.finalize().as_bytes(),
        })
    }
}
