//! The catalog: tiers, their prices and limits, as versioned data.
//!
//! A price change is a new catalog version (a new file in
//! `domain/catalog/`), never an edit: a subscription keeps the version it
//! was priced with until it renews (BILLING-RULES.md, "Catalog").

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The tiers, in upgrade order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Starter,
    Professional,
    Enterprise,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Starter, Tier::Professional, Tier::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Starter => "starter",
            Tier::Professional => "professional",
            Tier::Enterprise => "enterprise",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tier| tier.as_str() == text)
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tier of one catalog version. `None` limits are unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierSpec {
    pub tier: Tier,
    pub annual_price: Decimal,
    pub seats: Option<u32>,
    pub data_gb: u64,
    pub api_calls_per_month: Option<u64>,
    pub model_size: String,
    pub features: Vec<String>,
    pub support: String,
    pub sla: String,
    pub training_sessions: String,
    /// Per started TB over the data limit, per month.
    pub overage_rate_per_tb: Decimal,
    /// Per extra TB per year; `None` means the contract sets it.
    pub extra_data_tb_annual_price: Option<Decimal>,
}

/// One version of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogVersion {
    pub version: u32,
    pub effective: NaiveDate,
    pub currency: String,
    pub tiers: Vec<TierSpec>,
}

impl CatalogVersion {
    pub fn tier(&self, tier: Tier) -> &TierSpec {
        self.tiers.iter().find(|spec| spec.tier == tier).expect("a catalog version lists every tier")
    }
}

/// Every catalog version the ledger knows.
#[derive(Debug, Clone)]
pub struct Catalog {
    versions: BTreeMap<u32, CatalogVersion>,
}

/// The catalog files compiled into the binary, oldest first.
const VERSIONS: &[&str] = &[include_str!("../catalog/v1.json")];

impl Catalog {
    /// The built-in catalog. Its files are checked by a test, so a broken
    /// file fails the build's tests, not a server start.
    pub fn builtin() -> Self {
        let versions = VERSIONS
            .iter()
            .map(|text| {
                let version: CatalogVersion = serde_json::from_str(text).expect("built-in catalog files parse");
                (version.version, version)
            })
            .collect();
        Self { versions }
    }

    pub fn version(&self, version: u32) -> Option<&CatalogVersion> {
        self.versions.get(&version)
    }

    /// The version in effect on `date`: the newest whose effective date is
    /// on or before it.
    pub fn current(&self, date: NaiveDate) -> &CatalogVersion {
        self.versions
            .values()
            .rev()
            .find(|version| version.effective <= date)
            .unwrap_or_else(|| self.versions.values().next().expect("at least one catalog version"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn version_1_is_the_billing_rules_table() {
        let catalog = Catalog::builtin();
        let v1 = catalog.version(1).unwrap();
        assert_eq!(v1.effective, NaiveDate::from_ymd_opt(2025, 1, 20).unwrap());
        let row = |tier| {
            let spec = v1.tier(tier);
            (spec.annual_price, spec.seats, spec.data_gb, spec.api_calls_per_month, spec.model_size.as_str())
        };
        let d = |text| Decimal::from_str(text).unwrap();
        assert_eq!(row(Tier::Starter), (d("30000"), Some(5), 1000, Some(10_000), "small"));
        assert_eq!(row(Tier::Professional), (d("60000"), Some(10), 3000, Some(50_000), "medium"));
        assert_eq!(row(Tier::Enterprise), (d("120000"), None, 5000, None, "large"));
        assert!(v1.tier(Tier::Enterprise).features.contains(&"white_labeling".to_owned()));
        assert!(!v1.tier(Tier::Professional).features.contains(&"white_labeling".to_owned()));
        assert_eq!(v1.tier(Tier::Starter).overage_rate_per_tb, d("5000"));
        assert_eq!(v1.tier(Tier::Enterprise).extra_data_tb_annual_price, None);
        assert_eq!(catalog.current(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()).version, 1);
    }

    #[test]
    fn tiers_order_and_parse() {
        assert!(Tier::Starter < Tier::Professional && Tier::Professional < Tier::Enterprise);
        assert_eq!(Tier::parse("professional"), Some(Tier::Professional));
        assert_eq!(Tier::parse("Professional"), None);
    }
}
