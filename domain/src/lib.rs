//! The ledger's model.
//!
//! This crate is pure: it performs no I/O, reads no clock and draws no
//! random numbers of its own. Time and random bytes are arguments. The edges
//! (`store`, `api`, `replay`, `client`) are the only code that touches the
//! outside world, so nothing here can fail for I/O reasons.

pub mod airgap;
pub mod backoff;
pub mod billing;
pub mod branding;
pub mod calendar;
pub mod catalog;
pub mod checkpoint;
pub mod codec;
pub mod deployment_key;
pub mod enforcement;
pub mod event;
pub mod floating;
pub mod ids;
pub mod keys;
pub mod lease;
pub mod license;
pub mod merkle;
pub mod money;
pub mod notification;
pub mod organization;
pub mod payment;
pub mod privacy;
pub mod proof;
pub mod record;
pub mod signin;
pub mod sso;
pub mod staff;
pub mod stripe;
pub mod subscription;
pub mod time;
pub mod usage;
pub mod validation;
pub mod webhook;
pub mod workflows;

pub use ids::{AddonId, EventId, LicenseId, OrganizationId, StreamId, SubscriptionId, TokenId, UserId};
pub use money::{Currency, Money};
pub use record::{Hash, Metadata, Record, RecordHeader};
pub use time::{Clock, Timestamp};
