//! The OpenAPI document, served at `GET /api/v1/openapi.json`.
//!
//! Each handler carries its `#[utoipa::path]`; this lists them. A test
//! checks that every route of the router is in the document.

use utoipa::OpenApi;

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
        routes::commands::deactivate_user,
        routes::commands::issue_token,
        routes::commands::revoke_token,
        routes::commands::create_subscription,
        routes::commands::upgrade,
        routes::commands::downgrade,
        routes::commands::cancel,
        routes::commands::add_addon,
        routes::commands::end_addon,
        routes::commands::reprice_addon,
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
        routes::usage::report,
        routes::usage::usage,
        routes::billing::billing_run,
        routes::billing::invoices,
        routes::stripe::webhook,
        routes::stripe::checkout,
    )
)]
pub struct ApiDoc;

/// The document as JSON.
pub async fn serve() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
