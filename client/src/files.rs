//! Durable small files: what the client promises to remember (the lease,
//! the clock marks, queued usage reports) must survive a crash or a power
//! cut at any instant, whole or not at all.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ClientError;

/// The largest file the client reads back; its own files are a few KiB, so
/// anything larger was not written by it.
pub(crate) const STATE_FILE_BYTES_MAX: u64 = 1 << 20;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ClientError + '_ {
    move |source| ClientError::Io { path: path.to_owned(), source }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or
/// the new one: a temporary file in the same directory, fsynced, renamed
/// over `path`, and the directory fsynced so the rename itself is durable.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let dir = path.parent().expect("state files live in a directory");
    // Unique per process and call, so two writers never share a temporary.
    let temp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io_error(path))
}

pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().expect("state files have a name").to_string_lossy();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Removes `path` durably; a file already gone is not an error.
pub(crate) fn remove_durably(path: &Path) -> Result<(), ClientError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path)(e)),
    }
    sync_dir(path.parent().expect("state files live in a directory")).map_err(io_error(path))
}

/// Makes a directory entry change (create, rename, delete) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a state file, `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ClientError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(STATE_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(io_error(path))?;
    if bytes.len() as u64 > STATE_FILE_BYTES_MAX {
        return Err(ClientError::Io {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidData, "larger than any file the client writes"),
        });
    }
    Ok(Some(bytes))
}

/// Creates `dir` (and its parents) and makes the creation durable.
pub(crate) fn create_dir(dir: &Path) -> Result<(), ClientError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(io_error(parent))?;
    }
    Ok(())
}

/// Leftover temporaries of a crashed write: never the file of record.
pub(crate) fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}
