//! The server's key material: one Ed25519 key per purpose and one secret
//! for keyed hashes, created on first start in the data directory (several
//! processes on one PostgreSQL share the directory, or copies of it).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::keys::{ServerSecret, api_token_hash, constant_time_eq};
use domain::record::Hash;
use ed25519_dalek::{SigningKey, VerifyingKey};

/// Bootstrap tokens given in the environment must be at least this long.
pub const BOOTSTRAP_TOKEN_CHARS_MIN: usize = 32;

pub struct ServerKeys {
    pub license: SigningKey,
    pub lease: SigningKey,
    /// The lease key that `ledger keys rotate-lease` will make current,
    /// published ahead so clients learn it (`ledger keys prepare-lease`).
    pub lease_next: Option<SigningKey>,
    pub checkpoint: SigningKey,
    pub secret: ServerSecret,
    operator: Hash,
    auditor: Hash,
}

/// Which fixed credential a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    Operator,
    Auditor,
}

impl ServerKeys {
    /// Loads the keys from `data_dir/keys`, creating what is missing.
    /// Returns the bootstrap tokens generated now, to be printed once.
    pub fn load_or_create(
        data_dir: &Path,
        operator: Option<String>,
        auditor: Option<String>,
    ) -> anyhow::Result<(Self, Vec<(Bootstrap, String)>)> {
        let keys = data_dir.join("keys");
        std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
        let seed = |name: &str| load_or_create_random(&keys.join(name));
        let secret = ServerSecret::from_bytes(seed("secret")?);
        let mut generated = Vec::new();
        let mut token_hash = |role: Bootstrap, given: Option<String>| -> anyhow::Result<Hash> {
            let name = match role {
                Bootstrap::Operator => "operator-token.hash",
                Bootstrap::Auditor => "auditor-token.hash",
            };
            if let Some(token) = given {
                anyhow::ensure!(
                    token.chars().count() >= BOOTSTRAP_TOKEN_CHARS_MIN,
                    "the {role:?} token from the environment must be at least {BOOTSTRAP_TOKEN_CHARS_MIN} characters"
                );
                return Ok(api_token_hash(&secret, &token));
            }
            let path = keys.join(name);
            if let Ok(stored) = std::fs::read(&path) {
                return Hash::from_slice(&stored).with_context(|| format!("{} is not a 32-byte hash", path.display()));
            }
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let token =
                format!("{}_{}", if role == Bootstrap::Operator { "op" } else { "au" }, URL_SAFE_NO_PAD.encode(bytes));
            let hash = api_token_hash(&secret, &token);
            write_new(&path, hash.as_bytes())?;
            generated.push((role, token));
            Ok(hash)
        };
        let operator = token_hash(Bootstrap::Operator, operator)?;
        let auditor = token_hash(Bootstrap::Auditor, auditor)?;
        let keys = ServerKeys {
            license: SigningKey::from_bytes(&seed("license-key.ed25519")?),
            lease: SigningKey::from_bytes(&seed(LEASE_KEY)?),
            lease_next: read_key(&keys.join(LEASE_NEXT_KEY))?,
            checkpoint: {
                // A server must not sign with a key the log may already
                // have rotated away from.
                let next = keys.join(CHECKPOINT_NEXT_KEY);
                anyhow::ensure!(
                    !next.exists(),
                    "a checkpoint key rotation is unfinished ({} exists): run `ledger keys rotate-checkpoint` again",
                    next.display()
                );
                SigningKey::from_bytes(&seed(CHECKPOINT_KEY)?)
            },
            secret,
            operator,
            auditor,
        };
        Ok((keys, generated))
    }

    /// Which bootstrap credential `token` is, compared in constant time.
    pub fn bootstrap(&self, token: &str) -> Option<Bootstrap> {
        let hash = api_token_hash(&self.secret, token);
        if constant_time_eq(hash.as_bytes(), self.operator.as_bytes()) {
            Some(Bootstrap::Operator)
        } else if constant_time_eq(hash.as_bytes(), self.auditor.as_bytes()) {
            Some(Bootstrap::Auditor)
        } else {
            None
        }
    }
}

/// The checkpoint key's file, and the next key's during a rotation.
const CHECKPOINT_KEY: &str = "checkpoint.ed25519";
const CHECKPOINT_NEXT_KEY: &str = "checkpoint.next.ed25519";
/// The lease key's file, and the announced next key's.
const LEASE_KEY: &str = "lease.ed25519";
const LEASE_NEXT_KEY: &str = "lease.next.ed25519";

/// The key in `path`, if the file is there.
fn read_key(path: &Path) -> anyhow::Result<Option<SigningKey>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes: [u8; 32] =
                bytes.try_into().map_err(|_| anyhow::anyhow!("{} is not 32 bytes", path.display()))?;
            Ok(Some(SigningKey::from_bytes(&bytes)))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(anyhow::Error::new(error).context(format!("reading {}", path.display()))),
    }
}

/// Keeps `current` as `{stem}.retired-<public key>.ed25519`, then makes the
/// key in `next` current with one rename.
fn promote(keys: &Path, current: &str, next: &str, key: &SigningKey) -> anyhow::Result<()> {
    let stem = current.trim_end_matches(".ed25519");
    let retired = keys.join(format!("{stem}.retired-{}.ed25519", hex::encode(key.verifying_key().as_bytes())));
    if !retired.exists() {
        write_new(&retired, key.as_bytes())?;
    }
    std::fs::rename(keys.join(next), keys.join(current))
        .with_context(|| format!("making {next} current in {}", keys.display()))?;
    std::fs::File::open(keys)?.sync_all()?;
    Ok(())
}

/// `ledger keys prepare-lease`: creates the next lease key (or keeps the
/// one already announced); servers started from now on publish it as
/// `leases.next` in `GET /api/v1/keys`, so clients learn it before it signs.
pub fn prepare_lease_key(data_dir: &Path) -> anyhow::Result<VerifyingKey> {
    let next = load_or_create_random(&data_dir.join("keys").join(LEASE_NEXT_KEY))?;
    Ok(SigningKey::from_bytes(&next).verifying_key())
}

/// `ledger keys rotate-lease` (servers stopped, then started): the
/// announced next lease key becomes current; the old one is kept retired.
/// Returns the old and the new public key.
pub fn rotate_lease_key(data_dir: &Path) -> anyhow::Result<(VerifyingKey, VerifyingKey)> {
    let keys = data_dir.join("keys");
    let current = read_key(&keys.join(LEASE_KEY))?.context("there is no lease key to rotate")?;
    let next = read_key(&keys.join(LEASE_NEXT_KEY))?
        .context("no next lease key is announced: run `ledger keys prepare-lease` and let clients learn it first")?;
    promote(&keys, LEASE_KEY, LEASE_NEXT_KEY, &current)?;
    Ok((current.verifying_key(), next.verifying_key()))
}

/// Rotates the log's checkpoint key (`ledger keys rotate-checkpoint`, with
/// the servers on this data stopped: each loads its keys at start):
/// 1. a new key is kept as `keys/checkpoint.next.ed25519` (an interrupted
///    rotation's is reused), and no server starts while it is there;
/// 2. `CheckpointKeyRotated`, the new public key signed by the current key,
///    is appended to the log once (its idempotency key names the new key,
///    and the signature is deterministic, so a retry is answered with the
///    first append);
/// 3. the current key is kept as `keys/checkpoint.retired-<key>.ed25519`,
///    then one rename makes the new key current.
///
/// Running it again after an interruption finishes the same rotation.
/// Returns the old and the new public key.
pub async fn rotate_checkpoint_key(
    data_dir: &Path,
    log: &store::EventLog,
    now: domain::Timestamp,
) -> anyhow::Result<(VerifyingKey, VerifyingKey)> {
    use domain::checkpoint::{CHECKPOINT_STREAM, CheckpointEvent, CheckpointKeyRotated};
    use store::{Command, ExpectedRevision, Idempotency, NewEvent};
    let keys = data_dir.join("keys");
    let current = read_key(&keys.join(CHECKPOINT_KEY))?.context("there is no checkpoint key to rotate")?;
    let next = SigningKey::from_bytes(&load_or_create_random(&keys.join(CHECKPOINT_NEXT_KEY))?);
    let (old_key, new_key) = (current.verifying_key(), next.verifying_key());

    let stream_id = domain::StreamId::new(CHECKPOINT_STREAM).expect("a valid stream id");
    let event = CheckpointEvent::CheckpointKeyRotated(CheckpointKeyRotated::announce(&current, &new_key));
    let metadata = domain::Metadata { actor: Some("ledger keys rotate-checkpoint".into()), ..Default::default() };
    let events = vec![NewEvent::from_event(&event, crate::command::new_event_id(), now, &metadata)];
    let key = format!("checkpoint-key-rotation:{}", hex::encode(new_key.as_bytes()));
    let command = Command {
        idempotency: Some(Idempotency::of_events(key, &stream_id, &events)),
        stream_id,
        expected: ExpectedRevision::Any,
        events,
    };
    log.append_one(command).await?.map_err(|e| anyhow::anyhow!("the rotation was not recorded: {e}"))?;

    promote(&keys, CHECKPOINT_KEY, CHECKPOINT_NEXT_KEY, &current)?;
    Ok((old_key, new_key))
}

/// 32 random bytes kept in `path`: read if there, else created (0600).
fn load_or_create_random(path: &Path) -> anyhow::Result<[u8; 32]> {
    if let Ok(bytes) = std::fs::read(path) {
        return bytes.try_into().map_err(|_| anyhow::anyhow!("{} is not 32 bytes", path.display()));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    match write_new(path, &bytes) {
        Ok(()) => Ok(bytes),
        // Another process created it first: use theirs.
        Err(_) if path.exists() => load_or_create_random(path),
        Err(error) => Err(error),
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
