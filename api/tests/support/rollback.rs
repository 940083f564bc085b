//! Rolling a log back behind the server, for the tests of what the server
//! and its clients do then (`integrity.rs`, `client.rs`).

use crate::common::Backend;

/// Rolls the log back to `to`, as restoring an older backup of the
/// database (or failing over to a replica that missed the last commits)
/// does: the later records, their command rows and the head go back. The
/// append-only triggers would refuse it, so they go first, as they would
/// not stand in the way of a restore.
pub async fn roll_back(backend: &Backend, to: u64) {
    let statements = |drop_triggers: &[&'static str]| {
        let mut all: Vec<String> = drop_triggers.iter().map(|s| (*s).to_owned()).collect();
        all.push(format!("DELETE FROM events WHERE sequence > {to}"));
        all.push(format!("DELETE FROM commands WHERE last_sequence > {to}"));
        all.push(format!(
            "UPDATE log_head SET sequence = {to}, \
             chain_hash = (SELECT chain_hash FROM events WHERE sequence = {to}), \
             recorded_at_us = (SELECT recorded_at_us FROM events WHERE sequence = {to}) WHERE id = 1"
        ));
        all
    };
    match backend.database_url() {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("PostgreSQL answers");
            for sql in statements(&["DROP TRIGGER events_immutable ON events"]) {
                sqlx::query(&sql).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(backend.data_dir().join("ledger.sqlite"))
                .busy_timeout(std::time::Duration::from_secs(30));
            let pool = sqlx::SqlitePool::connect_with(options).await.expect("the SQLite log opens");
            for sql in statements(&["DROP TRIGGER events_append_only", "DROP TRIGGER events_immutable"]) {
                sqlx::query(&sql).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }
}
