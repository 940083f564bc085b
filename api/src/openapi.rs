//! The OpenAPI document, served at `GET /api/v1/openapi.json`.
//!
//! Each handler carries its `#[utoipa::path]`; this lists them. A test
//! checks that every route of the router is in the document.
//!
//! # Error responses, declared once
//!
//! Every error is a [`Problem`] (`application/problem+json`), and the
//! statuses a route can answer with one are declared here, once, as
//! `utoipa::IntoResponses` types; a route names one of them in its
//! `responses(...)` and adds only its own success and, where it says more
//! than the shared words, its own line for a status:
//!
//! ```text
//! #[utoipa::path(
//!     post,
//!     path = "/api/v1/billing/runs",
//!     request_body = BillingRunRequest,
//!     responses(
//!         (status = 200, description = "…", body = BillingRun),
//!         ProblemResponses,
//!         (status = 409, description = "month_not_ended: …", body = Problem, content_type = "application/problem+json"),
//!     ),
//! )]
//! ```
//!
//! [`ProblemResponses`] is for routes that take a credential (401 and 403
//! among them), [`PublicProblemResponses`] for those that take none (the
//! webhook, checkout, validation, usage reports). A route's own line for a
//! status listed after the shared type replaces the shared one (utoipa
//! keeps the last response given for a status). The schemas of the views
//! a route answers are registered in `components(schemas(...))` below.
//!
//! Two refusals belong to no route: a path the API does not serve (the
//! router's fallback, 404 `not_found`) and a method a path does not take
//! (405 `method_not_allowed`, with `Allow`). OpenAPI has no "any other
//! path", so they are declared once as the components responses
//! [`Unrouted`] and [`MethodNotAllowed`]; the black-box tests check every
//! reply against this document, those two included.

use utoipa::OpenApi;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::{Ref, RefOr};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ledger",
        description = "Event-sourced billing, license and usage ledger. Errors are application/problem+json with a stable `code`; every command answers the log `sequence` it was appended at; every query accepts `?minSequence=N`. Authenticate with `Authorization: Bearer <token>`."
    ),
    paths(
        routes::commands::create_organization,
        routes::commands::add_user,
        routes::sso::put, routes::sso::get, routes::sso::delete,
        routes::branding::put, routes::branding::get, routes::branding::delete,
        routes::commands::deactivate_user,
        routes::commands::change_role,
        routes::commands::issue_token,
        routes::commands::revoke_token,
        routes::staff::add, routes::staff::list, routes::staff::change,
        routes::staff::issue_token, routes::staff::tokens, routes::staff::revoke_token,
        routes::commands::create_subscription,
        routes::commands::upgrade,
        routes::commands::preview_change,
        routes::commands::downgrade,
        routes::commands::cancel,
        routes::commands::add_addon,
        routes::commands::end_addon,
        routes::commands::reprice_addon,
        routes::commands::set_floating,
        routes::commands::revoke_license,
        routes::queries::organizations,
        routes::queries::subscription,
        routes::queries::licenses,
        routes::queries::enforcement,
        routes::queries::audit,
        routes::log::head,
        routes::log::keep,
        routes::log::inclusion,
        routes::log::consistency,
        routes::ops::keys,
        routes::ops::test_clock,
        routes::ops::health,
        routes::ops::ready,
        routes::ops::metrics,
        routes::license::validate,
        routes::license::release_deployment,
        routes::airgap::activate_offline,
        routes::airgap::import_usage,
        routes::license::reset_deployment_key,
        routes::license::challenge,
        routes::usage::report,
        routes::usage::usage,
        routes::billing::billing_run,
        routes::billing_runs::preview,
        routes::billing_runs::start,
        routes::billing_runs::recent,
        routes::billing_runs::progress,
        routes::billing::invoices,
        routes::analytics::revenue,
        routes::customers::search,
        routes::customers::timeline,
        routes::billing::void_invoice,
        routes::billing::issue_credit_note,
        routes::billing::credit_notes,
        routes::resend::resend,
        routes::stripe::webhook,
        routes::stripe::checkout,
        routes::stripe_ops::syncs,
        routes::stripe_ops::retry,
        routes::stripe_ops::reconciliation,
        routes::privacy::erase,
        routes::privacy::export,
        serve,
    ),
    // Schemas named only by `IntoResponses` types (not collected from the
    // paths' bodies); the views a route answers are collected from its
    // `body = …`.
    components(schemas(Problem), responses(Unrouted, MethodNotAllowed)),
)]
pub struct ApiDoc;

/// The body of every error: RFC 9457 problem details with a stable `code`
/// (`crate::error::ApiError` writes it; this describes it for the document).
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "describes the problem+json body for the OpenAPI document; never built")]
pub struct Problem {
    /// The status's reason phrase, e.g. `Conflict`.
    title: String,
    status: u16,
    /// What went wrong, for a person.
    detail: String,
    /// What went wrong, for a program; stable (docs/API.md): `validation_failed`,
    /// `unauthorized`, `forbidden`, `not_found`, `conflict` or the rule's own
    /// code, `idempotency_conflict`, `payload_too_large`, `rate_limited`,
    /// `projection_lagging`, `unavailable`, `read_model_failed`, `internal`.
    #[schema(example = "validation_failed")]
    code: String,
    /// Which limit a 429 is about (`validations_per_address_per_minute`,
    /// `reports_per_day`, …), so a client can tell a wait from a refusal
    /// that waiting cannot lift; absent otherwise.
    #[schema(example = "reports_per_day")]
    limit: Option<String>,
}

/// The errors a route that takes a credential may answer.
#[derive(utoipa::IntoResponses)]
pub enum ProblemResponses {
    /// validation_failed: a malformed request or a value out of bounds; nothing was recorded.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// unauthorized: no credential, or not a valid one.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// forbidden: this credential may not do that.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// not_found: unknown, or another organization's.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// A rule refused the command (its own `code`), or idempotency_conflict.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// request_timeout: the request, or a pause in its body, took longer than the server waits.
    #[response(status = 408, content_type = "application/problem+json")]
    RequestTimeout(Problem),
    /// payload_too_large: the body is over the limit.
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Problem),
    /// rate_limited, with Retry-After.
    #[response(status = 429, content_type = "application/problem+json")]
    RateLimited(Problem),
    /// internal: a bug; the detail is in the server's log, never here.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// projection_lagging (minSequence not reached in 5 s), read_model_failed or unavailable.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The errors a public route (no credential) may answer.
#[derive(utoipa::IntoResponses)]
pub enum PublicProblemResponses {
    /// validation_failed: a malformed request or a value out of bounds; nothing was recorded.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// request_timeout: the request, or a pause in its body, took longer than the server waits.
    #[response(status = 408, content_type = "application/problem+json")]
    RequestTimeout(Problem),
    /// payload_too_large: the body is over the limit.
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Problem),
    /// rate_limited, with Retry-After.
    #[response(status = 429, content_type = "application/problem+json")]
    RateLimited(Problem),
    /// internal: a bug; the detail is in the server's log, never here.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// unavailable or read_model_failed.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The answer to a path the API does not serve: 404 `not_found`.
pub struct Unrouted;

impl<'r> utoipa::ToResponse<'r> for Unrouted {
    fn response() -> (&'r str, RefOr<Response>) {
        ("Unrouted", problem_response("not_found: the API serves no such path.").into())
    }
}

/// The answer to a method a path does not take: 405 `method_not_allowed`.
pub struct MethodNotAllowed;

impl<'r> utoipa::ToResponse<'r> for MethodNotAllowed {
    fn response() -> (&'r str, RefOr<Response>) {
        let allow = HeaderBuilder::new()
            .schema(Some(Object::builder().schema_type(Type::String)))
            .description(Some("The methods the path takes, e.g. `POST`."))
            .build();
        let response =
            ResponseBuilder::from(problem_response("method_not_allowed: the path does not take this method."))
                .header("Allow", allow)
                .build();
        ("MethodNotAllowed", response.into())
    }
}

/// A response whose body is a [`Problem`], as problem+json.
fn problem_response(description: &str) -> Response {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    ResponseBuilder::new().description(description).content("application/problem+json", content).build()
}

/// The document as JSON. It describes itself only as an object: its shape
/// is OpenAPI 3.1's.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "ledger",
    responses(
        (status = 200, body = Object, description = "This document (OpenAPI 3.1); no credential."),
        PublicProblemResponses,
    ),
)]
pub async fn serve() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
