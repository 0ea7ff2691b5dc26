//! An exported LUN as the worker sees it: protocol state, backing store and fixed replies.

use crate::ata::{identify_page, IdentifyInfo};
use crate::lun::LunState;
use crate::store::Backing;
use std::sync::atomic::AtomicBool;

/// One exported LUN (`e<shelf>.<slot>`), shared read-mostly between workers.
pub struct Target {
    /// Shelf (AoE major).
    pub shelf: u16,
    /// Slot (AoE minor).
    pub slot: u8,
    /// Config string, mask and reservations.
    pub state: LunState,
    /// The backing file (`None`: a RAID-10 array the worker owns).
    pub backing: Option<Backing>,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Writes refused.
    pub read_only: bool,
    /// The array is degraded or failed: SMART RETURN STATUS says "threshold exceeded".
    pub degraded: AtomicBool,
    /// Acknowledge writes only once stable (`RWF_DSYNC`).
    pub writethrough: bool,
    /// Advertised buffer count.
    pub buffer_count: u16,
    /// The IDENTIFY page, built once.
    pub identify: [u8; 512],
}

/// Firmware version in Query Config replies: 0xMmmp from the crate version (0.1.0 = 0x0010).
pub fn firmware_version() -> u16 {
    let v = |i: usize| {
        env!("CARGO_PKG_VERSION")
            .split('.')
            .nth(i)
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0)
    };
    (v(0) << 12) | ((v(1) & 0xff) << 4) | (v(2) & 0xf)
}

impl Target {
    /// Builds a target over `backing` (a file) or, with `None`, an array of `sectors`;
    /// `host_id` makes serial numbers unique across shelves.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shelf: u16,
        slot: u8,
        state: LunState,
        backing: Option<Backing>,
        sectors: u64,
        read_only: bool,
        writethrough: bool,
        buffer_count: u16,
        host_id: &str,
    ) -> Target {
        let serial = format!("{shelf}.{slot}:{host_id}");
        let sectors = backing.as_ref().map_or(sectors, Backing::sectors);
        let read_only = backing.as_ref().map_or(read_only, Backing::read_only);
        let identify = identify_page(&IdentifyInfo {
            sectors,
            serial: &serial,
            firmware: env!("CARGO_PKG_VERSION"),
            model: "ethershelf",
        });
        Target {
            shelf,
            slot,
            state,
            backing,
            sectors,
            read_only,
            degraded: AtomicBool::new(false),
            writethrough,
            buffer_count,
            identify,
        }
    }
}
