//! The superblock every RAID-10 member carries (two copies, at byte 0 and 4096), so that an
//! array assembles from member paths alone, members in the wrong order are recognised by their
//! role, and a stale member (older event counter) is never trusted.
//!
//! Layout (little-endian, 4096 bytes): magic "ESRAID10", version, array UUID, role, members,
//! chunk sectors, event counter, array state, member state, data offset, member data sectors,
//! array sectors, rebuild checkpoint, home LUN (shelf, slot, present flag); CRC32C of bytes 0..4092 in the last four bytes. Writers
//! update copy A, make it stable, then copy B, so a torn write leaves one valid copy.

use super::MAX_MEMBERS;

/// Where the per-role "seen in sync" events start (one u64 per role), and their flag.
const SEEN_AT: usize = 128;
const SEEN_FLAG: usize = 120;

/// Bytes of one superblock copy.
pub const SUPERBLOCK_BYTES: usize = 4096;
const MAGIC: &[u8; 8] = b"ESRAID10";
const VERSION: u32 = 1;

/// A member's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// In service, in sync.
    Active,
    /// A hot spare, holding no array data.
    Spare,
    /// Failed: never read again until replaced.
    Failed,
    /// Being rebuilt; data below the checkpoint is valid.
    Recovering,
}

impl MemberState {
    fn code(self) -> u8 {
        match self {
            MemberState::Active => 0,
            MemberState::Spare => 1,
            MemberState::Failed => 2,
            MemberState::Recovering => 3,
        }
    }
    fn from_code(c: u8) -> Option<MemberState> {
        Some(match c {
            0 => MemberState::Active,
            1 => MemberState::Spare,
            2 => MemberState::Failed,
            3 => MemberState::Recovering,
            _ => return None,
        })
    }
}

/// A decoded superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Identity of the array the member belongs to.
    pub array_uuid: [u8; 16],
    /// The member's position in the layout.
    pub role: u32,
    /// Members in the array.
    pub members: u32,
    /// Chunk size in sectors.
    pub chunk_sectors: u32,
    /// Bumped on every membership or state change; the highest wins.
    pub event: u64,
    /// True while writes may be in flight (unclean shutdown if found set at start).
    pub dirty: bool,
    /// The member's state.
    pub state: MemberState,
    /// First sector of array data on the member.
    pub data_offset: u64,
    /// Data sectors the member contributes.
    pub member_sectors: u64,
    /// Array capacity in sectors.
    pub array_sectors: u64,
    /// Sectors already rebuilt (meaningful while `Recovering`).
    pub rebuild_checkpoint: u64,
    /// The LUN (shelf, slot) the array was exported as, for `restore` after a move.
    pub home: Option<(u16, u8)>,
    /// Per role, the last event at which the writer saw that role in sync (`None` in
    /// superblocks of an older shelf). A member that went on writing events after the newest
    /// superblock last saw it ran on its own: split brain.
    pub seen: Option<Box<[u64; MAX_MEMBERS]>>,
}

/// A superblock copy that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    /// Not ours (no magic): an empty disk or another format.
    #[error("no ethershelf RAID-10 superblock")]
    NoMagic,
    /// Written by a newer version.
    #[error("superblock version {0} is newer than this ethershelf understands (1)")]
    Version(u32),
    /// Torn or corrupted.
    #[error("superblock checksum mismatch")]
    Checksum,
    /// Fields that cannot be.
    #[error("superblock field out of range: {0}")]
    Invalid(&'static str),
    /// The buffer is not 4096 bytes.
    #[error("superblock buffer of {0} bytes (need 4096)")]
    Size(usize),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Superblock {
    /// Whether the writer already knew role `r` to be out of sync (failed, missing or being
    /// rebuilt) when it wrote this: a start without that role is as degraded as before.
    pub fn knew_out(&self, r: usize) -> bool {
        self.seen
            .as_ref()
            .is_some_and(|s| s.get(r).is_some_and(|e| *e < self.event))
    }

    /// Writes the superblock into a 4096-byte buffer.
    pub fn encode(&self, out: &mut [u8]) -> Result<(), SuperblockError> {
        if out.len() != SUPERBLOCK_BYTES {
            return Err(SuperblockError::Size(out.len()));
        }
        out.fill(0);
        out[0..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..28].copy_from_slice(&self.array_uuid);
        out[28..32].copy_from_slice(&self.role.to_le_bytes());
        out[32..36].copy_from_slice(&self.members.to_le_bytes());
        out[36..40].copy_from_slice(&self.chunk_sectors.to_le_bytes());
        out[40..48].copy_from_slice(&self.event.to_le_bytes());
        out[48] = self.dirty as u8;
        out[49] = self.state.code();
        out[56..64].copy_from_slice(&self.data_offset.to_le_bytes());
        out[64..72].copy_from_slice(&self.member_sectors.to_le_bytes());
        out[72..80].copy_from_slice(&self.array_sectors.to_le_bytes());
        out[80..88].copy_from_slice(&self.rebuild_checkpoint.to_le_bytes());
        if let Some((shelf, slot)) = self.home {
            out[88..90].copy_from_slice(&shelf.to_le_bytes());
            out[90] = slot;
            out[91] = 1;
        }
        if let Some(seen) = &self.seen {
            out[SEEN_FLAG] = 1;
            for (r, e) in seen.iter().enumerate() {
                out[SEEN_AT + r * 8..SEEN_AT + r * 8 + 8].copy_from_slice(&e.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&out[..SUPERBLOCK_BYTES - 4]);
        out[SUPERBLOCK_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Reads and checks one copy.
    pub fn decode(b: &[u8]) -> Result<Superblock, SuperblockError> {
        if b.len() != SUPERBLOCK_BYTES {
            return Err(SuperblockError::Size(b.len()));
        }
        if &b[0..8] != MAGIC {
            return Err(SuperblockError::NoMagic);
        }
        if crc32c::crc32c(&b[..SUPERBLOCK_BYTES - 4]) != u32_at(b, SUPERBLOCK_BYTES - 4) {
            return Err(SuperblockError::Checksum);
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(SuperblockError::Version(version));
        }
        let mut array_uuid = [0u8; 16];
        array_uuid.copy_from_slice(&b[12..28]);
        let sb = Superblock {
            array_uuid,
            role: u32_at(b, 28),
            members: u32_at(b, 32),
            chunk_sectors: u32_at(b, 36),
            event: u64_at(b, 40),
            dirty: b[48] != 0,
            state: MemberState::from_code(b[49]).ok_or(SuperblockError::Invalid("member state"))?,
            data_offset: u64_at(b, 56),
            member_sectors: u64_at(b, 64),
            array_sectors: u64_at(b, 72),
            rebuild_checkpoint: u64_at(b, 80),
            home: (b[91] == 1).then(|| (u16::from_le_bytes([b[88], b[89]]), b[90])),
            seen: (b[SEEN_FLAG] == 1)
                .then(|| Box::new(std::array::from_fn(|r| u64_at(b, SEEN_AT + r * 8)))),
        };
        if sb.members < 2
            || sb.members as usize > super::MAX_MEMBERS
            || (sb.state != MemberState::Spare && sb.role >= sb.members)
        {
            return Err(SuperblockError::Invalid("role/members"));
        }
        if !(8..=super::MAX_CHUNK_SECTORS).contains(&u64::from(sb.chunk_sectors))
            || !sb.chunk_sectors.is_power_of_two()
        {
            return Err(SuperblockError::Invalid("chunk size"));
        }
        if sb.data_offset < (2 * SUPERBLOCK_BYTES as u64) / 512 {
            return Err(SuperblockError::Invalid(
                "data offset overlaps the superblocks",
            ));
        }
        Ok(sb)
    }

    /// Picks the copy to trust from the two on a member: the valid one with the higher event
    /// counter (a torn update of copy A leaves copy B, and the reverse).
    pub fn newest(a: &[u8], b: &[u8]) -> Result<Superblock, SuperblockError> {
        match (Superblock::decode(a), Superblock::decode(b)) {
            (Ok(x), Ok(y)) => Ok(if y.event > x.event { y } else { x }),
            (Ok(x), Err(_)) | (Err(_), Ok(x)) => Ok(x),
            (Err(e), Err(_)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(event: u64) -> Superblock {
        Superblock {
            array_uuid: [7; 16],
            role: 2,
            members: 4,
            chunk_sectors: 128,
            event,
            dirty: true,
            state: MemberState::Recovering,
            data_offset: 2048,
            member_sectors: 1 << 20,
            array_sectors: 1 << 21,
            rebuild_checkpoint: 4096,
            home: Some((7, 3)),
            seen: Some(Box::new(std::array::from_fn(|r| {
                event.saturating_sub(r as u64)
            }))),
        }
    }

    #[test]
    fn round_trip_and_corruption_detected() {
        let mut buf = vec![0u8; SUPERBLOCK_BYTES];
        sample(9).encode(&mut buf).unwrap();
        assert_eq!(Superblock::decode(&buf).unwrap(), sample(9));
        let mut torn = buf.clone();
        torn[100] ^= 1;
        assert_eq!(Superblock::decode(&torn), Err(SuperblockError::Checksum));
        assert_eq!(
            Superblock::decode(&[0u8; SUPERBLOCK_BYTES]),
            Err(SuperblockError::NoMagic)
        );
        assert_eq!(
            Superblock::decode(&buf[..512]),
            Err(SuperblockError::Size(512))
        );
    }

    #[test]
    fn newest_valid_copy_wins() {
        let (mut a, mut b) = (vec![0u8; SUPERBLOCK_BYTES], vec![0u8; SUPERBLOCK_BYTES]);
        sample(10).encode(&mut a).unwrap();
        sample(11).encode(&mut b).unwrap();
        assert_eq!(Superblock::newest(&a, &b).unwrap().event, 11);
        b[4000] ^= 0xFF; // torn copy B: fall back to A
        assert_eq!(Superblock::newest(&a, &b).unwrap().event, 10);
        a[0] = 0;
        assert!(Superblock::newest(&a, &b).is_err());
    }

    #[test]
    fn impossible_fields_are_refused() {
        let mut buf = vec![0u8; SUPERBLOCK_BYTES];
        let mut s = sample(1);
        s.role = 4;
        s.encode(&mut buf).unwrap();
        assert_eq!(
            Superblock::decode(&buf),
            Err(SuperblockError::Invalid("role/members"))
        );
        s = sample(1);
        s.chunk_sectors = 100;
        s.encode(&mut buf).unwrap();
        assert_eq!(
            Superblock::decode(&buf),
            Err(SuperblockError::Invalid("chunk size"))
        );
        s = sample(1);
        s.data_offset = 8;
        s.encode(&mut buf).unwrap();
        assert!(Superblock::decode(&buf).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), SUPERBLOCK_BYTES..=SUPERBLOCK_BYTES)) {
            let _ = Superblock::decode(&bytes);
        }
    }
}
