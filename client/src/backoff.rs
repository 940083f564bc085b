//! How long to wait before flushing again after a failure: doubling from an
//! initial delay up to a maximum, with jitter so that deployments cut off
//! by the same outage do not all come back in the same second.

use std::time::Duration;

/// Bounded exponential backoff. Use one per retry loop:
///
/// ```no_run
/// # async fn run(reporter: ledger_client::UsageReporter) -> Result<(), ledger_client::ClientError> {
/// use std::time::Duration;
/// let mut backoff = ledger_client::Backoff::new(Duration::from_secs(5), Duration::from_secs(600));
/// loop {
///     let outcome = reporter.flush().await?;
///     let wait = if outcome.stopped.is_some() { backoff.failed(outcome.retry_after) } else { backoff.succeeded() };
///     tokio::time::sleep(wait).await;
/// }
/// # }
/// ```
/// The arithmetic is `domain::backoff::Backoff`, the one backoff of the
/// system; this adds what the domain may not do itself: draw the jitter.
#[derive(Debug, Clone)]
pub struct Backoff(domain::backoff::Backoff);

impl Backoff {
    /// `initial` is the delay after the first failure and the pace when all
    /// is well; `max` bounds every delay (a server's `Retry-After` aside).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self(domain::backoff::Backoff::new(initial, max))
    }

    /// After a failure: the delay before the next attempt, between half and
    /// all of `min(max, initial × 2^(failures−1))`, and never shorter than
    /// what the server asked for with `Retry-After`.
    pub fn failed(&mut self, retry_after: Option<Duration>) -> Duration {
        self.0.failed_jittered(unit_random()).max(retry_after.unwrap_or(Duration::ZERO))
    }

    /// After a success: back to the initial pace.
    pub fn succeeded(&mut self) -> Duration {
        self.0.succeeded()
    }
}

/// A number in [0, 1); without randomness, no jitter (still bounded).
fn unit_random() -> f64 {
    getrandom::u64().map_or(1.0, |bits| (bits >> 11) as f64 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_honour_retry_after() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let bounds = [(0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 16.0), (15.0, 30.0), (15.0, 30.0)];
        for (low, high) in bounds {
            let delay = backoff.failed(None).as_secs_f64();
            assert!((low..=high).contains(&delay), "{delay} not in {low}..={high}");
        }
        for _ in 0..100 {
            assert!(backoff.failed(None) <= Duration::from_secs(30));
        }
        assert_eq!(backoff.failed(Some(Duration::from_secs(120))), Duration::from_secs(120));
        assert_eq!(backoff.succeeded(), Duration::from_secs(1));
        assert!(backoff.failed(None) <= Duration::from_secs(1));
    }
}
