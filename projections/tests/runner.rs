//! The projection runner: live state equals a rebuild from sequence 0, and
//! a restart from a snapshot plus the records after it gives the same state.

use std::sync::Arc;
use std::time::Duration;

use domain::organization::{OrganizationCreated, OrganizationEvent, Role, UserAdded, UserDeactivated};
use domain::time::FixedClock;
use domain::{EventId, Metadata, OrganizationId, StreamId, Timestamp, UserId};
use ledger_projections::{Projections, SNAPSHOT_NAME};
use store::{Command, EventLog, ExpectedRevision, NewEvent};

const NOW: Timestamp = Timestamp::from_micros(1_767_225_600_000_000);

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock(NOW))
}

async fn append(log: &EventLog, stream: StreamId, events: &[OrganizationEvent]) -> u64 {
    let metadata = Metadata { actor: Some("tester".into()), ..Metadata::default() };
    let events =
        events.iter().map(|event| NewEvent::from_event(event, EventId(uuid::Uuid::now_v7()), NOW, &metadata)).collect();
    let command = Command { stream_id: stream, expected: ExpectedRevision::Any, idempotency: None, events };
    log.append_one(command).await.unwrap().unwrap().last_sequence
}

fn organization(n: u128) -> (OrganizationId, OrganizationEvent) {
    let id = OrganizationId(uuid::Uuid::from_u128(n));
    let created =
        OrganizationCreated { id, name: format!("Org {n}"), domain: None, industry: None, employee_count: None };
    (id, created.into())
}

fn user_added(n: u128) -> OrganizationEvent {
    UserAdded { user_id: UserId(uuid::Uuid::from_u128(n)), email: format!("u{n}@acme.example"), role: Role::Analyst }
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_state_equals_a_rebuild_and_survives_a_restart_from_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open_sqlite(&dir.path().join("log.sqlite"), clock()).await.unwrap();
    let live = Projections::start(log.clone(), clock()).await.unwrap();

    let (a, created_a) = organization(1);
    let (b, created_b) = organization(2);
    append(&log, a.stream(), &[created_a, user_added(10), user_added(11)]).await;
    let last = append(&log, b.stream(), &[created_b, user_added(20)]).await;
    live.wait_for(last, Duration::from_secs(5)).await.unwrap();
    {
        let state = live.read().await;
        assert_eq!(state.sequence, 5);
        assert_eq!(state.organizations[&a].state.active_users(), 2);
        assert_eq!(state.organizations[&b].created.name, "Org 2");
        assert_eq!(state.audit.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(state.audit[0].actor.as_deref(), Some("tester"));
        assert_eq!(state.audit[3].organization_id, Some(b));
    }
    assert_eq!(live.save_snapshot(&log, NOW).await.unwrap(), 5);

    // More records after the snapshot, then a "restart": a new runner
    // starts from the snapshot and applies only what came after it.
    let deactivated: OrganizationEvent = UserDeactivated { user_id: UserId(uuid::Uuid::from_u128(10)) }.into();
    let last = append(&log, a.stream(), &[deactivated, user_added(12)]).await;
    live.wait_for(last, Duration::from_secs(5)).await.unwrap();
    let snapshot = log.load_snapshot(SNAPSHOT_NAME).await.unwrap().unwrap();
    assert_eq!(snapshot.sequence, 5);
    let restarted = Projections::start(log.clone(), clock()).await.unwrap();
    assert_eq!(restarted.applied(), 7);

    let rebuilt = Projections::rebuild(&log, 7).await.unwrap();
    let (live_at, live_digest) = live.digest().await;
    assert_eq!((live_at, live_digest), restarted.digest().await);
    assert_eq!(live_digest, rebuilt.encode().1, "a rebuild from sequence 0 gives the same state, bit for bit");
    assert_eq!(*live.read().await, rebuilt);
    assert_eq!(rebuilt.organizations[&a].state.active_users(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_sequence_that_never_comes_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open_sqlite(&dir.path().join("log.sqlite"), clock()).await.unwrap();
    let projections = Projections::start(log, clock()).await.unwrap();
    let error = projections.wait_for(1, Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(error, ledger_projections::ProjectionError::Lagging { wanted: 1, at: 0 }), "{error}");
}
