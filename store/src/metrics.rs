//! What the log's writer measures for `/metrics`: how long an append takes
//! from the caller's side (queue wait and commit), how many events each
//! group commit carries, and how many appends failed. Kept here, beside the
//! writer, because only the writer sees its batches; the server registers
//! them at scrape time ([`EventLog::metrics`](crate::EventLog::metrics)).
//! Observing is a few atomic adds: cheap on the append path.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// Upper bounds of the append latency buckets, in seconds: a group commit
/// takes well under a millisecond on SQLite and a few on PostgreSQL; the
/// top buckets catch a stalled disk or a database failing over.
pub const APPEND_SECONDS_BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Upper bounds of the batch size buckets, in events, up to
/// [`BATCH_EVENTS_MAX`](crate::BATCH_EVENTS_MAX) and a little past it (a
/// request is never split, so a batch may end just over it).
pub const BATCH_EVENTS_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The writer's figures; shared by every handle of one log.
#[derive(Debug)]
pub struct LogMetrics {
    /// Seconds from an append call to its answer (`ledger_append_duration_seconds`).
    pub append_seconds: Histogram,
    /// Events per committed batch (`ledger_append_batch_events`).
    pub batch_events: Histogram,
    /// Appends answered with an error, not a per-command refusal (`ledger_append_errors_total`).
    pub append_errors: Counter,
    /// Statements the writer sent to PostgreSQL to commit batches, `BEGIN`
    /// and `COMMIT` included (`ledger_append_statements_total`): one per
    /// commit in the steady state, five in the locking transaction.
    pub append_statements: Counter,
}

impl Default for LogMetrics {
    fn default() -> Self {
        Self {
            append_seconds: Histogram::new(APPEND_SECONDS_BUCKETS),
            batch_events: Histogram::new(BATCH_EVENTS_BUCKETS),
            append_errors: Counter::default(),
            append_statements: Counter::default(),
        }
    }
}
