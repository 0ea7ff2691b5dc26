//! AF_XDP ports: one socket per (interface, receive queue), with its own UMEM, fed by the
//! steering program in `program`.
//!
//! Zero-copy binding is tried first (NICs whose drivers support it); where the driver refuses
//! (veth says EOPNOTSUPP) the socket binds in copy mode. UMEM chunks are one page, so a jumbo
//! frame spans several descriptors: the socket binds with `XDP_USE_SG` whenever the MTU does
//! not fit one chunk, and both directions walk `XDP_PKT_CONTD` chains.
//!
//! The worker's frame buffers are not the UMEM (a jumbo frame would not be contiguous there),
//! so a received frame is copied once into the worker's buffer and a reply once into a TX
//! chunk. Both copies are counted (`copies`); on veth the kernel copies in any case.

mod program;
mod ring;

pub use program::{AttachMode, SteeringProgram};

use super::iface::{os_error, Interface};
use super::{FrameBuf, FrameIo, FrameIoCounters, PacketPort};
use crate::mapping::AnonMap;
use crate::wire::MacAddr;
use ring::{Ring, RingOffset, XdpDesc};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

const AF_XDP: i32 = 44;
const SOL_XDP: i32 = 283;
const XDP_MMAP_OFFSETS: i32 = 1;
const XDP_RX_RING: i32 = 2;
const XDP_TX_RING: i32 = 3;
const XDP_UMEM_REG: i32 = 4;
const XDP_UMEM_FILL_RING: i32 = 5;
const XDP_UMEM_COMPLETION_RING: i32 = 6;
const XDP_STATISTICS: i32 = 7;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_USE_SG: u16 = 1 << 4;
const XDP_PKT_CONTD: u32 = 1;
const PGOFF_RX_RING: u64 = 0;
const PGOFF_TX_RING: u64 = 0x8000_0000;
const PGOFF_FILL_RING: u64 = 0x1_0000_0000;
const PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;

/// Bytes per UMEM chunk (one page: the most a chunk may be).
pub const CHUNK: u32 = 4096;
/// Receive chunks per socket (all kept in the fill ring).
const RX_CHUNKS: u32 = 2048;
/// Transmit chunks per socket.
const TX_CHUNKS: u32 = 2048;
/// Ring sizes (powers of two).
const RX_RING: u32 = 2048;
const FILL_RING: u32 = 4096;
const TX_RING: u32 = 2048;
const COMPLETION_RING: u32 = 4096;
/// Headroom the kernel leaves before received data in copy mode (`XDP_PACKET_HEADROOM`).
const RX_HEADROOM: u32 = 256;
/// Largest frame payload of one received chunk.
const RX_CHUNK_DATA: u32 = CHUNK - RX_HEADROOM;

#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fill: RingOffset,
    completion: RingOffset,
}

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XdpStatistics {
    /// Frames dropped for other reasons (e.g. too long without `XDP_USE_SG`).
    pub rx_dropped: u64,
    /// RX descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel found invalid.
    pub tx_invalid_descs: u64,
    /// Frames dropped because our RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
}

/// How a socket ended up bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// The NIC DMAs into the UMEM.
    ZeroCopy,
    /// The kernel copies between its buffers and the UMEM.
    Copy,
}

impl std::fmt::Display for BindMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        })
    }
}

/// One AF_XDP socket on one receive queue of an interface.
pub struct XdpPort {
    name: String,
    mac: MacAddr,
    mtu: u32,
    queue: u32,
    program: Arc<SteeringProgram>,
    rx: Ring<XdpDesc>,
    tx: Ring<XdpDesc>,
    fill: Ring<u64>,
    completion: Ring<u64>,
    fd: OwnedFd,
    /// The UMEM. Declared after `fd` so the socket (which pins these pages) closes first.
    umem: AnonMap,
    /// TX chunks not in flight (UMEM offsets).
    tx_free: Vec<u64>,
    /// Bound with `XDP_USE_SG`.
    multi_buffer: bool,
    /// In copy mode, replies leave through an AF_PACKET socket (see `open_bound`).
    sender: Option<PacketPort>,
    /// How the socket is bound.
    pub bind_mode: BindMode,
    /// Frames copied between the UMEM and worker buffers (both directions).
    pub copies: u64,
    /// Received frames dropped because they did not fit the worker's buffer.
    pub rx_too_long: u64,
}

// SAFETY: every raw pointer (rings, UMEM) is into mappings owned by this port and used only by
// the thread that owns the port; nothing is tied to the creating thread.
unsafe impl Send for XdpPort {}

fn set_int(fd: RawFd, name: i32, value: u32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live u32 and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            name,
            &value as *const u32 as *const libc::c_void,
            4,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl XdpPort {
    /// Opens a socket on `queue` of `iface` and registers it with `program`. Tries
    /// zero-copy first unless `copy_only`.
    pub fn open(
        iface: &Interface,
        queue: u32,
        program: Arc<SteeringProgram>,
        copy_only: bool,
    ) -> io::Result<XdpPort> {
        let multi_buffer = iface.mtu + 14 > RX_CHUNK_DATA;
        if multi_buffer && !program.frags {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{}: MTU {} needs multi-buffer XDP, which this kernel does not support (keep the MTU at or below {})",
                    iface.name,
                    iface.mtu,
                    RX_CHUNK_DATA - 14 - 320
                ),
            ));
        }
        let mut last = None;
        let modes: &[BindMode] = if copy_only {
            &[BindMode::Copy]
        } else {
            &[BindMode::ZeroCopy, BindMode::Copy]
        };
        for &mode in modes {
            match Self::open_bound(iface, queue, program.clone(), mode, multi_buffer) {
                Ok(port) => return Ok(port),
                Err(e) => {
                    tracing::debug!(port = %iface.name, queue, %mode, error = %e, "AF_XDP bind failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no bind mode tried")))
    }

    fn open_bound(
        iface: &Interface,
        queue: u32,
        program: Arc<SteeringProgram>,
        mode: BindMode,
        multi_buffer: bool,
    ) -> io::Result<XdpPort> {
        let name = iface.name.as_str();
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os_error(name, "socket(AF_XDP) (needs root or CAP_NET_RAW)"));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = AnonMap::new((RX_CHUNKS + TX_CHUNKS) as usize * CHUNK as usize)?;
        let reg = UmemReg {
            addr: umem.base() as u64,
            len: umem.len() as u64,
            chunk_size: CHUNK,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        // SAFETY: registers our live UMEM mapping with a correctly sized xdp_umem_reg.
        let rc = unsafe {
            libc::setsockopt(
                raw,
                SOL_XDP,
                XDP_UMEM_REG,
                &reg as *const UmemReg as *const libc::c_void,
                std::mem::size_of::<UmemReg>() as u32,
            )
        };
        if rc < 0 {
            return Err(os_error(name, "XDP_UMEM_REG"));
        }
        for (opt, size, what) in [
            (XDP_UMEM_FILL_RING, FILL_RING, "fill ring"),
            (XDP_UMEM_COMPLETION_RING, COMPLETION_RING, "completion ring"),
            (XDP_RX_RING, RX_RING, "RX ring"),
            (XDP_TX_RING, TX_RING, "TX ring"),
        ] {
            set_int(raw, opt, size)
                .map_err(|e| io::Error::new(e.kind(), format!("{name}: {what}: {e}")))?;
        }
        let mut off = MmapOffsets::default();
        let mut optlen = std::mem::size_of::<MmapOffsets>() as libc::socklen_t;
        // SAFETY: reads the ring offsets into a correctly sized struct.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                SOL_XDP,
                XDP_MMAP_OFFSETS,
                &mut off as *mut MmapOffsets as *mut libc::c_void,
                &mut optlen,
            )
        };
        if rc < 0 {
            return Err(os_error(name, "XDP_MMAP_OFFSETS"));
        }
        let mut fill: Ring<u64> = Ring::map(raw, &off.fill, FILL_RING, PGOFF_FILL_RING)?;
        let completion: Ring<u64> =
            Ring::map(raw, &off.completion, COMPLETION_RING, PGOFF_COMPLETION_RING)?;
        let rx: Ring<XdpDesc> = Ring::map(raw, &off.rx, RX_RING, PGOFF_RX_RING)?;
        let tx: Ring<XdpDesc> = Ring::map(raw, &off.tx, TX_RING, PGOFF_TX_RING)?;
        // Every RX chunk starts in the fill ring.
        let n = fill.free(RX_CHUNKS);
        for i in 0..n {
            fill.write(i, u64::from(i) * u64::from(CHUNK));
        }
        fill.publish(n);
        let mut flags = XDP_USE_NEED_WAKEUP;
        flags |= match mode {
            BindMode::ZeroCopy => XDP_ZEROCOPY,
            BindMode::Copy => XDP_COPY,
        };
        if multi_buffer {
            flags |= XDP_USE_SG;
        }
        let addr = SockaddrXdp {
            family: AF_XDP as u16,
            flags,
            ifindex: iface.index,
            queue_id: queue,
            shared_umem_fd: 0,
        };
        // A queue just released by a closing socket can refuse once with EBUSY: retry briefly.
        let mut tries = 0;
        loop {
            // SAFETY: binds our socket with a correctly sized sockaddr_xdp.
            let rc = unsafe {
                libc::bind(
                    raw,
                    &addr as *const SockaddrXdp as *const libc::sockaddr,
                    std::mem::size_of::<SockaddrXdp>() as u32,
                )
            };
            if rc == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) && tries < 20 {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
            return Err(io::Error::new(
                e.kind(),
                format!("{name}: bind queue {queue} ({mode}): {e}"),
            ));
        }
        program
            .register(queue, raw)
            .map_err(|e| io::Error::new(e.kind(), format!("{name}: XDP socket map: {e}")))?;
        // In copy mode the kernel copies a TX descriptor into a fresh buffer anyway, and its
        // AF_XDP copy path measured slower here than AF_PACKET's sendmmsg (per-frame locking
        // on the completion ring), so replies go out through a send-only AF_PACKET socket on
        // the same port. Zero-copy sockets transmit from the UMEM.
        let sender = match (mode, std::env::var("ETHERSHELF_XDP_TX").as_deref()) {
            (BindMode::Copy, Ok("xsk")) | (BindMode::ZeroCopy, _) => None,
            (BindMode::Copy, _) => Some(PacketPort::open_sender(name, 4 << 20)?),
        };
        let tx_free = (RX_CHUNKS..RX_CHUNKS + TX_CHUNKS)
            .rev()
            .map(|i| u64::from(i) * u64::from(CHUNK))
            .collect();
        Ok(XdpPort {
            name: name.to_string(),
            mac: iface.mac,
            mtu: iface.mtu,
            queue,
            program,
            rx,
            tx,
            fill,
            completion,
            fd,
            umem,
            tx_free,
            multi_buffer,
            sender,
            bind_mode: mode,
            copies: 0,
            rx_too_long: 0,
        })
    }

    /// How replies leave: "AF_XDP TX ring" or "AF_PACKET sendmmsg".
    pub fn tx_path(&self) -> &'static str {
        if self.sender.is_some() {
            "replies via AF_PACKET sendmmsg"
        } else {
            "replies via the AF_XDP TX ring"
        }
    }

    /// The receive queue this socket serves.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The kernel's drop counters for this socket.
    pub fn statistics(&self) -> io::Result<XdpStatistics> {
        let mut stats = XdpStatistics::default();
        let mut optlen = std::mem::size_of::<XdpStatistics>() as libc::socklen_t;
        // SAFETY: reads the statistics into a correctly sized struct.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_XDP,
                XDP_STATISTICS,
                &mut stats as *mut XdpStatistics as *mut libc::c_void,
                &mut optlen,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(stats)
        }
    }

    fn umem_ptr(&self, addr: u64) -> *mut u8 {
        // SAFETY (for callers): `addr` comes from a descriptor of this UMEM and is below its
        // length; the kernel validated it, and our own TX addresses are chunk starts.
        unsafe { self.umem.base().add(addr as usize) }
    }

    /// Takes back TX chunks the kernel has finished sending.
    fn reap_completions(&mut self) {
        let n = self.completion.ready(COMPLETION_RING);
        for i in 0..n {
            let addr = self.completion.read(i);
            self.tx_free.push(addr & !u64::from(CHUNK - 1));
        }
        if n > 0 {
            self.completion.release(n);
        }
    }

    /// Asks the kernel to transmit what is in the TX ring (copy mode sends from this call).
    fn kick_tx(&mut self) {
        for _ in 0..64 {
            if !self.tx.needs_wakeup() && self.bind_mode == BindMode::ZeroCopy {
                return;
            }
            // SAFETY: a zero-length sendto on our socket: only a wake-up.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc >= 0 {
                if self.tx.outstanding() == 0 {
                    return;
                }
                continue;
            }
            let e = io::Error::last_os_error().raw_os_error();
            // EAGAIN/EBUSY: the kernel sent a batch and wants another call; ENOBUFS: no
            // memory or completion space right now: reap and try again.
            if !matches!(
                e,
                Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR)
            ) {
                return;
            }
            self.reap_completions();
            if self.tx.outstanding() == 0 {
                return;
            }
        }
    }
}

impl Drop for XdpPort {
    fn drop(&mut self) {
        self.program.unregister(self.queue);
    }
}

impl FrameIo for XdpPort {
    fn name(&self) -> &str {
        &self.name
    }
    fn mac(&self) -> MacAddr {
        self.mac
    }
    fn mtu(&self) -> u32 {
        self.mtu
    }
    fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn rx_pending(&mut self) -> Option<bool> {
        Some(self.rx.ready(1) > 0)
    }

    fn counters(&self) -> FrameIoCounters {
        let kernel = self.statistics().unwrap_or_default();
        FrameIoCounters {
            copies: self.copies,
            kernel_drops: kernel.rx_dropped
                + kernel.rx_invalid_descs
                + kernel.rx_ring_full
                + kernel.tx_invalid_descs,
            too_long: self.rx_too_long,
        }
    }

    unsafe fn recv_batch(&mut self, bufs: &[FrameBuf], lens: &mut [usize]) -> io::Result<usize> {
        let want = bufs.len().min(lens.len()) as u32;
        // A frame may span several descriptors: look at everything ready and stop at a frame
        // boundary once `want` frames are complete.
        let ready = self.rx.ready(RX_RING);
        let (mut frames, mut consumed, mut filled) = (0usize, 0u32, 0usize);
        // The fill ring has room for every RX chunk, so every consumed chunk goes back.
        let room = self.fill.free(ready);
        let mut recycled = 0u32;
        let mut too_long = false;
        while consumed < ready && (frames as u32) < want {
            // Find the end of this frame's chain.
            let mut end = consumed;
            while end < ready && self.rx.read(end).options & XDP_PKT_CONTD != 0 {
                end += 1;
            }
            if end == ready {
                break; // the rest of the chain is not published yet
            }
            let buf = bufs[frames];
            for i in consumed..=end {
                let desc = self.rx.read(i);
                let len = desc.len as usize;
                if !too_long && filled + len <= buf.len {
                    // SAFETY: source is inside the UMEM (kernel-validated descriptor);
                    // destination is the caller's buffer with room checked above.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            self.umem_ptr(desc.addr),
                            buf.ptr.add(filled),
                            len,
                        )
                    };
                    filled += len;
                } else {
                    too_long = true;
                }
                if recycled < room {
                    self.fill.write(recycled, desc.addr & !u64::from(CHUNK - 1));
                    recycled += 1;
                }
            }
            self.copies += 1;
            if too_long {
                self.rx_too_long += 1;
            }
            lens[frames] = if too_long { 0 } else { filled };
            frames += 1;
            filled = 0;
            too_long = false;
            consumed = end + 1;
        }
        if consumed > 0 {
            self.rx.release(consumed);
        }
        if recycled > 0 {
            self.fill.publish(recycled);
        }
        if self.fill.needs_wakeup() && consumed > 0 {
            // SAFETY: a zero-length, non-blocking recvfrom: only a wake-up for the fill ring.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
        Ok(frames)
    }

    unsafe fn send_batch(&mut self, frames: &[FrameBuf]) -> io::Result<usize> {
        if let Some(sender) = self.sender.as_mut() {
            // SAFETY: forwarded with the caller's own guarantee.
            return unsafe { sender.send_batch(frames) };
        }
        self.reap_completions();
        let per_chunk = CHUNK as usize;
        let mut sent = 0;
        let mut produced = 0u32;
        for frame in frames {
            let pieces = frame.len.div_ceil(per_chunk).max(1) as u32;
            if pieces > 1 && !self.multi_buffer {
                continue; // cannot happen: replies never exceed the MTU
            }
            if self.tx.free(produced + pieces) < produced + pieces {
                // The ring is full: push out what we have, then look again.
                self.tx.publish(produced);
                produced = 0;
                self.kick_tx();
                self.reap_completions();
                if self.tx.free(pieces) < pieces {
                    break;
                }
            }
            if (self.tx_free.len() as u32) < pieces {
                self.tx.publish(produced);
                produced = 0;
                self.kick_tx();
                self.reap_completions();
                if (self.tx_free.len() as u32) < pieces {
                    break;
                }
            }
            for p in 0..pieces as usize {
                let Some(addr) = self.tx_free.pop() else {
                    break;
                };
                let start = p * per_chunk;
                let len = (frame.len - start).min(per_chunk);
                // SAFETY: the caller's frame is readable for `frame.len` bytes; the
                // destination is a free TX chunk of CHUNK bytes we own until completion.
                unsafe {
                    std::ptr::copy_nonoverlapping(frame.ptr.add(start), self.umem_ptr(addr), len)
                };
                let options = if p + 1 < pieces as usize {
                    XDP_PKT_CONTD
                } else {
                    0
                };
                self.tx.write(
                    produced,
                    XdpDesc {
                        addr,
                        len: len as u32,
                        options,
                    },
                );
                produced += 1;
            }
            self.copies += 1;
            sent += 1;
        }
        if produced > 0 {
            self.tx.publish(produced);
        }
        self.kick_tx();
        Ok(sent)
    }
}
