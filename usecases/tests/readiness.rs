//! A node that starts behind the log (read models far behind, or a new
//! read-model database) is not ready until its read models include the log
//! as it was when it started, however recently it began catching up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::organization::{OrganizationCreated, OrganizationEvent};
use domain::{Clock, EventId, Metadata, OrganizationId};
use store::{Command, ExpectedRevision, NewEvent, SystemClock};
use usecases::{Ledger, LedgerConfig, ops};

/// Records the node starts behind: many pages of the runner's work.
const RECORDS: usize = 20_000;
/// Commands per batch append.
const BATCH: usize = 1_000;
/// The longest wait for the node to catch up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(120);

fn config(dir: &std::path::Path) -> LedgerConfig {
    LedgerConfig {
        data_dir: dir.to_path_buf(),
        database_url: None,
        clock: "system".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    }
}

/// `RECORDS` organizations appended straight to the log, as another node
/// (or a restored backup) would have left them.
async fn fill(config: &LedgerConfig) {
    let log = usecases::open_log(config, Arc::new(SystemClock)).await.unwrap();
    let metadata = Metadata { actor: Some("operator".into()), ..Metadata::default() };
    for batch in 0..RECORDS / BATCH {
        let commands = (0..BATCH)
            .map(|n| {
                let id = OrganizationId(uuid::Uuid::now_v7());
                let created = OrganizationEvent::OrganizationCreated(OrganizationCreated {
                    id,
                    name: format!("Org {batch}-{n}"),
                    domain: None,
                    industry: None,
                    employee_count: None,
                });
                let event = NewEvent::from_event(&created, EventId(uuid::Uuid::now_v7()), SystemClock.now(), &metadata);
                Command {
                    stream_id: id.stream(),
                    expected: ExpectedRevision::NoStream,
                    idempotency: None,
                    events: vec![event],
                }
            })
            .collect();
        for appended in log.append(commands).await.unwrap() {
            appended.unwrap();
        }
    }
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_not_ready_before_it_has_caught_up_with_the_log_it_started_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    fill(&config).await;
    let ledger = Ledger::open(&config).await.expect("the ledger opens");
    let first = ops::readiness(&ledger).await;
    assert!(!first.ready, "a node {RECORDS} records behind is not ready at once: {first:?}");
    assert_eq!(first.status, "catching up");
    let started = Instant::now();
    loop {
        let now = ops::readiness(&ledger).await;
        if now.ready {
            assert!(now.applied >= Some(RECORDS as u64), "ready only once caught up: {now:?}");
            break;
        }
        assert!(started.elapsed() < CATCH_UP_WAIT, "the node catches up: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
