//! The ledger's use cases: every command and workflow as a typed function,
//! callable without HTTP.
//!
//! The HTTP API (`api`), the `ledger` CLI, the scheduler, the Stripe
//! reactor and the tests call the same functions. Each takes the [`Ledger`]
//! (the log, the read models, the clock, the keys, the catalog), a
//! [`Caller`](caller::Caller) where it matters who asks, and typed input;
//! each answers a typed result or an [`Error`](error::Error) that wraps the
//! aggregates' own errors.
//!
//! **Invariant:** this crate knows no HTTP: no status codes, no headers, no
//! axum. The HTTP layer maps [`Error`](error::Error) to problem+json in one
//! place.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use domain::catalog::Catalog;
use domain::subscription::{Policy, Services};
use domain::{Clock, OrganizationId, Timestamp};
use store::EventLog;

pub mod acknowledged;
pub mod airgap;
pub mod billing;
pub mod billing_runs;
pub mod branding;
pub mod caller;
pub mod clock;
pub mod command;
pub mod console;
pub mod customers;
pub mod deployment_keys;
pub mod deployments;
pub mod error;
pub mod figures;
pub mod invoice_ops;
pub mod leading;
pub mod licenses;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod organizations;
pub mod privacy;
pub mod provisioning;
pub mod queries;
pub mod readmodels;
pub mod resend;
pub mod revenue;
pub mod scheduler;
pub mod secret_rotation;
pub mod secrets;
pub mod signin;
pub mod sso;
pub mod staff;
pub mod stripe;
pub mod subscriptions;
pub mod usage;
pub mod validation;
pub mod validation_cache;
pub mod views;

pub use caller::{Caller, Need};
pub use error::Error;

use clock::ServerClock;
use secrets::ServerKeys;

/// Where the ledger keeps its log, keys and clock, and its business policy.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the embedded SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// `system`, `fixed:<time>` or `manual:<time>`.
    pub clock: String,
    pub operator_token: Option<String>,
    pub auditor_token: Option<String>,
    pub policy: Policy,
}

/// Everything a use case may use; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    pub log: EventLog,
    /// The durable read models (tables), their runner and leadership.
    pub models: Arc<readmodels::ReadModels>,
    /// What a license validation needs per key, for a moment (bounded).
    pub validation_cache: Arc<validation_cache::ValidationCache>,
    /// The deployment challenges this process accepted, until each expires.
    pub challenges: Arc<deployment_keys::UsedChallenges>,
    pub clock: Arc<ServerClock>,
    pub keys: Arc<ServerKeys>,
    pub catalog: Arc<Catalog>,
    pub subscription_services: Arc<Services>,
    /// Wakes the scheduler (the test clock moved, a payment changed dunning).
    pub scheduler: Arc<tokio::sync::Notify>,
    /// This process's counters.
    pub metrics: Arc<metrics::Metrics>,
    /// The last sequence this node acknowledged to each credential
    /// (read-your-writes, `acknowledged`).
    pub acknowledged: Arc<acknowledged::Acknowledged>,
    /// The background billing runs this process started (bounded).
    pub billing_runs: Arc<billing_runs::BillingRuns>,
}

impl Ledger {
    /// Opens the log and the read models; writes the bootstrap tokens
    /// generated on a first start to a file only this user can read (and
    /// says where), never to the terminal.
    pub async fn open(config: &LedgerConfig) -> anyhow::Result<Self> {
        secrets::create_private_dir(&config.data_dir)?;
        let clock = Arc::new(ServerClock::parse(&config.clock, &config.data_dir)?);
        let (keys, generated) =
            ServerKeys::load_or_create(&config.data_dir, config.operator_token.clone(), config.auditor_token.clone())?;
        let tokens = config.data_dir.join(secrets::FIRST_START_TOKENS_FILE);
        if !generated.is_empty() {
            secrets::write_first_start_tokens(&config.data_dir, &generated)?;
            println!("generated bootstrap tokens; they are in {} (readable by this user only)", tokens.display());
        }
        if tokens.exists() {
            tracing::warn!(file = %tokens.display(), "first-start tokens are still on disk: store them elsewhere and delete the file");
        }
        let log = open_log(config, clock.clone()).await?;
        let catalog = Arc::new(Catalog::builtin());
        let models = readmodels::ReadModels::start(config, log.clone(), &catalog).await?;
        Ok(Self {
            log,
            models,
            validation_cache: Arc::default(),
            challenges: Arc::default(),
            clock,
            keys: Arc::new(keys),
            subscription_services: Arc::new(Services { catalog: catalog.clone(), policy: config.policy }),
            catalog,
            scheduler: Arc::new(tokio::sync::Notify::new()),
            metrics: Arc::new(metrics::Metrics::default()),
            acknowledged: Arc::new(acknowledged::Acknowledged::default()),
            billing_runs: Arc::default(),
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Today, UTC, by the business clock.
    pub fn today(&self) -> NaiveDate {
        self.now().to_datetime().date_naive()
    }

    /// The seat limit of an organization's live subscription today; an
    /// organization without one has no seats to limit yet.
    pub async fn seat_limit(&self, organization_id: OrganizationId) -> Result<Option<u32>, Error> {
        let today = self.today();
        let live = projections::models::subscriptions::live(&self.models.db, organization_id).await?;
        Ok(live
            .and_then(|(_, subscription)| subscription.spec_on(&self.catalog, today))
            .and_then(|(spec, _)| spec.seats))
    }
}

/// Opens the configured log alone (PostgreSQL, or SQLite in the data
/// directory), for jobs that need nothing else.
pub async fn open_log(config: &LedgerConfig, clock: Arc<dyn Clock>) -> anyhow::Result<EventLog> {
    use anyhow::Context;
    Ok(match &config.database_url {
        Some(url) => {
            let hosts: store::PgHosts = url.parse().map_err(anyhow::Error::msg).context("DATABASE_URL")?;
            EventLog::open_postgres_hosts(&hosts, clock).await?
        }
        None => EventLog::open_sqlite(&config.data_dir.join("ledger.sqlite"), clock).await?,
    })
}
