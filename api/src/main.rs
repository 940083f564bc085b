//! `ledger`: the ledger's server and its command-line jobs.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use domain::subscription::Policy;

#[derive(Parser)]
#[command(name = "ledger", version, about = "Event-sourced billing, license and usage ledger")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
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
        /// License validations one client address may make a minute (0: no limit).
        #[arg(long, default_value_t = 600)]
        validations_per_address_per_minute: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            listen,
            data_dir,
            database_url,
            clock,
            backdate_days_max,
            validations_per_address_per_minute,
        } => {
            let config = ledger_api::Config {
                listen,
                data_dir,
                database_url: database_url.filter(|url| !url.is_empty()),
                clock,
                operator_token: std::env::var("LEDGER_OPERATOR_TOKEN").ok().filter(|t| !t.is_empty()),
                auditor_token: std::env::var("LEDGER_AUDITOR_TOKEN").ok().filter(|t| !t.is_empty()),
                policy: Policy { backdate_days_max },
                validations_per_address_per_minute,
            };
            ledger_api::serve(config).await
        }
    }
}
