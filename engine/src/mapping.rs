//! Page-aligned anonymous memory mapped once and owned: the worker's frame slab and every
//! AF_XDP UMEM live in one.

use std::io;

/// An anonymous private mapping, populated up front, unmapped on drop.
pub struct AnonMap {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; whichever thread owns the value
// may use it, and nothing ties it to the creating thread.
unsafe impl Send for AnonMap {}

impl AnonMap {
    /// Maps `len` bytes (rounded up to pages by the kernel), all pages faulted in now so the
    /// hot path never takes a page fault on them.
    pub fn new(len: usize) -> io::Result<AnonMap> {
        // SAFETY: anonymous private mapping; the result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(AnonMap {
            base: base as *mut u8,
            len,
        })
    }

    /// Start of the mapping (page-aligned).
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length mapping.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `new`; users hold no references that
        // outlive the owner.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}
