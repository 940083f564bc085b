//! `ledger staff …`: the first staff admin, and service tokens for
//! automation, from a shell beside the server (the store opened as
//! `ledger billing run` opens it). What it appends is the bootstrap
//! service token's (actor `operator`), as a request with
//! `LEDGER_OPERATOR_TOKEN` would be.

use clap::Subcommand;
use usecases::Caller;
use usecases::acknowledged::Credential;
use usecases::command::Context;
use usecases::staff::{self, AddStaffInput, IssueServiceTokenInput, SERVICE_TOKEN_DAYS_MAX, parse_staff_role};

use crate::Store;

#[derive(Subcommand)]
pub enum Staff {
    /// Add a staff user (prints their id).
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// staff_admin, billing, support or auditor.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        store: Store,
    },
    /// Print a sign-in link to the console for an active staff user
    /// (valid 15 minutes, once), when there is no SMTP.
    LoginLink {
        #[arg(long)]
        email: String,
        /// The server's public URL, which the link begins with.
        #[arg(long, env = "LEDGER_PORTAL_URL", default_value = "http://127.0.0.1:8080")]
        portal_url: String,
        #[command(flatten)]
        store: Store,
    },
    /// Service tokens.
    Token {
        #[command(subcommand)]
        job: Token,
    },
}

#[derive(Subcommand)]
pub enum Token {
    /// Issue a service token; prints it (shown this once) as JSON.
    Issue {
        /// staff_admin, billing, support or auditor.
        #[arg(long)]
        role: String,
        /// Days until it expires (1 to 366).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(SERVICE_TOKEN_DAYS_MAX)))]
        expires_days: u32,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: Store,
    },
}

/// What to do, without where.
pub enum Action {
    Add { email: String, name: String, role: String },
    IssueToken { role: String, expires_days: u32, name: String },
    LoginLink { email: String, portal_url: String },
}

impl Staff {
    pub fn split(self) -> (Action, Store) {
        match self {
            Staff::Add { email, name, role, store } => (Action::Add { email, name, role }, store),
            Staff::LoginLink { email, portal_url, store } => (Action::LoginLink { email, portal_url }, store),
            Staff::Token { job: Token::Issue { role, expires_days, name, store } } => {
                (Action::IssueToken { role, expires_days, name }, store)
            }
        }
    }
}

pub async fn run(action: Action, ledger: &usecases::Ledger) -> anyhow::Result<()> {
    let caller = Caller::Operator;
    let metadata = domain::Metadata {
        actor: Some(caller.actor()),
        correlation_id: Some("ledger-staff-cli".into()),
        ..domain::Metadata::default()
    };
    let context = Context { metadata, idempotency: None, credential: Some(Credential::Operator) };
    let answer = match action {
        Action::Add { email, name, role } => {
            let input = AddStaffInput { name, email, role: parse_staff_role(&role)? };
            serde_json::to_string_pretty(&staff::add_staff(ledger, &caller, &context, input).await?)?
        }
        Action::IssueToken { role, expires_days, name } => {
            let input = IssueServiceTokenInput { name, role: parse_staff_role(&role)?, expires_in_days: expires_days };
            serde_json::to_string_pretty(&staff::issue_service_token(ledger, &caller, &context, input).await?)?
        }
        Action::LoginLink { email, portal_url } => {
            let link = usecases::console::link_for_email(ledger, &portal_url, &email).await?;
            link.map(|(_, url)| url).ok_or_else(|| anyhow::anyhow!("no active staff user {email:?}"))?
        }
    };
    println!("{answer}");
    Ok(())
}
