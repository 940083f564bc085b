//! White-label branding (issue 14): an organization's display name,
//! primary colour and logo, for organizations whose tier has the
//! [`WHITE_LABEL_FEATURE`].
//!
//! Stream: `branding/{organization}` (set, removed; the last one counts).
//! The logo is kept in the event as the PNG the server re-encoded (at most
//! [`LOGO_BOX_WIDTH`] × [`LOGO_BOX_HEIGHT`] pixels, far below the log's
//! payload cap), so a rebuild from the log reproduces it byte for byte;
//! the read model keeps only its digest and the record's sequence.
//!
//! The checks here are pure; decoding the uploaded image is the use
//! case's (`usecases::branding`).

use serde::{Deserialize, Serialize};

use crate::{OrganizationId, StreamId, Timestamp};

/// The catalog feature that allows branding.
pub const WHITE_LABEL_FEATURE: &str = "white_labeling";
/// The longest display name, in characters (after trimming).
pub const DISPLAY_NAME_CHARS_MAX: usize = 60;
/// The largest uploaded logo, in bytes.
pub const LOGO_BYTES_MAX: usize = 256 * 1024;
/// The widest or tallest uploaded logo its header may announce.
pub const LOGO_SIDE_MAX: u32 = 4096;
/// The most pixels an uploaded logo's header may announce.
pub const LOGO_PIXELS_MAX: u64 = 4_000_000;
/// The box a logo is shrunk to fit (never enlarged) before it is stored.
pub const LOGO_BOX_WIDTH: u32 = 320;
pub const LOGO_BOX_HEIGHT: u32 = 96;

const LOGO_DIGEST_CONTEXT: &str = "ledger 2026-12-01 branding logo digest v1";

/// The logo as stored: a PNG the server wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logo {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl Logo {
    /// Hex BLAKE3 (derive-key mode) of the PNG: names it in URLs.
    pub fn digest(&self) -> String {
        logo_digest(&self.png)
    }
}

/// The digest [`Logo::digest`] computes, of any bytes.
pub fn logo_digest(png: &[u8]) -> String {
    hex::encode(blake3::Hasher::new_derive_key(LOGO_DIGEST_CONTEXT).update(png).finalize().as_bytes())
}

/// An organization's branding was set (replacing any before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandingSet {
    pub organization_id: OrganizationId,
    pub display_name: String,
    /// `#rrggbb`, lower case.
    pub primary_color: String,
    pub logo: Option<Logo>,
    pub at: Timestamp,
}

/// An organization's branding was removed: its pages are the default ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandingRemoved {
    pub organization_id: OrganizationId,
    pub at: Timestamp,
}

crate::stored_events! {
    /// White-label branding of an organization.
    pub enum BrandingEvent {
        BrandingSet = "BrandingSet" version 1,
        BrandingRemoved = "BrandingRemoved" version 1,
    }
}

/// The stream of an organization's branding.
pub fn stream(organization_id: OrganizationId) -> StreamId {
    StreamId::of("branding", organization_id.0)
}

/// Why a display name or colour is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrandingError {
    #[error("displayName: 1 to {DISPLAY_NAME_CHARS_MAX} characters after trimming, no control characters")]
    DisplayName,
    #[error("primaryColor: #rrggbb (six hexadecimal digits)")]
    Color,
}

/// The display name, trimmed: 1 to [`DISPLAY_NAME_CHARS_MAX`] characters,
/// none a control character.
pub fn display_name(raw: &str) -> Result<String, BrandingError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > DISPLAY_NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(BrandingError::DisplayName);
    }
    Ok(name.to_owned())
}

/// A colour written `#rrggbb` (either case), answered in lower case.
pub fn color(raw: &str) -> Result<String, BrandingError> {
    let bytes = raw.as_bytes();
    if bytes.len() != 7 || bytes[0] != b'#' || !bytes[1..].iter().all(u8::is_ascii_hexdigit) {
        return Err(BrandingError::Color);
    }
    Ok(raw.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_bounded_and_without_control_characters() {
        assert_eq!(display_name("  Acme Cloud  ").unwrap(), "Acme Cloud");
        assert_eq!(display_name(&"é".repeat(DISPLAY_NAME_CHARS_MAX)).unwrap().chars().count(), 60);
        for bad in ["", "   ", "a\u{7}b", "line\nbreak", &"x".repeat(DISPLAY_NAME_CHARS_MAX + 1)] {
            assert_eq!(display_name(bad), Err(BrandingError::DisplayName), "{bad:?}");
        }
    }

    #[test]
    fn colours_are_six_hex_digits_after_a_hash() {
        assert_eq!(color("#A1b2C3").unwrap(), "#a1b2c3");
        for bad in ["a1b2c3", "#abc", "#abcdefa", "#ggg000", "red", "#12345 ", "rgb(1,2,3)", "#１２３４５"] {
            assert_eq!(color(bad), Err(BrandingError::Color), "{bad:?}");
        }
    }
}
