//! AF_PACKET ports: a raw socket bound to one interface and EtherType 0x88A2, with batched
//! `recvmmsg`/`sendmmsg` straight into and out of the worker's buffers (no copies, and no
//! TPACKET_V3 block timeout adding latency at low load).

use super::{FrameBuf, FrameIo};
use crate::wire::{MacAddr, ETHERTYPE_AOE};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Most frames moved by one system call.
pub const PACKET_BATCH: usize = 64;

/// An AF_PACKET socket on one interface.
pub struct PacketPort {
    name: String,
    fd: OwnedFd,
    mac: MacAddr,
    mtu: u32,
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers inside `msgs`/`iovs` are scratch space rewritten at the start of
// every call and never dereferenced between calls, so moving the port to another thread
// cannot leave a dangling use.
unsafe impl Send for PacketPort {}

fn set_opt(fd: RawFd, level: i32, name: i32, value: i32) -> i32 {
    // SAFETY: passes a pointer to a live i32 and its size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as u32,
        )
    }
}

impl PacketPort {
    /// Opens a socket on `iface` with `buffer_bytes` of kernel socket buffer each way.
    pub fn open(iface: &str, buffer_bytes: usize) -> io::Result<PacketPort> {
        PacketPort::open_with(iface, buffer_bytes, true)
    }

    /// Opens a socket on `iface` that only sends (it is bound to no EtherType, so the kernel
    /// hands it no frames): the transmit side of an AF_XDP port in copy mode.
    pub fn open_sender(iface: &str, buffer_bytes: usize) -> io::Result<PacketPort> {
        PacketPort::open_with(iface, buffer_bytes, false)
    }

    fn open_with(iface: &str, buffer_bytes: usize, receive: bool) -> io::Result<PacketPort> {
        let ethertype = if receive { ETHERTYPE_AOE } else { 0 };
        let (fd, facts) = super::iface::bound_packet_socket(iface, ethertype, 0)?;
        let raw = fd.as_raw_fd();
        let size = buffer_bytes.min(i32::MAX as usize) as i32;
        // FORCE variants pass rmem_max/wmem_max as root; fall back to the capped ones.
        if set_opt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size) < 0 {
            set_opt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, size);
        }
        if set_opt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size) < 0 {
            set_opt(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, size);
        }
        // Our own transmissions are not handed back to us (we also drop R-flagged frames).
        set_opt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);
        // SAFETY: mmsghdr and iovec are plain old data; zeroed entries are filled per call.
        let msgs = vec![unsafe { std::mem::zeroed::<libc::mmsghdr>() }; PACKET_BATCH];
        let iovs = vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0
            };
            PACKET_BATCH
        ];
        Ok(PacketPort {
            name: iface.to_string(),
            fd,
            mac: facts.mac,
            mtu: facts.mtu,
            msgs,
            iovs,
        })
    }

    fn prepare(&mut self, bufs: &[FrameBuf]) -> usize {
        let n = bufs.len().min(PACKET_BATCH);
        for ((iov, msg), buf) in self
            .iovs
            .iter_mut()
            .zip(self.msgs.iter_mut())
            .zip(&bufs[..n])
        {
            *iov = libc::iovec {
                iov_base: buf.ptr as *mut libc::c_void,
                iov_len: buf.len,
            };
            // SAFETY: zeroed msghdr is valid; we then point it at one iovec.
            msg.msg_hdr = unsafe { std::mem::zeroed() };
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_len = 0;
        }
        n
    }
}

impl FrameIo for PacketPort {
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

    unsafe fn recv_batch(&mut self, bufs: &[FrameBuf], lens: &mut [usize]) -> io::Result<usize> {
        let n = self.prepare(bufs).min(lens.len());
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: `msgs[..n]` point at iovecs over caller-guaranteed writable buffers.
        let got = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock
                || e.kind() == io::ErrorKind::Interrupted
            {
                Ok(0)
            } else {
                Err(e)
            };
        }
        for (len, msg) in lens.iter_mut().zip(&self.msgs[..got as usize]) {
            // MSG_TRUNC marks a frame longer than the buffer: report a length that fails parsing.
            *len = if msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                0
            } else {
                msg.msg_len as usize
            };
        }
        Ok(got as usize)
    }

    unsafe fn send_batch(&mut self, frames: &[FrameBuf]) -> io::Result<usize> {
        // Returns the frames the kernel took. A frame it refuses outright (EMSGSIZE, a link
        // going down) is skipped so that the frames behind it still leave.
        let (mut at, mut sent, mut retries) = (0, 0, 0);
        while at < frames.len() {
            let n = self.prepare(&frames[at..]);
            // SAFETY: `msgs[..n]` point at iovecs over caller-guaranteed readable buffers.
            // MSG_DONTWAIT: a full socket buffer never blocks the worker.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    self.msgs.as_mut_ptr(),
                    n as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc >= 0 {
                at += rc as usize;
                sent += rc as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                // The transmit queue is full: what is left is dropped (counted by the caller
                // as unsent; the hosts retransmit), never waited for.
                break;
            }
            let transient =
                e.kind() == io::ErrorKind::Interrupted || e.raw_os_error() == Some(libc::ENOBUFS);
            if transient && retries < 8 {
                retries += 1;
                continue;
            }
            if sent == 0 && at + 1 == frames.len() && !transient {
                return Err(e);
            }
            at += 1;
        }
        Ok(sent)
    }
}
