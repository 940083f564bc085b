//! White-label branding in the portal (issue 14): the admin's form, and
//! what every page of a branded organization carries: its display name and
//! logo in the header, its colour through a served stylesheet (the CSP
//! allows no inline style).
//!
//! Both files are named by their content, so they are cached for good:
//! the stylesheet by the colour (`/portal/static/brand/{rrggbb}.css`, made
//! from the URL alone), the logo by its digest
//! (`/portal/static/brand/{org}/{digest}.png`, answered only while it is
//! that organization's applied logo).

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::multipart::Field;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use domain::OrganizationId;
use domain::branding::LOGO_BYTES_MAX;
use serde::Deserialize;

use crate::pages::{Nav, context};
use crate::session::Signed;
use crate::{Portal, PortalError};

/// The largest branding form: the logo and a few short fields.
pub const BRANDING_FORM_BYTES_MAX: usize = LOGO_BYTES_MAX + 16 * 1024;
/// The longest text field of the branding form.
const FORM_TEXT_BYTES_MAX: usize = 1024;
/// How long the content-named files may be cached: a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// What a branded organization's pages show.
#[derive(Debug, Clone)]
pub struct Brand {
    pub name: String,
    pub css_url: String,
    pub logo_url: Option<String>,
}

/// The brand applied to an organization's pages, if any (set, and its tier
/// has the feature).
pub async fn brand_of(portal: &Portal, organization_id: OrganizationId) -> Result<Option<Brand>, PortalError> {
    let Some(row) = usecases::branding::applied(&portal.ledger, organization_id).await? else { return Ok(None) };
    Ok(Some(Brand {
        name: row.display_name,
        css_url: format!("/portal/static/brand/{}.css", row.primary_color.trim_start_matches('#')),
        logo_url: row.logo.map(|logo| format!("/portal/static/brand/{organization_id}/{}.png", logo.digest)),
    }))
}

/// The text colour (black or white) with the higher contrast on `#rrggbb`
/// (WCAG's relative luminance): at least 4.58:1 either way.
fn text_on(color: &str) -> &'static str {
    let channel = |i: usize| {
        let c = f64::from(u8::from_str_radix(&color[i..i + 2], 16).unwrap_or(0)) / 255.0;
        if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    let luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) { "#000000" } else { "#ffffff" }
}

/// `/portal/static/brand/{rrggbb}.css`: the header in the colour, its text
/// in black or white, whichever reads better.
pub async fn stylesheet(Path(file): Path<String>) -> Result<Response, PortalError> {
    let hex = file.strip_suffix(".css").ok_or(PortalError::NotFound)?;
    let color = domain::branding::color(&format!("#{hex}")).map_err(|_| PortalError::NotFound)?;
    let text = text_on(&color);
    let css = format!(
        "header {{ background: {color}; color: {text}; }}\nheader a, header span, header .org-brand {{ color: {text}; }}\n\
         header .brand {{ display: none; }}\nnav a[aria-current=\"page\"] {{ text-decoration-thickness: 0.2em; }}\n"
    );
    Ok(([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, IMMUTABLE)], css).into_response())
}

/// `/portal/static/brand/{org}/{digest}.png`: the organization's applied
/// logo, as the PNG the server wrote.
pub async fn logo(
    State(portal): State<Arc<Portal>>,
    Path((org, file)): Path<(uuid::Uuid, String)>,
) -> Result<Response, PortalError> {
    let digest = file.strip_suffix(".png").ok_or(PortalError::NotFound)?;
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PortalError::NotFound);
    }
    let png = usecases::branding::logo(&portal.ledger, OrganizationId(org), digest).await?;
    let png = png.ok_or(PortalError::NotFound)?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(usecases::branding::LOGO_CONTENT_TYPE)),
        (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    Ok((headers, png).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "branding.html")]
pub struct BrandingPage {
    nav: Nav,
    allowed: bool,
    current: Option<usecases::branding::BrandingView>,
    logo_url: Option<String>,
    message: Option<String>,
    error: Option<String>,
}

async fn page(
    portal: &Portal,
    signed: &Signed,
    message: Option<String>,
    error: Option<String>,
) -> Result<BrandingPage, PortalError> {
    let org = signed.user.organization_id;
    let allowed = usecases::branding::tier_allows(&portal.ledger, org).await?;
    let current = match usecases::branding::get(&portal.ledger, &signed.caller(), org).await {
        Ok(view) => Some(view),
        Err(usecases::Error::NotFound) => None,
        Err(other) => return Err(other.into()),
    };
    let logo_url = current
        .as_ref()
        .and_then(|c| c.logo.as_ref())
        .filter(|_| allowed)
        .map(|logo| format!("/portal/static/brand/{org}/{}.png", logo.digest));
    Ok(BrandingPage { nav: Nav::of(signed, "branding"), allowed, current, logo_url, message, error })
}

#[derive(Deserialize)]
pub struct Saved {
    saved: Option<u8>,
}

/// The branding form (admins only, as the API's roles table).
pub async fn form(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    Query(saved): Query<Saved>,
) -> Result<BrandingPage, PortalError> {
    signed.organization(org)?;
    if !signed.is_admin() {
        return Err(PortalError::Forbidden);
    }
    let message = saved.saved.map(|_| "The branding was saved.".to_owned());
    page(&portal, &signed, message, None).await
}

/// The branding form's fields.
#[derive(Default)]
struct BrandingForm {
    csrf: String,
    display_name: String,
    primary_color: String,
    logo: Option<Vec<u8>>,
}

/// Reads one field, refusing it past `max` bytes without reading further.
async fn bounded(mut field: Field<'_>, max: usize) -> Result<Option<Vec<u8>>, PortalError> {
    let mut bytes = Vec::new();
    while let Some(chunk) =
        field.chunk().await.map_err(|_| PortalError::Invalid("The form could not be read.".into()))?
    {
        if bytes.len() + chunk.len() > max {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

/// The fields of a posted branding form; a logo over its limit is refused
/// here, before the rest of it is read.
async fn read_form(mut multipart: Multipart) -> Result<BrandingForm, PortalError> {
    let mut form = BrandingForm::default();
    let unreadable = || PortalError::Invalid("The form could not be read.".into());
    while let Some(field) = multipart.next_field().await.map_err(|_| unreadable())? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "logo" {
            let bytes = bounded(field, LOGO_BYTES_MAX).await?.ok_or_else(|| {
                PortalError::Invalid(format!("The logo is larger than {} KiB.", LOGO_BYTES_MAX / 1024))
            })?;
            form.logo = (!bytes.is_empty()).then_some(bytes);
            continue;
        }
        let text = bounded(field, FORM_TEXT_BYTES_MAX).await?.ok_or_else(unreadable)?;
        let text = String::from_utf8(text).map_err(|_| unreadable())?;
        match name.as_str() {
            "csrf" => form.csrf = text,
            "displayName" => form.display_name = text,
            "primaryColor" => form.primary_color = text,
            _ => return Err(unreadable()),
        }
    }
    Ok(form)
}

/// Sets the branding from the form. Without a new file the current logo
/// is kept. A refusal is shown on the page with its status (400 or 409).
pub async fn save(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    multipart: Multipart,
) -> Result<Response, PortalError> {
    let org = signed.organization(org)?;
    let form = match read_form(multipart).await {
        Ok(form) => form,
        Err(PortalError::Invalid(why)) => return refused(&portal, &signed, StatusCode::BAD_REQUEST, why).await,
        Err(other) => return Err(other),
    };
    signed.check_csrf(&form.csrf)?;
    let logo = match form.logo {
        Some(logo) => Some(logo),
        None => current_logo(&portal, &signed, org).await?,
    };
    let names = (form.display_name.as_str(), form.primary_color.as_str());
    let metadata = context(&signed).metadata;
    match usecases::branding::set(&portal.ledger, &signed.caller(), metadata, org, names, logo).await {
        Ok(_) => Ok(Redirect::to(&format!("/portal/orgs/{org}/branding?saved=1")).into_response()),
        Err(usecases::Error::Refused { message, .. } | usecases::Error::Validation(message)) => {
            refused(&portal, &signed, StatusCode::BAD_REQUEST, message).await
        }
        Err(usecases::Error::Conflict { message, .. }) => {
            refused(&portal, &signed, StatusCode::CONFLICT, message).await
        }
        Err(other) => Err(other.into()),
    }
}

async fn current_logo(portal: &Portal, signed: &Signed, org: OrganizationId) -> Result<Option<Vec<u8>>, PortalError> {
    let Ok(view) = usecases::branding::get(&portal.ledger, &signed.caller(), org).await else { return Ok(None) };
    let Some(logo) = view.logo else { return Ok(None) };
    Ok(usecases::branding::logo(&portal.ledger, org, &logo.digest).await?)
}

async fn refused(portal: &Portal, signed: &Signed, status: StatusCode, why: String) -> Result<Response, PortalError> {
    if !signed.is_admin() {
        return Err(PortalError::Forbidden);
    }
    Ok((status, page(portal, signed, None, Some(why)).await?).into_response())
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
}

/// Removes the branding (an admin's).
pub async fn remove(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    axum::Form(input): axum::Form<RemoveForm>,
) -> Result<Response, PortalError> {
    signed.check_csrf(&input.csrf)?;
    let org = signed.organization(org)?;
    let metadata = context(&signed).metadata;
    usecases::branding::remove(&portal.ledger, &signed.caller(), metadata, org).await?;
    Ok(page(&portal, &signed, Some("The branding was removed.".into()), None).await?.into_response())
}
