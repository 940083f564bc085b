//! The ledger's HTTP API: commands, queries, authentication, operations.
//!
//! The only crate that knows HTTP and JSON request shapes. Handlers decide
//! through the domain's aggregates, append through the store, and read the
//! projections; `app` builds the router so tests can call it without a
//! socket, and `serve` runs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, patch, post};
use domain::Clock;
use domain::subscription::Policy;
use store::EventLog;

pub mod address;
pub mod auth;
pub mod edge;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod rollback;
pub mod routes;
pub mod stripe;
pub mod transport;

// The use cases moved to `usecases`; these paths keep the routes that
// have not moved yet compiling.
pub use usecases::{Ledger, LedgerConfig, clock, secrets};

/// Running a command from a route, in the route's own error type.
pub mod command {
    pub use usecases::command::*;

    use crate::error::ApiError;

    /// [`usecases::command::execute`] for a route whose decisions fail with
    /// an [`ApiError`].
    pub async fn execute<F, Fut>(state: &usecases::Ledger, context: &Context, build: F) -> Result<Appended, ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<store::Command>, ApiError>>,
    {
        execute_with(state, context, build).await
    }
}

/// Everything a request handler may use; cheap to clone. The use cases'
/// context ([`Ledger`]) plus what only the HTTP server has: its limiters,
/// metrics and edge settings. It dereferences to the [`Ledger`].
#[derive(Clone)]
pub struct AppState {
    pub ledger: Ledger,
    pub address_limiter: Arc<metrics::AddressLimiter>,
    /// Usage reports: their limits and the per-key rate limiter.
    pub usage: Arc<usecases::usage::UsageIntake>,
    /// Stripe: webhook secrets, the API client, the reactor's and sync's wake-ups.
    pub stripe: Arc<stripe::Stripe>,
    /// The log's Merkle tree, for checkpoints and proofs.
    pub log_tree: Arc<usecases::log::LogTree>,
    /// Limits and access at the server's edge (`edge`).
    pub edge: Arc<edge::Edge>,
    /// The customer portal, mounted under `/portal` when set (`serve`).
    pub portal: Option<Arc<portal::Portal>>,
}

impl std::ops::Deref for AppState {
    type Target = Ledger;

    fn deref(&self) -> &Ledger {
        &self.ledger
    }
}

/// The router with every route of API.md this version serves.
pub fn app(state: AppState) -> Router {
    use routes::{commands as c, ops, queries as q};
    let mut api = Router::new()
        .route("/organizations", post(c::create_organization).get(q::organizations))
        .route("/organizations/{org_id}/users", post(c::add_user))
        .route("/organizations/{org_id}/users/{user_id}/deactivate", post(c::deactivate_user))
        .route("/organizations/{org_id}/users/{user_id}/role", post(c::change_role))
        .route("/organizations/{org_id}/tokens", post(c::issue_token))
        .route("/organizations/{org_id}/tokens/{token_id}/revoke", post(c::revoke_token))
        .route("/organizations/{org_id}/licenses", get(q::licenses))
        .route("/organizations/{org_id}/sso", get(routes::sso::get).put(routes::sso::put).delete(routes::sso::delete))
        .route(
            "/organizations/{org_id}/branding",
            get(routes::branding::get).put(routes::branding::put).delete(routes::branding::delete),
        )
        .route("/subscriptions", post(c::create_subscription))
        .route("/subscriptions/{org_id}", get(q::subscription))
        .route("/subscriptions/{org_id}/upgrade", post(c::upgrade))
        .route("/subscriptions/{org_id}/downgrade", post(c::downgrade))
        .route("/subscriptions/{org_id}/cancel", post(c::cancel))
        .route("/subscriptions/{org_id}/addons", post(c::add_addon))
        .route("/subscriptions/{org_id}/changes/preview", post(c::preview_change))
        .route("/subscriptions/{org_id}/addons/{addon_id}/end", post(c::end_addon))
        .route("/subscriptions/{org_id}/addons/{addon_id}/reprice", post(c::reprice_addon))
        .route("/subscriptions/{org_id}/floating-deployments", post(c::set_floating))
        .route("/licenses/{license_id}/revoke", post(c::revoke_license))
        .route("/licenses/offline-activations", post(routes::airgap::activate_offline))
        .route("/licenses/{license_id}/deployments/{deployment_id}/release", post(routes::license::release_deployment))
        .route(
            "/licenses/{license_id}/deployments/{deployment_id}/reset-key",
            post(routes::license::reset_deployment_key),
        )
        .route("/license/validate", get(routes::license::validate).post(routes::license::validate))
        .route("/license/challenge", post(routes::license::challenge))
        .route("/usage/report", post(routes::usage::report))
        .route("/usage/imports", post(routes::airgap::import_usage))
        .route("/organizations/{org_id}/usage", get(routes::usage::usage))
        .route("/organizations/{org_id}/invoices", get(routes::billing::invoices))
        .route("/enforcement/{org_id}/check", get(q::enforcement))
        .route("/audit", get(q::audit))
        .route("/log/head", get(routes::log::head))
        .route("/log/checkpoints", post(routes::log::keep))
        .route("/log/proof/inclusion", get(routes::log::inclusion))
        .route("/log/proof/consistency", get(routes::log::consistency))
        .route("/keys", get(ops::keys))
        .route("/webhooks/stripe", post(routes::stripe::webhook))
        .route("/checkout", post(routes::stripe::checkout))
        .route("/openapi.json", get(openapi::serve))
        .merge(vendor_routes());
    if state.clock.is_manual() {
        api = api.route("/test-clock", post(ops::test_clock));
    }
    let mut router = Router::new().nest("/api/v1", api);
    if let Some(portal) = state.portal.clone() {
        router = router.nest("/portal", portal_routes(portal.clone()));
        router = router.merge(with_client_ip(portal::console::router(portal)));
    }
    let router = router
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { error::ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(state.clone(), rollback::refuse_while_failed))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::observe));
    transport::layers(router, &state.edge.settings)
        .layer(axum::middleware::from_fn_with_state(state.clone(), address::resolve))
        .layer(axum::middleware::from_fn(transport::problems))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The vendor's staff routes: staff and service tokens, billing
/// operations, revenue analytics, customers.
fn vendor_routes() -> Router<AppState> {
    Router::new()
        .route("/staff", post(routes::staff::add).get(routes::staff::list))
        .route("/staff/tokens", post(routes::staff::issue_token).get(routes::staff::tokens))
        .route("/staff/tokens/{token_id}", delete(routes::staff::revoke_token))
        .route("/staff/{staff_id}", patch(routes::staff::change))
        .route("/billing/runs", post(routes::billing::billing_run))
        .route("/billing/runs/preview", get(routes::billing_runs::preview))
        .route("/billing/runs/background", post(routes::billing_runs::start).get(routes::billing_runs::recent))
        .route("/billing/runs/{run_id}", get(routes::billing_runs::progress))
        .route("/analytics/revenue", get(routes::analytics::revenue))
        .route("/customers", get(routes::customers::search))
        .route("/customers/{org_id}/timeline", get(routes::customers::timeline))
        .route("/organizations/{org_id}/users/{user_id}/resend", post(routes::resend::resend))
        .route("/invoices/{invoice_id}/void", post(routes::billing::void_invoice))
        .route(
            "/invoices/{invoice_id}/credit-notes",
            get(routes::billing::credit_notes).post(routes::billing::issue_credit_note),
        )
        .route("/stripe/syncs", get(routes::stripe_ops::syncs))
        .route("/stripe/syncs/{target}/retry", post(routes::stripe_ops::retry))
        .route("/stripe/reconciliation", get(routes::stripe_ops::reconciliation))
        .route("/privacy/erasures", post(routes::privacy::erase))
        .route("/privacy/exports", get(routes::privacy::export))
}

/// The portal's routes, with the client's address as the edge resolved it.
fn portal_routes(portal: Arc<portal::Portal>) -> Router<AppState> {
    with_client_ip(portal::router(portal))
}

/// The client's address, as the portal's and console's handlers read it.
fn with_client_ip(router: Router<AppState>) -> Router<AppState> {
    router.layer(axum::middleware::map_request(|mut request: axum::extract::Request| async move {
        if let Some(address::ClientAddress(ip)) = request.extensions().get::<address::ClientAddress>().copied() {
            request.extensions_mut().insert(portal::ClientIp(ip));
        }
        request
    }))
}

/// Where the server keeps its data and listens.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub clock: String,
    pub operator_token: Option<String>,
    pub auditor_token: Option<String>,
    pub policy: Policy,
    /// Validation requests one client address may make a minute; 0 is off.
    pub validations_per_address_per_minute: u32,
    /// E-mail notifications (`notify`); `None` turns them off.
    pub notifications: Option<usecases::notify::Settings>,
    /// Limits on usage reports (rate per key, cap per day, correction window).
    pub usage: usecases::usage::UsageSettings,
}

impl Config {
    /// What the use cases' [`Ledger`] opens.
    pub fn ledger(&self) -> LedgerConfig {
        LedgerConfig {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            clock: self.clock.clone(),
            operator_token: self.operator_token.clone(),
            auditor_token: self.auditor_token.clone(),
            policy: self.policy,
        }
    }
}

/// Opens the log and the read models and builds the state, with the
/// edge's default settings; writes the bootstrap tokens generated on a
/// first start to a file (and says where).
pub async fn open(config: &Config) -> anyhow::Result<AppState> {
    open_with(config, edge::Settings::default()).await
}

/// [`open`] with the edge's settings.
pub async fn open_with(config: &Config, edge: edge::Settings) -> anyhow::Result<AppState> {
    let ledger = Ledger::open(&config.ledger()).await?;
    let log_tree = usecases::log::LogTree::new(usecases::log::CheckpointSettings::from_env())?;
    tokio::spawn(log_tree.clone().follow(ledger.clone()));
    Ok(AppState {
        ledger,
        address_limiter: Arc::new(metrics::AddressLimiter::per_minute(config.validations_per_address_per_minute)),
        usage: Arc::new(usecases::usage::UsageIntake::new(config.usage)),
        stripe: stripe::Stripe::new(stripe::Settings::from_env()?)?,
        log_tree,
        edge: Arc::new(edge::Edge::new(edge)?),
        portal: None,
    })
}

/// Opens the configured log alone (PostgreSQL, or SQLite in the data
/// directory), for jobs that need nothing else.
pub async fn open_log(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<EventLog> {
    usecases::open_log(&config.ledger(), clock).await
}

/// Runs the server until Ctrl-C or SIGTERM, with the customer portal.
pub async fn serve(config: Config, edge: edge::Settings, portal_settings: portal::Settings) -> anyhow::Result<()> {
    // First, so a signal that comes while the log is still opening stops the
    // server cleanly instead of killing it with the default action.
    let stop = transport::Shutdown::install()?;
    // Checked before anything starts, so a bad SMTP setting stops the start.
    let mailer = config.notifications.as_ref().map(usecases::notify::Mailer::new).transpose()?;
    let mut state = open_with(&config, edge).await?;
    let portal_mailer = config.notifications.as_ref().map(usecases::notify::Mailer::new).transpose()?;
    state.portal = Some(
        portal::Portal::open(
            state.ledger.clone(),
            state.log_tree.clone(),
            portal_settings,
            portal_mailer,
            state.stripe.clone(),
        )
        .await?,
    );
    // The outbox's checkpoint is fixed before anything else runs, so even a
    // first start misses nothing appended after it.
    let outbox = match mailer {
        Some(mailer) => Some(usecases::notify::Outbox::load(&state, mailer).await?),
        None => None,
    };
    // Only the leader schedules, keeps checkpoints, reacts to Stripe, syncs
    // and sends (`usecases::leading`): the first two stop when leadership
    // goes, the others check it between rounds and before each call.
    let (ledger, tree) = (state.ledger.clone(), state.log_tree.clone());
    let scheduler = move || usecases::scheduler::run(ledger.clone());
    tokio::spawn(usecases::leading::while_leading(state.ledger.clone(), "scheduler", scheduler));
    let ledger = state.ledger.clone();
    let checkpoints = move || usecases::log::keep_checkpoints(ledger.clone(), tree.clone());
    tokio::spawn(usecases::leading::while_leading(state.ledger.clone(), "checkpoints", checkpoints));
    tokio::spawn(stripe::reactor::run(state.clone()));
    tokio::spawn(usecases::stripe::sync::run(state.ledger.clone(), state.stripe.clone()));
    if let Some(outbox) = outbox {
        tokio::spawn(usecases::notify::run(state.ledger.clone(), outbox));
    }
    tokio::spawn(sweep_limiters(state.clone()));
    // An erasure the previous process appended but did not finish (issue 16).
    let ledger = state.ledger.clone();
    tokio::spawn(async move {
        if let Err(error) = usecases::privacy::complete_interrupted(&ledger).await {
            tracing::warn!(%error, "interrupted erasures not completed at start; the next erasure completes them");
        }
    });
    let settings = state.edge.settings.clone();
    if let Some(metrics_listen) = settings.metrics_listen {
        let listener = tokio::net::TcpListener::bind(metrics_listen).await?;
        println!("ledger metrics on http://{}/metrics", listener.local_addr()?);
        let (router, settings) = (routes::ops::metrics_router(state.clone()), settings.clone());
        let stop = stop.clone();
        tokio::spawn(async move { transport::serve(listener, router, &settings, |_| false, stop.requested()).await });
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    println!("ledger listening on http://{address} (data in {})", config.data_dir.display());
    println!("try: curl -H 'Authorization: Bearer <operator token>' http://{address}/api/v1/organizations");
    let edge = state.edge.clone();
    let trusted = |peer: std::net::IpAddr| edge.trusted_proxies.contains(peer);
    transport::serve(listener, app(state.clone()), &settings, trusted, stop.requested()).await?;
    Ok(())
}

/// Drops idle entries from the in-memory rate limiters now and then, so
/// they hold only clients seen lately.
async fn sweep_limiters(state: AppState) {
    let mut interval = tokio::time::interval(metrics::LIMITER_SWEEP_INTERVAL);
    loop {
        interval.tick().await;
        state.address_limiter.limiter().sweep();
        state.usage.limiter().sweep();
        state.edge.sweep();
        if let Some(portal) = &state.portal {
            portal.sweep();
            portal.sweep_sessions().await;
        }
    }
}
