//! Typed identifiers.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The longest stream id, in bytes.
pub const STREAM_ID_BYTES_MAX: usize = 255;

/// Identifies one event for ever: a UUID v7, so ids sort by creation time.
///
/// This crate draws no random numbers, so an id is built from a time and
/// random bytes that the caller supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub Uuid);

impl EventId {
    /// Builds a UUID v7 from a Unix time in milliseconds and 10 random bytes.
    pub fn v7(unix_millis: u64, random: [u8; 10]) -> Self {
        Self(uuid::Builder::from_unix_timestamp_millis(unix_millis, &random).into_uuid())
    }

    /// The 16 bytes in RFC 9562 order, as hashed in the record header.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A stream of the log: `category/id`, for example `org/0192…` or
/// `subscription/0192…`. Events of one stream carry consecutive revisions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

/// Why a text is not a stream id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid stream id {0:?}: expected `category/id`, a lowercase category, an id of letters, digits and `._:-`, at most {STREAM_ID_BYTES_MAX} bytes"
)]
pub struct StreamIdError(pub String);

impl StreamId {
    pub fn new(text: impl Into<String>) -> Result<Self, StreamIdError> {
        let text = text.into();
        if Self::is_valid(&text) { Ok(Self(text)) } else { Err(StreamIdError(text)) }
    }

    /// Whether `text` is a stream id ([`Self::new`] without taking it):
    /// `verify` checks stored ids in place, allocating nothing.
    pub fn is_valid(text: &str) -> bool {
        text.len() <= STREAM_ID_BYTES_MAX
            && match text.split_once('/') {
                Some((category, id)) => {
                    !category.is_empty()
                        && category.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                        && !id.is_empty()
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
                }
                None => false,
            }
    }

    /// The stream of one entity: `category/uuid`.
    pub fn of(category: &str, id: Uuid) -> Self {
        Self::new(format!("{category}/{id}")).expect("a category and a UUID form a valid stream id")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn category(&self) -> &str {
        self.0.split_once('/').map(|(category, _)| category).unwrap_or_default()
    }
}

impl TryFrom<String> for StreamId {
    type Error = StreamIdError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::new(text)
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> Self {
        id.0
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Declares a UUID-backed id type for one kind of entity.
macro_rules! entity_id {
    ($(#[$doc:meta])* $name:ident, $category:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The log stream that holds this entity's events.
            pub fn stream(&self) -> StreamId {
                StreamId::of($category, self.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

entity_id!(
    /// A customer organization.
    OrganizationId,
    "org"
);
entity_id!(
    /// One subscription of an organization.
    SubscriptionId,
    "subscription"
);
entity_id!(
    /// One license key issued for a subscription.
    LicenseId,
    "license"
);

entity_id!(
    /// A user of an organization.
    UserId,
    "user"
);
entity_id!(
    /// An API token of an organization.
    TokenId,
    "token"
);
entity_id!(
    /// One add-on bought for a subscription.
    AddonId,
    "addon"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_checked() {
        assert_eq!(StreamId::new("org/acme-1").unwrap().category(), "org");
        for bad in ["", "org", "org/", "/x", "Org/x", "org/a b", "org/ä", &format!("org/{}", "x".repeat(252))] {
            assert!(StreamId::new(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(StreamId::new(format!("org/{}", "x".repeat(251))).is_ok());
    }

    #[test]
    fn entity_streams_and_v7_ids() {
        let id = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001);
        assert_eq!(LicenseId(id).stream().as_str(), "license/01920000-0000-7000-8000-000000000001");
        let event = EventId::v7(1_700_000_000_000, [7; 10]);
        assert_eq!(event.0.get_version_num(), 7);
        assert_eq!(event.0.get_timestamp().unwrap().to_unix().0, 1_700_000_000);
    }
}
