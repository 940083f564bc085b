//! Extractors: a command request (caller, context, JSON body) and queries.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use domain::Metadata;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::address::ClientAddress;
use crate::auth::Caller;
use crate::command::{Context, IDEMPOTENCY_KEY_CHARS_MAX, request_digest};
use crate::error::ApiError;

/// The largest request body.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Header values kept in metadata are cut to this many characters.
const HEADER_CHARS_MAX: usize = 256;

/// A command: who, from where, with which key, asking what; its body at
/// most `MAX` bytes ([`REQUEST_BODY_BYTES_MAX`] unless a route says more).
pub struct CommandRequest<T, const MAX: usize = REQUEST_BODY_BYTES_MAX> {
    pub caller: Caller,
    pub context: Context,
    pub body: T,
}

impl<T: DeserializeOwned, const MAX: usize> FromRequest<AppState> for CommandRequest<T, MAX> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        let key = idempotency_key(&parts.headers)?;
        let bytes = axum::body::to_bytes(body, MAX).await.map_err(|_| ApiError::PayloadTooLarge(MAX))?;
        let body = parse_json(&bytes)?;
        // The client's address: behind a trusted proxy, the one it forwarded.
        let source_ip = parts.extensions.get::<ClientAddress>().map(|ClientAddress(address)| address.to_string());
        let header = |name: &str| {
            parts.headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(HEADER_CHARS_MAX).collect())
        };
        let metadata = Metadata {
            actor: Some(caller.actor()),
            correlation_id: header("x-correlation-id"),
            source_ip,
            user_agent: header("user-agent"),
        };
        let path = parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str());
        let idempotency =
            key.map(|key| (format!("{}:{key}", caller.scope()), request_digest(parts.method.as_str(), path, &bytes)));
        Ok(Self { caller, context: Context { metadata, idempotency, credential: Some(caller.credential()) }, body })
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().map_err(|_| ApiError::Validation("Idempotency-Key must be visible ASCII".into()))?;
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_CHARS_MAX || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::Validation(format!(
            "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

/// An empty body reads as `{}`, so commands without fields take none.
fn parse_json<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|error| ApiError::Validation(format!("invalid JSON body: {error}")))
}

/// `?minSequence=N` of every query. The wait itself is the `Caller`'s
/// (`usecases::caller::authenticate`: the caller's own writes and N, in
/// one bound); this extractor documents the parameter on a route and, on
/// a route without a caller, waits for N alone.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consistency {
    pub min_sequence: Option<u64>,
}

/// `minSequence` of a request's query string, if any.
pub fn min_sequence(parts: &axum::http::request::Parts) -> Result<Option<u64>, ApiError> {
    let query = parts.uri.query().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "minSequence")
        .map(|(_, value)| {
            value.parse::<u64>().map_err(|_| ApiError::Validation("minSequence must be a whole number".into()))
        })
        .transpose()
}

impl FromRequestParts<AppState> for Consistency {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let min_sequence = min_sequence(parts)?;
        usecases::acknowledged::catch_up(state, None, min_sequence).await?;
        Ok(Self { min_sequence })
    }
}

/// A date exactly as API.md writes it, `YYYY-MM-DD`; chrono alone would
/// also take `2026-1-1`.
pub fn date<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<chrono::NaiveDate, D::Error> {
    let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
    let well_formed = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    well_formed
        .then(|| chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a date written YYYY-MM-DD")))
}

/// An optional [`date`].
pub fn optional_date<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<chrono::NaiveDate>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "date")] chrono::NaiveDate);
    Ok(<Option<Wrapped> as serde::Deserialize>::deserialize(deserializer)?.map(|Wrapped(date)| date))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct Dated {
        #[serde(deserialize_with = "super::date")]
        on: chrono::NaiveDate,
        #[serde(default, deserialize_with = "super::optional_date")]
        maybe: Option<chrono::NaiveDate>,
    }

    #[test]
    fn dates_are_yyyy_mm_dd_exactly() {
        let ok: Dated = serde_json::from_str(r#"{"on":"2026-01-05","maybe":"2028-02-29"}"#).unwrap();
        assert_eq!((ok.on.to_string(), ok.maybe.unwrap().to_string()), ("2026-01-05".into(), "2028-02-29".into()));
        assert_eq!(serde_json::from_str::<Dated>(r#"{"on":"2026-01-05"}"#).unwrap().maybe, None);
        assert_eq!(serde_json::from_str::<Dated>(r#"{"on":"2026-01-05","maybe":null}"#).unwrap().maybe, None);
        for bad in ["2026-1-1", "2026-01-5", "2027-02-29", "2026/01/05", "2026-01-05T00:00:00Z", " 2026-01-05"] {
            assert!(serde_json::from_str::<Dated>(&format!(r#"{{"on":"{bad}"}}"#)).is_err(), "{bad}");
        }
    }
}
