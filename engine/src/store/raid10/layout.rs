//! The md-style "near 2" RAID-10 layout over any number (>= 2) of members.
//!
//! The array is cut into chunks. Chunk k's two copies take the slots 2k and 2k+1 of a row-major
//! walk over the members: slot s lives on member s % N, in row s / N. With an even member count
//! this is the classic stripe of mirrored pairs; with an odd count the pairs rotate, as md does.

/// Copies of every chunk.
pub const COPIES: u64 = 2;
/// Most members an array may have (the YAML, the console and superblocks read from disks
/// are all held to it).
pub const MAX_MEMBERS: usize = 64;
/// Largest chunk: 16 MiB.
pub const MAX_CHUNK_SECTORS: u64 = 32768;

/// The layout was asked for something impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Fewer than two members.
    #[error("RAID-10 needs at least 2 members, got {0}")]
    TooFewMembers(usize),
    /// More members than an array may have.
    #[error("RAID-10 takes at most 64 members, got {0}")]
    TooManyMembers(usize),
    /// The chunk is not a power of two of at least 4 KiB.
    #[error("chunk of {0} sectors is not a power of two from 8 sectors (4 KiB) to 32768 (16 MiB)")]
    BadChunk(u64),
    /// The members hold less than one row of chunks.
    #[error("members of {0} data sectors hold no full chunk")]
    TooSmall(u64),
}

/// Where a piece of an array request lives: both copies, same length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// First array sector of the piece.
    pub array_lba: u64,
    /// Sectors (never crosses a chunk boundary).
    pub sectors: u64,
    /// (member index, sector within the member's data area) of each copy.
    pub copies: [(usize, u64); COPIES as usize],
}

/// A near-2 layout: member count, chunk size and usable rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    members: usize,
    chunk: u64,
    rows: u64,
}

impl Layout {
    /// A layout of `members` members of `member_sectors` data sectors each (the smallest
    /// member's), with chunks of `chunk_sectors`.
    pub fn new(
        members: usize,
        chunk_sectors: u64,
        member_sectors: u64,
    ) -> Result<Layout, LayoutError> {
        if members < 2 {
            return Err(LayoutError::TooFewMembers(members));
        }
        if members > MAX_MEMBERS {
            return Err(LayoutError::TooManyMembers(members));
        }
        if !(8..=MAX_CHUNK_SECTORS).contains(&chunk_sectors) || !chunk_sectors.is_power_of_two() {
            return Err(LayoutError::BadChunk(chunk_sectors));
        }
        let rows = member_sectors / chunk_sectors;
        if rows == 0 {
            return Err(LayoutError::TooSmall(member_sectors));
        }
        Ok(Layout {
            members,
            chunk: chunk_sectors,
            rows,
        })
    }

    /// Members.
    pub fn members(&self) -> usize {
        self.members
    }
    /// Chunk size in sectors.
    pub fn chunk_sectors(&self) -> u64 {
        self.chunk
    }
    /// Chunks the array holds: every full pair of slots over all rows.
    pub fn chunks(&self) -> u64 {
        self.rows * self.members as u64 / COPIES
    }
    /// Array capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.chunks() * self.chunk
    }
    /// Member sectors used (rows x chunk).
    pub fn member_sectors_used(&self) -> u64 {
        self.rows * self.chunk
    }

    /// The copies of array sector `lba` (which must be below `sectors()`).
    pub fn locate(&self, lba: u64) -> [(usize, u64); COPIES as usize] {
        let (chunk, within) = (lba / self.chunk, lba % self.chunk);
        let n = self.members as u64;
        let place = |slot: u64| ((slot % n) as usize, (slot / n) * self.chunk + within);
        [place(chunk * COPIES), place(chunk * COPIES + 1)]
    }

    /// Splits `sectors` sectors from `lba` into chunk-bounded pieces, in order. Returns
    /// `None` if the range leaves the array.
    pub fn pieces(&self, lba: u64, sectors: u64) -> Option<impl Iterator<Item = Piece> + '_> {
        let end = lba.checked_add(sectors)?;
        if end > self.sectors() {
            return None;
        }
        let mut at = lba;
        Some(std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let len = (self.chunk - at % self.chunk).min(end - at);
            let piece = Piece {
                array_lba: at,
                sectors: len,
                copies: self.locate(at),
            };
            at += len;
            Some(piece)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn four_members_are_mirrored_pairs_striped() {
        let l = Layout::new(4, 128, 1000).unwrap();
        assert_eq!(l.chunks(), 7 * 4 / 2);
        assert_eq!(l.sectors(), 14 * 128);
        assert_eq!(l.locate(0), [(0, 0), (1, 0)]);
        assert_eq!(l.locate(128), [(2, 0), (3, 0)]);
        assert_eq!(l.locate(256 + 5), [(0, 128 + 5), (1, 128 + 5)]);
    }

    #[test]
    fn three_members_rotate_pairs() {
        let l = Layout::new(3, 8, 16).unwrap();
        assert_eq!(l.chunks(), 3);
        assert_eq!(l.locate(0), [(0, 0), (1, 0)]);
        assert_eq!(l.locate(8), [(2, 0), (0, 8)]);
        assert_eq!(l.locate(16), [(1, 8), (2, 8)]);
    }

    #[test]
    fn refuses_impossible_layouts() {
        assert_eq!(
            Layout::new(1, 128, 1000),
            Err(LayoutError::TooFewMembers(1))
        );
        assert_eq!(Layout::new(2, 100, 1000), Err(LayoutError::BadChunk(100)));
        assert_eq!(Layout::new(2, 4, 1000), Err(LayoutError::BadChunk(4)));
        assert_eq!(Layout::new(2, 128, 100), Err(LayoutError::TooSmall(100)));
        assert!(Layout::new(2, 8, 100).unwrap().pieces(90, 20).is_none());
        assert!(Layout::new(2, 8, 100)
            .unwrap()
            .pieces(u64::MAX, 2)
            .is_none());
    }

    proptest! {
        /// Every array sector has two copies on different members, inside the used area, and
        /// no member sector holds two different array sectors.
        #[test]
        fn copies_are_distinct_and_injective(members in 2usize..9, chunk_pow in 3u32..8, rows in 1u64..6) {
            let chunk = 1u64 << chunk_pow;
            let l = Layout::new(members, chunk, rows * chunk + 3).unwrap();
            let mut seen = std::collections::HashSet::new();
            for lba in 0..l.sectors() {
                let [a, b] = l.locate(lba);
                prop_assert_ne!(a.0, b.0);
                for (m, off) in [a, b] {
                    prop_assert!(m < members && off < l.member_sectors_used());
                    prop_assert!(seen.insert((m, off)), "member sector used twice");
                }
            }
        }

        /// Pieces cover a range exactly, in order, never crossing a chunk.
        #[test]
        fn pieces_cover_ranges(members in 2usize..7, lba in 0u64..400, len in 1u64..300) {
            let l = Layout::new(members, 16, 200).unwrap();
            let pieces: Option<Vec<Piece>> = l.pieces(lba, len).map(|it| it.collect());
            match pieces {
                None => prop_assert!(lba + len > l.sectors()),
                Some(it) => {
                    let mut at = lba;
                    for p in it {
                        prop_assert_eq!(p.array_lba, at);
                        prop_assert!(p.sectors > 0 && p.array_lba / 16 == (p.array_lba + p.sectors - 1) / 16);
                        prop_assert_eq!(p.copies, l.locate(at));
                        at += p.sectors;
                    }
                    prop_assert_eq!(at, lba + len);
                }
            }
        }
    }
}
