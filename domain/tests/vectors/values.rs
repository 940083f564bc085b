//! The enums stored events embed, every variant of each with its bytes.
//!
//! Postcard writes an enum variant as its index in declaration order, so a
//! variant inserted before another, or two swapped, silently change what
//! every stored event holding them means. The events' examples pin only
//! the variants they use; this pins every variant. The variants are read
//! from serde itself (the list its derive passes to `deserialize_enum`), so
//! a new variant is found without anyone listing it here.

use ledger_domain::billing::LineKind;
use ledger_domain::catalog::Tier;
use ledger_domain::license::ValidationCode;
use ledger_domain::notification::{Notice, SkipReason, UsageLevel, UsageMetric};
use ledger_domain::organization::Role;
use ledger_domain::stripe::Outcome;
use ledger_domain::subscription::AddonKind;
use ledger_domain::{EventId, codec};
use serde::Serialize;
use serde::de::{DeserializeOwned, Visitor};
use serde_json::{Value, json};

use super::examples::{LICENSE, ORG, SUBSCRIPTION, day};

/// Stops a deserialization once the variants are known.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stop")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

/// A deserializer that only notes the variants an enum asks for.
#[derive(Default)]
struct Variants(Option<&'static [&'static str]>);

impl<'de> serde::Deserializer<'de> for &mut Variants {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0 = Some(variants);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// Every variant's name, in declaration order (serde's names, so after any
/// `rename_all`).
fn variants<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut capture = Variants::default();
    let _ = T::deserialize(&mut capture);
    capture.0.expect("an enum derived with serde")
}

/// A variant's serde name: a unit variant is a JSON string, any other an
/// object with one key.
fn variant_name(value: &Value) -> String {
    match value {
        Value::String(name) => name.clone(),
        Value::Object(map) if map.len() == 1 => map.keys().next().unwrap().clone(),
        other => panic!("{other} is not an enum variant"),
    }
}

fn entry<T: Serialize>(value: &T) -> Value {
    let json = serde_json::to_value(value).unwrap();
    let mut entry = json!({ "variant": variant_name(&json), "hex": hex::encode(codec::encode(value)) });
    if !json.is_string() {
        entry["value"] = json;
    }
    entry
}

/// Every variant of an enum whose variants carry no data.
fn unit_variants<T: Serialize + DeserializeOwned>() -> Value {
    let values = variants::<T>().iter().map(|name| serde_json::from_value::<T>(json!(name)).unwrap());
    Value::Array(values.map(|value| entry(&value)).collect())
}

/// Examples of an enum with data, which must name every variant in order.
fn data_variants<T: Serialize + DeserializeOwned>(what: &str, examples: &[T]) -> Value {
    let entries: Vec<Value> = examples.iter().map(entry).collect();
    let named: Vec<String> = entries.iter().map(|e| e["variant"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        named,
        variants::<T>(),
        "the examples of {what} in domain/tests/vectors/values.rs must be one of each variant, in declaration order"
    );
    Value::Array(entries)
}

fn notices() -> Vec<Notice> {
    let trigger = EventId(uuid::uuid!("0196b3c4-0000-7aaa-8bbb-cccdddeee001"));
    let (organization_id, subscription_id) = (ORG, SUBSCRIPTION);
    vec![
        Notice::Onboarding { organization_id, subscription_id, license_id: LICENSE },
        Notice::ExpiryReminder { organization_id, subscription_id, end_date: day("2027-01-15") },
        Notice::UsageWarning {
            organization_id,
            subscription_id,
            metric: UsageMetric::ApiCalls,
            level: UsageLevel::Reached,
            month: day("2026-03-01"),
        },
        Notice::PaymentFailed { organization_id, subscription_id, trigger },
        Notice::Suspended { organization_id, subscription_id, trigger },
        Notice::Restored { organization_id, subscription_id, trigger },
    ]
}

fn outcomes() -> Vec<Outcome> {
    vec![
        Outcome::Applied { what: format!("PaymentSucceeded on subscription/{SUBSCRIPTION}") },
        Outcome::Ignored { reason: "customer.created is not an event type the ledger handles".into() },
    ]
}

/// The `values` section of the golden file, by a name of its own (not
/// the Rust type's, which may be renamed without changing a byte).
pub fn compute() -> Value {
    json!({
        "Role": unit_variants::<Role>(),
        "Tier": unit_variants::<Tier>(),
        "AddonKind": unit_variants::<AddonKind>(),
        "ValidationCode": unit_variants::<ValidationCode>(),
        "LineKind": unit_variants::<LineKind>(),
        "UsageMetric": unit_variants::<UsageMetric>(),
        "UsageLevel": unit_variants::<UsageLevel>(),
        "SkipReason": unit_variants::<SkipReason>(),
        "Notice": data_variants("Notice", &notices()),
        "Outcome": data_variants("Outcome", &outcomes()),
    })
}
