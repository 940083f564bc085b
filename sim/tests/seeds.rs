//! The deterministic simulation over many seeds (README, "Deterministic
//! simulation").
//!
//! `SIM_SEED=<n>` runs that one seed (what a failure prints);
//! `SIM_SEEDS=<count>` how many seeds from `SIM_FIRST_SEED` (default 1)
//! the main test runs, and `SIM_STEPS` the steps of each. The seeds run
//! one after another on this test's thread, each on a runtime of its own.

use std::time::Instant;

use ledger_sim::{Bug, Config, Failure, Report, STEPS_DEFAULT, run};

/// Seeds run by default: well inside three minutes in a debug build.
const SEEDS_DEFAULT: u64 = 80;
/// The most seeds one run takes, whatever it is asked.
const SEEDS_MAX: u64 = 1_000_000;

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_seed_keeps_every_invariant() {
    let started = Instant::now();
    let mut total = Report {
        seed: 0,
        steps: 0,
        records: 0,
        invoices: 0,
        notices: 0,
        stripe_invoices: 0,
        commit_faults: 0,
        crashes: 0,
        retries: 0,
        trace: [0; 32],
    };
    let seeds = seeds();
    let count = seeds.end - seeds.start;
    for seed in seeds {
        let report = run(seed, config()).unwrap_or_else(|failure| panic!("{failure}"));
        if count == 1 {
            println!("{report:?} trace {}", hex(&report.trace));
        }
        total.steps += report.steps;
        total.records += report.records;
        total.invoices += report.invoices;
        total.notices += report.notices;
        total.stripe_invoices += report.stripe_invoices;
        total.commit_faults += report.commit_faults;
        total.crashes += report.crashes;
        total.retries += report.retries;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "simulation: {count} seeds, {} steps in {seconds:.1} s ({:.1} seeds/s): {} records, {} invoices re-derived, {} e-mails, {} Stripe invoices, \
         {} commit faults, {} crashes, {} retries",
        total.steps,
        count as f64 / seconds,
        total.records,
        total.invoices,
        total.notices,
        total.stripe_invoices,
        total.commit_faults,
        total.crashes,
        total.retries
    );
    assert!(total.records > 0, "the seeds appended nothing");
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
