//! Staff sign-in to the vendor's console (issue 15 part 1), by magic link
//! or the vendor's OIDC provider, on the portal's machinery: the link is a
//! portal link token (`domain::signin`) naming the vendor's organization,
//! [`VENDOR`] (the nil id, which no customer organization has: theirs are
//! UUID v7), and the staff user's id; using it appends `PortalSignedIn` to
//! the link's own stream, expecting none, so it works once on all nodes.
//! A portal link never signs anyone in here, nor a console link there
//! (the portal finds no user in the nil organization).

use domain::signin::{self, LinkClaims, SignInEvent};
use domain::staff::{StaffId, StaffRole};
use domain::{Metadata, OrganizationId, Timestamp, UserId};
use projections::models::staff;
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use crate::command::new_event_id;
use crate::error::Error;
use crate::signin::EMAIL_CHARS_MAX;
use crate::{Caller, Ledger};

/// The organization console links and sessions name: the vendor's own.
pub const VENDOR: OrganizationId = OrganizationId(uuid::Uuid::nil());

/// A staff user signed in to the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInStaff {
    pub staff_id: StaffId,
    pub role: StaffRole,
    pub name: String,
    pub email: String,
}

impl SignedInStaff {
    pub fn caller(&self) -> Caller {
        Caller::Staff { staff_id: self.staff_id, role: self.role }
    }
}

/// Why a console link signed nobody in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Invalid,
    Expired,
    Used,
    /// Disabled, or not a staff user.
    Inactive,
}

/// The active staff user with this e-mail address and a sign-in link for
/// them, valid [`signin::SIGN_IN_LINK_MICROS`]; `None` when the address is
/// no active staff user's.
pub async fn link_for_email(
    ledger: &Ledger,
    console_url: &str,
    email: &str,
) -> Result<Option<(SignedInStaff, String)>, Error> {
    let email = email.trim().to_lowercase();
    if email.is_empty() || email.len() > EMAIL_CHARS_MAX {
        return Err(Error::Validation(format!("an e-mail address is 1 to {EMAIL_CHARS_MAX} characters")));
    }
    let Some(row) = staff::active_by_email(&ledger.models.db, &email).await? else { return Ok(None) };
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let expires_at = Timestamp::from_micros(ledger.now().as_micros().saturating_add(signin::SIGN_IN_LINK_MICROS));
    let claims = LinkClaims { organization_id: VENDOR, user_id: UserId(row.staff_id.0), expires_at };
    let token = signin::link_token(&ledger.keys.secret, claims, nonce);
    let url = format!("{}/console/link?token={token}", console_url.trim_end_matches('/'));
    let staff = SignedInStaff { staff_id: row.staff_id, role: row.role, name: row.name, email: row.email };
    Ok(Some((staff, url)))
}

/// The sign-in e-mail of a console link.
pub fn mail(url: &str) -> crate::notify::mail::Mail {
    let body = format!(
        "Someone (hopefully you) asked to sign in to the vendor's console.\n\n{url}\n\nThe link works once, within \
         {} minutes. If you did not ask for this, ignore this e-mail.\n",
        signin::SIGN_IN_LINK_MICROS / 60_000_000
    );
    crate::notify::mail::Mail { subject: "Your sign-in link to the console".into(), body }
}

/// The active staff user `staff_id`, as the read models know them now.
pub async fn active_staff(ledger: &Ledger, staff_id: StaffId) -> Result<Option<SignedInStaff>, Error> {
    let Some(Caller::Staff { role, .. }) = crate::caller::staff_caller(ledger, staff_id).await? else {
        return Ok(None);
    };
    let row = staff::staff_user(&ledger.models.db, staff_id).await?.ok_or(Error::NotFound)?;
    Ok(Some(SignedInStaff { staff_id, role, name: row.name, email: row.email }))
}

/// Uses a console link: checks it, then records the sign-in on the link's
/// own stream, expecting none (a second use, here or on another node, is
/// refused). `session_id` is the new session's public id.
pub async fn consume(
    ledger: &Ledger,
    token: &str,
    address: &str,
    session_id: uuid::Uuid,
) -> Result<Result<SignedInStaff, Refusal>, Error> {
    let Some(claims) = signin::verify_link_token(&ledger.keys.secret, token) else { return Ok(Err(Refusal::Invalid)) };
    if claims.organization_id != VENDOR {
        return Ok(Err(Refusal::Invalid));
    }
    if ledger.now() >= claims.expires_at {
        return Ok(Err(Refusal::Expired));
    }
    let Some(staff) = active_staff(ledger, StaffId(claims.user_id.0)).await? else {
        return Ok(Err(Refusal::Inactive));
    };
    let stream = signin::link_stream(&ledger.keys.secret, token);
    match record_sign_in(ledger, &staff, stream, ExpectedRevision::NoStream, session_id, address).await? {
        Ok(()) => Ok(Ok(staff)),
        Err(Rejection::WrongRevision { .. }) => Ok(Err(Refusal::Used)),
        Err(other) => Err(Error::Internal(other.to_string())),
    }
}

/// Appends a staff user's sign-in (`PortalSignedIn`, naming [`VENDOR`])
/// to `stream`, the actor the staff user.
pub async fn record_sign_in(
    ledger: &Ledger,
    staff: &SignedInStaff,
    stream: domain::StreamId,
    expected: ExpectedRevision,
    session_id: uuid::Uuid,
    address: &str,
) -> Result<Result<(), Rejection>, Error> {
    let event = SignInEvent::from(signin::SignedIn {
        organization_id: VENDOR,
        user_id: UserId(staff.staff_id.0),
        session_id,
        address: address.to_owned(),
        at: ledger.now(),
    });
    append(ledger, staff, stream, expected, &event, address).await
}

/// Records a console session's end (sign-out) on its own stream.
pub async fn record_end(
    ledger: &Ledger,
    staff: &SignedInStaff,
    session_id: uuid::Uuid,
    event: SignInEvent,
    address: &str,
) -> Result<(), Error> {
    let stream = signin::session_stream(session_id);
    let appended = append(ledger, staff, stream, ExpectedRevision::Any, &event, address).await?;
    appended.map_err(|rejected| Error::Internal(rejected.to_string()))
}

async fn append(
    ledger: &Ledger,
    staff: &SignedInStaff,
    stream: domain::StreamId,
    expected: ExpectedRevision,
    event: &SignInEvent,
    address: &str,
) -> Result<Result<(), Rejection>, Error> {
    let metadata = Metadata {
        actor: Some(staff.caller().actor()),
        correlation_id: None,
        source_ip: Some(address.to_owned()),
        user_agent: None,
    };
    let command = Command {
        stream_id: stream,
        expected,
        idempotency: None,
        events: vec![NewEvent::from_event(event, new_event_id(), ledger.now(), &metadata)],
    };
    Ok(ledger.log.append_one(command).await?.map(|_| ()))
}

/// The active staff user with this (verified) e-mail address, if any.
pub async fn active_by_email(ledger: &Ledger, email: &str) -> Result<Option<SignedInStaff>, Error> {
    let email = email.trim().to_lowercase();
    if email.is_empty() || email.len() > EMAIL_CHARS_MAX {
        return Ok(None);
    }
    let row = staff::active_by_email(&ledger.models.db, &email).await?;
    Ok(row.map(|row| SignedInStaff { staff_id: row.staff_id, role: row.role, name: row.name, email: row.email }))
}
