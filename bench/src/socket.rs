//! A raw AF_PACKET socket for EtherType 0x88A2 on one interface, non-blocking, with batched
//! send and receive. The initiator's own (not the engine's): bench is a peer on the wire.

use ethershelf::wire::{MacAddr, ETHERTYPE_AOE};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Frames moved per system call at most.
pub const BATCH: usize = 64;

/// An AoE socket on one interface.
pub struct AoeSocket {
    fd: OwnedFd,
    /// Interface name.
    pub iface: String,
    /// Interface MAC.
    pub mac: MacAddr,
    /// Interface MTU.
    pub mtu: u32,
}

fn os_err(iface: &str, what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{iface}: {what}: {e}"))
}

impl AoeSocket {
    /// Opens a socket bound to `iface` (needs root or CAP_NET_RAW).
    pub fn open(iface: &str) -> io::Result<AoeSocket> {
        AoeSocket::open_with(iface, ETHERTYPE_AOE, false)
    }

    /// Opens a socket that sees every frame on `iface`, whatever its EtherType or
    /// destination (promiscuous): the relay's.
    pub fn open_every_frame(iface: &str) -> io::Result<AoeSocket> {
        AoeSocket::open_with(iface, libc::ETH_P_ALL as u16, true)
    }

    fn open_with(iface: &str, ethertype: u16, promiscuous: bool) -> io::Result<AoeSocket> {
        let proto = ethertype.to_be() as i32;
        // SAFETY: plain socket(2); checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                proto,
            )
        };
        if raw < 0 {
            return Err(os_err(iface, "socket(AF_PACKET) (run as root)"));
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if iface.len() >= libc::IFNAMSIZ || iface.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name '{iface}'"),
            ));
        }
        // SAFETY: ifreq is plain data; the name fits (checked above).
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: ioctls with a valid ifreq on our socket; union members read as filled.
        let (ifindex, mac, mtu) = unsafe {
            if libc::ioctl(raw, libc::SIOCGIFINDEX, &mut req) < 0 {
                return Err(os_err(iface, "no such interface"));
            }
            let ifindex = req.ifr_ifru.ifru_ifindex;
            if libc::ioctl(raw, libc::SIOCGIFHWADDR, &mut req) < 0 {
                return Err(os_err(iface, "SIOCGIFHWADDR"));
            }
            let d = req.ifr_ifru.ifru_hwaddr.sa_data;
            let mac = MacAddr([
                d[0] as u8, d[1] as u8, d[2] as u8, d[3] as u8, d[4] as u8, d[5] as u8,
            ]);
            if libc::ioctl(raw, libc::SIOCGIFMTU, &mut req) < 0 {
                return Err(os_err(iface, "SIOCGIFMTU"));
            }
            (ifindex, mac, req.ifr_ifru.ifru_mtu as u32)
        };
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto as u16;
        sll.sll_ifindex = ifindex;
        // SAFETY: bind with a correctly sized sockaddr_ll.
        if unsafe {
            libc::bind(
                raw,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        } < 0
        {
            return Err(os_err(iface, "bind"));
        }
        let size: i32 = 32 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            // SAFETY: pointer to a live i32 and its size.
            unsafe {
                libc::setsockopt(
                    raw,
                    libc::SOL_SOCKET,
                    opt,
                    &size as *const i32 as *const libc::c_void,
                    4,
                )
            };
        }
        let one: i32 = 1;
        // SAFETY: as above.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                &one as *const i32 as *const libc::c_void,
                4,
            )
        };
        if promiscuous {
            // SAFETY: packet_mreq is plain data; all-zero is valid.
            let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mreq.mr_ifindex = ifindex;
            mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
            // SAFETY: pointer to a live packet_mreq and its size.
            let rc = unsafe {
                libc::setsockopt(
                    raw,
                    libc::SOL_PACKET,
                    libc::PACKET_ADD_MEMBERSHIP,
                    &mreq as *const libc::packet_mreq as *const libc::c_void,
                    std::mem::size_of::<libc::packet_mreq>() as u32,
                )
            };
            if rc < 0 {
                return Err(os_err(iface, "promiscuous mode"));
            }
        }
        Ok(AoeSocket {
            fd,
            iface: iface.to_string(),
            mac,
            mtu,
        })
    }

    /// The descriptor (for poll).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends frames; returns how many the kernel took (0 when its buffer is full).
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut iov: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain data.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let n = frames.len().min(BATCH);
        for i in 0..n {
            iov[i] = libc::iovec {
                iov_base: frames[i].as_ptr() as *mut libc::c_void,
                iov_len: frames[i].len(),
            };
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs point at iovecs over the caller's live slices.
        let rc = unsafe { libc::sendmmsg(self.raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS) {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(rc as usize)
    }

    /// Sends one frame (blocking until the kernel takes it, bounded).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        for _ in 0..1000 {
            if self.send_batch(&[frame])? == 1 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{}: send buffer stays full", self.iface),
        ))
    }

    /// Receives up to `bufs.len()` frames without blocking; lengths go to `lens`.
    pub fn recv_batch(&self, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> io::Result<usize> {
        let mut iov: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain data.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let n = bufs.len().min(BATCH).min(lens.len());
        for i in 0..n {
            iov[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: bufs[i].len(),
            };
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs point at iovecs over the caller's buffers, exclusively borrowed.
        let rc = unsafe {
            libc::recvmmsg(
                self.raw_fd(),
                msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        for i in 0..rc as usize {
            lens[i] = msgs[i].msg_len as usize;
        }
        Ok(rc as usize)
    }
}

/// Waits until one of `socks` is readable or `timeout_ms` passes.
pub fn wait_readable(socks: &[AoeSocket], timeout_ms: i32) {
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: fds is a live array of pollfd of the given length.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
}
