//! The SSO settings page (issue 14): an organization's admin sets, reads
//! and removes its OpenID Connect issuer in the browser, through the use
//! cases of `PUT/GET/DELETE /api/v1/organizations/{id}/sso` (enterprise
//! tier, the issuer URL checked, the client secret sealed). The secret is
//! a password field posted once and never shown or logged: the form type
//! has no `Debug`, the page answers only whether one is set.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::OrganizationId;
use serde::Deserialize;
use usecases::sso::{SsoInput, SsoView};

use crate::pages::Nav;
use crate::plan::admin;
use crate::session::Signed;
use crate::{Portal, PortalError};

#[derive(Template, WebTemplate)]
#[template(path = "sso_settings.html")]
pub struct SsoSettingsPage {
    nav: Nav,
    current: Option<SsoView>,
    /// The redirect URI to register at the issuer.
    callback: String,
    message: Option<String>,
    error: Option<String>,
}

async fn settings_page(
    portal: &Portal,
    signed: &Signed,
    org: OrganizationId,
    message: Option<String>,
    error: Option<String>,
) -> Result<SsoSettingsPage, PortalError> {
    let current = match usecases::sso::get(&portal.ledger, &signed.caller(), org).await {
        Ok(view) => Some(view),
        Err(usecases::Error::NotFound) => None,
        Err(other) => return Err(other.into()),
    };
    let callback = format!("{}/portal/sso/callback", portal.settings.portal_url.trim_end_matches('/'));
    Ok(SsoSettingsPage { nav: Nav::of(signed, "sso"), current, callback, message, error })
}

/// The page: admins only (others "Not allowed", as the API's roles table).
pub async fn page(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
) -> Result<SsoSettingsPage, PortalError> {
    let org = admin(&signed, org)?;
    settings_page(&portal, &signed, org, None, None).await
}

/// The settings form. No `Debug`: it holds the client secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoForm {
    #[serde(default)]
    csrf: String,
    issuer_url: String,
    client_id: String,
    client_secret: String,
}

/// Sets the settings; a refusal (the tier, a bad issuer) is shown on the
/// page with its status (409, 400), and the secret is not echoed.
pub async fn save(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    Form(input): Form<SsoForm>,
) -> Result<Response, PortalError> {
    signed.check_csrf(&input.csrf)?;
    let org = admin(&signed, org)?;
    let SsoForm { issuer_url, client_id, client_secret, .. } = input;
    let settings = SsoInput { issuer_url, client_id, client_secret };
    let allow_loopback = portal.sso_allows_loopback_issuer();
    let (status, message, error) =
        match usecases::sso::configure(&portal.ledger, &signed.caller(), org, settings, allow_loopback).await {
            Ok(view) => (StatusCode::OK, Some(format!("SSO through {} is set.", view.issuer_url)), None),
            Err(usecases::Error::Validation(why)) => (StatusCode::BAD_REQUEST, None, Some(why)),
            Err(usecases::Error::Conflict { message, .. }) => (StatusCode::CONFLICT, None, Some(message)),
            Err(other) => return Err(other.into()),
        };
    Ok((status, settings_page(&portal, &signed, org, message, error).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
}

/// Removes the settings: sessions stay, new SSO sign-ins are refused.
pub async fn remove(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    Form(input): Form<RemoveForm>,
) -> Result<SsoSettingsPage, PortalError> {
    signed.check_csrf(&input.csrf)?;
    let org = admin(&signed, org)?;
    usecases::sso::remove(&portal.ledger, &signed.caller(), org).await?;
    let message = Some("SSO is removed; new SSO sign-ins are refused.".to_owned());
    settings_page(&portal, &signed, org, message, None).await
}
