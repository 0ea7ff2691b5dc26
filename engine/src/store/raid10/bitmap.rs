//! Write-intent bookkeeping: the array is cut into regions; a region is marked dirty (and the
//! mark made durable by the caller) before the first write into it is issued, and cleared
//! lazily once no write has touched it for a while. After a crash only dirty regions resync.

/// The in-memory bitmap with per-region in-flight counts.
#[derive(Debug, Clone)]
pub struct WriteIntent {
    region_sectors: u64,
    dirty: Vec<bool>,
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
            in_flight: vec![0; n],
            last_write: vec![0; n],
        }
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

    /// A write of `sectors` from `lba` starts. Returns true if some region became dirty: the
    /// caller must persist the bitmap before issuing the write.
    pub fn begin_write(&mut self, lba: u64, sectors: u64) -> bool {
        let mut newly = false;
        for r in self.regions(lba, sectors) {
            self.in_flight[r] += 1;
            newly |= !self.dirty[r];
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

    /// Clears regions idle since `now - idle` with nothing in flight; returns how many were
    /// cleared (the caller persists the bitmap when non-zero).
    pub fn clear_idle(&mut self, now: u64, idle: u64) -> usize {
        let mut cleared = 0;
        for r in 0..self.dirty.len() {
            if self.dirty[r]
                && self.in_flight[r] == 0
                && now.saturating_sub(self.last_write[r]) >= idle
            {
                self.dirty[r] = false;
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
            !w.begin_write(130, 1),
            "already dirty: no persistence needed"
        );
        w.end_write(120, 20, 10);
        assert_eq!(
            w.clear_idle(11, 5),
            0,
            "region 1 still has a write in flight, region 0 is too recent"
        );
        w.end_write(130, 1, 12);
        assert_eq!(w.clear_idle(20, 5), 2);
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
    fn ranges_past_the_end_are_clamped() {
        let mut w = WriteIntent::new(256, 128);
        assert!(w.begin_write(200, 1000));
        w.end_write(200, 1000, 1);
        assert_eq!(w.clear_idle(5, 1), 1);
    }
}
