//! Several OS processes appending to one log at once still build one
//! linear chain: the head row is locked (PostgreSQL) or the write lock is
//! taken before the head is read (SQLite, `BEGIN IMMEDIATE`).

use std::process::Stdio;

use ledger_tests::{Ack, Target, check_log};
use tokio::io::{AsyncBufReadExt, BufReader};

const PROCESSES: usize = 2;
const COMMANDS_EACH: u64 = 1000;

async fn run_appender(tag: String, target: Target) -> Vec<Ack> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_appender"))
        .arg(&tag)
        .arg(COMMANDS_EACH.to_string())
        .args(target.args())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the appender");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acks = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        acks.push(Ack::parse(&line).expect("an ack line"));
    }
    assert!(child.wait().await.unwrap().success(), "appender {tag} exits cleanly");
    acks
}

async fn processes_append_to_one_chain(target: Target) {
    // Create the schema first, so the processes race on appends, not on
    // migrating an empty database.
    drop(target.open().await.unwrap());
    let runs: Vec<_> = (0..PROCESSES).map(|p| tokio::spawn(run_appender(format!("p{p}"), target.clone()))).collect();
    let mut acks = Vec::new();
    let mut interleaved = false;
    for run in runs {
        let mine = run.await.unwrap();
        assert_eq!(mine.len() as u64, COMMANDS_EACH);
        assert!(mine.windows(2).all(|w| w[0].last_sequence < w[1].first_sequence));
        interleaved |= mine.windows(2).any(|w| w[1].first_sequence != w[0].last_sequence + 1);
        acks.extend(mine);
    }
    assert!(interleaved, "the processes' appends interleaved, so the test raced them");
    let records = check_log(&target, &acks).await;
    assert_eq!(records, PROCESSES as u64 * COMMANDS_EACH * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_processes_append_to_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    processes_append_to_one_chain(Target::Sqlite(dir.path().join("log.sqlite"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_processes_append_to_one_chain() {
    let Some(url) = store::testing::postgres_url("postgres_processes_append_to_one_chain") else { return };
    let schema = store::testing::fresh_schema(&url).await;
    processes_append_to_one_chain(Target::Postgres { url, schema: schema.name }).await;
}
