//! Customer search ("customers-v1", issue 15 part 2): search keys of each
//! organization, so staff find a customer by the start of any word of its
//! name or by an e-mail domain (its own `domain` and its users' addresses)
//! with a range read of the primary key, never a scan.
//!
//! A key is `n:` + the lowercased name from a word's start, or `d:` + a
//! lowercased domain. Rows are bounded by live entities: at most
//! [`NAME_KEYS_MAX`] per organization's name, one per distinct domain of
//! its users.

use domain::OrganizationId;
use domain::event::LedgerEvent;
use domain::organization::OrganizationEvent;
use domain::record::Record;

use super::{limit_param, page_limit, stream_uuid, uuid};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Table, Value};

pub const CUSTOMER_SEARCH: Table =
    Table::new("rm_customer_search", &[Column::text("search_key"), Column::blob("organization_id")], 2);

/// The projection's name (its checkpoint's).
pub const NAME: &str = "customers-v1";

/// The most words of a name that are each a key.
pub const NAME_KEYS_MAX: usize = 16;

/// The longest search text taken (characters).
pub const QUERY_CHARS_MAX: usize = 255;

/// Keeps [`CUSTOMER_SEARCH`].
pub struct Customers;

/// The keys of a name: from each word's start (the first
/// [`NAME_KEYS_MAX`] words), lowercased.
pub fn name_keys(name: &str) -> Vec<String> {
    let lower = name.to_lowercase();
    let mut keys = Vec::new();
    let mut at_word_start = true;
    for (index, c) in lower.char_indices() {
        if keys.len() >= NAME_KEYS_MAX {
            break;
        }
        if c.is_alphanumeric() {
            if at_word_start {
                keys.push(format!("n:{}", &lower[index..]));
            }
            at_word_start = false;
        } else {
            at_word_start = true;
        }
    }
    keys
}

/// The key of an address's domain (what follows its last `@`), lowercased.
pub fn domain_key(email_or_domain: &str) -> Option<String> {
    let domain = email_or_domain.rsplit('@').next()?.trim().to_lowercase();
    (!domain.is_empty()).then(|| format!("d:{domain}"))
}

impl Projection for Customers {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [Table] {
        &[CUSTOMER_SEARCH]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        let (Some(LedgerEvent::Organization(event)), Some(id)) = (event, stream_uuid(record, "org")) else {
            return Ok(());
        };
        let keys = match event {
            OrganizationEvent::OrganizationCreated(created) => {
                let mut keys = name_keys(&created.name);
                keys.extend(created.domain.as_deref().and_then(domain_key));
                keys
            }
            OrganizationEvent::UserAdded(added) => domain_key(&added.email).into_iter().collect(),
            _ => return Ok(()),
        };
        for key in keys {
            changes.upsert(&CUSTOMER_SEARCH, vec![Value::Text(key), id.into()])?;
        }
        Ok(())
    }
}

/// The organizations with a key starting with `prefix` (a whole key from
/// [`name_keys`] or [`domain_key`], or its start), in key order, at most
/// `size` (capped at [`super::PAGE_ITEMS_MAX`]) distinct ones.
pub async fn search(db: &ReadModelDb, prefix: &str, size: usize) -> Result<Vec<OrganizationId>, DbError> {
    let size = page_limit(size);
    let end = format!("{prefix}\u{10FFFF}");
    // Rows, not organizations: one organization may hold several keys in
    // the range; read a bounded window and keep the first `size` distinct.
    let rows = db
        .query(
            "SELECT organization_id FROM rm_customer_search WHERE search_key >= $1 AND search_key < $2 \
             ORDER BY search_key, organization_id LIMIT $3",
            vec![Value::Text(prefix.to_owned()), Value::Text(end), limit_param(size * NAME_KEYS_MAX)],
        )
        .await?;
    let mut found: Vec<OrganizationId> = Vec::new();
    for row in &rows {
        let id = OrganizationId(uuid(row, 0)?);
        if !found.contains(&id) {
            found.push(id);
        }
        if found.len() == size {
            break;
        }
    }
    Ok(found)
}
