//! The log's head, signed checkpoints and Merkle proofs over HTTP
//! (`usecases::log`): the routes read the caller and the query, and answer.

use axum::Json;
use axum::extract::{RawQuery, State};
use usecases::log;
use usecases::views::log::{ConsistencyProof, Head, InclusionProof, KeptCheckpoint};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Consistency;
use crate::openapi::{Problem, ProblemResponses};

/// `name=value` pairs of a query string; the values here are all numbers.
fn number(query: &Option<String>, name: &str) -> Result<Option<u64>, ApiError> {
    query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| {
            value.parse::<u64>().map_err(|_| ApiError::Validation(format!("{name} must be a whole number")))
        })
        .transpose()
}

#[utoipa::path(
    get,
    path = "/api/v1/log/head",
    tag = "ledger",
    responses(
        (status = 200, body = Head, description = "The log head and a checkpoint of it signed now (operator, auditor). `checkpoint` is a signed note (ARCHITECTURE.md, \"Checkpoint notes\"); `keptCheckpoint` the latest one kept in the log, with its `size` and `sequence`."),
        ProblemResponses,
        (status = 503, body = Problem, content_type = "application/problem+json", description = "unavailable: the log does not verify, so nothing is signed"),
    ),
)]
pub async fn head(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
) -> Result<Json<Head>, ApiError> {
    Ok(Json(log::head(&state, &state.log_tree, &caller).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/log/checkpoints",
    tag = "ledger",
    responses(
        (status = 200, body = KeptCheckpoint, description = "Signs a checkpoint of the head and keeps it in the log, unless nothing came since the last kept one (operator); `sequence` is where it is kept."),
        ProblemResponses,
        (status = 404, body = Problem, content_type = "application/problem+json", description = "not_found: the log is empty"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "unavailable: the log does not verify, so nothing is signed"),
    ),
)]
pub async fn keep(State(state): State<AppState>, caller: Caller) -> Result<Json<KeptCheckpoint>, ApiError> {
    Ok(Json(log::keep(&state, &state.log_tree, &caller).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/log/proof/inclusion",
    tag = "ledger",
    params(
        ("sequence" = u64, Query, minimum = 1, description = "The record to prove."),
        ("size" = Option<u64>, Query, description = "The tree size (a kept checkpoint's) to prove it in; the head when absent, with a checkpoint of the head signed now."),
    ),
    responses(
        (status = 200, body = InclusionProof, description = "An inclusion proof (operator, auditor; an organization's analysts and admins for its own events). `record` has the header fields and content hashes to recompute the leaf hash; `proof` the hex hashes from the leaf up."),
        ProblemResponses,
        (status = 404, body = Problem, content_type = "application/problem+json", description = "not_found: no such record, or not the caller's"),
    ),
)]
pub async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    RawQuery(query): RawQuery,
) -> Result<Json<domain::proof::InclusionProof>, ApiError> {
    let sequence = number(&query, "sequence")?.ok_or(ApiError::Validation("sequence is required".into()))?;
    let size = number(&query, "size")?;
    Ok(Json(log::inclusion(&state, &state.log_tree, &caller, sequence, size).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/log/proof/consistency",
    tag = "ledger",
    params(
        ("from" = u64, Query, description = "The earlier tree size (a kept checkpoint's)."),
        ("to" = Option<u64>, Query, description = "The later tree size; the head when absent, with a checkpoint of the head signed now."),
    ),
    responses(
        (status = 200, body = ConsistencyProof, description = "A consistency proof (operator, auditor), `proof` the hex hashes of RFC 9162 2.1.4."),
        ProblemResponses,
        (status = 404, body = Problem, content_type = "application/problem+json", description = "not_found: a size beyond the head"),
    ),
)]
pub async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    RawQuery(query): RawQuery,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let from = number(&query, "from")?.ok_or(ApiError::Validation("from is required".into()))?;
    let to = number(&query, "to")?;
    Ok(Json(log::consistency(&state, &state.log_tree, &caller, from, to).await?))
}
