//! Write-intent bookkeeping: the array is cut into regions; a region is marked dirty (and the
//! mark made durable by the caller) before the first write into it is issued, and cleared
//! lazily once no write has touched it for a while. After a crash only dirty regions resync.
//! A region is *durable* once a bitmap write showing it dirty is the newest on the members
//! and no clear has been made since: only then may writes there go without a new mark (the
//! worker queues marks to a writer thread and holds the writes until they land).

/// Byte position of the on-disk bitmap block on every member (after the two superblocks).
pub const BITMAP_OFFSET: u64 = 8192;
/// Bytes of the on-disk bitmap block.
pub const BITMAP_BYTES: usize = 4096;
const BITMAP_MAGIC: &[u8; 8] = b"ESBITMAP";
const BITS_AT: usize = 64;
/// Most regions one bitmap block describes.
pub const MAX_REGIONS: u64 = ((BITMAP_BYTES - BITS_AT - 4) * 8) as u64;
/// Smallest region: 1 MiB, so a crash resyncs little while a random write load does not
/// mark a new region (one bitmap write its writes wait for) for every few writes.
pub const MIN_REGION_SECTORS: u64 = 2048;

/// The region size for an array of `array_sectors`: a power of two, at least 1 MiB, and
/// small enough that one block of bits covers the array.
pub fn region_sectors_for(array_sectors: u64) -> u64 {
    array_sectors
        .div_ceil(MAX_REGIONS)
        .max(MIN_REGION_SECTORS)
        .next_power_of_two()
}

/// The in-memory bitmap with per-region in-flight counts.
#[derive(Debug, Clone)]
pub struct WriteIntent {
    region_sectors: u64,
    dirty: Vec<bool>,
    /// The region is dirty on disk, and no bitmap write still to come clears it: a write
    /// there may be issued without another bitmap write.
    durable: Vec<bool>,
    /// Writes waiting for their region's mark to reach the disk (the region stays dirty).
    held: Vec<u32>,
    /// The bitmap version current when the region was last cleared in memory: a bitmap
    /// write of that version or older still showed it dirty.
    cleared_at: Vec<u64>,
    in_flight: Vec<u32>,
    /// Clock tick of the last write completion per region (caller-defined ticks).
    last_write: Vec<u64>,
}

impl WriteIntent {
    /// Regions of `region_sectors` (a power of two) covering `array_sectors`.
    pub fn new(array_sectors: u64, region_sectors: u64) -> WriteIntent {
        let region_sectors = region_sectors.max(1).next_power_of_two();
        let n = array_sectors.div_ceil(region_sectors) as usize;
        WriteIntent {
            region_sectors,
            dirty: vec![false; n],
            durable: vec![false; n],
            held: vec![0; n],
            cleared_at: vec![0; n],
            in_flight: vec![0; n],
            last_write: vec![0; n],
        }
    }

    /// Must a write of `sectors` from `lba` wait for a bitmap write (some region of it is not
    /// durably marked dirty)?
    pub fn needs_mark(&self, lba: u64, sectors: u64) -> bool {
        self.regions(lba, sectors).any(|r| !self.durable[r])
    }

    /// A write waits for its mark: its regions become dirty in memory and stay dirty.
    pub fn hold(&mut self, lba: u64, sectors: u64) {
        for r in self.regions(lba, sectors) {
            self.held[r] += 1;
            self.dirty[r] = true;
        }
    }

    /// The write that [`WriteIntent::hold`] kept waiting goes ahead (or gives up).
    pub fn unhold(&mut self, lba: u64, sectors: u64) {
        for r in self.regions(lba, sectors) {
            self.held[r] = self.held[r].saturating_sub(1);
        }
    }

    /// The dirty bits as a bitmap write made now records them.
    pub fn snapshot(&self) -> Vec<bool> {
        self.dirty.clone()
    }

    /// A bitmap write of `snapshot`, version `version`, reached the disk and is the newest
    /// there: its regions that are still dirty, and were not cleared since, are durable.
    pub fn written(&mut self, snapshot: &[bool], version: u64) {
        for r in 0..self.dirty.len() {
            let on_disk = snapshot.get(r).copied().unwrap_or(false);
            self.durable[r] = on_disk && self.dirty[r] && self.cleared_at[r] < version;
        }
    }

    /// Clears region `r` in memory; `version` is the newest bitmap version assigned so far.
    fn clear(&mut self, r: usize, version: u64) {
        self.dirty[r] = false;
        self.durable[r] = false;
        self.cleared_at[r] = version;
    }

    /// Sectors per region.
    pub fn region_sectors(&self) -> u64 {
        self.region_sectors
    }

    fn regions(&self, lba: u64, sectors: u64) -> std::ops::Range<usize> {
        let first = (lba / self.region_sectors) as usize;
        let last = ((lba + sectors.max(1) - 1) / self.region_sectors) as usize;
        first.min(self.dirty.len())..(last + 1).min(self.dirty.len())
    }

    /// A write of `sectors` from `lba` starts. Returns true if some region is not durably
    /// marked: the caller must persist the bitmap before issuing the write.
    pub fn begin_write(&mut self, lba: u64, sectors: u64) -> bool {
        let mut newly = false;
        for r in self.regions(lba, sectors) {
            self.in_flight[r] += 1;
            newly |= !self.dirty[r] || !self.durable[r];
            self.dirty[r] = true;
        }
        newly
    }

    /// The write finished at clock `now`.
    pub fn end_write(&mut self, lba: u64, sectors: u64, now: u64) {
        for r in self.regions(lba, sectors) {
            self.in_flight[r] = self.in_flight[r].saturating_sub(1);
            self.last_write[r] = now;
        }
    }

    /// Clears regions idle since `now - idle` with nothing in flight or waiting; returns how
    /// many were cleared (the caller writes the bitmap, version > `version`, when non-zero).
    pub fn clear_idle(&mut self, now: u64, idle: u64, version: u64) -> usize {
        let mut cleared = 0;
        for r in 0..self.dirty.len() {
            if self.dirty[r]
                && self.in_flight[r] == 0
                && self.held[r] == 0
                && now.saturating_sub(self.last_write[r]) >= idle
            {
                self.clear(r, version);
                cleared += 1;
            }
        }
        cleared
    }

    /// Dirty regions as array sector ranges (what a resync after a crash must cover).
    pub fn dirty_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.dirty
            .iter()
            .enumerate()
            .filter(|(_, d)| **d)
            .map(|(r, _)| (r as u64 * self.region_sectors, self.region_sectors))
    }

    /// Packs the dirty bits (bit r of byte r/8).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.dirty.len().div_ceil(8)];
        for (r, d) in self.dirty.iter().enumerate() {
            if *d {
                out[r / 8] |= 1 << (r % 8);
            }
        }
        out
    }

    /// Whether the region holding `lba` is dirty.
    pub fn is_dirty_at(&self, lba: u64) -> bool {
        self.dirty
            .get((lba / self.region_sectors) as usize)
            .copied()
            .unwrap_or(false)
    }

    /// Regions currently dirty.
    pub fn dirty_count(&self) -> usize {
        self.dirty.iter().filter(|d| **d).count()
    }

    /// Marks every region dirty (a new array that must be synced, or an unreadable bitmap).
    pub fn mark_all(&mut self) {
        self.dirty.fill(true);
    }

    /// The region holding `lba` has been resynced: clear it unless a write is in flight
    /// there (that write keeps it dirty until it ends). Returns true if it was cleared.
    pub fn synced(&mut self, lba: u64, version: u64) -> bool {
        let r = (lba / self.region_sectors) as usize;
        if r < self.dirty.len() && self.dirty[r] && self.in_flight[r] == 0 && self.held[r] == 0 {
            self.clear(r, version);
            return true;
        }
        false
    }

    /// The on-disk block: magic, array UUID, region size, region count, bits, CRC32C.
    pub fn encode_block(&self, array_uuid: &[u8; 16]) -> Vec<u8> {
        let mut b = vec![0u8; BITMAP_BYTES];
        b[0..8].copy_from_slice(BITMAP_MAGIC);
        b[8..24].copy_from_slice(array_uuid);
        b[24..32].copy_from_slice(&self.region_sectors.to_le_bytes());
        b[32..40].copy_from_slice(&(self.dirty.len() as u64).to_le_bytes());
        let bits = self.encode();
        let n = bits.len().min(BITMAP_BYTES - BITS_AT - 4);
        b[BITS_AT..BITS_AT + n].copy_from_slice(&bits[..n]);
        let crc = crc32c::crc32c(&b[..BITMAP_BYTES - 4]);
        b[BITMAP_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Loads an on-disk block; false (bits untouched) if it is not a valid block of this
    /// array with this geometry.
    pub fn load_block(&mut self, b: &[u8], array_uuid: &[u8; 16]) -> bool {
        if b.len() != BITMAP_BYTES || &b[0..8] != BITMAP_MAGIC || &b[8..24] != array_uuid {
            return false;
        }
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&b[BITMAP_BYTES - 4..]);
        if crc32c::crc32c(&b[..BITMAP_BYTES - 4]) != u32::from_le_bytes(crc) {
            return false;
        }
        let word = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(x)
        };
        if word(24) != self.region_sectors || word(32) != self.dirty.len() as u64 {
            return false;
        }
        let mut merged = self.encode();
        for (i, m) in merged.iter_mut().enumerate() {
            *m |= b.get(BITS_AT + i).copied().unwrap_or(0);
        }
        self.load(&merged);
        true
    }

    /// Loads dirty bits written by `encode` (extra bytes ignored, missing bytes = clean).
    pub fn load(&mut self, bits: &[u8]) {
        for r in 0..self.dirty.len() {
            self.dirty[r] = bits.get(r / 8).is_some_and(|b| b & (1 << (r % 8)) != 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_before_writes_and_clears_lazily() {
        let mut w = WriteIntent::new(1000, 100);
        assert_eq!(w.region_sectors(), 128);
        assert!(w.begin_write(120, 20), "regions 0 and 1 become dirty");
        assert!(
            w.begin_write(130, 1),
            "dirty but not yet on disk: the bitmap must still be written"
        );
        let persisted = w.snapshot();
        w.written(&persisted, 1);
        assert!(
            !w.begin_write(130, 1),
            "durably dirty: no persistence needed"
        );
        w.end_write(130, 1, 10);
        w.end_write(120, 20, 10);
        assert_eq!(
            w.clear_idle(11, 5, 0),
            0,
            "region 1 still has a write in flight, region 0 is too recent"
        );
        w.end_write(130, 1, 12);
        assert_eq!(w.clear_idle(20, 5, 0), 2);
        assert_eq!(w.dirty_ranges().count(), 0);
    }

    #[test]
    fn bits_survive_a_restart() {
        let mut w = WriteIntent::new(10_000, 128);
        w.begin_write(0, 1);
        w.begin_write(128 * 9, 300);
        let bits = w.encode();
        let mut again = WriteIntent::new(10_000, 128);
        again.load(&bits);
        let ranges: Vec<_> = again.dirty_ranges().collect();
        assert_eq!(
            ranges,
            vec![(0, 128), (1152, 128), (1280, 128), (1408, 128)]
        );
        again.load(&[]);
        assert_eq!(again.dirty_ranges().count(), 0);
    }

    #[test]
    fn blocks_round_trip_merge_and_reject_damage() {
        let uuid = [3u8; 16];
        let mut w = WriteIntent::new(1 << 20, region_sectors_for(1 << 20));
        assert_eq!(w.region_sectors(), MIN_REGION_SECTORS);
        w.begin_write(0, 1);
        let a = w.encode_block(&uuid);
        let mut v = WriteIntent::new(1 << 20, region_sectors_for(1 << 20));
        v.begin_write(5 * MIN_REGION_SECTORS, 1);
        let b = v.encode_block(&uuid);
        let mut r = WriteIntent::new(1 << 20, region_sectors_for(1 << 20));
        assert!(r.load_block(&a, &uuid));
        assert!(r.load_block(&b, &uuid), "blocks of several members merge");
        assert_eq!(r.dirty_count(), 2);
        let mut torn = a.clone();
        torn[BITS_AT] ^= 0x80;
        assert!(!r.load_block(&torn, &uuid), "checksum");
        assert!(!r.load_block(&a, &[4u8; 16]), "another array");
        let mut other = WriteIntent::new(1 << 22, region_sectors_for(1 << 22));
        assert!(!other.load_block(&a, &uuid), "other geometry");
        assert!(r.synced(0, 0));
        assert_eq!(r.dirty_count(), 1);
        assert!(region_sectors_for(u64::MAX / 1024) >= (u64::MAX / 1024) / MAX_REGIONS);
    }

    #[test]
    fn ranges_past_the_end_are_clamped() {
        let mut w = WriteIntent::new(256, 128);
        assert!(w.begin_write(200, 1000));
        w.end_write(200, 1000, 1);
        assert_eq!(w.clear_idle(5, 1, 0), 1);
    }
}

#[cfg(test)]
mod durability_tests {
    use super::*;

    #[test]
    fn a_region_is_durable_only_once_a_write_showing_it_dirty_is_the_newest_on_disk() {
        let mut w = WriteIntent::new(8 * 2048, 2048);
        assert!(w.needs_mark(0, 8));
        w.hold(0, 8);
        let v1 = w.snapshot();
        // Marked in memory, not yet on disk: still needs the mark.
        assert!(w.needs_mark(0, 8));
        w.written(&v1, 1);
        assert!(!w.needs_mark(0, 8), "the mark is on disk");
        w.unhold(0, 8);
        assert!(!w.begin_write(0, 8), "no bitmap write needed");
        w.end_write(0, 8, 1);
        // Cleared after version 1 was assigned: a late completion of an older write showing
        // it dirty must not make it durable again, and new writes there need a new mark.
        assert_eq!(w.clear_idle(10, 5, 1), 1);
        assert!(w.needs_mark(0, 8));
        w.hold(0, 8);
        w.written(&v1, 1);
        assert!(w.needs_mark(0, 8), "version 1 predates the clear");
        let v3 = w.snapshot();
        w.written(&v3, 3);
        assert!(!w.needs_mark(0, 8));
        // A held region is never cleared.
        assert_eq!(w.clear_idle(100, 5, 3), 0);
        w.unhold(0, 8);
        assert_eq!(w.clear_idle(100, 5, 3), 1);
    }
}
