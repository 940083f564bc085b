//! Rate limits whose memory is bounded, and a throttle for repeated log
//! lines.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota};

/// Keys one rate limiter keeps at most. An entry is a key and 8 bytes of
/// state in a concurrent map, well under 100 bytes, so a full limiter holds
/// under 10 MB; 100,000 distinct clients (or keys) inside one refill window
/// is far beyond the product's size (vendors with thousands of customers),
/// so only an attack fills it.
pub const LIMITER_KEYS_MAX: usize = 100_000;
/// How often idle entries are dropped from the rate limiters (`sweep`).
pub const LIMITER_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A rate limit per key (client address, license) whose memory is bounded:
/// keys whose allowance is whole again are dropped by [`KeyedLimiter::sweep`]
/// (governor's `retain_recent`), and while the map holds
/// [`LIMITER_KEYS_MAX`] recent keys, every request shares one more bucket
/// (the `None` key) instead of adding an entry: under such a flood the limit
/// gets stricter, never looser, and memory does not grow.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    name: &'static str,
    limiter: Option<DefaultKeyedRateLimiter<Option<K>>>,
    keys_max: usize,
    /// Requests refused so far (`ledger_rate_limit_refusals_total`).
    refusals: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `quota: None` turns the limit off.
    pub fn new(name: &'static str, quota: Option<Quota>, keys_max: usize) -> Self {
        Self { name, limiter: quota.map(governor::RateLimiter::keyed), keys_max, refusals: AtomicU64::new(0) }
    }

    /// `requests` a minute per key; 0 turns the limit off.
    pub fn per_minute(name: &'static str, requests: u32) -> Self {
        Self::new(name, NonZeroU32::new(requests).map(Quota::per_minute), LIMITER_KEYS_MAX)
    }

    /// `requests` an hour per key; 0 turns the limit off.
    pub fn per_hour(name: &'static str, requests: u32) -> Self {
        Self::new(name, NonZeroU32::new(requests).map(Quota::per_hour), LIMITER_KEYS_MAX)
    }

    /// The label this limiter has in `/metrics`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `Err(whole seconds to wait, at least 1)` when `key` is over its limit.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        let key = if limiter.len() < self.keys_max { Some(key.clone()) } else { None };
        limiter.check_key(&key).map_err(|not_until| {
            self.refusals.fetch_add(1, Ordering::Relaxed);
            let clock = governor::clock::DefaultClock::default();
            not_until.wait_time_from(governor::clock::Clock::now(&clock)).as_secs().max(1)
        })
    }

    /// Drops the entries of keys idle long enough that their allowance is
    /// whole again (they would be treated exactly as a new key).
    pub fn sweep(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// The requests this limiter refused since the process started.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// The entries held now.
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, |limiter| limiter.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lets a repeated log line through at most once per period, and counts
/// the ones it held back, so a flood of refused requests cannot flood the
/// server's log (and whoever reads it) while nothing goes unnoticed.
pub struct LogThrottle {
    limiter: governor::DefaultDirectRateLimiter,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub fn new(period: std::time::Duration) -> Self {
        let quota = Quota::with_period(period).expect("a log period is not zero");
        Self { limiter: governor::RateLimiter::direct(quota), suppressed: AtomicU64::new(0) }
    }

    /// `Some(lines held back since the last one)` when this line may be
    /// logged now; `None` (and one more held back) otherwise.
    pub fn admit(&self) -> Option<u64> {
        if self.limiter.check().is_ok() {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_limiter_shares_one_bucket_and_sweeping_drops_idle_keys() {
        let limiter = KeyedLimiter::new("test", Some(Quota::per_hour(NonZeroU32::new(2).unwrap())), 3);
        for key in 0..3u32 {
            assert_eq!(limiter.check(&key), Ok(()));
        }
        assert_eq!(limiter.len(), 3);
        // Full: new keys share one bucket of 2, and the map stays at 3 + 1.
        assert_eq!(limiter.check(&10), Ok(()));
        assert_eq!(limiter.check(&11), Ok(()));
        assert_eq!(limiter.refusals(), 0);
        assert!(limiter.check(&12).is_err(), "the shared bucket is spent");
        assert_eq!(limiter.refusals(), 1, "a refusal is counted");
        assert_eq!(limiter.len(), 4);
        // Keys that used part of an hourly allowance are not idle yet.
        limiter.sweep();
        assert_eq!(limiter.len(), 4);

        let fast = KeyedLimiter::new("test", Some(Quota::per_second(NonZeroU32::new(100).unwrap())), 3);
        for key in 0..3u32 {
            fast.check(&key).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        fast.sweep();
        assert_eq!(fast.len(), 0, "idle keys are dropped");
    }

    #[test]
    fn a_log_throttle_lets_one_line_through_and_counts_the_rest() {
        let throttle = LogThrottle::new(std::time::Duration::from_secs(3600));
        assert_eq!(throttle.admit(), Some(0));
        for _ in 0..5 {
            assert_eq!(throttle.admit(), None);
        }
        assert_eq!(throttle.suppressed.load(Ordering::Relaxed), 5);
    }
}
