//! Stripe: webhooks in, invoices out, checkout for new customers.
//!
//! The ledger computes every invoice; Stripe only collects. Three parts,
//! each following the log, so a crash or a Stripe outage delays and loses
//! nothing:
//!
//! - `webhook` verifies a delivery (`signature`) and appends it once,
//!   keyed by its event id (`stripe-event/{id}`); the HTTP route only hands
//!   it the raw body and the `Stripe-Signature` header;
//! - `reactor` handles each received event exactly once: what it decides
//!   (a payment recorded, an organization provisioned) is appended in one
//!   atomic group with `StripeEventHandled`;
//! - `sync` makes a Stripe customer per organization and a Stripe invoice
//!   per issued invoice, with idempotency keys derived from the event, and
//!   appends the outcome (`StripeCustomerLinked`, `StripeInvoiceCreated`).
//!
//! Configuration: `STRIPE_SECRET_KEY` (sync and checkout),
//! `STRIPE_WEBHOOK_SECRET` (webhooks; several secrets separated by commas
//! during a rotation), `STRIPE_API_BASE` (a Stripe-compatible server for
//! tests; must end in `/`). Unset means off.

pub mod reactor;
pub mod signature;
pub mod sync;
pub mod webhook;

use std::sync::Arc;

use signature::WebhookSecret;

/// The Stripe settings, read from the environment.
#[derive(Clone, Default)]
pub struct Settings {
    pub secret_key: Option<String>,
    pub webhook_secrets: Vec<WebhookSecret>,
    pub api_base: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<redacted>"))
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("api_base", &self.api_base)
            .finish()
    }
}

impl Settings {
    /// `STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET`, `STRIPE_API_BASE`;
    /// empty values count as unset.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let webhook_secrets = var("STRIPE_WEBHOOK_SECRET")
            .map(|list| list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(WebhookSecret::new).collect())
            .unwrap_or_default();
        let api_base = var("STRIPE_API_BASE");
        if let Some(base) = &api_base
            && (!base.ends_with('/') || !(base.starts_with("http://") || base.starts_with("https://")))
        {
            anyhow::bail!("STRIPE_API_BASE must be an http(s) URL ending in '/', e.g. https://api.stripe.com/");
        }
        Ok(Self { secret_key: var("STRIPE_SECRET_KEY"), webhook_secrets, api_base })
    }
}

/// Stripe as the ledger sees it: the webhook secrets, an API client when a
/// secret key is set, and the wake-ups of the reactor and the sync.
pub struct Stripe {
    pub webhook_secrets: Vec<WebhookSecret>,
    pub client: Option<stripe::Client>,
    /// A webhook event was recorded.
    pub reactor: tokio::sync::Notify,
    /// Something may be due for sync.
    pub sync: tokio::sync::Notify,
}

impl Stripe {
    pub fn new(settings: Settings) -> anyhow::Result<Arc<Self>> {
        let client = match &settings.secret_key {
            Some(key) => {
                install_crypto_provider();
                let mut builder = stripe::ClientBuilder::new(key.clone())
                    .timeout(std::time::Duration::from_secs(30))
                    .app_info("ledger", Some(env!("CARGO_PKG_VERSION").to_owned()), None);
                if let Some(base) = &settings.api_base {
                    builder = builder.url(base.clone());
                }
                Some(builder.build().map_err(|e| anyhow::anyhow!("the Stripe client: {e}"))?)
            }
            None => None,
        };
        Ok(Arc::new(Self {
            webhook_secrets: settings.webhook_secrets,
            client,
            reactor: tokio::sync::Notify::new(),
            sync: tokio::sync::Notify::new(),
        }))
    }

    /// Stripe off: no webhooks, no sync.
    pub fn off() -> Arc<Self> {
        Self::new(Settings::default()).expect("no client to build")
    }

    pub fn webhooks_enabled(&self) -> bool {
        !self.webhook_secrets.is_empty()
    }
}

/// rustls needs one process-wide crypto provider; when more than one is
/// linked (ring for Stripe and mail, aws-lc-rs through another
/// dependency), none is chosen by default, so choose ring.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A read-model query that failed: the database is not available now.
pub(crate) fn unavailable(error: projections::db::DbError) -> crate::Error {
    crate::Error::Unavailable(error.to_string())
}
