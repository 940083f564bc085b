//! Resending a customer's user their invitation or a sign-in e-mail (issue
//! 15, the roles table: support and up; the auditor reads only).
//!
//! The mails are the portal's own (the invitation a portal admin sends, the
//! sign-in link the sign-in form sends), with a new link each. The resend
//! is recorded as `PortalMailResent` on the user's resend stream,
//! attributed to the staff user in the record's metadata; the record holds
//! the user's id and the kind, never the address or the link. A user may be
//! sent at most [`RESENDS_PER_USER_PER_HOUR`] resent e-mails an hour.

use domain::signin::{self, MailResent, SignInEvent};
use domain::staff::{StaffPermission, StaffRole};
use domain::{Metadata, OrganizationId, UserId};
use projections::models::organizations::{self as organization_model, UserRow};
use store::{Command, ExpectedRevision, NewEvent};

use crate::command::new_event_id;
use crate::limits::KeyedLimiter;
use crate::notify::mail::Mail;
use crate::signin::{Link, mail as sign_in_mail, token, url};
use crate::{Caller, Error, Ledger};

/// Resent e-mails one user may be sent an hour: enough for a support call
/// that tries twice, too few to flood a customer's mailbox.
pub const RESENDS_PER_USER_PER_HOUR: u32 = 3;
/// The most users of one organization the console lists (an
/// organization's seats are far fewer).
pub const USERS_LISTED_MAX: usize = 200;

/// Which e-mail to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendKind {
    /// The invitation: a sign-in link valid three days.
    Invitation,
    /// A sign-in link valid 15 minutes.
    SignIn,
}

impl ResendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResendKind::Invitation => "invitation",
            ResendKind::SignIn => "signin",
        }
    }
}

/// `invitation` or `signin`.
pub fn parse_kind(text: &str) -> Result<ResendKind, Error> {
    match text {
        "invitation" => Ok(ResendKind::Invitation),
        "signin" => Ok(ResendKind::SignIn),
        _ => Err(Error::Validation("kind must be invitation or signin".into())),
    }
}

/// An e-mail to queue: to whom, what, under which sender name.
#[derive(Debug, Clone)]
pub struct Resent {
    pub to: String,
    pub mail: Mail,
    pub sender_name: Option<String>,
    /// The log sequence of `PortalMailResent`.
    pub sequence: u64,
}

/// The resend rate limit, per user (held by the portal, whose queue sends).
pub struct Resender {
    per_user: KeyedLimiter<UserId>,
}

impl Default for Resender {
    fn default() -> Self {
        Self { per_user: KeyedLimiter::per_hour("console_resends_per_user", RESENDS_PER_USER_PER_HOUR) }
    }
}

/// Who may resend: the staff who read customers, except the auditor.
fn require_resend(caller: &Caller) -> Result<(), Error> {
    caller.require(StaffPermission::ReadCustomers)?;
    if caller.staff_role() == Some(StaffRole::Auditor) { Err(Error::Forbidden) } else { Ok(()) }
}

/// Whether the caller may resend e-mails (the console shows the buttons).
pub fn may_resend(caller: &Caller) -> bool {
    require_resend(caller).is_ok()
}

/// The organization's users in id order, at most [`USERS_LISTED_MAX`]
/// (the staff who read customers).
pub async fn users(ledger: &Ledger, caller: &Caller, organization_id: OrganizationId) -> Result<Vec<UserRow>, Error> {
    caller.require(StaffPermission::ReadCustomers)?;
    let db = &ledger.models.db;
    if !organization_model::exists(db, organization_id).await? {
        return Err(Error::NotFound);
    }
    Ok(organization_model::users(db, organization_id, None, USERS_LISTED_MAX).await?)
}

impl Resender {
    /// Drops idle entries of the limiter.
    pub fn sweep(&self) {
        self.per_user.sweep();
    }

    /// Makes the `kind` e-mail for the active user `user_id` of
    /// `organization_id` with a new link and records that it was sent;
    /// the caller queues it. Refused, changing nothing: not found (no such
    /// organization, or no such user in it), `user_inactive`, a user over
    /// the limit (rate limited), a caller who may not.
    pub async fn resend(
        &self,
        ledger: &Ledger,
        caller: &Caller,
        metadata: &Metadata,
        portal_url: &str,
        (organization_id, user_id): (OrganizationId, UserId),
        kind: ResendKind,
    ) -> Result<Resent, Error> {
        require_resend(caller)?;
        let db = &ledger.models.db;
        let organization = organization_model::organization(db, organization_id).await?.ok_or(Error::NotFound)?;
        let user = organization.state.users.get(&user_id).cloned().ok_or(Error::NotFound)?;
        if !user.active {
            return Err(Error::conflict("user_inactive", "the user is deactivated; nothing was sent"));
        }
        self.per_user.check(&user_id).map_err(|seconds| Error::RateLimited {
            limit: self.per_user.name(),
            retry_after_seconds: seconds,
            message: format!("a user is sent at most {RESENDS_PER_USER_PER_HOUR} resent e-mails an hour"),
        })?;
        let email = user.email;
        let name = crate::branding::shown_name(ledger, organization_id).await?.unwrap_or_default();
        let sender_name = crate::branding::display_name(ledger, organization_id).await?;
        let lifetime = match kind {
            ResendKind::Invitation => signin::INVITATION_LINK_MICROS,
            ResendKind::SignIn => signin::SIGN_IN_LINK_MICROS,
        };
        let link = url(portal_url, &token(ledger, organization_id, user_id, lifetime)?);
        let mail = match kind {
            ResendKind::Invitation => invitation(&link, &name),
            ResendKind::SignIn => {
                let one = Link { organization_id, organization: name, user_id, email: email.clone(), url: link };
                sign_in_mail(&[one], signin::SIGN_IN_LINK_MICROS / 60_000_000)
            }
        };
        let sequence = record(ledger, metadata, organization_id, user_id, kind).await?;
        Ok(Resent { to: email, mail, sender_name, sequence })
    }
}

/// Appends `PortalMailResent` on the user's resend stream.
async fn record(
    ledger: &Ledger,
    metadata: &Metadata,
    organization_id: OrganizationId,
    user_id: UserId,
    kind: ResendKind,
) -> Result<u64, Error> {
    let now = ledger.now();
    let event = SignInEvent::from(MailResent { organization_id, user_id, kind: kind.as_str().to_owned(), at: now });
    let command = Command {
        stream_id: signin::resend_stream(user_id),
        expected: ExpectedRevision::Any,
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), now, metadata)],
    };
    let appended = ledger.log.append_one(command).await?.map_err(|rejected| Error::Internal(rejected.to_string()))?;
    ledger.acknowledged.record_command(appended.last_sequence);
    Ok(appended.last_sequence)
}

/// The portal's invitation e-mail (`portal::pages::invite`'s words).
pub fn invitation(url: &str, organization: &str) -> Mail {
    Mail {
        subject: format!("You were invited to {organization}'s customer portal"),
        body: format!(
            "You were added to {organization}'s customer portal. Sign in (this link works once, within 3 days):\n\n{url}\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        assert_eq!(parse_kind("invitation").unwrap(), ResendKind::Invitation);
        assert_eq!(parse_kind("signin").unwrap(), ResendKind::SignIn);
        assert!(matches!(parse_kind("welcome"), Err(Error::Validation(_))));
        assert_eq!(ResendKind::SignIn.as_str(), "signin");
    }

    #[test]
    fn the_auditor_may_not_resend() {
        let staff = |role| Caller::Staff { staff_id: domain::staff::StaffId(uuid::Uuid::nil()), role };
        assert!(may_resend(&staff(StaffRole::Support)));
        assert!(may_resend(&staff(StaffRole::Billing)));
        assert!(may_resend(&staff(StaffRole::StaffAdmin)));
        assert!(!may_resend(&staff(StaffRole::Auditor)));
        assert!(!may_resend(&Caller::Auditor));
    }
}
