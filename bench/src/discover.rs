//! Finding a target: broadcast Query Config on every local interface, collect each answering
//! port (multipath), then IDENTIFY for capacity and LBA48. Also the one-shot config-string
//! and SMART exchanges that `aoebench cfg` and `aoebench ping` run.

use crate::socket::{wait_readable, AoeSocket};
use ethershelf::wire::*;
use std::time::{Duration, Instant};

/// A target address `shelf.slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetAddr {
    /// Shelf (major).
    pub shelf: u16,
    /// Slot (minor).
    pub slot: u8,
}

impl std::str::FromStr for TargetAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .trim_start_matches('e')
            .split_once('.')
            .ok_or_else(|| format!("'{s}' is not SHELF.SLOT (e.g. 1.0)"))?;
        Ok(TargetAddr {
            shelf: a.parse().map_err(|_| format!("bad shelf in '{s}'"))?,
            slot: b.parse().map_err(|_| format!("bad slot in '{s}'"))?,
        })
    }
}

impl std::fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.shelf, self.slot)
    }
}

/// One way to reach the target: a local socket and a target port MAC.
#[derive(Debug, Clone)]
pub struct PathInfo {
    /// Index of the local socket.
    pub sock: usize,
    /// Target port MAC.
    pub target_mac: MacAddr,
    /// Sectors per frame on this path: min(target's Sector Count, local MTU rule).
    pub sectors: u8,
}

/// What discovery and IDENTIFY learned.
#[derive(Debug, Clone)]
pub struct Target {
    /// Address.
    pub addr: TargetAddr,
    /// Paths, in discovery order.
    pub paths: Vec<PathInfo>,
    /// Advertised buffer count (smallest over ports).
    pub buffer_count: u16,
    /// Firmware version.
    pub firmware: u16,
    /// Capacity in sectors.
    pub sectors: u64,
    /// LBA48 supported.
    pub lba48: bool,
    /// Sectors per frame usable on every path.
    pub frame_sectors: u8,
    /// IDENTIFY model string.
    pub model: String,
    /// IDENTIFY serial string.
    pub serial: String,
}

/// Discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// No reply at all.
    #[error("no AoE target {0} answered on {1} within {2:?}")]
    NoReply(TargetAddr, String, Duration),
    /// Socket trouble.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// IDENTIFY failed.
    #[error("target {0} did not answer IDENTIFY: {1}")]
    Identify(TargetAddr, String),
}

/// Builds a request header into a fresh 60-byte-minimum frame.
pub fn request(
    src: MacAddr,
    dst: MacAddr,
    addr: TargetAddr,
    cmd: AoeCommand,
    tag: u32,
    arg_len: usize,
) -> Vec<u8> {
    let mut f = vec![0u8; (AOE_HEADER_LEN + arg_len).max(MIN_FRAME_LEN)];
    let h = AoeHeaderRepr {
        dst,
        src,
        version: AOE_VERSION,
        response: false,
        error: None,
        shelf: addr.shelf,
        slot: addr.slot,
        command: cmd,
        tag,
    };
    let _ = h.emit(&mut AoeFrame::new_unchecked(&mut f[..]));
    f
}

/// Collects response frames with `tag` from any socket for `wait`; `stop_after` ends early.
pub fn collect(
    socks: &[AoeSocket],
    tag: u32,
    wait: Duration,
    stop_after: usize,
) -> Vec<(usize, Vec<u8>)> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut bufs = vec![vec![0u8; 9216]; 16];
    let mut lens = [0usize; 16];
    while Instant::now() < deadline && out.len() < stop_after {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .max(1) as i32;
        wait_readable(socks, left.min(50));
        for (i, s) in socks.iter().enumerate() {
            let n = s.recv_batch(&mut bufs, &mut lens).unwrap_or(0);
            for k in 0..n {
                let f = &bufs[k][..lens[k]];
                if let Ok(v) = AoeFrame::new_checked(f) {
                    if v.is_response() && v.tag() == tag {
                        out.push((i, f.to_vec()));
                    }
                }
            }
        }
    }
    out
}

/// Broadcasts Query Config for `addr` on every socket and gathers the answering ports.
pub fn discover(
    socks: &[AoeSocket],
    addr: TargetAddr,
    wait: Duration,
) -> Result<Target, DiscoverError> {
    let tag = 0x8000_0000 | 0x00C0_0000 | (std::process::id() & 0xFFFF);
    for s in socks {
        let f = request(
            s.mac,
            MacAddr::BROADCAST,
            addr,
            AoeCommand::QueryConfig,
            tag,
            CONFIG_HEADER_LEN,
        );
        s.send(&f)?;
    }
    let replies = collect(socks, tag, wait, usize::MAX);
    let mut paths: Vec<PathInfo> = Vec::new();
    let (mut bufcnt, mut firmware) = (u16::MAX, 0);
    for (sock, f) in replies {
        let view = AoeFrame::new_unchecked(&f[..]);
        if view.is_error() || view.shelf() != addr.shelf || view.slot() != addr.slot {
            continue;
        }
        let Ok(cfg) = ConfigPacket::new_checked(view.payload()) else {
            continue;
        };
        let advertised = match cfg.sector_count() {
            0 => 2,
            n => n,
        };
        let sectors = advertised.min(max_sectors_for_mtu(socks[sock].mtu));
        if paths
            .iter()
            .any(|p| p.sock == sock && p.target_mac == view.src())
        {
            continue;
        }
        bufcnt = bufcnt.min(cfg.buffer_count());
        firmware = cfg.firmware();
        paths.push(PathInfo {
            sock,
            target_mac: view.src(),
            sectors,
        });
    }
    if paths.is_empty() {
        let ifaces = socks
            .iter()
            .map(|s| s.iface.as_str())
            .collect::<Vec<_>>()
            .join(",");
        return Err(DiscoverError::NoReply(addr, ifaces, wait));
    }
    let frame_sectors = paths.iter().map(|p| p.sectors).min().unwrap_or(2).max(1);
    let mut target = Target {
        addr,
        paths,
        buffer_count: bufcnt,
        firmware,
        sectors: 0,
        lba48: false,
        frame_sectors,
        model: String::new(),
        serial: String::new(),
    };
    identify(socks, &mut target)?;
    Ok(target)
}

fn ata_string(page: &[u8], first_word: usize, words: usize) -> String {
    let mut s = Vec::new();
    for w in 0..words {
        let i = (first_word + w) * 2;
        s.push(page[i + 1]);
        s.push(page[i]);
    }
    String::from_utf8_lossy(&s).trim().to_string()
}

/// Sends one ATA command on path 0 and waits for its reply.
pub fn ata_once(
    socks: &[AoeSocket],
    target: &Target,
    tag: u32,
    repr: AtaRepr,
    data: &[u8],
) -> Result<Vec<u8>, DiscoverError> {
    let p = &target.paths[0];
    let s = &socks[p.sock];
    let mut f = request(
        s.mac,
        p.target_mac,
        target.addr,
        AoeCommand::Ata,
        tag,
        ATA_HEADER_LEN + data.len(),
    );
    let _ = repr.emit(&mut AtaPacket::new_unchecked(&mut f[AOE_HEADER_LEN..]));
    f[ATA_DATA_OFFSET..ATA_DATA_OFFSET + data.len()].copy_from_slice(data);
    for _attempt in 0..3 {
        s.send(&f)?;
        if let Some((_, r)) = collect(socks, tag, Duration::from_secs(1), 1).pop() {
            return Ok(r);
        }
    }
    Err(DiscoverError::Identify(
        target.addr,
        "no reply in 3 s".into(),
    ))
}

/// IDENTIFY: capacity and LBA48 mode, model and serial.
pub fn identify(socks: &[AoeSocket], target: &mut Target) -> Result<(), DiscoverError> {
    let tag = 0x8000_0000 | 0x00C1_0000 | (std::process::id() & 0xFFFF);
    let repr = AtaRepr {
        aflags: AtaFlags(0),
        err_feature: 0,
        sector_count: 1,
        cmd_status: 0xEC,
        lba: [0, 0, 0, 0xA0, 0, 0],
    };
    let r = ata_once(socks, target, tag, repr, &[])?;
    if r.len() < ATA_DATA_OFFSET + 512 || r[27] & 0x01 != 0 {
        return Err(DiscoverError::Identify(
            target.addr,
            format!(
                "status {:#04x}, {} bytes",
                r.get(27).copied().unwrap_or(0),
                r.len()
            ),
        ));
    }
    let page = &r[ATA_DATA_OFFSET..ATA_DATA_OFFSET + 512];
    let word = |w: usize| u16::from_le_bytes([page[2 * w], page[2 * w + 1]]) as u64;
    target.lba48 = (word(83) | word(86)) & (1 << 10) != 0;
    target.sectors = if target.lba48 {
        word(100) | word(101) << 16 | word(102) << 32 | word(103) << 48
    } else {
        word(60) | word(61) << 16
    };
    target.model = ata_string(page, 27, 20);
    target.serial = ata_string(page, 10, 10);
    Ok(())
}

/// One target's answer to a config command: its string, or the AoE error code.
pub type ConfigAnswer = (TargetAddr, Result<Vec<u8>, u8>);

/// Runs a config-string command on `addr` (wildcards allowed); returns (address, string or
/// error code) per answering target.
pub fn config_command(
    socks: &[AoeSocket],
    addr: TargetAddr,
    ccmd: ConfigCommand,
    string: &[u8],
    wait: Duration,
) -> Result<Vec<ConfigAnswer>, DiscoverError> {
    let tag = 0x8000_0000 | 0x00C2_0000 | (std::process::id() & 0xFFFF);
    for s in socks {
        let repr = ConfigRepr {
            buffer_count: 0,
            firmware: 0,
            sector_count: 0,
            aoe_version: 1,
            command: ccmd,
            string,
        };
        let mut f = request(
            s.mac,
            MacAddr::BROADCAST,
            addr,
            AoeCommand::QueryConfig,
            tag,
            repr.buffer_len(),
        );
        let _ = repr.emit(&mut f[AOE_HEADER_LEN..]);
        s.send(&f)?;
    }
    let mut out = Vec::new();
    for (_, f) in collect(socks, tag, wait, usize::MAX) {
        let v = AoeFrame::new_unchecked(&f[..]);
        let who = TargetAddr {
            shelf: v.shelf(),
            slot: v.slot(),
        };
        if out.iter().any(|(a, _): &(TargetAddr, _)| *a == who) {
            continue;
        }
        if v.is_error() {
            out.push((who, Err(v.error())));
        } else if let Ok(p) = ConfigPacket::new_checked(v.payload()) {
            let s = ConfigRepr::parse(&p)
                .map(|r| r.string.to_vec())
                .unwrap_or_default();
            out.push((who, Ok(s)));
        }
    }
    Ok(out)
}
