//! The network may change under a running shelf: an MTU lowered or raised, a link taken down
//! and up. A small thread reads every port's MTU and link state four times a second
//! (SIOCGIFMTU / SIOCGIFFLAGS on a query socket of its own, so the worker makes no system
//! call for it) and publishes what it sees; the LUN worker applies a change at its next tick:
//! it advertises the sector count the new MTU allows (and refuses larger requests with ABRT,
//! never sending a frame the link cannot carry) and announces every LUN again after an MTU
//! change or a link coming back up.

use super::iface::{ifreq_for, os_error};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the interfaces are read.
pub const WATCH_PERIOD: Duration = Duration::from_millis(250);

/// One interface as last seen.
#[derive(Debug, Default)]
pub struct LinkState {
    mtu: AtomicU32,
    up: AtomicBool,
    /// Bumped on every change.
    generation: AtomicU64,
}

impl LinkState {
    /// MTU in bytes.
    pub fn mtu(&self) -> u32 {
        self.mtu.load(Ordering::Acquire)
    }
    /// Link up and running (carrier).
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
    /// Changes seen so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Reads `name`'s MTU and whether it is up and running.
pub fn read_link(name: &str) -> io::Result<(u32, bool)> {
    // SAFETY: plain socket(2); checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(os_error(name, "socket for interface queries"));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = ifreq_for(name)?;
    // SAFETY: ioctls on our socket with a valid ifreq; each result is read from the union
    // member that request fills.
    unsafe {
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut req) < 0 {
            return Err(os_error(name, "SIOCGIFMTU"));
        }
        let mtu = req.ifr_ifru.ifru_mtu as u32;
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(os_error(name, "SIOCGIFFLAGS"));
        }
        let flags = req.ifr_ifru.ifru_flags as i32;
        Ok((
            mtu,
            flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0,
        ))
    }
}

/// Starts watching `names` (one state per name, in order).
pub fn start(names: Vec<String>) -> io::Result<Vec<Arc<LinkState>>> {
    let states: Vec<Arc<LinkState>> = names
        .iter()
        .map(|n| {
            let s = LinkState::default();
            if let Ok((mtu, up)) = read_link(n) {
                s.mtu.store(mtu, Ordering::Release);
                s.up.store(up, Ordering::Release);
            }
            Arc::new(s)
        })
        .collect();
    let watched = states.clone();
    std::thread::Builder::new()
        .name("es-linkwatch".into())
        .spawn(move || loop {
            std::thread::sleep(WATCH_PERIOD);
            for (name, state) in names.iter().zip(&watched) {
                // An interface that disappeared reads as down (and is picked up again with
                // the same name).
                let (mtu, up) = read_link(name).unwrap_or((state.mtu(), false));
                if mtu != state.mtu() || up != state.up() {
                    if up != state.up() {
                        tracing::warn!(port = %name, up, "link state changed");
                    }
                    state.mtu.store(mtu, Ordering::Release);
                    state.up.store(up, Ordering::Release);
                    state.generation.fetch_add(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(states)
}
