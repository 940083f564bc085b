//! Data-subject requests (issue 16; `usecases::privacy`): a staff admin's
//! erasure (`POST /api/v1/privacy/erasures`) and export (`GET
//! /api/v1/privacy/exports`) of a user's, an organization's or a staff
//! user's personal data. Everyone else is refused with 403 before anything
//! is read; each caller is rate limited.

use std::sync::LazyLock;

use axum::Json;
use axum::extract::{Query, State};
use domain::privacy::{ErasureReason, Subject};
use domain::staff::{StaffId, StaffPermission};
use domain::{OrganizationId, UserId};
use serde::Deserialize;
use usecases::limits::KeyedLimiter;
use usecases::privacy::{self, ErasureOutcome, ExportPage};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{CommandRequest, Consistency};
use crate::openapi::{Problem, ProblemResponses};

/// Privacy requests (erasures and export pages) one caller may make a
/// minute, on each server process: an export of a long history takes
/// many pages, an erasure is rare.
pub const PRIVACY_REQUESTS_PER_CALLER_PER_MINUTE: u32 = 120;
/// Callers the limiter remembers at most (staff admins and their tokens
/// are few).
const LIMITER_CALLERS_MAX: usize = 1_000;

static LIMITER: LazyLock<KeyedLimiter<String>> = LazyLock::new(|| {
    let quota = std::num::NonZeroU32::new(PRIVACY_REQUESTS_PER_CALLER_PER_MINUTE).map(governor::Quota::per_minute);
    KeyedLimiter::new("privacy_requests_per_caller", quota, LIMITER_CALLERS_MAX)
});

/// A staff admin's, and within the caller's allowance; 403 or 429 otherwise.
fn admit(caller: &Caller) -> Result<(), ApiError> {
    caller.require(StaffPermission::ManageStaff)?;
    LIMITER.check(&caller.scope()).map_err(|seconds| ApiError::RateLimited {
        limit: Some(LIMITER.name()),
        retry_after_seconds: seconds,
        message: format!("at most {PRIVACY_REQUESTS_PER_CALLER_PER_MINUTE} privacy requests a minute"),
    })
}

/// Whose data: exactly one of the three.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum SubjectBody {
    /// One user of an organization.
    User { organization_id: Uuid, user_id: Uuid },
    /// An organization and every one of its users.
    Organization { organization_id: Uuid },
    /// One of the vendor's staff users.
    Staff { staff_id: Uuid },
}

impl From<SubjectBody> for Subject {
    fn from(body: SubjectBody) -> Self {
        match body {
            SubjectBody::User { organization_id, user_id } => {
                Subject::User { organization_id: OrganizationId(organization_id), user_id: UserId(user_id) }
            }
            SubjectBody::Organization { organization_id } => {
                Subject::Organization { organization_id: OrganizationId(organization_id) }
            }
            SubjectBody::Staff { staff_id } => Subject::Staff { staff_id: StaffId(staff_id) },
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErasureRequest {
    subject: SubjectBody,
    /// `request` (a data subject's or the customer's request; the default).
    #[schema(pattern = "^request$")]
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/privacy/erasures",
    tag = "ledger",
    request_body = ErasureRequest,
    responses(
        (status = 200, body = ErasureOutcome, description = "Erase the subject's personal data: every record holding it is named by `SubjectErased` events on `privacy/log` (at `erasureSequences`) and erased, keeping each record's facts, so every command and query on the organization behaves as before; the read models are purged, the users' portal sessions ended, an organization's unsent notifications dropped and its Stripe customer redacted. Erasing again changes nothing and answers the same. A staff admin's; at most 120 privacy requests a minute per caller (429)."),
        ProblemResponses,
        (status = 409, body = Problem, content_type = "application/problem+json", description = "subject_active (deactivate the user, or disable the staff user, first), subscription_live (the organization's subscription must end first), erasure_in_progress; nothing was erased"),
    ),
)]
pub async fn erase(
    State(state): State<AppState>,
    request: CommandRequest<ErasureRequest>,
) -> Result<Json<ErasureOutcome>, ApiError> {
    let CommandRequest { caller, context, body } = request;
    admit(&caller)?;
    let reason = match body.reason.as_deref() {
        None | Some("request") => ErasureReason::Request,
        Some(other) => return Err(ApiError::Validation(format!("reason must be request, not {other:?}"))),
    };
    let subject = Subject::from(body.subject);
    Ok(Json(privacy::erase(&state, &caller, &context, &state.stripe, &subject, reason).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportQuery {
    user: Option<String>,
    organization: Option<Uuid>,
    staff: Option<Uuid>,
    after: Option<u64>,
    limit: Option<usize>,
    #[serde(rename = "minSequence")]
    _min_sequence: Option<u64>,
}

/// The one subject a query names.
fn subject_of(query: &ExportQuery) -> Result<Subject, ApiError> {
    let subject = match (&query.user, query.organization, query.staff) {
        (Some(user), None, None) => {
            let (organization, user) =
                user.split_once('/').ok_or_else(|| ApiError::Validation("user is ORGANIZATION_ID/USER_ID".into()))?;
            let parse = |text: &str| Uuid::parse_str(text).map_err(|_| ApiError::Validation("user: not UUIDs".into()));
            Subject::User { organization_id: OrganizationId(parse(organization)?), user_id: UserId(parse(user)?) }
        }
        (None, Some(organization), None) => Subject::Organization { organization_id: OrganizationId(organization) },
        (None, None, Some(staff)) => Subject::Staff { staff_id: StaffId(staff) },
        _ => return Err(ApiError::Validation("name exactly one of user, organization, staff".into())),
    };
    Ok(subject)
}

#[utoipa::path(
    get,
    path = "/api/v1/privacy/exports",
    tag = "ledger",
    params(
        ("user" = Option<String>, Query, description = "`ORGANIZATION_ID/USER_ID`: a user's data; or"),
        ("organization" = Option<Uuid>, Query, description = "an organization's and its users' data; or"),
        ("staff" = Option<Uuid>, Query, description = "a staff user's data"),
        ("after" = Option<u64>, Query, description = "The `next` of the previous page: records after this sequence"),
        ("limit" = Option<usize>, Query, description = "Records per page, 1 to 500 (default 100)"),
    ),
    responses(
        (status = 200, body = ExportPage, description = "Everything the ledger holds about the subject, a page at a time: each record holding their data (sequence, stream, type, occurredAt, the decoded event and metadata; an erased record as the facts it kept, with `erased: true`), and on the first page what the read models hold (profile, portal sessions). `next` is absent on the last page; a page may list fewer records than `limit` and still have a `next` (at most 50,000 records are looked at per page). A staff admin's; at most 120 privacy requests a minute per caller (429)."),
        ProblemResponses,
    ),
)]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Query(query): Query<ExportQuery>,
) -> Result<Json<ExportPage>, ApiError> {
    admit(&caller)?;
    let subject = subject_of(&query)?;
    Ok(Json(privacy::export(&state, &caller, &subject, query.after.unwrap_or(0), query.limit).await?))
}
