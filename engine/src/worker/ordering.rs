//! Write ordering: a retransmitted (older) copy of a write must never land after a newer
//! write to the same sectors. Writes overlapping one in flight wait, in arrival order.

use std::collections::VecDeque;

/// A sector range of one LUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// LUN index.
    pub lun: u16,
    /// First sector.
    pub lba: u64,
    /// Sectors.
    pub count: u32,
}

impl Extent {
    /// True if both ranges share a sector of the same LUN.
    pub fn overlaps(&self, other: &Extent) -> bool {
        self.lun == other.lun
            && self.lba < other.lba + other.count as u64
            && other.lba < self.lba + self.count as u64
    }
}

/// In-flight and waiting writes, bounded by the slot count (no allocation after `new`).
pub struct WriteOrder {
    in_flight: Vec<(u32, Extent)>,
    waiting: VecDeque<(u32, Extent)>,
}

impl WriteOrder {
    /// Room for `slots` writes.
    pub fn new(slots: usize) -> WriteOrder {
        WriteOrder {
            in_flight: Vec::with_capacity(slots),
            waiting: VecDeque::with_capacity(slots),
        }
    }

    /// Admits a write: `true` = submit now (it is recorded in flight), `false` = it waits.
    pub fn admit(&mut self, slot: u32, extent: Extent) -> bool {
        let blocked = self
            .in_flight
            .iter()
            .chain(self.waiting.iter())
            .any(|(_, e)| e.overlaps(&extent));
        if blocked {
            self.waiting.push_back((slot, extent));
            false
        } else {
            self.in_flight.push((slot, extent));
            true
        }
    }

    /// Admits a write only if nothing overlaps it (no waiting): `true` = recorded in flight.
    pub fn try_admit(&mut self, slot: u32, extent: Extent) -> bool {
        let blocked = self
            .in_flight
            .iter()
            .chain(self.waiting.iter())
            .any(|(_, e)| e.overlaps(&extent));
        if !blocked {
            self.in_flight.push((slot, extent));
        }
        !blocked
    }

    /// Marks `slot` done and pushes into `ready` the waiting writes that may go now.
    pub fn complete(&mut self, slot: u32, ready: &mut Vec<u32>) {
        if let Some(pos) = self.in_flight.iter().position(|(s, _)| *s == slot) {
            self.in_flight.swap_remove(pos);
        }
        let mut i = 0;
        while i < self.waiting.len() {
            let (s, e) = self.waiting[i];
            let blocked = self
                .in_flight
                .iter()
                .chain(self.waiting.iter().take(i))
                .any(|(_, o)| o.overlaps(&e));
            if blocked {
                i += 1;
            } else {
                self.waiting.remove(i);
                self.in_flight.push((s, e));
                ready.push(s);
            }
        }
    }

    /// Writes submitted or waiting.
    pub fn pending(&self) -> usize {
        self.in_flight.len() + self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(lba: u64, count: u32) -> Extent {
        Extent { lun: 0, lba, count }
    }

    #[test]
    fn overlapping_writes_wait_in_arrival_order() {
        let mut o = WriteOrder::new(8);
        assert!(o.admit(1, ext(0, 2)));
        assert!(o.admit(2, ext(2, 2)), "adjacent is not overlapping");
        assert!(!o.admit(3, ext(1, 2)));
        assert!(!o.admit(4, ext(1, 1)), "waits behind 3, not only behind 1");
        assert!(
            o.admit(
                5,
                Extent {
                    lun: 1,
                    lba: 0,
                    count: 2
                }
            ),
            "other LUN is independent"
        );
        let mut ready = Vec::new();
        o.complete(1, &mut ready);
        assert!(ready.is_empty(), "3 still overlaps 2");
        o.complete(2, &mut ready);
        assert_eq!(ready, vec![3]);
        ready.clear();
        o.complete(3, &mut ready);
        assert_eq!(ready, vec![4]);
        o.complete(4, &mut ready);
        o.complete(5, &mut ready);
        assert_eq!(o.pending(), 0);
    }
}
