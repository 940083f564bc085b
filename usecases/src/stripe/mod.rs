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

pub mod billing_portal;
pub mod erasure;
pub mod ops;
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
    /// Where Stripe may send a buyer back to (Checkout's `successUrl` and
    /// `cancelUrl`): `LEDGER_RETURN_ORIGINS`, serialized origins.
    pub return_origins: Vec<String>,
}

/// The most return origins one server accepts.
pub const RETURN_ORIGINS_MAX: usize = 16;

/// `LEDGER_RETURN_ORIGINS`: comma-separated `http(s)://host[:port]`, with
/// no path, query or credentials; kept as the browser serializes origins.
pub fn parse_return_origins(list: &str) -> anyhow::Result<Vec<String>> {
    let mut origins = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let url = url::Url::parse(entry).map_err(|e| anyhow::anyhow!("LEDGER_RETURN_ORIGINS: {entry:?}: {e}"))?;
        let bare = url.path() == "/" && !entry.ends_with('/') && url.query().is_none() && url.fragment().is_none();
        let plain = url.username().is_empty() && url.password().is_none();
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https") && url.host().is_some() && bare && plain,
            "LEDGER_RETURN_ORIGINS: {entry:?} is not an origin (http(s)://host[:port], nothing after it)"
        );
        origins.push(url.origin().ascii_serialization());
    }
    anyhow::ensure!(origins.len() <= RETURN_ORIGINS_MAX, "LEDGER_RETURN_ORIGINS: at most {RETURN_ORIGINS_MAX} origins");
    Ok(origins)
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<redacted>"))
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("api_base", &self.api_base)
            .field("return_origins", &self.return_origins)
            .finish()
    }
}

impl Settings {
    /// `STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET`, `STRIPE_API_BASE`,
    /// `LEDGER_RETURN_ORIGINS`; empty values count as unset.
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
        let return_origins = var("LEDGER_RETURN_ORIGINS").map(|list| parse_return_origins(&list)).transpose()?;
        Ok(Self {
            secret_key: var("STRIPE_SECRET_KEY"),
            webhook_secrets,
            api_base,
            return_origins: return_origins.unwrap_or_default(),
        })
    }
}

/// Stripe as the ledger sees it: the webhook secrets, an API client when a
/// secret key is set, and the wake-ups of the reactor and the sync.
pub struct Stripe {
    pub webhook_secrets: Vec<WebhookSecret>,
    pub client: Option<stripe::Client>,
    return_origins: Vec<String>,
    /// Where a customer-portal session's URL may lead: Stripe's billing
    /// site, and the origin of `STRIPE_API_BASE` (a stand-in's) if set.
    billing_portal_origins: Vec<String>,
    /// A webhook event was recorded.
    pub reactor: tokio::sync::Notify,
    /// Something may be due for sync.
    pub sync: tokio::sync::Notify,
    /// The sync's last error per target it is backing off from, as this
    /// process's sync last published it (empty on a node that does not
    /// sync): at most `sync::RETRY_TARGETS_MAX` entries.
    sync_errors: std::sync::Mutex<std::collections::HashMap<String, String>>,
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
        let mut billing_portal_origins = vec![BILLING_PORTAL_ORIGIN.to_owned()];
        if let Some(base) = settings.api_base.as_deref().and_then(|base| url::Url::parse(base).ok()) {
            billing_portal_origins.push(base.origin().ascii_serialization());
        }
        Ok(Arc::new(Self {
            webhook_secrets: settings.webhook_secrets,
            client,
            return_origins: settings.return_origins,
            billing_portal_origins,
            reactor: tokio::sync::Notify::new(),
            sync: tokio::sync::Notify::new(),
            sync_errors: std::sync::Mutex::default(),
        }))
    }

    /// Stripe off: no webhooks, no sync.
    pub fn off() -> Arc<Self> {
        Self::new(Settings::default()).expect("no client to build")
    }

    /// Replaces the sync's last errors (`sync::Retries::last_errors`).
    pub fn publish_errors(&self, errors: std::collections::HashMap<String, String>) {
        *self.sync_errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = errors;
    }

    /// The sync's last error for `target`, if this process's sync is
    /// backing off from it.
    pub fn last_error(&self, target: &str) -> Option<String> {
        let errors = self.sync_errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        errors.get(target).filter(|e| !e.is_empty()).cloned()
    }

    pub fn webhooks_enabled(&self) -> bool {
        !self.webhook_secrets.is_empty()
    }

    /// Whether Stripe may send a buyer to `url`: an http(s) URL, without
    /// credentials, whose origin is one of the configured return origins
    /// (none configured: nowhere), so Checkout is no open redirect.
    pub fn allows_return_to(&self, url: &str) -> bool {
        let Ok(url) = url::Url::parse(url) else { return false };
        let origin = url.origin().ascii_serialization();
        matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none()
            && self.return_origins.contains(&origin)
    }
}

/// The origin of Stripe's hosted customer portal.
pub const BILLING_PORTAL_ORIGIN: &str = "https://billing.stripe.com";

impl Stripe {
    /// The origins a customer-portal session's URL may have (the portal's
    /// CSP lets its billing form lead there, and nowhere else).
    pub fn billing_portal_origins(&self) -> &[String] {
        &self.billing_portal_origins
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_origins_are_bare_origins_and_urls_must_match_one() {
        let origins =
            parse_return_origins(" https://Shop.Example , http://127.0.0.1:8080,https://a.example:443").unwrap();
        assert_eq!(origins, ["https://shop.example", "http://127.0.0.1:8080", "https://a.example"]);
        for bad in [
            "https://shop.example/",
            "https://shop.example/welcome",
            "ftp://shop.example",
            "https://u@shop.example",
            "shop.example",
            "https://shop.example?x=1",
        ] {
            assert!(parse_return_origins(bad).is_err(), "{bad}");
        }
        let many = vec!["https://a.example"; RETURN_ORIGINS_MAX + 1].join(",");
        assert!(parse_return_origins(&many).is_err());

        let stripe = Stripe::new(Settings { return_origins: origins, ..Settings::default() }).unwrap();
        assert!(stripe.allows_return_to("https://shop.example/welcome?x=1"));
        assert!(stripe.allows_return_to("https://SHOP.example:443/"));
        assert!(stripe.allows_return_to("http://127.0.0.1:8080/ok"));
        for bad in [
            "https://shop.example.evil.example/",
            "https://evil.example/?https://shop.example",
            "http://shop.example/",
            "https://shop.example:8443/",
            "https://user:pw@shop.example/",
            "javascript://shop.example/%0aalert(1)",
            "http://127.0.0.1:8081/",
            "not a url",
        ] {
            assert!(!stripe.allows_return_to(bad), "{bad}");
        }
        assert!(!Stripe::off().allows_return_to("https://shop.example/"), "none configured: nowhere");
    }
}
