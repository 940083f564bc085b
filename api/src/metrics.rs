//! The per-address rate limiter of the validation route, and the timing of
//! every HTTP request ([`observe`]). The counters and the bounded limiter
//! itself are the use cases' (`usecases::metrics`, `usecases::limits`).

use std::net::IpAddr;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

pub use usecases::limits::{KeyedLimiter, LIMITER_KEYS_MAX, LIMITER_SWEEP_INTERVAL, LogThrottle};
pub use usecases::metrics::{Metrics, NotificationLabels, ValidationLabels};

/// Requests one client address may make to the validation route, per
/// minute; off when built with 0 (benchmarks). Addresses are grouped as
/// [`crate::address::limit_key`] does (an IPv6 client by its /64).
pub struct AddressLimiter(KeyedLimiter<IpAddr>);

impl AddressLimiter {
    pub fn per_minute(requests: u32) -> Self {
        Self(KeyedLimiter::per_minute("validations_per_address", requests))
    }

    /// `Err(seconds to wait)` when the address is over its limit.
    pub fn check(&self, address: Option<IpAddr>) -> Result<(), u64> {
        match address {
            Some(address) => self.0.check(&crate::address::limit_key(address)),
            None => Ok(()),
        }
    }

    pub fn limiter(&self) -> &KeyedLimiter<IpAddr> {
        &self.0
    }
}

/// Times each request the router answers, by its matched route template
/// (not its path: no ids in labels), method and status class
/// (`ledger_http_request_duration_seconds`).
pub async fn observe(State(state): State<crate::AppState>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map(MatchedPath::as_str);
    state.metrics.http_request(method.as_str(), route, response.status().as_u16(), started.elapsed());
    response
}
