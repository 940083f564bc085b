//! The console's customer pages (issue 15 part 2): the search (support and
//! up, the auditor too), one customer's page (its users, licenses,
//! subscription, invoices and whole timeline, a page at a time), and the
//! resend of a user's invitation or sign-in e-mail (support and up, not
//! the auditor). Each reads through the use cases as `Caller::Staff`.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use domain::organization::Role;
use domain::staff::StaffPermission;
use domain::{OrganizationId, UserId};
use projections::models::customers::QUERY_CHARS_MAX;
use serde::Deserialize;
use usecases::views::billing::Invoice;

use super::pages::{Nav, context, nav};
use super::{ConsoleError, StaffSigned, forbidden};
use crate::invoices::status_text;
use crate::{Portal, PortalError};

pub struct CustomerLine {
    id: String,
    name: String,
    domain: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/customers.html")]
pub struct CustomersPage {
    nav: Nav,
    q: String,
    searched: bool,
    customers: Vec<CustomerLine>,
    more: bool,
    query_chars_max: usize,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

/// The search form and, with `q`, what it found (support and up).
pub async fn search(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Query(query): Query<SearchQuery>,
) -> Result<Response, ConsoleError> {
    if !signed.may(StaffPermission::ReadCustomers) {
        return Err(forbidden());
    }
    let q = query.q.unwrap_or_default();
    let (mut customers, mut more) = (Vec::new(), false);
    if !q.trim().is_empty() {
        let page = usecases::customers::search(&portal.ledger, &signed.staff.caller(), &q, None).await?;
        more = page.more;
        customers = page
            .items
            .into_iter()
            .map(|o| CustomerLine { id: o.id.to_string(), name: o.name, domain: o.domain.unwrap_or_default() })
            .collect();
    }
    let searched = !q.trim().is_empty();
    let page = CustomersPage {
        nav: nav(&signed, "customers"),
        q,
        searched,
        customers,
        more,
        query_chars_max: QUERY_CHARS_MAX,
    };
    Ok(page.into_response())
}

pub struct UserLine {
    id: String,
    email: String,
    role: &'static str,
    active: bool,
}

pub struct LicenseLine {
    id: String,
    status: &'static str,
    tier: &'static str,
    deployments: usize,
}

pub struct InvoiceLine {
    id: String,
    period: String,
    total: String,
    status: &'static str,
    credited: String,
}

pub struct TimelineLine {
    sequence: u64,
    recorded: String,
    kind: &'static str,
    event_type: String,
    actor: String,
}

/// The subscription's lines the page shows.
pub struct SubscriptionLine {
    tier: &'static str,
    status: &'static str,
    amount_due: String,
    amount_overdue: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/customer.html")]
pub struct CustomerPage {
    nav: Nav,
    id: String,
    name: String,
    users: Vec<UserLine>,
    licenses: Vec<LicenseLine>,
    subscription: Option<SubscriptionLine>,
    invoices: Vec<InvoiceLine>,
    timeline: Vec<TimelineLine>,
    next: Option<u64>,
    resend: bool,
    message: Option<String>,
}

#[derive(Deserialize)]
pub struct TimelineQuery {
    cursor: Option<u64>,
}

fn invoice_line(invoice: Invoice) -> InvoiceLine {
    InvoiceLine {
        id: invoice.id.to_string(),
        period: invoice.period,
        total: format!("{} {}", invoice.total.text(), invoice.currency),
        status: status_text(invoice.status),
        credited: invoice.credited.map(|c| c.text()).unwrap_or_default(),
    }
}

/// The customer's page; `cursor` pages its timeline.
async fn customer_page(
    portal: &Portal,
    signed: &StaffSigned,
    org: OrganizationId,
    cursor: Option<u64>,
    message: Option<String>,
) -> Result<CustomerPage, ConsoleError> {
    let (ledger, caller) = (&portal.ledger, signed.staff.caller());
    let timeline = usecases::customers::timeline(ledger, &caller, org, cursor, None).await?;
    let name = usecases::branding::shown_name(ledger, org).await.map_err(usecases::Error::from)?.unwrap_or_default();
    let users = usecases::resend::users(ledger, &caller, org).await?;
    let users = users
        .into_iter()
        .map(|u| UserLine {
            id: u.user_id.to_string(),
            email: u.email,
            role: u.role.map_or("—", Role::as_str),
            active: u.active,
        })
        .collect();
    let licenses = usecases::queries::licenses(ledger, &caller, org).await?;
    let licenses = licenses
        .into_iter()
        .map(|l| LicenseLine {
            id: l.id.to_string(),
            status: l.status,
            tier: l.tier.unwrap_or("—"),
            deployments: l.deployments.len(),
        })
        .collect();
    let subscription = match usecases::queries::subscription(ledger, &caller, org).await {
        Ok(s) => Some(SubscriptionLine {
            tier: s.tier,
            status: s.status,
            amount_due: s.billing.amount_due.text(),
            amount_overdue: s.billing.amount_overdue.text(),
        }),
        Err(usecases::Error::NotFound) => None,
        Err(other) => return Err(other.into()),
    };
    let invoices = usecases::billing::invoices(ledger, &caller, org).await?.into_iter().map(invoice_line).collect();
    let timeline_lines = timeline
        .items
        .into_iter()
        .map(|t| TimelineLine {
            sequence: t.entry.sequence,
            recorded: t.entry.recorded_at.to_rfc3339(),
            kind: t.kind,
            event_type: t.entry.event_type,
            actor: t.entry.actor.unwrap_or_default(),
        })
        .collect();
    Ok(CustomerPage {
        nav: nav(signed, "customers"),
        id: org.to_string(),
        name,
        users,
        licenses,
        subscription,
        invoices,
        timeline: timeline_lines,
        next: timeline.next_cursor,
        resend: usecases::resend::may_resend(&caller) && portal.mails(),
        message,
    })
}

/// One customer (support and up, the auditor too).
pub async fn customer(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Path(org): Path<uuid::Uuid>,
    Query(query): Query<TimelineQuery>,
) -> Result<Response, ConsoleError> {
    Ok(customer_page(&portal, &signed, OrganizationId(org), query.cursor, None).await?.into_response())
}

#[derive(Deserialize)]
pub struct ResendForm {
    kind: String,
    #[serde(default)]
    csrf: String,
}

/// Resends a user's invitation or a sign-in e-mail (support and up).
pub async fn resend(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Path((org, user)): Path<(uuid::Uuid, uuid::Uuid)>,
    Form(form): Form<ResendForm>,
) -> Result<Response, ConsoleError> {
    signed.check_csrf(&form.csrf)?;
    let kind = usecases::resend::parse_kind(&form.kind)?;
    let caller = signed.staff.caller();
    let org = OrganizationId(org);
    let metadata = context(&signed).metadata;
    let sequence = portal.resend(&caller, &metadata, (org, UserId(user)), kind).await.map_err(PortalError::from)?;
    usecases::acknowledged::catch_up(&portal.ledger, Some(caller.credential()), Some(sequence)).await?;
    let what = match kind {
        usecases::resend::ResendKind::Invitation => "The invitation was sent again.",
        usecases::resend::ResendKind::SignIn => "A sign-in e-mail was sent.",
    };
    Ok(customer_page(&portal, &signed, org, None, Some(what.into())).await?.into_response())
}
