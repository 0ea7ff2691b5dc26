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

impl std::str::FromStr for PortMode {
    type Err = String;
    fn from_str(s: &str) -> Result<PortMode, String> {
        match s {
            "auto" => Ok(PortMode::Auto),
            "xdp" => Ok(PortMode::Xdp),
            "packet" => Ok(PortMode::Packet),
            other => Err(format!(
                "unknown port mode '{other}': use auto, xdp or packet"
            )),
        }
    }
}

impl std::fmt::Display for PortMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortMode::Auto => "auto",
            PortMode::Xdp => "xdp",
            PortMode::Packet => "packet",
        })
    }
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
    pub disks: Option<Spanned<RawDisks>>,
    #[serde(default)]
    pub spares: Vec<Spanned<u32>>,
    #[serde(default)]
    pub rebuild: Option<RawRebuild>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    #[serde(default)]
    pub cpus: Vec<Spanned<u32>>,
    #[serde(default)]
    pub workers: Option<Spanned<u32>>,
    #[serde(default)]
    pub sqpoll: bool,
    #[serde(default)]
    pub access: Option<RawAccess>,
    #[serde(default)]
    pub cec: Option<RawCec>,
    #[serde(default)]
    pub management: Option<RawManagement>,
    #[serde(default)]
    pub luns: Vec<RawLun>,
}

/// The `management:` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManagement {
    pub interface: Spanned<String>,
    pub address: Spanned<String>,
    #[serde(default)]
    pub gateway: Option<Spanned<String>>,
    #[serde(default)]
    pub dns: Vec<Spanned<String>>,
}

/// `disks:` as written: a list of paths, or `auto`.
#[derive(Debug)]
pub(crate) enum RawDisks {
    /// Every disk but the boot disk, in slot order.
    Auto,
    /// These paths.
    List(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawDisks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Disks;
        impl<'de> serde::de::Visitor<'de> for Disks {
            type Value = RawDisks;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of disk paths, or auto")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawDisks, E> {
                match v {
                    "auto" => Ok(RawDisks::Auto),
                    _ => Err(E::custom(format!(
                        "disks: '{v}' is neither a list of paths nor 'auto'"
                    ))),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawDisks, A::Error> {
                let mut list = Vec::new();
                while let Some(path) = seq.next_element::<Spanned<String>>()? {
                    list.push(path);
                }
                Ok(RawDisks::List(list))
            }
        }
        d.deserialize_any(Disks)
    }
}

/// The `cec:` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    #[serde(default)]
    pub allow: Option<RawEntries>,
    #[serde(default)]
    pub sessions: Option<Spanned<u32>>,
    #[serde(default)]
    pub name: Option<Spanned<String>>,
}

/// A list of entries as written (each with its position).
pub(crate) type RawEntries = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccess {
    #[serde(default)]
    pub lists: std::collections::BTreeMap<String, RawEntries>,
    #[serde(default)]
    pub wire_admin: Option<Spanned<String>>,
    #[serde(default)]
    pub ethers: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLunAccess {
    #[serde(default)]
    pub discover: Option<RawEntries>,
    #[serde(default)]
    pub read: Option<RawEntries>,
    #[serde(default)]
    pub write: Option<RawEntries>,
    #[serde(default)]
    pub config_read: Option<RawEntries>,
    #[serde(default)]
    pub config_set: Option<RawEntries>,
    #[serde(default)]
    pub mask: Option<RawEntries>,
    #[serde(default)]
    pub reserve: Option<RawEntries>,
    #[serde(default)]
    pub wire_admin: Option<Spanned<String>>,
}

impl RawLunAccess {
    /// The rights given, with their entries.
    pub fn rights(&self) -> Vec<(crate::access::Right, &RawEntries)> {
        use crate::access::Right;
        [
            (Right::Discover, &self.discover),
            (Right::Read, &self.read),
            (Right::Write, &self.write),
            (Right::ConfigRead, &self.config_read),
            (Right::ConfigSet, &self.config_set),
            (Right::Mask, &self.mask),
            (Right::Reserve, &self.reserve),
        ]
        .into_iter()
        .filter_map(|(r, e)| e.as_ref().map(|e| (r, e)))
        .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRebuild {
    #[serde(default)]
    pub min_rate: Option<Spanned<ByteSize>>,
    #[serde(default)]
    pub max_rate: Option<Spanned<ByteSize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub socket: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRaid10 {
    pub disks: Spanned<Vec<Spanned<u32>>>,
    #[serde(default)]
    pub chunk: Option<Spanned<ByteSize>>,
    #[serde(default)]
    pub clean: bool,
    #[serde(default)]
    pub degraded_start: bool,
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
    #[serde(default)]
    pub file: Option<Spanned<String>>,
    #[serde(default)]
    pub raid10: Option<RawRaid10>,
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
    pub create: bool,
    #[serde(default)]
    pub mask: Vec<Spanned<String>>,
    #[serde(default)]
    pub access: Option<RawLunAccess>,
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
    /// The shelf's disks (shown as `<shelf>.<index>`), members of RAID-10 LUNs or spares.
    pub disks: Vec<PathBuf>,
    /// `disks: auto` found them (every disk except the boot disk, in slot order).
    pub disks_auto: bool,
    /// Shelf-wide hot spares: indices into `disks`.
    pub spares: Vec<usize>,
    /// Rebuild and resync throttle.
    pub rebuild: RebuildRates,
    /// The admin (console) socket.
    pub admin_socket: PathBuf,
    /// The Prometheus endpoint.
    pub metrics: MetricsListen,
    /// Cores the workers may be pinned to, in order of preference (empty: chosen from the
    /// machine's topology).
    pub cpus: Vec<usize>,
    /// Worker threads at most (`None`: one per receive queue, up to the usable cores).
    pub workers: Option<usize>,
    /// The LUN worker's io_uring polls its submission queue from a kernel thread (SQPOLL):
    /// no system call per batch, at the price of a core kept busy while I/O flows.
    pub sqpoll: bool,
    /// The exported LUNs.
    pub luns: Vec<Lun>,
    /// Access lists and the wire-side administration policy.
    pub access: crate::access::ShelfAccess,
    /// The console over Ethernet (CEC).
    pub cec: CecConfig,
    /// The appliance's management interface (front panel and metrics; never AoE).
    pub management: Option<Management>,
    /// Assemble RAID-10 arrays even when their members diverged (split brain): the newest
    /// side is kept and the other members are rebuilt from it. Never from the YAML: only
    /// `ethershelf serve --force-assemble`, an admin's deliberate choice.
    pub force_assemble: bool,
}

/// The management interface of an appliance: it carries the front panel and metrics (an IP
/// address), while the AoE ports carry none. The appliance image turns this into its network
/// setup at boot; the engine itself only checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Management {
    /// Interface name.
    pub interface: String,
    /// How it gets its address.
    pub address: ManagementAddress,
    /// Default gateway (static addresses only).
    pub gateway: Option<std::net::IpAddr>,
    /// Name servers (static addresses only).
    pub dns: Vec<std::net::IpAddr>,
}

/// How the management interface gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagementAddress {
    /// DHCP (IPv4) and router advertisements (IPv6).
    Dhcp,
    /// This address and prefix length.
    Static(std::net::IpAddr, u8),
}

/// Most console sessions over Ethernet a shelf may allow at once.
pub const MAX_CEC_SESSIONS: usize = 20;
/// Console sessions over Ethernet allowed at once unless the YAML says otherwise.
pub const DEFAULT_CEC_SESSIONS: usize = 4;

/// The shelf console over Ethernet (Coraid's CEC, EtherType 0xBCBC) on the AoE ports.
/// Off unless the YAML turns it on: it gives full control of the shelf to every host of
/// the storage segment, and AoE segments have no authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CecConfig {
    /// Serve the console on the ports.
    pub enabled: bool,
    /// Asked before the prompt (`None`: no password).
    pub password: Option<String>,
    /// Hosts that may connect (`None`: every host).
    pub allow: Option<std::collections::BTreeSet<[u8; 6]>>,
    /// Sessions at once.
    pub sessions: usize,
    /// The description offered to `cec -p` after the shelf number (`None`: the host name).
    pub name: Option<String>,
}

impl Default for CecConfig {
    fn default() -> Self {
        CecConfig {
            enabled: false,
            password: None,
            allow: None,
            sessions: DEFAULT_CEC_SESSIONS,
            name: None,
        }
    }
}

/// Where the Prometheus endpoint listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsListen {
    /// Not configured: try [`DEFAULT_METRICS_LISTEN`]; if it cannot be bound, warn and go on.
    #[default]
    Default,
    /// Configured: failing to bind it stops the shelf from starting.
    At(std::net::SocketAddr),
    /// `listen: off`.
    Off,
}

/// Default Prometheus endpoint (loopback only: expose it deliberately).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9478";

/// Default admin socket.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/ethershelf/admin.sock";
/// Default RAID-10 chunk: 64 KiB (see the README: AoE requests are at most 8.5 KiB, so a
/// request almost never spans two chunks, while sequential streams still spread over pairs).
pub const DEFAULT_CHUNK: u64 = 64 << 10;

/// Rebuild/resync speed limits in bytes per second: `min` while clients are busy, up to
/// `max` when the array is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildRates {
    /// Floor under client load.
    pub min: u64,
    /// Ceiling when idle.
    pub max: u64,
}

impl Default for RebuildRates {
    fn default() -> Self {
        RebuildRates {
            min: 10 << 20,
            max: 200 << 20,
        }
    }
}

/// What a LUN stores its data on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A slice of one file or block device (like vblade).
    File(FileSpec),
    /// A RAID-10 array over shelf disks.
    Raid10(Raid10Spec),
}

/// A file or block device slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Backing file or block device.
    pub path: PathBuf,
    /// Byte offset into the backing store (a multiple of 512).
    pub offset: u64,
    /// Bytes exported (a multiple of 512); `None` = to the end.
    pub length: Option<u64>,
    /// Use O_DIRECT.
    pub direct: bool,
    /// Create the file (sparse, `length` bytes) at start when it does not exist.
    pub create: bool,
}

/// A RAID-10 array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raid10Spec {
    /// Member disks (indices into `Config::disks`), in role order for a new array.
    pub disks: Vec<usize>,
    /// Chunk size in bytes (a power of two, >= 4 KiB).
    pub chunk: u64,
    /// Create a new array without the initial sync (members known to be zeroed).
    pub clean: bool,
    /// Start even when a member is missing (as long as every chunk has a copy).
    pub degraded_start: bool,
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
    /// Where the data lives.
    pub backend: Backend,
    /// Refuse writes.
    pub read_only: bool,
    /// When writes are acknowledged.
    pub write_cache: WriteCache,
    /// Initial MAC mask list (empty = everyone); state_dir wins once it has one.
    pub mask: Vec<[u8; 6]>,
    /// Who may do what (rights not mentioned: every host).
    pub access: crate::access::LunAccess,
}
