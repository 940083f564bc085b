//! Black-box tests of the log's integrity as the server serves it, on the
//! real `ledger` binary and both backends: a log rolled back behind the
//! read models (a restored backup, a failover that lost writes) is refused,
//! at start and while following, until an operator accepts the loss with
//! `ledger projections rebuild --accept-rollback`, which records it; and a
//! proof request for a sequence no database can hold is a clean refusal.

#[allow(dead_code)]
#[macro_use]
mod common;
#[path = "support/rollback.rs"]
mod rollback;

use common::{Backend, OPERATOR, Server, id, poll};
use domain::checkpoint::{CheckpointEvent, LogRollbackAccepted};
use domain::event::LedgerEvent;
use rollback::roll_back;
use serde_json::{Value, json};

backends!(
    a_log_rolled_back_behind_the_snapshot_is_refused_at_start_until_the_loss_is_accepted,
    a_log_rolled_back_under_a_running_server_stops_it_serving_and_names_the_loss,
    an_inclusion_proof_past_any_sequence_is_a_clean_refusal,
    nothing_is_signed_past_a_record_that_does_not_verify,
);

/// An organization with a starter subscription: (org, license key, sequence).
async fn customer(s: &Server, name: &str) -> (String, String, u64) {
    let org = s.create_org(name).await;
    let created = s.create_subscription(&org, "starter", "2026-01-01", true).await;
    (org, id(&created["licenseKey"]), created["sequence"].as_u64().expect("a sequence"))
}

async fn validate(s: &Server, key: &str) -> common::Reply {
    s.post("/api/v1/license/validate", None, json!({ "licenseKey": key, "nonce": "n-1" })).await
}

/// What the server refuses while its read models do not match the log,
/// and what it still answers.
async fn refuses_to_serve(s: &Server, key: &str) {
    let ready = s.get("/ready", None).await;
    assert_eq!(ready.status.as_u16(), 503, "not ready: {}", ready.text);
    assert!(ready.text.contains("rolled back"), "/ready says why: {}", ready.text);
    s.get("/api/v1/organizations", Some(OPERATOR)).await.problem(503, "read_model_failed");
    // A key the read model knows or not, the answer is not NOT_FOUND.
    validate(s, key).await.problem(503, "read_model_failed");
    s.post("/api/v1/organizations", Some(OPERATOR), json!({ "name": "Late" })).await.problem(503, "read_model_failed");
    s.get("/health", None).await.expect(200);
    s.get("/api/v1/keys", None).await.expect(200);
    let said = s.output().iter().any(|line| line.contains("the log was rolled back behind the read model"));
    assert!(said, "the server's log says why: {:#?}", s.output());
}

/// The `LogRollbackAccepted` records in the log.
async fn accepted(backend: &Backend) -> Vec<(u64, LogRollbackAccepted)> {
    let log = backend.open_log().await;
    let records = log.read_page(1..=u64::MAX >> 1, 100_000).await.unwrap();
    records
        .iter()
        .filter_map(|record| match LedgerEvent::decode(&record.header, record.payload.as_deref()?) {
            Ok(Some(LedgerEvent::Checkpoint(CheckpointEvent::LogRollbackAccepted(lost)))) => {
                Some((record.header.sequence, lost))
            }
            _ => None,
        })
        .collect()
}

/// Runs `ledger projections rebuild` with `flags`; (exit code, stdout, stderr).
async fn rebuild(backend: &Backend, flags: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["projections", "rebuild"];
    args.extend_from_slice(flags);
    let output = backend.cli(&args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), serde_json::from_str(&stdout).unwrap_or(Value::Null), stderr)
}

async fn a_log_rolled_back_behind_the_snapshot_is_refused_at_start_until_the_loss_is_accepted(backend: Backend) {
    let s = backend.start().await;
    let (kept_org, kept_key, restored_to) = customer(&s, "Kept").await;
    let (_, lost_key, _) = customer(&s, "Lost").await;
    validate(&s, &lost_key).await.expect(200);
    let applied = s.head().await;
    // The read models include the head; a stop saves them there.
    s.wait_ready().await;
    s.stop().await;
    roll_back(&backend, restored_to).await;

    let s = backend.start().await;
    refuses_to_serve(&s, &kept_key).await;
    s.stop().await;

    // Without --accept-rollback nothing changes, and the loss is named.
    let (code, _, stderr) = rebuild(&backend, &[]).await;
    assert_ne!(code, 0, "{stderr}");
    let named = format!("lost sequences {} to {applied}", restored_to + 1);
    assert!(stderr.contains(&named), "{named:?} in: {stderr}");
    assert!(accepted(&backend).await.is_empty());
    let s = backend.start().await;
    s.get("/api/v1/organizations", Some(OPERATOR)).await.problem(503, "read_model_failed");
    s.stop().await;

    let (code, report, stderr) = rebuild(&backend, &["--accept-rollback"]).await;
    assert_eq!(code, 0, "{stderr}");
    let rollback = &report["rollback"];
    assert_eq!((rollback["lostFrom"].as_u64(), rollback["lostTo"].as_u64()), (Some(restored_to + 1), Some(applied)));
    assert_eq!(rollback["headSequence"].as_u64(), Some(restored_to), "{report}");
    let recorded = accepted(&backend).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let (sequence, lost) = &recorded[0];
    assert_eq!((*sequence, lost.lost_from, lost.lost_to), (restored_to + 1, restored_to + 1, applied));
    assert!(lost.old_chain_hash.is_some(), "{lost:?}");
    // Every table's checkpoint saw it, and is named.
    for projection in usecases::readmodels::all_projections(&domain::catalog::Catalog::builtin()) {
        assert!(lost.snapshots.iter().any(|name| name == projection.name()), "{} in {lost:?}", projection.name());
    }
    assert_eq!(rollback["recordedAt"].as_u64(), Some(*sequence));

    // Serving again, from the log as it is: the kept customer is there, the
    // lost one is not, and what is appended now is applied.
    let s = backend.start().await;
    s.wait_ready().await;
    let listed = s.get("/api/v1/organizations", Some(OPERATOR)).await.expect(200);
    let names: Vec<&str> = listed["items"].as_array().unwrap().iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(names, ["Kept"], "{listed}");
    assert_eq!(validate(&s, &kept_key).await.expect(200)["code"], "VALID");
    assert_eq!(validate(&s, &lost_key).await.expect(200)["code"], "NOT_FOUND");
    let (new_org, new_key, _) = customer(&s, "After").await;
    assert_eq!(validate(&s, &new_key).await.expect(200)["code"], "VALID");
    assert_ne!(new_org, kept_org);
    // A second run finds nothing to accept and records nothing more.
    s.stop().await;
    let (code, report, stderr) = rebuild(&backend, &["--accept-rollback"]).await;
    assert_eq!((code, &report["rollback"]), (0, &Value::Null), "{stderr}");
    assert_eq!(accepted(&backend).await.len(), 1);
}

async fn a_log_rolled_back_under_a_running_server_stops_it_serving_and_names_the_loss(backend: Backend) {
    let s = backend.start().await;
    let (_, kept_key, restored_to) = customer(&s, "Kept").await;
    let (_, lost_key, _) = customer(&s, "Lost").await;
    let applied = s.head().await;
    s.wait_ready().await;
    // The database fails over to a replica that missed the last commits,
    // and another process appends to it at once: the same sequences now
    // hold other records (the chain no longer follows).
    roll_back(&backend, restored_to).await;
    {
        let other = backend.open_log().await;
        let stream = domain::StreamId::new("org/00000000-0000-0000-0000-000000000001").unwrap();
        for n in 0..(applied - restored_to + 2) {
            let event = store::NewEvent {
                event_id: domain::EventId(uuid::Uuid::now_v7()),
                event_type: "Unrelated".into(),
                schema_version: 1,
                occurred_at: domain::Timestamp::from_micros(0),
                metadata: domain::Metadata::default().encode(),
                payload: vec![n as u8],
            };
            let command = store::Command {
                stream_id: stream.clone(),
                expected: store::ExpectedRevision::Any,
                idempotency: None,
                events: vec![event],
            };
            other.append_one(command).await.unwrap().unwrap();
        }
    }
    poll("the server notices the rollback", || async {
        let ready = s.get("/ready", None).await;
        (ready.status.as_u16() == 503 && ready.text.contains("rolled back")).then_some(())
    })
    .await;
    refuses_to_serve(&s, &lost_key).await;
    s.stop().await;

    // What the running server had applied is the evidence of the loss.
    let (code, report, stderr) = rebuild(&backend, &["--accept-rollback"]).await;
    assert_eq!(code, 0, "{stderr}");
    let rollback = &report["rollback"];
    assert_eq!((rollback["lostFrom"].as_u64(), rollback["lostTo"].as_u64()), (Some(restored_to + 1), Some(applied)));
    let named = rollback["snapshots"].as_array().unwrap();
    assert!(named.iter().any(|name| name == projections::models::audit::NAME), "{report}");
    let s = backend.start().await;
    s.wait_ready().await;
    assert_eq!(validate(&s, &kept_key).await.expect(200)["code"], "VALID");
    assert_eq!(validate(&s, &lost_key).await.expect(200)["code"], "NOT_FOUND");
}

async fn an_inclusion_proof_past_any_sequence_is_a_clean_refusal(backend: Backend) {
    let s = backend.start().await;
    customer(&s, "Acme").await;
    for sequence in [u64::MAX.to_string(), (i64::MAX as u64 + 1).to_string(), (i64::MAX as u64).to_string()] {
        let path = format!("/api/v1/log/proof/inclusion?sequence={sequence}");
        s.get(&path, Some(OPERATOR)).await.problem(404, "not_found");
        let path = format!("/api/v1/log/proof/inclusion?sequence=1&size={sequence}");
        s.get(&path, Some(OPERATOR)).await.problem(404, "not_found");
    }
    s.get("/api/v1/log/proof/inclusion?sequence=18446744073709551616", Some(OPERATOR))
        .await
        .problem(400, "validation_failed");
    let max = u64::MAX;
    s.get(&format!("/api/v1/log/proof/consistency?from=1&to={max}"), Some(OPERATOR)).await.problem(404, "not_found");
    s.get(&format!("/api/v1/log/proof/consistency?from={max}"), Some(OPERATOR)).await.problem(400, "validation_failed");
    // The server is still there.
    s.get("/api/v1/log/proof/inclusion?sequence=1", Some(OPERATOR)).await.expect(200);
}

/// Replaces the metadata hash of the record at `sequence` behind the
/// server's back (the append-only triggers go first): its leaf no longer
/// follows from its fields, while the read models, which do not recompute
/// hashes, read it as before.
async fn tamper(backend: &Backend, sequence: u64) {
    let update = format!("UPDATE events SET metadata_hash = {{}} WHERE sequence = {sequence}");
    match backend.database_url() {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("PostgreSQL answers");
            for sql in [
                "DROP TRIGGER events_immutable ON events".to_owned(),
                update.replace("{}", &format!("'\\x{}'", "00".repeat(32))),
            ] {
                sqlx::query(&sql).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(backend.data_dir().join("ledger.sqlite"))
                .busy_timeout(std::time::Duration::from_secs(30));
            let pool = sqlx::SqlitePool::connect_with(options).await.expect("the SQLite log opens");
            for sql in
                ["DROP TRIGGER events_immutable".to_owned(), update.replace("{}", &format!("X'{}'", "00".repeat(32)))]
            {
                sqlx::query(&sql).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }
}

async fn nothing_is_signed_past_a_record_that_does_not_verify(backend: Backend) {
    let s = backend.start().await;
    customer(&s, "Acme").await;
    let kept = s.post("/api/v1/log/checkpoints", Some(OPERATOR), json!({})).await.expect(200);
    // A record after the kept checkpoint, which the server verifies from.
    let globex = s.create_org("Globex").await;
    let sequence = s.audit(&globex).await[0]["sequence"].as_u64().unwrap();
    assert!(sequence > kept["sequence"].as_u64().unwrap());
    s.head().await;
    s.wait_ready().await;
    s.stop().await;
    tamper(&backend, sequence).await;

    let s = backend.start().await;
    s.get("/api/v1/log/head", Some(OPERATOR)).await.problem(503, "unavailable");
    s.post("/api/v1/log/checkpoints", Some(OPERATOR), json!({})).await.problem(503, "unavailable");
    s.get(&format!("/api/v1/log/proof/inclusion?sequence={sequence}"), Some(OPERATOR))
        .await
        .problem(503, "unavailable");
    s.get("/api/v1/log/proof/consistency?from=1", Some(OPERATOR)).await.problem(503, "unavailable");
    let said = s.output().iter().any(|line| line.contains("the log does not verify"));
    assert!(said, "the server's log says why: {:#?}", s.output());
}
