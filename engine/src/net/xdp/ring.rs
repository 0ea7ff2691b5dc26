//! The four single-producer/single-consumer rings an AF_XDP socket shares with the kernel
//! (fill, completion, RX, TX), mapped into our memory.
//!
//! The kernel owns one end of each ring; we own the other. Indices are free-running u32s:
//! entries are published with a release store of the producer index and taken back with a
//! release store of the consumer index, after an acquire load of the other side's index.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RingOffset {
    /// Offset of the producer index.
    pub producer: u64,
    /// Offset of the consumer index.
    pub consumer: u64,
    /// Offset of the first descriptor.
    pub desc: u64,
    /// Offset of the flags word.
    pub flags: u64,
}

/// `struct xdp_desc`: one RX or TX descriptor.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct XdpDesc {
    /// Offset of the data in the UMEM.
    pub addr: u64,
    /// Bytes.
    pub len: u32,
    /// `XDP_PKT_CONTD` when more buffers of the same frame follow.
    pub options: u32,
}

/// `XDP_RING_NEED_WAKEUP`: the kernel wants a system call to make progress.
pub const RING_NEED_WAKEUP: u32 = 1;

/// One mapped ring of `T` entries.
pub struct Ring<T: Copy> {
    map: *mut libc::c_void,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
    size: u32,
    /// Our copy of our own index (producer rings: producer; consumer rings: consumer).
    local: u32,
    /// Last seen value of the kernel's index.
    remote: u32,
}

// SAFETY: a ring is used by the single thread that owns its socket; the pointers are into a
// mapping that lives as long as the ring and does not depend on the creating thread.
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps a ring of `size` entries at page offset `pgoff` of socket `fd`.
    pub fn map(fd: RawFd, off: &RingOffset, size: u32, pgoff: u64) -> io::Result<Ring<T>> {
        let map_len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: maps the ring region the kernel set up for this socket; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = map as *mut u8;
        // SAFETY: the offsets come from the kernel (XDP_MMAP_OFFSETS) and lie inside the map;
        // the index words are u32-aligned.
        unsafe {
            let producer = base.add(off.producer as usize) as *const AtomicU32;
            let consumer = base.add(off.consumer as usize) as *const AtomicU32;
            Ok(Ring {
                map,
                map_len,
                producer,
                consumer,
                flags: base.add(off.flags as usize) as *const AtomicU32,
                entries: base.add(off.desc as usize) as *mut T,
                size,
                local: 0,
                remote: 0,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see `map`).
        unsafe { &*self.producer }
    }
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see `map`).
        unsafe { &*self.consumer }
    }

    /// Whether the kernel asks for a wake-up call.
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: points into the live mapping (see `map`).
        unsafe { &*self.flags }.load(Ordering::Relaxed) & RING_NEED_WAKEUP != 0
    }

    // ---- producer side (fill, TX) ----

    /// Free entries we may produce now (at most `want`), refreshing the kernel's consumer
    /// index only when the cached one says there is not enough room.
    pub fn free(&mut self, want: u32) -> u32 {
        let mut free = self.size - self.local.wrapping_sub(self.remote);
        if free < want {
            self.remote = self.consumer().load(Ordering::Acquire);
            free = self.size - self.local.wrapping_sub(self.remote);
        }
        free.min(want)
    }

    /// Writes entry `i` past the last published one (call `free` first).
    pub fn write(&mut self, i: u32, value: T) {
        let at = (self.local.wrapping_add(i) & (self.size - 1)) as usize;
        // SAFETY: `at` < size, inside the mapped entry array, and the slot is ours until
        // published because `free` said so.
        unsafe { self.entries.add(at).write(value) };
    }

    /// Publishes `n` written entries to the kernel.
    pub fn publish(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.producer().store(self.local, Ordering::Release);
    }

    /// Entries produced but not yet consumed by the kernel.
    pub fn outstanding(&mut self) -> u32 {
        self.remote = self.consumer().load(Ordering::Acquire);
        self.local.wrapping_sub(self.remote)
    }

    // ---- consumer side (RX, completion) ----

    /// Entries ready to consume (at most `want`).
    pub fn ready(&mut self, want: u32) -> u32 {
        let mut ready = self.remote.wrapping_sub(self.local);
        if ready < want {
            self.remote = self.producer().load(Ordering::Acquire);
            ready = self.remote.wrapping_sub(self.local);
        }
        ready.min(want)
    }

    /// Reads entry `i` past the last consumed one (call `ready` first).
    pub fn read(&self, i: u32) -> T {
        let at = (self.local.wrapping_add(i) & (self.size - 1)) as usize;
        // SAFETY: `at` < size and the kernel published this entry (see `ready`).
        unsafe { self.entries.add(at).read() }
    }

    /// Hands `n` consumed entries back to the kernel.
    pub fn release(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.consumer().store(self.local, Ordering::Release);
    }
}

impl<T: Copy> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `map` mapped; nothing uses it afterwards.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}
