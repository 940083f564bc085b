//! `db::Rebuild`: records handed over page by page, from no log, into
//! empty read models; several commits (past `FLUSH_RECORDS_MAX`) give the
//! same tables whatever the page size, and the Merkle tree its stored nodes.

use std::sync::Arc;

use domain::catalog::Catalog;
use domain::organization::{OrganizationCreated, OrganizationEvent};
use domain::record::{CHAIN_GENESIS, Record, RecordHeader};
use domain::{EventId, Metadata, OrganizationId, Timestamp};
use ledger_projections::db::merkle::{MERKLE_NODES, MERKLE_STORED_LEVEL_MIN, MerkleProjection};
use ledger_projections::db::{FLUSH_RECORDS_MAX, Projection, ReadModelDb, Rebuild, RunnerError, digest};
use ledger_projections::models;
use store::NewEvent;

/// Records 1..=count, each an organization created, sealed in a chain.
fn history(count: u64) -> Vec<Record> {
    let mut previous = CHAIN_GENESIS;
    (1..=count)
        .map(|sequence| {
            let id = OrganizationId(uuid::Uuid::from_u128(u128::from(sequence)));
            let created = OrganizationEvent::OrganizationCreated(OrganizationCreated {
                id,
                name: format!("Organization {sequence}"),
                domain: None,
                industry: None,
                employee_count: None,
            });
            let at = Timestamp::from_micros(1_770_000_000_000_000 + sequence as i64);
            let event = NewEvent::from_event(&created, EventId(uuid::Uuid::now_v7()), at, &Metadata::default());
            let header = RecordHeader {
                sequence,
                event_id: event.event_id,
                stream_id: id.stream(),
                stream_revision: 1,
                event_type: event.event_type,
                schema_version: event.schema_version,
                occurred_at: at,
                recorded_at: at,
                idempotency_key: None,
            };
            let record = Record::seal(header, event.metadata, event.payload, &previous);
            previous = record.chain_hash;
            record
        })
        .collect()
}

fn projections() -> Vec<Box<dyn Projection>> {
    let mut all = models::all(Catalog::builtin());
    all.push(Box::new(MerkleProjection::new()));
    all
}

async fn rebuild(records: &[Record], page: usize, until: u64) -> (tempfile::TempDir, ReadModelDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = ReadModelDb::open_sqlite(dir.path()).await.unwrap();
    let mut rebuild = Rebuild::new(db.clone(), projections(), until).await.unwrap();
    for chunk in records.chunks(page) {
        rebuild.apply(Arc::from(chunk.to_vec())).await.unwrap();
    }
    let last = records.iter().rfind(|r| r.header.sequence <= until).unwrap();
    for (name, checkpoint) in rebuild.finish().await.unwrap() {
        assert_eq!(checkpoint.sequence, last.header.sequence, "{name}");
        assert_eq!(checkpoint.chain_hash, last.chain_hash, "{name}");
    }
    (dir, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_over_several_commits_is_the_same_whatever_the_pages() {
    let count = FLUSH_RECORDS_MAX as u64 + 1_000;
    let records = history(count);
    let (_a, big) = rebuild(&records, store::READ_PAGE_RECORDS, u64::MAX).await;
    let (_b, small) = rebuild(&records, 777, u64::MAX).await;
    let mut tables = models::tables();
    tables.push(MERKLE_NODES);
    let digests = digest(&big, &tables).await.unwrap();
    assert_eq!(digests, digest(&small, &tables).await.unwrap());
    let rows = |name: &str| digests.iter().find(|d| d.table == name).unwrap().rows;
    assert_eq!(rows("rm_organizations"), count);
    // One stored node per complete aligned subtree of level >= 8.
    let nodes: u64 = (MERKLE_STORED_LEVEL_MIN..64).map(|level| count >> level).sum();
    assert_eq!(rows("merkle_nodes"), nodes);
    // Checkpoints committed with the rows: both databases say so.
    let names: Vec<&str> = projections().iter().map(|p| p.name()).collect();
    assert_eq!(big.applied(&names).await.unwrap(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_stops_at_its_last_sequence_and_refuses_gaps_and_used_databases() {
    let records = history(50);
    let (dir, db) = rebuild(&records, 16, 20).await;
    let rows = db.query("SELECT count(*) FROM rm_organizations", Vec::new()).await.unwrap();
    assert_eq!(rows[0].uint(0).unwrap(), 20);
    // Read models that hold something are not rebuilt into.
    let refused = Rebuild::new(db.clone(), projections(), u64::MAX).await.err().unwrap();
    assert!(matches!(refused, RunnerError::Config(_)), "{refused}");
    drop(dir);

    let dir = tempfile::tempdir().unwrap();
    let db = ReadModelDb::open_sqlite(dir.path()).await.unwrap();
    let mut rebuild = Rebuild::new(db, projections(), u64::MAX).await.unwrap();
    rebuild.apply(Arc::from(records[..10].to_vec())).await.unwrap();
    let gap = rebuild.apply(Arc::from(records[11..].to_vec())).await.err().unwrap();
    assert!(matches!(gap, RunnerError::Gap { expected: 11, found: 12 }), "{gap}");
    // After an error it goes no further.
    assert!(rebuild.apply(Arc::from(records[10..].to_vec())).await.is_err());
}
