//! The per-address rate limiter of the validation route. The counters and
//! the bounded limiter itself are the use cases' (`usecases::metrics`,
//! `usecases::limits`).

use std::net::IpAddr;

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
