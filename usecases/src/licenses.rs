//! License keys: making a new key, showing it again, revoking it, and the
//! end of an old key's supersede window.

use domain::event::LedgerEvent;
use domain::keys::{license_key, license_key_hash};
use domain::license::{License, LicenseCommand, LicenseEvent};
use domain::staff::StaffPermission;
use domain::workflows::NewKey;
use domain::{LicenseId, Timestamp};

use crate::command::{Appended, Context, execute, load};
use crate::views::SequenceResponse;
use crate::{Caller, Error, Ledger};

/// What a new key is made of: 128 random bits, signed with the server's
/// license key, of which only the keyed hash is kept.
pub(crate) fn new_key(ledger: &Ledger, license_id: LicenseId, issued_at: Timestamp) -> Result<NewKey, Error> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let key_hash = license_key_hash(&ledger.keys.secret, &license_key(&ledger.keys.license, license_id, nonce));
    Ok(NewKey { license_id, nonce, key_hash, issued_at })
}

/// The key of the license issued among `appended`, derived again from its
/// event: the key itself is never stored.
pub(crate) fn issued_key(ledger: &Ledger, appended: &Appended) -> Result<String, Error> {
    appended
        .find(|e| match e {
            LedgerEvent::License(LicenseEvent::LicenseIssued(issued)) => Some(ledger.keys.issued_license_key(issued)),
            _ => None,
        })?
        .ok_or_else(|| {
            Error::Internal("no signing key makes the issued license key: a retired key file is missing".into())
        })
}

/// Revokes a license key (the operator's, whoever owns the key: every
/// member gets the same refusal for any license id, which tells nothing of
/// its owner).
pub async fn revoke_license(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    license_id: LicenseId,
    reason: String,
) -> Result<SequenceResponse, Error> {
    caller.require(StaffPermission::Operate)?;
    let command = || LicenseCommand::Revoke { reason: reason.clone() };
    let appended = on_license(ledger, context, license_id, command).await?;
    Ok(SequenceResponse { sequence: appended.sequence })
}

/// The scheduler's step: an old key's supersede window is over, so it is
/// revoked.
pub async fn close_supersede_window(ledger: &Ledger, context: &Context, license_id: LicenseId) -> Result<u64, Error> {
    let command = || LicenseCommand::EndSupersedeWindow { now: ledger.now() };
    Ok(on_license(ledger, context, license_id, command).await?.sequence)
}

async fn on_license(
    ledger: &Ledger,
    context: &Context,
    license_id: LicenseId,
    command: impl Fn() -> LicenseCommand,
) -> Result<Appended, Error> {
    execute(ledger, context, || async {
        let mut license = load::<License>(ledger, license_id.stream()).await?;
        license.decide(command(), &()).await?;
        Ok(vec![license.into_command(context, ledger.now())])
    })
    .await
}
