//! Frame I/O per port. The worker sees a `FrameIo`: receive a batch into its buffers, send a
//! batch from its buffers. AF_PACKET is here now; AF_XDP joins it behind the same trait.

mod packet;

pub use packet::PacketPort;

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
}
