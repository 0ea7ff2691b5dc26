//! Facts about a network interface that every port mode needs: index, MAC, MTU and how many
//! receive queues it has.

use crate::wire::MacAddr;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An interface as the port code sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name (e.g. `eth1`).
    pub name: String,
    /// Kernel interface index.
    pub index: u32,
    /// Hardware address.
    pub mac: MacAddr,
    /// MTU in bytes.
    pub mtu: u32,
    /// Receive queues (1 when the driver does not say).
    pub rx_queues: u32,
}

/// An error naming the interface and the step that failed.
pub(crate) fn os_error(iface: &str, what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{iface}: {what}: {e}"))
}

/// An `ifreq` carrying `iface`'s name.
pub(crate) fn ifreq_for(iface: &str) -> io::Result<libc::ifreq> {
    let name = CString::new(iface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL"))?;
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name '{iface}' is too long"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// Receive queues of the interface: ethtool's channel count, else sysfs, else 1.
fn rx_queue_count(fd: RawFd, iface: &str) -> u32 {
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    if let Ok(mut req) = ifreq_for(iface) {
        req.ifr_ifru.ifru_data = &mut channels as *mut EthtoolChannels as *mut libc::c_char;
        // SAFETY: SIOCETHTOOL with a pointer to a live, correctly sized ethtool_channels.
        if unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut req) } == 0 {
            let n = channels.rx_count.max(channels.combined_count);
            if n > 0 {
                return n;
            }
        }
    }
    std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(0)
        .max(1)
}

impl Interface {
    /// Looks `name` up in the current network namespace.
    pub fn lookup(name: &str) -> io::Result<Interface> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os_error(name, "socket for interface queries"));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = ifreq_for(name)?;
        // SAFETY: ioctls on our socket with a valid ifreq; each result is read from the union
        // member that request fills.
        let index = unsafe {
            if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) < 0 {
                return Err(os_error(name, "no such interface"));
            }
            req.ifr_ifru.ifru_ifindex as u32
        };
        // SAFETY: as above.
        let mac = unsafe {
            if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) < 0 {
                return Err(os_error(name, "SIOCGIFHWADDR"));
            }
            let sa = req.ifr_ifru.ifru_hwaddr.sa_data;
            MacAddr([
                sa[0] as u8,
                sa[1] as u8,
                sa[2] as u8,
                sa[3] as u8,
                sa[4] as u8,
                sa[5] as u8,
            ])
        };
        // SAFETY: as above.
        let mtu = unsafe {
            if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut req) < 0 {
                return Err(os_error(name, "SIOCGIFMTU"));
            }
            req.ifr_ifru.ifru_mtu as u32
        };
        Ok(Interface {
            name: name.to_string(),
            index,
            mac,
            mtu,
            rx_queues: rx_queue_count(fd.as_raw_fd(), name),
        })
    }
}

/// A raw AF_PACKET socket bound to `iface` for EtherType `ethertype` (host order; 0 binds
/// none, so the socket only sends), with the interface's facts. `flags` adds socket type
/// flags such as `SOCK_NONBLOCK`. Needs root or CAP_NET_RAW.
pub(crate) fn bound_packet_socket(
    iface: &str,
    ethertype: u16,
    flags: i32,
) -> io::Result<(OwnedFd, Interface)> {
    let proto = ethertype.to_be() as i32;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags,
            proto,
        )
    };
    if raw < 0 {
        return Err(os_error(
            iface,
            "socket(AF_PACKET) (needs root or CAP_NET_RAW)",
        ));
    }
    // SAFETY: `raw` is a fresh descriptor we own from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let facts = Interface::lookup(iface)?;
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto as u16;
    sll.sll_ifindex = facts.index as i32;
    // SAFETY: binds our socket to a correctly sized sockaddr_ll that outlives the call.
    let rc = unsafe {
        libc::bind(
            raw,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(os_error(iface, "bind"));
    }
    Ok((fd, facts))
}
