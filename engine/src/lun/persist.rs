//! Atomic persistence of a LUN's state: write a temporary file, fsync, rename, fsync the
//! directory. A crash leaves either the old or the new state, never a mix.

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the state of LUN `shelf.slot` lives inside `state_dir`.
pub fn state_path(state_dir: &Path, shelf: u16, slot: u8) -> PathBuf {
    state_dir.join(format!("lun-{shelf}.{slot}.json"))
}

/// Persisted state of one LUN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// The config string (opaque bytes).
    pub config_string: Vec<u8>,
    /// The MAC mask list.
    pub mask: Vec<[u8; 6]>,
    /// The reservation list.
    pub reserve: Vec<[u8; 6]>,
    /// Who added each mask entry and when (entries added before this was kept: none).
    #[serde(default)]
    pub mask_origin: Vec<([u8; 6], SetBy)>,
    /// Who set the reservation and when.
    #[serde(default)]
    pub reserve_origin: Option<SetBy>,
}

/// The source and time of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBy {
    /// `host MAC` or `console USER`.
    pub by: String,
    /// Seconds since the epoch.
    pub at: u64,
}

/// State could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// I/O on the state file or its directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file exists but is not valid state.
    #[error(
        "{path}: corrupt state file ({message}); move it away to start this LUN with empty state"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl StateFile {
    /// Reads the state at `path`; `Ok(None)` if there is none yet.
    pub fn load(path: &Path) -> Result<Option<StateFile>, PersistError> {
        match fs::read(path) {
            Ok(bytes) => {
                let corrupt = |message: String| PersistError::Corrupt {
                    path: path.to_path_buf(),
                    message,
                };
                let state: StateFile =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                if state.config_string.len() > crate::wire::CONFIG_STRING_MAX {
                    return Err(corrupt(format!(
                        "config string of {} bytes (at most 1024)",
                        state.config_string.len()
                    )));
                }
                if state.mask.len() > 255 || state.reserve.len() > 255 {
                    return Err(corrupt(format!(
                        "{} mask / {} reserve entries (at most 255 each)",
                        state.mask.len(),
                        state.reserve.len()
                    )));
                }
                Ok(Some(state))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Replaces the state at `path` atomically and durably.
    pub fn store(&self, path: &Path) -> Result<(), PersistError> {
        store_json(self, path)
    }
}

/// Replaces the file at `path` with `value` as pretty JSON, atomically and durably.
pub fn store_json<T: Serialize>(value: &T, path: &Path) -> Result<(), PersistError> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| PersistError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &body)
}

/// Replaces the file at `path` with `body` atomically and durably: temporary file, fsync,
/// rename, fsync of the directory.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<(), PersistError> {
    replace_file(path, body)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Replaces the file at `path` with `body` (temporary file, fsync, rename); durable once
/// its directory is synced ([`sync_dir`]), which a group commit does once for many files.
pub fn replace_file(path: &Path, body: &[u8]) -> Result<(), PersistError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(body).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Makes renames inside `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}
