//! Time as the ledger sees it: microseconds since the Unix epoch, UTC.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A point in time, in whole microseconds since 1970-01-01T00:00:00Z.
///
/// Microseconds are what PostgreSQL and SQLite keep exactly, so a timestamp
/// written to either store reads back bit for bit and hashes the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).expect("every i64 microsecond count is a valid date")
    }

    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.timestamp_micros())
    }

    /// Parses RFC 3339 (`2026-01-15T00:00:00Z`); sub-microsecond digits are
    /// rejected rather than silently truncated.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let at = DateTime::parse_from_rfc3339(text).map_err(|_| TimestampError(text.to_owned()))?;
        if at.timestamp_subsec_nanos() % 1_000 != 0 {
            return Err(TimestampError(text.to_owned()));
        }
        Ok(Self::from_datetime(at.with_timezone(&Utc)))
    }

    pub fn to_rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not an RFC 3339 UTC time with at most microsecond precision: {0:?}")]
pub struct TimestampError(String);

/// The source of "now" for business rules. The server passes the system
/// clock, or a fixed or manual one for scenarios and tests; this crate only
/// ever receives one and never reads the system time itself.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// A clock that always answers the same time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// Serde as RFC 3339 text, for JSON documents read by other languages
/// (leases); stored events keep the compact integer form.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Timestamp;

    pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&at.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }

    /// The same for an optional time.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        use super::Timestamp;

        pub fn serialize<S: Serializer>(at: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => serializer.serialize_some(&at.to_rfc3339()),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
            Option::<std::borrow::Cow<'de, str>>::deserialize(deserializer)?
                .map(|text| Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_in_microseconds() {
        let t = Timestamp::parse_rfc3339("2026-01-15T10:20:30.123456Z").unwrap();
        assert_eq!(t.as_micros(), 1_768_472_430_123_456);
        assert_eq!(t.to_rfc3339(), "2026-01-15T10:20:30.123456Z");
        assert_eq!(Timestamp::parse_rfc3339("2026-01-15T11:20:30.123456+01:00").unwrap(), t);
    }

    #[test]
    fn rejects_nanoseconds_and_garbage() {
        assert!(Timestamp::parse_rfc3339("2026-01-15T10:20:30.123456789Z").is_err());
        assert!(Timestamp::parse_rfc3339("2026-01-15").is_err());
    }
}
