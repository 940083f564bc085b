//! Helpers for tests and benchmarks that need a real database.
//!
//! PostgreSQL tests read `DATABASE_URL`. Without it they print a notice and
//! skip, except under CI (`CI` set), where a missing database is an error.
//! Each test gets its own schema, so tests run in parallel without seeing
//! each other's rows.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// Schemas of earlier runs older than this are dropped when a new one is made.
const STALE_SCHEMA_SECONDS: u64 = 3600;

/// `DATABASE_URL`, or `None` after printing why the caller skips.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{test}: DATABASE_URL is not set; under CI PostgreSQL tests must run, not skip")
        }
        _ => {
            // Straight to the file descriptor: libtest captures `eprintln!`
            // of passing tests, and this notice must be seen.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: PostgreSQL test, DATABASE_URL is not set");
            None
        }
    }
}

/// A fresh PostgreSQL schema for one test.
pub struct Schema {
    pub name: String,
    /// Connection options whose `search_path` is the schema.
    pub options: PgConnectOptions,
}

/// Options for connections to `url` that use `schema`.
pub fn schema_options(url: &str, schema: &str) -> PgConnectOptions {
    let options: PgConnectOptions = url.parse().expect("DATABASE_URL is a PostgreSQL URL");
    options.options([("search_path", schema)])
}

/// Creates a fresh schema (dropping test schemas of earlier runs that are
/// over an hour old) and returns it.
pub async fn fresh_schema(url: &str) -> Schema {
    let options: PgConnectOptions = url.parse().expect("DATABASE_URL is a PostgreSQL URL");
    let mut admin = PgConnection::connect_with(&options).await.expect("PostgreSQL at DATABASE_URL answers");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ledger\\_t\\_%' AND split_part(nspname, '_', 3)::bigint < $1",
    )
    .bind((now - STALE_SCHEMA_SECONDS) as i64)
    .fetch_all(&mut admin)
    .await
    .expect("list stale test schemas");
    for schema in stale {
        // Another test run may be dropping the same one; either way it goes.
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut admin).await;
    }
    let name = format!("ledger_t_{now}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut admin).await.expect("create test schema");
    Schema { options: schema_options(url, &name), name }
}
