//! White-label branding (issue 14), without HTTP: an organization admin
//! sets a display name, a primary colour and a logo, for organizations
//! whose live tier has the catalog's `white_labeling` feature.
//!
//! The logo is checked before anything is decoded: at most
//! [`branding::LOGO_BYTES_MAX`] bytes, a PNG or JPEG signature (no SVG,
//! GIF or anything else), and the dimensions its header announces within
//! [`branding::LOGO_SIDE_MAX`] and [`branding::LOGO_PIXELS_MAX`]. Only then
//! is it decoded (with the `image` crate's limits, on a blocking thread),
//! its decoded size compared with the header's, shrunk to fit
//! [`branding::LOGO_BOX_WIDTH`] × [`branding::LOGO_BOX_HEIGHT`] and written
//! again as PNG: what is stored and served is always the server's own PNG.

use std::io::Cursor;

use base64::Engine as _;
use domain::branding::{self, BrandingEvent, BrandingRemoved, BrandingSet, Logo, WHITE_LABEL_FEATURE};
use domain::event::LedgerEvent;
use domain::{Metadata, OrganizationId};
use image::{ImageFormat, ImageReader};
use projections::db::DbError;
use projections::models::branding::BrandingRow;
use projections::models::{branding as model, subscriptions};
use serde::{Deserialize, Serialize};
use store::{Command, ExpectedRevision, NewEvent};

use crate::command::{READ_YOUR_WRITES_WAIT, new_event_id};
use crate::{Caller, Error, Ledger, Need};

/// The most memory one logo's decoding may allocate.
pub const LOGO_DECODE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The longest base64 text of a logo in the API's JSON body.
pub const LOGO_BASE64_CHARS_MAX: usize = branding::LOGO_BYTES_MAX.div_ceil(3) * 4;
/// The content type of every served logo.
pub const LOGO_CONTENT_TYPE: &str = "image/png";

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_SIGNATURE: &[u8] = &[0xff, 0xd8, 0xff];

/// What an admin sets (`PUT /organizations/{id}/branding`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrandingInput {
    /// 1 to 60 characters after trimming, no control characters.
    pub display_name: String,
    /// `#rrggbb`.
    pub primary_color: String,
    /// The logo, base64 (standard alphabet): a PNG or JPEG of at most
    /// 256 KiB and 4,000,000 pixels. Without it, the branding has no logo.
    pub logo: Option<String>,
}

/// An organization's branding as answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrandingView {
    pub display_name: String,
    pub primary_color: String,
    pub logo: Option<LogoView>,
    pub set_at: String,
    pub sequence: u64,
}

/// The stored logo: always a PNG the server wrote.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogoView {
    /// Names it in the portal's URL (`/portal/static/brand/{org}/{digest}.png`).
    pub digest: String,
    pub width: u32,
    pub height: u32,
    pub content_type: &'static str,
}

fn refused(code: &'static str, message: impl ToString) -> Error {
    Error::Refused { code, message: message.to_string() }
}

/// Whether the organization's live tier has the white-label feature today.
pub async fn tier_allows(ledger: &Ledger, organization_id: OrganizationId) -> Result<bool, Error> {
    Ok(tier_allows_db(ledger, organization_id).await?)
}

async fn tier_allows_db(ledger: &Ledger, organization_id: OrganizationId) -> Result<bool, DbError> {
    let live = subscriptions::live(&ledger.models.db, organization_id).await?;
    let spec = live.and_then(|(_, s)| s.spec_on(&ledger.catalog, ledger.today()).map(|(spec, _)| spec));
    Ok(spec.is_some_and(|spec| spec.features.iter().any(|f| f == WHITE_LABEL_FEATURE)))
}

async fn require_feature(ledger: &Ledger, organization_id: OrganizationId) -> Result<(), Error> {
    if tier_allows(ledger, organization_id).await? {
        Ok(())
    } else {
        Err(Error::conflict("feature_not_in_tier", "white-label branding is not part of this organization's tier"))
    }
}

/// A logo's format by its signature: PNG or JPEG, nothing else.
fn logo_format(bytes: &[u8]) -> Result<ImageFormat, Error> {
    if bytes.starts_with(PNG_SIGNATURE) {
        Ok(ImageFormat::Png)
    } else if bytes.starts_with(JPEG_SIGNATURE) {
        Ok(ImageFormat::Jpeg)
    } else {
        Err(refused("logo_format", "logo: PNG or JPEG only (no SVG, GIF or other formats)"))
    }
}

/// Checks, decodes (within limits) and re-encodes an uploaded logo; see
/// the module's description. CPU-bound: call it on a blocking thread.
pub fn process_logo(bytes: &[u8]) -> Result<Logo, Error> {
    use branding::{LOGO_BOX_HEIGHT, LOGO_BOX_WIDTH, LOGO_BYTES_MAX, LOGO_PIXELS_MAX, LOGO_SIDE_MAX};
    if bytes.len() > LOGO_BYTES_MAX {
        return Err(refused("logo_too_large", format!("logo: at most {LOGO_BYTES_MAX} bytes")));
    }
    let format = logo_format(bytes)?;
    let invalid = || refused("logo_invalid", "logo: not a readable image of its format");
    // The header only: nothing is decoded before its dimensions are bounded.
    let (width, height) =
        ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().map_err(|_| invalid())?;
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 || width > LOGO_SIDE_MAX || height > LOGO_SIDE_MAX || pixels > LOGO_PIXELS_MAX {
        return Err(refused(
            "logo_too_many_pixels",
            format!("logo: at most {LOGO_SIDE_MAX} pixels a side and {LOGO_PIXELS_MAX} pixels in all"),
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(LOGO_SIDE_MAX);
    limits.max_image_height = Some(LOGO_SIDE_MAX);
    limits.max_alloc = Some(LOGO_DECODE_BYTES_MAX);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|_| invalid())?;
    if decoded.width() != width || decoded.height() != height {
        return Err(invalid());
    }
    let fitted = if width > LOGO_BOX_WIDTH || height > LOGO_BOX_HEIGHT {
        decoded.resize(LOGO_BOX_WIDTH, LOGO_BOX_HEIGHT, image::imageops::FilterType::Triangle)
    } else {
        decoded
    };
    let rgba = image::DynamicImage::ImageRgba8(fitted.to_rgba8());
    let mut png = Vec::new();
    rgba.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|e| Error::Internal(format!("a logo could not be written as PNG: {e}")))?;
    Ok(Logo { png, width: rgba.width(), height: rgba.height() })
}

/// The logo of an API body: base64, bounded before decoding.
pub fn logo_from_base64(text: &str) -> Result<Vec<u8>, Error> {
    if text.len() > LOGO_BASE64_CHARS_MAX {
        return Err(refused("logo_too_large", format!("logo: at most {} bytes", branding::LOGO_BYTES_MAX)));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| Error::Validation("logo: not base64 (standard alphabet)".into()))
}

/// Sets an organization's branding (its admin's; tiers with
/// `white_labeling` only). `logo` is the uploaded file's bytes.
pub async fn set(
    ledger: &Ledger,
    caller: &Caller,
    metadata: Metadata,
    organization_id: OrganizationId,
    (display_name, primary_color): (&str, &str),
    logo: Option<Vec<u8>>,
) -> Result<BrandingView, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    let display_name = branding::display_name(display_name).map_err(|e| Error::Validation(e.to_string()))?;
    let primary_color = branding::color(primary_color).map_err(|e| refused("invalid_color", e))?;
    require_feature(ledger, organization_id).await?;
    let logo = match logo {
        Some(bytes) => Some(
            tokio::task::spawn_blocking(move || process_logo(&bytes))
                .await
                .map_err(|e| Error::Internal(format!("the logo's decoding stopped: {e}")))??,
        ),
        None => None,
    };
    let set = BrandingSet { organization_id, display_name, primary_color, logo, at: ledger.now() };
    let event = BrandingEvent::BrandingSet(set.clone());
    let sequence = append(ledger, organization_id, &event, metadata).await?;
    Ok(view(&projection_row(&set, sequence)))
}

fn projection_row(set: &BrandingSet, sequence: u64) -> BrandingRow {
    BrandingRow {
        organization_id: set.organization_id,
        display_name: set.display_name.clone(),
        primary_color: set.primary_color.clone(),
        logo: set.logo.as_ref().map(|logo| model::LogoRef {
            digest: logo.digest(),
            width: logo.width,
            height: logo.height,
            sequence,
        }),
        set_at: set.at,
        sequence,
    }
}

fn view(row: &BrandingRow) -> BrandingView {
    BrandingView {
        display_name: row.display_name.clone(),
        primary_color: row.primary_color.clone(),
        logo: row.logo.as_ref().map(|logo| LogoView {
            digest: logo.digest.clone(),
            width: logo.width,
            height: logo.height,
            content_type: LOGO_CONTENT_TYPE,
        }),
        set_at: row.set_at.to_datetime().to_rfc3339(),
        sequence: row.sequence,
    }
}

/// Appends one branding event; the read models include it before this
/// answers (or its wait ends), and every later read on this node waits
/// for it.
async fn append(
    ledger: &Ledger,
    organization_id: OrganizationId,
    event: &BrandingEvent,
    metadata: Metadata,
) -> Result<u64, Error> {
    let command = Command {
        stream_id: branding::stream(organization_id),
        expected: ExpectedRevision::Any,
        idempotency: None,
        events: vec![NewEvent::from_event(event, new_event_id(), ledger.now(), &metadata)],
    };
    let appended = ledger.log.append_one(command).await?.map_err(|r| Error::Internal(r.to_string()))?;
    let sequence = appended.last_sequence;
    ledger.acknowledged.record_command(sequence);
    // The portal's next page reads the read models at once: wait for them
    // (bounded); a lagging wait still answers, as the append is durable.
    let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_WAIT;
    let _ = crate::acknowledged::wait_until(ledger, sequence, deadline).await;
    Ok(sequence)
}

/// An organization's branding as set (its admin's), whatever its tier now.
pub async fn get(ledger: &Ledger, caller: &Caller, organization_id: OrganizationId) -> Result<BrandingView, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    let row = model::branding(&ledger.models.db, organization_id).await?;
    row.as_ref().map(view).ok_or(Error::NotFound)
}

/// Removes an organization's branding (its admin's).
pub async fn remove(
    ledger: &Ledger,
    caller: &Caller,
    metadata: Metadata,
    organization_id: OrganizationId,
) -> Result<u64, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    if model::branding(&ledger.models.db, organization_id).await?.is_none() {
        return Err(Error::NotFound);
    }
    let event = BrandingEvent::BrandingRemoved(BrandingRemoved { organization_id, at: ledger.now() });
    append(ledger, organization_id, &event, metadata).await
}

/// The branding that applies to the organization's pages and e-mails: set,
/// and its live tier has the feature (after a downgrade, none applies).
pub async fn applied(ledger: &Ledger, organization_id: OrganizationId) -> Result<Option<BrandingRow>, Error> {
    Ok(applied_db(ledger, organization_id).await?)
}

async fn applied_db(ledger: &Ledger, organization_id: OrganizationId) -> Result<Option<BrandingRow>, DbError> {
    let Some(row) = model::branding(&ledger.models.db, organization_id).await? else { return Ok(None) };
    Ok(tier_allows_db(ledger, organization_id).await?.then_some(row))
}

/// The applied branding's logo, if `digest` names it: its PNG, read from
/// the record that holds it and checked against the digest.
pub async fn logo(ledger: &Ledger, organization_id: OrganizationId, digest: &str) -> Result<Option<Vec<u8>>, Error> {
    let Some(row) = applied(ledger, organization_id).await? else { return Ok(None) };
    let Some(logo) = row.logo.filter(|logo| logo.digest == digest) else { return Ok(None) };
    let records = ledger.log.read_page(logo.sequence..=logo.sequence, 1).await?;
    let Some(record) = records.first() else { return Ok(None) };
    let event = LedgerEvent::decode(&record.header, record.event_bytes().unwrap_or_default())
        .map_err(|e| Error::Internal(format!("branding record {}: {e}", logo.sequence)))?;
    let Some(LedgerEvent::Branding(BrandingEvent::BrandingSet(set))) = event else {
        return Err(Error::Internal(format!("record {} holds no branding", logo.sequence)));
    };
    Ok(set.logo.map(|logo| logo.png).filter(|png| branding::logo_digest(png) == digest))
}

/// The applied branding's display name, for e-mails: `None` unbranded.
pub async fn display_name(ledger: &Ledger, organization_id: OrganizationId) -> Result<Option<String>, DbError> {
    Ok(applied_db(ledger, organization_id).await?.map(|row| row.display_name))
}

/// The name an organization's e-mails give it: its display name when
/// branded, else its own name; `None` for an unknown organization.
pub async fn shown_name(ledger: &Ledger, organization_id: OrganizationId) -> Result<Option<String>, DbError> {
    match display_name(ledger, organization_id).await? {
        Some(brand) => Ok(Some(brand)),
        None => projections::models::organizations::name(&ledger.models.db, organization_id).await,
    }
}
