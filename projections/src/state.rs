//! The ledger's current state, as queries need it.
//!
//! It holds the aggregates' own states (applied by their `apply`, so the
//! read side and the deciding side cannot drift apart) plus what queries
//! need beyond them. Maps are ordered, so the encoded state, and with it
//! the digest that `replay verify` compares, is deterministic.

use std::collections::BTreeMap;

use cqrs_es::Aggregate;
use domain::billing::{InvoiceEvent, InvoiceIssued};
use domain::event::LedgerEvent;
use domain::license::{License, LicenseEvent, ValidationCode};
use domain::organization::{Organization, OrganizationCreated, OrganizationEvent, Role};
use domain::record::{Hash, Record};
use domain::subscription::{Subscription, SubscriptionEvent};
use domain::usage::{Usage, UsageEvent};
use domain::validation::ValidationEvent;
use domain::{LicenseId, Metadata, OrganizationId, SubscriptionId, Timestamp, TokenId};
use serde::{Deserialize, Serialize};

/// An organization: its creation details, its aggregate state, and what
/// belongs to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrganizationEntry {
    pub created: OrganizationCreated,
    pub created_at: Timestamp,
    pub state: Organization,
    pub subscriptions: Vec<SubscriptionId>,
    pub licenses: Vec<LicenseId>,
}

/// An API token, for authenticating requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenEntry {
    pub organization_id: OrganizationId,
    pub role: Role,
    pub token_hash: Hash,
    pub revoked: bool,
}

/// One line of the audit trail: who did what, when, to which stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub sequence: u64,
    pub recorded_at: Timestamp,
    pub occurred_at: Timestamp,
    pub stream_id: String,
    pub event_type: String,
    pub organization_id: Option<OrganizationId>,
    pub actor: Option<String>,
    pub source_ip: Option<String>,
    pub leaf_hash: Hash,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerState {
    /// The last sequence applied.
    pub sequence: u64,
    pub organizations: BTreeMap<OrganizationId, OrganizationEntry>,
    pub subscriptions: BTreeMap<SubscriptionId, Subscription>,
    pub licenses: BTreeMap<LicenseId, License>,
    /// Each license key's keyed hash, to find a presented key's license.
    pub license_keys: BTreeMap<Hash, LicenseId>,
    pub tokens: BTreeMap<TokenId, TokenEntry>,
    /// Per license: how often and when it was last validated (the seed's
    /// `validation_count` and `last_validated_at`).
    pub validations: BTreeMap<LicenseId, ValidationStats>,
    /// Per subscription: the latest report per day and deployment.
    pub usage: BTreeMap<SubscriptionId, Usage>,
    /// Per subscription: its issued invoices, by month.
    pub invoices: BTreeMap<SubscriptionId, BTreeMap<chrono::NaiveDate, InvoiceIssued>>,
    pub audit: Vec<AuditEntry>,
    /// What is still to be done with Stripe (`domain::stripe`).
    pub stripe: domain::stripe::StripeOutbox,
    /// Each invoice's payment status and each organization's payment
    /// method (`models::payments`, the same fold as the tables'). Derived
    /// and left out of the encoding, so the digest, and a snapshot an
    /// older version wrote, stay as they were.
    #[serde(skip)]
    pub payments: crate::models::payments::Payments,
    /// The voided invoices by id, as issued, with their voids (left out of
    /// the encoding, as `payments`; the void also takes the invoice out of
    /// `invoices`).
    #[serde(skip)]
    pub voided: BTreeMap<uuid::Uuid, crate::models::invoices::Voided>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidationStats {
    pub count: u64,
    pub last_at: Option<Timestamp>,
    pub last_code: Option<ValidationCode>,
    pub last_deployment: Option<String>,
}

impl LedgerState {
    /// An issued invoice is in force for its month; a void takes it out
    /// (kept in `voided`). Credit notes change neither.
    fn apply_invoice(&mut self, event: InvoiceEvent) -> Option<OrganizationId> {
        match event {
            InvoiceEvent::InvoiceIssued(invoice) => {
                let organization_id = invoice.organization_id;
                self.invoices.entry(invoice.subscription_id).or_default().insert(invoice.invoice.period, invoice);
                Some(organization_id)
            }
            InvoiceEvent::InvoiceVoided(voided) => {
                let organization_id = voided.organization_id;
                let months = self.invoices.entry(voided.subscription_id).or_default();
                if months.get(&voided.period).is_some_and(|i| i.invoice_id == voided.invoice_id)
                    && let Some(issued) = months.remove(&voided.period)
                {
                    self.voided.insert(voided.invoice_id, crate::models::invoices::Voided { issued, voided });
                }
                Some(organization_id)
            }
            _ => None,
        }
    }

    /// Applies one record. Records must come in global order, each once.
    pub fn apply(&mut self, record: &Record, event: Option<LedgerEvent>) {
        assert_eq!(record.header.sequence, self.sequence + 1, "projections apply the log in order, each record once");
        self.sequence = record.header.sequence;
        // Entity streams are named by UUIDs (validation streams carry their
        // license in the event); an event on any other name was not written
        // by this ledger and changes nothing but the audit list.
        // Only the entity categories are parsed: a failed UUID parse builds
        // an error, which was a tenth of `replay verify`'s time on usage.
        let id = match record.header.stream_id.category() {
            "org" | "subscription" | "license" => {
                record.header.stream_id.as_str().split_once('/').and_then(|(_, id)| id.parse::<uuid::Uuid>().ok())
            }
            _ => None,
        };
        if let Some(event) = &event {
            self.stripe.apply(record.header.sequence, event);
        }
        self.payments.apply(event.as_ref());
        let decoded = event.is_some();
        let organization_id = match (event, id) {
            (Some(LedgerEvent::Organization(event)), Some(id)) => {
                Some(self.apply_organization(OrganizationId(id), record, event))
            }
            (Some(LedgerEvent::Subscription(event)), Some(id)) => self.apply_subscription(SubscriptionId(id), event),
            (Some(LedgerEvent::License(event)), Some(id)) => self.apply_license(LicenseId(id), event),
            (Some(LedgerEvent::Validation(ValidationEvent::LicenseValidated(validated))), _) => {
                let stats = self.validations.entry(validated.license_id).or_default();
                stats.count += 1;
                stats.last_at = Some(validated.at);
                stats.last_code = Some(validated.code);
                stats.last_deployment = Some(validated.deployment_id);
                self.licenses.get(&validated.license_id).and_then(|l| l.issued.as_ref()).map(|i| i.organization_id)
            }
            (Some(LedgerEvent::Validation(ValidationEvent::FloatingLeaseExtended(extended))), _) => {
                let license = self.licenses.get_mut(&extended.license_id);
                license.and_then(|license| {
                    license.extend_floating(&extended);
                    license.issued.as_ref().map(|i| i.organization_id)
                })
            }
            (Some(LedgerEvent::Invoice(event)), _) => self.apply_invoice(event),
            (Some(LedgerEvent::Usage(UsageEvent::UsageReported(report))), _) => {
                self.usage.entry(report.subscription_id).or_default().apply(&report, record.header.sequence);
                self.subscriptions.get(&report.subscription_id).and_then(|s| s.organization_id)
            }
            (Some(LedgerEvent::Branding(event)), _) => Some(crate::models::branding::organization_of(&event)),
            _ => None,
        };
        let mut metadata =
            record.metadata.as_deref().and_then(|bytes| Metadata::decode(bytes).ok()).unwrap_or_default();
        let mut organization_id = organization_id;
        if !decoded && let Some(facts) = crate::models::audit::session_facts(record) {
            organization_id = Some(facts.organization_id);
            facts.complete(&mut metadata);
        }
        self.audit.push(AuditEntry {
            sequence: record.header.sequence,
            recorded_at: record.header.recorded_at,
            occurred_at: record.header.occurred_at,
            stream_id: record.header.stream_id.to_string(),
            event_type: record.header.event_type.clone(),
            organization_id,
            actor: metadata.actor,
            source_ip: metadata.source_ip,
            leaf_hash: record.leaf_hash,
        });
    }

    fn apply_organization(&mut self, id: OrganizationId, record: &Record, event: OrganizationEvent) -> OrganizationId {
        match &event {
            OrganizationEvent::OrganizationCreated(created) => {
                self.organizations.insert(
                    id,
                    OrganizationEntry {
                        created: created.clone(),
                        created_at: record.header.recorded_at,
                        state: Organization::default(),
                        subscriptions: Vec::new(),
                        licenses: Vec::new(),
                    },
                );
            }
            OrganizationEvent::ApiTokenIssued(issued) => {
                self.tokens.insert(
                    issued.token_id,
                    TokenEntry {
                        organization_id: id,
                        role: issued.role,
                        token_hash: issued.token_hash,
                        revoked: false,
                    },
                );
            }
            OrganizationEvent::ApiTokenRehashed(rehashed) => {
                if let Some(token) = self.tokens.get_mut(&rehashed.token_id) {
                    token.token_hash = rehashed.token_hash;
                }
            }
            OrganizationEvent::ApiTokenRevoked(revoked) => {
                if let Some(token) = self.tokens.get_mut(&revoked.token_id) {
                    token.revoked = true;
                }
            }
            _ => {}
        }
        if let Some(entry) = self.organizations.get_mut(&id) {
            entry.state.apply(event);
        }
        id
    }

    fn apply_subscription(&mut self, id: SubscriptionId, event: SubscriptionEvent) -> Option<OrganizationId> {
        if let SubscriptionEvent::SubscriptionCreated(created) = &event
            && let Some(entry) = self.organizations.get_mut(&created.organization_id)
        {
            entry.subscriptions.push(id);
        }
        let subscription = self.subscriptions.entry(id).or_default();
        subscription.apply(event);
        subscription.organization_id
    }

    fn apply_license(&mut self, id: LicenseId, event: LicenseEvent) -> Option<OrganizationId> {
        if let LicenseEvent::LicenseIssued(issued) = &event
            && let Some(entry) = self.organizations.get_mut(&issued.organization_id)
        {
            entry.licenses.push(id);
        }
        if let LicenseEvent::LicenseIssued(issued) = &event {
            self.license_keys.insert(issued.key_hash, id);
        }
        if let LicenseEvent::LicenseKeyRehashed(rehashed) = &event {
            if let Some(issued) = self.licenses.get(&id).and_then(|l| l.issued.as_ref()) {
                self.license_keys.remove(&issued.key_hash);
            }
            self.license_keys.insert(rehashed.key_hash, id);
        }
        let license = self.licenses.entry(id).or_default();
        license.apply(event);
        license.issued.as_ref().map(|issued| issued.organization_id)
    }

    /// The live subscription of an organization, if any.
    pub fn live_subscription(&self, organization_id: OrganizationId) -> Option<(SubscriptionId, &Subscription)> {
        let entry = self.organizations.get(&organization_id)?;
        let id = entry.state.live_subscription?;
        Some((id, self.subscriptions.get(&id)?))
    }

    /// The most recent subscription of an organization, live or not.
    pub fn latest_subscription(&self, organization_id: OrganizationId) -> Option<(SubscriptionId, &Subscription)> {
        let entry = self.organizations.get(&organization_id)?;
        let id = *entry.subscriptions.last()?;
        Some((id, self.subscriptions.get(&id)?))
    }

    /// The state's canonical bytes and their digest.
    pub fn encode(&self) -> (Vec<u8>, Hash) {
        let bytes = domain::codec::encode(self);
        let digest = Hash(*blake3::Hasher::new_derive_key(DIGEST_CONTEXT).update(&bytes).finalize().as_bytes());
        (bytes, digest)
    }
}

const DIGEST_CONTEXT: &str = "ledger 2026-11-29 projection state digest v1";
