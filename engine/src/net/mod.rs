//! Frame I/O per port. The worker sees a `FrameIo`: receive a batch into its buffers, send a
//! batch from its buffers. AF_PACKET (`packet`) and AF_XDP (`xdp`) sit behind the same trait;
//! `select` opens a configured port in the mode it asks for (or the best that works).

pub(crate) mod iface;
mod packet;
mod select;
pub mod watch;
pub mod xdp;

pub use iface::Interface;
pub use packet::PacketPort;
pub use select::{open_port, OpenedPort};

use crate::wire::MacAddr;
use std::io;
use std::os::fd::RawFd;

/// One receive or send buffer: a pointer into worker-owned memory and its capacity/length.
#[derive(Debug, Clone, Copy)]
pub struct FrameBuf {
    /// Start of the frame.
    pub ptr: *mut u8,
    /// Capacity (receive) or frame length (send).
    pub len: usize,
}

/// Counters a frame I/O keeps about itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameIoCounters {
    /// Frames copied between kernel-shared memory and worker buffers.
    pub copies: u64,
    /// Frames the kernel dropped before we saw them (ring full, no buffer, invalid).
    pub kernel_drops: u64,
    /// Received frames too long for a worker buffer.
    pub too_long: u64,
}

/// A port's frame I/O, owned by one worker.
pub trait FrameIo {
    /// Interface name.
    fn name(&self) -> &str;
    /// The port's MAC (source of every reply).
    fn mac(&self) -> MacAddr;
    /// The port's MTU.
    fn mtu(&self) -> u32;
    /// A descriptor that polls readable when frames wait.
    fn poll_fd(&self) -> RawFd;
    /// Receives up to `bufs.len()` frames without blocking; writes each length into `lens`.
    ///
    /// # Safety
    /// Every `FrameBuf` must point at `len` writable bytes that nothing else touches
    /// during the call.
    unsafe fn recv_batch(&mut self, bufs: &[FrameBuf], lens: &mut [usize]) -> io::Result<usize>;
    /// Sends the frames; returns how many were sent.
    ///
    /// # Safety
    /// Every `FrameBuf` must point at `len` readable bytes that stay valid for the call.
    unsafe fn send_batch(&mut self, frames: &[FrameBuf]) -> io::Result<usize>;
    /// Whether frames wait, when that can be known without a system call (AF_XDP reads its
    /// RX ring); `None` when it cannot.
    fn rx_pending(&mut self) -> Option<bool> {
        None
    }
    /// Its counters (zero where a mode has nothing to count).
    fn counters(&self) -> FrameIoCounters {
        FrameIoCounters::default()
    }
}
