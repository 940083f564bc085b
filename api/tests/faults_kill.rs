//! A server node killed (SIGKILL) in the middle of a mixed HTTP load, on
//! both backends (issue #17), and started again on the same data: requests
//! to the dead node go unanswered, none is answered wrongly, and afterwards
//! every command acknowledged with a 2xx is in the log once (a command cut
//! off mid-way and retried with its `Idempotency-Key` is answered, not
//! applied twice), `replay verify` passes and the read models equal a
//! rebuild (`faults::check`). PostgreSQL on a schema of its own of the
//! shared `DATABASE_URL` (skipped with a notice without it).

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;
#[allow(dead_code)]
mod faults;

use std::time::{Duration, Instant};

use common::Backend;
use faults::Load;

/// Load workers (each sends one request at a time).
const WORKERS: usize = 4;
/// How long a restarted node may take to answer commands again, from the
/// kill: a start (migrations checked, read models checked against the log).
const BACK_MAX: Duration = Duration::from_secs(30);

async fn a_node_killed_mid_load_loses_nothing_acknowledged(backend: Backend) {
    let test = if backend.database_url().is_some() { "faults_kill::postgres" } else { "faults_kill::sqlite" };
    let began = Instant::now();
    let first = backend.start().await;
    first.wait_ready().await;
    let load = Load::new(&first, "Killed").await;
    let fault = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pid = first.pid().expect("the server runs").to_string();
        let killed = Instant::now();
        let sent = std::process::Command::new("kill").args(["-KILL", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "SIGKILL sent to {pid}");
        let second = backend.start().await;
        load.retarget(&second);
        let started = killed.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        load.stop();
        (second, started)
    };
    let ((), (second, started)) = tokio::join!(load.run(WORKERS), fault);
    let tally = load.tally();
    eprintln!("{test}: restarted (listening) {started:?} after the kill; {}", tally.summary());
    assert!(tally.unanswered > 0, "the kill cut requests off: {}", tally.summary());
    assert!(tally.outage() < BACK_MAX, "back within {BACK_MAX:?}: {}", tally.summary());
    faults::check(test, &second, &backend, &load).await;
    drop(first);
    eprintln!("{test}: {:?} in all", began.elapsed());
}

backends!(a_node_killed_mid_load_loses_nothing_acknowledged);
