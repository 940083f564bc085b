//! The writer's figures move when appends happen: each append is timed
//! and each group commit's size is observed.

use std::sync::Arc;

use domain::{EventId, StreamId, Timestamp};
use ledger_store::{Command, EventLog, ExpectedRevision, NewEvent, SystemClock};
use prometheus_client::registry::Registry;

/// The `_count` and `_sum` of each of the log's histograms, as scraped.
fn scraped(log: &EventLog) -> [(u64, f64); 2] {
    let mut registry = Registry::default();
    registry.register("append_seconds", "", log.metrics().append_seconds.clone());
    registry.register("batch_events", "", log.metrics().batch_events.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|line| line.starts_with(&format!("{name} "))).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    ["append_seconds", "batch_events"]
        .map(|name| (value(&format!("{name}_count")) as u64, value(&format!("{name}_sum"))))
}

fn command(events: usize) -> Command {
    let event = || NewEvent {
        event_id: EventId(uuid::Uuid::now_v7()),
        event_type: "TestEvent".into(),
        schema_version: 1,
        occurred_at: Timestamp::from_micros(1_767_225_600_000_000),
        metadata: domain::Metadata::default().encode(),
        payload: b"{}".to_vec(),
    };
    Command {
        stream_id: StreamId::new("org/metrics").unwrap(),
        expected: ExpectedRevision::Any,
        idempotency: None,
        events: (0..events).map(|_| event()).collect(),
    }
}

#[tokio::test]
async fn appends_are_timed_and_batches_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open_sqlite(&dir.path().join("ledger.sqlite"), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(scraped(&log), [(0, 0.0), (0, 0.0)]);

    log.append_one(command(3)).await.unwrap().unwrap();
    let [(timed, seconds), (batches, events)] = scraped(&log);
    assert_eq!(timed, 1, "one append timed");
    assert!(seconds > 0.0);
    assert_eq!((batches, events), (1, 3.0), "one batch of three events");

    log.append(vec![command(1), command(2)]).await.unwrap();
    let [(timed, _), (_, events)] = scraped(&log);
    assert_eq!(timed, 2);
    assert_eq!(events, 6.0);
    assert_eq!(log.metrics().append_errors.get(), 0);
    assert_eq!(log.queue_depth(), 0, "nothing waits once every append is answered");
}
