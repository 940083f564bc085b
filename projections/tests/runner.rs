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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_past_the_log_fails_the_start_and_an_unknown_chain_hash_is_the_logs() {
    use ledger_projections::{Failure, Rollback};
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open_sqlite(&dir.path().join("log.sqlite"), clock()).await.unwrap();
    let live = Projections::start(log.clone(), clock()).await.unwrap();
    let (a, created) = organization(1);
    let last = append(&log, a.stream(), &[created, user_added(10), user_added(11)]).await;
    live.wait_for(last, Duration::from_secs(5)).await.unwrap();
    live.save_snapshot(&log, NOW).await.unwrap();
    let saved = log.load_snapshot(SNAPSHOT_NAME).await.unwrap().unwrap();
    let chain = log.read_page(3..=3, 1).await.unwrap()[0].chain_hash;
    assert_eq!(saved.chain_hash, Some(chain), "the snapshot keeps the chain hash of its checkpoint");
    assert_eq!(Projections::start(log.clone(), clock()).await.unwrap().failed(), None);

    // Saved by a version that kept no chain hash: the log's is trusted.
    log.delete_snapshot(SNAPSHOT_NAME).await.unwrap();
    log.save_snapshot(store::Snapshot { chain_hash: None, ..saved.clone() }, NOW).await.unwrap();
    let restarted = Projections::start(log.clone(), clock()).await.unwrap();
    assert_eq!((restarted.failed(), restarted.applied()), (None, 3));

    // A snapshot of records the log does not hold (a restored backup).
    let ahead = store::Snapshot { sequence: 9, chain_hash: Some(domain::record::Hash([9; 32])), ..saved };
    log.save_snapshot(ahead, NOW).await.unwrap();
    let failed = Projections::start(log.clone(), clock()).await.unwrap();
    let rollback = Rollback {
        projection: SNAPSHOT_NAME.into(),
        applied: 9,
        applied_chain: Some(domain::record::Hash([9; 32])),
        head: 3,
        log_chain: None,
    };
    assert_eq!(failed.failed(), Some(Failure::RolledBack(rollback)));
    assert!(failed.failure().unwrap().contains("the log's head is sequence 3"), "{:?}", failed.failure());
}
