//! `cargo xtask test`: every test this machine can run, with one command.
//!
//! 1. Installs the test peers that need no root into `target/` (PyPI and
//!    npm packages, pinned), each only once.
//! 2. When `DATABASE_URL` is not set but PostgreSQL's server is installed,
//!    starts a throw-away cluster for the PostgreSQL tests and removes it
//!    afterwards, also after a failure or an interrupt.
//! 3. Runs `cargo test --workspace` (or `cargo test ARGS`), then the
//!    independent record-format verifier (tools/verify_vectors.py), then
//!    (without ARGS) each fuzz target for a bounded time (peer_fuzz.rs).
//! 4. Prints each suite's counts and time, lists once what could not run
//!    (with why and the command that enables it), and ends with one line:
//!    how many tests ran and how many skipped.
//!
//! Under CI (`CI` set) nothing may be skipped: a missing peer fails the run
//! before the tests start, and any skip fails it at the end.

mod peer_fuzz;
mod peer_oidc;
mod peer_portal;
mod peer_prometheus;
mod peer_schemathesis;
mod peer_tsclient;
mod peers;
mod postgres;
mod report;
mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::Ordering;
use std::time::Instant;

use report::{Missing, Skip, Suite, Tally, duration};

const USAGE: &str = "\
usage: cargo xtask test [CARGO TEST ARGS]

Installs the test peers into target/, starts a throw-away PostgreSQL when
DATABASE_URL is not set, and runs `cargo test --workspace` (or `cargo test
CARGO TEST ARGS`, e.g. `-p ledger-api --test stripe`) and the record-format
verifier; then prints what ran, what skipped and why.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The same rule as `store::testing::under_ci`.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| !ci.is_empty() && ci != "false" && ci != "0")
}

fn test(args: &[String]) -> ExitCode {
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ is in the workspace");
    let interrupted = match run::interrupt_flag() {
        Ok(flag) => flag,
        Err(e) => return fail(&format!("cannot catch interrupts: {e}")),
    };

    println!("== test peers (into target/)");
    let step = Instant::now();
    let mut missing = peers::install(root, &peers_dir(root));
    let peers_time = step.elapsed();
    if interrupted.load(Ordering::SeqCst) {
        return ExitCode::from(130);
    }

    println!("== PostgreSQL");
    let step = Instant::now();
    let (cluster, env) = database(&mut missing);
    let database_time = step.elapsed();
    if under_ci() && !missing.is_empty() {
        print!("{}", report::not_run(&Tally::default(), &missing));
        return fail("under CI every test must run, and the peers above are missing");
    }
    if interrupted.load(Ordering::SeqCst) {
        return ExitCode::from(130);
    }

    println!("== cargo test");
    let mut tally = Tally::default();
    let cargo_args = if args.is_empty() { vec!["--workspace".to_owned()] } else { args.to_vec() };
    let step = Instant::now();
    let (status, build) = match run::cargo_test(root, &cargo_args, &env, &interrupted, &mut tally) {
        Ok(outcome) => outcome,
        Err(e) => return fail(&format!("cargo test did not run: {e}")),
    };
    let tests_time = step.elapsed();
    drop(cluster);
    if interrupted.load(Ordering::SeqCst) {
        println!("cargo xtask test: interrupted; the throw-away PostgreSQL is removed");
        return ExitCode::from(130);
    }
    println!("== the record format, checked by an independent implementation");
    verify_vectors(root, &mut tally);
    if args.is_empty() {
        peer_fuzz::run(root, &mut tally);
    }

    println!("\n== summary");
    print!("{}", report::suites_table(&tally));
    let build = build.map_or("none".to_owned(), duration);
    println!(
        "time: peers {}, PostgreSQL {}, build {build}, tests {} (build included)",
        duration(peers_time),
        duration(database_time),
        duration(tests_time)
    );
    finish(&tally, &missing, status.success(), started)
}

/// Prints what did not run and the last line; the run's exit code.
fn finish(tally: &Tally, missing: &[Missing], cargo_ok: bool, started: Instant) -> ExitCode {
    let not_run = report::not_run(tally, missing);
    if !not_run.is_empty() {
        println!("== not run");
        print!("{not_run}");
    }
    let mut problems = Vec::new();
    if tally.failed() > 0 {
        problems.push(format!("{} failed", tally.failed()));
    }
    for suite in tally.crashed() {
        problems.push(format!("{} ended without a result", suite.name));
    }
    if !cargo_ok && problems.is_empty() {
        problems.push("cargo test failed (see its output above)".to_owned());
    }
    if under_ci() && tally.skipped() > 0 {
        problems.push("under CI nothing may be skipped".to_owned());
    }
    let counts = format!("{} tests ran, {} skipped", tally.ran(), tally.skipped());
    let time = duration(started.elapsed());
    if problems.is_empty() {
        println!("cargo xtask test: {counts} in {time}");
        ExitCode::SUCCESS
    } else {
        println!("cargo xtask test: FAILED ({}); {counts} in {time}", problems.join("; "));
        ExitCode::FAILURE
    }
}

/// The database of the PostgreSQL tests: `DATABASE_URL` when set, else a
/// throw-away cluster (and its URL for the tests' environment) when the
/// server is installed; otherwise why not, in `missing`.
fn database(missing: &mut Vec<Missing>) -> (Option<postgres::Cluster>, Vec<(&'static str, String)>) {
    if std::env::var("DATABASE_URL").is_ok_and(|url| !url.is_empty()) {
        println!("  DATABASE_URL is set: the PostgreSQL tests use it");
        return (None, Vec::new());
    }
    let remedy = "set DATABASE_URL to a database the tests may create schemas in".to_owned();
    let Some(bin) = postgres::find_bin() else {
        let why = "DATABASE_URL is not set, and PostgreSQL's server is not installed \
                   (no initdb in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or on PATH)";
        let remedy = format!("Debian: apt-get install postgresql (no service needs to run), or {remedy}");
        missing.push(Missing { peer: "postgresql", why: why.into(), remedy });
        return (None, Vec::new());
    };
    let step = Instant::now();
    match postgres::Cluster::start(&bin) {
        Ok(cluster) => {
            println!("  a throw-away cluster ({}) at {} ({})", bin.display(), cluster.url, duration(step.elapsed()));
            let url = cluster.url.clone();
            (Some(cluster), vec![("DATABASE_URL", url)])
        }
        Err(why) => {
            let why = format!("the throw-away cluster did not start: {why}");
            missing.push(Missing { peer: "postgresql", why, remedy });
            (None, Vec::new())
        }
    }
}

/// Runs tools/verify_vectors.py (Python and blake3, written from
/// ARCHITECTURE.md alone) as one more suite.
fn verify_vectors(root: &Path, tally: &mut Tally) {
    let name = "tools/verify_vectors.py".to_owned();
    let python = root.join("target/python");
    if !run::exists("python3") || !peers::imports(&python, "blake3") {
        let skip = Skip {
            peer: "blake3".into(),
            test: name.clone(),
            why: "python3 cannot import blake3 from target/python".into(),
            remedy: "run `cargo xtask test` where python3 has pip".into(),
        };
        println!("SKIPPED [{}] {}: {}", skip.peer, skip.test, skip.why);
        tally.skips.push(skip);
        tally.push(Suite { passed: 1, skipped: 1, seconds: Some(0.0), ..Suite::new(name) });
        return;
    }
    let step = Instant::now();
    let status = Command::new("python3").arg(root.join("tools/verify_vectors.py")).env("PYTHONPATH", &python).status();
    let ok = status.is_ok_and(|s| s.success());
    let seconds = Some(step.elapsed().as_secs_f64());
    tally.push(Suite { passed: ok.into(), failed: (!ok).into(), seconds, ..Suite::new(name) });
}

/// Where the tests look for the Stripe peers (api/tests/stripe/peers.rs).
fn peers_dir(root: &Path) -> PathBuf {
    std::env::var_os("LEDGER_PEERS").map_or_else(|| root.join("target/peers"), PathBuf::from)
}

fn fail(why: &str) -> ExitCode {
    eprintln!("cargo xtask test: {why}");
    ExitCode::FAILURE
}
