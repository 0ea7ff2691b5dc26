//! Ports as workers see them: the socket a worker owns, and the facts every worker needs
//! about every port (a reply may be built by one worker and sent by another).

use crate::net::FrameIo;
use crate::wire::MacAddr;

/// A port's socket on one queue and what it advertises.
pub struct WorkerPort {
    /// Frame I/O.
    pub io: Box<dyn FrameIo + Send>,
    /// Sectors per frame advertised on this port.
    pub max_sectors: u8,
    /// The configured cap on sectors per frame (the MTU may allow more).
    pub sectors_cap: Option<u8>,
    /// Receive queue served (AF_XDP; 0 for AF_PACKET).
    pub queue: u32,
    /// "xdp" or "packet".
    pub mode: &'static str,
    /// Sends the interface's unsolicited announcements (one socket per interface does).
    pub announces: bool,
}

/// A path (port, queue) as the LUN worker sees it: its facts, which worker owns its socket,
/// and the socket itself when that is the LUN worker.
pub struct PortView {
    /// Interface name.
    pub name: String,
    /// The port's MAC (source of every reply).
    pub mac: MacAddr,
    /// The port's MTU.
    pub mtu: u32,
    /// Sectors per frame advertised on this port.
    pub max_sectors: u8,
    /// The configured cap on sectors per frame.
    pub sectors_cap: Option<u8>,
    /// The link watch's generation last applied.
    pub link_generation: u64,
    /// Receive queue served.
    pub queue: u32,
    /// "xdp" or "packet".
    pub mode: &'static str,
    /// Sends the interface's unsolicited announcements.
    pub announces: bool,
    /// The worker that owns the socket (0: the LUN worker).
    pub owner: usize,
    /// The socket, when the LUN worker owns it.
    pub io: Option<Box<dyn FrameIo + Send>>,
}

impl PortView {
    /// The view of `port`, owned by worker `owner`; the socket stays here only for worker 0.
    pub fn split(port: WorkerPort, owner: usize) -> (PortView, Option<WorkerPort>) {
        let view = PortView {
            name: port.io.name().to_string(),
            mac: port.io.mac(),
            mtu: port.io.mtu(),
            max_sectors: port.max_sectors,
            sectors_cap: port.sectors_cap,
            link_generation: 0,
            queue: port.queue,
            mode: port.mode,
            announces: port.announces,
            owner,
            io: None,
        };
        if owner == 0 {
            (
                PortView {
                    io: Some(port.io),
                    ..view
                },
                None,
            )
        } else {
            (view, Some(port))
        }
    }

    /// Sectors per frame an MTU allows on this port (at least 1: 0 would mean 2 to an
    /// initiator).
    pub fn sectors_for(&self, mtu: u32) -> u8 {
        let by_mtu = crate::wire::max_sectors_for_mtu(mtu).max(1);
        self.sectors_cap.map_or(by_mtu, |cap| cap.min(by_mtu))
    }

    /// The largest frame this port carries (MTU plus the Ethernet header).
    pub fn max_frame(&self) -> usize {
        self.mtu as usize + 14
    }
}
