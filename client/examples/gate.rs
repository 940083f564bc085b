//! An on-premises service at start-up: validate the license (or fall back
//! to the stored lease), gate a feature, check that one more user may be
//! added, and report today's usage. It prints every decision.
//!
//! ```text
//! LEDGER_URL=http://127.0.0.1:8080 LEDGER_ALLOW_PLAIN_HTTP=1 LICENSE_KEY=LK1-… \
//! LEASE_PUBLIC_KEY=<leases.current of GET /api/v1/keys> \
//! cargo run -p ledger-client --example gate
//! ```
//!
//! Optional: `LEDGER_STATE_DIR` (default `./ledger-client-state`),
//! `DEPLOYMENT_ID` (default `default`), `ACTIVE_USERS` (default 4),
//! `LEDGER_ALLOW_PLAIN_HTTP=1` (a plain `http://` URL is refused otherwise).

use anyhow::Context;
use ledger_client::{
    Action, Config, Decimal, Decision, LicenseClient, Status, UsageMetrics, UsageReport, UsageReporter,
    parse_public_key,
};

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let lease_key = parse_public_key(&env("LEASE_PUBLIC_KEY")?).context("LEASE_PUBLIC_KEY")?;
    let state_dir = std::env::var("LEDGER_STATE_DIR").unwrap_or_else(|_| "./ledger-client-state".into());
    let mut config = Config::new(env("LEDGER_URL")?, env("LICENSE_KEY")?, state_dir, vec![lease_key]);
    if let Ok(deployment) = std::env::var("DEPLOYMENT_ID") {
        config.deployment_id = deployment;
    }
    // Plain http:// only when asked for (a server on this host).
    config.allow_plain_http = std::env::var("LEDGER_ALLOW_PLAIN_HTTP").is_ok_and(|v| v == "1");
    let active_users: u64 = std::env::var("ACTIVE_USERS").ok().and_then(|n| n.parse().ok()).unwrap_or(4);

    let client = LicenseClient::new(config.clone()).context("opening the license state")?;
    let status = match client.validate().await {
        Ok(status) => status,
        // An answer we cannot trust is no answer: judge the stored lease.
        Err(e) => {
            println!("validation: {e:#}; judging the stored lease");
            client.status()
        }
    };
    match &status {
        Status::Valid { code, tier, lease_expires_at, offline, warnings, .. } => {
            let how = if *offline { "offline, on the stored lease" } else { "online" };
            println!("license: {code} ({tier}), {how}; works without the server until {lease_expires_at}");
            for warning in warnings {
                println!("  warning: {warning}");
            }
        }
        Status::Invalid { code } => println!("license: not valid ({code}); everything is disabled"),
        Status::ClockTampered => println!("license: the clock was set back; everything is disabled"),
        Status::NoLease => println!("license: none (never validated, or the lease ran out); everything is disabled"),
    }

    for feature in ["basic_analytics", "advanced_analytics"] {
        let verdict = if client.allows_feature(feature) { "enabled" } else { "disabled" };
        println!("feature {feature}: {verdict}");
    }
    match client.check(&Action::AddUser { active_users }) {
        Decision::Allowed => println!("add a user ({active_users} active): allowed"),
        Decision::Denied(why) => println!("add a user ({active_users} active): denied, {why:?}"),
    }

    let reporter = UsageReporter::open(&config).context("opening the usage queue")?;
    let today = chrono::Utc::now().date_naive();
    let metrics = UsageMetrics {
        active_users,
        data_volume_gb: Decimal::new(1250, 2),
        api_calls_count: 120,
        training_hours: Decimal::ZERO,
    };
    let id = reporter.enqueue(UsageReport { reporting_period: today, metrics }).await?;
    println!("usage report for {today} queued as #{}", id.0);
    let outcome = reporter.flush().await?;
    println!(
        "usage: {} sent, {} refused (see {}), {} still queued{}",
        outcome.sent,
        outcome.rejected,
        reporter.rejected_dir().display(),
        outcome.remaining,
        outcome.stopped.map(|why| format!(" ({why})")).unwrap_or_default()
    );
    Ok(())
}
