//! The worker's frame buffers: one mmap'd region cut into fixed slots, allocated once.
//!
//! Each slot holds one frame placed so that its ATA data (frame offset 36) starts on a
//! 4096-byte boundary: O_DIRECT reads land in the buffer that is transmitted, and writes go
//! to disk from the buffer they arrived in, with no copy.

use crate::mapping::AnonMap;
use crate::wire::ATA_DATA_OFFSET;
use std::io;
use std::sync::Arc;

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

// SAFETY: the raw base pointer is only an address; the bytes behind it are touched through
// `frame(&mut self)` (one owner) or, for a shared slab, through `SlabHandle`s whose threads
// touch only the slots they own at the time (see `SlabHandle`). Moving the slab is sound.
unsafe impl Send for Slab {}
// SAFETY: every `&self` method only computes addresses or sizes; no byte is read or written
// through a shared reference.
unsafe impl Sync for Slab {}

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

/// One worker's access to a slab shared by several workers.
///
/// Every slot has exactly one owner at a time: the worker whose partition it is in, until
/// it hands the slot to another worker through a hand-off ring (whose release/acquire pair
/// publishes the slot's bytes) and gets it back the same way. A handle only touches slots
/// its worker owns, and `frame(&mut self)` keeps at most one live slice per thread.
pub struct SlabHandle {
    slab: Arc<Slab>,
}

impl SlabHandle {
    /// A handle on `slab`.
    pub fn new(slab: Arc<Slab>) -> SlabHandle {
        SlabHandle { slab }
    }
    /// Number of slots (all partitions).
    pub fn slots(&self) -> usize {
        self.slab.slots()
    }
    /// Bytes a frame in a slot may occupy.
    pub fn frame_capacity(&self) -> usize {
        self.slab.frame_capacity()
    }
    /// Start of the whole region (for io_uring buffer registration).
    pub fn base(&self) -> *mut u8 {
        self.slab.base()
    }
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.slab.len()
    }
    /// True when the slab has no slots.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
    /// Pointer to the frame of slot `i`.
    pub fn frame_ptr(&self, i: usize) -> *mut u8 {
        self.slab.frame_ptr(i)
    }
    /// The frame area of slot `i`, which the calling worker must own.
    pub fn frame(&mut self, i: usize) -> &mut [u8] {
        let cap = self.frame_capacity();
        // SAFETY: the range lies inside the mapping; the worker owns slot `i` (no other thread
        // touches it until it is handed on), and `&mut self` makes this its only live slice.
        unsafe { std::slice::from_raw_parts_mut(self.frame_ptr(i), cap) }
    }
}
