//! [`UsageReporter`]: a durable local queue of usage reports, sent in
//! order when the server can be reached.
//!
//! Each report is one file in `state_dir/usage/`, fsynced before
//! [`UsageReporter::enqueue`] returns, named by a sequence number so the
//! queue keeps its order across restarts. A report's file is deleted only
//! after the server acknowledged it; a crash after the acknowledgement and
//! before the delete resends it, which is harmless because the server
//! *replaces* a license's report for the same deployment and day.
//!
//! Order matters for the same reason: a later report for a day replaces an
//! earlier one, so sending out of order could let a stale value win. A
//! flush therefore stops at the first report it could not deliver (network
//! error, 5xx, 408, 429) and keeps it and all later ones for the next flush.
//! A report the server refuses as invalid (another 4xx) would be refused
//! forever: it is moved to `usage/rejected/` together with the server's
//! answer, for an operator to read, and the flush goes on. So is a 429
//! whose problem names the `reports_per_day` limit: its day has had every
//! report the server takes for it, and retrying would hold back every later
//! report forever. Nothing is retried forever and nothing is dropped
//! silently.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::files;
use crate::wire::{self, UsageMetricsWire, UsageReportRequest, UsageReportResponse};
use crate::{ClientError, Config, TimeSource};

/// The queue's folder inside the state directory.
pub const USAGE_DIR: &str = "usage";
/// Reports the server refused, inside [`USAGE_DIR`].
pub const REJECTED_DIR: &str = "rejected";
/// The largest value of any metric, as the server bounds it (larger is
/// refused there). Two decimals on top stay within the 15 significant
/// digits that a JSON number carries exactly (see `wire`).
const METRIC_VALUE_MAX: u64 = 1_000_000_000_000;

/// One day's usage of this deployment (the seed's `UsageReportRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// The day covered (`reportingPeriod`, UTC).
    pub reporting_period: NaiveDate,
    pub metrics: UsageMetrics,
}

/// The metrics: `activeUsers` and `dataVolumeGB` are that day's gauges,
/// `apiCallsCount` and `trainingHours` that day's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetrics {
    pub active_users: u64,
    /// At most two decimal places (the server rejects more).
    #[serde(rename = "dataVolumeGB")]
    pub data_volume_gb: Decimal,
    pub api_calls_count: u64,
    /// At most two decimal places.
    pub training_hours: Decimal,
}

impl UsageMetrics {
    /// Refuses locally what the server would refuse, so an invalid report
    /// never enters the queue.
    fn check(&self) -> Result<(), ClientError> {
        let values = [
            ("activeUsers", Decimal::from(self.active_users)),
            ("dataVolumeGB", self.data_volume_gb),
            ("apiCallsCount", Decimal::from(self.api_calls_count)),
            ("trainingHours", self.training_hours),
        ];
        for (name, value) in values {
            if value.is_sign_negative() && !value.is_zero() {
                return Err(ClientError::InvalidReport(format!("{name} is negative")));
            }
            if value.normalize().scale() > 2 {
                return Err(ClientError::InvalidReport(format!("{name} has more than two decimal places")));
            }
            if value > Decimal::from(METRIC_VALUE_MAX) {
                return Err(ClientError::InvalidReport(format!("{name} is larger than {METRIC_VALUE_MAX}")));
            }
        }
        Ok(())
    }
}

/// A queued report's place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReportId(pub u64);

/// What one [`UsageReporter::flush`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Acknowledged by the server and removed from the queue.
    pub sent: usize,
    /// Refused by the server and moved to `rejected/`.
    pub rejected: usize,
    /// Still queued (including any enqueued during the flush).
    pub remaining: usize,
    /// The server asked to wait this long (429 `Retry-After`).
    pub retry_after: Option<Duration>,
    /// Why the flush stopped early, if it did.
    pub stopped: Option<String>,
}

/// A queued report as stored: the report and the deployment it was
/// measured on; the license key is added when sending, never written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredReport {
    version: u32,
    deployment_id: String,
    report: UsageReport,
}

/// A refused report and the server's answer, in `rejected/`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RejectedReport {
    /// The queued file's JSON, or its text if it was not readable.
    report: serde_json::Value,
    status: Option<u16>,
    answer: serde_json::Value,
    rejected_at: String,
}

/// The durable usage queue of one deployment. Cheap to clone.
#[derive(Clone)]
pub struct UsageReporter {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    url: String,
    license_key: String,
    deployment_id: String,
    dir: PathBuf,
    rejected_dir: PathBuf,
    queue_max: usize,
    time: Arc<dyn TimeSource>,
    counts: Mutex<Counts>,
    /// Held while a report is written and while the queue is listed, so a
    /// flush never sees report n+1 without report n.
    io: tokio::sync::Mutex<()>,
    /// One flush at a time: two would send the same reports twice.
    flushing: tokio::sync::Mutex<()>,
}

struct Counts {
    next: u64,
    pending: usize,
}

impl UsageReporter {
    /// Opens (creating) `state_dir/usage/` and counts what is queued there.
    pub fn open(config: &Config) -> Result<Self, ClientError> {
        config.check()?;
        let dir = config.state_dir.join(USAGE_DIR);
        let rejected_dir = dir.join(REJECTED_DIR);
        files::create_dir(&rejected_dir)?;
        let queued = list(&dir)?;
        let highest_rejected = list(&rejected_dir)?.last().map_or(0, |(seq, _)| *seq);
        let highest = queued.last().map_or(0, |(seq, _)| *seq).max(highest_rejected);
        Ok(Self {
            inner: Arc::new(Inner {
                http: wire::http_client(config.request_timeout, &config.client_version)?,
                url: config.url("/api/v1/usage/report"),
                license_key: config.license_key.clone(),
                deployment_id: config.deployment_id.clone(),
                dir,
                rejected_dir,
                queue_max: config.usage_queue_max,
                time: Arc::clone(&config.time),
                counts: Mutex::new(Counts { next: highest + 1, pending: queued.len() }),
                io: tokio::sync::Mutex::new(()),
                flushing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Queues `report`: it is on disk (fsynced) when this returns. Refused
    /// when the queue is full ([`ClientError::QueueFull`]) or the report is
    /// invalid.
    pub async fn enqueue(&self, report: UsageReport) -> Result<ReportId, ClientError> {
        report.metrics.check()?;
        let inner = &self.inner;
        let _io = inner.io.lock().await;
        let seq = {
            let mut counts = inner.counts.lock().unwrap_or_else(PoisonError::into_inner);
            if counts.pending >= inner.queue_max {
                return Err(ClientError::QueueFull { max: inner.queue_max });
            }
            counts.pending += 1;
            counts.next += 1;
            counts.next - 1
        };
        let stored = StoredReport { version: 1, deployment_id: inner.deployment_id.clone(), report };
        let bytes = serde_json::to_vec(&stored).expect("a report serializes");
        let path = inner.dir.join(file_name(seq));
        let written = tokio::task::spawn_blocking(move || files::write_atomic(&path, &bytes))
            .await
            .expect("writing a report does not panic");
        if written.is_err() {
            inner.counts.lock().unwrap_or_else(PoisonError::into_inner).pending -= 1;
        }
        written.map(|()| ReportId(seq))
    }

    /// Sends the queued reports in order; see the module documentation for
    /// what happens to each kind of answer. Errors only when the state
    /// directory fails.
    pub async fn flush(&self) -> Result<FlushOutcome, ClientError> {
        let inner = &self.inner;
        let _flushing = inner.flushing.lock().await;
        let queued = {
            let _io = inner.io.lock().await;
            let dir = inner.dir.clone();
            tokio::task::spawn_blocking(move || list(&dir)).await.expect("listing does not panic")?
        };
        let mut outcome = FlushOutcome::default();
        for (seq, path) in queued {
            let read_path = path.clone();
            let bytes = tokio::task::spawn_blocking(move || files::read_optional(&read_path))
                .await
                .expect("reading does not panic")?;
            let Some(bytes) = bytes else { continue };
            let stored: StoredReport = match serde_json::from_slice(&bytes) {
                Ok(stored) => stored,
                Err(e) => {
                    let report = serde_json::Value::String(wire::truncated(&bytes));
                    let answer = serde_json::Value::String(format!("the queued file is not a report: {e}"));
                    self.reject(seq, path, report, None, answer).await?;
                    outcome.rejected += 1;
                    continue;
                }
            };
            match self.send(&stored).await {
                Sent::Acknowledged => {
                    self.remove(path).await?;
                    outcome.sent += 1;
                }
                Sent::Refused { status, answer } => {
                    let report = serde_json::to_value(&stored).expect("a report serializes");
                    self.reject(seq, path, report, status, answer).await?;
                    outcome.rejected += 1;
                }
                Sent::NotDelivered { reason, retry_after } => {
                    outcome.stopped = Some(reason);
                    outcome.retry_after = retry_after;
                    break;
                }
            }
        }
        outcome.remaining = self.pending();
        Ok(outcome)
    }

    /// How many reports wait in the queue.
    pub fn pending(&self) -> usize {
        self.inner.counts.lock().unwrap_or_else(PoisonError::into_inner).pending
    }

    /// Where refused reports are kept, for an operator. Moving a file back
    /// into the queue folder resends it.
    pub fn rejected_dir(&self) -> &Path {
        &self.inner.rejected_dir
    }

    async fn send(&self, stored: &StoredReport) -> Sent {
        let inner = &self.inner;
        let metrics = &stored.report.metrics;
        let request = UsageReportRequest {
            license_key: &inner.license_key,
            metrics: UsageMetricsWire {
                active_users: metrics.active_users,
                data_volume_gb: metrics.data_volume_gb,
                api_calls_count: metrics.api_calls_count,
                training_hours: metrics.training_hours,
            },
            reporting_period: stored.report.reporting_period.format("%Y-%m-%d").to_string(),
            deployment_id: &stored.deployment_id,
        };
        let response = match inner.http.post(&inner.url).json(&request).send().await {
            Ok(response) => response,
            Err(e) => {
                return Sent::NotDelivered {
                    reason: format!("the server could not be reached: {}", wire::describe(&e)),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = wire::retry_after(&response);
        let body = wire::read_body(response).await;
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            && let Ok(body) = &body
            && wire::refused_for_good(body)
        {
            let answer =
                serde_json::from_slice(body).unwrap_or_else(|_| serde_json::Value::String(wire::truncated(body)));
            return Sent::Refused { status: Some(status.as_u16()), answer };
        }
        let retryable = status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
            || status.is_informational()
            || status.is_redirection();
        if retryable {
            let retry_after = retry_after.filter(|_| status == reqwest::StatusCode::TOO_MANY_REQUESTS);
            return Sent::NotDelivered { reason: format!("the server answered {status}"), retry_after };
        }
        let body = match body {
            Ok(body) => body,
            Err(e) => return Sent::NotDelivered { reason: format!("the answer was cut off: {e}"), retry_after: None },
        };
        let answer =
            serde_json::from_slice(&body).unwrap_or_else(|_| serde_json::Value::String(wire::truncated(&body)));
        if status.is_client_error() {
            return Sent::Refused { status: Some(status.as_u16()), answer };
        }
        // A 2xx: only the contract's acknowledgement removes a report. A
        // body that is not one (a captive portal's page) is not delivery.
        match serde_json::from_slice::<UsageReportResponse>(&body) {
            Ok(ack) if ack.acknowledged => Sent::Acknowledged,
            Ok(_) => Sent::Refused { status: Some(status.as_u16()), answer },
            Err(_) => Sent::NotDelivered {
                reason: format!("the server answered {status} without an acknowledgement"),
                retry_after: None,
            },
        }
    }

    async fn remove(&self, path: PathBuf) -> Result<(), ClientError> {
        tokio::task::spawn_blocking(move || files::remove_durably(&path)).await.expect("removing does not panic")?;
        self.inner.counts.lock().unwrap_or_else(PoisonError::into_inner).pending -= 1;
        Ok(())
    }

    /// Writes the refusal into `rejected/` first, then removes the queued
    /// file: a crash between leaves both, and the next flush refuses again.
    async fn reject(
        &self,
        seq: u64,
        path: PathBuf,
        report: serde_json::Value,
        status: Option<u16>,
        answer: serde_json::Value,
    ) -> Result<(), ClientError> {
        let record = RejectedReport {
            report,
            status,
            answer,
            rejected_at: domain::Timestamp::from_datetime(self.inner.time.wall()).to_rfc3339(),
        };
        let bytes = serde_json::to_vec_pretty(&record).expect("a refusal serializes");
        let target = self.inner.rejected_dir.join(file_name(seq));
        tokio::task::spawn_blocking(move || files::write_atomic(&target, &bytes))
            .await
            .expect("writing does not panic")?;
        self.remove(path).await
    }
}

impl std::fmt::Debug for UsageReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageReporter").field("dir", &self.inner.dir).field("pending", &self.pending()).finish()
    }
}

enum Sent {
    Acknowledged,
    Refused { status: Option<u16>, answer: serde_json::Value },
    NotDelivered { reason: String, retry_after: Option<Duration> },
}

/// Zero-padded so that names sort as numbers do.
fn file_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The reports in `dir`, in queue order; removes crash leftovers.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, ClientError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(files::io_error(dir))? {
        let entry = entry.map_err(files::io_error(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if files::is_temporary(name) {
            let _ = std::fs::remove_file(entry.path());
        } else if let Some(seq) = parse_file_name(name) {
            out.push((seq, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(data_volume_gb: Decimal, training_hours: Decimal) -> UsageMetrics {
        UsageMetrics { active_users: 3, data_volume_gb, api_calls_count: 10, training_hours }
    }

    #[test]
    fn reports_the_server_would_refuse_are_refused_locally() {
        assert!(metrics(Decimal::new(1234, 2), Decimal::new(15, 1)).check().is_ok());
        assert!(metrics(Decimal::new(12340, 3), Decimal::ZERO).check().is_ok(), "12.340 is two places");
        assert!(metrics(Decimal::new(-1, 2), Decimal::ZERO).check().is_err());
        assert!(metrics(Decimal::new(1, 3), Decimal::ZERO).check().is_err());
        assert!(metrics(Decimal::ZERO, Decimal::new(1, 3)).check().is_err());
        assert!(metrics(Decimal::from(METRIC_VALUE_MAX), Decimal::ZERO).check().is_ok());
        assert!(metrics(Decimal::from(METRIC_VALUE_MAX) + Decimal::new(1, 2), Decimal::ZERO).check().is_err());
        let too_many_calls =
            UsageMetrics { api_calls_count: METRIC_VALUE_MAX + 1, ..metrics(Decimal::ZERO, Decimal::ZERO) };
        assert!(too_many_calls.check().is_err());
    }

    #[test]
    fn decimals_travel_as_exact_json_numbers() {
        let wire = UsageMetricsWire {
            active_users: 3,
            data_volume_gb: Decimal::new(1234, 2),
            api_calls_count: 7,
            training_hours: Decimal::new(99_999_999_999_999, 2),
        };
        assert_eq!(
            serde_json::to_string(&wire).unwrap(),
            r#"{"activeUsers":3,"dataVolumeGB":12.34,"apiCallsCount":7,"trainingHours":999999999999.99}"#
        );
        let whole = UsageMetricsWire { data_volume_gb: Decimal::new(1000, 1), ..wire };
        assert!(serde_json::to_string(&whole).unwrap().contains(r#""dataVolumeGB":100,"#));
    }

    #[test]
    fn queue_file_names_sort_as_numbers() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert!(file_name(9) < file_name(10));
        assert_eq!(parse_file_name("42.json"), None);
        assert_eq!(parse_file_name(".00000000000000000042.json.1.0.tmp"), None);
    }
}
