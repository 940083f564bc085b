//! The usage queue against a real HTTP server.

mod common;

use common::*;
use ledger_client::{
    ClientError, Decimal, NaiveDate, REJECTED_DIR, USAGE_DIR, UsageMetrics, UsageReport, UsageReporter,
};
use serde_json::Value;

fn report(day: u32, active_users: u64, api_calls_count: u64) -> UsageReport {
    UsageReport {
        reporting_period: NaiveDate::from_ymd_opt(2026, 3, day).unwrap(),
        metrics: UsageMetrics {
            active_users,
            data_volume_gb: Decimal::new(12_345, 2),
            api_calls_count,
            training_hours: Decimal::new(15, 1),
        },
    }
}

fn calls(reports: &[Value]) -> Vec<(String, u64)> {
    reports
        .iter()
        .map(|r| (r["reportingPeriod"].as_str().unwrap().to_owned(), r["metrics"]["apiCallsCount"].as_u64().unwrap()))
        .collect()
}

#[tokio::test]
async fn the_queue_survives_an_outage_and_a_restart_and_is_sent_once_in_order() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let cfg = config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &time);
    server.set_down(true);
    let reporter = UsageReporter::open(&cfg).unwrap();
    // Two reports for the same day: the later must arrive last, since the
    // server keeps the last one (BILLING-RULES worked example 5: 300, then 250).
    reporter.enqueue(report(1, 3, 300)).await.unwrap();
    reporter.enqueue(report(1, 3, 250)).await.unwrap();
    reporter.enqueue(report(2, 4, 80)).await.unwrap();

    let outcome = reporter.flush().await.unwrap();
    assert_eq!((outcome.sent, outcome.rejected, outcome.remaining), (0, 0, 3));
    assert!(outcome.stopped.unwrap().contains("could not be reached"));
    server.set_down(false);
    server.set_usage_mode(UsageMode::Unavailable);
    let outcome = reporter.flush().await.unwrap();
    assert_eq!((outcome.sent, outcome.remaining), (0, 3));
    assert_eq!(server.state().reports_received.len(), 1, "a flush stops at the first report not delivered");
    drop(reporter);

    // The queue is on disk, without the license key.
    let queued: Vec<_> = std::fs::read_dir(dir.path().join(USAGE_DIR)).unwrap().flatten().collect();
    assert_eq!(queued.iter().filter(|e| e.path().is_file()).count(), 3);
    for entry in queued.iter().filter(|e| e.path().is_file()) {
        assert!(!String::from_utf8(std::fs::read(entry.path()).unwrap()).unwrap().contains(LICENSE_KEY));
    }

    // Restarted, with the server back.
    server.set_usage_mode(UsageMode::Accept);
    let reporter = UsageReporter::open(&cfg).unwrap();
    assert_eq!(reporter.pending(), 3);
    let outcome = reporter.flush().await.unwrap();
    assert_eq!((outcome.sent, outcome.rejected, outcome.remaining, outcome.stopped), (3, 0, 0, None));
    let acknowledged = server.state().reports_acknowledged.clone();
    assert_eq!(
        calls(&acknowledged),
        [("2026-03-01".to_owned(), 300), ("2026-03-01".to_owned(), 250), ("2026-03-02".to_owned(), 80)]
    );
    let first = &acknowledged[0];
    assert_eq!(first["licenseKey"], LICENSE_KEY);
    assert_eq!(first["deploymentId"], DEPLOYMENT);
    assert_eq!(first["metrics"]["dataVolumeGB"].to_string(), "123.45");
    assert_eq!(first["metrics"]["trainingHours"].to_string(), "1.5");

    // Nothing is sent twice.
    let outcome = reporter.flush().await.unwrap();
    assert_eq!((outcome.sent, outcome.remaining), (0, 0));
    assert_eq!(server.state().reports_acknowledged.len(), 3);
}

#[tokio::test]
async fn a_429_keeps_the_reports_and_passes_on_retry_after() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let reporter =
        UsageReporter::open(&config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &time)).unwrap();
    reporter.enqueue(report(1, 3, 10)).await.unwrap();
    server.set_usage_mode(UsageMode::RateLimited { seconds: 30 });
    let outcome = reporter.flush().await.unwrap();
    assert_eq!((outcome.sent, outcome.remaining), (0, 1));
    assert_eq!(outcome.retry_after, Some(std::time::Duration::from_secs(30)));
    server.set_usage_mode(UsageMode::Accept);
    assert_eq!(reporter.flush().await.unwrap().sent, 1);
}

#[tokio::test]
async fn a_report_refused_with_400_moves_to_rejected_with_the_answer_and_the_rest_goes_on() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let cfg = config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &time);
    let reporter = UsageReporter::open(&cfg).unwrap();
    reporter.enqueue(report(1, 3, 10)).await.unwrap();
    let refused = reporter.enqueue(report(2, 999, 20)).await.unwrap();
    reporter.enqueue(report(3, 3, 30)).await.unwrap();

    let outcome = reporter.flush().await.unwrap();
    assert_eq!((outcome.sent, outcome.rejected, outcome.remaining), (2, 1, 0));
    assert_eq!(calls(&server.state().reports_acknowledged), [("2026-03-01".into(), 10), ("2026-03-03".into(), 30)]);

    let rejected: Vec<_> = std::fs::read_dir(reporter.rejected_dir()).unwrap().flatten().collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0].path(),
        dir.path().join(USAGE_DIR).join(REJECTED_DIR).join(format!("{:020}.json", refused.0))
    );
    let record: Value = serde_json::from_slice(&std::fs::read(rejected[0].path()).unwrap()).unwrap();
    assert_eq!(record["status"], 400);
    assert_eq!(record["answer"]["detail"], "activeUsers is not plausible");
    assert_eq!(record["report"]["report"]["metrics"]["activeUsers"], 999);

    // Never retried: a later flush sends nothing, and a restart does not
    // bring it back (nor reuse its number).
    assert_eq!(reporter.flush().await.unwrap().sent, 0);
    assert_eq!(server.state().reports_received.len(), 3);
    drop(reporter);
    let reporter = UsageReporter::open(&cfg).unwrap();
    assert_eq!(reporter.pending(), 0);
    let next = reporter.enqueue(report(4, 3, 40)).await.unwrap();
    assert!(next > refused);
}

#[tokio::test]
async fn the_queue_is_bounded_and_refuses_what_the_server_would() {
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let mut cfg = config(&dead_url().await, dir.path(), vec![signing_key(1).verifying_key()], &time);
    cfg.usage_queue_max = 2;
    let reporter = UsageReporter::open(&cfg).unwrap();
    reporter.enqueue(report(1, 3, 10)).await.unwrap();
    reporter.enqueue(report(2, 3, 10)).await.unwrap();
    assert!(matches!(reporter.enqueue(report(3, 3, 10)).await, Err(ClientError::QueueFull { max: 2 })));
    // The bound holds across a restart too: it counts what is on disk.
    let reporter = UsageReporter::open(&cfg).unwrap();
    assert!(matches!(reporter.enqueue(report(3, 3, 10)).await, Err(ClientError::QueueFull { max: 2 })));

    let mut bad = report(4, 3, 10);
    bad.metrics.data_volume_gb = Decimal::new(1, 3);
    cfg.usage_queue_max = 10;
    let reporter = UsageReporter::open(&cfg).unwrap();
    assert!(matches!(reporter.enqueue(bad).await, Err(ClientError::InvalidReport(_))));
    assert_eq!(reporter.pending(), 2);
}
