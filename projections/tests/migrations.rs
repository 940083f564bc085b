//! Upgrading read models already written: a migration that adds what the
//! rows written before it cannot hold starts that projection again from
//! the log's first record, leaving every other projection where it was.

use ledger_projections::db::{READMODELS_FILE, ReadModelDb};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// The read-model migrations of the release before the license windows.
const BEFORE_WINDOWS: &[&str] = &[
    "0001_checkpoints.sql",
    "0002_merkle_nodes.sql",
    "0003_models.sql",
    "0004_h13_billing.sql",
    "0005_users_by_email.sql",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_license_windows_migration_starts_the_licenses_projection_again() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite-readmodels");
    for name in BEFORE_WINDOWS {
        std::fs::copy(source.join(name), old.join(name)).unwrap();
    }
    let options = SqliteConnectOptions::new().filename(dir.path().join(READMODELS_FILE)).create_if_missing(true);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES \
         ('licenses-v1', 7, zeroblob(32)), ('organizations-v1', 7, zeroblob(32)); \
         INSERT INTO rm_licenses (id, organization_id, subscription_id, issued_sequence, revoked, state) \
         VALUES (x'01', NULL, NULL, 3, 0, x'00'); \
         INSERT INTO rm_license_keys (key_hash, license_id) VALUES (x'02', x'01');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let db = ReadModelDb::open_sqlite(dir.path()).await.unwrap();
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

/// The deployment-keys migration (issue 18 item 2): the license state grew
/// the bound deployment keys, so the rows written before it are emptied
/// and the licenses projection starts again; the others stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_keys_migration_starts_the_licenses_projection_again() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite-readmodels");
    for entry in std::fs::read_dir(&source).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.as_str() < "0011" {
            std::fs::copy(source.join(&name), old.join(&name)).unwrap();
        }
    }
    let options = SqliteConnectOptions::new().filename(dir.path().join(READMODELS_FILE)).create_if_missing(true);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES \
         ('licenses-v1', 9, zeroblob(32)), ('usage-v1', 9, zeroblob(32)); \
         INSERT INTO rm_licenses (id, organization_id, subscription_id, issued_sequence, revoked, state) \
         VALUES (x'01', NULL, NULL, 3, 0, x'00'); \
         INSERT INTO rm_license_keys (key_hash, license_id) VALUES (x'02', x'01'); \
         INSERT INTO rm_deployments (license_id, deployment_id, active) VALUES (x'01', 'edge-1', 1);",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let db = ReadModelDb::open_sqlite(dir.path()).await.unwrap();
    let checkpoints = db.checkpoints(&["licenses-v1", "usage-v1"]).await.unwrap();
    assert_eq!(checkpoints[0], None, "the licenses projection starts again");
    assert_eq!(checkpoints[1].map(|c| c.sequence), Some(9), "the others stay where they were");
    for table in ["rm_licenses", "rm_license_keys", "rm_deployments"] {
        let rows = db.query(&format!("SELECT count(*) FROM {table}"), Vec::new()).await.unwrap();
        assert_eq!(rows[0].uint(0).unwrap(), 0, "{table} is emptied for the licenses projection to fill again");
    }
}
