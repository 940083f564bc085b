//! Upgrading read models already written: a migration that adds what the
//! rows written before it cannot hold starts that projection again from
//! the log's first record, leaving every other projection where it was.

use ledger_projections::db::{READMODELS_FILE, ReadModelDb};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// A read-model database as the release before migration `first_new`
/// left it (every migration named before it applied), with `rows`
/// written there; then opened by this release, which applies the rest.
async fn upgraded(first_new: &str, rows: &str) -> (tempfile::TempDir, ReadModelDb) {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite-readmodels");
    for entry in std::fs::read_dir(&source).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.as_str() < first_new {
            std::fs::copy(source.join(&name), old.join(&name)).unwrap();
        }
    }
    let options = SqliteConnectOptions::new().filename(dir.path().join(READMODELS_FILE)).create_if_missing(true);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
    sqlx::raw_sql(rows).execute(&pool).await.unwrap();
    pool.close().await;
    let db = ReadModelDb::open_sqlite(dir.path()).await.unwrap();
    (dir, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_license_windows_migration_starts_the_licenses_projection_again() {
    let (_dir, db) = upgraded(
        "0006",
        "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES \
         ('licenses-v1', 7, zeroblob(32)), ('organizations-v1', 7, zeroblob(32)); \
         INSERT INTO rm_licenses (id, organization_id, subscription_id, issued_sequence, revoked, state) \
         VALUES (x'01', NULL, NULL, 3, 0, x'00'); \
         INSERT INTO rm_license_keys (key_hash, license_id) VALUES (x'02', x'01');",
    )
    .await;
    let checkpoints = db.checkpoints(&["licenses-v1", "organizations-v1"]).await.unwrap();
    assert_eq!(checkpoints[0], None, "the licenses projection starts again");
    assert_eq!(checkpoints[1].map(|c| c.sequence), Some(7), "the others stay where they were");
    for table in ["rm_licenses", "rm_license_keys"] {
        let rows = db.query(&format!("SELECT count(*) FROM {table}"), Vec::new()).await.unwrap();
        assert_eq!(rows[0].uint(0).unwrap(), 0, "{table} is emptied for the licenses projection to fill again");
    }
    let columns = db.query("SELECT window_ends_at FROM rm_licenses", Vec::new()).await;
    assert!(columns.is_ok(), "{columns:?}");
}

/// The audit index's version 2 (`0009_audit_sessions.sql`): the rows
/// version 1 wrote are emptied and its checkpoint dropped, so "audit-v2"
/// fills again from the log's first record; other projections stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_sessions_migration_starts_the_audit_projection_again() {
    let (_dir, db) = upgraded(
        "0009",
        "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES \
         ('audit-v1', 7, zeroblob(32)), ('organizations-v1', 7, zeroblob(32)); \
         INSERT INTO rm_audit (sequence, recorded_at, occurred_at, stream_id, event_type, leaf_hash) \
         VALUES (1, 0, 0, 'signin/00', 'PortalSignedIn', zeroblob(32)); \
         INSERT INTO rm_audit_owners (entity_id, organization_id) VALUES (x'01', x'02');",
    )
    .await;
    let names = ["audit-v1", ledger_projections::models::audit::NAME, "organizations-v1"];
    let checkpoints = db.checkpoints(&names).await.unwrap();
    assert_eq!(ledger_projections::models::audit::NAME, "audit-v2");
    assert_eq!((checkpoints[0], checkpoints[1]), (None, None), "the audit projection starts again");
    assert_eq!(checkpoints[2].map(|c| c.sequence), Some(7), "the others stay where they were");
    for table in ["rm_audit", "rm_audit_owners"] {
        let rows = db.query(&format!("SELECT count(*) FROM {table}"), Vec::new()).await.unwrap();
        assert_eq!(rows[0].uint(0).unwrap(), 0, "{table} is emptied for the audit projection to fill again");
    }
}

/// The License and Subscription states gained fields (floating
/// deployments): the projections that keep them start again; others stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floating_deployments_migration_starts_the_projections_keeping_those_states_again() {
    let (_dir, db) = upgraded(
        "0010",
        "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES \
         ('licenses-v1', 7, zeroblob(32)), ('subscriptions-v1', 7, zeroblob(32)), \
         ('notifications-v1', 7, zeroblob(32)), ('organizations-v1', 7, zeroblob(32)); \
         INSERT INTO rm_notify_subscriptions (id, state) VALUES (x'01', x'00');",
    )
    .await;
    let names = ["licenses-v1", "subscriptions-v1", "notifications-v1", "organizations-v1"];
    let checkpoints = db.checkpoints(&names).await.unwrap();
    assert_eq!(checkpoints[..3], [None, None, None], "the three projections start again");
    assert_eq!(checkpoints[3].map(|c| c.sequence), Some(7), "the others stay where they were");
    let rows = db.query("SELECT count(*) FROM rm_notify_subscriptions", Vec::new()).await.unwrap();
    assert_eq!(rows[0].uint(0).unwrap(), 0);
}

/// The deployment-keys migration (issue 18 item 2): the license state grew
/// the bound deployment keys, so the rows written before it are emptied
/// and the licenses projection starts again; the others stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_keys_migration_starts_the_licenses_projection_again() {
    let (_dir, db) = upgraded(
        "0011",
        "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES \
         ('licenses-v1', 9, zeroblob(32)), ('usage-v1', 9, zeroblob(32)); \
         INSERT INTO rm_licenses (id, organization_id, subscription_id, issued_sequence, revoked, state) \
         VALUES (x'01', NULL, NULL, 3, 0, x'00'); \
         INSERT INTO rm_license_keys (key_hash, license_id) VALUES (x'02', x'01'); \
         INSERT INTO rm_deployments (license_id, deployment_id, active) VALUES (x'01', 'edge-1', 1);",
    )
    .await;
    let checkpoints = db.checkpoints(&["licenses-v1", "usage-v1"]).await.unwrap();
    assert_eq!(checkpoints[0], None, "the licenses projection starts again");
    assert_eq!(checkpoints[1].map(|c| c.sequence), Some(9), "the others stay where they were");
    for table in ["rm_licenses", "rm_license_keys", "rm_deployments"] {
        let rows = db.query(&format!("SELECT count(*) FROM {table}"), Vec::new()).await.unwrap();
        assert_eq!(rows[0].uint(0).unwrap(), 0, "{table} is emptied for the licenses projection to fill again");
    }
}

/// The offline-activations migration (issue 18 item 1): the license state
/// grew the air-gapped deployments' license files, so the rows written
/// before it are emptied and the licenses projection starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_activations_migration_starts_the_licenses_projection_again() {
    let (_dir, db) = upgraded(
        "0015",
        "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES \
         ('licenses-v1', 9, zeroblob(32)), ('usage-v1', 9, zeroblob(32)); \
         INSERT INTO rm_licenses (id, organization_id, subscription_id, issued_sequence, revoked, state) \
         VALUES (x'01', NULL, NULL, 3, 0, x'00'); \
         INSERT INTO rm_license_keys (key_hash, license_id) VALUES (x'02', x'01'); \
         INSERT INTO rm_deployments (license_id, deployment_id, active) VALUES (x'01', 'edge-1', 1);",
    )
    .await;
    let checkpoints = db.checkpoints(&["licenses-v1", "usage-v1"]).await.unwrap();
    assert_eq!(checkpoints[0], None, "the licenses projection starts again");
    assert_eq!(checkpoints[1].map(|c| c.sequence), Some(9), "the others stay where they were");
    for table in ["rm_licenses", "rm_license_keys", "rm_deployments"] {
        let rows = db.query(&format!("SELECT count(*) FROM {table}"), Vec::new()).await.unwrap();
        assert_eq!(rows[0].uint(0).unwrap(), 0, "{table} is emptied for the licenses projection to fill again");
    }
}

/// Voids and credit notes (`0013_invoice_voids_and_credit_notes.sql`, issue
/// 15 part 2): each invoice's payment row gained the total of its credit
/// notes, so the payments projection's rows are emptied and its
/// checkpoint dropped ("invoice-payments-v1" fills again from the log's
/// first record); the invoices projection keeps its rows and gains the
/// voided invoices' and credit notes' tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invoice_voids_migration_starts_the_payments_projection_again() {
    let (_dir, db) = upgraded(
        "0013",
        "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES \
         ('invoice-payments-v1', 12, zeroblob(32)), ('invoices-v1', 12, zeroblob(32)); \
         INSERT INTO rm_invoice_payments (subscription_id, period, organization_id, status, payment) \
         VALUES (x'01', '2026-01-01', x'02', 'open', x'00'); \
         INSERT INTO rm_payment_references (reference, payment) VALUES ('in_1', x'00'); \
         INSERT INTO rm_payment_methods (organization_id, method) VALUES (x'02', 'stripe'); \
         INSERT INTO rm_invoices (subscription_id, period, invoice_id, organization_id, total, sequence, issued) \
         VALUES (x'01', '2026-01-01', x'03', x'02', '2500.00', 11, x'00');",
    )
    .await;
    let checkpoints = db.checkpoints(&["invoice-payments-v1", "invoices-v1"]).await.unwrap();
    assert_eq!(checkpoints[0], None, "the payments projection starts again");
    assert_eq!(checkpoints[1].map(|c| c.sequence), Some(12), "the invoices projection stays where it was");
    for table in ["rm_invoice_payments", "rm_payment_references", "rm_payment_methods"] {
        let rows = db.query(&format!("SELECT count(*) FROM {table}"), Vec::new()).await.unwrap();
        assert_eq!(rows[0].uint(0).unwrap(), 0, "{table} is emptied for the payments projection to fill again");
    }
    let kept = db.query("SELECT count(*) FROM rm_invoices", Vec::new()).await.unwrap();
    assert_eq!(kept[0].uint(0).unwrap(), 1);
    for table in ["rm_voided_invoices", "rm_credit_notes"] {
        let rows = db.query(&format!("SELECT count(*) FROM {table}"), Vec::new()).await;
        assert!(rows.is_ok(), "{table}: {rows:?}");
    }
}
