//! The `Stripe-Signature` scheme, now in `domain::webhook` (pure, so the
//! fuzz targets reach it without the server); re-exported here under its
//! old path.

pub use domain::webhook::{SignatureError, TOLERANCE_SECS, WebhookSecret, verify};
