//! Several PostgreSQL hosts (a primary and its standbys), of which the
//! server writes to the one that is writable.
//!
//! sqlx 0.8 has no multi-host connection strings (libpq's
//! `target_session_attrs=read-write`), so the store does it itself: the
//! database URL may be a comma-separated list of URLs; at open the first
//! host that answers `pg_is_in_recovery()` with false is used, and a
//! follower task checks the pool's host every [`HOST_CHECK_INTERVAL`] and,
//! when it stops answering or turns out to be in recovery (a failover),
//! finds the writable host again and points the pool's new connections at
//! it. Connections to a dead host fail sqlx's check before use and are
//! dropped.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};

use crate::StoreError;

/// Hosts a list may name: a primary and a few standbys.
pub const HOSTS_MAX: usize = 8;
/// How often a pool's host is checked to still be writable.
pub const HOST_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long one host may take to connect and answer the check.
pub const HOST_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The hosts of a database URL: one URL, or several separated by commas.
#[derive(Debug, Clone)]
pub struct PgHosts(Vec<PgConnectOptions>);

impl std::str::FromStr for PgHosts {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        let urls: Vec<&str> = list.split(',').map(str::trim).filter(|url| !url.is_empty()).collect();
        if urls.is_empty() || urls.len() > HOSTS_MAX {
            return Err(format!("a database URL names 1 to {HOSTS_MAX} hosts, comma-separated; got {}", urls.len()));
        }
        let hosts = urls
            .iter()
            .enumerate()
            .map(|(n, url)| {
                let not_postgres = || format!("URL {} of the list is not a PostgreSQL URL", n + 1);
                // sqlx reads any scheme's URL as PostgreSQL's: check it here.
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(not_postgres());
                }
                url.parse().map_err(|_| not_postgres())
            })
            .collect::<Result<_, _>>()?;
        Ok(Self(hosts))
    }
}

impl PgHosts {
    /// One host.
    pub fn one(options: PgConnectOptions) -> Self {
        Self(vec![options])
    }

    /// The first host that answers and is not in recovery (a primary).
    pub async fn writable(&self) -> Result<PgConnectOptions, StoreError> {
        let mut failures = Vec::new();
        for options in &self.0 {
            match probe(options).await {
                Ok(false) => return Ok(options.clone()),
                Ok(true) => failures.push(format!("{}: in recovery (a standby)", name(options))),
                Err(error) => failures.push(format!("{}: {error}", name(options))),
            }
        }
        Err(StoreError::Io(format!("no writable PostgreSQL host: {}", failures.join("; "))))
    }

    /// Keeps `pool` on the writable host, in a task that ends when the pool
    /// is closed.
    pub fn follow(&self, pool: PgPool) {
        if self.0.len() < 2 {
            return;
        }
        let hosts = self.clone();
        tokio::spawn(async move {
            while !pool.is_closed() {
                tokio::time::sleep(HOST_CHECK_INTERVAL).await;
                let checked = sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&pool);
                if let Ok(Ok(false)) = tokio::time::timeout(HOST_PROBE_TIMEOUT, checked).await {
                    continue;
                }
                match hosts.writable().await {
                    Ok(options) if same_host(&options, &pool.connect_options()) => {}
                    Ok(options) => {
                        tracing::warn!(host = %name(&options), "PostgreSQL: the writable host changed; reconnecting");
                        pool.set_connect_options(options);
                    }
                    Err(error) => tracing::warn!(%error, "PostgreSQL: no writable host yet"),
                }
            }
        });
    }
}

/// Whether the host is in recovery, on a connection of its own.
async fn probe(options: &PgConnectOptions) -> Result<bool, String> {
    let checked = async {
        let mut connection = PgConnection::connect_with(options).await?;
        let in_recovery = sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&mut connection).await;
        let _ = connection.close().await;
        in_recovery
    };
    match tokio::time::timeout(HOST_PROBE_TIMEOUT, checked).await {
        Ok(Ok(in_recovery)) => Ok(in_recovery),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {HOST_PROBE_TIMEOUT:?}")),
    }
}

fn same_host(a: &PgConnectOptions, b: &PgConnectOptions) -> bool {
    a.get_host() == b.get_host() && a.get_port() == b.get_port()
}

/// `host:port`, never the password.
fn name(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_parsed_bounded_and_checked() {
        let one: PgHosts = "postgresql://u@a:5432/db".parse().unwrap();
        assert_eq!(one.0.len(), 1);
        let two: PgHosts = "postgresql://u@a:5432/db, postgresql://u@b:5433/db".parse().unwrap();
        assert_eq!((two.0[1].get_host(), two.0[1].get_port()), ("b", 5433));
        assert!("".parse::<PgHosts>().is_err());
        assert!("postgresql://a/db,mysql://b/db".parse::<PgHosts>().unwrap_err().contains("URL 2"));
        let many = ["postgresql://a/db"; HOSTS_MAX + 1].join(",");
        assert!(many.parse::<PgHosts>().is_err());
    }
}
