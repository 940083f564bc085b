//! The JSON shapes of the server's contract (API.md, "On-premises
//! clients"); only this module knows them.

use std::time::Duration;

use domain::lease::{SignedLease, SignedRefusal};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};

/// The largest response body the client reads; the server's answers are a
/// few KiB, so a larger one is not the server's.
pub(crate) const RESPONSE_BYTES_MAX: usize = 256 * 1024;
/// How much of an error answer is kept (in errors and in `rejected/`).
pub(crate) const ERROR_BODY_CHARS_MAX: usize = 4096;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ValidateRequest<'a> {
    pub license_key: &'a str,
    pub client_info: ClientInfo<'a>,
    pub nonce: &'a str,
    pub client_time: String,
    /// A floating deployment's heartbeat; absent for a fixed one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub floating: bool,
    /// The deployment's public key, the server's challenge and the key's
    /// signature over it (`domain::deployment_key`).
    pub deployment_key: &'a str,
    pub challenge: &'a str,
    pub signature: &'a str,
}

/// `POST /api/v1/license/challenge`'s answer.
#[derive(Deserialize)]
pub(crate) struct ChallengeResponse {
    pub challenge: String,
}

/// snake_case, as the seed's `LicenseValidationRequest.clientInfo`.
#[derive(Serialize)]
pub(crate) struct ClientInfo<'a> {
    pub version: &'a str,
    pub deployment_id: &'a str,
    pub last_sync: String,
}

/// The fields of the answer the client relies on; the rest (the unsigned
/// `subscription`, `organization`, …) is deliberately ignored in favour of
/// the signed lease.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ValidateResponse {
    pub is_valid: bool,
    pub code: String,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub lease: Option<SignedLease>,
    /// When not valid: the server's signed refusal of this request.
    #[serde(default)]
    pub refusal: Option<SignedRefusal>,
}

#[derive(Deserialize)]
pub(crate) struct KeysResponse {
    pub leases: KeyPair,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyPair {
    pub current: String,
    #[serde(default)]
    pub next: Option<String>,
    /// The current key's signature over the next (standard base64).
    #[serde(default)]
    pub next_signature: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageReportRequest<'a> {
    pub license_key: &'a str,
    pub metrics: UsageMetricsWire,
    pub reporting_period: String,
    pub deployment_id: &'a str,
}

/// The seed's metrics: JSON numbers. Decimals are written through `f64`
/// only after `UsageMetrics::check` has bounded them to two decimals and 15
/// significant digits, where the shortest `f64` rendering is exactly the
/// decimal (so `12.34` is sent as `12.34`, never `12.340000000000002`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageMetricsWire {
    pub active_users: u64,
    #[serde(rename = "dataVolumeGB", serialize_with = "decimal_as_number")]
    pub data_volume_gb: Decimal,
    pub api_calls_count: u64,
    #[serde(serialize_with = "decimal_as_number")]
    pub training_hours: Decimal,
}

fn decimal_as_number<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    let normalized = value.normalize();
    if normalized.scale() == 0 {
        let whole = u64::try_from(normalized.mantissa()).map_err(serde::ser::Error::custom)?;
        return serializer.serialize_u64(whole);
    }
    // Parsing the exact decimal text rounds correctly to the nearest f64.
    let float: f64 = normalized.to_string().parse().map_err(serde::ser::Error::custom)?;
    serializer.serialize_f64(float)
}

#[derive(Deserialize)]
pub(crate) struct UsageReportResponse {
    pub acknowledged: bool,
}

/// The `limit` a 429 names when the subscription's reports for the
/// reported day are used up: that report is refused from then on, so
/// waiting cannot help (the server's `usecases::usage::REPORTS_PER_DAY`).
pub(crate) const REPORTS_PER_DAY: &str = "reports_per_day";

/// The member of a problem+json answer that names which limit refused.
#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    limit: Option<String>,
}

/// Whether a 429's body says the report is refused for good, not for now.
pub(crate) fn refused_for_good(body: &[u8]) -> bool {
    serde_json::from_slice::<Problem>(body).is_ok_and(|problem| problem.limit.as_deref() == Some(REPORTS_PER_DAY))
}

/// `Retry-After` in seconds (the server's form); an HTTP date is not used
/// by the contract and reads as absent.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Reads at most [`RESPONSE_BYTES_MAX`] of a body.
pub(crate) async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(format!("the answer is larger than {RESPONSE_BYTES_MAX} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes ("error sending request …: client error
/// (Connect): tcp connect error: Connection refused"), since reqwest's own
/// message omits the part an operator needs.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn truncated(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(ERROR_BODY_CHARS_MAX).collect()
}

/// The client's HTTP client: bounded in time, no redirects (a redirect is
/// not in the contract, and following one would send the license key to
/// another address).
pub(crate) fn http_client(timeout: Duration, version: &str) -> Result<reqwest::Client, crate::ClientError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(format!("ledger-client/{version}"))
        .build()
        .map_err(|e| crate::ClientError::Config(format!("cannot build the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_429_for_a_full_day_is_a_refusal_for_good() {
        assert!(refused_for_good(br#"{"code":"rate_limited","limit":"reports_per_day","status":429}"#));
        for wait in [
            &br#"{"code":"rate_limited","limit":"reports_per_key_per_minute"}"#[..],
            br#"{"code":"rate_limited"}"#,
            br#"<html>busy</html>"#,
            b"",
        ] {
            assert!(!refused_for_good(wait), "{}", String::from_utf8_lossy(wait));
        }
    }
}
