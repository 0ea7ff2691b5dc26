//! The worker's frame buffers: one mmap'd region cut into fixed slots, allocated once.
//!
//! Each slot holds one frame placed so that its ATA data (frame offset 36) starts on a
//! 4096-byte boundary: O_DIRECT reads land in the buffer that is transmitted, and writes go
//! to disk from the buffer they arrived in, with no copy.

use crate::mapping::AnonMap;
use crate::wire::ATA_DATA_OFFSET;
use std::io;

/// Alignment of the data area of every slot.
pub const DATA_ALIGN: usize = 4096;
/// Offset of the frame inside a slot.
pub const FRAME_OFFSET: usize = DATA_ALIGN - ATA_DATA_OFFSET;

/// A fixed set of page-aligned frame buffers.
pub struct Slab {
    base: *mut u8,
    _map: AnonMap,
    slot_size: usize,
    slots: usize,
}

// SAFETY: the slab is owned by exactly one worker thread; the raw base pointer is only an
// address for that owner (and its io_uring), so moving the slab to the worker is sound.
unsafe impl Send for Slab {}

impl Slab {
    /// Maps `slots` slots, each big enough for a frame of `max_frame` bytes.
    pub fn new(slots: usize, max_frame: usize) -> io::Result<Slab> {
        let data = max_frame
            .saturating_sub(ATA_DATA_OFFSET)
            .max(2 * DATA_ALIGN);
        let slot_size = DATA_ALIGN + data.div_ceil(DATA_ALIGN) * DATA_ALIGN;
        let map = AnonMap::new(slot_size * slots)?;
        Ok(Slab {
            base: map.base(),
            _map: map,
            slot_size,
            slots,
        })
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }
    /// Bytes a frame in a slot may occupy.
    pub fn frame_capacity(&self) -> usize {
        self.slot_size - FRAME_OFFSET
    }
    /// Start of the whole region (for io_uring buffer registration).
    pub fn base(&self) -> *mut u8 {
        self.base
    }
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.slot_size * self.slots
    }
    /// True when the slab has no slots.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }
    /// Pointer to the frame of slot `i`.
    pub fn frame_ptr(&self, i: usize) -> *mut u8 {
        assert!(i < self.slots, "slot {i} out of range");
        // SAFETY: i < slots, so the offset stays inside the mapping.
        unsafe { self.base.add(i * self.slot_size + FRAME_OFFSET) }
    }
    /// The frame area of slot `i`.
    pub fn frame(&mut self, i: usize) -> &mut [u8] {
        let cap = self.frame_capacity();
        // SAFETY: the range lies inside the mapping, and `&mut self` makes this the only
        // live reference into the slab.
        unsafe { std::slice::from_raw_parts_mut(self.frame_ptr(i), cap) }
    }
}
