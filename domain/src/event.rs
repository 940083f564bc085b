//! How domain events become log records and back.
//!
//! Each variant of an aggregate's event enum is stored under a type name
//! and a schema version written out in its `stored_events!` entry, never
//! taken from a Rust identifier: renaming a variant or its struct renames
//! nothing in a log (`SubscriptionUpgraded = "SubscriptionUpgraded" version
//! 1`). The payload is the postcard encoding of the variant's stored struct
//! only, so adding a variant never shifts another's encoding.
//!
//! What is stored, and how it may change (ARCHITECTURE.md, "Stored
//! events"):
//! - A stored struct's fields, in declaration order, and every type it
//!   embeds are the schema of its type and version. None of them changes
//!   once released: a new shape is a new schema version, and the old shape
//!   stays as a frozen struct (`…V1`) that an upcaster (`From<Old> for
//!   Current`) turns into the current one on read. New events are always
//!   written at the current version; stored bytes are never re-encoded.
//! - Usually the variant's own struct is the stored struct: it is plain
//!   data, defined beside the `stored_events!` block, and the values it
//!   embeds (ids, `Timestamp`, `Hash`, `Money`, dates, decimals, and the
//!   enums `Tier`, `Role`, `AddonKind`, `ValidationCode`, `LineKind`,
//!   `Notice`, `Outcome`, …) encode the same for ever; the golden file
//!   `domain/tests/vectors/events-v1.json` pins every type's and version's
//!   bytes and every variant of those enums, and its test refuses a change.
//!   `billing::Invoice` is pinned the same way on purpose: its encoding is
//!   what an invoice's digest hashes, so it is a stored format of its own,
//!   changed only with a new `InvoiceIssued` version and digest context.
//! - A variant whose struct embeds a domain model that grows with the
//!   product (`usage::Metrics` gains a field with each new metric) is
//!   stored through a struct of its own, named with `as` (`UsageReported =
//!   "UsageReported" version 1 as UsageReportedV1`), with explicit
//!   conversions both ways that destructure every field: a new domain
//!   field stops the build there, instead of silently changing or losing
//!   what is stored.

use crate::codec::DecodeError;
use crate::record::EVENT_TYPE_BYTES_MAX;

/// A stored event type at one schema version that this version reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredType {
    /// The event type in the record header; never renamed once stored.
    pub name: &'static str,
    pub version: u32,
    /// Whether new events are written at this version; an older one is
    /// only read, and upcast to the current one.
    pub current: bool,
}

/// An event as the log stores it.
pub trait StoredEvent: Sized {
    /// Every stored type and version this enum reads, the current ones and
    /// the older ones kept for upcasting.
    const STORED_TYPES: &'static [StoredType];

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

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Checks, while compiling, one enum's stored types (`stored_events!`
/// calls it): every name is 1 to [`EVENT_TYPE_BYTES_MAX`] ASCII letters and
/// digits, every version at least 1, no two variants share a name, and
/// each older version lies below its type's current one and is listed once.
///
/// ```compile_fail
/// # use ledger_domain::event::{StoredType, check_stored_types};
/// const _: () = check_stored_types(&[
///     StoredType { name: "Created", version: 1, current: true },
///     StoredType { name: "Created", version: 1, current: true },
/// ]);
/// ```
///
/// ```
/// # use ledger_domain::event::{StoredType, check_stored_types};
/// const _: () = check_stored_types(&[
///     StoredType { name: "Created", version: 2, current: true },
///     StoredType { name: "Created", version: 1, current: false },
/// ]);
/// ```
pub const fn check_stored_types(types: &[StoredType]) {
    let mut i = 0;
    while i < types.len() {
        let this = types[i];
        let name = this.name.as_bytes();
        assert!(!name.is_empty() && name.len() <= EVENT_TYPE_BYTES_MAX, "a stored type name is 1 to 128 bytes");
        let mut b = 0;
        while b < name.len() {
            assert!(name[b].is_ascii_alphanumeric(), "a stored type name is ASCII letters and digits");
            b += 1;
        }
        assert!(this.version >= 1, "schema versions start at 1");
        let mut has_current = this.current;
        let mut j = 0;
        while j < types.len() {
            let other = types[j];
            if j != i && same(this.name, other.name) {
                assert!(!(this.current && other.current), "two variants are stored under one type name");
                assert!(this.version != other.version, "a stored type lists one version twice");
                if other.current {
                    assert!(this.version < other.version, "an older version lies above its type's current one");
                    has_current = true;
                }
            }
            j += 1;
        }
        assert!(has_current, "an older version without its type's current one");
        i += 1;
    }
}

/// Checks, while compiling, that no type name is stored by two aggregates'
/// enums ([`LedgerEvent::STORED_TYPES`]): a record's event type alone names
/// its shape, for auditors and tools that read the log without the ledger.
pub const fn check_unique_across(enums: &[&[StoredType]]) {
    let mut a = 0;
    while a < enums.len() {
        let mut b = a + 1;
        while b < enums.len() {
            let (left, right) = (enums[a], enums[b]);
            let mut i = 0;
            while i < left.len() {
                let mut j = 0;
                while j < right.len() {
                    assert!(!same(left[i].name, right[j].name), "two aggregates store one type name");
                    j += 1;
                }
                i += 1;
            }
            b += 1;
        }
        a += 1;
    }
}

/// Declares an aggregate's event enum: each variant wraps a struct of the
/// same name, stored under the type name and schema version its entry
/// writes out (ARCHITECTURE.md, "Stored events").
///
/// `as Stored` stores the variant through a stored struct of its own
/// (`From<&Variant> for Stored` to write, `From<Stored> for Variant` to
/// read). A type whose shape changed lists its older versions and the
/// frozen structs they decode as; each converts into the current struct
/// (`From<Old> for Variant`: the upcaster). New events are always written
/// at the current version; stored bytes are never re-encoded.
///
/// ```text
/// stored_events! {
///     pub enum OrganizationEvent {
///         OrganizationCreated = "OrganizationCreated" version 1,
///         ApiTokenIssued = "ApiTokenIssued" version 2 { 1 => ApiTokenIssuedV1 },
///         UsageReported = "UsageReported" version 1 as UsageReportedV1,
///     }
/// }
/// ```
///
/// It also lists every stored type and version
/// ([`StoredEvent::STORED_TYPES`]), which the golden file's test checks it
/// covers, and checks them while compiling ([`check_stored_types`]).
#[macro_export]
macro_rules! stored_events {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($variant:ident = $type_name:literal version $version:literal $(as $stored:ty)?
            $({ $($old:literal => $old_type:ty),+ $(,)? })?),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($variant($variant)),*
        }

        impl $crate::event::StoredEvent for $name {
            const STORED_TYPES: &'static [$crate::event::StoredType] = &[
                $(
                    $crate::event::StoredType { name: $type_name, version: $version, current: true },
                    $($($crate::event::StoredType { name: $type_name, version: $old, current: false },)+)?
                )*
            ];

            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $type_name),*
                }
            }

            fn schema_version(&self) -> u32 {
                match self {
                    $(Self::$variant(_) => $version),*
                }
            }

            fn encode_payload(&self) -> Vec<u8> {
                match self {
                    $(Self::$variant(event) => $crate::__stored_encode!(event $(, $stored)?)),*
                }
            }

            fn decode(
                event_type: &str,
                schema_version: u32,
                payload: &[u8],
            ) -> Result<Option<Self>, $crate::event::EventDecodeError> {
                match event_type {
                    $($type_name => {
                        let payload_error = |source| $crate::event::EventDecodeError::Payload {
                            event_type: event_type.to_owned(),
                            source,
                        };
                        match schema_version {
                            $version => $crate::__stored_decode!($variant, payload $(, $stored)?)
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

        const _: () = $crate::event::check_stored_types(<$name as $crate::event::StoredEvent>::STORED_TYPES);

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
    ($($anything:tt)*) => {
        compile_error!(
            "stored_events!: write each variant as `Variant = \"StoredName\" version N`, then optionally \
             `as StoredStruct` and `{ older version => OlderStruct, … }` (domain/src/event.rs, ARCHITECTURE.md \
             \"Stored events\")"
        );
    };
}

/// A variant's payload: its own struct, or the stored struct it names.
#[doc(hidden)]
#[macro_export]
macro_rules! __stored_encode {
    ($event:ident) => {
        $crate::codec::encode($event)
    };
    ($event:ident, $stored:ty) => {
        $crate::codec::encode(&<$stored>::from($event))
    };
}

/// Reads a variant's payload at its current version: its own struct, or
/// the stored struct it names, converted.
#[doc(hidden)]
#[macro_export]
macro_rules! __stored_decode {
    ($variant:ty, $payload:ident) => {
        $crate::codec::decode::<$variant>($payload)
    };
    ($variant:ty, $payload:ident, $stored:ty) => {
        $crate::codec::decode::<$stored>($payload).map(<$variant>::from)
    };
}

/// Declares [`LedgerEvent`] from one list: its variants, the stream
/// categories each one's events live on, and every stored type it reads.
macro_rules! ledger_events {
    ($($(#[$doc:meta])* $variant:ident($events:ty) on [$($category:literal),+]),* $(,)?) => {
        /// Any event of the ledger, by the category of its stream.
        #[derive(Debug, Clone, PartialEq)]
        pub enum LedgerEvent {
            $($(#[$doc])* $variant($events)),*
        }

        impl LedgerEvent {
            /// Every stored event type and schema version this version
            /// reads, by aggregate: what the golden file must cover.
            pub const STORED_TYPES: &'static [&'static [StoredType]] =
                &[$(<$events as StoredEvent>::STORED_TYPES),*];

            /// Decodes a record's payload. `Ok(None)` for streams of a category or
            /// event types this version does not know (records of later features
            /// stay readable by older readers, which skip them).
            pub fn decode(header: &crate::RecordHeader, payload: &[u8]) -> Result<Option<Self>, EventDecodeError> {
                let (event_type, version) = (header.event_type.as_str(), header.schema_version);
                Ok(match header.stream_id.category() {
                    $($($category)|+ => StoredEvent::decode(event_type, version, payload)?.map(Self::$variant),)*
                    _ => None,
                })
            }
        }

        const _: () = check_unique_across(LedgerEvent::STORED_TYPES);
    };
}

ledger_events! {
    Organization(crate::organization::OrganizationEvent) on ["org"],
    Subscription(crate::subscription::SubscriptionEvent) on ["subscription"],
    License(crate::license::LicenseEvent) on ["license"],
    /// `validation/{license}:{day}`, and `floating/{license}:{day}` for
    /// floating lease extensions.
    Validation(crate::validation::ValidationEvent) on ["validation", "floating"],
    Usage(crate::usage::UsageEvent) on ["usage"],
    Invoice(crate::billing::InvoiceEvent) on ["invoice"],
    /// `checkpoint/log`: signed checkpoints kept in the log, key rotations.
    Checkpoint(crate::checkpoint::CheckpointEvent) on ["checkpoint"],
    /// `notification/{id}`: what became of a notification.
    Notification(crate::notification::NotificationEvent) on ["notification"],
    /// `stripe-event`, `stripe-customer`, `stripe-invoice`, `stripe-payment-method`, `stripe-sync`,
    /// `stripe-void`, `stripe-credit-note` (issue 15).
    Stripe(crate::stripe::StripeEvent)
        on ["stripe-event", "stripe-customer", "stripe-invoice", "stripe-payment-method", "stripe-sync", "stripe-void",
            "stripe-credit-note"],
    /// `branding/{organization}`: white-label branding (issue 14).
    Branding(crate::branding::BrandingEvent) on ["branding"],
    /// `staff/directory`: the vendor's staff users and service tokens (issue 15).
    Staff(crate::staff::StaffEvent) on ["staff"],
    /// `privacy/log`: sanctioned erasures and retention runs (issue 16).
    Privacy(crate::privacy::PrivacyEvent) on ["privacy"],
}

#[cfg(test)]
mod tests {
    use super::{EventDecodeError, StoredEvent, StoredType};

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

    /// A domain struct whose Rust name differs from its stored name.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Plain {
        n: u32,
    }

    /// A domain struct stored through a stored struct of its own: its
    /// fields are in another order than the stored ones.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Measured {
        unit: String,
        value: u64,
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct MeasuredV1 {
        value: u64,
        unit: String,
    }

    impl From<&Measured> for MeasuredV1 {
        fn from(event: &Measured) -> Self {
            let Measured { unit, value } = event;
            Self { value: *value, unit: unit.clone() }
        }
    }

    impl From<MeasuredV1> for Measured {
        fn from(stored: MeasuredV1) -> Self {
            let MeasuredV1 { value, unit } = stored;
            Self { unit, value }
        }
    }

    crate::stored_events! {
        pub enum TestEvent {
            Plain = "Counted" version 1,
            Renamed = "Renamed" version 2 { 1 => RenamedV1 },
            Measured = "Measured" version 1 as MeasuredV1,
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
        assert!(matches!(TestEvent::decode("Counted", 2, &old), Err(EventDecodeError::UnknownVersion { .. })));
        assert_eq!(TestEvent::decode("Other", 1, &old).unwrap(), None);
    }

    #[test]
    fn the_stored_name_is_the_written_one_not_the_rust_identifier() {
        let event = TestEvent::Plain(Plain { n: 7 });
        assert_eq!(event.event_type(), "Counted");
        assert_eq!(cqrs_es::DomainEvent::event_type(&event), "Counted");
        assert_eq!(TestEvent::decode("Counted", 1, &event.encode_payload()).unwrap(), Some(event.clone()));
        assert_eq!(TestEvent::decode("Plain", 1, &event.encode_payload()).unwrap(), None);
    }

    #[test]
    fn a_variant_with_a_stored_struct_is_written_and_read_through_it() {
        let event = TestEvent::Measured(Measured { unit: "GB".into(), value: 300 });
        let payload = event.encode_payload();
        assert_eq!(payload, crate::codec::encode(&MeasuredV1 { value: 300, unit: "GB".into() }));
        assert_eq!(TestEvent::decode("Measured", 1, &payload).unwrap(), Some(event));
    }

    #[test]
    fn every_stored_type_and_version_is_listed() {
        let stored = |name, version, current| StoredType { name, version, current };
        assert_eq!(
            TestEvent::STORED_TYPES,
            [
                stored("Counted", 1, true),
                stored("Renamed", 2, true),
                stored("Renamed", 1, false),
                stored("Measured", 1, true)
            ]
        );
        let all: Vec<_> = super::LedgerEvent::STORED_TYPES.iter().flat_map(|types| types.iter()).collect();
        assert!(all.iter().any(|t| t.name == "InvoiceIssued" && t.version == 1 && !t.current));
        assert!(all.iter().any(|t| t.name == "InvoiceIssued" && t.version == 2 && t.current));
    }
}
