//! The server's clock modes (API.md, `--clock`).

use std::path::PathBuf;
use std::sync::Mutex;

use domain::{Clock, Timestamp};

/// The clock business rules read. Transport checks (token expiry, Stripe
/// signature age) always read the system clock, whatever this is.
pub enum ServerClock {
    System,
    Fixed(Timestamp),
    /// A test clock, moved forward by `POST /api/v1/test-clock`, kept in a
    /// file so a restart continues from it.
    Manual {
        now: Mutex<Timestamp>,
        file: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("--clock takes system, fixed:<RFC 3339 time> or manual:<RFC 3339 time>, not {0:?}")]
    Syntax(String),
    #[error("the test clock only moves forward: it is at {now}, {requested} is earlier")]
    Backwards { now: Timestamp, requested: Timestamp },
    #[error("the test clock could not be saved: {0}")]
    Io(#[from] std::io::Error),
}

impl ServerClock {
    /// Parses `--clock`. A manual clock starts from its file when the data
    /// directory has one (a restart continues), else from the given time.
    pub fn parse(text: &str, data_dir: &std::path::Path) -> Result<Self, ClockError> {
        let syntax = || ClockError::Syntax(text.to_owned());
        match text.split_once(':') {
            None if text == "system" => Ok(ServerClock::System),
            Some(("fixed", at)) => Ok(ServerClock::Fixed(Timestamp::parse_rfc3339(at).map_err(|_| syntax())?)),
            Some(("manual", at)) => {
                let start = Timestamp::parse_rfc3339(at).map_err(|_| syntax())?;
                let file = data_dir.join("test-clock");
                let now = match std::fs::read_to_string(&file) {
                    Ok(saved) => Timestamp::parse_rfc3339(saved.trim()).map_err(|_| syntax())?.max(start),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => start,
                    Err(error) => return Err(error.into()),
                };
                Ok(ServerClock::Manual { now: Mutex::new(now), file })
            }
            _ => Err(syntax()),
        }
    }

    /// Moves a manual clock forward and saves it; `None` in other modes.
    pub fn advance(&self, to: Timestamp) -> Option<Result<Timestamp, ClockError>> {
        let ServerClock::Manual { now, file } = self else { return None };
        let mut now = now.lock().expect("not poisoned");
        if to < *now {
            return Some(Err(ClockError::Backwards { now: *now, requested: to }));
        }
        // Written beside and renamed over, so a crash leaves the old time
        // or the new one, never half a line.
        let temporary = file.with_extension("tmp");
        let saved = std::fs::write(&temporary, to.to_rfc3339()).and_then(|()| std::fs::rename(&temporary, file));
        Some(saved.map_err(ClockError::from).map(|()| {
            *now = to;
            to
        }))
    }

    pub fn is_manual(&self) -> bool {
        matches!(self, ServerClock::Manual { .. })
    }
}

impl Clock for ServerClock {
    fn now(&self) -> Timestamp {
        match self {
            ServerClock::System => Timestamp::from_datetime(chrono::Utc::now()),
            ServerClock::Fixed(at) => *at,
            ServerClock::Manual { now, .. } => *now.lock().expect("not poisoned"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manual_clock_moves_forward_only_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ServerClock::parse("manual:2026-01-01T00:00:00Z", dir.path()).unwrap();
        let later = Timestamp::parse_rfc3339("2026-02-01T00:00:00Z").unwrap();
        assert_eq!(clock.advance(later).unwrap().unwrap(), later);
        assert!(clock.advance(Timestamp::parse_rfc3339("2026-01-15T00:00:00Z").unwrap()).unwrap().is_err());
        let restarted = ServerClock::parse("manual:2026-01-01T00:00:00Z", dir.path()).unwrap();
        assert_eq!(restarted.now(), later);
    }

    #[test]
    fn modes_parse_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(ServerClock::parse("system", dir.path()), Ok(ServerClock::System)));
        let fixed = ServerClock::parse("fixed:2026-01-15T00:00:00Z", dir.path()).unwrap();
        assert_eq!(fixed.now(), Timestamp::parse_rfc3339("2026-01-15T00:00:00Z").unwrap());
        assert!(fixed.advance(fixed.now()).is_none(), "only the manual clock moves");
        for bad in ["", "fixed", "fixed:yesterday", "manual:2026-01-15", "sundial"] {
            assert!(ServerClock::parse(bad, dir.path()).is_err(), "{bad}");
        }
    }
}
