//! The console's pages: the organizations (support and up), the staff
//! (staff admins); the analytics are in `analytics.rs`. Each acts through
//! the use cases as `Caller::Staff`.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use domain::Metadata;
use domain::staff::{StaffId, StaffPermission, StaffRole};
use serde::Deserialize;
use usecases::command::Context;
use usecases::staff::{AddStaffInput, StaffChange, parse_staff_role};

use super::{ConsoleError, StaffSigned, forbidden};
use crate::Portal;

/// What the console's navigation shows.
pub struct Nav {
    pub(super) active: &'static str,
    pub(super) csrf: String,
    pub(super) name: String,
    pub(super) role: &'static str,
    pub(super) manage_staff: bool,
    /// The Billing runs and Stripe pages (billing and staff admins).
    pub(super) billing_ops: bool,
}

pub(super) fn nav(signed: &StaffSigned, active: &'static str) -> Nav {
    Nav {
        active,
        csrf: signed.csrf.clone(),
        name: signed.staff.name.clone(),
        role: signed.staff.role.as_str(),
        manage_staff: signed.may(StaffPermission::ManageStaff),
        billing_ops: signed.may(StaffPermission::BillingOps),
    }
}

/// A console command's context: the staff user is the actor.
pub(super) fn context(signed: &StaffSigned) -> Context {
    let caller = signed.staff.caller();
    Context {
        metadata: Metadata {
            actor: Some(caller.actor()),
            correlation_id: None,
            source_ip: Some(signed.address.clone()),
            user_agent: Some(signed.session.user_agent.clone()),
        },
        idempotency: None,
        credential: Some(caller.credential()),
    }
}

pub struct OrganizationLine {
    id: String,
    name: String,
    created: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/home.html")]
pub struct HomePage {
    nav: Nav,
    organizations: Vec<OrganizationLine>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct PageQuery {
    cursor: Option<String>,
}

/// The organizations, a page at a time (support and up).
pub async fn home(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Query(query): Query<PageQuery>,
) -> Result<Response, ConsoleError> {
    let caller = signed.staff.caller();
    let cursor = query.cursor.as_deref().filter(|c| !c.is_empty() && c.len() <= 64);
    let page = usecases::queries::organizations(&portal.ledger, &caller, None, cursor).await?;
    let organizations = page
        .items
        .into_iter()
        .map(|o| OrganizationLine { id: o.id.to_string(), name: o.name, created: o.created_at.to_rfc3339() })
        .collect();
    let next = page.next_cursor.map(|id| id.to_string());
    Ok(HomePage { nav: nav(&signed, "home"), organizations, next }.into_response())
}

pub struct StaffLine {
    id: String,
    name: String,
    email: String,
    role: String,
    active: bool,
    me: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/staff.html")]
pub struct StaffPage {
    nav: Nav,
    staff: Vec<StaffLine>,
    roles: Vec<&'static str>,
    message: Option<String>,
}

async fn staff_page(portal: &Portal, signed: &StaffSigned, message: Option<String>) -> Result<Response, ConsoleError> {
    let list = usecases::staff::list_staff(&portal.ledger, &signed.staff.caller()).await?;
    let me = signed.staff.staff_id.0;
    let staff = list
        .items
        .into_iter()
        .map(|s| StaffLine {
            me: s.id == me,
            id: s.id.to_string(),
            name: s.name,
            email: s.email,
            role: s.role,
            active: s.active,
        })
        .collect();
    let roles = StaffRole::ALL.iter().map(|r| r.as_str()).collect();
    Ok(StaffPage { nav: nav(signed, "staff"), staff, roles, message }.into_response())
}

/// The staff users, with the forms that change them (staff admins).
pub async fn staff(State(portal): State<Arc<Portal>>, signed: StaffSigned) -> Result<Response, ConsoleError> {
    if !signed.may(StaffPermission::ManageStaff) {
        return Err(forbidden());
    }
    staff_page(&portal, &signed, None).await
}

#[derive(Deserialize)]
pub struct AddStaffForm {
    name: String,
    email: String,
    role: String,
    #[serde(default)]
    csrf: String,
}

pub async fn add_staff(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Form(form): Form<AddStaffForm>,
) -> Result<Response, ConsoleError> {
    signed.check_csrf(&form.csrf)?;
    let input = AddStaffInput { name: form.name, email: form.email, role: parse_staff_role(&form.role)? };
    let caller = signed.staff.caller();
    let added = usecases::staff::add_staff(&portal.ledger, &caller, &context(&signed), input).await?;
    usecases::acknowledged::catch_up(&portal.ledger, Some(caller.credential()), Some(added.sequence)).await?;
    staff_page(&portal, &signed, Some("The staff user was added.".into())).await
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
    #[serde(default)]
    csrf: String,
}

pub async fn change_role(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Path(staff_id): Path<uuid::Uuid>,
    Form(form): Form<RoleForm>,
) -> Result<Response, ConsoleError> {
    signed.check_csrf(&form.csrf)?;
    let change = StaffChange::Role(parse_staff_role(&form.role)?);
    changed(&portal, &signed, StaffId(staff_id), change, "The role was changed.").await
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn disable(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Path(staff_id): Path<uuid::Uuid>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ConsoleError> {
    signed.check_csrf(&form.csrf)?;
    changed(&portal, &signed, StaffId(staff_id), StaffChange::Disable, "The staff user was disabled.").await
}

async fn changed(
    portal: &Portal,
    signed: &StaffSigned,
    staff_id: StaffId,
    change: StaffChange,
    message: &str,
) -> Result<Response, ConsoleError> {
    let caller = signed.staff.caller();
    let done = usecases::staff::change_staff(&portal.ledger, &caller, &context(signed), staff_id, change).await?;
    usecases::acknowledged::catch_up(&portal.ledger, Some(caller.credential()), Some(done.sequence)).await?;
    staff_page(portal, signed, Some(message.into())).await
}
