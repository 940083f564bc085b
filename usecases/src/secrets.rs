//! The server's key material: one Ed25519 key per purpose and one secret
//! for keyed hashes, created on first start in the data directory (several
//! processes on one PostgreSQL share the directory, or copies of it).
//!
//! A key file is never written in place: the bytes go to a temporary file
//! (0600) that is fsynced, then hard-linked to the key's name, which fails
//! if the name exists (so nothing is ever overwritten), then the directory
//! is fsynced and the key read back from its name. Processes starting
//! together on one fresh data directory therefore all end up with the one
//! set that got there first, and a crash leaves either no key file or a
//! whole one, never a short one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::keys::{ServerSecret, api_token_hash, constant_time_eq};
use domain::record::Hash;
use ed25519_dalek::{SigningKey, VerifyingKey};

/// Bootstrap tokens given in the environment must be at least this long.
pub const BOOTSTRAP_TOKEN_CHARS_MIN: usize = 32;

pub struct ServerKeys {
    /// Signs new license keys.
    pub license: SigningKey,
    /// The license-key signing key that `ledger keys rotate-license` will
    /// make current, and the current key's announcement of it
    /// (`ledger keys prepare-license`).
    pub license_next: Option<SigningKey>,
    pub license_next_signature: Option<[u8; 64]>,
    /// The license-key signing keys rotated away from (at most
    /// [`RETIRED_LICENSE_KEYS_MAX`]): keys they signed keep validating (a
    /// validation looks up the key's keyed hash, not its signer) and are
    /// shown again as they were issued.
    pub license_retired: Vec<SigningKey>,
    pub lease: SigningKey,
    /// The lease key that `ledger keys rotate-lease` will make current,
    /// published ahead so clients learn it (`ledger keys prepare-lease`).
    pub lease_next: Option<SigningKey>,
    /// The current lease key's signature announcing `lease_next`
    /// (`domain::lease::sign_next_key`), so clients learn the next key only
    /// from the key they trust.
    pub lease_next_signature: Option<[u8; 64]>,
    pub checkpoint: SigningKey,
    /// The current secret for keyed hashes and derivations: everything made
    /// now is made with it.
    pub secret: ServerSecret,
    /// The other secrets still accepted while the secret rotates
    /// ([`crate::secret_rotation`]): the announced next one
    /// (`keys/secret.next`) and the one rotated away from until it is
    /// retired (`keys/secret.previous`).
    pub secret_others: Vec<ServerSecret>,
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
        create_private_dir(&keys)?;
        remove_stale_temporaries(&keys);
        let seed = |name: &str| load_or_create_random(&keys.join(name));
        let secret = ServerSecret::from_bytes(seed(SECRET)?);
        let mut secret_others = Vec::new();
        for name in [SECRET_NEXT, SECRET_PREVIOUS] {
            if let Some(other) = read_key(&keys.join(name))? {
                secret_others.push(ServerSecret::from_bytes(other.to_bytes()));
            }
        }
        let mut generated = Vec::new();
        let mut token_hash = |role: Bootstrap, given: Option<String>| -> anyhow::Result<Hash> {
            let name = match role {
                Bootstrap::Operator => OPERATOR_TOKEN_HASH,
                Bootstrap::Auditor => AUDITOR_TOKEN_HASH,
            };
            if let Some(token) = given {
                anyhow::ensure!(
                    token.chars().count() >= BOOTSTRAP_TOKEN_CHARS_MIN,
                    "the {role:?} token from the environment must be at least {BOOTSTRAP_TOKEN_CHARS_MIN} characters"
                );
                return Ok(api_token_hash(&secret, &token));
            }
            let path = keys.join(name);
            if let Some(stored) = read_file(&path)? {
                return Hash::from_slice(&stored).with_context(|| format!("{} is not a 32-byte hash", path.display()));
            }
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let token =
                format!("{}_{}", if role == Bootstrap::Operator { "op" } else { "au" }, URL_SAFE_NO_PAD.encode(bytes));
            let hash = api_token_hash(&secret, &token);
            // Another process starting at the same moment may have placed
            // its own: then that one stands, and this token is worth nothing.
            if place_new(&path, hash.as_bytes())? {
                generated.push((role, token));
            }
            let stored = read_file(&path)?.with_context(|| format!("{} vanished", path.display()))?;
            Hash::from_slice(&stored).with_context(|| format!("{} is not a 32-byte hash", path.display()))
        };
        let operator = token_hash(Bootstrap::Operator, operator)?;
        let auditor = token_hash(Bootstrap::Auditor, auditor)?;
        let lease = SigningKey::from_bytes(&seed(LEASE.current)?);
        let lease_next = read_key(&keys.join(LEASE.next))?;
        let license = SigningKey::from_bytes(&seed(LICENSE.current)?);
        let license_next = read_key(&keys.join(LICENSE.next))?;
        let keys = ServerKeys {
            license_next_signature: license_next.as_ref().map(|next| LICENSE.announce(&license, next)),
            license_next,
            license_retired: retired_keys(&keys, LICENSE.current)?,
            license,
            lease_next_signature: lease_next.as_ref().map(|next| LEASE.announce(&lease, next)),
            lease,
            lease_next,
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
            secret_others,
            operator,
            auditor,
        };
        Ok((keys, generated))
    }

    /// The key of an issued license, derived again with the signing key
    /// that made it (the current one, or one rotated away from).
    pub fn issued_license_key(&self, issued: &domain::license::LicenseIssued) -> Option<String> {
        self.secrets().find_map(|secret| {
            let signers = std::iter::once(&self.license).chain(&self.license_retired);
            domain::keys::issued_license_key(signers, secret, issued.license_id, issued.nonce, &issued.key_hash)
        })
    }

    /// The secrets this server accepts, the current one first.
    pub fn secrets(&self) -> impl Iterator<Item = &ServerSecret> {
        std::iter::once(&self.secret).chain(&self.secret_others)
    }

    /// Which bootstrap credential `token` is, compared in constant time
    /// under each accepted secret (`ledger keys rotate-secret` makes the
    /// stored hashes again under the new secret while servers run on both).
    pub fn bootstrap(&self, token: &str) -> Option<Bootstrap> {
        self.secrets().find_map(|secret| {
            let hash = api_token_hash(secret, token);
            if constant_time_eq(hash.as_bytes(), self.operator.as_bytes()) {
                Some(Bootstrap::Operator)
            } else if constant_time_eq(hash.as_bytes(), self.auditor.as_bytes()) {
                Some(Bootstrap::Auditor)
            } else {
                None
            }
        })
    }
}

/// The secret for keyed hashes, the announced next one, and the one
/// rotated away from until it is retired ([`crate::secret_rotation`]).
pub(crate) const SECRET: &str = "secret";
pub(crate) const SECRET_NEXT: &str = "secret.next";
pub(crate) const SECRET_PREVIOUS: &str = "secret.previous";
/// The bootstrap tokens' stored hashes.
pub(crate) const OPERATOR_TOKEN_HASH: &str = "operator-token.hash";
pub(crate) const AUDITOR_TOKEN_HASH: &str = "auditor-token.hash";

/// The checkpoint key's file, and the next key's during a rotation.
const CHECKPOINT_KEY: &str = "checkpoint.ed25519";
const CHECKPOINT_NEXT_KEY: &str = "checkpoint.next.ed25519";
/// The most license-key signing keys rotated away from that a server loads
/// (each is tried when a key is shown again): more is a data directory to
/// look at, not to start on.
pub const RETIRED_LICENSE_KEYS_MAX: usize = 32;

/// A signing key that rotates in two steps, announced before it signs:
/// `ledger keys prepare-…` creates the next key, which servers publish
/// with the current key's signature over it; `ledger keys rotate-…`
/// (servers stopped, then started) makes it current and keeps the old one
/// retired.
pub struct Rotation {
    /// The current key's file, and the announced next key's.
    pub current: &'static str,
    pub next: &'static str,
    /// Signed before the announcement ([`domain::keys::announce_next_key`]).
    pub domain: &'static [u8],
    /// The command that announces a next key, named when there is none.
    pub prepare: &'static str,
}

/// The lease signing key.
pub const LEASE: Rotation = Rotation {
    current: "lease.ed25519",
    next: "lease.next.ed25519",
    domain: domain::lease::NEXT_KEY_DOMAIN,
    prepare: "ledger keys prepare-lease",
};
/// The license-key signing key.
pub const LICENSE: Rotation = Rotation {
    current: "license-key.ed25519",
    next: "license-key.next.ed25519",
    domain: domain::keys::NEXT_LICENSE_SIGNING_KEY_DOMAIN,
    prepare: "ledger keys prepare-license",
};

impl Rotation {
    /// The current key's signature announcing `next`.
    pub fn announce(&self, current: &SigningKey, next: &SigningKey) -> [u8; 64] {
        domain::keys::announce_next_key(self.domain, current, &next.verifying_key())
    }
}

/// The keys `{stem}.retired-<public key>.ed25519` kept by [`promote`].
fn retired_keys(keys: &Path, current: &str) -> anyhow::Result<Vec<SigningKey>> {
    let prefix = format!("{}.retired-", current.trim_end_matches(".ed25519"));
    let mut retired = Vec::new();
    let entries = std::fs::read_dir(keys).with_context(|| format!("reading {}", keys.display()))?;
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".ed25519") {
            anyhow::ensure!(
                retired.len() < RETIRED_LICENSE_KEYS_MAX,
                "more than {RETIRED_LICENSE_KEYS_MAX} retired keys {prefix}* in {}",
                keys.display()
            );
            retired.push(read_key(&keys.join(&name))?.with_context(|| format!("{name} vanished"))?);
        }
    }
    Ok(retired)
}

/// The key in `path`, if the file is there.
pub(crate) fn read_key(path: &Path) -> anyhow::Result<Option<SigningKey>> {
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
pub(crate) fn promote(keys: &Path, current: &str, next: &str, key: &SigningKey) -> anyhow::Result<()> {
    let stem = current.trim_end_matches(".ed25519");
    let retired = keys.join(format!("{stem}.retired-{}.ed25519", hex::encode(key.verifying_key().as_bytes())));
    place_new(&retired, key.as_bytes())?;
    std::fs::rename(keys.join(next), keys.join(current))
        .with_context(|| format!("making {next} current in {}", keys.display()))?;
    std::fs::File::open(keys)?.sync_all()?;
    Ok(())
}

/// `ledger keys prepare-lease` / `prepare-license`: creates the next key
/// of `rotation` (or keeps the one already announced); servers started
/// from now on publish it as `next` in `GET /api/v1/keys`, so clients
/// learn it before it signs. Returns the next key and the current key's
/// signature announcing it.
pub fn prepare_key(data_dir: &Path, rotation: &Rotation) -> anyhow::Result<(VerifyingKey, [u8; 64])> {
    let keys = data_dir.join("keys");
    create_private_dir(&keys)?;
    let current = SigningKey::from_bytes(&load_or_create_random(&keys.join(rotation.current))?);
    let next = SigningKey::from_bytes(&load_or_create_random(&keys.join(rotation.next))?);
    Ok((next.verifying_key(), rotation.announce(&current, &next)))
}

/// `ledger keys rotate-lease` / `rotate-license` (servers stopped, then
/// started): the announced next key becomes current; the old one is kept
/// retired. Returns the old and the new public key.
pub fn rotate_key(data_dir: &Path, rotation: &Rotation) -> anyhow::Result<(VerifyingKey, VerifyingKey)> {
    let keys = data_dir.join("keys");
    let current = read_key(&keys.join(rotation.current))?
        .with_context(|| format!("there is no {} to rotate", rotation.current))?;
    let next = read_key(&keys.join(rotation.next))?.with_context(|| {
        format!("no next key is announced: run `{}` and let clients learn it first", rotation.prepare)
    })?;
    promote(&keys, rotation.current, rotation.next, &current)?;
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

/// 32 random bytes kept in `path`: read if there, else created (0600) and
/// read back, so a process that lost the race to create it uses the
/// winner's bytes. A file that cannot be read, or is not 32 bytes, is an
/// error naming it: never a reason to write another.
pub(crate) fn load_or_create_random(path: &Path) -> anyhow::Result<[u8; 32]> {
    let seed = |bytes: Vec<u8>| -> anyhow::Result<[u8; 32]> {
        bytes.try_into().map_err(|bytes: Vec<u8>| {
            anyhow::anyhow!("{} is {} bytes, not 32: restore it from a backup", path.display(), bytes.len())
        })
    };
    if let Some(bytes) = read_file(path)? {
        return seed(bytes);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    place_new(path, &bytes)?;
    seed(read_file(path)?.with_context(|| format!("{} vanished after it was created", path.display()))?)
}

/// The file's bytes; `None` when there is no such file, an error naming the
/// file for anything else (no permission, a directory in its place).
pub(crate) fn read_file(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(anyhow::Error::new(error).context(format!("reading {}", path.display()))),
    }
}

/// Prefix of the temporary files a key is written to before it is linked
/// into place.
const TEMPORARY_PREFIX: &str = ".new-";
/// A temporary older than this is the leftover of a crash, not another
/// process's write in progress (which takes milliseconds).
const TEMPORARY_STALE: std::time::Duration = std::time::Duration::from_secs(60);

/// Puts `bytes` at `path` unless something is there already: written to a
/// temporary file (0600) and fsynced, hard-linked to `path` (which fails
/// if `path` exists, so nothing is overwritten and no reader sees a short
/// file), then the directory is fsynced so the name survives a crash.
/// Returns whether these bytes were placed.
pub(crate) fn place_new(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
    let dir = path.parent().context("a key file has a directory")?;
    let name = path.file_name().context("a key file has a name")?.to_string_lossy();
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let temporary = dir.join(format!("{TEMPORARY_PREFIX}{}.{name}", hex::encode(random)));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(anyhow::Error::new(error).context(format!("writing {}", temporary.display())));
    }
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    let placed = match linked {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(error) => return Err(anyhow::Error::new(error).context(format!("creating {}", path.display()))),
    };
    std::fs::File::open(dir).and_then(|dir| dir.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
    Ok(placed)
}

/// Removes temporaries a crash left between writing and linking.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > TEMPORARY_STALE));
        if entry.file_name().to_string_lossy().starts_with(TEMPORARY_PREFIX) && stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Creates `dir` (and its parents) readable by its owner only (0700):
/// the data directory holds the log (e-mail addresses, IP addresses) and
/// the keys. A directory that exists keeps the permissions it has.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// The file in the data directory that holds the bootstrap tokens
/// generated on a first start, until an operator stores them and deletes it.
pub const FIRST_START_TOKENS_FILE: &str = "first-start-tokens.txt";

/// Writes the tokens generated now to [`FIRST_START_TOKENS_FILE`] (0600,
/// appended, fsynced), never to the terminal or the log; returns its path.
pub fn write_first_start_tokens(data_dir: &Path, generated: &[(Bootstrap, String)]) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(FIRST_START_TOKENS_FILE);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut text = String::from(
        "# Bootstrap tokens of this ledger, shown nowhere else and stored only as hashes.\n\
         # Keep them in a password manager, then delete this file.\n",
    );
    for (role, token) in generated {
        let role = match role {
            Bootstrap::Operator => "operator",
            Bootstrap::Auditor => "auditor",
        };
        text.push_str(&format!("{role}: {token}\n"));
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
