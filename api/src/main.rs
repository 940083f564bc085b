//! `ledger`: the ledger's server and its command-line jobs.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use domain::subscription::Policy;
use usecases::usage::UsageSettings;

mod staff_cli;

#[derive(Parser)]
#[command(name = "ledger", version, about = "Event-sourced billing, license and usage ledger")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the ledger keeps its log and keys, and which clock it reads.
#[derive(Args)]
struct Store {
    /// The embedded SQLite log, read-model snapshots and keys.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Use PostgreSQL instead of the embedded SQLite.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// system, fixed:<RFC 3339 time> or manual:<RFC 3339 time>.
    #[arg(long, default_value = "system")]
    clock: String,
    /// How many days in the past a subscription may start.
    #[arg(long, default_value_t = Policy::default().backdate_days_max)]
    backdate_days_max: u32,
    /// Days (of 24 hours) from the first failed payment to suspension.
    #[arg(long, default_value_t = Policy::default().dunning_days)]
    dunning_days: u32,
}

/// E-mail notifications (onboarding, expiry reminders, usage warnings,
/// dunning notices); off unless an SMTP server is given.
#[derive(Args)]
struct Mail {
    /// SMTP server: smtp://HOST[:PORT] (plain), smtp://HOST:587?tls=required
    /// (STARTTLS), smtps://HOST[:PORT] (TLS); USER:PASSWORD@ for AUTH.
    #[arg(long, env = "LEDGER_SMTP_URL", hide_env_values = true, requires = "mail_from")]
    smtp_url: Option<String>,
    /// The From address of notifications, e.g. "Ledger <billing@example.com>".
    #[arg(long, env = "LEDGER_MAIL_FROM")]
    mail_from: Option<String>,
}

/// The customer portal (under /portal).
#[derive(Args)]
struct PortalArgs {
    /// The portal's public URL, which sign-in links begin with (default:
    /// http://<listen address>).
    #[arg(long, env = "LEDGER_PORTAL_URL")]
    portal_url: Option<String>,
    /// Session cookies without `Secure`, for a portal on plain http
    /// (local use and tests only).
    #[arg(long)]
    portal_insecure_cookies: bool,
    /// Enterprise SSO may use an `http` issuer on a loopback address
    /// (tests with a local issuer only; off by default).
    #[arg(long)]
    sso_allow_loopback_issuer: bool,
    /// The vendor's own OIDC provider for staff sign-in to the console
    /// (with LEDGER_CONSOLE_OIDC_CLIENT_ID and, from the environment only,
    /// LEDGER_CONSOLE_OIDC_CLIENT_SECRET).
    #[arg(long, env = "LEDGER_CONSOLE_OIDC_ISSUER", requires = "console_oidc_client_id")]
    console_oidc_issuer: Option<String>,
    #[arg(long, env = "LEDGER_CONSOLE_OIDC_CLIENT_ID")]
    console_oidc_client_id: Option<String>,
}

impl PortalArgs {
    /// The console's OIDC provider, when its issuer is set.
    fn console_oidc(&self) -> anyhow::Result<Option<portal::ConsoleOidc>> {
        let Some(issuer) = self.console_oidc_issuer.clone().filter(|i| !i.is_empty()) else { return Ok(None) };
        let client_id = self.console_oidc_client_id.clone().unwrap_or_default();
        // A secret: from the environment only, like the bootstrap tokens.
        let client_secret = std::env::var("LEDGER_CONSOLE_OIDC_CLIENT_SECRET")
            .map_err(|_| anyhow::anyhow!("LEDGER_CONSOLE_OIDC_ISSUER needs LEDGER_CONSOLE_OIDC_CLIENT_SECRET"))?;
        Ok(Some(portal::ConsoleOidc { issuer, client_id, client_secret }))
    }
}

impl PortalArgs {
    fn url(&self, listen: SocketAddr) -> String {
        self.portal_url.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| format!("http://{listen}"))
    }
}

/// Limits on usage reports from on-premises deployments.
#[derive(Args)]
struct UsageLimits {
    /// Usage reports one license key may send a minute, on each server
    /// process (0: no limit).
    #[arg(long, default_value_t = UsageSettings::default().reports_per_key_per_minute)]
    usage_reports_per_key_per_minute: u32,
    /// Usage reports one subscription may make for one reported day,
    /// counted from the log (at least 1).
    #[arg(long, default_value_t = UsageSettings::default().reports_per_day_max,
          value_parser = clap::value_parser!(u64).range(1..))]
    usage_reports_per_day_max: u64,
    /// How many days back a usage report may correct a day.
    #[arg(long, default_value_t = UsageSettings::default().correction_days_max)]
    usage_correction_days_max: u32,
    /// Days a license file of an air-gapped deployment is valid (at most 90;
    /// never past the key's end).
    #[arg(long, env = "LEDGER_OFFLINE_LICENSE_DAYS", default_value_t = UsageSettings::default().offline_license_days,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(domain::airgap::OFFLINE_LICENSE_DAYS_MAX)))]
    offline_license_days: u32,
}

impl UsageLimits {
    fn settings(&self) -> UsageSettings {
        UsageSettings {
            reports_per_key_per_minute: self.usage_reports_per_key_per_minute,
            reports_per_day_max: self.usage_reports_per_day_max,
            correction_days_max: self.usage_correction_days_max,
            offline_license_days: self.offline_license_days,
        }
    }
}

/// Limits at the server's edge, and who may read its metrics.
#[derive(Args)]
struct Edge {
    /// Seconds a client may take to send a request's headers (also how
    /// long an idle connection is kept open).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout_seconds: u64,
    /// Seconds a request body may pause between two pieces (408 after).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_read_timeout_seconds: u64,
    /// Seconds a whole request may take (408 after).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout_seconds: u64,
    /// Connections served at once; further ones wait to be accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    connections_max: u64,
    /// Connections one client address may hold at once (trusted proxies
    /// are exempt); further ones are closed at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    connections_per_address_max: u64,
    /// A proxy (address or CIDR network) whose X-Forwarded-For names the
    /// client; repeat it or separate with commas.
    #[arg(long, env = "LEDGER_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxy: Vec<String>,
    /// Serve /metrics on this address (no token there) instead of the API's.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Deployment releases one license may make an hour (0: no limit).
    #[arg(long, default_value_t = 10)]
    deployment_releases_per_license_per_hour: u32,
    /// Deployments one license key may activate an hour, fixed or floating
    /// (taking a place it did not hold), on each server process (0: no limit).
    #[arg(long, default_value_t = usecases::validation::ACTIVATIONS_PER_KEY_PER_HOUR_DEFAULT)]
    activations_per_key_per_hour: u32,
    /// Checkout sessions one client address may start an hour (0: no limit).
    #[arg(long, default_value_t = 10)]
    checkouts_per_address_per_hour: u32,
    /// Checkout sessions all clients together may start an hour (0: no limit).
    #[arg(long, default_value_t = 100)]
    checkouts_per_hour: u32,
}

impl Edge {
    fn settings(self) -> ledger_api::edge::Settings {
        use std::time::Duration;
        ledger_api::edge::Settings {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_seconds),
            request_timeout: Duration::from_secs(self.request_timeout_seconds),
            connections_max: self.connections_max as usize,
            connections_per_address_max: self.connections_per_address_max as usize,
            trusted_proxies: self.trusted_proxy.into_iter().filter(|p| !p.trim().is_empty()).collect(),
            metrics_listen: self.metrics_listen,
            // A secret: from the environment only, like the bootstrap tokens.
            metrics_token: std::env::var("LEDGER_METRICS_TOKEN").ok().filter(|t| !t.is_empty()),
            releases_per_license_per_hour: self.deployment_releases_per_license_per_hour,
            activations_per_key_per_hour: self.activations_per_key_per_hour,
            checkouts_per_address_per_hour: self.checkouts_per_address_per_hour,
            checkouts_per_hour: self.checkouts_per_hour,
        }
    }
}

// Parsed once, at start: the size of `Serve`'s flags costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        store: Store,
        /// License validations one client address may make a minute (0: no limit).
        #[arg(long, default_value_t = 600)]
        validations_per_address_per_minute: u32,
        #[command(flatten)]
        mail: Mail,
        #[command(flatten)]
        usage: UsageLimits,
        #[command(flatten)]
        edge: Edge,
        #[command(flatten)]
        portal: PortalArgs,
    },
    /// Organization users.
    Users {
        #[command(subcommand)]
        job: Users,
    },
    /// Monthly jobs.
    Billing {
        #[command(subcommand)]
        job: Billing,
    },
    /// The server's keys.
    Keys {
        #[command(subcommand)]
        job: Keys,
    },
    /// The vendor's staff users and service tokens.
    Staff {
        #[command(subcommand)]
        job: staff_cli::Staff,
    },
    /// The read models.
    Projections {
        #[command(subcommand)]
        job: ProjectionsJob,
    },
    /// Revenue analytics as of a past day, from the log alone (read-only):
    /// the figures of `GET /api/v1/analytics/revenue` for that day's month,
    /// up to that day, computed from the records recorded by its end.
    Report {
        /// The day, YYYY-MM-DD.
        #[arg(long)]
        as_of: String,
        /// json (the default) or csv, as the API's `format`.
        #[arg(long, default_value = "json")]
        format: String,
        #[command(flatten)]
        store: Store,
    },
    /// License keys.
    Licenses {
        #[command(subcommand)]
        job: Licenses,
    },
    /// Usage.
    Usage {
        #[command(subcommand)]
        job: UsageJob,
    },
    /// Data-subject requests: erase or export a user's, an organization's
    /// or a staff user's personal data.
    Privacy {
        #[command(subcommand)]
        job: Privacy,
    },
}

#[derive(Subcommand)]
enum Privacy {
    /// Erase the subject's personal data from the log (keeping every
    /// record's facts), the read models, portal sessions, unsent
    /// notifications and (an organization's, with STRIPE_SECRET_KEY) its
    /// Stripe customer, as POST /api/v1/privacy/erasures does; prints what
    /// was erased. Refused while the user is active, the staff user is not
    /// disabled, or the organization has a live subscription.
    Erase {
        #[command(flatten)]
        subject: SubjectArgs,
        /// Why: `request` (a data subject's or the customer's request).
        #[arg(long, default_value = "request", value_parser = ["request"])]
        reason: String,
        #[command(flatten)]
        store: Store,
    },
    /// Export everything the ledger holds about the subject as JSON (every
    /// page of GET /api/v1/privacy/exports, one document).
    Export {
        #[command(flatten)]
        subject: SubjectArgs,
        /// Write the JSON here (readable by this user only) instead of to
        /// standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: Store,
    },
}

/// Whose data: exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct SubjectArgs {
    /// A user's id (their organization is found from the read models).
    #[arg(long)]
    user: Option<uuid::Uuid>,
    /// An organization's id: the organization and every one of its users.
    #[arg(long)]
    organization: Option<uuid::Uuid>,
    /// A staff user's id.
    #[arg(long)]
    staff: Option<uuid::Uuid>,
}

#[derive(Subcommand)]
enum Licenses {
    /// Turn an air-gapped deployment's activation request file into a
    /// license file (as POST /api/v1/licenses/offline-activations does).
    ActivateOffline {
        /// The activation request file the deployment wrote.
        #[arg(long)]
        request: PathBuf,
        /// Where to write the license file for the deployment.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        store: Store,
        #[command(flatten)]
        usage: UsageLimits,
    },
}

#[derive(Subcommand)]
enum UsageJob {
    /// Import an air-gapped deployment's usage export file (as POST
    /// /api/v1/usage/imports does); prints the answer as JSON.
    Import {
        /// The usage export file the deployment wrote.
        file: PathBuf,
        #[command(flatten)]
        store: Store,
        #[command(flatten)]
        usage: UsageLimits,
    },
}

#[derive(Subcommand)]
enum Users {
    /// Print a sign-in link to the customer portal for a user (valid 15
    /// minutes, once), for an operator to hand over when there is no SMTP.
    LoginLink {
        #[arg(long)]
        email: String,
        /// The organization's id.
        #[arg(long)]
        organization: uuid::Uuid,
        /// The portal's public URL, which the link begins with.
        #[arg(long, env = "LEDGER_PORTAL_URL", default_value = "http://127.0.0.1:8080")]
        portal_url: String,
        #[command(flatten)]
        store: Store,
    },
}

#[derive(Subcommand)]
enum ProjectionsJob {
    /// Rebuild the read models from the log and save them. When the log
    /// was rolled back behind them (a restored backup, a failover that
    /// lost writes) this refuses and names the lost sequences, unless
    /// --accept-rollback: then the loss is recorded in the log
    /// (LogRollbackAccepted) and the read models are rebuilt from the log
    /// as it is. Restart the servers afterwards.
    Rebuild {
        /// Accept that the log lost the named sequences.
        #[arg(long)]
        accept_rollback: bool,
        #[command(flatten)]
        store: Store,
    },
}

#[derive(Subcommand)]
enum Keys {
    /// Replace the log's checkpoint signing key: the new public key is
    /// announced in the log, signed by the old one. Stop the servers on
    /// this data first and start them after; if interrupted, run it again.
    RotateCheckpoint {
        #[command(flatten)]
        store: Store,
    },
    /// Create the next lease key; servers started from now on publish it
    /// as `leases.next`, so clients learn it before it signs.
    PrepareLease {
        #[command(flatten)]
        store: Store,
    },
    /// Make the announced next lease key current (servers stopped, then
    /// started); the old key is kept retired.
    RotateLease {
        #[command(flatten)]
        store: Store,
    },
    /// Create the next license-key signing key; servers started from now on
    /// publish it as `licenseKeys.next`, signed by the current key.
    PrepareLicense {
        #[command(flatten)]
        store: Store,
    },
    /// Make the announced next license-key signing key current (servers
    /// stopped, then started): new keys are signed with it; keys signed
    /// before keep validating.
    RotateLicense {
        #[command(flatten)]
        store: Store,
    },
    /// Create the next secret for the keyed hashes of license keys and
    /// tokens; servers restarted from now on accept what either secret made.
    PrepareSecret {
        #[command(flatten)]
        store: Store,
    },
    /// Make the announced next secret current (servers keep running;
    /// restart each after): recorded in the log; the generated bootstrap
    /// tokens (given in LEDGER_OPERATOR_TOKEN / LEDGER_AUDITOR_TOKEN) are
    /// hashed again; the old secret is still accepted until it is retired.
    RotateSecret {
        #[command(flatten)]
        store: Store,
    },
    /// Once every server was restarted after `rotate-secret`: hash every
    /// license key and API token again under the new secret (recorded in
    /// the log), then delete the old secret; restart the servers after.
    RetireSecret {
        /// Accept that API tokens issued before an earlier rotation, which
        /// cannot be hashed again, stop working.
        #[arg(long)]
        drop_unrehashable_tokens: bool,
        #[command(flatten)]
        store: Store,
    },
}

#[derive(Subcommand)]
enum Billing {
    /// Issue the invoices of a month that has ended (as `POST
    /// /api/v1/billing/runs` does); prints them as JSON. Exits 3 when some
    /// invoices could not be issued (the others were; each is named).
    Run {
        /// The month, YYYY-MM.
        #[arg(long)]
        period: String,
        /// Compute without issuing anything (any month).
        #[arg(long)]
        preview: bool,
        #[command(flatten)]
        store: Store,
    },
    /// Issue a credit note against an invoice (as `POST
    /// /api/v1/invoices/{id}/credit-notes` does); prints it.
    CreditNote {
        /// The invoice's id.
        #[arg(long)]
        invoice: uuid::Uuid,
        /// Why (recorded in the log).
        #[arg(long)]
        reason: String,
        /// A line, `AMOUNT:DESCRIPTION` (e.g. `250.00:seats never used`);
        /// repeat for more lines.
        #[arg(long = "line", required = true)]
        lines: Vec<String>,
        #[command(flatten)]
        store: Store,
    },
    /// Void an invoice that is not paid (as `POST
    /// /api/v1/invoices/{id}/void` does); prints the voided invoice. The
    /// next run of its month issues the month again under a new id.
    Void {
        /// The invoice's id.
        #[arg(long)]
        invoice: uuid::Uuid,
        /// Why (recorded in the log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        store: Store,
    },
}

fn config(store: Store, listen: SocketAddr, validations_per_address_per_minute: u32) -> ledger_api::Config {
    ledger_api::Config {
        listen,
        data_dir: store.data_dir,
        database_url: store.database_url.filter(|url| !url.is_empty()),
        clock: store.clock,
        operator_token: std::env::var("LEDGER_OPERATOR_TOKEN").ok().filter(|t| !t.is_empty()),
        auditor_token: std::env::var("LEDGER_AUDITOR_TOKEN").ok().filter(|t| !t.is_empty()),
        policy: Policy { backdate_days_max: store.backdate_days_max, dunning_days: store.dunning_days },
        validations_per_address_per_minute,
        notifications: None,
        usage: UsageSettings::default(),
    }
}

/// The exit status of a billing run that issued what it could but not
/// every invoice: cron sees a failure, and a script can tell it from a run
/// that could not run at all (1).
const EXIT_SOME_INVOICES_FAILED: i32 = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { listen, store, validations_per_address_per_minute, mail, usage, edge, portal } => {
            serve(listen, store, validations_per_address_per_minute, mail, usage, edge, portal).await
        }
        Command::Users { job: Users::LoginLink { email, organization, portal_url, store } } => {
            login_link(email, organization, portal_url, store).await
        }
        Command::Billing { job: Billing::Run { period, preview, store } } => billing_run(period, preview, store).await,
        Command::Billing { job: Billing::Void { invoice, reason, store } } => {
            billing_void(invoice, reason, store).await
        }
        Command::Billing { job: Billing::CreditNote { invoice, reason, lines, store } } => {
            billing_credit_note(invoice, reason, lines, store).await
        }
        Command::Staff { job } => {
            let (action, store) = job.split();
            let config = config(store, "127.0.0.1:0".parse()?, 0);
            staff_cli::run(action, &usecases::Ledger::open(&config.ledger()).await?).await
        }
        Command::Keys { job: Keys::RotateCheckpoint { store } } => {
            let config = config(store, "127.0.0.1:0".parse()?, 0);
            let clock = std::sync::Arc::new(ledger_api::clock::ServerClock::parse(&config.clock, &config.data_dir)?);
            let log = ledger_api::open_log(&config, clock.clone()).await?;
            let now = domain::Clock::now(clock.as_ref());
            let (old, new) = ledger_api::secrets::rotate_checkpoint_key(&config.data_dir, &log, now).await?;
            println!("{}", serde_json::json!({ "oldKey": public_key(&old), "newKey": public_key(&new) }));
            Ok(())
        }
        Command::Projections { job: ProjectionsJob::Rebuild { accept_rollback, store } } => {
            rebuild_projections(accept_rollback, store).await
        }
        Command::Licenses { job: Licenses::ActivateOffline { request, out, store, usage } } => {
            activate_offline(request, out, store, usage).await
        }
        Command::Usage { job: UsageJob::Import { file, store, usage } } => import_usage(file, store, usage).await,
        Command::Report { as_of, format, store } => report(&as_of, &format, store).await,
        Command::Privacy { job } => privacy(job).await,
        Command::Keys { job: Keys::PrepareLease { store } } => prepare_key(&store, &ledger_api::secrets::LEASE),
        Command::Keys { job: Keys::RotateLease { store } } => rotate_key(&store, &ledger_api::secrets::LEASE),
        Command::Keys { job: Keys::PrepareLicense { store } } => prepare_key(&store, &ledger_api::secrets::LICENSE),
        Command::Keys { job: Keys::RotateLicense { store } } => rotate_key(&store, &ledger_api::secrets::LICENSE),
        Command::Keys { job: Keys::PrepareSecret { store } } => {
            let next = usecases::secret_rotation::prepare_secret(&store.data_dir)?;
            println!("{}", serde_json::json!({ "nextSecretId": hex::encode(next.as_bytes()) }));
            Ok(())
        }
        Command::Keys { job: Keys::RotateSecret { store } } => rotate_secret(store).await,
        Command::Keys { job: Keys::RetireSecret { drop_unrehashable_tokens, store } } => {
            retire_secret(store, drop_unrehashable_tokens).await
        }
    }
}

/// `ledger projections rebuild`: rebuilds the read models from the log.
async fn rebuild_projections(accept_rollback: bool, store: Store) -> anyhow::Result<()> {
    let config = config(store, "127.0.0.1:0".parse()?, 0);
    let clock = std::sync::Arc::new(ledger_api::clock::ServerClock::parse(&config.clock, &config.data_dir)?);
    let log = ledger_api::open_log(&config, clock.clone()).await?;
    let now = domain::Clock::now(clock.as_ref());
    let models = usecases::readmodels::open_db(&config.ledger()).await?;
    let catalog = domain::catalog::Catalog::builtin();
    let rebuilt = ledger_api::rollback::rebuild(&log, &models, &catalog, now, accept_rollback).await?;
    if let Some(lost) = &rebuilt.rollback {
        eprintln!(
            "accepted: the log lost sequences {} to {}; recorded at sequence {}; read models rebuilt",
            lost.lost_from,
            lost.lost_to,
            rebuilt.recorded_at.unwrap_or_default()
        );
    }
    println!("{}", serde_json::to_string_pretty(&rebuilt.json())?);
    Ok(())
}

/// `ledger keys rotate-secret`: prints the old and the new secret's id.
async fn rotate_secret(store: Store) -> anyhow::Result<()> {
    let config = config(store, "127.0.0.1:0".parse()?, 0);
    let clock = std::sync::Arc::new(ledger_api::clock::ServerClock::parse(&config.clock, &config.data_dir)?);
    let log = ledger_api::open_log(&config, clock.clone()).await?;
    let now = domain::Clock::now(clock.as_ref());
    let tokens = usecases::secret_rotation::BootstrapTokens {
        operator: config.operator_token.clone(),
        auditor: config.auditor_token.clone(),
    };
    let (old, new) = usecases::secret_rotation::rotate_secret(&config.data_dir, &log, now, &tokens).await?;
    let (old, new) = (hex::encode(old.as_bytes()), hex::encode(new.as_bytes()));
    println!("{}", serde_json::json!({ "oldSecretId": old, "newSecretId": new }));
    Ok(())
}

/// `ledger keys retire-secret`: prints what was hashed again.
async fn retire_secret(store: Store, drop_unrehashable_tokens: bool) -> anyhow::Result<()> {
    let config = config(store, "127.0.0.1:0".parse()?, 0);
    let clock = std::sync::Arc::new(ledger_api::clock::ServerClock::parse(&config.clock, &config.data_dir)?);
    let log = ledger_api::open_log(&config, clock.clone()).await?;
    let now = domain::Clock::now(clock.as_ref());
    let (keys, _) = ledger_api::secrets::ServerKeys::load_or_create(
        &config.data_dir,
        config.operator_token.clone(),
        config.auditor_token.clone(),
    )?;
    let retired =
        usecases::secret_rotation::retire_secret(&keys, &config.data_dir, &log, now, drop_unrehashable_tokens).await?;
    println!(
        "{}",
        serde_json::json!({
            "retiredSecretId": hex::encode(retired.secret_id.as_bytes()),
            "licenseKeysRehashed": retired.license_keys,
            "tokensRehashed": retired.tokens,
            "serviceTokensRehashed": retired.service_tokens,
            "ssoConfigsResealed": retired.sso_configs,
            "ssoLinksRehashed": retired.sso_links,
            "tokensDropped": retired.dropped_tokens,
        })
    );
    Ok(())
}

/// `ledger keys prepare-…`: prints the next key and its announcement.
fn prepare_key(store: &Store, rotation: &ledger_api::secrets::Rotation) -> anyhow::Result<()> {
    let (next, signature) = ledger_api::secrets::prepare_key(&store.data_dir, rotation)?;
    let signature = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signature);
    println!("{}", serde_json::json!({ "nextKey": public_key(&next), "nextSignature": signature }));
    Ok(())
}

/// `ledger keys rotate-…`: prints the old and the new key.
fn rotate_key(store: &Store, rotation: &ledger_api::secrets::Rotation) -> anyhow::Result<()> {
    let (old, new) = ledger_api::secrets::rotate_key(&store.data_dir, rotation)?;
    println!("{}", serde_json::json!({ "oldKey": public_key(&old), "newKey": public_key(&new) }));
    Ok(())
}

/// `ledger serve`: the server, until it is stopped.
async fn serve(
    listen: SocketAddr,
    store: Store,
    validations_per_address_per_minute: u32,
    mail: Mail,
    usage: UsageLimits,
    edge: Edge,
    portal: PortalArgs,
) -> anyhow::Result<()> {
    let mut config = config(store, listen, validations_per_address_per_minute);
    config.usage = usage.settings();
    config.notifications = match (mail.smtp_url.filter(|url| !url.is_empty()), mail.mail_from) {
        (Some(smtp_url), Some(from)) => {
            Some(usecases::notify::Settings { smtp_url, from, portal_url: Some(portal.url(listen)) })
        }
        _ => None,
    };
    let edge = edge.settings();
    let portal = portal::Settings {
        portal_url: portal.url(listen),
        secure_cookies: !portal.portal_insecure_cookies,
        releases_per_license_per_hour: edge.releases_per_license_per_hour,
        sso_allow_loopback_issuer: portal.sso_allow_loopback_issuer,
        console_oidc: portal.console_oidc()?,
        usage: config.usage,
    };
    ledger_api::serve(config, edge, portal).await
}

/// `ledger users login-link`: prints a sign-in link for the operator to hand over.
async fn login_link(email: String, organization: uuid::Uuid, portal_url: String, store: Store) -> anyhow::Result<()> {
    let config = config(store, "127.0.0.1:0".parse()?, 0);
    let ledger = usecases::Ledger::open(&config.ledger()).await?;
    let organization = domain::OrganizationId(organization);
    let link = usecases::signin::link_for_user(&ledger, &portal_url, organization, &email)
        .await
        .map_err(|e| anyhow::anyhow!("no active user {email:?} in organization {organization}: {e}"))?;
    println!("{}", link.url);
    Ok(())
}

/// `ledger billing run`: issues (or previews) a month's invoices.
async fn billing_run(period: String, preview: bool, store: Store) -> anyhow::Result<()> {
    let config = config(store, "127.0.0.1:0".parse()?, 0);
    let ledger = usecases::Ledger::open(&config.ledger()).await?;
    let caller = usecases::Caller::Operator;
    let done = usecases::billing::run(&ledger, &caller, "billing-cli", &period, preview).await?;
    println!("{}", serde_json::to_string_pretty(&done)?);
    std::io::Write::flush(&mut std::io::stdout())?;
    if done.failed.is_empty() {
        return Ok(());
    }
    for failure in &done.failed {
        eprintln!("not issued: subscription {}: {}", failure.subscription_id, failure.reason);
    }
    eprintln!("{} invoice(s) of {period} could not be issued", done.failed.len());
    std::process::exit(EXIT_SOME_INVOICES_FAILED)
}

/// The operator's command from the command line.
fn cli_context() -> usecases::command::Context {
    let metadata = domain::Metadata { actor: Some("operator:cli".into()), ..domain::Metadata::default() };
    usecases::command::Context { metadata, idempotency: None, credential: None }
}

/// Reads a file of at most `domain::airgap::FILE_BYTES_MAX` bytes.
fn read_offline_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let limit = domain::airgap::FILE_BYTES_MAX as u64 + 1;
    std::fs::File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `ledger licenses activate-offline`: writes the license file for a request.
async fn activate_offline(request: PathBuf, out: PathBuf, store: Store, usage: UsageLimits) -> anyhow::Result<()> {
    let bytes = read_offline_file(&request)?;
    let config = config(store, "127.0.0.1:0".parse()?, 0);
    let ledger = usecases::Ledger::open(&config.ledger()).await?;
    let file = usecases::airgap::activate_offline(
        &ledger,
        &usecases::Caller::Operator,
        &cli_context(),
        &bytes,
        &usage.settings(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}: {e}", refusal_code(&e)))?;
    std::fs::write(&out, file.to_text())?;
    println!("{}", serde_json::json!({ "licenseFile": out.display().to_string() }));
    Ok(())
}

/// `ledger usage import`: imports a usage export file.
async fn import_usage(file: PathBuf, store: Store, usage: UsageLimits) -> anyhow::Result<()> {
    let bytes = read_offline_file(&file)?;
    let config = config(store, "127.0.0.1:0".parse()?, 0);
    let ledger = usecases::Ledger::open(&config.ledger()).await?;
    let caller = usecases::Caller::Operator;
    let imported = usecases::airgap::import_usage(&ledger, &caller, &cli_context(), &bytes, &usage.settings())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", refusal_code(&e)))?;
    println!("{}", serde_json::to_string(&imported)?);
    Ok(())
}

/// The problem code the API would answer for `error`.
fn refusal_code(error: &usecases::error::Error) -> String {
    match error {
        usecases::error::Error::Conflict { code, .. } | usecases::error::Error::BadRequest { code, .. } => {
            (*code).to_owned()
        }
        usecases::error::Error::License(e) => format!("{e:?}"),
        _ => "refused".to_owned(),
    }
}

/// `ledger report --as-of DAY`: the revenue figures of DAY's month up to
/// DAY, from the log as it was recorded by DAY's end (the state `replay
/// as-of` rebuilds, checked record by record), never from the read models.
async fn report(as_of: &str, format: &str, store: Store) -> anyhow::Result<()> {
    use anyhow::Context;
    let day = chrono::NaiveDate::parse_from_str(as_of, "%Y-%m-%d").context("--as-of must be YYYY-MM-DD")?;
    anyhow::ensure!(format == "json" || format == "csv", "--format must be json or csv");
    let next = day.succ_opt().context("a day too far")?.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
    let until = domain::Timestamp::from_micros(domain::Timestamp::from_datetime(next).as_micros() - 1);
    let log = match store.database_url.filter(|url| !url.is_empty()) {
        Some(url) => store::ReadOnlyLog::open_postgres(url.parse().context("not a PostgreSQL URL")?).await?,
        None => {
            let path = store.data_dir.join("ledger.sqlite");
            anyhow::ensure!(path.exists(), "{} holds no log (ledger.sqlite)", store.data_dir.display());
            store::ReadOnlyLog::open_sqlite(&path).await?
        }
    };
    let state = projections::LedgerState::rebuild_until(&log, until).await?;
    let catalog = domain::catalog::Catalog::builtin();
    let figures = projections::revenue::Book::of_state(&state, &catalog, projections::revenue::month_of(day), day)?;
    let view = usecases::views::revenue::RevenueView::from(&figures);
    match format {
        "csv" => print!("{}", view.csv()),
        _ => println!("{}", serde_json::to_string_pretty(&view)?),
    }
    Ok(())
}

/// The subject the flags name; a user's organization from the read models.
async fn subject(ledger: &usecases::Ledger, args: &SubjectArgs) -> anyhow::Result<domain::privacy::Subject> {
    use domain::privacy::Subject;
    Ok(match (args.user, args.organization, args.staff) {
        (Some(user), _, _) => {
            let user_id = domain::UserId(user);
            let organization_id = usecases::privacy::organization_of_user(ledger, user_id)
                .await
                .map_err(|e| anyhow::anyhow!("user {user}: {e}"))?;
            Subject::User { organization_id, user_id }
        }
        (None, Some(organization), _) => {
            Subject::Organization { organization_id: domain::OrganizationId(organization) }
        }
        (None, None, Some(staff)) => Subject::Staff { staff_id: domain::staff::StaffId(staff) },
        (None, None, None) => anyhow::bail!("name --user, --organization or --staff"),
    })
}

/// `ledger privacy erase|export`.
async fn privacy(job: Privacy) -> anyhow::Result<()> {
    // `None`: an erasure; `Some(out)`: an export, to `out` or stdout.
    let (store, args, export_to) = match job {
        Privacy::Erase { subject, store, .. } => (store, subject, None),
        Privacy::Export { subject, out, store } => (store, subject, Some(out)),
    };
    let config = config(store, "127.0.0.1:0".parse()?, 0);
    let ledger = usecases::Ledger::open(&config.ledger()).await?;
    let subject = subject(&ledger, &args).await?;
    let caller = usecases::Caller::Operator;
    if let Some(out) = export_to {
        return export(&ledger, &caller, &subject, out).await;
    }
    let stripe = ledger_api::stripe::Stripe::new(ledger_api::stripe::Settings::from_env()?)?;
    let reason = domain::privacy::ErasureReason::Request;
    let done = usecases::privacy::erase(&ledger, &caller, &cli_context(), &stripe, &subject, reason)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", refusal_code(&e)))?;
    println!("{}", serde_json::to_string_pretty(&done)?);
    Ok(())
}

/// Writes every page of the subject's export as one JSON document,
/// record by record (memory stays one page however long the history).
async fn export(
    ledger: &usecases::Ledger,
    caller: &usecases::Caller,
    subject: &domain::privacy::Subject,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut writer: Box<dyn Write> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(private_file(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let limit = Some(usecases::privacy::EXPORT_LIMIT_MAX);
    let mut page = usecases::privacy::export(ledger, caller, subject, 0, limit).await?;
    let head = serde_json::json!({ "subject": page.subject, "readModels": page.read_models });
    let head = serde_json::to_string_pretty(&head)?;
    write!(writer, "{},\n  \"records\": [", head.trim_end_matches('}').trim_end())?;
    let mut first = true;
    loop {
        for record in &page.records {
            write!(writer, "{}\n    {}", if first { "" } else { "," }, serde_json::to_string(record)?)?;
            first = false;
        }
        let Some(after) = page.next else { break };
        page = usecases::privacy::export(ledger, caller, subject, after, limit).await?;
    }
    writeln!(writer, "\n  ]\n}}")?;
    writer.flush()?;
    if let Some(path) = out {
        eprintln!("export written to {}", path.display());
    }
    Ok(())
}

/// A new file only this user may read (an export holds personal data).
fn private_file(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    Ok(options.open(path)?)
}

/// `ledger billing void`: voids an invoice that is not paid.
async fn billing_void(invoice: uuid::Uuid, reason: String, store: Store) -> anyhow::Result<()> {
    let config = config(store, "127.0.0.1:0".parse()?, 0);
    let ledger = usecases::Ledger::open(&config.ledger()).await?;
    let metadata = domain::Metadata { actor: Some("billing-cli".into()), ..domain::Metadata::default() };
    let voided = usecases::invoice_ops::void(&ledger, &usecases::Caller::Operator, metadata, invoice, &reason).await?;
    println!("{}", serde_json::to_string_pretty(&voided)?);
    Ok(())
}

/// `ledger billing credit-note`: a credit note against an invoice.
async fn billing_credit_note(
    invoice: uuid::Uuid,
    reason: String,
    lines: Vec<String>,
    store: Store,
) -> anyhow::Result<()> {
    let mut parsed = Vec::with_capacity(lines.len());
    for line in &lines {
        let (amount, description) =
            line.split_once(':').ok_or_else(|| anyhow::anyhow!("a line is AMOUNT:DESCRIPTION, not {line:?}"))?;
        let amount: rust_decimal::Decimal =
            amount.trim().parse().map_err(|_| anyhow::anyhow!("{amount:?} is not an amount"))?;
        parsed.push((description.to_owned(), amount));
    }
    let config = config(store, "127.0.0.1:0".parse()?, 0);
    let ledger = usecases::Ledger::open(&config.ledger()).await?;
    let metadata = domain::Metadata { actor: Some("billing-cli".into()), ..domain::Metadata::default() };
    let request = usecases::invoice_ops::CreditNoteRequest { reason, lines: parsed };
    let note = usecases::invoice_ops::credit(&ledger, &usecases::Caller::Operator, metadata, invoice, &request).await?;
    println!("{}", serde_json::to_string_pretty(&note)?);
    Ok(())
}

/// A public key as `GET /api/v1/keys` shows it (standard base64).
fn public_key(key: &ed25519_dalek::VerifyingKey) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.as_bytes())
}
