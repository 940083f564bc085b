//! The deployment's own key pair (issue 18 item 2): an Ed25519 key made on
//! the first run and kept in the state directory ([`DEPLOYMENT_KEY_FILE`],
//! the 32-byte seed, mode 0600). The client signs the server's challenge
//! with it at every validation (`domain::deployment_key`), so the server
//! knows the deployment holds it, and accepts only leases bound to its
//! public key: a lease copied to another machine is of no use there.
//!
//! The key never leaves the state directory. A deployment that loses it (a
//! new state directory) is refused by the server once it has bound the old
//! one, until an organization admin resets the binding.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use ed25519_dalek::SigningKey;

use crate::ClientError;
use crate::files::{self, io_error};

/// The deployment's private key (its 32-byte seed) in the state directory.
pub const DEPLOYMENT_KEY_FILE: &str = "deployment.ed25519";

/// The deployment's key: read from the state directory, or made and
/// written there on the first run. Written to a temporary file (0600,
/// fsynced) hard-linked to its name, which fails if the name exists, so
/// two processes starting together agree on the one that got there first
/// and nothing is ever overwritten.
pub(crate) fn load_or_create(dir: &Path) -> Result<SigningKey, ClientError> {
    let path = dir.join(DEPLOYMENT_KEY_FILE);
    if let Some(bytes) = files::read_optional(&path)? {
        return parse(&path, &bytes);
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| ClientError::Random(e.to_string()))?;
    let temp = files::temp_path(&path);
    let written = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        file.write_all(&seed)?;
        file.sync_all()?;
        match fs::hard_link(&temp, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        files::sync_dir(dir)
    })();
    let _ = fs::remove_file(&temp);
    written.map_err(io_error(&path))?;
    let bytes = files::read_optional(&path)?.ok_or_else(|| io_error(&path)(io::ErrorKind::NotFound.into()))?;
    parse(&path, &bytes)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<SigningKey, ClientError> {
    let seed: [u8; 32] = bytes.try_into().map_err(|_| {
        io_error(path)(io::Error::new(io::ErrorKind::InvalidData, "a deployment key file holds 32 bytes"))
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let made = load_or_create(dir.path()).unwrap();
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(made.to_bytes(), again.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(DEPLOYMENT_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap().to_bytes(), made.to_bytes());
        fs::write(other.path().join(DEPLOYMENT_KEY_FILE), [1u8; 31]).unwrap();
        assert!(matches!(load_or_create(other.path()), Err(ClientError::Io { .. })));
    }
}
