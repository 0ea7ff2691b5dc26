//! A file or block device slice (offset, length) exported as a LUN.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How to open a backing store.
#[derive(Debug, Clone)]
pub struct BackingOptions {
    /// Refuse writes (opened read-only).
    pub read_only: bool,
    /// Try O_DIRECT.
    pub direct: bool,
    /// Byte offset of the LUN in the store.
    pub offset: u64,
    /// Bytes exported; `None` = up to the end.
    pub length: Option<u64>,
    /// Own the disk alone (a RAID member or spare): an exclusive lock (and O_EXCL on a block
    /// device), so that no other LUN, array or process writes it. Otherwise a shared lock:
    /// slices of one store may be several LUNs, but never beside an exclusive owner.
    pub exclusive: bool,
}

/// A backing store could not be opened or is unusable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// open/stat/ioctl failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The store.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another LUN, array or process owns the store (or the same disk was named twice).
    #[error("{path}: in use: {holder} has it open{how} (or the same disk is named by two paths); it is not opened twice")]
    Busy {
        /// The store.
        path: PathBuf,
        /// Who is likely to hold it.
        holder: &'static str,
        /// The kind of lock that conflicts.
        how: &'static str,
    },
    /// The slice does not fit the store.
    #[error("{path}: {message}")]
    Geometry {
        /// The store.
        path: PathBuf,
        /// What does not fit.
        message: String,
    },
}

/// An open backing store.
#[derive(Debug)]
pub struct Backing {
    path: PathBuf,
    /// Opened with O_DIRECT when possible (else the same as `buffered`).
    direct: File,
    /// Opened without O_DIRECT, for requests O_DIRECT refuses (alignment).
    buffered: File,
    is_direct: bool,
    offset: u64,
    sectors: u64,
    read_only: bool,
}

// BLKGETSIZE64 = _IOR(0x12, 114, size_t)
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

fn size_of(file: &File, path: &Path) -> Result<u64, StoreError> {
    let meta = file.metadata().map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        what: "stat",
        source,
    })?;
    if meta.file_type().is_block_device() {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at `size`.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
        if rc != 0 {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                what: "BLKGETSIZE64",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(size)
    } else if meta.file_type().is_file() {
        Ok(meta.len())
    } else {
        Err(StoreError::Geometry {
            path: path.to_path_buf(),
            message: "not a regular file or block device".into(),
        })
    }
}

/// Takes a non-blocking advisory lock on the store: exclusive for a disk the shelf owns alone,
/// shared for a file LUN. Locks belong to the open file, so the same disk reached through two
/// paths in one shelf conflicts too.
fn lock(file: &File, path: &Path, exclusive: bool) -> Result<(), StoreError> {
    let how = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock on a descriptor this function borrows; it touches no memory.
    if unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Err(StoreError::Busy {
            path: path.to_path_buf(),
            holder: "another LUN, array member, spare or process",
            how: if exclusive {
                ""
            } else {
                " as a RAID member or spare"
            },
        });
    }
    Err(StoreError::Io {
        path: path.to_path_buf(),
        what: "flock",
        source: e,
    })
}

impl Backing {
    /// Opens `path` as described by `opts`.
    pub fn open(path: &Path, opts: &BackingOptions) -> Result<Backing, StoreError> {
        let open = |flags: i32| {
            OpenOptions::new()
                .read(true)
                .write(!opts.read_only)
                .custom_flags(flags)
                .open(path)
        };
        let is_block = std::fs::metadata(path)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        // O_EXCL on a block device claims it: the kernel refuses another exclusive opener
        // (another shelf, a mount, md) with EBUSY.
        let excl = if opts.exclusive && is_block {
            libc::O_EXCL
        } else {
            0
        };
        let buffered = open(excl).map_err(|source| match source.raw_os_error() {
            Some(libc::EBUSY) => StoreError::Busy {
                path: path.to_path_buf(),
                holder: "another program, a mount or this shelf",
                how: " exclusively",
            },
            _ => StoreError::Io {
                path: path.to_path_buf(),
                what: "open",
                source,
            },
        })?;
        lock(&buffered, path, opts.exclusive)?;
        let (direct, is_direct) = if opts.direct {
            match open(libc::O_DIRECT) {
                Ok(f) => (f, true),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "O_DIRECT not available; using the page cache");
                    (
                        buffered.try_clone().map_err(|source| StoreError::Io {
                            path: path.to_path_buf(),
                            what: "dup",
                            source,
                        })?,
                        false,
                    )
                }
            }
        } else {
            (
                buffered.try_clone().map_err(|source| StoreError::Io {
                    path: path.to_path_buf(),
                    what: "dup",
                    source,
                })?,
                false,
            )
        };
        let total = size_of(&buffered, path)?;
        if opts.offset > total {
            return Err(StoreError::Geometry {
                path: path.to_path_buf(),
                message: format!("offset {} is past the end ({} bytes)", opts.offset, total),
            });
        }
        let available = total - opts.offset;
        let bytes = match opts.length {
            Some(len) if len > available => {
                return Err(StoreError::Geometry {
                    path: path.to_path_buf(),
                    message: format!(
                        "offset {} + length {} is past the end ({} bytes)",
                        opts.offset, len, total
                    ),
                })
            }
            Some(len) => len,
            None => available,
        };
        let sectors = bytes / 512;
        if sectors == 0 {
            return Err(StoreError::Geometry {
                path: path.to_path_buf(),
                message: "smaller than one 512-byte sector (grow it, e.g. truncate -s 1G FILE)"
                    .into(),
            });
        }
        Ok(Backing {
            path: path.to_path_buf(),
            direct,
            buffered,
            is_direct,
            offset: opts.offset,
            sectors,
            read_only: opts.read_only,
        })
    }

    /// The size of the file or device now, in bytes (it may have shrunk since it was opened).
    /// A stat or ioctl, answered from the inode: it never waits on the disk.
    pub fn current_bytes(&self) -> Result<u64, StoreError> {
        size_of(&self.buffered, &self.path)
    }

    /// The store's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Exported size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }
    /// Whether O_DIRECT is in use.
    pub fn is_direct(&self) -> bool {
        self.is_direct
    }
    /// Whether writes are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }
    /// Descriptor for normal I/O (O_DIRECT if available).
    pub fn fd(&self) -> RawFd {
        self.direct.as_raw_fd()
    }
    /// Descriptor without O_DIRECT, for the alignment fallback.
    pub fn buffered_fd(&self) -> RawFd {
        self.buffered.as_raw_fd()
    }
    /// Byte position of LUN sector `lba` in the store.
    pub fn byte_offset(&self, lba: u64) -> u64 {
        self.offset + lba * 512
    }
}
