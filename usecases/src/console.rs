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
pub const VENDOR: OrganizationId = signin::VENDOR;

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

/// Why a console link signed nobody in; all but `Invalid` name the
/// staff user the link was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Invalid,
    Expired {
        staff_id: StaffId,
    },
    Used {
        staff_id: StaffId,
    },
    /// Disabled, or not a staff user.
    Inactive {
        staff_id: StaffId,
    },
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
    let staff_id = StaffId(claims.user_id.0);
    if ledger.now() >= claims.expires_at {
        return Ok(Err(Refusal::Expired { staff_id }));
    }
    let Some(staff) = active_staff(ledger, staff_id).await? else {
        return Ok(Err(Refusal::Inactive { staff_id }));
    };
    let stream = signin::link_stream(&ledger.keys.secret, token);
    match record_sign_in(ledger, &staff, stream, ExpectedRevision::NoStream, session_id, address).await? {
        Ok(()) => Ok(Ok(staff)),
        Err(Rejection::WrongRevision { .. }) => Ok(Err(Refusal::Used { staff_id })),
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

/// How a refused console sign-in was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Link,
    Oidc,
}

/// A refused console sign-in, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// A link of a staff user's (expired, used, the user disabled), or a
    /// link asked for, or an identity vouched for, with a disabled staff
    /// user's address.
    Staff(Refusal),
    /// An address (asked for, or vouched for by the provider) that is no
    /// staff user's; the provider's subject when it vouched.
    Unknown { method: Method, email: Option<String>, subject: Option<String> },
    /// The provider vouched for an identity without a verified address.
    Unverified { email: Option<String>, subject: String },
}

/// The refusal of an address that is no active staff user's: a disabled
/// staff user's (recorded on their stream), or nobody's.
pub async fn refused_email(
    ledger: &Ledger,
    method: Method,
    email: &str,
    subject: Option<String>,
) -> Result<Refused, Error> {
    let normalized = email.trim().to_lowercase();
    let known = if normalized.is_empty() || normalized.len() > EMAIL_CHARS_MAX {
        None
    } else {
        staff::any_by_email(&ledger.models.db, &normalized).await?
    };
    Ok(match known {
        Some(row) => Refused::Staff(Refusal::Inactive { staff_id: row.staff_id }),
        None => Refused::Unknown { method, email: Some(normalized), subject },
    })
}

/// Records a refused console sign-in in the log, as the portal records
/// its own (`crate::signin::record_refusal`): a staff user's on their
/// stream of the day (`PortalSignInRefused` naming [`VENDOR`], at most
/// [`signin::REFUSALS_PER_USER_PER_DAY_MAX`] a day), one that names no
/// staff user on the console's stream of the day (`ConsoleSignInRefused`,
/// at most [`signin::CONSOLE_UNKNOWN_REFUSALS_PER_DAY_MAX`] a day, all
/// callers together). Beyond either bound only the server's log says so.
/// An invalid link (no identity) is not recorded; no token is.
pub async fn record_refusal(ledger: &Ledger, refused: Refused, address: &str) -> Result<(), Error> {
    use crate::signin::Refusal as Portal;
    let user = |staff_id: StaffId| UserId(staff_id.0);
    let (method, reason, email, subject) = match refused {
        Refused::Staff(Refusal::Invalid) => return Ok(()),
        Refused::Staff(Refusal::Expired { staff_id }) => {
            let refusal = Portal::Expired { user: user(staff_id), organization_id: VENDOR };
            return crate::signin::record_refusal(ledger, refusal, address).await;
        }
        Refused::Staff(Refusal::Used { staff_id }) => {
            let refusal = Portal::Used { user: user(staff_id), organization_id: VENDOR };
            return crate::signin::record_refusal(ledger, refusal, address).await;
        }
        Refused::Staff(Refusal::Inactive { staff_id }) => {
            let refusal = Portal::Inactive { user: user(staff_id), organization_id: VENDOR };
            return crate::signin::record_refusal(ledger, refusal, address).await;
        }
        Refused::Unknown { method, email, subject } => (method, "unknown_email", email, subject),
        Refused::Unverified { email, subject } => {
            let reason = if email.is_some() { "unverified_email" } else { "no_email" };
            (Method::Oidc, reason, email, Some(subject))
        }
    };
    let email = email.map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty() && e.len() <= EMAIL_CHARS_MAX);
    let subject = subject.map(|s| s.chars().take(signin::SUBJECT_CHARS_MAX).collect::<String>());
    let method = match method {
        Method::Link => "link",
        Method::Oidc => "oidc",
    };
    let now = ledger.now();
    let event = SignInEvent::from(signin::ConsoleSignInRefused {
        method: method.into(),
        reason: reason.into(),
        email,
        subject,
        address: address.to_owned(),
        at: now,
    });
    let stream = signin::console_refusals_stream(ledger.today());
    let max = signin::CONSOLE_UNKNOWN_REFUSALS_PER_DAY_MAX;
    if !crate::signin::append_refusal(ledger, stream, &event, address, max).await? {
        tracing::warn!(method, reason, "console sign-in refused; the day's refusals are all recorded");
    }
    Ok(())
}
