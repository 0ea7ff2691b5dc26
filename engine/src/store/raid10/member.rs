//! One member disk of an array (or a hot spare): its descriptors and its metadata area
//! (two superblock copies, the write-intent bitmap block), read and written synchronously
//! with an fdatasync after each step so that the order of updates is the order on disk.

use super::badblocks::{BadBlocks, BADBLOCKS_BYTES, BADBLOCKS_OFFSET};
use super::bitmap::{BITMAP_BYTES, BITMAP_OFFSET};
use super::{Superblock, SUPERBLOCK_BYTES};
use crate::store::{Backing, BackingOptions, StoreError};
use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Sectors before the data area on every member: superblocks, bitmap, room to grow (1 MiB,
/// which also keeps the data area aligned for any device's O_DIRECT).
pub const DATA_OFFSET_SECTORS: u64 = 2048;

/// What the metadata area of a disk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    /// No superblock at all: a new or wiped disk.
    Blank,
    /// A valid superblock (the newer of the two copies).
    Member(Superblock),
    /// A superblock magic whose copies are both damaged: not trusted.
    Damaged(String),
}

/// An open member disk.
#[derive(Debug)]
pub struct MemberDisk {
    /// The shelf disk index (`<shelf>.<index>` in the console).
    pub disk: usize,
    backing: Backing,
    /// O_DIRECT refused an I/O here: use the buffered descriptor from now on.
    pub buffered_only: bool,
}

impl MemberDisk {
    /// Opens shelf disk `disk` at `path` read-write (O_DIRECT when the filesystem allows).
    pub fn open(disk: usize, path: &Path) -> Result<MemberDisk, StoreError> {
        let backing = Backing::open(
            path,
            &BackingOptions {
                exclusive: true,
                read_only: false,
                direct: true,
                offset: 0,
                length: None,
            },
        )?;
        Ok(MemberDisk {
            disk,
            backing,
            buffered_only: false,
        })
    }

    /// The disk's path.
    pub fn path(&self) -> &Path {
        self.backing.path()
    }

    /// A path for messages.
    pub fn path_buf(&self) -> PathBuf {
        self.backing.path().to_path_buf()
    }

    /// Whole-disk size in sectors.
    pub fn sectors(&self) -> u64 {
        self.backing.sectors()
    }

    /// Sectors available for data behind the metadata area.
    pub fn data_sectors(&self) -> u64 {
        self.sectors().saturating_sub(DATA_OFFSET_SECTORS)
    }

    /// The descriptor for data I/O.
    pub fn fd(&self) -> RawFd {
        if self.buffered_only {
            self.backing.buffered_fd()
        } else {
            self.backing.fd()
        }
    }

    /// Whether data I/O currently bypasses the page cache.
    pub fn is_direct(&self) -> bool {
        self.backing.is_direct() && !self.buffered_only
    }

    fn meta_file(&self) -> std::io::Result<std::fs::File> {
        // SAFETY: dup of a descriptor owned by `backing` for the duration of this call.
        let dup = unsafe { libc::dup(self.backing.buffered_fd()) };
        if dup < 0 {
            return Err(std::io::Error::last_os_error());
        }
        use std::os::fd::FromRawFd;
        // SAFETY: `dup` is a valid descriptor that nothing else owns.
        Ok(unsafe { std::fs::File::from_raw_fd(dup) })
    }

    /// A descriptor of its own for metadata writes on another thread (the member may be
    /// closed meanwhile; this stays valid until dropped).
    pub fn metadata_handle(&self) -> std::io::Result<std::fs::File> {
        self.meta_file()
    }

    /// Reads both superblock copies and says what the disk holds.
    pub fn read_metadata(&self) -> std::io::Result<Metadata> {
        let f = self.meta_file()?;
        let mut buf = vec![0u8; 2 * SUPERBLOCK_BYTES];
        f.read_exact_at(&mut buf, 0)?;
        let (a, b) = buf.split_at(SUPERBLOCK_BYTES);
        let magic = |x: &[u8]| &x[0..8] == b"ESRAID10";
        if !magic(a) && !magic(b) {
            return Ok(Metadata::Blank);
        }
        Ok(match Superblock::newest(a, b) {
            Ok(sb) => Metadata::Member(sb),
            Err(e) => Metadata::Damaged(e.to_string()),
        })
    }

    /// Writes `sb` to copy A, makes it stable, then copy B: a crash between the two leaves
    /// one valid copy (the newer or the older one), never none.
    pub fn write_superblock(&self, sb: &Superblock) -> std::io::Result<()> {
        let mut buf = vec![0u8; SUPERBLOCK_BYTES];
        sb.encode(&mut buf).map_err(std::io::Error::other)?;
        let f = self.meta_file()?;
        f.write_all_at(&buf, 0)?;
        f.sync_data()?;
        f.write_all_at(&buf, SUPERBLOCK_BYTES as u64)?;
        f.sync_data()
    }

    /// Erases both superblock copies and the bitmap (the disk becomes blank).
    pub fn wipe_metadata(&self) -> std::io::Result<()> {
        let f = self.meta_file()?;
        f.write_all_at(
            &vec![0u8; 2 * SUPERBLOCK_BYTES + BITMAP_BYTES + BADBLOCKS_BYTES],
            0,
        )?;
        f.sync_data()
    }

    /// Writes the bitmap block and makes it stable.
    pub fn write_bitmap(&self, block: &[u8]) -> std::io::Result<()> {
        let f = self.meta_file()?;
        f.write_all_at(block, BITMAP_OFFSET)?;
        f.sync_data()
    }

    /// Reads the bitmap block.
    pub fn read_bitmap(&self) -> std::io::Result<Vec<u8>> {
        let f = self.meta_file()?;
        let mut b = vec![0u8; BITMAP_BYTES];
        f.read_exact_at(&mut b, BITMAP_OFFSET)?;
        Ok(b)
    }

    /// Writes the bad-block list of array `uuid` and makes it stable.
    pub fn write_badblocks(&self, list: &BadBlocks, uuid: &[u8; 16]) -> std::io::Result<()> {
        let f = self.meta_file()?;
        f.write_all_at(&list.encode_block(uuid), BADBLOCKS_OFFSET)?;
        f.sync_data()
    }

    /// Reads the bad-block list of array `uuid` (empty when the disk holds none for it).
    pub fn read_badblocks(&self, uuid: &[u8; 16]) -> std::io::Result<BadBlocks> {
        let f = self.meta_file()?;
        let mut b = vec![0u8; BADBLOCKS_BYTES];
        f.read_exact_at(&mut b, BADBLOCKS_OFFSET)?;
        BadBlocks::decode_block(&b, uuid).map_err(std::io::Error::other)
    }

    /// True when the disk is now smaller than an array member of `member_sectors` data
    /// sectors needs (a file cut short, a device resized or gone).
    pub fn shrank_below(&self, member_sectors: u64) -> bool {
        let needed = (DATA_OFFSET_SECTORS + member_sectors) * 512;
        // A size that cannot be read says nothing: I/O errors will tell.
        self.backing
            .current_bytes()
            .is_ok_and(|bytes| bytes < needed)
    }

    /// Makes every write so far stable (fdatasync of the data descriptor).
    pub fn sync_data(&self) -> std::io::Result<()> {
        self.meta_file()?.sync_data()
    }

    /// Byte position of member data sector `sector`.
    pub fn byte_offset(&self, sector: u64) -> u64 {
        (DATA_OFFSET_SECTORS + sector) * 512
    }

    /// Reads `buf.len()` bytes of data at member data sector `sector` (used by tests and
    /// offline tools; the engine reads through io_uring).
    pub fn read_data(&self, sector: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.meta_file()?
            .read_exact_at(buf, self.byte_offset(sector))
    }
}
