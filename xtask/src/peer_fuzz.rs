//! The fuzzers (fuzz/): cargo-fuzz and a nightly toolchain as a peer, and
//! each target run for a bounded time after the tests.
//!
//! Each target runs from its committed seeds (fuzz/corpus/<target>, read
//! only) with a throw-away working corpus, so a run never changes the
//! repository; a crash leaves its input in fuzz/artifacts/<target>/, and
//! the run fails naming it and the command that reproduces it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::report::{Missing, Skip, Suite, Tally, duration};
use crate::run::quiet;

/// The pinned cargo-fuzz, installed with `cargo install --locked`.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The targets, as in fuzz/Cargo.toml.
const TARGETS: [&str; 7] = ["record", "events", "proof", "checkpoint", "client_answer", "webhook", "license_key"];
/// How long each target runs by default: 7 targets stay under 3 minutes.
const SECONDS_PER_TARGET: u64 = 20;
/// The most `LEDGER_FUZZ_SECONDS` may ask for, per target.
const SECONDS_PER_TARGET_MAX: u64 = 3600;
/// One input may take this long before libFuzzer calls it a hang.
const INPUT_SECONDS_MAX: u64 = 10;
/// libFuzzer's memory limit per run (an input that needs more is a finding).
const RSS_MB_MAX: u64 = 2048;
/// Without sanitizers: the targets are safe Rust (debug assertions and
/// overflow checks are on in cargo-fuzz's build), and an AddressSanitizer
/// rebuild of the client's HTTP stack costs minutes on a 2-core machine.
const SANITIZER: &str = "none";

const NIGHTLY: &str = "rustup toolchain install nightly";

fn nightly(args: &[&str]) -> Command {
    let mut command = Command::new("rustup");
    command.args(["run", "nightly"]).args(args);
    // The outer (stable) cargo's settings must not leak into nightly's.
    for var in ["RUSTC", "RUSTDOC", "CARGO", "RUSTUP_TOOLCHAIN", "RUSTC_WRAPPER", "CARGO_TARGET_DIR"] {
        command.env_remove(var);
    }
    command
}

/// Installs cargo-fuzz when a nightly toolchain is there and it is not.
pub fn install(missing: &mut Vec<Missing>) {
    if let Err(why) = quiet(&mut nightly(&["rustc", "--version"])) {
        missing.push(Missing {
            peer: "cargo-fuzz",
            why: format!("no nightly toolchain: {why}"),
            remedy: NIGHTLY.into(),
        });
        return;
    }
    if quiet(&mut nightly(&["cargo", "fuzz", "--version"])).is_ok() {
        println!("  cargo-fuzz: present");
        return;
    }
    let started = Instant::now();
    let mut install = Command::new("cargo");
    install.args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ_VERSION]);
    match quiet(&mut install) {
        Ok(_) => println!("  cargo-fuzz {CARGO_FUZZ_VERSION}: installed ({})", duration(started.elapsed())),
        Err(why) => missing.push(Missing {
            peer: "cargo-fuzz",
            why,
            remedy: format!("cargo install cargo-fuzz --locked --version {CARGO_FUZZ_VERSION}"),
        }),
    }
}

/// The seconds each target runs: `LEDGER_FUZZ_SECONDS`, or the default.
fn seconds_per_target() -> u64 {
    std::env::var("LEDGER_FUZZ_SECONDS")
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .map_or(SECONDS_PER_TARGET, |s| s.clamp(1, SECONDS_PER_TARGET_MAX))
}

/// Builds the targets, then runs each for a bounded time; one suite each.
pub fn run(root: &Path, tally: &mut Tally) {
    println!("== the fuzzers (fuzz/), {} s per target", seconds_per_target());
    let ready = quiet(&mut nightly(&["cargo", "fuzz", "--version"])).and_then(|_| {
        let started = Instant::now();
        let mut build = nightly(&["cargo", "fuzz", "build", "--sanitizer", SANITIZER]);
        quiet(build.current_dir(root)).map(|_| println!("  built ({})", duration(started.elapsed())))
    });
    if let Err(why) = ready {
        for target in TARGETS {
            let skip = Skip {
                peer: "cargo-fuzz".into(),
                test: format!("fuzz/{target}"),
                why: why.lines().next().unwrap_or_default().to_owned(),
                remedy: format!("{NIGHTLY}; cargo install cargo-fuzz --locked --version {CARGO_FUZZ_VERSION}"),
            };
            println!("SKIPPED [{}] {}: {}", skip.peer, skip.test, skip.why);
            tally.skips.push(skip);
            tally.push(Suite { skipped: 1, seconds: Some(0.0), ..Suite::new(format!("fuzz/{target}")) });
        }
        return;
    }
    let started = Instant::now();
    for target in TARGETS {
        tally.push(run_target(root, target));
    }
    println!("  the fuzzers: {} in all", duration(started.elapsed()));
}

/// Runs one target from its seeds; the suite, failed with the reproducer
/// when it crashed.
fn run_target(root: &Path, target: &str) -> Suite {
    let name = format!("fuzz/{target}");
    let started = Instant::now();
    let since = SystemTime::now();
    let work = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            println!("FAILED {name}: no working corpus: {e}");
            return Suite { failed: 1, seconds: Some(0.0), ..Suite::new(name) };
        }
    };
    let seeds = root.join("fuzz/corpus").join(target);
    let mut fuzz = nightly(&["cargo", "fuzz", "run", "--sanitizer", SANITIZER, target]);
    fuzz.arg(work.path()).arg(&seeds).arg("--");
    fuzz.arg(format!("-max_total_time={}", seconds_per_target()));
    fuzz.arg(format!("-timeout={INPUT_SECONDS_MAX}")).arg(format!("-rss_limit_mb={RSS_MB_MAX}"));
    let outcome = quiet(fuzz.current_dir(root));
    let seconds = Some(started.elapsed().as_secs_f64());
    match outcome {
        Ok(_) => {
            println!("  {name}: no crash in {}", duration(started.elapsed()));
            Suite { passed: 1, seconds, ..Suite::new(name) }
        }
        Err(why) => {
            println!("FAILED {name}: {why}");
            for input in new_artifacts(&root.join("fuzz/artifacts").join(target), since) {
                println!(
                    "  reproducer: {} (cargo +nightly fuzz run --sanitizer {SANITIZER} {target} {})",
                    input.display(),
                    input.display()
                );
            }
            Suite { failed: 1, seconds, ..Suite::new(name) }
        }
    }
}

/// The inputs libFuzzer wrote to `dir` since `since` (crashes, hangs, OOMs).
fn new_artifacts(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let since = since.checked_sub(Duration::from_secs(1)).unwrap_or(since);
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.metadata().and_then(|m| m.modified()).is_ok_and(|modified| modified >= since))
        .map(|entry| entry.path())
        .collect()
}
