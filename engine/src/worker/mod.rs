//! The worker loop: receive a batch of frames, answer what needs no disk at once, turn reads,
//! writes and flushes into io_uring submissions, reap completions, build replies in place and
//! send them from the port each request came in on.
//!
//! One worker owns its ports' sockets, its slab of frame buffers and its io_uring: nothing on
//! the frame path allocates or takes a lock (LUN access lists are read through `ArcSwap`).

mod acl;
pub mod admin;
mod batch;
pub mod console;
mod handoff;
mod hosts;
mod merge;
mod meta;
mod ordering;
mod panel;
mod port;
pub mod queue;
mod raid;
mod reconfig;
pub mod reply;
mod report;
mod slab;
mod stats;
mod target;

pub use ordering::{Extent, WriteOrder};
pub use port::{PortView, WorkerPort};
pub use queue::{spread, QueueWorker, Spread};
pub use slab::{Slab, SlabHandle};
pub use stats::{PathStats, WorkerStats};
pub use target::{firmware_version, Target};

use crate::ata::{self, AtaCommand, AtaOutcome, ERROR_ABRT, ERROR_UNC};
use crate::lun::{AccessLists, Refusal};
use crate::metrics::{monotonic_ns, DropReason, LunCounters};
use crate::wire::*;
use ethershelf_config::access::Right;
use handoff::Message;
use io_uring::{opcode, squeue, types, IoUring};
use queue::QueueLink;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

/// user_data kinds (top byte); the low bits say which slot, port or member.
const UD_KIND: u64 = 0xFF << 56;
const UD_IO: u64 = 1 << 56;
const UD_POLL: u64 = 2 << 56;
const UD_STOP: u64 = 3 << 56;
const UD_RAID: u64 = 4 << 56;
const UD_SYNC: u64 = 5 << 56;
const UD_TICK: u64 = 6 << 56;
const UD_ADMIN: u64 = 7 << 56;
const UD_PEER: u64 = 8 << 56;
const UD_VEC: u64 = 9 << 56;
const UD_MVEC: u64 = 10 << 56;
const UD_PERSIST: u64 = 11 << 56;
const UD_META: u64 = 12 << 56;
/// Replies waiting for their state change to be durable, at most (more: dropped as busy,
/// the host retransmits).
const PARKED_MAX: usize = 256;
/// Microseconds a worker watches its rings before it sleeps.
pub const DEFAULT_SPIN_MICROS: u64 = 50;
/// Registered file table: two entries per LUN (O_DIRECT and page-cache descriptors), for
/// every LUN number the shelf can export.
const FILE_TABLE_SLOTS: u32 = 2 * 256;
/// Merged RAID-10 member I/Os in flight at most (more member I/Os go one by one).
const MEMBER_RUNS: usize = 128;
/// How long the SQPOLL kernel thread keeps polling after the last submission (ms).
const SQPOLL_IDLE_MS: u32 = 50;
/// Housekeeping ticks (RAID pacing, bitmap clearing) per second.
pub const TICKS_PER_SECOND: u64 = 10;

/// What a slot holds while it is not free.
#[derive(Debug, Clone, Copy, Default)]
struct SlotState {
    port: u16,
    target: u16,
    op: Op,
    lba: u64,
    count: u8,
    retried_buffered: bool,
    /// RAID: the request's progress over the members.
    raid: crate::store::raid10::Request,
    /// When the request's batch was received (monotonic ns).
    arrived: u64,
    /// When its I/O was submitted (monotonic ns).
    submitted: u64,
    /// The host whose request buffer this is (counted against its share while set).
    host: Option<hosts::HostId>,
}

/// The disk work an ATA request asks for.
#[derive(Debug, Clone, Copy)]
struct IoAsk {
    op: Op,
    lba: u64,
    count: u8,
}

impl IoAsk {
    fn new(op: Op, lba: u64, count: u8) -> IoAsk {
        IoAsk { op, lba, count }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Op {
    #[default]
    Idle,
    Read,
    Write,
    Flush,
}

/// The LUN worker: every path's facts (and its own sockets), targets, buffers, ring, and the
/// links to the queue workers that receive and send for the other queues.
pub struct Worker {
    ports: Vec<PortView>,
    /// Links to the queue workers (worker k at index k - 1).
    peers: Vec<QueueLink>,
    /// Slots per worker partition (slot s belongs to worker s / per_worker).
    per_worker: u32,
    /// Every LUN the worker knows (online or not; a removed LUN's entry stays until reused).
    targets: Vec<Arc<Target>>,
    /// Online targets: the ones discovery and the network see.
    live: Vec<u16>,
    /// Slot -> online target.
    by_slot: [u16; 256],
    /// The LUN book (records parallel to `targets`; `None` = removed) and what `make` needs.
    book: console::ShelfBook,
    shelf: u16,
    ring: IoUring,
    fixed_buffers: bool,
    /// File LUN descriptors are registered with the ring (entries 2t and 2t + 1 of target t).
    fixed_files: bool,
    slab: SlabHandle,
    free: Vec<u32>,
    slots: Vec<SlotState>,
    order: WriteOrder,
    ready: Vec<u32>,
    tx: Vec<Vec<(u32, usize)>>,
    stop_fd: RawFd,
    in_flight: usize,
    /// Targets whose O_DIRECT descriptor refused 512-byte I/O: go buffered straight away.
    buffered_only: Vec<bool>,
    /// RAID-10 arrays by target index (`None` for file LUNs).
    arrays: Vec<Option<crate::store::raid10::Array>>,
    /// Shelf-wide hot spares.
    spares: Vec<crate::store::raid10::MemberDisk>,
    /// Disks taken out of arrays after failing.
    failed_disks: Vec<crate::store::raid10::MemberDisk>,
    /// Pacing per array.
    pace: Vec<raid::ArrayPace>,
    /// Rebuild/resync rates.
    rates: ethershelf_config::RebuildRates,
    /// Sync steps in flight.
    sync_slots: [Option<raid::SyncSlot>; raid::SYNC_SLOTS],
    /// Buffers of the sync steps (two per step).
    sync_slab: Slab,
    /// Completions made up without the kernel (injected faults).
    synthetic: Vec<(u64, i32)>,
    /// Member I/O held by an injected hang.
    held: Vec<raid::HeldIo>,
    /// Member I/Os the RAID policy asked for (kept to reuse their memory).
    raid_ops: Vec<crate::store::raid10::MemberOp>,
    step_ops: Vec<crate::store::raid10::StepOp>,
    /// Housekeeping ticks since start.
    ticks: u64,
    /// Stopping: no new background work.
    stopping: bool,
    /// Admin requests and the descriptor that signals them.
    admin: Option<admin::AdminLink>,
    /// Who sent the console command being run (audit trail).
    console_user: String,
    /// Per-host buffer shares and rate limits.
    hosts: hosts::Hosts,
    /// Heartbeat for the watchdog.
    liveness: Arc<Liveness>,
    /// Writes RAID bitmaps off the worker thread.
    meta: meta::MetaWriter,
    /// MTU and link state of each port view's interface (same order as `ports`).
    links: Vec<Arc<crate::net::watch::LinkState>>,
    /// Readable when the persister made state changes durable.
    persist_wake: Option<crate::lun::PersistWake>,
    /// Replies built but held until their LUN's state change is on disk.
    parked: Vec<Parked>,
    /// Counters.
    pub stats: WorkerStats,
    /// Counters per path (same order as the ports).
    pub paths: Vec<PathStats>,
    /// How long to watch the rings before sleeping (zero: never spin).
    spin: std::time::Duration,
    /// Counters per LUN (same order as the targets).
    luns: Vec<LunCounters>,
    /// io_uring entries queued.
    submissions: u64,
    /// When the batch being handled was received (monotonic ns).
    batch_time: u64,
    /// The core this worker is pinned to.
    cpu: Option<usize>,
    /// File LUN reads and writes of this batch, held to be merged.
    pending_io: Vec<u32>,
    /// The merge planner's input and output (kept to reuse their memory).
    plan: Vec<merge::Pending>,
    plan_out: Vec<(usize, usize)>,
    /// Merged I/Os' buffers, and the free ones.
    runs: Vec<merge::Run>,
    free_runs: Vec<u32>,
    /// RAID-10 member I/Os of this batch, held to be merged.
    member_pending: Vec<merge::MemberIo>,
    /// Merged member I/Os' parts, and the free ones.
    member_runs: Vec<merge::MemberRun>,
    free_member_runs: Vec<u32>,
}

/// What the worker needs for RAID-10 LUNs.
#[derive(Default)]
pub struct RaidSetup {
    /// Arrays by target index (`None` for file LUNs).
    pub arrays: Vec<Option<crate::store::raid10::Array>>,
    /// Shelf-wide hot spares.
    pub spares: Vec<crate::store::raid10::MemberDisk>,
    /// Rebuild/resync rates.
    pub rates: ethershelf_config::RebuildRates,
}

const NO_TARGET: u16 = u16::MAX;

impl Worker {
    /// Builds the LUN worker from the spread ports (its partition of the slab is slots
    /// `0..per_worker`). `stop_fd` becomes readable to stop it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ports: Vec<PortView>,
        peers: Vec<QueueLink>,
        slab: SlabHandle,
        per_worker: usize,
        targets: Vec<Arc<Target>>,
        stop_fd: RawFd,
        raid: RaidSetup,
        admin: Option<admin::AdminLink>,
        book: console::ShelfBook,
    ) -> io::Result<Worker> {
        let slots = slab.slots();
        let entries = (slots + ports.len() + peers.len() + 4)
            .next_power_of_two()
            .min(32768) as u32;
        let ring = if book.config.sqpoll {
            let ring = IoUring::builder()
                .setup_sqpoll(SQPOLL_IDLE_MS)
                .build(entries)?;
            tracing::info!(
                idle_ms = SQPOLL_IDLE_MS,
                "io_uring SQPOLL on: a kernel thread takes the submissions"
            );
            ring
        } else {
            IoUring::new(entries)?
        };
        let iov = libc::iovec {
            iov_base: slab.base() as *mut libc::c_void,
            iov_len: slab.len(),
        };
        // SAFETY: the registered region is the shared slab, which the worker's handle keeps
        // alive as long as the worker and therefore as long as the ring.
        let fixed_buffers = match unsafe { ring.submitter().register_buffers(&[iov]) } {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "io_uring buffer registration failed; using unregistered buffers");
                false
            }
        };
        let shelf = book.config.shelf;
        let mut by_slot = [NO_TARGET; 256];
        let mut live = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            if book.is_online(i) {
                by_slot[t.slot as usize] = i as u16;
                live.push(i as u16);
            }
        }
        let nports = ports.len();
        let targets_len = targets.len();
        let mut arrays = raid.arrays;
        arrays.resize_with(targets_len, || None);
        // Sized for sync steps even without arrays: the console may make one at any time.
        let sync_slab = Slab::new(
            raid::SYNC_SLOTS * 2,
            ATA_DATA_OFFSET + crate::store::raid10::STEP_SECTORS as usize * SECTOR_SIZE,
        )?;
        let fixed_files = match ring.submitter().register_files_sparse(FILE_TABLE_SLOTS) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "io_uring file registration failed; using plain descriptors");
                false
            }
        };
        let mut worker = Worker {
            ports,
            peers,
            per_worker: per_worker as u32,
            targets,
            live,
            by_slot,
            book,
            shelf,
            ring,
            fixed_buffers,
            fixed_files,
            slab,
            free: (0..per_worker as u32).rev().collect(),
            slots: vec![SlotState::default(); slots],
            order: WriteOrder::new(slots + raid::SYNC_SLOTS),
            ready: Vec::with_capacity(slots),
            tx: (0..nports).map(|_| Vec::with_capacity(slots)).collect(),
            stop_fd,
            in_flight: 0,
            buffered_only: vec![false; targets_len],
            arrays,
            spares: raid.spares,
            failed_disks: Vec::new(),
            pace: vec![raid::ArrayPace::default(); targets_len],
            rates: raid.rates,
            sync_slots: [None; raid::SYNC_SLOTS],
            sync_slab,
            synthetic: Vec::new(),
            held: Vec::new(),
            raid_ops: Vec::with_capacity(crate::store::raid10::MAX_OPS),
            step_ops: Vec::with_capacity(2),
            ticks: 0,
            stopping: false,
            admin,
            console_user: String::from("console"),
            hosts: hosts::Hosts::new(),
            links: Vec::new(),
            meta: meta::MetaWriter::start()?,
            liveness: Arc::new(Liveness {
                beat: Default::default(),
                queue_workers_ok: std::sync::atomic::AtomicBool::new(true),
            }),
            persist_wake: None,
            parked: Vec::with_capacity(PARKED_MAX),
            stats: WorkerStats::default(),
            paths: vec![PathStats::default(); nports],
            spin: std::time::Duration::from_micros(DEFAULT_SPIN_MICROS),
            luns: vec![LunCounters::default(); targets_len],
            submissions: 0,
            batch_time: 0,
            cpu: None,
            pending_io: Vec::with_capacity(slots),
            plan: Vec::with_capacity(slots),
            plan_out: Vec::with_capacity(slots),
            runs: (0..slots / 2).map(|_| merge::Run::default()).collect(),
            free_runs: (0..(slots / 2) as u32).rev().collect(),
            member_pending: Vec::with_capacity(4 * slots),
            member_runs: (0..MEMBER_RUNS)
                .map(|_| merge::MemberRun::default())
                .collect(),
            free_member_runs: (0..MEMBER_RUNS as u32).rev().collect(),
        };
        for t in 0..worker.targets.len() {
            worker.register_target_files(t);
        }
        worker.apply_access();
        tracing::info!(
            entries,
            fixed_buffers = worker.fixed_buffers,
            fixed_files = worker.fixed_files,
            sqpoll = worker.book.config.sqpoll,
            slots,
            "io_uring ready"
        );
        Ok(worker)
    }

    /// Points the registered file entries of target `t` at its current descriptors (or clears
    /// them). Called whenever `targets[t]` changes, so an entry never names a closed or
    /// reused descriptor's old file. If the kernel refuses, registration is dropped for good
    /// and every I/O uses plain descriptors.
    fn register_target_files(&mut self, t: usize) {
        if !self.fixed_files {
            return;
        }
        let fds = match self.targets[t].backing.as_ref() {
            Some(b) => [b.fd(), b.buffered_fd()],
            None => [-1, -1],
        };
        let at = 2 * t as u32;
        if at + 1 >= FILE_TABLE_SLOTS {
            self.fixed_files = false;
        } else if let Err(e) = self.ring.submitter().register_files_update(at, &fds) {
            tracing::warn!(error = %e, "io_uring file registration update failed; using plain descriptors from now on");
            self.fixed_files = false;
        }
    }

    /// The descriptor for I/O on file LUN `t` (O_DIRECT, or the page-cache one when
    /// `buffered`), and whether it is an index into the registered file table.
    fn file_of(&self, t: u16, buffered: bool) -> Option<(types::Fd, bool)> {
        let backing = self.targets[t as usize].backing.as_ref()?;
        Some(if self.fixed_files {
            (types::Fd(2 * t as i32 + buffered as i32), true)
        } else if buffered {
            (types::Fd(backing.buffered_fd()), false)
        } else {
            (types::Fd(backing.fd()), false)
        })
    }

    /// Closes the rings to the queue workers (they finish sending and stop). `run` does this
    /// on a clean stop; call it after an error too.
    pub fn close_peers(&mut self) {
        for p in &mut self.peers {
            p.to.close();
        }
    }

    /// Records the core the worker was pinned to (reported in metrics).
    pub fn set_cpu(&mut self, cpu: Option<usize>) {
        self.cpu = cpu;
    }

    /// Drops a received frame, counting why on its path.
    fn drop_frame(&mut self, port: usize, slot: u32, reason: DropReason) {
        self.paths[port].drops[reason as usize] += 1;
        match reason {
            DropReason::Truncated => self.stats.drop_truncated += 1,
            DropReason::Response => self.stats.drop_response += 1,
            DropReason::NotOurs => self.stats.drop_not_ours += 1,
            DropReason::Masked => self.stats.drop_masked += 1,
            DropReason::Malformed => self.stats.drop_malformed += 1,
            DropReason::Ambiguous => self.stats.drop_ambiguous += 1,
            DropReason::Busy => self.stats.drop_busy += 1,
            DropReason::RateLimited => self.stats.drop_rate_limited += 1,
        }
        self.release(slot);
    }

    /// Counts an AoE error reply with `code` for target `t`.
    fn count_aoe_error(&mut self, t: u16, code: u8) {
        count_aoe_error(&mut self.stats, &mut self.luns[t as usize], code);
    }

    /// Counts an ATA error reply (`bits` = the ATA error register) for target `t`.
    fn count_ata_error(&mut self, t: usize, bits: u8) {
        count_ata_error(&mut self.stats, &mut self.luns[t], bits);
    }

    /// Records the latency of the I/O reply in `slot`, sent at `now`.
    fn record_latency(&mut self, slot: u32, now: u64) {
        let s = self.slots[slot as usize];
        let Some(lun) = self.luns.get_mut(s.target as usize) else {
            return;
        };
        let ns = now.saturating_sub(s.arrived);
        match s.op {
            Op::Read => lun.read_latency.record(ns),
            Op::Write => lun.write_latency.record(ns),
            Op::Flush => lun.flush_latency.record(ns),
            Op::Idle => {}
        }
    }

    /// Sets how long the worker watches its rings before sleeping (zero: never).
    pub fn set_spin(&mut self, spin: std::time::Duration) {
        self.spin = spin;
    }

    /// Logs the counters of each path this worker owns (and its frame I/O's own: copies,
    /// kernel drops); queue workers log theirs.
    pub fn log_paths(&self) {
        for (port, path) in self.ports.iter().zip(&self.paths) {
            let Some(io) = port.io.as_ref() else { continue };
            let io = io.counters();
            tracing::info!(port = %port.name, queue = port.queue, mode = port.mode, worker = 0, stats = %path, copies = io.copies, kernel_drops = io.kernel_drops, too_long = io.too_long, "path stats");
        }
    }

    /// Counters of path `port`: this worker's own for its sockets; for a queue worker's
    /// socket, what that worker published, with the drops counted here while serving its
    /// frames. Also says which worker owns the socket.
    fn path_counters(&self, port: usize) -> (PathStats, crate::net::FrameIoCounters, usize) {
        let view = &self.ports[port];
        if let Some(io) = view.io.as_ref() {
            return (self.paths[port], io.counters(), 0);
        }
        let published = view
            .owner
            .checked_sub(1)
            .and_then(|k| self.peers.get(k))
            .and_then(|link| link.shared.paths.iter().find(|p| p.port == port))
            .map(|p| p.load())
            .unwrap_or_default();
        let (mut stats, io) = published;
        stats.drops = self.paths[port].drops;
        (stats, io, view.owner)
    }

    /// The worker that owns `slot` (0: this one).
    fn slot_owner(&self, slot: u32) -> usize {
        (slot / self.per_worker) as usize
    }

    /// Sends the unsolicited config announcement of every LUN on every port: broadcast, or
    /// unicast to each MAC of a non-empty mask list.
    pub fn announce(&mut self) {
        for port in 0..self.ports.len() {
            if !self.ports[port].announces || self.ports[port].io.is_none() {
                continue;
            }
            let mac = self.ports[port].mac;
            let sectors = self.ports[port].max_sectors;
            for i in 0..self.live.len() {
                let target = self.targets[self.live[i] as usize].clone();
                let access = target.state.access();
                let dests = announce_to(&access);
                let string = target.state.config_string();
                for dst in dests {
                    if self.free.is_empty() {
                        self.flush_tx();
                    }
                    let Some(slot) = self.free.pop() else { return };
                    let req = AoeHeaderRepr {
                        dst: mac,
                        src: dst,
                        version: AOE_VERSION,
                        response: false,
                        error: None,
                        shelf: target.shelf,
                        slot: target.slot,
                        command: AoeCommand::QueryConfig,
                        tag: 0,
                    };
                    let frame = self.slab.frame(slot as usize);
                    let len = reply::config_frame(
                        frame,
                        &req,
                        mac,
                        &target,
                        sectors,
                        ConfigCommand::Read,
                        &string,
                    );
                    self.tx[port].push((slot, len));
                }
            }
        }
        self.flush_tx();
    }

    fn push_sqe(&mut self, sqe: squeue::Entry) {
        self.submissions += 1;
        // The ring has an entry for every slot plus the polls, so it cannot be full; if the
        // kernel has not consumed entries yet, submitting makes room.
        // SAFETY: every buffer an entry points at is a slab slot owned by that in-flight
        // operation until its completion is reaped; fds outlive the ring.
        unsafe {
            while self.ring.submission().push(&sqe).is_err() {
                let _ = self.ring.submit();
            }
        }
    }

    fn arm_poll(&mut self, port: usize) {
        let Some(fd) = self.ports[port].io.as_ref().map(|io| io.poll_fd()) else {
            return;
        };
        let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(UD_POLL | port as u64);
        self.push_sqe(sqe);
    }

    /// Runs until the stop descriptor fires, then drains in-flight I/O and returns.
    pub fn run(&mut self) -> io::Result<()> {
        let nports = self.ports.len();
        let mut armed = vec![false; nports];
        let mut readable = vec![false; nports];
        let stop = opcode::PollAdd::new(types::Fd(self.stop_fd), libc::POLLIN as u32)
            .build()
            .user_data(UD_STOP);
        self.push_sqe(stop);
        let has_arrays = self.arrays.iter().any(Option::is_some);
        let tick = types::Timespec::new().nsec((1_000_000_000 / TICKS_PER_SECOND) as u32);
        // Ticks run even without arrays: the console may make one at any time.
        self.push_sqe(opcode::Timeout::new(&tick).build().user_data(UD_TICK));
        if has_arrays {
            for t in 0..self.arrays.len() {
                self.publish_health(t);
                self.pull_spare(t);
            }
        }
        if let Some(fd) = self.admin.as_ref().map(|a| a.wake_fd()) {
            let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                .build()
                .user_data(UD_ADMIN);
            self.push_sqe(sqe);
        }
        for k in 0..self.peers.len() {
            self.arm_peer(k);
        }
        self.arm_persist_wake();
        self.arm_meta_wake();
        let mut stopping = false;
        let mut completions: Vec<(u64, i32)> = Vec::with_capacity(self.slots.len() + nports + 4);
        loop {
            self.liveness
                .beat
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for p in 0..nports {
                if !stopping && !armed[p] && !readable[p] && self.ports[p].io.is_some() {
                    self.arm_poll(p);
                    armed[p] = true;
                }
            }
            // Do not sleep while frames wait or injected completions are still to be handled.
            let busy = (!stopping && readable.iter().any(|r| *r) && !self.free.is_empty())
                || !self.synthetic.is_empty()
                || self.peers.iter().any(|p| p.from.pending());
            let res = if busy {
                self.ring.submit()
            } else {
                // Before sleeping, watch the rings for a moment (memory reads, no system
                // calls): under load the next frames or completions arrive within microseconds,
                // and catching them here saves a sleep, a wake-up and a poll per batch.
                match self.ring.submit() {
                    Ok(_) if !stopping && self.spin_for_work(&mut readable) => Ok(0),
                    Ok(_) if !self.peers_may_sleep() => Ok(0),
                    Ok(_) => {
                        let r = self.ring.submit_and_wait(1);
                        for p in &mut self.peers {
                            p.from.awake();
                        }
                        r
                    }
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = res {
                if e.raw_os_error() != Some(libc::EINTR) && e.raw_os_error() != Some(libc::EBUSY) {
                    return Err(e);
                }
            }
            completions.clear();
            completions.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            for &(ud, result) in &completions {
                match ud & UD_KIND {
                    UD_IO => self.complete_io((ud & 0xFFFF_FFFF) as u32, result),
                    UD_VEC => self.complete_run((ud & 0xFFFF_FFFF) as u32, result),
                    UD_MVEC => self.complete_member_run((ud & 0xFFFF_FFFF) as u32, result),
                    UD_RAID => self.raid_complete(ud, result),
                    UD_SYNC => self.sync_complete(ud, result),
                    UD_TICK if !stopping => {
                        let ok = self.queue_workers_alive();
                        self.liveness
                            .queue_workers_ok
                            .store(ok, std::sync::atomic::Ordering::Relaxed);
                        self.raid_tick();
                        self.apply_link_changes();
                        self.push_sqe(opcode::Timeout::new(&tick).build().user_data(UD_TICK));
                    }
                    UD_ADMIN => {
                        self.serve_admin();
                        if let Some(fd) = self.admin.as_ref().map(|a| a.wake_fd()) {
                            let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                                .build()
                                .user_data(UD_ADMIN);
                            self.push_sqe(sqe);
                        }
                    }
                    UD_META => {
                        self.bitmap_writes_done();
                        self.arm_meta_wake();
                    }
                    UD_PERSIST => {
                        if let Some(w) = &self.persist_wake {
                            w.drain();
                        }
                        self.send_durable_replies();
                        self.arm_persist_wake();
                    }
                    UD_PEER => {
                        let k = (ud & 0xFFFF_FFFF) as usize;
                        self.peers[k].from.clear_doorbell();
                        self.arm_peer(k);
                    }
                    UD_POLL => {
                        let p = (ud & 0xFFFF_FFFF) as usize;
                        armed[p] = false;
                        readable[p] = true;
                    }
                    UD_STOP => {
                        if !stopping {
                            tracing::info!(
                                in_flight = self.in_flight,
                                "stop requested: finishing in-flight I/O"
                            );
                        }
                        stopping = true;
                        self.stopping = true;
                        // Held member I/O would keep the stop waiting for ever.
                        self.release_held(None, None);
                    }
                    _ => {}
                }
            }
            while let Some((ud, result)) = self.synthetic.pop() {
                match ud & UD_KIND {
                    UD_RAID => self.raid_complete(ud, result),
                    UD_SYNC => self.sync_complete(ud, result),
                    _ => {}
                }
            }
            self.serve_peers(stopping);
            if !stopping {
                for (p, r) in readable.iter_mut().enumerate() {
                    if *r && self.receive(p) {
                        *r = false;
                    }
                }
            }
            self.submit_pending();
            self.flush_tx();
            if stopping && self.in_flight == 0 && self.order.pending() == 0 {
                self.close_arrays();
                for p in &mut self.peers {
                    p.to.close();
                }
                return Ok(());
            }
        }
    }

    /// The interface of each port view, in order.
    pub fn port_names(&self) -> Vec<String> {
        self.ports.iter().map(|p| p.name.clone()).collect()
    }

    /// Gives the worker the link watch's states (one per port view, in order).
    pub fn set_link_states(&mut self, links: Vec<Arc<crate::net::watch::LinkState>>) {
        for (p, l) in self.ports.iter_mut().zip(&links) {
            p.link_generation = l.generation();
        }
        self.links = links;
    }

    /// Applies MTU and link changes the watch saw: new sector counts, and announcements
    /// after an MTU change or a link coming back.
    fn apply_link_changes(&mut self) {
        let mut announce = false;
        for p in 0..self.ports.len().min(self.links.len()) {
            let link = &self.links[p];
            let generation = link.generation();
            if generation == self.ports[p].link_generation {
                continue;
            }
            let (mtu, up) = (link.mtu(), link.up());
            let view = &mut self.ports[p];
            view.link_generation = generation;
            if mtu != view.mtu && mtu > 0 {
                let sectors = view.sectors_for(mtu);
                tracing::warn!(port = %view.name, queue = view.queue, old_mtu = view.mtu, mtu, sectors_per_frame = sectors, "port MTU changed: advertising the new sector count");
                view.mtu = mtu;
                view.max_sectors = sectors;
                announce = true;
            }
            if up {
                announce = true;
            }
        }
        if announce {
            self.announce();
        }
    }

    /// The heartbeat the watchdog reads.
    pub fn liveness(&self) -> Arc<Liveness> {
        self.liveness.clone()
    }

    /// Gives the worker the persister's wake-up (before `run`).
    pub fn set_persist_wake(&mut self, wake: crate::lun::PersistWake) {
        self.persist_wake = Some(wake);
    }

    fn arm_meta_wake(&mut self) {
        let sqe = opcode::PollAdd::new(types::Fd(self.meta.wake_fd()), libc::POLLIN as u32)
            .build()
            .user_data(UD_META);
        self.push_sqe(sqe);
    }

    fn arm_persist_wake(&mut self) {
        if let Some(fd) = self.persist_wake.as_ref().map(|w| w.fd()) {
            let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                .build()
                .user_data(UD_PERSIST);
            self.push_sqe(sqe);
        }
    }

    /// Sends the parked replies whose state change is now on disk (in arrival order).
    fn send_durable_replies(&mut self) {
        let mut i = 0;
        while i < self.parked.len() {
            if self.parked[i].cell.is_durable(self.parked[i].version) {
                let p = self.parked.remove(i);
                self.send(p.port as usize, p.slot, p.len as usize);
            } else {
                i += 1;
            }
        }
    }

    /// Polls the wake-up descriptor of queue worker `k + 1`'s ring.
    fn arm_peer(&mut self, k: usize) {
        let fd = self.peers[k].from.wake_fd();
        let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(UD_PEER | k as u64);
        self.push_sqe(sqe);
    }

    /// Tells every queue worker's ring that this worker is going to sleep; false (and awake)
    /// if one of them has messages after all.
    fn peers_may_sleep(&mut self) -> bool {
        let mut ok = true;
        for p in &mut self.peers {
            ok &= p.from.prepare_sleep();
        }
        if !ok {
            for p in &mut self.peers {
                p.from.awake();
            }
        }
        ok
    }

    /// Handles what the queue workers handed over: received frames (served like frames of
    /// this worker's own sockets; released unanswered once stopping) and returned slots.
    fn serve_peers(&mut self, stopping: bool) {
        for k in 0..self.peers.len() {
            let mut stamped = false;
            // At most one partition's worth per round, so no source starves the others.
            for _ in 0..self.per_worker {
                let Some(msg) = self.peers[k].from.pop() else {
                    break;
                };
                match msg {
                    Message::Frame { slot, port, len } if !stopping => {
                        if !stamped {
                            self.batch_time = monotonic_ns();
                            stamped = true;
                        }
                        self.stats.rx_frames += 1;
                        self.handle(port as usize, slot, len as usize);
                    }
                    Message::Frame { slot, .. } | Message::Free { slot } => self.release(slot),
                    Message::Send { slot, .. } => self.release(slot),
                }
            }
        }
    }

    /// Spins up to `spin` watching the completion queue, the queue workers' rings and the
    /// receive rings that can be read without a system call; true when there is work
    /// (readable ports are marked).
    fn spin_for_work(&mut self, readable: &mut [bool]) -> bool {
        if self.spin.is_zero()
            || (self.peers.is_empty()
                && !self
                    .ports
                    .iter_mut()
                    .any(|p| p.io.as_mut().is_some_and(|io| io.rx_pending().is_some())))
        {
            return false;
        }
        let start = std::time::Instant::now();
        loop {
            if !self.ring.completion().is_empty() || self.peers.iter().any(|p| p.from.pending()) {
                return true;
            }
            let mut found = false;
            for (p, port) in self.ports.iter_mut().enumerate() {
                if port.io.as_mut().and_then(|io| io.rx_pending()) == Some(true) {
                    readable[p] = true;
                    found = true;
                }
            }
            if found {
                self.stats.spin_hits += 1;
                return true;
            }
            if start.elapsed() >= self.spin {
                return false;
            }
            // Let anything else runnable on this core go first: io_uring's own workers (which
            // run buffered writes, on this same core) must not wait for our spinning.
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }

    /// Receives and handles frames from `port`; returns true once the socket is drained.
    fn receive(&mut self, port: usize) -> bool {
        for _round in 0..4 {
            let Some(io) = self.ports[port].io.as_mut() else {
                return true;
            };
            let r = batch::receive(
                io.as_mut(),
                &self.slab,
                &mut self.free,
                &mut self.paths[port],
            );
            if r.offered == 0 {
                return false;
            }
            if r.got > 0 {
                self.batch_time = monotonic_ns();
            }
            for i in 0..r.got {
                self.stats.rx_frames += 1;
                self.handle(port, r.ids[i], r.lens[i]);
            }
            if r.got < r.offered {
                return true;
            }
        }
        false
    }

    /// Gives `slot` back to its owner: this worker's free list, or the queue worker whose
    /// partition it is in.
    /// Gives the request buffer in `slot` back to its host's share.
    fn unshare(&mut self, slot: u32) {
        if let Some(host) = self.slots[slot as usize].host.take() {
            self.hosts.gave_back(host);
        }
    }

    fn release(&mut self, slot: u32) {
        self.unshare(slot);
        self.slots[slot as usize].op = Op::Idle;
        match self.slot_owner(slot) {
            0 => self.free.push(slot),
            k => {
                if !self.peers[k - 1].to.push(Message::Free { slot }) {
                    self.stats.handoff_full += 1;
                }
            }
        }
    }

    fn send(&mut self, port: usize, slot: u32, len: usize) {
        self.unshare(slot);
        self.tx[port].push((slot, len));
    }

    fn flush_tx(&mut self) {
        for port in 0..self.ports.len() {
            if self.tx[port].is_empty() {
                continue;
            }
            if self.ports[port].io.is_none() {
                self.hand_replies(port);
                continue;
            }
            if let Some(io) = self.ports[port].io.as_mut() {
                let n = self.tx[port].len() as u64;
                let failed = batch::send(
                    io.as_mut(),
                    &self.slab,
                    &self.tx[port],
                    &mut self.paths[port],
                );
                self.stats.tx_frames += n - failed;
                self.stats.tx_errors += failed;
            }
            let now = monotonic_ns();
            for i in 0..self.tx[port].len() {
                let slot = self.tx[port][i].0;
                self.record_latency(slot, now);
                self.release(slot);
            }
            self.tx[port].clear();
        }
        for p in &mut self.peers {
            p.to.wake();
        }
    }

    /// Hands the replies queued for `port` to the queue worker that owns its socket (it
    /// sends them and frees the slots).
    fn hand_replies(&mut self, port: usize) {
        let owner = self.ports[port].owner;
        let now = monotonic_ns();
        for i in 0..self.tx[port].len() {
            let (slot, len) = self.tx[port][i];
            self.record_latency(slot, now);
            self.slots[slot as usize].op = Op::Idle;
            let msg = Message::Send {
                slot,
                port: port as u16,
                len: len as u16,
            };
            if owner == 0 || !self.peers[owner - 1].to.push(msg) {
                self.stats.handoff_full += 1;
                self.release(slot);
            }
        }
        self.tx[port].clear();
    }

    /// Handles one received frame in `slot`.
    fn handle(&mut self, port: usize, slot: u32, len: usize) {
        let port_mac = self.ports[port].mac;
        let frame = self.slab.frame(slot as usize);
        let len = len.min(frame.len());
        let Ok(view) = AoeFrame::new_checked(&frame[..len]) else {
            return self.drop_frame(port, slot, DropReason::Truncated);
        };
        let Ok(req) = AoeHeaderRepr::parse(&view) else {
            return self.drop_frame(port, slot, DropReason::Truncated);
        };
        if req.response || req.src == port_mac {
            return self.drop_frame(port, slot, DropReason::Response);
        }
        // A port in promiscuous mode also hands us frames addressed to other hosts (or to our
        // other ports): serving those would run one write twice. Group source MACs are bogus.
        let addressed = req.dst == port_mac || req.dst.is_multicast();
        if !addressed || req.src.is_multicast() || (req.shelf != self.shelf && req.shelf != 0xFFFF)
        {
            return self.drop_frame(port, slot, DropReason::NotOurs);
        }
        if req.slot == 0xFF {
            // Discovery: every LUN answers a wildcard config read/test/prefix. Anything that
            // changes state, and every other command, is served through the wildcard only
            // when exactly one LUN is exported (like vblade).
            let ccmd = frame
                .get(AOE_HEADER_LEN + 5)
                .map(|b| ConfigCommand::from(*b));
            let read_only_query = matches!(
                ccmd,
                Some(ConfigCommand::Read | ConfigCommand::Test | ConfigCommand::Prefix)
            );
            if req.command == AoeCommand::QueryConfig && (read_only_query || self.live.len() == 1) {
                let host = self.hosts.id(req.src, self.batch_time);
                if !self.hosts.broadcast_allowed(host, self.batch_time) {
                    return self.drop_frame(port, slot, DropReason::RateLimited);
                }
                return self.wildcard_config(port, slot, len, &req);
            }
            if self.live.len() != 1 {
                return self.drop_frame(port, slot, DropReason::Ambiguous);
            }
            let only = self.live[0];
            self.handle_for(port, slot, len, &req, only)
        } else {
            match self.by_slot[req.slot as usize] {
                NO_TARGET => self.drop_frame(port, slot, DropReason::NotOurs),
                t => self.handle_for(port, slot, len, &req, t),
            }
        }
    }

    fn wildcard_config(&mut self, port: usize, slot: u32, len: usize, req: &AoeHeaderRepr) {
        let n = self.live.len();
        if n == 0 {
            return self.release(slot);
        }
        // Only the LUNs this host may see are answered, and checked before any copy: a
        // broadcast from a host masked everywhere costs one check per LUN, nothing more.
        let last = (0..n).rev().find(|&i| {
            let t = self.live[i] as usize;
            hidden_from(&self.targets[t].state.access(), req.src).is_none()
        });
        for i in 0..n {
            let t = self.live[i];
            if let Some(reason) = hidden_from(&self.targets[t as usize].state.access(), req.src) {
                refused(&mut self.luns[t as usize], Right::Discover, reason);
                continue;
            }
            // The last visible target reuses the request's own slot; earlier ones copy it.
            let reply_slot = if Some(i) == last {
                slot
            } else {
                let Some(copy) = self.free.pop() else {
                    continue;
                };
                let src = self.slab.frame_ptr(slot as usize);
                let dst = self.slab.frame_ptr(copy as usize);
                // SAFETY: two distinct slots of the slab, `len` <= frame capacity.
                unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
                copy
            };
            self.handle_for_inner(port, reply_slot, len, req, t);
        }
        if last.is_none() {
            self.drop_frame(port, slot, DropReason::Masked);
        }
    }

    fn handle_for(&mut self, port: usize, slot: u32, len: usize, req: &AoeHeaderRepr, t: u16) {
        self.handle_for_inner(port, slot, len, req, t);
    }

    /// Serves `req` for target `t`. Returns true if a reply was queued or I/O submitted.
    fn handle_for_inner(
        &mut self,
        port: usize,
        slot: u32,
        len: usize,
        req: &AoeHeaderRepr,
        t: u16,
    ) -> bool {
        let target = self.targets[t as usize].clone();
        let port_mac = self.ports[port].mac;
        let access = target.state.access();
        if let Some(reason) = hidden_from(&access, req.src) {
            refused(&mut self.luns[t as usize], Right::Discover, reason);
            self.drop_frame(port, slot, DropReason::Masked);
            return false;
        }
        let frame = self.slab.frame(slot as usize);
        if req.version != AOE_VERSION {
            let n = reply::aoe_error(
                frame,
                req,
                port_mac,
                target.shelf,
                target.slot,
                AoeErrorCode::UnsupportedVersion as u8,
            );
            self.count_aoe_error(t, AoeErrorCode::UnsupportedVersion as u8);
            self.send(port, slot, n);
            return true;
        }
        let max_frame = self.ports[port].max_frame();
        let sectors = self.ports[port].max_sectors;
        let change = state_change(frame, len, req);
        let admin_refusal = admin_refusal(change, req, &access);
        // Rate limits per host (and shelf-wide): state changes, and every other non-I/O
        // command. ATA I/O is limited by the buffer shares instead.
        // (Wildcard queries were counted once against the broadcast limit.)
        let wildcard = req.slot == 0xFF || req.shelf == 0xFFFF;
        if req.command != AoeCommand::Ata
            && admin_refusal.is_none()
            && (change.is_some() || !wildcard)
        {
            let host = self.hosts.id(req.src, self.batch_time);
            let allowed = if change.is_some() {
                self.hosts.admin_allowed(host, self.batch_time)
            } else {
                self.hosts.control_allowed(host, self.batch_time)
            };
            if !allowed {
                self.drop_frame(port, slot, DropReason::RateLimited);
                return false;
            }
        }
        let frame = self.slab.frame(slot as usize);
        let result = match req.command {
            AoeCommand::Ata => return self.ata(port, slot, len, req, t, &access),
            _ if admin_refusal.is_some() => {
                let (right, reason) = admin_refusal.unwrap_or((Right::Mask, Refusal::Acl));
                refused(&mut self.luns[t as usize], right, reason);
                tracing::debug!(src = %req.src, right = right.name(), reason = reason.name(), "command refused");
                Ok(Some(reply::aoe_error(
                    frame,
                    req,
                    port_mac,
                    target.shelf,
                    target.slot,
                    AoeErrorCode::TargetReserved as u8,
                )))
            }
            AoeCommand::QueryConfig => {
                self.luns[t as usize].config_commands += 1;
                let visible = access.rights.allows(req.src, Right::ConfigRead);
                reply::config(frame, len, req, port_mac, &target, sectors, visible)
            }
            AoeCommand::MacMask => {
                self.luns[t as usize].mask_commands += 1;
                reply::mask(frame, len, req, port_mac, &target, max_frame)
            }
            AoeCommand::Reserve => {
                self.luns[t as usize].reserve_commands += 1;
                reply::reserve(frame, len, req, port_mac, &target, max_frame)
            }
            AoeCommand::Other(_) => {
                count_aoe_error(
                    &mut self.stats,
                    &mut self.luns[t as usize],
                    AoeErrorCode::BadCommand as u8,
                );
                Ok(Some(reply::aoe_error(
                    frame,
                    req,
                    port_mac,
                    target.shelf,
                    target.slot,
                    AoeErrorCode::BadCommand as u8,
                )))
            }
        };
        match result {
            Ok(Some(n)) => {
                if req.command != AoeCommand::Ata
                    && !matches!(req.command, AoeCommand::Other(_))
                    && frame[14] & 0x04 != 0
                {
                    let code = frame[15];
                    self.count_aoe_error(t, code);
                }
                // A reply that reports state not yet on disk waits for the persister.
                match target.state.cell().unsynced() {
                    None => self.send(port, slot, n),
                    Some(_) if self.parked.len() >= PARKED_MAX => {
                        self.drop_frame(port, slot, DropReason::Busy);
                        return false;
                    }
                    Some(version) => self.parked.push(Parked {
                        slot,
                        port: port as u16,
                        len: n as u32,
                        version,
                        cell: target.state.cell().clone(),
                    }),
                }
                true
            }
            Ok(None) => {
                self.stats.silent_config += 1;
                self.release(slot);
                false
            }
            Err(why) => {
                tracing::debug!(src = %req.src, why, "dropped malformed frame");
                self.drop_frame(port, slot, DropReason::Malformed);
                false
            }
        }
    }

    fn ata(
        &mut self,
        port: usize,
        slot: u32,
        len: usize,
        req: &AoeHeaderRepr,
        t: u16,
        access: &AccessLists,
    ) -> bool {
        let target = self.targets[t as usize].clone();
        let port_mac = self.ports[port].mac;
        let frame = self.slab.frame(slot as usize);
        let Ok(packet) = AtaPacket::new_checked(&frame[AOE_HEADER_LEN..len]) else {
            self.drop_frame(port, slot, DropReason::Truncated);
            return false;
        };
        let Ok(repr) = AtaRepr::parse(&packet) else {
            self.drop_frame(port, slot, DropReason::Truncated);
            return false;
        };
        let payload = len - ATA_DATA_OFFSET;
        let decoded = ata::decode(
            &repr,
            target.sectors,
            self.ports[port].max_sectors,
            payload,
            target.read_only,
        );
        if access.reserved_against(req.src) && decoded != Ok(AtaCommand::Identify) {
            if let Some(right) = data_right(&decoded) {
                refused(&mut self.luns[t as usize], right, Refusal::Reserved);
            }
            count_aoe_error(
                &mut self.stats,
                &mut self.luns[t as usize],
                AoeErrorCode::TargetReserved as u8,
            );
            let n = reply::aoe_error(
                frame,
                req,
                port_mac,
                target.shelf,
                target.slot,
                AoeErrorCode::TargetReserved as u8,
            );
            self.send(port, slot, n);
            return true;
        }
        if matches!(
            decoded,
            Ok(AtaCommand::Identify | AtaCommand::CheckPowerMode | AtaCommand::Smart(_))
        ) {
            let host = self.hosts.id(req.src, self.batch_time);
            if !self.hosts.control_allowed(host, self.batch_time) {
                self.drop_frame(port, slot, DropReason::RateLimited);
                return false;
            }
        }
        if let Some(right) = data_right(&decoded) {
            if !access.rights.allows(req.src, right) {
                refused(&mut self.luns[t as usize], right, Refusal::Acl);
                count_ata_error(&mut self.stats, &mut self.luns[t as usize], ERROR_ABRT);
                let n = reply::ata(
                    frame,
                    req,
                    port_mac,
                    &target,
                    AtaOutcome::failed(ERROR_ABRT),
                    0,
                );
                self.send(port, slot, n);
                return true;
            }
        }
        let n = match decoded {
            Err(rejection) => {
                count_ata_error(
                    &mut self.stats,
                    &mut self.luns[t as usize],
                    rejection.error_bits(),
                );
                tracing::debug!(src = %req.src, ?rejection, "ATA request refused");
                reply::ata(
                    frame,
                    req,
                    port_mac,
                    &target,
                    AtaOutcome::failed(rejection.error_bits()),
                    0,
                )
            }
            Ok(AtaCommand::Identify) => {
                reply::ata_immediate_identify(frame, req, port_mac, &target)
            }
            Ok(AtaCommand::CheckPowerMode) => reply::ata_check_power(frame, req, port_mac, &target),
            Ok(AtaCommand::Smart(cmd)) => reply::ata_smart(frame, req, port_mac, &target, cmd),
            Ok(AtaCommand::Read { lba, count }) => {
                return self.start_io(port, slot, req.src, t, IoAsk::new(Op::Read, lba, count))
            }
            Ok(AtaCommand::Write { lba, count }) => {
                return self.start_io(port, slot, req.src, t, IoAsk::new(Op::Write, lba, count))
            }
            Ok(AtaCommand::Flush) => {
                return self.start_io(port, slot, req.src, t, IoAsk::new(Op::Flush, 0, 0))
            }
        };
        self.send(port, slot, n);
        true
    }

    fn start_io(&mut self, port: usize, slot: u32, src: MacAddr, t: u16, ask: IoAsk) -> bool {
        let IoAsk { op, lba, count } = ask;
        // Buffers running short: a host already holding its share waits (its frame is dropped
        // and retransmitted), so the others still find buffers.
        let host = self.hosts.id(src, self.batch_time);
        let total = self.slots.len() as u32;
        let busy = self.in_flight as u32 * 4 >= total * 3;
        if !self.hosts.may_take(host, busy, total / 4) {
            self.drop_frame(port, slot, DropReason::Busy);
            return false;
        }
        self.hosts.took(host);
        self.slots[slot as usize] = SlotState {
            host: Some(host),
            port: port as u16,
            target: t,
            op,
            lba,
            count,
            arrived: self.batch_time,
            ..SlotState::default()
        };
        if op == Op::Write
            && !self.order.admit(
                slot,
                Extent {
                    lun: t,
                    lba,
                    count: count as u32,
                },
            )
        {
            self.stats.ordered_waits += 1;
            return true;
        }
        self.submit_or_hold(slot);
        true
    }

    fn submit(&mut self, slot: u32) {
        self.slots[slot as usize].submitted = monotonic_ns();
        let s = self.slots[slot as usize];
        if self.is_raid(s.target) {
            return self.raid_submit(slot);
        }
        let Some((fd, registered)) = self.file_of(s.target, s.retried_buffered) else {
            return;
        };
        let target = &self.targets[s.target as usize];
        let Some(backing) = target.backing.as_ref() else {
            return;
        };
        // SAFETY: the frame pointer lies inside slot `slot`; data starts at offset 36.
        let data = unsafe { self.slab.frame_ptr(slot as usize).add(ATA_DATA_OFFSET) };
        let bytes = s.count as u32 * SECTOR_SIZE as u32;
        let offset = backing.byte_offset(s.lba);
        let ud = UD_IO | slot as u64;
        let sqe = match s.op {
            Op::Read if self.fixed_buffers => opcode::ReadFixed::new(fd, data, bytes, 0)
                .offset(offset)
                .build(),
            Op::Read => opcode::Read::new(fd, data, bytes).offset(offset).build(),
            Op::Write => {
                let flags = if target.writethrough {
                    libc::RWF_DSYNC
                } else {
                    0
                };
                if self.fixed_buffers {
                    opcode::WriteFixed::new(fd, data, bytes, 0)
                        .offset(offset)
                        .rw_flags(flags)
                        .build()
                } else {
                    opcode::Write::new(fd, data, bytes)
                        .offset(offset)
                        .rw_flags(flags)
                        .build()
                }
            }
            Op::Flush => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
            Op::Idle => return,
        };
        let sqe = if registered {
            sqe.flags(squeue::Flags::FIXED_FILE)
        } else {
            sqe
        };
        self.in_flight += 1;
        self.push_sqe(sqe.user_data(ud));
    }

    fn complete_io(&mut self, slot: u32, result: i32) {
        self.in_flight -= 1;
        let s = self.slots[slot as usize];
        let target = self.targets[s.target as usize].clone();
        let expected = s.count as i32 * SECTOR_SIZE as i32;
        // O_DIRECT refuses misaligned I/O with EINVAL (e.g. 512-byte requests on a 4Kn
        // device): retry once through the page cache (still RWF_DSYNC in writethrough).
        if result == -libc::EINVAL
            && !s.retried_buffered
            && target.backing.as_ref().is_some_and(|b| b.is_direct())
            && s.op != Op::Flush
        {
            self.stats.direct_fallbacks += 1;
            if !self.buffered_only[s.target as usize] {
                tracing::warn!(lun = %format!("e{}.{}", target.shelf, target.slot), "O_DIRECT refuses 512-byte I/O here (4Kn device?): this LUN's I/O goes through the page cache");
            }
            self.buffered_only[s.target as usize] = true;
            self.slots[slot as usize].retried_buffered = true;
            return self.submit(slot);
        }
        let ok = match s.op {
            Op::Flush => result == 0,
            _ => result == expected,
        };
        if !ok {
            tracing::error!(lun = %format!("e{}.{}", target.shelf, target.slot), op = ?s.op, lba = s.lba, count = s.count, result, "I/O failed; answering ATA UNC");
        }
        if s.op == Op::Write {
            self.order_done(slot);
        }
        self.reply_io(slot, ok);
    }

    /// Builds the ATA reply of a finished request in its own slot and queues it.
    /// Counts the outcome (UNC on failure; a read carries its data).
    fn reply_io(&mut self, slot: u32, success: bool) {
        let s = self.slots[slot as usize];
        let (outcome, data_len) = match (success, s.op) {
            (false, _) => {
                self.count_ata_error(s.target as usize, ERROR_UNC);
                (AtaOutcome::failed(ERROR_UNC), 0)
            }
            (true, Op::Read) => {
                self.stats.reads += 1;
                let lun = &mut self.luns[s.target as usize];
                lun.reads += 1;
                lun.read_bytes += s.count as u64 * SECTOR_SIZE as u64;
                (AtaOutcome::OK, s.count as usize * SECTOR_SIZE)
            }
            (true, Op::Write) => {
                self.stats.writes += 1;
                let lun = &mut self.luns[s.target as usize];
                lun.writes += 1;
                lun.written_bytes += s.count as u64 * SECTOR_SIZE as u64;
                (AtaOutcome::OK, 0)
            }
            (true, _) => {
                self.stats.flushes += 1;
                self.luns[s.target as usize].flushes += 1;
                (AtaOutcome::OK, 0)
            }
        };
        let target = self.targets[s.target as usize].clone();
        let port = s.port as usize;
        let port_mac = self.ports[port].mac;
        let frame = self.slab.frame(slot as usize);
        let Ok(view) = AoeFrame::new_checked(&frame[..]) else {
            return self.release(slot);
        };
        let Ok(req) = AoeHeaderRepr::parse(&view) else {
            return self.release(slot);
        };
        let n = reply::ata(frame, &req, port_mac, &target, outcome, data_len);
        self.send(port, slot, n);
    }
}

/// Counts an AoE error reply with `code` (split from `Worker` so a frame may stay borrowed).
/// The LUN worker's signs of life, read by the watchdog thread without asking the worker.
#[derive(Default)]
pub struct Liveness {
    beat: std::sync::atomic::AtomicU64,
    queue_workers_ok: std::sync::atomic::AtomicBool,
}

impl Liveness {
    /// Counts the worker loop's turns (it turns at least every tick, 10 times a second).
    pub fn beat(&self) -> u64 {
        self.beat.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Every queue worker turned recently (checked by the LUN worker every tick).
    pub fn queue_workers_ok(&self) -> bool {
        self.queue_workers_ok
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A reply held until its LUN's state change (version `version`) is durable.
struct Parked {
    slot: u32,
    port: u16,
    len: u32,
    version: u64,
    cell: Arc<crate::lun::StateCell>,
}

/// Where a LUN's announcement goes: broadcast when every host may see it, else unicast to
/// each host both lists allow (the mask list, the access list for `discover`).
fn announce_to(access: &AccessLists) -> Vec<MacAddr> {
    match (
        access.mask.is_empty(),
        access.rights.holders(Right::Discover),
    ) {
        (true, None) => vec![MacAddr::BROADCAST],
        (false, None) => access.mask.clone(),
        (true, Some(hosts)) => hosts,
        (false, Some(hosts)) => hosts
            .into_iter()
            .filter(|h| access.mask.contains(h))
            .collect(),
    }
}

/// Why `src` may not see this LUN at all (mask list, then access list), if it may not.
#[inline]
fn hidden_from(access: &AccessLists, src: MacAddr) -> Option<Refusal> {
    if !access.admits(src) {
        Some(Refusal::Mask)
    } else if !access.rights.allows(src, Right::Discover) {
        Some(Refusal::Acl)
    } else {
        None
    }
}

/// The right an ATA command needs beyond discovery: reads need `read`, writes `write`.
fn data_right(decoded: &Result<AtaCommand, ata::AtaRejection>) -> Option<Right> {
    match decoded {
        Ok(AtaCommand::Read { .. }) => Some(Right::Read),
        Ok(AtaCommand::Write { .. }) => Some(Right::Write),
        _ => None,
    }
}

/// Counts a refusal.
fn refused(lun: &mut LunCounters, right: Right, reason: Refusal) {
    lun.refused[right.index()][reason.index()] += 1;
}

/// For a command that changes the config string, the mask list or the reservations: the
/// right it needs and whether it is a wire-side edit of the mask or reservations.
fn state_change(frame: &[u8], len: usize, req: &AoeHeaderRepr) -> Option<(Right, bool)> {
    let arg = frame.get(AOE_HEADER_LEN..len)?;
    match req.command {
        AoeCommand::QueryConfig => match ConfigPacket::new_checked(arg).ok()?.command() {
            ConfigCommand::Set | ConfigCommand::ForceSet => Some((Right::ConfigSet, false)),
            _ => None,
        },
        AoeCommand::MacMask => match MaskPacket::new_checked(arg).ok()?.command() {
            MaskCommand::Edit => Some((Right::Mask, true)),
            _ => None,
        },
        AoeCommand::Reserve => match ReservePacket::new_checked(arg).ok()?.command() {
            ReserveCommand::Set | ReserveCommand::ForceSet => Some((Right::Reserve, true)),
            _ => None,
        },
        _ => None,
    }
}

/// Why `req.src` may not make the state change `change`, if it may not.
fn admin_refusal(
    change: Option<(Right, bool)>,
    req: &AoeHeaderRepr,
    access: &AccessLists,
) -> Option<(Right, Refusal)> {
    let (right, wire_edit) = change?;
    if wire_edit && !access.rights.wire_admin() {
        Some((right, Refusal::WireAdmin))
    } else if !access.rights.allows(req.src, right) {
        Some((right, Refusal::Acl))
    } else {
        None
    }
}

fn count_aoe_error(stats: &mut WorkerStats, lun: &mut LunCounters, code: u8) {
    stats.aoe_errors += 1;
    if let Some(n) = lun.aoe_errors.get_mut(code as usize) {
        *n += 1;
    }
}

/// Counts an ATA error reply (`bits` = the ATA error register).
fn count_ata_error(stats: &mut WorkerStats, lun: &mut LunCounters, bits: u8) {
    stats.ata_errors += 1;
    let kind = match bits {
        ata::ERROR_IDNF => 1,
        ERROR_UNC => 2,
        _ => 0,
    };
    lun.ata_errors[kind] += 1;
}
