//! The YAML schema as read (`Raw*`, with source positions) and as validated (`Config`).

use crate::ByteSize;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::path::PathBuf;

/// Where config strings, mask lists and reservations persist by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ethershelf";
/// Buffer count advertised by default: enough for the Linux initiator's own cap (64/128
/// frames per target MAC) to govern, never the 16 that throttles vblade.
pub const DEFAULT_BUFFER_COUNT: u16 = 64;

/// How a port moves frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortMode {
    /// The best mode that works on this port.
    #[default]
    Auto,
    /// AF_XDP sockets.
    Xdp,
    /// AF_PACKET sockets.
    Packet,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteCache {
    /// Acknowledge a write only once it is on stable storage (the default).
    #[default]
    Writethrough,
    /// Acknowledge once the kernel has the data; FLUSH CACHE makes it stable.
    Writeback,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub shelf: Spanned<u32>,
    pub ports: Spanned<Vec<RawPort>>,
    #[serde(default)]
    pub state_dir: Option<String>,
    #[serde(default)]
    pub buffer_count: Option<Spanned<u32>>,
    #[serde(default)]
    pub luns: Vec<RawLun>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPort {
    pub interface: Spanned<String>,
    #[serde(default)]
    pub mode: Option<Spanned<PortMode>>,
    #[serde(default)]
    pub max_sectors: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLun {
    pub slot: Spanned<u32>,
    pub file: Spanned<String>,
    #[serde(default)]
    pub offset: Option<Spanned<ByteSize>>,
    #[serde(default)]
    pub length: Option<Spanned<ByteSize>>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub write_cache: WriteCache,
    #[serde(default = "default_true")]
    pub direct: bool,
    #[serde(default)]
    pub mask: Vec<Spanned<String>>,
}

fn default_true() -> bool {
    true
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The shelf number (AoE major).
    pub shelf: u16,
    /// The Ethernet ports every LUN is served on.
    pub ports: Vec<Port>,
    /// Where LUN state (config string, mask, reservations) persists.
    pub state_dir: PathBuf,
    /// Outstanding frames advertised to initiators per LUN.
    pub buffer_count: u16,
    /// The exported LUNs.
    pub luns: Vec<Lun>,
}

/// One Ethernet port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Interface name.
    pub interface: String,
    /// Frame I/O mode.
    pub mode: PortMode,
    /// Cap on sectors per frame (the MTU sets the upper bound).
    pub max_sectors: Option<u8>,
}

/// One exported LUN (`e<shelf>.<slot>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lun {
    /// The slot (AoE minor).
    pub slot: u8,
    /// Backing file or block device.
    pub file: PathBuf,
    /// Byte offset into the backing store (a multiple of 512).
    pub offset: u64,
    /// Bytes exported (a multiple of 512); `None` = to the end.
    pub length: Option<u64>,
    /// Refuse writes.
    pub read_only: bool,
    /// When writes are acknowledged.
    pub write_cache: WriteCache,
    /// Use O_DIRECT.
    pub direct: bool,
    /// Initial MAC mask list (empty = everyone); state_dir wins once it has one.
    pub mask: Vec<[u8; 6]>,
}
