//! How long to wait after failures in a row: bounded exponential backoff.
//!
//! One type for every retry loop of the system: the on-premises client's
//! usage flush, the Stripe sync and the notification outbox. It is pure
//! arithmetic on a count of failures; the caller keeps the clock (when the
//! next attempt is due) and, where several parties must not come back in
//! the same second, draws the random number that spreads them (`jittered`).

use std::time::Duration;

/// Doublings beyond this are beyond every maximum anyone sets (2^31 times
/// the first delay), and `1u32 << 31` is the largest shift that fits.
const DOUBLINGS_MAX: u32 = 31;

/// Bounded exponential backoff: `first` after the first failure, doubling
/// with each further failure in a row, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// `first` is the delay after one failure (and the pace when all is
    /// well, for loops that have one); `max` bounds every delay.
    ///
    /// # Panics
    /// When `first` exceeds `max`: a programmer's error in a constant.
    pub const fn new(first: Duration, max: Duration) -> Self {
        assert!(first.as_nanos() <= max.as_nanos(), "the first delay must not exceed the maximum");
        Self { first, max, failures: 0 }
    }

    pub const fn first(&self) -> Duration {
        self.first
    }

    pub const fn max(&self) -> Duration {
        self.max
    }

    /// Failures in a row so far.
    pub const fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay after `failures` failures in a row: `first × 2^(failures − 1)`,
    /// at most `max` (and `first` for no failure).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(DOUBLINGS_MAX);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// Counts a failure; the delay before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay(self.failures)
    }

    /// Counts a failure; the delay before the next attempt, spread between
    /// half and all of [`Backoff::failed`]'s by `unit`, a random number in
    /// [0, 1) the caller draws (a value outside is clamped into it).
    pub fn failed_jittered(&mut self, unit: f64) -> Duration {
        let ceiling = self.failed();
        let half = ceiling / 2;
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 1.0 };
        half + half.mul_f64(unit)
    }

    /// Counts a success: the next failure starts again from `first`.
    /// Returns `first`, the pace when all is well.
    pub fn succeeded(&mut self) -> Duration {
        self.failures = 0;
        self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn seconds(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn delays_double_from_the_first_up_to_the_maximum() {
        let mut backoff = Backoff::new(seconds(1), seconds(900));
        let delays: Vec<u64> = (0..14).map(|_| backoff.failed().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900]);
        assert_eq!(backoff.failures(), 14);
        assert_eq!(backoff.delay(0), seconds(1), "no failure: the first delay");
    }

    #[test]
    fn very_many_failures_stay_at_the_maximum_without_overflow() {
        let backoff = Backoff::new(Duration::from_millis(1), Duration::MAX);
        assert_eq!(backoff.delay(32), Duration::from_millis(1 << 31));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_millis(1 << 31));
        let mut saturated = Backoff::new(seconds(1), seconds(300));
        saturated.failures = u32::MAX;
        assert_eq!(saturated.failed(), seconds(300));
        assert_eq!(saturated.failures(), u32::MAX);
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay(40), Duration::MAX, "saturates instead of overflowing");
    }

    #[test]
    fn a_success_starts_again_from_the_first_delay() {
        let mut backoff = Backoff::new(seconds(5), seconds(600));
        backoff.failed();
        backoff.failed();
        assert_eq!(backoff.succeeded(), seconds(5));
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.failed(), seconds(5));
    }

    #[test]
    fn jitter_spreads_between_half_and_all_of_the_delay() {
        let mut backoff = Backoff::new(seconds(8), seconds(8));
        assert_eq!(backoff.failed_jittered(0.0), seconds(4));
        assert_eq!(backoff.failed_jittered(0.5), seconds(6));
        let almost = backoff.failed_jittered(0.999_999);
        assert!(seconds(7) < almost && almost < seconds(8), "{almost:?}");
        // Out of range or not a number: clamped, never beyond the delay.
        assert_eq!(backoff.failed_jittered(7.0), seconds(8));
        assert_eq!(backoff.failed_jittered(-1.0), seconds(4));
        assert_eq!(backoff.failed_jittered(f64::NAN), seconds(8));
    }

    #[test]
    #[should_panic(expected = "must not exceed")]
    fn a_first_delay_beyond_the_maximum_is_a_programmers_error() {
        let _ = Backoff::new(seconds(2), seconds(1));
    }
}
