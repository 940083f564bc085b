//! A deterministic simulation of the ledger core (issue 17, part 2).
//!
//! One seed drives everything: which actor steps next (callers appending
//! commands and retrying them with their idempotency keys, the projections
//! runner, the scheduler, the billing run, the e-mail outbox with a fake
//! SMTP peer), the clock's jumps and the faults (a commit that fails, a
//! commit whose outcome the caller never learns, a projection that fails
//! in the middle of a batch, a crash between two steps). The log is the
//! real `store` on SQLite in a temporary directory (commit faults through
//! its `sim` feature), the read models the real `projections` runner and
//! tables; a crash drops every in-process object and reopens the files.
//!
//! After every step the invariants are checked ([`world`]): the new
//! records' chain verifies, sequences and stream revisions have no gaps, a
//! retry gives the first outcome, every issued invoice re-derives, every
//! e-mail recorded as sent was accepted by the peer, suspensions, renewals
//! and expiries agree with the subscription before them, and the read models
//! equal a rebuild from the log whenever they moved. A failure names its
//! seed and how to run that seed alone ([`Failure`]).
//!
//! Each seed starts with some history (subscriptions started up to 13
//! months back); admins upgrade and schedule downgrades, and the scheduler
//! also ends terms and suspends past-due subscriptions, as the aggregates
//! decide; Stripe charges the invoices
//! the sync sent it and the reactor records its webhooks.
//!
//! Not simulated: PostgreSQL, HTTP, the `usecases` layer itself (the
//! actors decide with `domain` and read the `projections` tables as the
//! use cases do, with ids drawn from the seed), add-ons, license
//! validations and deployments, concurrency inside a step beyond one
//! group-committed batch.

pub mod rng;
mod world;

pub use world::SimClock;

/// What one run does.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Steps per seed.
    pub steps: u32,
    /// A bug to plant, to prove the invariants catch it.
    pub bug: Option<Bug>,
    /// Prints each trace line to stderr (`SIM_TRACE=1`).
    pub print_trace: bool,
}

/// Steps per seed by default.
pub const STEPS_DEFAULT: u32 = 80;
/// The most steps a run takes, whatever it is asked.
pub const STEPS_MAX: u32 = 10_000;

impl Default for Config {
    fn default() -> Self {
        Self { steps: STEPS_DEFAULT, bug: None, print_trace: false }
    }
}

/// A bug planted on purpose (the simulation's own tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The live runner's audit projection skips every record whose
    /// sequence is 3 modulo 4: the read models no longer equal a rebuild.
    SkipAuditRecord,
    /// A caller retries a command whose outcome it did not learn without
    /// its idempotency key: the command is appended twice.
    RetryWithoutKey,
    /// The Stripe reactor records a failed charge as a payment: the
    /// subscription records a payment Stripe never reported, and the
    /// invoice is paid in the read models.
    FailureRecordedAsPaid,
    /// The scheduler suspends a past-due subscription without asking the
    /// aggregate, its dunning grace over or not.
    SuspendInGrace,
    /// The scheduler renews a term at the subscription's newest tier,
    /// ignoring the downgrade scheduled for the renewal.
    RenewIgnoringDowngrade,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub steps: u32,
    /// Records in the log at the end.
    pub records: u64,
    /// Issued invoices re-derived.
    pub invoices: u64,
    /// E-mails recorded as sent.
    pub notices: u64,
    /// Stripe invoices recorded as created.
    pub stripe_invoices: u64,
    /// Webhook deliveries made by the fake Stripe (duplicates included).
    pub webhooks: u64,
    /// Payment reports recorded on subscriptions (failed or succeeded).
    pub payments: u64,
    pub commit_faults: u64,
    pub crashes: u64,
    pub retries: u64,
    /// A hash of every step's actor, action, outcome and the log's head:
    /// the same seed gives the same hash.
    pub trace: [u8; 32],
}

/// An invariant that did not hold: the seed, the step and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub seed: u64,
    pub step: u32,
    pub what: String,
    /// The steps the run was asked for (its last checks follow them).
    pub steps: u32,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps = if self.steps == STEPS_DEFAULT { String::new() } else { format!("SIM_STEPS={} ", self.steps) };
        write!(
            f,
            "simulation seed {} failed at step {}: {}\nreproduce: {steps}SIM_SEED={} cargo test -p ledger-sim --test seeds",
            self.seed, self.step, self.what, self.seed
        )
    }
}

impl std::error::Error for Failure {}

/// Runs one seed on a runtime of its own (one thread: the steps are the
/// only source of order).
pub fn run(seed: u64, config: Config) -> Result<Report, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|error| Failure {
        seed,
        step: 0,
        what: format!("no runtime: {error}"),
        steps: config.steps,
    })?;
    runtime.block_on(world::World::run(seed, config))
}
