//! Where the client reads time, behind a trait so tests can move the wall
//! clock back and let days pass on the monotonic clock without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// The two clocks the offline judgement reads.
///
/// They answer different questions: `wall` is the calendar time the
/// machine's owner can set to anything; `monotonic` only ever moves forward
/// while this process runs and cannot be set, but means nothing across a
/// restart. The judgement uses each for what it can be trusted with.
pub trait TimeSource: Send + Sync + 'static {
    /// The machine's calendar clock.
    fn wall(&self) -> DateTime<Utc>;
    /// A clock that never goes back while the process runs.
    fn monotonic(&self) -> Instant;
}

/// The operating system's clocks (`Utc::now`, `Instant::now`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTime;

impl TimeSource for SystemTime {
    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to: for tests and simulations.
///
/// [`ManualTime::advance`] moves both clocks, as real time passing does;
/// [`ManualTime::set_wall`] moves only the calendar, as its owner would.
#[derive(Debug)]
pub struct ManualTime {
    origin: Instant,
    state: Mutex<ManualState>,
}

#[derive(Debug)]
struct ManualState {
    wall: DateTime<Utc>,
    monotonic: Duration,
}

impl ManualTime {
    pub fn new(wall: DateTime<Utc>) -> Self {
        Self { origin: Instant::now(), state: Mutex::new(ManualState { wall, monotonic: Duration::ZERO }) }
    }

    /// Real time passing: both clocks move forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut state = self.state.lock().expect("the manual clock's lock is never poisoned");
        state.wall += chrono::Duration::from_std(by).expect("a test advances by less than 292 years");
        state.monotonic += by;
    }

    /// Someone sets the calendar clock; the monotonic clock does not notice.
    pub fn set_wall(&self, wall: DateTime<Utc>) {
        self.state.lock().expect("the manual clock's lock is never poisoned").wall = wall;
    }
}

impl TimeSource for ManualTime {
    fn wall(&self) -> DateTime<Utc> {
        self.state.lock().expect("the manual clock's lock is never poisoned").wall
    }

    fn monotonic(&self) -> Instant {
        self.origin + self.state.lock().expect("the manual clock's lock is never poisoned").monotonic
    }
}
