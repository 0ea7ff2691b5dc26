//! A raw AF_PACKET socket on one interface that sees only console frames (EtherType 0xBCBC):
//! the console never shares a socket, a ring or a buffer with the AoE data path.

use super::frame::{CecFrame, Kind, ETHERTYPE_CEC, MAX_FRAME};
use crate::net::iface::bound_packet_socket;
use crate::wire::MacAddr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A non-blocking console socket on one interface.
pub struct CecSocket {
    name: String,
    fd: OwnedFd,
    mac: MacAddr,
}

impl CecSocket {
    /// Opens and binds the socket on `iface` (needs root or CAP_NET_RAW).
    pub fn open(iface: &str) -> io::Result<CecSocket> {
        let (fd, facts) = bound_packet_socket(iface, ETHERTYPE_CEC, libc::SOCK_NONBLOCK)?;
        let raw = fd.as_raw_fd();
        let one: i32 = 1;
        // SAFETY: passes a pointer to a live i32 and its size. Our own frames are not
        // handed back to us.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                (&one as *const i32).cast(),
                std::mem::size_of::<i32>() as u32,
            )
        };
        Ok(CecSocket {
            name: iface.to_string(),
            fd,
            mac: facts.mac,
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's hardware address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Sends one whole frame (without blocking; a full queue loses the frame, which the
    /// protocol's retransmission covers).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sends `frame.len()` bytes from a live slice.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Builds a console frame from this interface to `dst` in `buf` and sends it.
    pub fn send_frame(
        &self,
        buf: &mut [u8; MAX_FRAME],
        dst: MacAddr,
        kind: Kind,
        tag: u8,
        seq: u8,
        data: &[u8],
    ) -> io::Result<()> {
        let n = CecFrame {
            dst,
            src: self.mac,
            kind,
            tag,
            seq,
            data,
        }
        .emit(buf);
        self.send(&buf[..n])
    }

    /// Receives one frame into `buf`; `None` when nothing is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: the kernel writes at most `buf.len()` bytes into the live buffer.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }
}

impl AsRawFd for CecSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits up to `timeout_ms` until one of `sockets` is readable; returns their readiness.
pub fn wait_readable(sockets: &[CecSocket], timeout_ms: i32) -> Vec<bool> {
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a live array of `fds.len()` pollfd entries.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc <= 0 {
        return vec![false; sockets.len()];
    }
    fds.iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLERR) != 0)
        .collect()
}
