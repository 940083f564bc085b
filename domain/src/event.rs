//! How domain events become log records and back.
//!
//! Each variant of an aggregate's event enum has a type name and a schema
//! version that never change once stored (`SubscriptionUpgraded`, 1). The
//! payload is the postcard encoding of the variant's own struct only, so
//! adding a variant never shifts another's encoding. A new shape is a new
//! schema version, decoded by an upcaster in `decode`.

use crate::codec::DecodeError;

/// An event as the log stores it.
pub trait StoredEvent: Sized {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    fn encode_payload(&self) -> Vec<u8>;
    /// Decodes a stored payload; `Ok(None)` when the type is not this
    /// enum's, so a reader can try each aggregate's events in turn.
    fn decode(event_type: &str, schema_version: u32, payload: &[u8]) -> Result<Option<Self>, EventDecodeError>;
}

/// A stored event that this version cannot read.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("{event_type} schema version {schema_version} is unknown to this version of the ledger")]
    UnknownVersion { event_type: String, schema_version: u32 },
    #[error("{event_type}: {source}")]
    Payload { event_type: String, source: DecodeError },
}

/// Declares an aggregate's event enum: each variant wraps a struct of the
/// same name, with the schema version it is written at.
///
/// A variant whose shape changed lists its older versions and the types
/// they decode as; each older type converts into the current one
/// (`From<OldShape> for Current`: the upcaster). New events are always
/// written at the current version; stored bytes are never re-encoded.
///
/// ```ignore
/// stored_events! {
///     pub enum OrganizationEvent {
///         OrganizationCreated = 1,
///         ApiTokenIssued = 2 { 1 => ApiTokenIssuedV1 },
///     }
/// }
/// ```
#[macro_export]
macro_rules! stored_events {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($variant:ident = $version:literal $({ $($old:literal => $old_type:ty),+ $(,)? })?),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($variant($variant)),*
        }

        impl $crate::event::StoredEvent for $name {
            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant)),*
                }
            }

            fn schema_version(&self) -> u32 {
                match self {
                    $(Self::$variant(_) => $version),*
                }
            }

            fn encode_payload(&self) -> Vec<u8> {
                match self {
                    $(Self::$variant(event) => $crate::codec::encode(event)),*
                }
            }

            fn decode(
                event_type: &str,
                schema_version: u32,
                payload: &[u8],
            ) -> Result<Option<Self>, $crate::event::EventDecodeError> {
                match event_type {
                    $(stringify!($variant) => {
                        let payload_error = |source| $crate::event::EventDecodeError::Payload {
                            event_type: event_type.to_owned(),
                            source,
                        };
                        match schema_version {
                            $version => $crate::codec::decode::<$variant>(payload)
                                .map(|event| Some(Self::$variant(event)))
                                .map_err(payload_error),
                            $($($old => $crate::codec::decode::<$old_type>(payload)
                                .map(|event| Some(Self::$variant(<$variant>::from(event))))
                                .map_err(payload_error),)+)?
                            _ => Err($crate::event::EventDecodeError::UnknownVersion {
                                event_type: event_type.to_owned(),
                                schema_version,
                            }),
                        }
                    })*
                    _ => Ok(None),
                }
            }
        }

        impl cqrs_es::DomainEvent for $name {
            fn event_type(&self) -> String {
                $crate::event::StoredEvent::event_type(self).to_owned()
            }

            fn event_version(&self) -> String {
                $crate::event::StoredEvent::schema_version(self).to_string()
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(event: $variant) -> Self {
                    Self::$variant(event)
                }
            }
        )*
    };
}

/// Any event of the ledger, by the category of its stream.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerEvent {
    Organization(crate::organization::OrganizationEvent),
    Subscription(crate::subscription::SubscriptionEvent),
    License(crate::license::LicenseEvent),
    Validation(crate::validation::ValidationEvent),
    Usage(crate::usage::UsageEvent),
    Invoice(crate::billing::InvoiceEvent),
    /// `checkpoint/log`: signed checkpoints kept in the log, key rotations.
    Checkpoint(crate::checkpoint::CheckpointEvent),
    /// `notification/{id}`: what became of a notification.
    Notification(crate::notification::NotificationEvent),
    /// `stripe-event`, `stripe-customer`, `stripe-invoice`, `stripe-payment-method`, `stripe-sync`.
    Stripe(crate::stripe::StripeEvent),
}

impl LedgerEvent {
    /// Decodes a record's payload. `Ok(None)` for streams of a category or
    /// event types this version does not know (records of later features
    /// stay readable by older readers, which skip them).
    pub fn decode(header: &crate::RecordHeader, payload: &[u8]) -> Result<Option<Self>, EventDecodeError> {
        let (event_type, version) = (header.event_type.as_str(), header.schema_version);
        Ok(match header.stream_id.category() {
            "org" => StoredEvent::decode(event_type, version, payload)?.map(Self::Organization),
            "subscription" => StoredEvent::decode(event_type, version, payload)?.map(Self::Subscription),
            "license" => StoredEvent::decode(event_type, version, payload)?.map(Self::License),
            "validation" => StoredEvent::decode(event_type, version, payload)?.map(Self::Validation),
            "usage" => StoredEvent::decode(event_type, version, payload)?.map(Self::Usage),
            "invoice" => StoredEvent::decode(event_type, version, payload)?.map(Self::Invoice),
            "checkpoint" => StoredEvent::decode(event_type, version, payload)?.map(Self::Checkpoint),
            "notification" => StoredEvent::decode(event_type, version, payload)?.map(Self::Notification),
            "stripe-event" | "stripe-customer" | "stripe-invoice" | "stripe-payment-method" | "stripe-sync" => {
                StoredEvent::decode(event_type, version, payload)?.map(Self::Stripe)
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{EventDecodeError, StoredEvent};

    /// The shape `Renamed` was first stored in.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct RenamedV1 {
        name: String,
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Renamed {
        name: String,
        note: Option<String>,
    }

    impl From<RenamedV1> for Renamed {
        fn from(old: RenamedV1) -> Self {
            Self { name: old.name, note: None }
        }
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Plain {
        n: u32,
    }

    crate::stored_events! {
        pub enum TestEvent {
            Plain = 1,
            Renamed = 2 { 1 => RenamedV1 },
        }
    }

    #[test]
    fn an_older_version_is_upcast_on_read_and_new_events_are_written_at_the_current_one() {
        let old = crate::codec::encode(&RenamedV1 { name: "a".into() });
        let read = TestEvent::decode("Renamed", 1, &old).unwrap().unwrap();
        assert_eq!(read, TestEvent::Renamed(Renamed { name: "a".into(), note: None }));
        assert_eq!(read.schema_version(), 2);
        let new = TestEvent::Renamed(Renamed { name: "b".into(), note: Some("n".into()) });
        let back = TestEvent::decode("Renamed", 2, &new.encode_payload()).unwrap().unwrap();
        assert_eq!(back, new);
        // A version neither current nor listed is refused, not guessed at.
        assert!(matches!(TestEvent::decode("Renamed", 3, &old), Err(EventDecodeError::UnknownVersion { .. })));
        assert!(matches!(TestEvent::decode("Plain", 2, &old), Err(EventDecodeError::UnknownVersion { .. })));
        assert_eq!(TestEvent::decode("Other", 1, &old).unwrap(), None);
    }
}
