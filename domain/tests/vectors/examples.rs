//! One realistic event for every stored event type and every schema version
//! this version of the ledger reads, as a log holds it: the stream, the
//! revision, the business time, the metadata and the idempotency key of a
//! plausible append, and the event itself.
//!
//! Older versions are built from their frozen structs, encoded as the
//! ledger of their time wrote them, and name the event they read as today,
//! written out field by field (not through the upcaster), so a change to an
//! upcaster shows too.

use std::str::FromStr;

use chrono::NaiveDate;
use ed25519_dalek::SigningKey;
use ledger_domain::billing::{
    self, Adjustment, DayRun, Inputs, Invoice, InvoiceEvent, InvoiceIssued, InvoiceIssuedV1, InvoiceV1, Line, LineKind,
    LineV1, OverageInputs,
};
use ledger_domain::branding::{self, BrandingEvent, BrandingRemoved, BrandingSet, Logo};
use ledger_domain::catalog::Tier;
use ledger_domain::checkpoint::{
    CHECKPOINT_STREAM, Checkpoint, CheckpointEvent, CheckpointKeyRotated, CheckpointSigned, LogRollbackAccepted,
    ServerSecretRetired, ServerSecretRotated,
};
use ledger_domain::event::LedgerEvent;
use ledger_domain::floating::{FloatingDeploymentLeased, FloatingDeploymentsSet};
use ledger_domain::keys::{self, ServerSecret};
use ledger_domain::license::{
    DeploymentActivated, DeploymentKeyBound, DeploymentKeyReset, DeploymentReleased, DeploymentReleasedV1,
    LicenseEvent, LicenseIssued, LicenseKeyRehashed, LicenseRevoked, LicenseSuperseded, OfflineActivated,
    OfflineUsageImported, ValidationCode,
};
use ledger_domain::notification::{
    Notice, NotificationEvent, NotificationSent, NotificationSkipped, SkipReason, UsageLevel, UsageMetric,
};
use ledger_domain::organization::{
    ApiTokenIssued, ApiTokenIssuedV1, ApiTokenRehashed, ApiTokenRevoked, OrganizationCreated, OrganizationEvent, Role,
    SubscriptionEnded, SubscriptionStarted, UserAdded, UserDeactivated, UserRoleChanged,
};
use ledger_domain::privacy::{
    self, ErasedRecord, ErasureReason, LicenseKeysArchived, PrivacyEvent, RetentionApplied, Subject, SubjectErased,
};
use ledger_domain::staff::{
    self as staff, ServiceTokenId, ServiceTokenIssued, ServiceTokenRehashed, ServiceTokenRevoked, StaffEvent, StaffId,
    StaffRole, StaffRoleChanged, StaffRoleChangedV1, StaffUserAdded, StaffUserDisabled,
};
use ledger_domain::stripe::{
    self, Outcome, StripeCustomerLinked, StripeDefaultPaymentMethodSet, StripeEvent, StripeEventHandled,
    StripeEventReceived, StripeInvoiceCreated, StripePaymentMethodSaved, StripeSyncRefused, StripeSyncStarted,
};
use ledger_domain::subscription::{
    AddonAdded, AddonEnded, AddonKind, AddonRepriced, AutoRenewalCancelled, DowngradeScheduled, PaymentFailed,
    PaymentSucceeded, SubscriptionCancelled, SubscriptionCreated, SubscriptionEvent, SubscriptionExpired,
    SubscriptionRenewed, SubscriptionSuspended, SubscriptionUpgraded,
};
use ledger_domain::usage::{Metrics, UsageEvent, UsageReported};
use ledger_domain::validation::{self, FloatingLeaseExtended, LicenseValidated, ValidationEvent};
use ledger_domain::{
    AddonId, Hash, LicenseId, Metadata, Money, OrganizationId, StreamId, SubscriptionId, Timestamp, TokenId, UserId,
    usage,
};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

pub const ORG: OrganizationId = OrganizationId(uuid::uuid!("01961f3a-8c00-7d2e-9a41-5b6c7d8e9f01"));
pub const SUBSCRIPTION: SubscriptionId = SubscriptionId(uuid::uuid!("01961f3a-9d12-7f00-8b3c-0a1b2c3d4e02"));
pub const LICENSE: LicenseId = LicenseId(uuid::uuid!("01961f3a-9d12-7f01-a4e5-6f708192a303"));
pub const UPGRADED_LICENSE: LicenseId = LicenseId(uuid::uuid!("0196a2b4-1c00-7e55-8d21-3344556677a4"));
pub const ADMIN: UserId = UserId(uuid::uuid!("01961f3b-0a00-7c11-9e22-112233445505"));
pub const ANALYST: UserId = UserId(uuid::uuid!("01961f3b-0a40-7c12-8e23-2233445566b5"));
pub const TOKEN: TokenId = TokenId(uuid::uuid!("01961f3b-2f40-7a99-b0c1-d2e3f4a5b606"));
pub const OLD_TOKEN: TokenId = TokenId(uuid::uuid!("0193c0de-11aa-7b20-9c30-4d5e6f708196"));
pub const ADDON: AddonId = AddonId(uuid::uuid!("0196a2b4-5e00-7123-9fed-cba987654307"));
pub const DEPLOYMENT: &str = "prod-eu-central-1";

/// How an example is stored.
pub enum Stored {
    /// At its type's current version, encoded by the ledger as it is.
    Current(LedgerEvent),
    /// At an older version: the bytes a log written then holds, the old
    /// struct as JSON, and the event it reads as today.
    Old { event_type: &'static str, version: u32, payload: Vec<u8>, event: Value, reads_as: LedgerEvent },
}

/// One record of the golden file, before the log seals it.
pub struct Example {
    pub stream: StreamId,
    pub revision: u64,
    pub occurred_at: Timestamp,
    pub metadata: Metadata,
    pub idempotency_key: Option<String>,
    pub stored: Stored,
}

pub fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

pub fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

pub fn usd(amount: &str) -> Money {
    Money::usd(Decimal::from_str(amount).unwrap())
}

pub fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// A 32-byte hash standing for one the ledger would have computed.
pub fn hash_of(what: &str) -> Hash {
    Hash(*blake3::hash(what.as_bytes()).as_bytes())
}

fn secret() -> ServerSecret {
    ServerSecret::from_bytes(*blake3::hash(b"example server secret").as_bytes())
}

/// The secret `secret()` is rotated to.
fn next_secret() -> ServerSecret {
    ServerSecret::from_bytes(*blake3::hash(b"example next server secret").as_bytes())
}

fn operator(request: &str) -> Metadata {
    Metadata {
        actor: Some("operator".into()),
        correlation_id: Some(request.into()),
        source_ip: Some("198.51.100.24".into()),
        user_agent: Some("ledger-admin/1.4.2 (linux; x86_64)".into()),
    }
}

fn member(role: &str, request: &str) -> Metadata {
    Metadata {
        actor: Some(format!("org:{ORG}:{role}:token:{TOKEN}")),
        correlation_id: Some(request.into()),
        source_ip: Some("2001:db8:4f2a::17".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into()),
    }
}

fn actor(name: &str) -> Metadata {
    Metadata { actor: Some(name.into()), ..Metadata::default() }
}

fn example(stream: StreamId, revision: u64, occurred: &str, metadata: Metadata, key: Option<&str>) -> Example {
    Example {
        stream,
        revision,
        occurred_at: at(occurred),
        metadata,
        idempotency_key: key.map(str::to_owned),
        stored: Stored::Current(LedgerEvent::Organization(OrganizationEvent::SubscriptionStarted(
            SubscriptionStarted { subscription_id: SUBSCRIPTION },
        ))),
    }
}

impl Example {
    fn current(mut self, event: LedgerEvent) -> Self {
        self.stored = Stored::Current(event);
        self
    }

    fn old<T: Serialize>(mut self, event_type: &'static str, version: u32, old: &T, reads_as: LedgerEvent) -> Self {
        let payload = ledger_domain::codec::encode(old);
        let event = super::events::describe(old);
        self.stored = Stored::Old { event_type, version, payload, event, reads_as };
        self
    }
}

/// Every example, in the order of the golden file.
pub fn all() -> Vec<Example> {
    [
        organization(),
        subscription(),
        license(),
        validation_and_usage(),
        invoices(),
        checkpoints(),
        notifications(),
        stripe(),
        // Added after the file was first written: appended, so the records
        // before keep their ids and times.
        later(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn organization() -> Vec<Example> {
    let org = |revision, occurred, metadata, key| example(ORG.stream(), revision, occurred, metadata, key);
    let event = LedgerEvent::Organization;
    let token_hash = keys::api_token_hash(&secret(), &keys::api_token(&secret(), TOKEN));
    let old_token_hash = keys::api_token_hash(&secret(), &keys::api_token(&secret(), OLD_TOKEN));
    let old_token = ApiTokenIssuedV1 { token_id: OLD_TOKEN, role: Role::Admin, token_hash: old_token_hash };
    let old_reads_as =
        ApiTokenIssued { token_id: OLD_TOKEN, role: Role::Admin, token_hash: old_token_hash, expires_at: None };
    vec![
        org(1, "2026-01-12T09:14:03.512Z", operator("req-0a91f3"), Some("operator:onboard-nordwind#0")).current(event(
            OrganizationEvent::OrganizationCreated(OrganizationCreated {
                id: ORG,
                name: "Nordwind Analytics GmbH".into(),
                domain: Some("nordwind-analytics.de".into()),
                industry: Some("Logistics".into()),
                employee_count: Some(240),
            }),
        )),
        org(2, "2026-01-12T09:15:41.077Z", operator("req-0a9244"), Some("operator:admin-jana#0")).current(event(
            OrganizationEvent::UserAdded(UserAdded {
                user_id: ADMIN,
                email: "jana.becker@nordwind-analytics.de".into(),
                role: Role::Admin,
            }),
        )),
        org(3, "2026-01-12T09:22:10.300Z", member("admin", "req-0a97c0"), None).current(event(
            OrganizationEvent::ApiTokenIssued(ApiTokenIssued {
                token_id: TOKEN,
                role: Role::Analyst,
                token_hash,
                expires_at: Some(at("2026-12-31T23:59:59Z")),
            }),
        )),
        // Version 1, before tokens could expire (issue 8): reads as never expiring.
        org(4, "2026-01-12T09:20:00Z", operator("req-55e102"), None).old(
            "ApiTokenIssued",
            1,
            &old_token,
            event(OrganizationEvent::ApiTokenIssued(old_reads_as)),
        ),
        org(5, "2026-02-02T08:01:12Z", member("admin", "req-0b1d22"), None)
            .current(event(OrganizationEvent::ApiTokenRevoked(ApiTokenRevoked { token_id: OLD_TOKEN }))),
        org(6, "2026-02-03T11:30:00Z", member("admin", "req-0b2e01"), Some("deactivate-analyst"))
            .current(event(OrganizationEvent::UserDeactivated(UserDeactivated { user_id: ANALYST }))),
        org(7, "2026-01-15T00:00:00Z", operator("req-0aa001"), Some("operator:subscribe-nordwind#0")).current(event(
            OrganizationEvent::SubscriptionStarted(SubscriptionStarted { subscription_id: SUBSCRIPTION }),
        )),
        org(8, "2027-01-15T00:00:00Z", actor("scheduler"), None)
            .current(event(OrganizationEvent::SubscriptionEnded(SubscriptionEnded { subscription_id: SUBSCRIPTION }))),
    ]
}

fn subscription() -> Vec<Example> {
    let sub = |revision, occurred, metadata, key| example(SUBSCRIPTION.stream(), revision, occurred, metadata, key);
    let event = |e| LedgerEvent::Subscription(e);
    let mut all = vec![
        sub(1, "2026-01-15T00:00:00Z", operator("req-0aa001"), Some("operator:subscribe-nordwind#1")).current(event(
            SubscriptionEvent::SubscriptionCreated(SubscriptionCreated {
                id: SUBSCRIPTION,
                organization_id: ORG,
                tier: Tier::Professional,
                catalog_version: 1,
                start_date: day("2026-01-15"),
                end_date: day("2027-01-15"),
                auto_renew: true,
                max_deployments: 3,
                enterprise_overage_rate: None,
                license_id: LICENSE,
            }),
        )),
        sub(2, "2026-03-01T00:00:00Z", operator("req-0c0417"), Some("operator:upgrade-nordwind#0")).current(event(
            SubscriptionEvent::SubscriptionUpgraded(SubscriptionUpgraded {
                from_tier: Tier::Professional,
                to_tier: Tier::Enterprise,
                effective_date: day("2026-03-01"),
                prorated_amount: usd("52328.77"),
                previous_license_id: LICENSE,
                new_license_id: UPGRADED_LICENSE,
            }),
        )),
        sub(3, "2026-10-02T10:00:00Z", member("admin", "req-1f0e33"), None).current(event(
            SubscriptionEvent::DowngradeScheduled(DowngradeScheduled {
                to_tier: Tier::Professional,
                effective_date: day("2027-01-15"),
            }),
        )),
        sub(4, "2026-10-02T10:05:00Z", member("admin", "req-1f0e40"), None).current(event(
            SubscriptionEvent::AutoRenewalCancelled(AutoRenewalCancelled { effective_date: day("2027-01-15") }),
        )),
        sub(5, "2026-08-20T14:00:00Z", operator("req-1c2d3e"), Some("operator:cancel-nordwind#0")).current(event(
            SubscriptionEvent::SubscriptionCancelled(SubscriptionCancelled { effective_date: day("2026-09-01") }),
        )),
        sub(6, "2026-02-01T00:00:00Z", member("admin", "req-0b0c11"), Some("extra-data-feb")).current(event(
            SubscriptionEvent::AddonAdded(AddonAdded {
                addon_id: ADDON,
                kind: AddonKind::ExtraDataTb,
                quantity: 1,
                annual_price: Some(usd("4000.00")),
                one_time_price: None,
                effective_date: day("2026-02-01"),
            }),
        )),
        sub(7, "2027-01-15T00:00:00Z", actor("scheduler"), None).current(event(
            SubscriptionEvent::SubscriptionRenewed(SubscriptionRenewed {
                start_date: day("2027-01-15"),
                end_date: day("2028-01-15"),
                tier: Tier::Enterprise,
                catalog_version: 1,
            }),
        )),
        sub(8, "2028-01-15T00:00:00Z", actor("scheduler"), None)
            .current(event(SubscriptionEvent::SubscriptionExpired(SubscriptionExpired { on: day("2028-01-15") }))),
    ];
    all.extend(dunning_and_addon_corrections());
    all
}

fn dunning_and_addon_corrections() -> Vec<Example> {
    let sub = |revision, occurred, metadata, key| example(SUBSCRIPTION.stream(), revision, occurred, metadata, key);
    let stripe = |event_id: &str| Metadata {
        actor: Some("stripe".into()),
        correlation_id: Some(event_id.into()),
        ..Metadata::default()
    };
    let event = |e| LedgerEvent::Subscription(e);
    vec![
        sub(9, "2026-04-01T06:12:45Z", stripe("evt_1R3kQ2LmNoP4qRsT"), Some("stripe:evt_1R3kQ2LmNoP4qRsT#0")).current(
            event(SubscriptionEvent::PaymentFailed(PaymentFailed {
                reference: "in_1R3kPzLmNoP4qRsT".into(),
                reported_at: at("2026-04-01T06:12:41Z"),
                at: at("2026-04-01T06:12:45.204Z"),
                first: true,
                past_due_since: at("2026-04-01T06:12:45.204Z"),
                suspend_at: at("2026-04-15T06:12:45.204Z"),
            })),
        ),
        sub(10, "2026-04-16T09:00:02Z", stripe("evt_1R9xW1LmNoP4qRsT"), Some("stripe:evt_1R9xW1LmNoP4qRsT#0")).current(
            event(SubscriptionEvent::PaymentSucceeded(PaymentSucceeded {
                reference: "in_1R3kPzLmNoP4qRsT".into(),
                reported_at: at("2026-04-16T08:59:58Z"),
                at: at("2026-04-16T09:00:02.881Z"),
                reactivated: true,
            })),
        ),
        sub(11, "2026-04-15T06:12:45.204Z", actor("scheduler"), None).current(event(
            SubscriptionEvent::SubscriptionSuspended(SubscriptionSuspended {
                at: at("2026-04-15T06:13:00.015Z"),
                past_due_since: at("2026-04-01T06:12:45.204Z"),
            }),
        )),
        sub(12, "2026-06-30T12:00:00Z", operator("req-18aa02"), Some("operator:end-extra-data#0")).current(event(
            SubscriptionEvent::AddonEnded(AddonEnded { addon_id: ADDON, effective_date: day("2026-07-01") }),
        )),
        sub(13, "2026-05-04T15:20:00Z", operator("req-160b7c"), Some("operator:reprice-extra-data#0")).current(event(
            SubscriptionEvent::AddonRepriced(AddonRepriced {
                addon_id: ADDON,
                annual_price: Some(usd("3600.00")),
                one_time_price: None,
            }),
        )),
    ]
}

fn license() -> Vec<Example> {
    let lic = |revision, occurred, metadata, key| example(LICENSE.stream(), revision, occurred, metadata, key);
    let event = |e| LedgerEvent::License(e);
    let signing = SigningKey::from_bytes(blake3::hash(b"example license signing key").as_bytes());
    let nonce = *b"\x3b\x91\x0c\xe4\x57\x22\xa8\x6f\x10\xd3\x4e\x89\x05\xbc\x71\x2a";
    let key_hash = keys::license_key_hash(&secret(), &keys::license_key(&signing, LICENSE, nonce));
    let old_release = DeploymentReleasedV1 { deployment_id: "staging-2".into() };
    let old_reads_as = DeploymentReleased {
        deployment_id: "staging-2".into(),
        released_at: Timestamp::from_micros(0),
        slot_frees_at: Timestamp::from_micros(0),
    };
    vec![
        lic(1, "2026-01-15T00:00:00Z", operator("req-0aa001"), Some("operator:subscribe-nordwind#2")).current(event(
            LicenseEvent::LicenseIssued(LicenseIssued {
                license_id: LICENSE,
                subscription_id: SUBSCRIPTION,
                organization_id: ORG,
                nonce,
                key_hash,
                issued_at: at("2026-01-15T00:00:00.231Z"),
            }),
        )),
        lic(2, "2026-03-01T00:00:00Z", operator("req-0c0417"), Some("operator:upgrade-nordwind#1")).current(event(
            LicenseEvent::LicenseSuperseded(LicenseSuperseded {
                by: UPGRADED_LICENSE,
                effective_date: day("2026-03-01"),
                window_ends_at: at("2026-03-08T00:00:00Z"),
            }),
        )),
        lic(3, "2026-03-08T00:00:00Z", actor("scheduler"), None).current(event(LicenseEvent::LicenseRevoked(
            LicenseRevoked { reason: "superseded by license 0196a2b4-1c00-7e55-8d21-3344556677a4".into() },
        ))),
        lic(4, "2026-01-15T08:03:11Z", actor(&format!("license:{LICENSE}")), None).current(event(
            LicenseEvent::DeploymentActivated(DeploymentActivated { deployment_id: DEPLOYMENT.into() }),
        )),
        lic(5, "2026-02-20T17:45:00Z", member("admin", "req-0b9f10"), None).current(event(
            LicenseEvent::DeploymentReleased(DeploymentReleased {
                deployment_id: DEPLOYMENT.into(),
                released_at: at("2026-02-20T17:45:00.120Z"),
                slot_frees_at: at("2026-02-21T17:40:12Z"),
            }),
        )),
        // Version 1, before a released place was held until its last lease
        // ended: reads as released and freed at the epoch.
        lic(6, "2026-01-20T10:00:00Z", operator("req-4d0a11"), None).old(
            "DeploymentReleased",
            1,
            &old_release,
            event(LicenseEvent::DeploymentReleased(old_reads_as)),
        ),
    ]
}

fn validation_and_usage() -> Vec<Example> {
    let client = actor(&format!("license:{LICENSE}"));
    let validated = LicenseValidated {
        license_id: LICENSE,
        validation_id: uuid::uuid!("0196b0d2-3e4f-7a10-8b2c-3d4e5f607182"),
        deployment_id: DEPLOYMENT.into(),
        code: ValidationCode::Valid,
        client_version: Some("ledger-client/0.9.2".into()),
        at: at("2026-03-04T07:30:00.417Z"),
    };
    let reported = UsageReported {
        subscription_id: SUBSCRIPTION,
        license_id: LICENSE,
        deployment_id: DEPLOYMENT.into(),
        day: day("2026-03-03"),
        metrics: Metrics {
            active_users: 187,
            data_volume_gb: decimal("5234.75"),
            api_calls_count: 1_284_930,
            training_hours: decimal("12.50"),
        },
    };
    vec![
        example(validation::stream(LICENSE, day("2026-03-04")), 12, "2026-03-04T07:30:00.417Z", client.clone(), None)
            .current(LedgerEvent::Validation(ValidationEvent::LicenseValidated(validated))),
        example(
            usage::stream(SUBSCRIPTION, day("2026-03-03")),
            1,
            "2026-03-04T00:05:00Z",
            client,
            Some("usage-2026-03-03"),
        )
        .current(LedgerEvent::Usage(UsageEvent::UsageReported(reported))),
    ]
}

/// February 2026 of a professional subscription with an extra TB of data,
/// a training session, data over the limit, and January's overage
/// recomputed after late usage: a line of every kind.
fn february_invoice() -> Invoice {
    let line = |kind, description: &str, days, amount: &str, reports: Vec<u64>| Line {
        kind,
        description: description.into(),
        days,
        amount: usd(amount),
        reports,
    };
    let lines = vec![
        line(LineKind::Base, "professional subscription, 2026-02-01 to 2026-02-28", Some(28), "5000.00", vec![]),
        line(LineKind::Addon, "1 × extra_data_tb", Some(28), "333.33", vec![]),
        line(LineKind::OneTimeAddon, "1 × training_session", None, "1500.00", vec![]),
        line(LineKind::DataOverage, "data over 4000 GB: peak 5234.75 GB, 2 started TB", None, "8000.00", vec![]),
        line(
            LineKind::UsageAdjustment,
            "late usage for 2026-01: data overage now 8000.00, billed 4000.00",
            None,
            "4000.00",
            vec![4102, 4177],
        ),
    ];
    let overage = |peak: &str, limit| OverageInputs {
        peak_data_gb: decimal(peak),
        data_limit_gb: limit,
        overage_rate: usd("4000.00"),
    };
    let inputs = Inputs {
        runs: vec![DayRun {
            from: day("2026-02-01"),
            to: day("2026-02-28"),
            tier: Tier::Professional,
            catalog_version: 1,
            annual_price: usd("60000.00"),
        }],
        overage: Some(overage("5234.75", 4000)),
        adjustments: vec![Adjustment {
            month: day("2026-01-01"),
            inputs: overage("4100.00", 3000),
            recomputed: usd("8000.00"),
            billed: usd("4000.00"),
        }],
    };
    Invoice { period: day("2026-02-01"), lines, total: usd("18833.33"), inputs }
}

/// January 2026 as issue 10's ledger issued it (lines without reports).
fn january_invoice_v1() -> InvoiceV1 {
    let line = |kind, description: &str, days, amount: &str| LineV1 {
        kind,
        description: description.into(),
        days,
        amount: usd(amount),
    };
    InvoiceV1 {
        period: day("2026-01-01"),
        lines: vec![
            line(LineKind::Base, "professional subscription, 2026-01-15 to 2026-01-31", Some(17), "2741.94"),
            line(LineKind::DataOverage, "data over 3000 GB: peak 3950.00 GB, 1 started TB", None, "4000.00"),
        ],
        total: usd("6741.94"),
        inputs: Inputs {
            runs: vec![DayRun {
                from: day("2026-01-15"),
                to: day("2026-01-31"),
                tier: Tier::Professional,
                catalog_version: 1,
                annual_price: usd("60000.00"),
            }],
            overage: Some(OverageInputs {
                peak_data_gb: decimal("3950.00"),
                data_limit_gb: 3000,
                overage_rate: usd("4000.00"),
            }),
            adjustments: vec![],
        },
    }
}

fn invoices() -> Vec<Example> {
    let (january, february) = (day("2026-01-01"), day("2026-02-01"));
    let invoice = february_invoice();
    let issued = InvoiceIssued {
        invoice_id: billing::invoice_id(SUBSCRIPTION, february),
        subscription_id: SUBSCRIPTION,
        organization_id: ORG,
        digest: invoice.digest(),
        invoice,
        usage_sequence: 4391,
    };
    let old_invoice = january_invoice_v1();
    let old = InvoiceIssuedV1 {
        invoice_id: billing::invoice_id(SUBSCRIPTION, january),
        subscription_id: SUBSCRIPTION,
        organization_id: ORG,
        digest: old_invoice.digest(),
        invoice: old_invoice.clone(),
        usage_sequence: 2210,
    };
    let reads_as = InvoiceIssued {
        invoice_id: old.invoice_id,
        subscription_id: SUBSCRIPTION,
        organization_id: ORG,
        invoice: Invoice {
            period: january,
            lines: old_invoice
                .lines
                .iter()
                .map(|l| Line {
                    kind: l.kind,
                    description: l.description.clone(),
                    days: l.days,
                    amount: l.amount,
                    reports: vec![],
                })
                .collect(),
            total: old_invoice.total,
            inputs: old_invoice.inputs.clone(),
        },
        digest: old.digest,
        usage_sequence: 2210,
    };
    let run = actor("billing run 2026-02");
    vec![
        example(billing::stream(SUBSCRIPTION, february), 1, "2026-03-01T02:00:00Z", run, None)
            .current(LedgerEvent::Invoice(InvoiceEvent::InvoiceIssued(issued))),
        // Version 1, before adjustment lines named their reports (issue 11).
        example(billing::stream(SUBSCRIPTION, january), 1, "2026-02-01T02:00:00Z", actor("billing run 2026-01"), None)
            .old("InvoiceIssued", 1, &old, LedgerEvent::Invoice(InvoiceEvent::InvoiceIssued(reads_as))),
    ]
}

fn checkpoints() -> Vec<Example> {
    let stream = StreamId::new(CHECKPOINT_STREAM).unwrap();
    let old_key = SigningKey::from_bytes(blake3::hash(b"example checkpoint key 1").as_bytes());
    let new_key = SigningKey::from_bytes(blake3::hash(b"example checkpoint key 2").as_bytes());
    let checkpoint = Checkpoint {
        origin: "ledger".into(),
        size: 4096,
        root: hash_of("the Merkle root of the first 4096 records"),
        chain: hash_of("the chain hash after record 4096"),
        time: at("2026-03-04T12:00:00.25Z"),
    };
    let note = checkpoint.sign(&old_key).unwrap();
    let event = LedgerEvent::Checkpoint;
    vec![
        example(stream.clone(), 310, "2026-03-04T12:00:00.25Z", actor("checkpointer"), Some("checkpoint:4096"))
            .current(event(CheckpointEvent::CheckpointSigned(CheckpointSigned { note }))),
        example(stream.clone(), 311, "2026-03-05T09:00:00Z", actor("ledger keys rotate-checkpoint"), Some("rotate"))
            .current(event(CheckpointEvent::CheckpointKeyRotated(CheckpointKeyRotated::announce(
                &old_key,
                &new_key.verifying_key(),
            )))),
        example(stream, 312, "2026-03-06T07:45:10Z", actor("ledger projections rebuild --accept-rollback"), None)
            .current(event(CheckpointEvent::LogRollbackAccepted(LogRollbackAccepted {
                lost_from: 5201,
                lost_to: 5230,
                old_chain_hash: Some(hash_of("the chain hash after record 5230, as applied")),
                head_sequence: 5200,
                new_chain_hash: hash_of("the chain hash after record 5200"),
                snapshots: vec!["ledger-state-v10".into(), "notification-outbox-v1".into()],
            }))),
    ]
}

fn notifications() -> Vec<Example> {
    let warning = Notice::UsageWarning {
        organization_id: ORG,
        subscription_id: SUBSCRIPTION,
        metric: UsageMetric::DataVolumeGb,
        level: UsageLevel::Approaching,
        month: day("2026-03-01"),
    };
    let reminder =
        Notice::ExpiryReminder { organization_id: ORG, subscription_id: SUBSCRIPTION, end_date: day("2027-01-15") };
    let (sent_id, skipped_id) = (warning.id(), reminder.id());
    let event = LedgerEvent::Notification;
    vec![
        example(sent_id.stream(), 1, "2026-03-04T00:05:01Z", actor("notifications"), None).current(event(
            NotificationEvent::NotificationSent(NotificationSent {
                id: sent_id,
                notice: warning,
                recipients: vec![ADMIN],
                message_id: format!("<{sent_id}@ledger.nordwind-analytics.de>"),
            }),
        )),
        example(skipped_id.stream(), 1, "2026-12-16T00:00:03Z", actor("notifications"), None).current(event(
            NotificationEvent::NotificationSkipped(NotificationSkipped {
                id: skipped_id,
                notice: reminder,
                reason: SkipReason::NoRecipient,
            }),
        )),
    ]
}

const STRIPE_BODY: &str = r#"{"id":"evt_1R3kQ2LmNoP4qRsT","object":"event","api_version":"2024-06-20","created":1775023961,"data":{"object":{"id":"in_1R3kPzLmNoP4qRsT","object":"invoice","amount_due":1883333,"currency":"usd","customer":"cus_RkT2m9XbQ1aZ","metadata":{"ledger_subscription_id":"01961f3a-9d12-7f00-8b3c-0a1b2c3d4e02"},"status":"open"}},"livemode":false,"pending_webhooks":1,"type":"invoice.payment_failed"}"#;

fn stripe() -> Vec<Example> {
    let event_stream = stripe::event_stream("evt_1R3kQ2LmNoP4qRsT").unwrap();
    let (customer, period) = ("cus_RkT2m9XbQ1aZ", day("2026-02-01"));
    let stripe_actor = || Metadata {
        actor: Some("stripe".into()),
        correlation_id: Some("evt_1R3kQ2LmNoP4qRsT".into()),
        ..Metadata::default()
    };
    let event = LedgerEvent::Stripe;
    let mut all = vec![
        example(event_stream.clone(), 1, "2026-04-01T06:12:41Z", stripe_actor(), None).current(event(
            StripeEvent::StripeEventReceived(StripeEventReceived {
                event_id: "evt_1R3kQ2LmNoP4qRsT".into(),
                event_type: "invoice.payment_failed".into(),
                created: at("2026-04-01T06:12:41Z"),
                livemode: false,
                object_id: Some("in_1R3kPzLmNoP4qRsT".into()),
                body: STRIPE_BODY.into(),
            }),
        )),
        example(event_stream, 2, "2026-04-01T06:12:45Z", stripe_actor(), Some("stripe:evt_1R3kQ2LmNoP4qRsT#1"))
            .current(event(StripeEvent::StripeEventHandled(StripeEventHandled {
                event_id: "evt_1R3kQ2LmNoP4qRsT".into(),
                outcome: Outcome::Applied { what: format!("PaymentFailed on subscription/{SUBSCRIPTION}") },
            }))),
        example(stripe::customer_stream(ORG), 1, "2026-03-01T02:10:00Z", actor("stripe-sync"), None).current(event(
            StripeEvent::StripeCustomerLinked(StripeCustomerLinked {
                organization_id: ORG,
                customer_id: customer.into(),
            }),
        )),
        example(stripe::invoice_stream(SUBSCRIPTION, period), 1, "2026-03-01T02:10:04Z", actor("stripe-sync"), None)
            .current(event(StripeEvent::StripeInvoiceCreated(StripeInvoiceCreated {
                invoice_id: billing::invoice_id(SUBSCRIPTION, period),
                subscription_id: SUBSCRIPTION,
                organization_id: ORG,
                period,
                customer_id: customer.into(),
                stripe_invoice_id: "in_1R3kPzLmNoP4qRsT".into(),
                total: usd("18833.33"),
            }))),
    ];
    all.extend(stripe_sync());
    all
}

fn stripe_sync() -> Vec<Example> {
    let customer = "cus_RkT2m9XbQ1aZ";
    let method_stream = stripe::payment_method_stream(ORG);
    let event = LedgerEvent::Stripe;
    let checkout = Metadata {
        actor: Some("stripe".into()),
        correlation_id: Some("evt_1QzB7aLmNoP4qRsT".into()),
        ..Metadata::default()
    };
    vec![
        example(
            stripe::invoice_stream(SUBSCRIPTION, day("2026-01-01")),
            1,
            "2026-02-01T02:10:09Z",
            actor("stripe-sync"),
            None,
        )
        .current(event(StripeEvent::StripeSyncRefused(StripeSyncRefused {
            target: format!("invoice/{SUBSCRIPTION}:2026-01"),
            status: 400,
            message: "No such customer: 'cus_RkT2m9XbQ1aZ'".into(),
        }))),
        example(method_stream.clone(), 1, "2026-01-12T09:30:00Z", checkout, Some("stripe:evt_1QzB7aLmNoP4qRsT#3"))
            .current(event(StripeEvent::StripePaymentMethodSaved(StripePaymentMethodSaved {
                organization_id: ORG,
                customer_id: customer.into(),
                setup_intent_id: "seti_1QzB6xLmNoP4qRsT".into(),
            }))),
        example(method_stream, 2, "2026-01-12T09:30:05Z", actor("stripe-sync"), None).current(event(
            StripeEvent::StripeDefaultPaymentMethodSet(StripeDefaultPaymentMethodSet {
                organization_id: ORG,
                customer_id: customer.into(),
                payment_method_id: "pm_1QzB6yLmNoP4qRsT".into(),
            }),
        )),
        example(stripe::sync_started_stream(), 1, "2026-01-10T12:00:00Z", actor("stripe-sync"), None)
            .current(event(StripeEvent::StripeSyncStarted(StripeSyncStarted { from_sequence: 1822 }))),
    ]
}

/// Event types added since, each appended here.
fn later() -> Vec<Example> {
    let mut examples = vec![
        example(ORG.stream(), 9, "2027-01-20T10:00:00Z", member("admin", "req-0c0101"), Some("make-admin-viewer"))
            .current(LedgerEvent::Organization(OrganizationEvent::UserRoleChanged(UserRoleChanged {
                user_id: ADMIN,
                role: Role::Viewer,
            }))),
        example(branding::stream(ORG), 1, "2027-01-21T09:30:00Z", member("admin", "req-0c0102"), Some("brand-acme"))
            .current(LedgerEvent::Branding(BrandingEvent::BrandingSet(BrandingSet {
                organization_id: ORG,
                display_name: "Acme Cloud".into(),
                primary_color: "#1f6feb".into(),
                // A stand-in for the server's re-encoded PNG (its signature
                // and header's first bytes).
                logo: Some(Logo {
                    png: vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R'],
                    width: 120,
                    height: 40,
                }),
                at: at("2027-01-21T09:30:00Z"),
            }))),
        example(branding::stream(ORG), 2, "2027-01-22T16:05:00Z", member("admin", "req-0c0103"), None).current(
            LedgerEvent::Branding(BrandingEvent::BrandingRemoved(BrandingRemoved {
                organization_id: ORG,
                at: at("2027-01-22T16:05:00Z"),
            })),
        ),
        example(SUBSCRIPTION.stream(), 14, "2026-05-06T11:00:00Z", operator("req-18f101"), Some("operator:floating#0"))
            .current(LedgerEvent::Subscription(SubscriptionEvent::FloatingDeploymentsSet(FloatingDeploymentsSet {
                deployments: 2,
                heartbeat_interval_seconds: 600,
                lease_seconds: 3600,
            }))),
        example(LICENSE.stream(), 7, "2026-05-06T11:04:09Z", actor(&format!("license:{LICENSE}")), None).current(
            LedgerEvent::License(LicenseEvent::FloatingDeploymentLeased(FloatingDeploymentLeased {
                deployment_id: "pod-7f9c2".into(),
                at: at("2026-05-06T11:04:09.512Z"),
                slot_frees_at: at("2026-05-06T12:04:09.512Z"),
            })),
        ),
        example(LICENSE.stream(), 8, "2026-01-16T09:12:40Z", actor(&format!("license:{LICENSE}")), None).current(
            LedgerEvent::License(LicenseEvent::DeploymentKeyBound(DeploymentKeyBound {
                deployment_id: DEPLOYMENT.into(),
                public_key: "7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2NsFGFKyHN9E".into(),
            })),
        ),
        example(LICENSE.stream(), 9, "2026-01-18T14:30:05Z", member("admin", "req-0d1e22"), None).current(
            LedgerEvent::License(LicenseEvent::DeploymentKeyReset(DeploymentKeyReset {
                deployment_id: DEPLOYMENT.into(),
            })),
        ),
    ];
    examples.extend(air_gapped());
    examples.extend(secret_rotation_and_floating());
    examples.extend(billing_operations());
    examples
}

/// An air-gapped deployment's activation and usage import (issue 18).
fn air_gapped() -> Vec<Example> {
    vec![
        example(LICENSE.stream(), 10, "2026-01-20T09:00:00Z", member("admin", "req-0e1f01"), None).current(
            LedgerEvent::License(LicenseEvent::OfflineActivated(OfflineActivated {
                deployment_id: "vault-1".into(),
                public_key: "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w".into(),
                nonce: "Yk3q9vT1xA0rLm2s8dE4Hw".into(),
                client_time: at("2026-01-19T16:42:10.250Z"),
                activated_at: at("2026-01-20T09:00:00Z"),
                valid_until: at("2026-04-20T09:00:00Z"),
            })),
        ),
        example(LICENSE.stream(), 11, "2026-02-21T10:15:00Z", member("admin", "req-0e1f02"), None).current(
            LedgerEvent::License(LicenseEvent::OfflineUsageImported(OfflineUsageImported {
                deployment_id: "vault-1".into(),
                export_id: "QmX7c2Lr0pTz5wN8vK1yBg".into(),
                created_at: at("2026-02-20T17:00:03Z"),
                imported_at: at("2026-02-21T10:15:00Z"),
                days: 31,
            })),
        ),
    ]
}

/// The server secret's rotation and floating renewals (issue 18).
fn secret_rotation_and_floating() -> Vec<Example> {
    let checkpoint = StreamId::new(CHECKPOINT_STREAM).unwrap();
    let checkpoint2 = checkpoint.clone();
    let floating = actor(&format!("license:{LICENSE}"));
    vec![
        example(checkpoint, 320, "2027-02-01T08:00:00Z", actor("ledger keys rotate-secret"), Some("rotate-secret"))
            .current(LedgerEvent::Checkpoint(CheckpointEvent::ServerSecretRotated(ServerSecretRotated {
                old_secret_id: secret().id(),
                new_secret_id: next_secret().id(),
            }))),
        example(LICENSE.stream(), 12, "2027-02-01T09:00:00Z", actor("ledger keys retire-secret"), Some("rehash-key"))
            .current(LedgerEvent::License(LicenseEvent::LicenseKeyRehashed(LicenseKeyRehashed {
                key_hash: keys::license_key_hash(&next_secret(), "LK1-example"),
                secret_id: next_secret().id(),
            }))),
        example(ORG.stream(), 10, "2027-02-01T09:00:00Z", actor("ledger keys retire-secret"), Some("rehash-token"))
            .current(LedgerEvent::Organization(OrganizationEvent::ApiTokenRehashed(ApiTokenRehashed {
                token_id: TOKEN,
                token_hash: keys::api_token_hash(&next_secret(), &keys::api_token(&secret(), TOKEN)),
                secret_id: next_secret().id(),
            }))),
        example(validation::floating_stream(LICENSE, day("2026-05-06")), 1, "2026-05-06T11:34:10Z", floating, None)
            .current(LedgerEvent::Validation(ValidationEvent::FloatingLeaseExtended(FloatingLeaseExtended {
                license_id: LICENSE,
                deployment_id: "pod-7f9c2".into(),
                at: at("2026-05-06T11:34:10.020Z"),
                slot_frees_at: at("2026-05-06T12:34:10.020Z"),
            }))),
        example(checkpoint2, 321, "2027-02-01T09:00:01Z", actor("ledger keys retire-secret"), Some("retire-secret"))
            .current(LedgerEvent::Checkpoint(CheckpointEvent::ServerSecretRetired(ServerSecretRetired {
                secret_id: secret().id(),
                license_keys: 1,
                tokens: 1,
            }))),
    ]
}

/// Issue 15 part 2: voids and credit notes, and their copies in Stripe.
fn billing_operations() -> Vec<Example> {
    vec![
        // Issue 15 part 2: February's invoice voided by the billing team.
        example(
            billing::stream(SUBSCRIPTION, day("2026-02-01")),
            2,
            "2026-03-02T09:15:00Z",
            operator("req-15b201"),
            None,
        )
        .current(LedgerEvent::Invoice(InvoiceEvent::InvoiceVoided(billing::InvoiceVoided {
            invoice_id: billing::invoice_id(SUBSCRIPTION, day("2026-02-01")),
            subscription_id: SUBSCRIPTION,
            organization_id: ORG,
            period: day("2026-02-01"),
            reason: "data volume reported twice".into(),
        }))),
        example(
            billing::stream(SUBSCRIPTION, day("2026-01-01")),
            2,
            "2026-02-03T10:20:00Z",
            operator("req-15b202"),
            None,
        )
        .current(LedgerEvent::Invoice(InvoiceEvent::CreditNoteIssued(billing::CreditNoteIssued {
            credit_note_id: billing::credit_note_id(billing::invoice_id(SUBSCRIPTION, day("2026-01-01")), 1),
            invoice_id: billing::invoice_id(SUBSCRIPTION, day("2026-01-01")),
            subscription_id: SUBSCRIPTION,
            organization_id: ORG,
            period: day("2026-01-01"),
            number: 1,
            reason: "service outage on 14 January".into(),
            lines: vec![billing::CreditLine { description: "one day of service".into(), amount: usd("161.29") }],
            total: usd("161.29"),
        }))),
        example(
            stripe::void_stream(billing::invoice_id(SUBSCRIPTION, day("2026-02-01"))),
            1,
            "2026-03-02T09:15:04Z",
            actor("stripe-sync"),
            None,
        )
        .current(LedgerEvent::Stripe(StripeEvent::StripeInvoiceVoided(stripe::StripeInvoiceVoided {
            invoice_id: billing::invoice_id(SUBSCRIPTION, day("2026-02-01")),
            stripe_invoice_id: "in_1R3kPzLmNoP4qRsT".into(),
        }))),
        example(
            stripe::credit_note_stream(billing::credit_note_id(
                billing::invoice_id(SUBSCRIPTION, day("2026-01-01")),
                1,
            )),
            1,
            "2026-02-03T10:20:03Z",
            actor("stripe-sync"),
            None,
        )
        .current(LedgerEvent::Stripe(StripeEvent::StripeCreditNoteCreated(stripe::StripeCreditNoteCreated {
            credit_note_id: billing::credit_note_id(billing::invoice_id(SUBSCRIPTION, day("2026-01-01")), 1),
            invoice_id: billing::invoice_id(SUBSCRIPTION, day("2026-01-01")),
            stripe_invoice_id: "in_1QzB8cLmNoP4qRsT".into(),
            stripe_credit_note_id: "cn_1R4aB2LmNoP4qRsT".into(),
        }))),
    ]
    .into_iter()
    .chain(staff_examples())
    .chain(stripe_ops_examples())
    .chain(privacy_examples())
    .collect()
}

/// The staff directory's events (issue 15).
fn staff_examples() -> Vec<Example> {
    vec![
        example(staff::stream(), 1, "2027-02-01T09:00:00Z", operator("req-0f0101"), Some("operator:staff-1")).current(
            LedgerEvent::Staff(StaffEvent::StaffUserAdded(StaffUserAdded {
                staff_id: STAFF,
                name: "Ada Lovelace".into(),
                email: "ada@vendor.example".into(),
                role: StaffRole::Billing,
            })),
        ),
        example(staff::stream(), 2, "2027-02-02T10:15:00Z", staff_admin("req-0f0102"), None).old(
            "StaffRoleChanged",
            1,
            &StaffRoleChangedV1 { staff_id: STAFF, role: StaffRole::StaffAdmin },
            LedgerEvent::Staff(StaffEvent::StaffRoleChanged(StaffRoleChanged {
                staff_id: STAFF,
                role: StaffRole::StaffAdmin,
                at: at("1970-01-01T00:00:00Z"),
            })),
        ),
        example(staff::stream(), 3, "2027-02-03T08:00:00Z", staff_admin("req-0f0103"), Some("issue-ci-token")).current(
            LedgerEvent::Staff(StaffEvent::ServiceTokenIssued(ServiceTokenIssued {
                token_id: SERVICE_TOKEN,
                name: "nightly billing run".into(),
                role: StaffRole::Billing,
                token_hash: staff::service_token_hash(&secret(), &staff::service_token(&secret(), SERVICE_TOKEN)),
                expires_at: at("2027-08-03T08:00:00Z"),
            })),
        ),
        example(staff::stream(), 4, "2027-03-01T12:00:00Z", staff_admin("req-0f0104"), None).current(
            LedgerEvent::Staff(StaffEvent::ServiceTokenRevoked(ServiceTokenRevoked { token_id: SERVICE_TOKEN })),
        ),
        example(staff::stream(), 5, "2027-03-02T12:00:00Z", staff_admin("req-0f0105"), None)
            .current(LedgerEvent::Staff(StaffEvent::StaffUserDisabled(StaffUserDisabled { staff_id: STAFF }))),
        example(staff::stream(), 6, "2027-03-03T12:00:00Z", actor("ledger keys retire-secret"), Some("rehash-service"))
            .current(LedgerEvent::Staff(StaffEvent::ServiceTokenRehashed(ServiceTokenRehashed {
                token_id: SERVICE_TOKEN,
                token_hash: staff::service_token_hash(&next_secret(), &staff::service_token(&secret(), SERVICE_TOKEN)),
                secret_id: next_secret().id(),
            }))),
        example(staff::stream(), 7, "2027-03-04T09:30:00Z", staff_admin("req-0f0107"), None).current(
            LedgerEvent::Staff(StaffEvent::StaffRoleChanged(StaffRoleChanged {
                staff_id: STAFF,
                role: StaffRole::Auditor,
                at: at("2027-03-04T09:30:00Z"),
            })),
        ),
    ]
}

/// A staff user (issue 15).
const STAFF: StaffId = StaffId(uuid::uuid!("01972a00-0000-7000-8000-000000005a01"));
/// A service token (issue 15).
const SERVICE_TOKEN: ServiceTokenId = ServiceTokenId(uuid::uuid!("01972a00-0000-7000-8000-000000005b01"));

fn staff_admin(request: &str) -> Metadata {
    Metadata {
        actor: Some(format!("staff:{STAFF}:staff_admin")),
        correlation_id: Some(request.into()),
        source_ip: Some("198.51.100.24".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
    }
}

/// A refused Stripe sync retried by the billing team (issue 15 item 2).
fn stripe_ops_examples() -> Vec<Example> {
    vec![
        example(
            stripe::invoice_stream(SUBSCRIPTION, day("2026-01-01")),
            2,
            "2026-02-02T11:05:00Z",
            staff_admin("req-0f0150"),
            None,
        )
        .current(LedgerEvent::Stripe(StripeEvent::StripeSyncRetried(stripe::StripeSyncRetried {
            target: stripe::invoice_stream(SUBSCRIPTION, day("2026-01-01")).to_string(),
        }))),
    ]
}

/// A staff user's erasure and a retention run on `privacy/log` (issue 16):
/// Ada (disabled at sequence 67) erased on request — her `StaffUserAdded`
/// (sequence 63) keeps its facts, a record where she was only the actor
/// (sequence 66) keeps its payload; then the usage reports of March 2026
/// retired three years on.
fn privacy_examples() -> Vec<Example> {
    let ada_facts = ledger_domain::event::StoredEvent::encode_payload(&StaffEvent::StaffUserAdded(StaffUserAdded {
        staff_id: STAFF,
        name: privacy::ERASED_TEXT.into(),
        email: privacy::erased_email(&STAFF.0),
        role: StaffRole::Billing,
    }));
    vec![
        example(privacy::privacy_stream(), 1, "2027-03-05T10:00:00Z", operator("req-160101"), Some("erase-staff-ada"))
            .current(LedgerEvent::Privacy(PrivacyEvent::SubjectErased(SubjectErased {
                subject: Subject::Staff { staff_id: STAFF },
                reason: ErasureReason::Request,
                at: at("2027-03-05T10:00:00Z"),
                records: vec![
                    ErasedRecord { sequence: 63, facts: Some(ada_facts) },
                    ErasedRecord { sequence: 66, facts: None },
                ],
            }))),
        example(privacy::privacy_stream(), 2, "2029-03-04T02:00:00Z", actor("retention"), Some("retention:2029-03-04"))
            .current(LedgerEvent::Privacy(PrivacyEvent::RetentionApplied(RetentionApplied {
                at: at("2029-03-04T02:00:00Z"),
                usage_before: at("2026-03-04T00:00:00Z"),
                up_to_sequence: 71,
                usage_records: 1,
                keys_archived: 0,
                subscriptions_anonymized: 0,
            }))),
        example(privacy::privacy_stream(), 3, "2029-03-04T02:00:01Z", actor("retention"), None).current(
            LedgerEvent::Privacy(PrivacyEvent::LicenseKeysArchived(LicenseKeysArchived {
                at: at("2029-03-04T02:00:00Z"),
                expired_before: at("2028-03-04T02:00:00Z"),
                licenses: vec![LICENSE],
            })),
        ),
    ]
}
