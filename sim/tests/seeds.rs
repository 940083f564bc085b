//! The deterministic simulation over many seeds (README, "Deterministic
//! simulation").
//!
//! `SIM_SEED=<n>` runs that one seed (what a failure prints);
//! `SIM_SEEDS=<count>` how many seeds from `SIM_FIRST_SEED` (default 1)
//! the main test runs, `SIM_STEPS` the steps of each and `SIM_THREADS`
//! the threads they run on (default: the machine's cores). Each seed runs
//! on a runtime of its own on one thread, so its run is the same whichever
//! thread takes it; the threads take seeds in order, and after a failure
//! only the seeds below it finish, so the failure reported is the lowest
//! failing seed, whatever the threads' timing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ledger_sim::{Bug, Config, Failure, Report, STEPS_DEFAULT, run};

/// Seeds run by default: 2,000 of 80 steps (0.23 s of CPU a seed in a
/// debug build, measured 2026-12-01: about 4 minutes on two idle cores;
/// README, "Deterministic simulation").
const SEEDS_DEFAULT: u64 = 2_000;
/// The most seeds one run takes, whatever it is asked.
const SEEDS_MAX: u64 = 1_000_000;
/// The most threads the seeds run on, whatever the machine has.
const THREADS_MAX: u64 = 64;
/// The time the default run should stay inside (printed, not enforced: a
/// loaded machine is slower, not wrong): the measured 235 s on two idle
/// cores with a margin. The 120 s first aimed at is not met (README).
const BUDGET_SECONDS: f64 = 300.0;

fn env(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a number")))
}

fn config() -> Config {
    Config {
        steps: env("SIM_STEPS").map_or(STEPS_DEFAULT, |steps| steps as u32),
        bug: None,
        print_trace: env("SIM_TRACE").is_some_and(|on| on > 0),
    }
}

fn seeds() -> std::ops::Range<u64> {
    if let Some(seed) = env("SIM_SEED") {
        return seed..seed + 1;
    }
    let first = env("SIM_FIRST_SEED").unwrap_or(1);
    first..first + env("SIM_SEEDS").unwrap_or(SEEDS_DEFAULT).min(SEEDS_MAX)
}

fn threads() -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    env("SIM_THREADS").unwrap_or(cores).clamp(1, THREADS_MAX)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What all the seeds did together.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    seeds: u64,
    steps: u64,
    records: u64,
    invoices: u64,
    notices: u64,
    stripe_invoices: u64,
    webhooks: u64,
    payments: u64,
    commit_faults: u64,
    crashes: u64,
    retries: u64,
}

impl Totals {
    fn add(&mut self, report: &Report) {
        self.seeds += 1;
        self.steps += u64::from(report.steps);
        self.records += report.records;
        self.invoices += report.invoices;
        self.notices += report.notices;
        self.stripe_invoices += report.stripe_invoices;
        self.webhooks += report.webhooks;
        self.payments += report.payments;
        self.commit_faults += report.commit_faults;
        self.crashes += report.crashes;
        self.retries += report.retries;
    }

    fn merge(&mut self, other: &Totals) {
        let fields = [
            (&mut self.seeds, other.seeds),
            (&mut self.steps, other.steps),
            (&mut self.records, other.records),
            (&mut self.invoices, other.invoices),
            (&mut self.notices, other.notices),
            (&mut self.stripe_invoices, other.stripe_invoices),
            (&mut self.webhooks, other.webhooks),
            (&mut self.payments, other.payments),
            (&mut self.commit_faults, other.commit_faults),
            (&mut self.crashes, other.crashes),
            (&mut self.retries, other.retries),
        ];
        for (mine, theirs) in fields {
            *mine += theirs;
        }
    }
}

/// Runs `seeds` on `threads` threads; the totals, or the lowest failing
/// seed's failure.
fn run_all(seeds: std::ops::Range<u64>, threads: u64, config: Config) -> Result<Totals, Failure> {
    let next = AtomicU64::new(seeds.start);
    // Seeds from here on are not started: the lowest failing seed so far.
    let stop = AtomicU64::new(seeds.end);
    let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let totals: Mutex<Totals> = Mutex::new(Totals::default());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut mine = Totals::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match run(seed, config) {
                        Ok(report) => {
                            if seeds.end - seeds.start == 1 {
                                println!("{report:?} trace {}", hex(&report.trace));
                            }
                            mine.add(&report);
                        }
                        Err(failure) => {
                            stop.fetch_min(seed, Ordering::SeqCst);
                            failures.lock().unwrap().push(failure);
                            break;
                        }
                    }
                }
                totals.lock().unwrap().merge(&mine);
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    match failures.into_iter().min_by_key(|failure| failure.seed) {
        Some(failure) => Err(failure),
        None => Ok(totals.into_inner().unwrap()),
    }
}

#[test]
fn every_seed_keeps_every_invariant() {
    let started = Instant::now();
    let (seeds, threads) = (seeds(), threads());
    let total = run_all(seeds, threads, config()).unwrap_or_else(|failure| panic!("{failure}"));
    let seconds = started.elapsed().as_secs_f64();
    let budget = if seconds <= BUDGET_SECONDS { "inside" } else { "OVER" };
    println!(
        "simulation: {} seeds, {} steps on {threads} threads in {seconds:.1} s ({budget} the {BUDGET_SECONDS} s budget; \
         {:.1} seeds/s): {} records, {} invoices re-derived, {} e-mails, {} Stripe invoices, {} webhook deliveries, \
         {} payments recorded, {} commit faults, {} crashes, {} retries",
        total.seeds,
        total.steps,
        total.seeds as f64 / seconds,
        total.records,
        total.invoices,
        total.notices,
        total.stripe_invoices,
        total.webhooks,
        total.payments,
        total.commit_faults,
        total.crashes,
        total.retries
    );
    assert!(total.records > 0, "the seeds appended nothing");
}

#[test]
fn threads_report_the_lowest_failing_seed() {
    // With a planted bug many seeds fail; however the threads interleave,
    // the failure reported is the lowest one, as one thread finds it.
    let config = Config { bug: Some(Bug::SkipAuditRecord), ..config() };
    let alone = run_all(1..40, 1, config).unwrap_err();
    let together = run_all(1..40, 4, config).unwrap_err();
    assert_eq!(together, alone);
}

#[test]
fn a_seed_run_twice_gives_the_same_trace() {
    let seed = env("SIM_SEED").unwrap_or(17);
    let (first, second) = (run(seed, config()).unwrap(), run(seed, config()).unwrap());
    assert_eq!(first, second, "seed {seed} ran differently the second time");
    let other = run(seed + 1, config()).unwrap();
    assert_ne!(first.trace, other.trace, "seeds {seed} and {} gave the same trace", seed + 1);
}

/// The first seed (of the first 50) at which the planted bug is caught.
fn caught(bug: Bug) -> Failure {
    (1..=50)
        .find_map(|seed| run(seed, Config { bug: Some(bug), ..config() }).err())
        .unwrap_or_else(|| panic!("no seed of 50 caught {bug:?}"))
}

#[test]
fn a_projection_that_skips_a_record_is_caught_with_its_seed() {
    let failure = caught(Bug::SkipAuditRecord);
    let text = failure.to_string();
    assert!(text.contains("differ from a rebuild") && text.contains("rm_audit"), "{text}");
    assert!(text.contains(&format!("SIM_SEED={} cargo test -p ledger-sim --test seeds", failure.seed)), "{text}");
    // The seed reproduces it exactly.
    let again = run(failure.seed, Config { bug: Some(Bug::SkipAuditRecord), ..config() }).unwrap_err();
    assert_eq!(again, failure);
    println!("caught: {text}");
}

#[test]
fn a_retry_without_its_key_is_caught_with_its_seed() {
    let config = Config { bug: Some(Bug::RetryWithoutKey), ..config() };
    // Appended twice or refused for its stream's revision (a committed
    // command's retry not given the first outcome), refused by the log for
    // its event ids (the same events again), or appended without its key
    // (a retry of one that was not committed).
    let caught = [
        "its retry was appended again",
        "its retry was refused",
        "UNIQUE constraint failed: events.event_id",
        "the log holds something else there",
    ];
    let mut committed = None;
    for seed in 1..=50 {
        let Err(failure) = run(seed, config) else { continue };
        let text = failure.to_string();
        assert!(caught.iter().any(|what| text.contains(what)), "{text}");
        assert!(text.contains(&format!("SIM_SEED={seed} cargo test -p ledger-sim --test seeds")), "{text}");
        if text.contains("was committed") {
            committed = Some(text);
            break;
        }
    }
    let text = committed.expect("no seed of 50 retried a committed command without its key");
    println!("caught: {text}");
}

#[test]
fn a_failed_charge_recorded_as_paid_is_caught_with_its_seed() {
    // Fewer seeds get as far as a charge: up to 400 are tried.
    let config = Config { bug: Some(Bug::FailureRecordedAsPaid), ..config() };
    let failure = (1..=400)
        .find_map(|seed| run(seed, config).err())
        .expect("no seed of 400 caught a failed charge recorded as paid");
    let text = failure.to_string();
    let named = ["Stripe reported none", "the payments Stripe reported and the ledger applied make it"];
    assert!(named.iter().any(|what| text.contains(what)), "{text}");
    assert!(text.contains(&format!("SIM_SEED={} cargo test -p ledger-sim --test seeds", failure.seed)), "{text}");
    let again = run(failure.seed, config).unwrap_err();
    assert_eq!(again, failure);
    println!("caught: {text}");
}

#[test]
fn a_suspension_inside_the_dunning_grace_is_caught_with_its_seed() {
    // A seed must get as far as a failed charge applied: up to 400 tried.
    let config = Config { bug: Some(Bug::SuspendInGrace), ..config() };
    let failure = (1..=400)
        .find_map(|seed| run(seed, config).err())
        .expect("no seed of 400 caught a suspension inside the dunning grace");
    let text = failure.to_string();
    assert!(text.contains("the grace not over"), "{text}");
    assert!(text.contains(&format!("SIM_SEED={} cargo test -p ledger-sim --test seeds", failure.seed)), "{text}");
    let again = run(failure.seed, config).unwrap_err();
    assert_eq!(again, failure);
    println!("caught: {text}");
}

#[test]
fn a_renewal_that_ignores_a_scheduled_downgrade_is_caught_with_its_seed() {
    // A seed must schedule a downgrade before a term ends: up to 400 tried.
    let config = Config { bug: Some(Bug::RenewIgnoringDowngrade), ..config() };
    let failure = (1..=400)
        .find_map(|seed| run(seed, config).err())
        .expect("no seed of 400 caught a renewal that ignores a scheduled downgrade");
    let text = failure.to_string();
    assert!(text.contains("renews") && text.contains("its term ended"), "{text}");
    let again = run(failure.seed, config).unwrap_err();
    assert_eq!(again, failure);
    println!("caught: {text}");
}
