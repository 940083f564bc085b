//! A log rolled back behind the read models (ARCHITECTURE.md, "Rollback"):
//! the server refuses to serve, and only an operator rebuilds.
//!
//! When the log's head is behind what a read model applied, or holds
//! another record there (a restored backup, a PostgreSQL failover with
//! asynchronous replication), acknowledged writes are gone. Serving on
//! would answer from a history that no longer exists, and rebuilding on
//! its own would quietly accept the loss. So the projections start (or
//! stop) *failed*, [`refuse_while_failed`] answers every request but
//! liveness, readiness, metrics and the public keys with 503
//! `read_model_failed`, and `ledger projections rebuild --accept-rollback`
//! ([`rebuild`]) names the lost range, records it in the log
//! (`LogRollbackAccepted`) and rebuilds the read models from the log as it is.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::catalog::Catalog;
use domain::checkpoint::{CHECKPOINT_STREAM, CheckpointEvent, LogRollbackAccepted};
use domain::record::Hash;
use domain::{Metadata, StreamId, Timestamp};
use projections::Rollback;
use projections::db::{ReadModelDb, Runner, Table};
use serde_json::{Value, json};
use store::{Command, EventLog, ExpectedRevision, Idempotency, NewEvent};

use crate::AppState;
use crate::error::ApiError;

/// What is still served while the read models have failed: what load
/// balancers, monitoring and clients pinning keys need, none of which reads
/// the read models' state.
const SERVED_WHILE_FAILED: &[&str] = &["/health", "/ready", "/metrics", "/api/v1/keys", "/api/v1/openapi.json"];

/// Answers 503 `read_model_failed` while the read models have failed (a
/// rollback, a record this version cannot read), so nothing is answered,
/// decided or validated from a state the log no longer supports. The
/// reason is in `/ready` and in the server's log.
pub async fn refuse_while_failed(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.models.failed().is_some() && !SERVED_WHILE_FAILED.contains(&request.uri().path()) {
        return ApiError::ReadModelFailed.into_response();
    }
    next.run(request).await
}

/// One digest of every table: each table's name, rows and digest, in order.
async fn digest_of(models: &ReadModelDb, tables: &[Table]) -> anyhow::Result<Hash> {
    let mut hasher = blake3::Hasher::new_derive_key("ledger 2026-11-30 read models digest v1");
    for table in projections::db::digest(models, tables).await? {
        hasher.update(table.table.as_bytes()).update(&table.rows.to_le_bytes()).update(table.digest.as_bytes());
    }
    Ok(Hash(*hasher.finalize().as_bytes()))
}

/// What `ledger projections rebuild` did.
#[derive(Debug)]
pub struct Rebuilt {
    /// The snapshots that did not match the log, and what was lost.
    pub rollback: Option<LogRollbackAccepted>,
    /// Where the rollback was recorded in the log.
    pub recorded_at: Option<u64>,
    /// The rebuilt read models' checkpoint and digest.
    pub sequence: u64,
    pub digest: Hash,
}

impl Rebuilt {
    pub fn json(&self) -> Value {
        let rollback = self.rollback.as_ref().map(|lost| {
            json!({
                "lostFrom": lost.lost_from,
                "lostTo": lost.lost_to,
                "oldChainHash": lost.old_chain_hash.map(|h| h.to_hex()),
                "headSequence": lost.head_sequence,
                "newChainHash": lost.new_chain_hash.to_hex(),
                "snapshots": lost.snapshots,
                "recordedAt": self.recorded_at,
            })
        });
        json!({ "rollback": rollback, "sequence": self.sequence, "digest": self.digest.to_hex() })
    }
}

/// `ledger projections rebuild [--accept-rollback]`: rebuilds the read
/// models from sequence 0 and saves them. When snapshots do not match the
/// log it refuses unless `accept_rollback`, and then first appends
/// `LogRollbackAccepted` (once: a re-run after an interruption is answered
/// from the first append) and drops the snapshots that do not match.
pub async fn rebuild(
    log: &EventLog,
    models: &ReadModelDb,
    catalog: &Catalog,
    now: Timestamp,
    accept_rollback: bool,
) -> anyhow::Result<Rebuilt> {
    let all = usecases::readmodels::all_projections(catalog);
    let names: Vec<&str> = all.iter().map(|projection| projection.name()).collect();
    let mut rollbacks = projections::check_snapshots(log).await?;
    rollbacks.extend(projections::db::check_checkpoints(models, log, &names).await?);
    let mut rebuilt = Rebuilt { rollback: None, recorded_at: None, sequence: 0, digest: Hash([0; 32]) };
    if !rollbacks.is_empty() {
        let lost = lost_range(log, models, &rollbacks).await?;
        if !accept_rollback {
            let reasons: Vec<String> = rollbacks.iter().map(ToString::to_string).collect();
            anyhow::bail!(
                "the log lost sequences {} to {} that the read models had applied:\n{}\nnothing was changed; \
                 to accept the loss, record it and rebuild, run again with --accept-rollback",
                lost.lost_from,
                lost.lost_to,
                reasons.join("\n")
            );
        }
        rebuilt.recorded_at = Some(record(log, &lost, now).await?);
        for rollback in rollbacks.iter().filter(|rollback| !names.contains(&rollback.projection.as_str())) {
            log.delete_snapshot(&rollback.projection).await?;
        }
        rebuilt.rollback = Some(lost);
    }
    for projection in &all {
        models.reset(projection.name(), projection.tables()).await?;
    }
    let tables: Vec<Table> = all.iter().flat_map(|projection| projection.tables().iter().copied()).collect();
    rebuilt.sequence = Runner::new(log.clone(), models.clone(), all)?.catch_up().await?;
    rebuilt.digest = digest_of(models, &tables).await?;
    Ok(rebuilt)
}

/// The range the log lost, from the checkpoints that do not match it. The
/// audit index keeps a leaf hash per record it applied, so where it is
/// among them the first lost sequence is exact (the first record the log
/// now holds otherwise); without it, the first lost sequence is taken as
/// the one after the head, or 1 when the log holds another record at a
/// checkpoint and nothing tells where the histories parted.
async fn lost_range(
    log: &EventLog,
    models: &ReadModelDb,
    rollbacks: &[Rollback],
) -> anyhow::Result<LogRollbackAccepted> {
    let head = log.head().await?;
    let fallback = rollbacks
        .iter()
        .map(|rollback| if head.sequence < rollback.applied { head.sequence + 1 } else { 1 })
        .min()
        .expect("at least one rollback");
    // The audit index keeps the leaf hash of every record it applied.
    let audited = rollbacks.iter().find(|rollback| rollback.projection == projections::models::audit::NAME);
    let from_tables = match audited {
        Some(audited) => {
            let to = head.sequence.min(audited.applied);
            Some(projections::db::first_divergence(models, log, to).await?.unwrap_or(to + 1))
        }
        None => None,
    };
    let lost_from = from_tables.unwrap_or(fallback);
    let furthest = rollbacks.iter().max_by_key(|rollback| rollback.applied).expect("at least one rollback");
    Ok(LogRollbackAccepted {
        lost_from,
        lost_to: furthest.applied,
        old_chain_hash: furthest.applied_chain,
        head_sequence: head.sequence,
        new_chain_hash: head.chain_hash,
        snapshots: rollbacks.iter().map(|rollback| rollback.projection.clone()).collect(),
    })
}

/// Appends `LogRollbackAccepted` to `checkpoint/log`, once per loss: the
/// idempotency key names the lost checkpoint and its chain hash, so a
/// re-run after an interruption (the head has moved by this very record)
/// is answered with the first append. Returns its sequence.
async fn record(log: &EventLog, lost: &LogRollbackAccepted, now: Timestamp) -> anyhow::Result<u64> {
    let stream_id = StreamId::new(CHECKPOINT_STREAM).expect("a valid stream id");
    let chain = lost.old_chain_hash.map_or_else(|| "unknown".to_owned(), |h| h.to_hex());
    let key = format!("log-rollback:{}:{chain}", lost.lost_to);
    let digest = Hash(
        *blake3::Hasher::new_derive_key("ledger 2026-11-29 log rollback key v1")
            .update(key.as_bytes())
            .finalize()
            .as_bytes(),
    );
    let metadata =
        Metadata { actor: Some("ledger projections rebuild --accept-rollback".into()), ..Default::default() };
    let event = CheckpointEvent::LogRollbackAccepted(lost.clone());
    let command = Command {
        idempotency: Some(Idempotency { key, digest }),
        stream_id,
        expected: ExpectedRevision::Any,
        events: vec![NewEvent::from_event(&event, crate::command::new_event_id(), now, &metadata)],
    };
    let appended =
        log.append_one(command).await?.map_err(|e| anyhow::anyhow!("the accepted rollback was not recorded: {e}"))?;
    Ok(appended.first_sequence)
}
