//! What a worker reports when the metrics endpoint is scraped: copies of its plain counters,
//! labelled. Workers count without atomics or locks; the scrape asks each one for a snapshot
//! between batches and adds them up.

use super::histogram::LatencyHistogram;
use crate::worker::PathStats;

/// Why a received frame was dropped (label `reason`).
pub const DROP_REASONS: [&str; 8] = [
    "truncated",
    "response",
    "not_ours",
    "masked",
    "malformed",
    "ambiguous",
    "busy",
    "rate_limited",
];

/// Index into [`DROP_REASONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than its headers, or cut by the socket.
    Truncated = 0,
    /// A response (R flag), maybe our own.
    Response = 1,
    /// Addressed to another host, shelf or slot.
    NotOurs = 2,
    /// The sender is not on the LUN's mask list.
    Masked = 3,
    /// A config/mask/reserve argument that does not add up.
    Malformed = 4,
    /// A wildcard command that matched several LUNs.
    Ambiguous = 5,
    /// The host is over its fair share of request buffers, or too many replies already wait
    /// for their state change to reach the disk (the host retransmits).
    Busy = 6,
    /// The host sent more state changes or broadcasts than its rate allows.
    RateLimited = 7,
}

/// ATA error kinds sent (label `kind`).
pub const ATA_ERROR_KINDS: [&str; 3] = ["abrt", "idnf", "unc"];

/// AoE error codes sent, by code 1..=8 (label `code`).
pub const AOE_ERROR_NAMES: [&str; 9] = [
    "unknown",
    "bad_command",
    "bad_argument",
    "device_unavailable",
    "config_string_present",
    "unsupported_version",
    "target_reserved",
    "unknown",
    "unknown",
];

/// Counters of one LUN, kept by a worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct LunCounters {
    /// Reads answered with data.
    pub reads: u64,
    /// Writes acknowledged.
    pub writes: u64,
    /// Flushes acknowledged.
    pub flushes: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// ATA errors sent, by [`ATA_ERROR_KINDS`].
    pub ata_errors: [u64; 3],
    /// AoE errors sent, by code (index = code, 0 unused).
    pub aoe_errors: [u64; 9],
    /// Query Config commands served.
    pub config_commands: u64,
    /// Mac Mask commands served.
    pub mask_commands: u64,
    /// Reserve/Release commands served.
    pub reserve_commands: u64,
    /// Requests refused, by right (`Right::ALL` order) and reason (`Refusal::ALL` order).
    pub refused: [[u64; 4]; 7],
    /// Request arrival to reply sent, reads.
    pub read_latency: LatencyHistogram,
    /// Same, writes.
    pub write_latency: LatencyHistogram,
    /// Same, flushes.
    pub flush_latency: LatencyHistogram,
}

/// One path's counters.
#[derive(Debug, Clone)]
pub struct PathSample {
    /// Interface.
    pub port: String,
    /// Receive queue.
    pub queue: u32,
    /// "xdp" or "packet".
    pub mode: &'static str,
    /// Worker serving it.
    pub worker: usize,
    /// The worker's counters for it.
    pub stats: PathStats,
    /// Frames copied where zero-copy was not possible.
    pub copies: u64,
    /// Frames the kernel dropped before we saw them.
    pub kernel_drops: u64,
}

/// One LUN's state and counters.
#[derive(Debug, Clone)]
pub struct LunSample {
    /// `shelf.slot`.
    pub lun: String,
    /// Answering on the network.
    pub online: bool,
    /// Capacity in bytes.
    pub size_bytes: u64,
    /// Counters.
    pub counters: LunCounters,
}

/// One member disk of an array.
#[derive(Debug, Clone)]
pub struct MemberSample {
    /// `shelf.slot` of the LUN.
    pub lun: String,
    /// Role in the array.
    pub role: usize,
    /// `shelf.disk`, or "missing".
    pub disk: String,
    /// active, recovering, failed, missing.
    pub state: String,
    /// I/Os completed.
    pub ios: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Read errors.
    pub read_errors: u64,
    /// Write errors.
    pub write_errors: u64,
    /// Read errors repaired from the other copy.
    pub corrected: u64,
    /// Sectors on the member's bad-block list (not the array's data there).
    pub bad_sectors: u64,
    /// In flight now.
    pub in_flight: u32,
    /// Submission to completion of member reads for client requests.
    pub read_latency: LatencyHistogram,
    /// Same, writes and flushes.
    pub write_latency: LatencyHistogram,
}

/// One array's state and background job.
#[derive(Debug, Clone)]
pub struct ArraySample {
    /// `shelf.slot` of the LUN.
    pub lun: String,
    /// Comma-joined states (normal, initing, degraded, recovering, failed).
    pub state: String,
    /// The running rebuild/resync/scrub, if any.
    pub sync_kind: Option<String>,
    /// Its progress, 0..1.
    pub sync_progress: f64,
    /// Its rate in bytes per second.
    pub sync_rate: f64,
    /// Members failed since start.
    pub member_failures: u64,
}

/// One disk slot of the shelf (an entry of `disks:`) as the front panel colours it.
#[derive(Debug, Clone)]
pub struct DiskSample {
    /// `shelf.index`.
    pub disk: String,
    /// up, failed, spare, recovering, missing or free.
    pub state: &'static str,
}

/// The states a disk slot can be in.
pub const DISK_STATES: [&str; 6] = ["up", "failed", "spare", "recovering", "missing", "free"];

/// One worker's engine counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerSample {
    /// Core it is pinned to (`None`: unpinned).
    pub cpu: Option<usize>,
    /// io_uring entries submitted.
    pub submissions: u64,
    /// Requests in io_uring now.
    pub in_flight: u64,
    /// Frame buffers.
    pub slots: u64,
    /// Frame buffers in use now.
    pub slots_in_use: u64,
    /// Times spinning found work.
    pub spin_hits: u64,
    /// Writes held back behind an overlapping write.
    pub ordered_waits: u64,
    /// I/O retried without O_DIRECT.
    pub direct_fallbacks: u64,
    /// Replies that could not be sent.
    pub tx_errors: u64,
    /// Vectored I/Os made of several requests.
    pub merged_runs: u64,
    /// Requests inside merged I/Os.
    pub merged_requests: u64,
}

/// Everything one worker reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Shelf number.
    pub shelf: u16,
    /// Per worker (index = worker id).
    pub workers: Vec<WorkerSample>,
    /// Per path.
    pub paths: Vec<PathSample>,
    /// Per LUN.
    pub luns: Vec<LunSample>,
    /// Per member disk of every array.
    pub members: Vec<MemberSample>,
    /// Per array.
    pub arrays: Vec<ArraySample>,
    /// Hot spares available.
    pub spares: u64,
    /// Every disk slot.
    pub disks: Vec<DiskSample>,
    /// The console over Ethernet, when it runs (filled in by the endpoint's source).
    pub cec: Option<crate::cec::CecSample>,
}

impl Snapshot {
    /// Adds another worker's snapshot: its paths and workers are appended; LUN counters of
    /// the same LUN are summed.
    pub fn merge(&mut self, other: Snapshot) {
        self.workers.extend(other.workers);
        self.paths.extend(other.paths);
        for lun in other.luns {
            match self.luns.iter_mut().find(|l| l.lun == lun.lun) {
                Some(mine) => mine.counters.add(&lun.counters),
                None => self.luns.push(lun),
            }
        }
        self.members.extend(other.members);
        self.arrays.extend(other.arrays);
        self.spares += other.spares;
        self.disks.extend(other.disks);
    }
}

impl LunCounters {
    /// Adds `other` (aggregating workers).
    pub fn add(&mut self, other: &LunCounters) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.flushes += other.flushes;
        self.read_bytes += other.read_bytes;
        self.written_bytes += other.written_bytes;
        for (a, b) in self.ata_errors.iter_mut().zip(other.ata_errors) {
            *a += b;
        }
        for (a, b) in self.aoe_errors.iter_mut().zip(other.aoe_errors) {
            *a += b;
        }
        self.config_commands += other.config_commands;
        self.mask_commands += other.mask_commands;
        self.reserve_commands += other.reserve_commands;
        for (a, b) in self.refused.iter_mut().zip(other.refused) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.read_latency.merge(&other.read_latency);
        self.write_latency.merge(&other.write_latency);
        self.flush_latency.merge(&other.flush_latency);
    }
}
