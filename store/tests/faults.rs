//! The simulation's commit faults (`ledger_store::faults`, feature `sim`):
//! a failed commit writes nothing, an unknown outcome commits, and the
//! retry with the same idempotency key is answered with the first outcome.

use std::sync::Arc;

use domain::{EventId, StreamId, Timestamp};
use ledger_store::faults::{CommitFault, CommitFaults};
use ledger_store::{Command, EventLog, ExpectedRevision, Idempotency, NewEvent, SystemClock};

fn command(key: &str, n: u128) -> Command {
    let stream = StreamId::new(format!("test/{n}")).unwrap();
    let events = vec![NewEvent {
        event_id: EventId(uuid::Uuid::from_u128(n)),
        event_type: "Tested".into(),
        schema_version: 1,
        occurred_at: Timestamp::from_micros(0),
        metadata: Vec::new(),
        payload: vec![n as u8],
    }];
    let idempotency = Some(Idempotency::of_events(key, &stream, &events));
    Command { stream_id: stream, expected: ExpectedRevision::NoStream, idempotency, events }
}

#[tokio::test]
async fn a_failed_commit_writes_nothing_and_an_unknown_one_is_replayed_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(CommitFaults::default());
    let path = dir.path().join("ledger.sqlite");
    let log = EventLog::open_sqlite_with_faults(&path, Arc::new(SystemClock), faults.clone()).await.unwrap();

    faults.arm(CommitFault::Fail);
    assert!(log.append_one(command("a", 1)).await.is_err());
    assert_eq!(log.head().await.unwrap().sequence, 0, "a failed commit wrote nothing");
    assert!(log.find_idempotency_key("a").await.unwrap().is_none());
    let first = log.append_one(command("a", 1)).await.unwrap().unwrap();
    assert!(!first.replayed, "the retry of a failed commit is its first append");

    faults.arm(CommitFault::Unknown);
    assert!(log.append_one(command("b", 2)).await.is_err(), "the caller sees an error");
    assert_eq!(log.head().await.unwrap().sequence, 2, "the commit happened");
    let retried = log.append_one(command("b", 2)).await.unwrap().unwrap();
    assert!(retried.replayed);
    assert_eq!((retried.first_sequence, retried.last_sequence, retried.stream_revision), (2, 2, 1));
    assert_eq!(log.head().await.unwrap().sequence, 2, "nothing was appended twice");
    assert_eq!(faults.disarm(), None, "each fault is taken by one commit");
    assert!(log.verify(1..=2).await.unwrap().failure.is_none());
}
