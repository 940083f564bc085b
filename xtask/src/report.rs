//! Reading `cargo test`'s output (suites, their counts and times, and the
//! tests' skip lines) and the summary printed at the end of a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The start of a skip line, as `store::testing::skip` prints it:
/// `SKIPPED [<peer>] <test>: <why>; to run it: <remedy>`. The peer names
/// are those of `store::testing::Peer::name`.
const SKIP_MARKER: &str = "SKIPPED [";
const REMEDY_SEPARATOR: &str = "; to run it: ";

/// One test binary (or the doc tests of a crate, or a check run by xtask).
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// Skip lines printed while it ran (its skipping tests also count as passed).
    pub skipped: u64,
    /// libtest's own "finished in"; `None` when the binary ended without a result (a crash).
    pub seconds: Option<f64>,
}

impl Suite {
    pub fn new(name: String) -> Self {
        Self { name, passed: 0, failed: 0, ignored: 0, skipped: 0, seconds: None }
    }
}

/// One test that skipped because a peer was missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Skip {
    pub peer: String,
    pub test: String,
    pub why: String,
    pub remedy: String,
}

/// Why a peer could not be provided, as the runner found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    /// A peer name as in the skip lines (`postgresql`, `node`, …), or a
    /// check of the runner's own (`blake3`).
    pub peer: &'static str,
    pub why: String,
    /// The command that provides it.
    pub remedy: String,
}

/// What a run's output said, line by line.
#[derive(Debug, Default)]
pub struct Tally {
    pub suites: Vec<Suite>,
    pub skips: Vec<Skip>,
    /// The suite whose "Running" line came last and whose result has not.
    current: Option<Suite>,
    /// The package of the unit tests seen last (integration tests follow their package's).
    package: String,
    last_was_unittests: bool,
}

impl Tally {
    /// Reads one line of `cargo test`'s merged output.
    pub fn line(&mut self, line: &str) {
        let line = line.trim_end();
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("Running ") {
            let name = self.running_name(rest);
            self.start(name);
        } else if let Some(krate) = trimmed.strip_prefix("Doc-tests ") {
            self.last_was_unittests = false;
            self.start(format!("{krate} doc-tests"));
        } else if let Some(result) = trimmed.strip_prefix("test result: ") {
            self.result(result);
        } else if let Some(skip) = parse_skip(trimmed) {
            if let Some(suite) = self.current.as_mut() {
                suite.skipped += 1;
            }
            self.skips.push(skip);
        }
    }

    /// Adds a suite run outside `cargo test`.
    pub fn push(&mut self, suite: Suite) {
        self.suites.push(suite);
    }

    /// Ends the output: a suite without a result line crashed.
    pub fn finish(&mut self) {
        if let Some(suite) = self.current.take() {
            self.suites.push(suite);
        }
    }

    /// `unittests src/lib.rs (target/debug/deps/ledger_store-0a1b)` or
    /// `tests/server.rs (target/debug/deps/server-0a1b)` as a suite name.
    fn running_name(&mut self, rest: &str) -> String {
        let (target, binary) = match rest.rsplit_once(" (") {
            Some((target, path)) => (target, path.trim_end_matches(')')),
            None => (rest, rest),
        };
        let file = binary.rsplit('/').next().unwrap_or(binary);
        let stem = file.rsplit_once('-').map_or(file, |(stem, _hash)| stem).to_owned();
        match target.strip_prefix("unittests ") {
            Some(source) => {
                // A package's unit tests come first (library, then its
                // binaries); its integration tests follow.
                if source == "src/lib.rs" || !self.last_was_unittests {
                    self.package = stem.clone();
                }
                self.last_was_unittests = true;
                if source == "src/lib.rs" {
                    format!("{} lib", self.package)
                } else {
                    format!("{} bin {stem}", self.package)
                }
            }
            None => {
                self.last_was_unittests = false;
                if self.package.is_empty() { target.to_owned() } else { format!("{} {target}", self.package) }
            }
        }
    }

    fn start(&mut self, name: String) {
        self.finish();
        self.current = Some(Suite::new(name));
    }

    /// `ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s`
    fn result(&mut self, result: &str) {
        let mut suite = self.current.take().unwrap_or_else(|| Suite::new("(unnamed)".into()));
        for part in result.split(';') {
            let part = part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ");
            let count = |suffix: &str| part.strip_suffix(suffix).and_then(|n| n.trim().parse::<u64>().ok());
            if let Some(n) = count(" passed") {
                suite.passed = n;
            } else if let Some(n) = count(" failed") {
                suite.failed = n;
            } else if let Some(n) = count(" ignored") {
                suite.ignored = n;
            } else if let Some(time) = part.strip_prefix("finished in ") {
                suite.seconds = time.trim_end_matches('s').parse().ok();
            }
        }
        self.suites.push(suite);
    }

    pub fn skipped(&self) -> u64 {
        self.skips.len() as u64
    }

    pub fn failed(&self) -> u64 {
        self.suites.iter().map(|s| s.failed).sum()
    }

    /// Tests that ran: libtest counts a skipping test as passed.
    pub fn ran(&self) -> u64 {
        let passed: u64 = self.suites.iter().map(|s| s.passed).sum();
        (passed + self.failed()).saturating_sub(self.skipped())
    }

    /// Suites that ended without a result line.
    pub fn crashed(&self) -> impl Iterator<Item = &Suite> {
        self.suites.iter().filter(|s| s.seconds.is_none())
    }
}

/// `SKIPPED [peer] test: why; to run it: remedy`, or `None`.
pub fn parse_skip(line: &str) -> Option<Skip> {
    let rest = line.strip_prefix(SKIP_MARKER)?;
    let (peer, rest) = rest.split_once("] ")?;
    let (test, rest) = rest.split_once(": ")?;
    let (why, remedy) = rest.rsplit_once(REMEDY_SEPARATOR).unwrap_or((rest, ""));
    Some(Skip { peer: peer.into(), test: test.into(), why: why.into(), remedy: remedy.into() })
}

/// The table of suites: counts and each one's time.
pub fn suites_table(tally: &Tally) -> String {
    let width = tally.suites.iter().map(|s| s.name.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:width$}  {:>6}  {:>7}  {:>6}  {:>8}\n", "suite", "passed", "skipped", "failed", "time");
    for s in &tally.suites {
        let time = s.seconds.map_or("crashed".to_owned(), |t| format!("{t:.1} s"));
        let _ = writeln!(out, "{:width$}  {:>6}  {:>7}  {:>6}  {time:>8}", s.name, s.passed, s.skipped, s.failed);
    }
    out
}

/// What did not run, once per peer: how many tests, why, and what enables it.
pub fn not_run(tally: &Tally, missing: &[Missing]) -> String {
    let mut peers: BTreeMap<&str, (u64, String, String)> = BTreeMap::new();
    for m in missing {
        peers.entry(m.peer).or_insert((0, m.why.clone(), m.remedy.clone()));
    }
    for skip in &tally.skips {
        peers.entry(&skip.peer).or_insert((0, skip.why.clone(), skip.remedy.clone())).0 += 1;
    }
    let mut out = String::new();
    for (peer, (tests, why, remedy)) in peers {
        let tests = match tests {
            0 => "no test of this run needed it".to_owned(),
            1 => "1 test skipped".to_owned(),
            n => format!("{n} tests skipped"),
        };
        let _ = writeln!(out, "  {peer} ({tests}): {why}\n      to run: {remedy}");
    }
    out
}

/// `14 min 3 s`, `52.1 s`.
pub fn duration(d: Duration) -> String {
    let seconds = d.as_secs_f64();
    if seconds < 60.0 { format!("{seconds:.1} s") } else { format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
   Compiling ledger-store v0.1.0
     Running unittests src/lib.rs (target/debug/deps/ledger_api-0123abcd)
test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.25s
     Running unittests src/main.rs (target/debug/deps/ledger-89ab)
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
     Running tests/usage.rs (target/debug/deps/usage-4455)
SKIPPED [postgresql] postgres::usage_is_summed: DATABASE_URL is not set; to run it: set DATABASE_URL
test postgres::usage_is_summed ... ok
SKIPPED [aiosmtpd] mail: python3 cannot import aiosmtpd: no module; to run it: run `cargo xtask test`
test result: FAILED. 7 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 12.50s
     Running unittests src/lib.rs (target/debug/deps/ledger_client-77)
     Running tests/usage.rs (target/debug/deps/usage-99)
test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s
   Doc-tests ledger_store
test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s
";

    fn tally() -> Tally {
        let mut tally = Tally::default();
        OUTPUT.lines().for_each(|line| tally.line(line));
        tally.finish();
        tally
    }

    #[test]
    fn suites_are_named_by_package_and_counted() {
        let tally = tally();
        let names: Vec<&str> = tally.suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ledger_api lib",
                "ledger_api bin ledger",
                "ledger_api tests/usage.rs",
                "ledger_client lib",
                "ledger_client tests/usage.rs",
                "ledger_store doc-tests"
            ]
        );
        let usage = &tally.suites[2];
        assert_eq!((usage.passed, usage.failed, usage.skipped, usage.seconds), (7, 1, 2, Some(12.5)));
        assert_eq!(tally.suites[3].seconds, None, "a binary without a result line crashed");
        assert_eq!(tally.crashed().count(), 1);
    }

    #[test]
    fn skipping_tests_are_not_counted_as_ran() {
        let tally = tally();
        // 5 + 7 + 2 + 1 passed, 1 failed, 2 of the passed only skipped.
        assert_eq!((tally.ran(), tally.skipped(), tally.failed()), (14, 2, 1));
    }

    #[test]
    fn a_skip_line_is_read_whole() {
        let skip =
            parse_skip("SKIPPED [node] validation::seed: `node` is not on PATH; to run it: install Node.js (apt)")
                .unwrap();
        assert_eq!(skip.peer, "node");
        assert_eq!(skip.test, "validation::seed");
        assert_eq!(skip.why, "`node` is not on PATH");
        assert_eq!(skip.remedy, "install Node.js (apt)");
        assert_eq!(parse_skip("note: SKIPPED [node] x: y"), None, "only at the start of a line");
    }

    #[test]
    fn what_did_not_run_is_listed_once_per_peer() {
        let missing = [
            Missing {
                peer: "aiosmtpd",
                why: "python3 has no pip".into(),
                remedy: "apt-get install python3-pip".into(),
            },
            Missing { peer: "node", why: "`node` is not installed".into(), remedy: "apt-get install nodejs".into() },
        ];
        let text = not_run(&tally(), &missing);
        assert_eq!(
            text,
            "  aiosmtpd (1 test skipped): python3 has no pip\n      to run: apt-get install python3-pip\n  \
             node (no test of this run needed it): `node` is not installed\n      to run: apt-get install nodejs\n  \
             postgresql (1 test skipped): DATABASE_URL is not set\n      to run: set DATABASE_URL\n"
        );
    }
}
