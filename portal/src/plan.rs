//! The plan page (an organization's admins only): upgrade, downgrade at
//! the term's end, cancel at the term's end, an add-on at the catalog's
//! price. Each change is first previewed by the use case that decides it
//! with the confirming command's own rules (`subscriptions::preview`:
//! the day, the proration, the new limits, the month's invoice without and
//! with it), then confirmed. The forms post catalog ids only (a tier, an
//! add-on kind, a quantity): a price field is refused, never read.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use domain::OrganizationId;
use domain::catalog::Tier;
use domain::subscription::AddonKind;
use serde::Deserialize;
use usecases::subscriptions::{self as subs, AddonInput, CancelInput, ChangeInput, UpgradeInput};
use usecases::views::queries::SubscriptionDetails;
use usecases::views::subscriptions::ChangePreview;

use crate::pages::{Nav, context};
use crate::session::Signed;
use crate::{Portal, PortalError};

/// The most of one add-on bought at once (extra TB of data).
pub const ADDON_QUANTITY_MAX: u32 = 100;

/// The longest catalog id (a tier, an add-on kind) a form may post.
pub const CATALOG_ID_CHARS_MAX: usize = 32;

/// A change as the forms post it: catalog ids, never a price (a field
/// this does not name is refused).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeForm {
    #[serde(default)]
    csrf: String,
    /// `upgrade`, `downgrade`, `cancel` or `addon`.
    change: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    addon: String,
    #[serde(default)]
    quantity: Option<u32>,
}

impl ChangeForm {
    /// The use cases' change, checked (an add-on from today).
    fn input(&self, today: chrono::NaiveDate) -> Result<ChangeInput, PortalError> {
        if [&self.change, &self.tier, &self.addon].iter().any(|id| id.len() > CATALOG_ID_CHARS_MAX) {
            return Err(PortalError::Invalid("This is not a catalog id.".into()));
        }
        Ok(match self.change.as_str() {
            "upgrade" => ChangeInput::Upgrade(UpgradeInput {
                target_tier: subs::parse_tier(&self.tier)?,
                effective_date: None,
                addons: Vec::new(),
            }),
            "downgrade" => ChangeInput::Downgrade { target_tier: subs::parse_tier(&self.tier)? },
            "cancel" => ChangeInput::Cancel(CancelInput { immediate: false, effective_date: None }),
            "addon" => {
                let quantity = self.quantity.unwrap_or(1);
                if quantity == 0 || quantity > ADDON_QUANTITY_MAX {
                    return Err(PortalError::Invalid(format!("A quantity is 1 to {ADDON_QUANTITY_MAX}.")));
                }
                ChangeInput::Addon(AddonInput {
                    kind: subs::parse_addon_kind(&self.addon)?,
                    quantity,
                    annual_price: None,
                    one_time_price: None,
                    effective_date: Some(today),
                })
            }
            _ => return Err(PortalError::Invalid("Choose upgrade, downgrade, cancel or an add-on.".into())),
        })
    }
}

/// A tier to offer, with its catalog price and limits.
pub struct TierOption {
    pub id: &'static str,
    pub price: String,
    pub seats: String,
    pub data_gb: u64,
    pub api_calls: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "plan.html")]
pub struct PlanPage {
    nav: Nav,
    details: Option<SubscriptionDetails>,
    tiers: Vec<TierOption>,
    currency: String,
    /// The catalog's price of one extra TB a year for the current tier, if
    /// the catalog sets one.
    extra_tb_price: Option<String>,
    message: Option<String>,
}

fn tier_options(catalog: &domain::catalog::CatalogVersion) -> Vec<TierOption> {
    let unlimited = |n: Option<u64>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    Tier::ALL
        .iter()
        .map(|&tier| {
            let spec = catalog.tier(tier);
            TierOption {
                id: tier.as_str(),
                price: format!("{:.2}", spec.annual_price),
                seats: unlimited(spec.seats.map(u64::from)),
                data_gb: spec.data_gb,
                api_calls: unlimited(spec.api_calls_per_month),
            }
        })
        .collect()
}

/// Only an admin sees the plan: others are refused as the API refuses them.
pub(crate) fn admin(signed: &Signed, org: uuid::Uuid) -> Result<OrganizationId, PortalError> {
    let org = signed.organization(org)?;
    if signed.is_admin() { Ok(org) } else { Err(PortalError::Forbidden) }
}

async fn plan_page(portal: &Portal, signed: &Signed, message: Option<String>) -> Result<PlanPage, PortalError> {
    let org = signed.user.organization_id;
    let details = match usecases::queries::subscription(&portal.ledger, &signed.caller(), org).await {
        Ok(details) => Some(details),
        Err(usecases::Error::NotFound) => None,
        Err(other) => return Err(other.into()),
    };
    let catalog = portal.ledger.catalog.current(portal.ledger.today());
    let current = details.as_ref().and_then(|d| Tier::parse(d.tier));
    let extra_tb_price = current.and_then(|t| catalog.tier(t).extra_data_tb_annual_price).map(|p| format!("{p:.2}"));
    Ok(PlanPage {
        nav: Nav::of(signed, "plan"),
        details,
        tiers: tier_options(catalog),
        currency: catalog.currency.clone(),
        extra_tb_price,
        message,
    })
}

pub async fn plan(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
) -> Result<PlanPage, PortalError> {
    admin(&signed, org)?;
    plan_page(&portal, &signed, None).await
}

#[derive(Template, WebTemplate)]
#[template(path = "plan_preview.html")]
pub struct PreviewPage {
    nav: Nav,
    form: ChangeForm,
    preview: ChangePreview,
}

impl PreviewPage {
    fn limit(&self, value: &i64) -> String {
        if *value < 0 { "unlimited".into() } else { value.to_string() }
    }
}

/// What the change would do; nothing is appended.
pub async fn preview(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    Form(form): Form<ChangeForm>,
) -> Result<PreviewPage, PortalError> {
    signed.check_csrf(&form.csrf)?;
    let org = admin(&signed, org)?;
    let input = form.input(portal.ledger.today())?;
    let preview = subs::preview(&portal.ledger, &signed.caller(), org, input).await?;
    Ok(PreviewPage { nav: Nav::of(&signed, "plan"), form, preview })
}

/// An upgrade's answer: its new license key, shown this once.
#[derive(Template, WebTemplate)]
#[template(path = "plan_done.html")]
pub struct UpgradedPage {
    nav: Nav,
    tier: String,
    effective_date: String,
    prorated_amount: String,
    license_key: String,
}

/// Makes the previewed change. An upgrade answers its new key, once (the
/// page is not cached and the key is not kept for the portal to show
/// again); the others go back to the plan with what was done.
pub async fn confirm(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    Form(form): Form<ChangeForm>,
) -> Result<axum::response::Response, PortalError> {
    use axum::response::IntoResponse;
    signed.check_csrf(&form.csrf)?;
    let org = admin(&signed, org)?;
    let (ledger, caller, context) = (&portal.ledger, signed.caller(), context(&signed));
    let message = match form.input(ledger.today())? {
        ChangeInput::Upgrade(input) => {
            let tier = input.target_tier.as_str().to_owned();
            let done = subs::upgrade(ledger, &caller, &context, org, input).await?;
            let page = UpgradedPage {
                nav: Nav::of(&signed, "plan"),
                tier,
                effective_date: done.effective_date.to_string(),
                prorated_amount: done.prorated_amount.text(),
                license_key: done.new_license_key,
            };
            return Ok(page.into_response());
        }
        ChangeInput::Downgrade { target_tier } => {
            let done = subs::downgrade(ledger, &caller, &context, org, target_tier).await?;
            format!("The downgrade to {} takes effect on {}.", target_tier.as_str(), done.effective_date)
        }
        ChangeInput::Cancel(input) => {
            let done = subs::cancel(ledger, &caller, &context, org, input).await?;
            format!("The subscription ends on {}: auto-renewal is off.", done.effective_date)
        }
        ChangeInput::Addon(input) => {
            let (kind, quantity) = (input.kind, input.quantity);
            subs::add_addon(ledger, &caller, &context, org, input).await?;
            format!("Added {quantity} × {}.", addon_name(kind))
        }
    };
    Ok(plan_page(&portal, &signed, Some(message)).await?.into_response())
}

pub fn addon_name(kind: AddonKind) -> &'static str {
    match kind {
        AddonKind::ExtraDataTb => "extra TB of data",
        AddonKind::CustomModule => "custom module",
        AddonKind::TrainingSession => "training session",
        AddonKind::DedicatedSupport => "dedicated support",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(change: &str, tier: &str, quantity: Option<u32>) -> ChangeForm {
        ChangeForm {
            csrf: String::new(),
            change: change.into(),
            tier: tier.into(),
            addon: "extra_data_tb".into(),
            quantity,
        }
    }

    #[test]
    fn forms_become_changes_at_catalog_prices_only() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 10).unwrap();
        let Ok(ChangeInput::Addon(addon)) = form("addon", "", Some(2)).input(today) else { panic!("an add-on") };
        assert_eq!((addon.quantity, addon.annual_price, addon.one_time_price), (2, None, None));
        assert_eq!(addon.effective_date, Some(today));
        assert!(matches!(form("upgrade", "professional", None).input(today), Ok(ChangeInput::Upgrade(_))));
        assert!(form("upgrade", "platinum", None).input(today).is_err(), "an unknown tier");
        assert!(form("addon", "", Some(0)).input(today).is_err());
        assert!(form("addon", "", Some(ADDON_QUANTITY_MAX + 1)).input(today).is_err());
        assert!(form("refund", "", None).input(today).is_err());
        let long = "p".repeat(CATALOG_ID_CHARS_MAX + 1);
        let Err(PortalError::Invalid(why)) = form("upgrade", &long, None).input(today) else { panic!("a long id") };
        assert!(!why.contains(&long), "not echoed back");
        let priced: Result<ChangeForm, _> =
            serde_urlencoded::from_str("csrf=x&change=addon&addon=extra_data_tb&annual_price=1");
        assert!(priced.is_err(), "a price is refused, not ignored");
    }
}
