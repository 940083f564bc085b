//! Helpers for tests and benchmarks that need a real database or another
//! peer outside the workspace.
//!
//! PostgreSQL tests read `DATABASE_URL`. Without it they skip with a notice
//! ([`skip`]), except under CI (`CI` set), where a missing database is an
//! error. Each test gets its own schema, so tests run in parallel without
//! seeing each other's rows.
//!
//! Records of format version 1: every append is sealed in record format
//! version 2 (salted commitments, issue 16). A test that needs records "from
//! before" that change (a user added in an old-format event, to erase it
//! later) appends them with
//! [`EventLog::append_legacy_v1_for_tests`](crate::EventLog::append_legacy_v1_for_tests):
//! the same writer, the same chain, sealed as version 1 was (format 1, no
//! salt). Only tests call it; a log may hold such records before version 2
//! ones and after, and verifies either way.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// Schemas of earlier runs older than this are dropped when a new one is made.
const STALE_SCHEMA_SECONDS: u64 = 3600;

/// `DATABASE_URL`, or `None` after [`skip`] said why the caller skips.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip(test, Peer::Postgres, "DATABASE_URL is not set");
            None
        }
    }
}

/// A program or service outside the workspace that some tests talk to.
/// `cargo xtask test` provides every one it can; plain `cargo test` skips
/// the tests whose peer is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A PostgreSQL server at `DATABASE_URL`.
    Postgres,
    /// Node.js, `node` on `PATH` (the seed's TypeScript client).
    Node,
    /// Stripe's Node library (`stripe` from npm) in `target/peers/node`.
    StripeNode,
    /// localstripe (PyPI) in a virtual environment in `target/peers/localstripe`.
    LocalStripe,
    /// aiosmtpd (PyPI), the SMTP server, in `target/python`.
    Aiosmtpd,
    /// The workspace's own `replay` binary, built by `cargo test --workspace`.
    Replay,
    /// Prometheus and promtool on `PATH` (Debian's `prometheus` package).
    Prometheus,
    /// Debian's `chromium` and `chromium-driver`, and axe-core (npm) in
    /// `target/peers/node`: the portal's browser tests.
    Browser,
    /// Schemathesis (PyPI) in a virtual environment in `target/peers/schemathesis`.
    Schemathesis,
}

impl Peer {
    /// The name in the skip line; `cargo xtask test` groups skips by it
    /// (xtask/src/report.rs keeps the same names).
    pub fn name(self) -> &'static str {
        match self {
            Peer::Postgres => "postgresql",
            Peer::Node => "node",
            Peer::StripeNode => "stripe-node",
            Peer::LocalStripe => "localstripe",
            Peer::Aiosmtpd => "aiosmtpd",
            Peer::Replay => "replay",
            Peer::Prometheus => "prometheus",
            Peer::Browser => "browser",
            Peer::Schemathesis => "schemathesis",
        }
    }

    /// What makes the peer available.
    pub fn remedy(self) -> &'static str {
        match self {
            Peer::Postgres => {
                "set DATABASE_URL, or run `cargo xtask test`, which starts a throw-away cluster \
                 when PostgreSQL's server is installed"
            }
            Peer::Node => "install Node.js (Debian: apt-get install nodejs)",
            Peer::StripeNode => "run `cargo xtask test`, which installs it into target/peers/node (needs node and npm)",
            Peer::LocalStripe => {
                "run `cargo xtask test`, which installs it into target/peers/localstripe (needs python3 with venv)"
            }
            Peer::Aiosmtpd => "run `cargo xtask test`, which installs it into target/python (needs python3 with pip)",
            Peer::Replay => "build it: `cargo test --workspace` or `cargo xtask test`",
            Peer::Prometheus => {
                "run `cargo xtask test` as root, which installs it with apt-get \
                 (Debian: apt-get install --no-install-recommends prometheus)"
            }
            Peer::Browser => {
                "run `cargo xtask test` as root, which installs chromium and chromium-driver (apt) and axe-core \
                 (npm) into target/peers/node"
            }
            Peer::Schemathesis => {
                "run `cargo xtask test`, which installs it into target/peers/schemathesis (needs python3 with venv)"
            }
        }
    }
}

/// The start of the one line a skipping test prints; `cargo xtask test`
/// counts these lines.
pub const SKIP_MARKER: &str = "SKIPPED";

/// Whether this is a CI run (`CI` set, and not to `false` or `0`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| !ci.is_empty() && ci != "false" && ci != "0")
}

/// Says, once, that `test` skips because `peer` is missing (`why`), and
/// returns for the caller to return. Under CI a missing peer is a failure,
/// so there this panics instead: CI must run every test.
///
/// The line is `SKIPPED [<peer>] <test>: <why>; to run it: <remedy>`.
pub fn skip(test: &str, peer: Peer, why: &str) {
    if under_ci() {
        panic!("{test}: {} is missing ({why}); under CI every test must run: {}", peer.name(), peer.remedy());
    }
    let line = format!("{SKIP_MARKER} [{}] {test}: {why}; to run it: {}\n", peer.name(), peer.remedy());
    // Straight to the file descriptor in one write: libtest captures
    // `eprintln!` of passing tests, and this line must be seen whole.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// What a backend-parametrised test runs on: the same test body gets one
/// fixture on SQLite and one on PostgreSQL, made by [`backend_tests!`].
///
/// The PostgreSQL fixture is `None` when there is no database to use; it
/// has then said so through [`postgres_url`] (which calls [`skip`]), so a
/// skipped test prints the uniform notice and fails under CI.
pub trait BackendFixture: Sized {
    /// A fixture on a fresh SQLite database. `test` names the test, for
    /// fixtures that label what they make.
    fn sqlite(test: &str) -> impl Future<Output = Self>;

    /// A fixture on a fresh PostgreSQL schema, or `None` (skipped) without
    /// `DATABASE_URL`.
    fn postgres(test: &str) -> impl Future<Output = Option<Self>>;
}

/// Instantiates each named test body, an `async fn(Fixture)` in the calling
/// module, twice: as `sqlite::<name>` and `postgres::<name>`, each a
/// multi-threaded Tokio test given a fresh [`BackendFixture`] of that
/// backend. The PostgreSQL variant skips (see [`skip`]) when the fixture
/// is `None`.
///
/// ```ignore
/// store::backend_tests!(Harness; appends_and_reads, reads_page_through_a_long_log);
/// ```
///
/// One macro for every crate's backend tests, so the two backends are
/// always run alike (the runtime, the naming, the skip notice).
#[macro_export]
macro_rules! backend_tests {
    ($fixture:ty; $($name:ident),* $(,)?) => {
        /// The fixture type, named where the test bodies are (the
        /// generated modules see it through `super`).
        type BackendTestsFixture = $fixture;

        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let test = concat!(module_path!(), "::", stringify!($name));
                    let fixture = <super::BackendTestsFixture as $crate::testing::BackendFixture>::sqlite(test).await;
                    super::$name(fixture).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let test = concat!(module_path!(), "::", stringify!($name));
                    if let Some(fixture) = <super::BackendTestsFixture as $crate::testing::BackendFixture>::postgres(test).await {
                        super::$name(fixture).await
                    }
                }
            )*
        }
    };
}

/// A fresh PostgreSQL schema for one test.
pub struct Schema {
    pub name: String,
    /// Connection options whose `search_path` is the schema.
    pub options: PgConnectOptions,
}

/// Options for connections to `url` that use `schema`.
pub fn schema_options(url: &str, schema: &str) -> PgConnectOptions {
    let options: PgConnectOptions = url.parse().expect("DATABASE_URL is a PostgreSQL URL");
    options.options([("search_path", schema)])
}

/// Creates a fresh schema (dropping test schemas of earlier runs that are
/// over an hour old) and returns it.
pub async fn fresh_schema(url: &str) -> Schema {
    let options: PgConnectOptions = url.parse().expect("DATABASE_URL is a PostgreSQL URL");
    let mut admin = PgConnection::connect_with(&options).await.expect("PostgreSQL at DATABASE_URL answers");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ledger\\_t\\_%' AND split_part(nspname, '_', 3)::bigint < $1",
    )
    .bind((now - STALE_SCHEMA_SECONDS) as i64)
    .fetch_all(&mut admin)
    .await
    .expect("list stale test schemas");
    for schema in stale {
        // Another test run may be dropping the same one; either way it goes.
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut admin).await;
    }
    let name = format!("ledger_t_{now}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut admin).await.expect("create test schema");
    Schema { options: schema_options(url, &name), name }
}

/// Distinct records [`hashing_rate`] prepares; its loop cycles over them.
const HASHING_RECORDS: usize = 100_000;

/// The hashing limit: records per second of a bare single-core loop
/// computing, for `count` records of `payload_bytes`-byte payloads, the
/// hashes the record `format` computes per record: metadata and payload
/// hashes (version 2: over the record's salt first), the leaf over the
/// canonical header and those two, and the chain. What `verify` and
/// `replay verify`'s integrity phase are measured against.
pub fn hashing_rate(format: u8, count: u64, payload_bytes: usize) -> f64 {
    use domain::record::{self, HEADER_FORMAT_V2};
    let stream = domain::StreamId::new("license/bench-verify").expect("a valid stream");
    let metadata = domain::Metadata { actor: Some("bench".into()), ..Default::default() }.encode();
    let occurred_at = domain::Timestamp::from_micros(1_767_225_600_000_000);
    let records: Vec<_> = (0..HASHING_RECORDS.min(count as usize) as u64)
        .map(|n| {
            let header = domain::RecordHeader {
                sequence: n + 1,
                event_id: domain::EventId(uuid::Uuid::from_u128(u128::from(n) | 0x0194_a000_0000_7000_8000 << 48)),
                stream_id: stream.clone(),
                stream_revision: n + 1,
                event_type: "UsageReported".into(),
                schema_version: 1,
                occurred_at,
                recorded_at: occurred_at,
                idempotency_key: Some(format!("verify-{}", n / 4000 * 4000)),
            };
            let mut salt = [0u8; record::SALT_BYTES];
            salt[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
            let mut payload = vec![0u8; payload_bytes.max(8)];
            payload[..8].copy_from_slice(&n.to_le_bytes());
            (header, salt, payload)
        })
        .collect();
    let start = std::time::Instant::now();
    let mut chain = record::CHAIN_GENESIS;
    for (header, salt, payload) in records.iter().cycle().take(count as usize) {
        let (metadata_hash, payload_hash) = if format == HEADER_FORMAT_V2 {
            (record::metadata_hash_v2(salt, &metadata), record::payload_hash_v2(salt, payload))
        } else {
            (record::metadata_hash(&metadata), record::payload_hash(payload))
        };
        let leaf = record::leaf_hash_as(format, header, &metadata_hash, &payload_hash);
        chain = record::chain_hash(&chain, &leaf);
    }
    std::hint::black_box(chain);
    count as f64 / start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set for the copy of this test binary that plays the skipping test.
    const PROBE: &str = "LEDGER_SKIP_PROBE";

    /// This test binary, running only this test as the probe, with `CI` as given.
    fn probe(ci: Option<&str>) -> (bool, String) {
        let mut command = std::process::Command::new(std::env::current_exe().expect("the test binary"));
        command.args(["--exact", "testing::tests::a_missing_peer_skips_with_one_line_and_fails_under_ci"]);
        command.env(PROBE, "1").env_remove("CI");
        if let Some(ci) = ci {
            command.env("CI", ci);
        }
        let output = command.output().expect("the test binary runs");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    #[test]
    fn a_missing_peer_skips_with_one_line_and_fails_under_ci() {
        if std::env::var_os(PROBE).is_some() {
            return skip("probe", Peer::Node, "`node` is not on PATH");
        }
        let line =
            "SKIPPED [node] probe: `node` is not on PATH; to run it: install Node.js (Debian: apt-get install nodejs)";

        let (passed, text) = probe(None);
        assert!(passed, "outside CI the test skips and passes:\n{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with(SKIP_MARKER)).collect::<Vec<_>>(), [line], "{text}");

        let (passed, text) = probe(Some("false"));
        assert!(passed && text.contains(line), "CI=false is not CI:\n{text}");

        let (passed, text) = probe(Some("true"));
        assert!(!passed, "under CI a missing peer fails the test:\n{text}");
        assert!(
            text.contains("probe: node is missing (`node` is not on PATH); under CI every test must run"),
            "{text}"
        );
        assert!(!text.contains(SKIP_MARKER), "no skip line under CI:\n{text}");
    }
}
