//! Air-gapped sites: an activation request in, a license file out; a usage
//! export in. The HTTP side of `usecases::airgap` (the files are
//! `domain::airgap`'s).

use axum::Json;
use axum::extract::State;
use serde_json::value::RawValue;
use usecases::airgap::UsageImportResponse;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::CommandRequest;
use crate::openapi::{Problem, ProblemResponses};

/// A signed file as it travels (`domain::airgap::SignedFile`): the request,
/// the license file or the usage export, each a JSON object of three members.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OfflineFile {
    /// `ledger-offline-activation-request`, `ledger-offline-license` or `ledger-usage-export`.
    pub format: String,
    /// base64url (no padding) of the JSON document's bytes.
    pub payload: String,
    /// base64url (no padding) of the Ed25519 signature over the format's domain prefix ‖ the bytes.
    pub signature: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/licenses/offline-activations",
    tag = "ledger",
    request_body(content = OfflineFile, description = "The deployment's activation request file, as written."),
    responses(
        (status = 200, body = OfflineFile, description = "The license file (format ledger-offline-license), signed with the lease key, bound to the request's deployment key and nonce, valid to the key's end or --offline-license-days (90) days, whichever is first. Org admin or operator. Records OfflineActivated, which takes a deployment place as an activation does."),
        ProblemResponses,
        (status = 400, body = Problem, content_type = "application/problem+json", description = "offline_file_malformed: not an activation request file; offline_file_altered: its signature does not verify with the deployment key it names"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "offline_file_foreign: another license's key, or a deployment bound to another key; offline_file_replayed: its nonce was used, or it is no newer than the last request accepted from the deployment; offline_file_expired: made more than 30 days ago; license_not_valid: the key is revoked, expired, suspended or has no place left"),
    ),
)]
pub async fn activate_offline(
    State(state): State<AppState>,
    request: CommandRequest<Box<RawValue>>,
) -> Result<Json<domain::airgap::SignedFile>, ApiError> {
    let bytes = request.body.get().as_bytes();
    let settings = state.usage.settings;
    let file = usecases::airgap::activate_offline(&state, &request.caller, &request.context, bytes, &settings).await?;
    Ok(Json(file))
}

#[utoipa::path(
    post,
    path = "/api/v1/usage/imports",
    tag = "ledger",
    request_body(content = OfflineFile, description = "The deployment's usage export file, as written."),
    responses(
        (status = 200, body = UsageImportResponse, description = "Each day of the export recorded as the deployment's usage report (the latest of a day replaces the earlier; a day already invoiced becomes a late-usage adjustment), with OfflineUsageImported. Org admin or operator. The correction window runs from the import: any day from the deployment's first offline activation to its license file's end, until --usage-correction-days-max (35) days after that end."),
        ProblemResponses,
        (status = 400, body = Problem, content_type = "application/problem+json", description = "offline_file_malformed; offline_file_altered; validation_failed: a day outside the license file's reach, or a metric out of bounds"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "offline_file_foreign: another license, a deployment not activated by a license file, another deployment key or another license file; offline_file_replayed: the export id was imported, or the export is no newer than the last imported; offline_file_expired: the license file ended more than the correction window ago"),
        (status = 429, body = Problem, content_type = "application/problem+json", description = "rate_limited (limit reports_per_day): a day of the export has had its reports"),
    ),
)]
pub async fn import_usage(
    State(state): State<AppState>,
    request: CommandRequest<Box<RawValue>>,
) -> Result<Json<UsageImportResponse>, ApiError> {
    let bytes = request.body.get().as_bytes();
    let settings = state.usage.settings;
    let imported = usecases::airgap::import_usage(&state, &request.caller, &request.context, bytes, &settings).await?;
    Ok(Json(imported))
}
