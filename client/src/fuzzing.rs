//! The client's pure parsing of what the server and the state directory
//! hand it, for the fuzz targets (`fuzz/`); only with the `fuzzing`
//! feature, and not part of the library's API.

use domain::Timestamp;
use domain::lease::LeaseBody;
use ed25519_dalek::VerifyingKey;

use crate::license::{self, Answer};
use crate::{ClientError, Config, LeaseRejection, ValidationCode};

/// What [`validation_answer`] made of an answer.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Judged {
    /// A lease the client would accept, and its document.
    Lease(LeaseBody),
    /// A refusal the client would act on (the lease is dropped).
    Refused(ValidationCode),
    /// A refusal the client would ignore.
    Ignored,
}

/// The body of a 200 answer to the validation request with `nonce`, sent
/// at `client_time` by the deployment whose public key is `deployment_key`,
/// as `LicenseClient::validate` judges it with `config`'s pinned keys.
pub fn validation_answer(
    body: &[u8],
    config: &Config,
    nonce: &str,
    client_time: Timestamp,
    deployment_key: &str,
) -> Result<Judged, ClientError> {
    let asked = license::Asked { nonce, client_time, deployment_key };
    Ok(match license::judge_answer(body, config, &config.lease_public_keys, &asked)? {
        Answer::Lease { body, .. } => Judged::Lease(body),
        Answer::Refused(code) => Judged::Refused(code),
        Answer::Ignored { .. } => Judged::Ignored,
    })
}

/// The lease file (`lease.json`) as the client reads it back at start.
pub fn stored_lease(config: &Config, deployment_key: &str, bytes: &[u8]) -> Result<LeaseBody, LeaseRejection> {
    license::load_lease(config, deployment_key, bytes)
}

/// `GET /api/v1/keys`'s body: the current lease key, and the next with the
/// current key's signature over it.
#[allow(clippy::type_complexity)]
pub fn lease_keys(body: &[u8]) -> Result<(VerifyingKey, Option<(VerifyingKey, Option<Vec<u8>>)>), String> {
    license::parse_lease_keys(body)
}
