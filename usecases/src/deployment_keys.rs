//! Deployment identity (issue 18 item 2; `domain::deployment_key` has the
//! exchange): challenges for deployments to sign, the proof a validation
//! carries, and an organization admin's reset of a deployment's bound key.
//!
//! Challenges are stateless (a keyed hash under the server secret), so any
//! process of the server accepts one; a challenge once accepted is taken
//! in the database all processes share (`deployment_challenges_used`, a
//! row per challenge keyed by its id, until it expires), so a replayed
//! signature is refused by every process, not only the one that saw it
//! first. Each process also remembers the challenges it took, which
//! refuses a replay there without asking the database.

use std::collections::HashMap;
use std::sync::Mutex;

use domain::LicenseId;
use domain::deployment_key::{self, CHALLENGE_ID_BYTES, CHALLENGE_LIFETIME_MICROS, ProofError};
use domain::license::{License, LicenseCommand};

use crate::Ledger;
use crate::caller::{Caller, Need};
use crate::command::{self, Context, load};
use crate::error::Error;
use crate::views::SequenceResponse;
use crate::views::licensing::ChallengeResponse;

/// The most challenges one process remembers as used at once (each for at
/// most a minute): 1,666 key-bound validations a second. Past it, a proof
/// is answered 503 (try again) rather than forgetting one not yet expired.
pub const CHALLENGES_REMEMBERED_MAX: usize = 100_000;

/// The challenges this process accepted, until each expires.
#[derive(Default)]
pub struct UsedChallenges {
    used: Mutex<HashMap<[u8; CHALLENGE_ID_BYTES], i64>>,
}

/// Why a challenge could not be taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Replayed,
    Full,
}

impl UsedChallenges {
    /// Takes a challenge (once): refuses one taken before, and, when
    /// [`CHALLENGES_REMEMBERED_MAX`] are remembered after the expired ones
    /// are dropped, any other.
    pub fn take(&self, id: [u8; CHALLENGE_ID_BYTES], expires_at_us: i64, now_us: i64) -> Result<(), Taken> {
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if used.contains_key(&id) {
            return Err(Taken::Replayed);
        }
        if used.len() >= CHALLENGES_REMEMBERED_MAX {
            used.retain(|_, expires| *expires > now_us);
            if used.len() >= CHALLENGES_REMEMBERED_MAX {
                return Err(Taken::Full);
            }
        }
        used.insert(id, expires_at_us);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The system clock in µs: a challenge's life is a transport matter (like
/// a token's expiry), never the ledger's test clock.
fn system_now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A fresh challenge for a deployment to sign (public, rate-limited by
/// address at the edge).
pub fn challenge(ledger: &Ledger) -> Result<ChallengeResponse, Error> {
    let mut id = [0u8; CHALLENGE_ID_BYTES];
    getrandom::fill(&mut id).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let expires_at_us = system_now_us() + CHALLENGE_LIFETIME_MICROS;
    Ok(ChallengeResponse {
        challenge: deployment_key::mint_challenge(&ledger.keys.secret, id, expires_at_us),
        expires_at: domain::Timestamp::from_micros(expires_at_us),
    })
}

/// A validation request's proof of a deployment key, as sent.
#[derive(Debug, Clone)]
pub struct Proof {
    pub public_key: String,
    pub challenge: String,
    pub signature: String,
}

/// Checks a proof for this license key, deployment and nonce, and takes
/// its challenge: a refusal is 400 with a named code, a replay 409
/// `challenge_replayed`.
pub async fn check_proof(
    ledger: &Ledger,
    proof: &Proof,
    license_key: &str,
    deployment_id: &str,
    nonce: &str,
) -> Result<(), Error> {
    let refused = |error: ProofError| {
        let code = match error {
            ProofError::MalformedKey => "deployment_key_malformed",
            ProofError::ForgedChallenge => "challenge_invalid",
            ProofError::ExpiredChallenge => "challenge_expired",
            ProofError::BadSignature => "deployment_proof_invalid",
        };
        Error::BadRequest { code, message: error.to_string() }
    };
    let now_us = system_now_us();
    let public = deployment_key::parse_public_key(&proof.public_key).map_err(refused)?;
    // Under whichever accepted secret minted it (the secret may be rotating).
    let mut checked =
        ledger.keys.secrets().map(|secret| deployment_key::check_challenge(secret, &proof.challenge, now_us));
    let challenge = match checked.find(Result::is_ok) {
        Some(ok) => ok,
        None => deployment_key::check_challenge(&ledger.keys.secret, &proof.challenge, now_us),
    }
    .map_err(refused)?;
    let binding = domain::lease::key_binding(license_key);
    deployment_key::verify_proof(&public, &proof.signature, &proof.challenge, &binding, deployment_id, nonce)
        .map_err(refused)?;
    let replayed = || Error::conflict("challenge_replayed", "this challenge was answered before: ask for a new one");
    ledger.challenges.take(challenge.id, challenge.expires_at_us, now_us).map_err(|taken| match taken {
        Taken::Replayed => replayed(),
        Taken::Full => Error::Unavailable("too many challenges in flight; try again".into()),
    })?;
    if take_shared(ledger, challenge.id, challenge.expires_at_us, now_us).await? { Ok(()) } else { Err(replayed()) }
}

/// Takes a challenge in the database every process of the server shares
/// (`deployment_challenges_used`, keyed by the challenge's id), so a proof
/// replayed to another process is refused there too. Rows of expired
/// challenges are deleted as new ones are taken: the table holds at most
/// the challenges of the last [`CHALLENGE_LIFETIME_MICROS`]. `false`: taken
/// before.
async fn take_shared(
    ledger: &Ledger,
    id: [u8; CHALLENGE_ID_BYTES],
    expires_at_us: i64,
    now_us: i64,
) -> Result<bool, Error> {
    let db = &ledger.models.db;
    let unavailable = |e: projections::db::DbError| Error::Unavailable(e.to_string());
    db.query("DELETE FROM deployment_challenges_used WHERE expires_at_us < $1", vec![now_us.into()])
        .await
        .map_err(unavailable)?;
    let taken = db
        .query(
            "INSERT INTO deployment_challenges_used (challenge_id, expires_at_us) VALUES ($1, $2) \
             ON CONFLICT (challenge_id) DO NOTHING RETURNING challenge_id",
            vec![id.to_vec().into(), expires_at_us.into()],
        )
        .await
        .map_err(unavailable)?;
    Ok(!taken.is_empty())
}

/// Forgets the key bound to `deployment_id` of a license (organization
/// admin, or the operator): its next validation binds the key it presents.
pub async fn reset_key(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    license_id: LicenseId,
    deployment_id: &str,
) -> Result<SequenceResponse, Error> {
    let license = projections::models::licenses::license(&ledger.models.db, license_id).await?;
    let organization_id = license.and_then(|l| l.issued).map(|i| i.organization_id);
    caller.require_org(organization_id.ok_or(Error::NotFound)?, Need::Admin)?;
    let appended = command::execute(ledger, context, || async {
        let mut license = load::<License>(ledger, license_id.stream()).await?;
        let reset = LicenseCommand::ResetDeploymentKey { deployment_id: deployment_id.to_owned() };
        license.decide(reset, &()).await?;
        Ok(vec![license.into_command(context, ledger.now())])
    })
    .await?;
    Ok(SequenceResponse { sequence: appended.sequence })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_is_taken_once_and_the_memory_stays_bounded() {
        let used = UsedChallenges::default();
        assert_eq!(used.take([1; 16], 100, 0), Ok(()));
        assert_eq!(used.take([1; 16], 100, 0), Err(Taken::Replayed));
        for n in 1..CHALLENGES_REMEMBERED_MAX {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(n as u64).to_be_bytes());
            id[15] = 9;
            used.take(id, 200, 0).unwrap();
        }
        assert_eq!(used.len(), CHALLENGES_REMEMBERED_MAX);
        assert_eq!(used.take([2; 16], 300, 50), Err(Taken::Full));
        // Once the remembered ones expired, they are dropped for new ones;
        // the one taken first expired too, so its memory is gone with it.
        assert_eq!(used.take([2; 16], 300, 250), Ok(()));
        assert_eq!(used.len(), 1);
    }
}
