//! Revenue analytics (issue 15 part 3): `GET /api/v1/analytics/revenue`,
//! as JSON or as a CSV export, for the vendor's staff (operator, auditor).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use usecases::views::revenue::RevenueView;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Consistency;
use crate::openapi::ProblemResponses;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevenueQuery {
    month: Option<String>,
    format: Option<String>,
    #[serde(rename = "minSequence")]
    _min_sequence: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/analytics/revenue",
    tag = "ledger",
    params(
        ("month" = Option<String>, Query, description = "`YYYY-MM`, not after this month; default this month"),
        ("format" = Option<String>, Query, description = "`json` (the default) or `csv`"),
    ),
    responses(
        (status = 200, description = "The month's revenue figures (operator, auditor): MRR and ARR, new, expansion, contraction and churned MRR, logo and revenue churn, net revenue retention over 12 months, ARPA, usage and overage billed by tier, MRR by month; README \"Revenue analytics\" defines them. With format=csv, the same as text/csv.",
            content((RevenueView = "application/json"), (String = "text/csv"))),
        ProblemResponses,
    ),
)]
pub async fn revenue(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Query(query): Query<RevenueQuery>,
) -> Result<Response, ApiError> {
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::Validation(format!("format must be json or csv, not {other:?}"))),
    };
    let view: RevenueView = usecases::revenue::report(&state, &caller, query.month.as_deref()).await?;
    if !csv {
        return Ok(Json(view).into_response());
    }
    let filename = format!("attachment; filename=\"revenue-{}.csv\"", view.month);
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, filename)],
        view.csv(),
    )
        .into_response())
}
