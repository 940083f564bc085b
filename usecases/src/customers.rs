//! Customers (issue 15 part 2), for the vendor's staff (operator, auditor):
//! search by name, e-mail domain or id ([`search`]), and one customer's
//! timeline ([`timeline`]: its events, invoices, payments and dunning, a
//! page at a time by sequence, from the audit index).

use domain::OrganizationId;
use domain::staff::StaffPermission;
use projections::models::audit::{self as audit_model, AuditQuery};
use projections::models::customers::{self as customer_model, QUERY_CHARS_MAX, domain_key};
use projections::models::organizations as organization_model;

use crate::queries::page_size;
use crate::views::customers::{CustomerPage, Timeline, TimelineEntry};
use crate::views::queries::{AuditEntryView, OrganizationView};
use crate::{Caller, Error, Ledger};

/// What a search text asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// An organization id.
    Id(OrganizationId),
    /// An e-mail domain (`@example.com` or `someone@example.com`): that
    /// domain exactly.
    Domain(String),
    /// Anything else: the start of a word of the name, or of a domain.
    Text(String),
}

/// Parses `q`: 1 to [`QUERY_CHARS_MAX`] characters after trimming.
pub fn parse(q: &str) -> Result<Search, Error> {
    let q = q.trim();
    if q.is_empty() || q.chars().count() > QUERY_CHARS_MAX || q.chars().any(char::is_control) {
        return Err(Error::Validation(format!("q must be 1 to {QUERY_CHARS_MAX} characters")));
    }
    if let Ok(id) = q.parse::<uuid::Uuid>() {
        return Ok(Search::Id(OrganizationId(id)));
    }
    if q.contains('@') {
        let key = domain_key(q).ok_or_else(|| Error::Validation("an e-mail domain follows the @".into()))?;
        return Ok(Search::Domain(key));
    }
    Ok(Search::Text(q.to_lowercase()))
}

/// The organizations `q` finds, at most `limit` (default and bounds as
/// every page), name matches first.
pub async fn search(ledger: &Ledger, caller: &Caller, q: &str, limit: Option<usize>) -> Result<CustomerPage, Error> {
    caller.require(StaffPermission::ReadCustomers)?;
    let size = page_size(limit)?;
    let db = &ledger.models.db;
    let sequence = ledger.models.applied();
    let ids = match parse(q)? {
        Search::Id(id) => vec![id],
        Search::Domain(key) => {
            let mut found = customer_model::search(db, &key, size + 1).await?;
            found.truncate(size + 1);
            found
        }
        Search::Text(text) => {
            let mut found = customer_model::search(db, &format!("n:{text}"), size + 1).await?;
            for id in customer_model::search(db, &format!("d:{text}"), size + 1).await? {
                if !found.contains(&id) {
                    found.push(id);
                }
            }
            found
        }
    };
    let more = ids.len() > size;
    let mut items = Vec::new();
    for id in ids.into_iter().take(size) {
        if let Some(row) = organization_model::organization(db, id).await? {
            items.push(OrganizationView::of_row(&row));
        }
    }
    Ok(CustomerPage { items, more, sequence })
}

/// One customer's timeline after sequence `cursor`, oldest first, at most
/// `limit`: the audit index's entries of the organization (its own
/// streams, its subscriptions', licenses' and invoices'), each with its kind.
pub async fn timeline(
    ledger: &Ledger,
    caller: &Caller,
    organization_id: OrganizationId,
    cursor: Option<u64>,
    limit: Option<usize>,
) -> Result<Timeline, Error> {
    caller.require(StaffPermission::ReadCustomers)?;
    let size = page_size(limit)?;
    let db = &ledger.models.db;
    if !organization_model::exists(db, organization_id).await? {
        return Err(Error::NotFound);
    }
    let query = AuditQuery {
        organization_id: Some(organization_id),
        after: cursor.unwrap_or(0),
        from: None,
        to: None,
        limit: size,
    };
    let page = audit_model::page(db, query).await?;
    let items = page.items.iter().map(|entry| TimelineEntry::of(AuditEntryView::from(entry))).collect();
    Ok(Timeline { items, next_cursor: page.next_cursor })
}
