//! `ledger-fill`: pre-fills a ledger (a data directory's SQLite log, or
//! PostgreSQL through `DATABASE_URL`) to about N events of a realistic mix,
//! for the growth benchmark (issue 13, item 6).
//!
//! Everything the server must accept afterwards is made the way the server
//! makes it: the data directory's secrets by `usecases::Ledger::open` (so
//! the keys written out are keys the server knows), organizations,
//! subscriptions, keys, deployments, upgrades, cancellations and invoices
//! by the use cases themselves. Only the bulk (license validations and
//! usage reports) is built here, event for event as `usecases::validation`
//! and `usecases::usage` build them, and appended through the store's batch
//! append (`EventLog::append`, many commands a call), each on its day's
//! stream with the same `ExpectedRevision::Below` cap, so the writer itself
//! refuses anything past a cap.
//!
//! The history runs on a manual clock from `--days` days ago to yesterday:
//! today is left free, so the benchmark's own validations and reports do
//! not meet the fill's against the daily caps.
//!
//! Usage: `ledger-fill --data-dir DIR [--database-url URL] --events N
//! --keys-out FILE`; the operator token is `LEDGER_OPERATOR_TOKEN`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{Datelike, NaiveDate};
use clap::Parser;
use domain::catalog::Tier;
use domain::license::ValidationCode;
use domain::usage::{CORRECTION_DAYS_DEFAULT, REPORTS_PER_DAY_DEFAULT, UsageReported};
use domain::validation::{LicenseValidated, VALIDATIONS_PER_DAY_MAX};
use domain::{LicenseId, Metadata, OrganizationId, SubscriptionId, Timestamp};
use rust_decimal::Decimal;
use store::{Command, ExpectedRevision, NewEvent};
use usecases::command::{Context, new_event_id};
use usecases::subscriptions::{CancelInput, CreateSubscriptionInput, UpgradeInput};
use usecases::validation::{Origin, ValidationRequest};
use usecases::{Caller, Ledger, LedgerConfig};

/// Deployments each key activates at the start and reports from.
const DEPLOYMENTS_PER_KEY: usize = 2;
/// One event in this many of the bulk is a usage report; the rest are validations.
const USAGE_ONE_IN: u64 = 10;
/// Every this many-th organization upgrades (a new key, the old superseded).
const UPGRADE_ONE_IN: usize = 20;
/// Every this many-th organization cancels at its term's end.
const CANCEL_ONE_IN: usize = 33;
/// How long the fill waits for its own read models (before its commands).
const READ_MODELS_WAIT: Duration = Duration::from_secs(600);
/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;
/// The client version the fill's validations carry.
const CLIENT_VERSION: &str = "ledger-fill/1";

#[derive(Parser)]
#[command(name = "ledger-fill", about = "Pre-fill a ledger to N events of a realistic mix")]
struct Args {
    /// The data directory (its keys; its SQLite log unless --database-url).
    #[arg(long)]
    data_dir: PathBuf,
    /// PostgreSQL instead of the data directory's SQLite (an empty database).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// About how many events the log holds when done.
    #[arg(long)]
    events: u64,
    /// Organizations, each with one subscription and key.
    #[arg(long, default_value_t = 1000)]
    organizations: usize,
    /// Days of history, ending yesterday.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Commands in each batch append.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Where the keys go, one JSON object a line, for `ledger-load`.
    #[arg(long)]
    keys_out: PathBuf,
}

/// One organization's live key, as the load generator needs it.
#[derive(Debug, Clone)]
struct Key {
    organization_id: OrganizationId,
    subscription_id: SubscriptionId,
    license_id: LicenseId,
    key: String,
    tier: Tier,
    start: NaiveDate,
}

fn operator_context() -> Context {
    Context {
        metadata: Metadata { actor: Some(Caller::Operator.actor()), ..Metadata::default() },
        idempotency: None,
        credential: Some(usecases::acknowledged::Credential::Operator),
    }
}

fn midnight(day: NaiveDate) -> Timestamp {
    domain::license::start_of_day(day)
}

/// Moves the fill's manual clock forward (never back).
fn set_clock(ledger: &Ledger, at: Timestamp) -> anyhow::Result<()> {
    if at > ledger.now() {
        ledger.clock.advance(at).context("the fill's clock is manual")??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let today = chrono::Utc::now().date_naive();
    let first_day = today - chrono::Days::new(u64::from(args.days));
    let config = LedgerConfig {
        data_dir: args.data_dir.clone(),
        database_url: args.database_url.clone().filter(|url| !url.is_empty()),
        clock: format!("manual:{}", midnight(first_day).to_rfc3339()),
        operator_token: std::env::var("LEDGER_OPERATOR_TOKEN").ok().filter(|t| !t.is_empty()),
        auditor_token: None,
        policy: domain::subscription::Policy::default(),
    };
    let ledger = Ledger::open(&config).await?;
    if ledger.log.head().await?.sequence != 0 {
        bail!("the log is not empty: fill a new data directory or database");
    }
    let started = Instant::now();
    let mut keys = provision(&ledger, args.organizations).await?;
    eprintln!("provisioned {} organizations in {:.1} s", keys.len(), started.elapsed().as_secs_f64());
    for offset in 1..args.days {
        let day = first_day + chrono::Days::new(u64::from(offset));
        set_clock(&ledger, midnight(day))?;
        lifecycle(&ledger, &mut keys, offset, args.days, day).await?;
        let head = ledger.log.head().await?.sequence;
        let events = args.events.saturating_sub(head) / u64::from(args.days - offset);
        fill_day(&ledger, &keys, day, events, args.batch).await?;
    }
    write_keys(&args.keys_out, &keys)?;
    report(&ledger, started.elapsed()).await?;
    // The manual clock's file must not be mistaken for the server's own.
    let _ = std::fs::remove_file(args.data_dir.join("test-clock"));
    Ok(())
}

async fn report(ledger: &Ledger, took: Duration) -> anyhow::Result<()> {
    let head = ledger.log.head().await?.sequence;
    let seconds = took.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"events": head, "seconds": seconds, "eventsPerSecond": (head as f64 / seconds).round()})
    );
    eprintln!("filled {head} events in {seconds:.1} s ({:.0} events/s)", head as f64 / seconds);
    Ok(())
}

/// Creates the organizations, each with a subscription whose key activates
/// its deployments, all through the use cases on the first day.
async fn provision(ledger: &Ledger, organizations: usize) -> anyhow::Result<Vec<Key>> {
    let mut keys = Vec::with_capacity(organizations);
    for index in 0..organizations {
        let input = usecases::organizations::CreateOrganizationInput {
            name: format!("Bench Organization {index}"),
            domain: Some(format!("org{index}.example.com")),
            industry: Some("software".into()),
            employee_count: Some(10 + (index % 500) as u32),
        };
        let context = operator_context();
        let created = usecases::organizations::create_organization(ledger, &Caller::Operator, &context, input).await?;
        let organization_id = OrganizationId(created.id);
        let tier = if index % 3 == 0 { Tier::Professional } else { Tier::Starter };
        let subscribe = CreateSubscriptionInput {
            organization_id,
            tier,
            start_date: ledger.today(),
            auto_renew: true,
            max_deployments: 3,
            enterprise_overage_rate: None,
        };
        let created =
            usecases::subscriptions::create_subscription(ledger, &Caller::Operator, &context, subscribe).await?;
        let subscription_id = SubscriptionId(created.subscription_id);
        let license_id = license_of(ledger, subscription_id).await?;
        let key =
            Key { organization_id, subscription_id, license_id, key: created.license_key, tier, start: ledger.today() };
        activate(ledger, &key).await?;
        keys.push(key);
    }
    Ok(keys)
}

/// The subscription's current key, from the read models, once they include
/// the operator's commands (a command answers before they do).
async fn license_of(ledger: &Ledger, subscription_id: SubscriptionId) -> anyhow::Result<LicenseId> {
    usecases::acknowledged::catch_up(ledger, Some(usecases::acknowledged::Credential::Operator), None).await?;
    let subscription = projections::models::subscriptions::subscription(&ledger.models.db, subscription_id)
        .await?
        .context("the new subscription is in the read models")?;
    subscription.license_id.context("the subscription has a key")
}

/// Validates the key once from each of its deployments through the
/// validation use case, which activates them.
async fn activate(ledger: &Ledger, key: &Key) -> anyhow::Result<()> {
    for deployment in 0..DEPLOYMENTS_PER_KEY {
        let request = ValidationRequest {
            license_key: Some(key.key.clone()),
            deployment_id: Some(deployment_id(deployment)),
            nonce: None,
            client_time: None,
            client_version: Some(CLIENT_VERSION.into()),
            floating: false,
            proof: None,
        };
        let answer = usecases::validation::validate(ledger, request, Origin::default()).await?;
        if !answer.is_valid {
            bail!("a new key was refused: {}", answer.code);
        }
    }
    Ok(())
}

fn deployment_id(index: usize) -> String {
    format!("deployment-{index}")
}

/// The lifecycle of a day: upgrades a third of the way in, cancellations
/// half way, and the billing run of a month on the next month's first day.
async fn lifecycle(ledger: &Ledger, keys: &mut [Key], offset: u32, days: u32, day: NaiveDate) -> anyhow::Result<()> {
    let commands = offset == days / 3 || offset == days / 2 || day.day() == 1;
    if commands {
        // Each command waits (5 s at most) for the read models to include
        // what this node acknowledged, the batch appends too; a projector
        // slower than the fill (PostgreSQL) would make it refuse.
        let head = ledger.log.head().await?.sequence;
        ledger.models.wait_for(head, READ_MODELS_WAIT).await?;
    }
    if offset == days / 3 {
        upgrade(ledger, keys).await?;
    }
    if offset == days / 2 {
        cancel(ledger, keys).await?;
    }
    if day.day() == 1 {
        let period = (day - chrono::Days::new(1)).format("%Y-%m").to_string();
        let run = usecases::billing::run(ledger, &Caller::Operator, "ledger-fill", &period, false).await?;
        eprintln!("billing run {period}: {} issued, {} failed", run.invoices.len(), run.failed.len());
    }
    Ok(())
}

/// Upgrades every `UPGRADE_ONE_IN`-th starter organization to professional;
/// its new key replaces the superseded one and activates its deployments.
async fn upgrade(ledger: &Ledger, keys: &mut [Key]) -> anyhow::Result<()> {
    let mut upgraded = 0;
    for key in keys.iter_mut().step_by(UPGRADE_ONE_IN).filter(|k| k.tier == Tier::Starter) {
        let input = UpgradeInput { target_tier: Tier::Professional, effective_date: None, addons: Vec::new() };
        let context = operator_context();
        let answer =
            usecases::subscriptions::upgrade(ledger, &Caller::Operator, &context, key.organization_id, input).await?;
        key.key = answer.new_license_key;
        key.license_id = license_of(ledger, key.subscription_id).await?;
        key.tier = Tier::Professional;
        activate(ledger, key).await?;
        upgraded += 1;
    }
    eprintln!("upgraded {upgraded} organizations");
    Ok(())
}

/// Cancels every `CANCEL_ONE_IN`-th subscription at its term's end (its
/// key stays valid until then).
async fn cancel(ledger: &Ledger, keys: &[Key]) -> anyhow::Result<()> {
    for key in keys.iter().step_by(CANCEL_ONE_IN) {
        let input = CancelInput { immediate: false, effective_date: None };
        usecases::subscriptions::cancel(ledger, &Caller::Operator, &operator_context(), key.organization_id, input)
            .await?;
    }
    eprintln!("cancelled {} subscriptions at their term's end", keys.len().div_ceil(CANCEL_ONE_IN));
    Ok(())
}

/// Appends a day's validations and usage reports, spread evenly over the
/// day, in batches; refuses a budget that would pass a daily cap.
async fn fill_day(ledger: &Ledger, keys: &[Key], day: NaiveDate, events: u64, batch: usize) -> anyhow::Result<()> {
    let key_count = keys.len() as u64;
    let reports = events / USAGE_ONE_IN;
    if (events - reports).div_ceil(key_count) >= VALIDATIONS_PER_DAY_MAX - DEPLOYMENTS_PER_KEY as u64
        || reports.div_ceil(key_count) >= REPORTS_PER_DAY_DEFAULT
    {
        bail!("{events} events a day would pass a key's daily caps: give more --days or --organizations");
    }
    let mut commands = Vec::with_capacity(batch);
    let (mut validations, mut usage) = (0_u64, 0_u64);
    for slot in 0..events {
        let at = Timestamp::from_micros(
            midnight(day).as_micros() + (i128::from(slot) * i128::from(DAY_MICROS) / i128::from(events.max(1))) as i64,
        );
        let command = if slot % USAGE_ONE_IN == USAGE_ONE_IN - 1 {
            usage += 1;
            usage_report(&keys[(usage % key_count) as usize], usage, day, at)?
        } else {
            validations += 1;
            validation(&keys[(validations % key_count) as usize], validations, day, at)
        };
        commands.push(command);
        if commands.len() == batch || slot + 1 == events {
            set_clock(ledger, at)?;
            append(ledger, std::mem::take(&mut commands)).await?;
        }
    }
    Ok(())
}

async fn append(ledger: &Ledger, commands: Vec<Command>) -> anyhow::Result<()> {
    for result in ledger.log.append(commands).await? {
        result.map_err(|rejection| anyhow::anyhow!("the log refused a fill command: {rejection}"))?;
    }
    Ok(())
}

fn license_metadata(license_id: LicenseId) -> Metadata {
    Metadata { actor: Some(format!("license:{license_id}")), ..Metadata::default() }
}

/// A valid validation of the key, as `usecases::validation` records it.
fn validation(key: &Key, index: u64, day: NaiveDate, at: Timestamp) -> Command {
    let validated = domain::validation::ValidationEvent::from(LicenseValidated {
        license_id: key.license_id,
        validation_id: uuid::Uuid::now_v7(),
        deployment_id: deployment_id(index as usize % DEPLOYMENTS_PER_KEY),
        code: ValidationCode::Valid,
        client_version: Some(CLIENT_VERSION.into()),
        at,
    });
    Command {
        stream_id: domain::validation::stream(key.license_id, day),
        expected: ExpectedRevision::Below(VALIDATIONS_PER_DAY_MAX),
        idempotency: None,
        events: vec![NewEvent::from_event(&validated, new_event_id(), at, &license_metadata(key.license_id))],
    }
}

/// A usage report of the day, as `usecases::usage` records it (values
/// checked by the domain's own `check`).
fn usage_report(key: &Key, index: u64, day: NaiveDate, at: Timestamp) -> anyhow::Result<Command> {
    let values = [
        ("activeUsers", Decimal::from(3 + index % 20)),
        ("dataVolumeGB", Decimal::new(125 + (index % 400) as i64, 1)),
        ("apiCallsCount", Decimal::from(1_000 + index % 5_000)),
        ("trainingHours", Decimal::new((index % 8) as i64 * 5, 1)),
    ];
    let metrics = domain::usage::check(values, day, day, key.start, CORRECTION_DAYS_DEFAULT)?;
    let reported = UsageReported {
        subscription_id: key.subscription_id,
        license_id: key.license_id,
        deployment_id: deployment_id(index as usize % DEPLOYMENTS_PER_KEY),
        day,
        metrics,
    };
    let event = domain::usage::UsageEvent::from(reported);
    Ok(Command {
        stream_id: domain::usage::stream(key.subscription_id, day),
        expected: ExpectedRevision::Below(REPORTS_PER_DAY_DEFAULT),
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), at, &license_metadata(key.license_id))],
    })
}

/// The keys, one JSON object a line: what `ledger-load` presents.
fn write_keys(path: &std::path::Path, keys: &[Key]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for key in keys {
        let line = serde_json::json!({
            "organizationId": key.organization_id.0,
            "subscriptionId": key.subscription_id.0,
            "licenseId": key.license_id.0,
            "licenseKey": key.key,
            "deployments": (0..DEPLOYMENTS_PER_KEY).map(deployment_id).collect::<Vec<_>>(),
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
