//! Crash safety: an appending process is killed with SIGKILL at a random
//! moment, several times over one log; after each kill the log reopens,
//! verifies, holds every acknowledged command, and no half-written one.
//!
//! SIGKILL proves safety against a process crash. What the fsync settings
//! promise beyond it (power loss) is in ARCHITECTURE.md.

use std::process::Stdio;
use std::time::Duration;

use ledger_tests::{Ack, Target, check_log, random_below};
use tokio::io::{AsyncBufReadExt, BufReader};

const ROUNDS: usize = 4;

async fn kill_at_random_moments(target: Target) {
    let mut acks = Vec::new();
    for round in 0..ROUNDS {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_appender"))
            .arg(format!("round{round}"))
            .arg("0")
            .args(target.args())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the appender");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it acknowledge a random number of commands, then kill it at a
        // random moment after that, most likely in the middle of an append.
        let acks_before_kill = 1 + random_below(400);
        for _ in 0..acks_before_kill {
            let line = lines.next_line().await.unwrap().expect("the appender acknowledges commands");
            acks.push(Ack::parse(&line).expect("an ack line"));
        }
        tokio::time::sleep(Duration::from_micros(random_below(20_000))).await;
        child.start_kill().unwrap();
        let status = child.wait().await.unwrap();
        assert!(!status.success(), "the appender was killed");
        // Acks printed before the kill are still in the pipe; a line cut
        // short by the kill is not an acknowledgement.
        while let Some(line) = lines.next_line().await.unwrap_or(None) {
            acks.extend(Ack::parse(&line));
        }
        let records = check_log(&target, &acks).await;
        assert!(records >= acks.len() as u64 * 3);
        eprintln!("round {round}: killed after {} acks in all, {records} records in the log", acks.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    kill_at_random_moments(Target::Sqlite(dir.path().join("log.sqlite"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_sigkill() {
    let Some(url) = store::testing::postgres_url("postgres_survives_sigkill") else { return };
    let schema = store::testing::fresh_schema(&url).await;
    kill_at_random_moments(Target::Postgres { url, schema: schema.name }).await;
}
