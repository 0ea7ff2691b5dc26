//! Per-member bad-block list (md's "badblocks"): member data ranges whose content is not the
//! array's data (a rebuild could not read their source, or a write to the last copy failed).
//! A listed range is never read from that member; a successful write over it takes it off the
//! list. The list is bounded: when it is full, the two closest ranges are merged (the list
//! only ever grows towards "more sectors unreadable", never towards serving unknown data).
//! It lives in a checksummed block of the member's metadata area, tied to the array UUID.

use super::bitmap::{BITMAP_BYTES, BITMAP_OFFSET};

/// Byte position of the on-disk bad-block block (behind the bitmap block).
pub const BADBLOCKS_OFFSET: u64 = BITMAP_OFFSET + BITMAP_BYTES as u64;
/// Bytes of the on-disk bad-block block.
pub const BADBLOCKS_BYTES: usize = 4096;
const MAGIC: &[u8; 8] = b"ESBADBLK";
const HEADER: usize = 32;
const ENTRY: usize = 16;
/// Ranges one block holds.
pub const MAX_RANGES: usize = (BADBLOCKS_BYTES - HEADER - 4) / ENTRY;

/// Sorted, disjoint, non-adjacent ranges `[start, end)` of member data sectors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadBlocks {
    ranges: Vec<(u64, u64)>,
    /// Changed since it was last written to the member.
    pub unsaved: bool,
}

impl BadBlocks {
    /// An empty list.
    pub fn new() -> BadBlocks {
        BadBlocks::default()
    }

    /// The ranges, as `(start, end)` member sectors.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Sectors listed.
    pub fn sectors(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// True when any of `sectors` from `start` is listed.
    pub fn overlaps(&self, start: u64, sectors: u64) -> bool {
        let end = start.saturating_add(sectors);
        // First range whose end lies past `start`.
        let i = self.ranges.partition_point(|&(_, e)| e <= start);
        self.ranges.get(i).is_some_and(|&(s, _)| s < end)
    }

    /// Lists `sectors` from `start`. Returns true if the list changed.
    pub fn add(&mut self, start: u64, sectors: u64) -> bool {
        if sectors == 0 {
            return false;
        }
        let end = start.saturating_add(sectors);
        // Every range that overlaps or touches [start, end) is folded into one.
        let first = self.ranges.partition_point(|&(_, e)| e < start);
        let mut last = first;
        let (mut s, mut e) = (start, end);
        while last < self.ranges.len() && self.ranges[last].0 <= end {
            s = s.min(self.ranges[last].0);
            e = e.max(self.ranges[last].1);
            last += 1;
        }
        if last == first + 1 && self.ranges[first] == (s, e) {
            return false;
        }
        self.ranges.splice(first..last, [(s, e)]);
        while self.ranges.len() > MAX_RANGES {
            self.merge_closest();
        }
        self.unsaved = true;
        true
    }

    /// Takes `sectors` from `start` off the list (their data was just written). When
    /// removing would split a range of a full list, the range stays (conservative).
    /// Returns true if the list changed.
    pub fn clear(&mut self, start: u64, sectors: u64) -> bool {
        let end = start.saturating_add(sectors);
        let mut changed = false;
        let mut i = self.ranges.partition_point(|&(_, e)| e <= start);
        while i < self.ranges.len() && self.ranges[i].0 < end {
            let (s, e) = self.ranges[i];
            match (s < start, e > end) {
                (false, false) => {
                    self.ranges.remove(i);
                    changed = true;
                    continue;
                }
                (true, false) => self.ranges[i].1 = start,
                (false, true) => self.ranges[i].0 = end,
                (true, true) => {
                    if self.ranges.len() >= MAX_RANGES {
                        i += 1;
                        continue;
                    }
                    self.ranges[i].1 = start;
                    self.ranges.insert(i + 1, (end, e));
                    i += 1;
                }
            }
            changed = true;
            i += 1;
        }
        self.unsaved |= changed;
        changed
    }

    fn merge_closest(&mut self) {
        let Some(k) = (0..self.ranges.len().saturating_sub(1))
            .min_by_key(|&k| self.ranges[k + 1].0 - self.ranges[k].1)
        else {
            return;
        };
        self.ranges[k].1 = self.ranges[k + 1].1;
        self.ranges.remove(k + 1);
    }

    /// The on-disk block: magic, array UUID, count, ranges, CRC32C.
    pub fn encode_block(&self, array_uuid: &[u8; 16]) -> Vec<u8> {
        debug_assert!(self.ranges.len() <= MAX_RANGES);
        let mut b = vec![0u8; BADBLOCKS_BYTES];
        b[0..8].copy_from_slice(MAGIC);
        b[8..24].copy_from_slice(array_uuid);
        b[24..28].copy_from_slice(&(self.ranges.len() as u32).to_le_bytes());
        for (k, &(s, e)) in self.ranges.iter().take(MAX_RANGES).enumerate() {
            let at = HEADER + k * ENTRY;
            b[at..at + 8].copy_from_slice(&s.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&e.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[..BADBLOCKS_BYTES - 4]);
        b[BADBLOCKS_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a block written by `encode_block` for this array. A block of another array, or
    /// none at all, is an empty list; a damaged block of this array is an error (its ranges
    /// are unknown, so the member must not be trusted).
    pub fn decode_block(b: &[u8], array_uuid: &[u8; 16]) -> Result<BadBlocks, &'static str> {
        if b.len() != BADBLOCKS_BYTES || &b[0..8] != MAGIC || &b[8..24] != array_uuid {
            return Ok(BadBlocks::new());
        }
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&b[BADBLOCKS_BYTES - 4..]);
        if crc32c::crc32c(&b[..BADBLOCKS_BYTES - 4]) != u32::from_le_bytes(crc) {
            return Err("bad-block list checksum mismatch");
        }
        let mut n = [0u8; 4];
        n.copy_from_slice(&b[24..28]);
        let n = u32::from_le_bytes(n) as usize;
        if n > MAX_RANGES {
            return Err("bad-block list count out of range");
        }
        let word = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(x)
        };
        let mut list = BadBlocks::new();
        for k in 0..n {
            let at = HEADER + k * ENTRY;
            let (s, e) = (word(at), word(at + 8));
            if e <= s {
                return Err("bad-block list holds an empty range");
            }
            list.add(s, e - s);
        }
        list.unsaved = false;
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_merge_and_split() {
        let mut b = BadBlocks::new();
        assert!(b.add(10, 5));
        assert!(b.add(15, 5), "adjacent ranges fold");
        assert_eq!(b.ranges(), &[(10, 20)]);
        assert!(!b.add(12, 3), "already listed");
        assert!(b.overlaps(19, 1) && !b.overlaps(20, 8) && !b.overlaps(0, 10));
        assert!(b.clear(12, 2));
        assert_eq!(b.ranges(), &[(10, 12), (14, 20)]);
        assert!(b.clear(0, 100));
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_list_merges_instead_of_forgetting() {
        let mut b = BadBlocks::new();
        for k in 0..(MAX_RANGES as u64 + 10) {
            b.add(k * 100, 1);
        }
        assert_eq!(b.ranges().len(), MAX_RANGES);
        for k in 0..(MAX_RANGES as u64 + 10) {
            assert!(b.overlaps(k * 100, 1), "sector {} forgotten", k * 100);
        }
        // Splitting a range of a full list keeps it whole.
        let (s, e) = *b.ranges().iter().find(|(s, e)| e - s > 2).unwrap();
        b.clear(s + 1, 1);
        assert!(b.overlaps(s + 1, 1));
        assert!(b.overlaps(e - 1, 1));
    }

    #[test]
    fn block_round_trip_and_damage() {
        let uuid = [3u8; 16];
        let mut b = BadBlocks::new();
        b.add(1 << 40, 8);
        b.add(7, 1);
        let block = b.encode_block(&uuid);
        let back = BadBlocks::decode_block(&block, &uuid).unwrap();
        assert_eq!(back.ranges(), b.ranges());
        assert!(BadBlocks::decode_block(&block, &[4u8; 16])
            .unwrap()
            .is_empty());
        let mut torn = block.clone();
        torn[40] ^= 1;
        assert!(BadBlocks::decode_block(&torn, &uuid).is_err());
        assert!(BadBlocks::decode_block(&vec![0u8; BADBLOCKS_BYTES], &uuid)
            .unwrap()
            .is_empty());
    }

    proptest! {
        /// Against a plain set of sectors: a listed sector stays listed until cleared, and
        /// clearing never un-lists a sector outside the cleared range.
        #[test]
        fn matches_a_sector_set(ops in proptest::collection::vec((any::<bool>(), 0u64..400, 1u64..40), 1..200)) {
            let mut b = BadBlocks::new();
            let mut set = std::collections::BTreeSet::new();
            for (add, s, n) in ops {
                if add {
                    b.add(s, n);
                    set.extend(s..s + n);
                } else {
                    b.clear(s, n);
                    for x in s..s + n { set.remove(&x); }
                }
                for x in 0..450u64 {
                    if set.contains(&x) {
                        prop_assert!(b.overlaps(x, 1), "sector {} lost", x);
                    } else {
                        prop_assert!(!b.overlaps(x, 1), "sector {} listed without reason", x);
                    }
                }
            }
        }
    }
}
