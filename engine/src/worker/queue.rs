//! Queue workers: the extra pinned threads of a multi-queue shelf.
//!
//! The LUN worker (worker 0) owns every LUN, RAID array, the write-order table and the
//! console, so that overlapping writes stay ordered and an array has one owner. A queue
//! worker owns the sockets of the queues spread to it and a partition of the shared slab: it
//! receives frames into its own slots, hands each slot to the LUN worker (ownership moves,
//! not bytes), and sends the replies that come back for its queues out of its own sockets.
//! Receiving and sending (system calls, the UMEM copy, skb work in the kernel) leave the
//! LUN worker's core; parsing and io_uring stay there.

use super::batch;
use super::handoff::{self, Message};
use super::port::{PortView, WorkerPort};
use super::slab::{Slab, SlabHandle};
use super::stats::PathStats;
use crate::net::FrameIoCounters;
use std::io;
use std::ops::Range;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest sleep of a queue worker before it publishes its counters again (ms).
const IDLE_POLL_MS: i32 = 100;
/// A queue worker whose loop has not turned for this long is reported stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(2);

/// One path's counters, written by the queue worker that owns the socket and read by the
/// LUN worker for a metrics scrape (one writer: relaxed stores, no contention).
#[derive(Default)]
pub struct SharedPath {
    /// Global port index.
    pub port: usize,
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    rx_batches: AtomicU64,
    rx_batch_max: AtomicU64,
    tx_errors: AtomicU64,
    copies: AtomicU64,
    kernel_drops: AtomicU64,
    too_long: AtomicU64,
}

impl SharedPath {
    fn store(&self, s: &PathStats) {
        self.rx_frames.store(s.rx_frames, Ordering::Relaxed);
        self.rx_bytes.store(s.rx_bytes, Ordering::Relaxed);
        self.tx_frames.store(s.tx_frames, Ordering::Relaxed);
        self.tx_bytes.store(s.tx_bytes, Ordering::Relaxed);
        self.rx_batches.store(s.rx_batches, Ordering::Relaxed);
        self.rx_batch_max.store(s.rx_batch_max, Ordering::Relaxed);
        self.tx_errors.store(s.tx_errors, Ordering::Relaxed);
    }

    fn store_io(&self, c: &FrameIoCounters) {
        self.copies.store(c.copies, Ordering::Relaxed);
        self.kernel_drops.store(c.kernel_drops, Ordering::Relaxed);
        self.too_long.store(c.too_long, Ordering::Relaxed);
    }

    /// The path's counters as last published (drops are counted by the LUN worker).
    pub fn load(&self) -> (PathStats, FrameIoCounters) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            PathStats {
                rx_frames: l(&self.rx_frames),
                rx_bytes: l(&self.rx_bytes),
                tx_frames: l(&self.tx_frames),
                tx_bytes: l(&self.tx_bytes),
                rx_batches: l(&self.rx_batches),
                rx_batch_max: l(&self.rx_batch_max),
                tx_errors: l(&self.tx_errors),
                drops: [0; 8],
            },
            FrameIoCounters {
                copies: l(&self.copies),
                kernel_drops: l(&self.kernel_drops),
                too_long: l(&self.too_long),
            },
        )
    }
}

/// What a queue worker publishes about itself.
#[derive(Default)]
pub struct QueueShared {
    /// Worker number (1, 2, ...).
    pub worker: usize,
    /// Core it is pinned to, plus one (0: not pinned).
    pub cpu: AtomicU64,
    /// Loop iterations: the LUN worker's health check sees it move.
    pub heartbeat: AtomicU64,
    /// Slots of its partition.
    pub slots: u64,
    /// Slots not on its free list.
    pub slots_in_use: AtomicU64,
    /// Times spinning found work without sleeping.
    pub spin_hits: AtomicU64,
    /// Its paths.
    pub paths: Vec<SharedPath>,
}

impl QueueShared {
    /// The pinned core, if any.
    pub fn cpu(&self) -> Option<usize> {
        match self.cpu.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n as usize - 1),
        }
    }
}

/// The LUN worker's end of the link to one queue worker.
pub struct QueueLink {
    /// Worker number.
    pub worker: usize,
    /// Replies to send and slots given back.
    pub to: handoff::Sender,
    /// Frames received and slots given back.
    pub from: handoff::Receiver,
    /// Its published counters.
    pub shared: Arc<QueueShared>,
    /// Heartbeat seen at the last health check.
    pub last_heartbeat: u64,
    /// When it last moved.
    pub heartbeat_seen: Instant,
}

/// A queue worker: its sockets, its slots and its two rings.
pub struct QueueWorker {
    /// Worker number (1, 2, ...).
    pub index: usize,
    ports: Vec<(usize, WorkerPort)>,
    /// Global port index -> index into `ports`.
    local_of: Vec<Option<usize>>,
    slab: SlabHandle,
    own: Range<u32>,
    free: Vec<u32>,
    to_lun: handoff::Sender,
    from_lun: handoff::Receiver,
    stop_fd: RawFd,
    shared: Arc<QueueShared>,
    stats: Vec<PathStats>,
    tx: Vec<Vec<(u32, usize)>>,
    spin: Duration,
    spin_hits: u64,
    dropped_handoffs: u64,
}

/// How the ports of a shelf are spread: the LUN worker's view of every path, its links to
/// the queue workers, the queue workers themselves, and the shared slab.
pub struct Spread {
    /// Every path, in configuration order (sockets of worker 0 inside).
    pub views: Vec<PortView>,
    /// The LUN worker's links, by worker number - 1.
    pub links: Vec<QueueLink>,
    /// Queue workers to start, one thread each.
    pub queue_workers: Vec<QueueWorker>,
    /// The slab of every worker (partition k: slots `k * per_worker ..`).
    pub slab: Arc<Slab>,
    /// Slots per worker.
    pub per_worker: usize,
}

/// Spreads the sockets over at most `workers` workers (queue q goes to worker q mod n, so
/// every port's queue 0, which sends announcements, stays with the LUN worker), and maps one
/// slab with `per_worker` slots for each worker that got a socket.
pub fn spread(
    ports: Vec<WorkerPort>,
    workers: usize,
    per_worker: usize,
    stop_fd: RawFd,
) -> io::Result<Spread> {
    let workers = workers.max(1);
    let wanted: Vec<usize> = ports.iter().map(|p| p.queue as usize % workers).collect();
    // Dense numbering of the workers that serve at least one socket (0 is always there).
    let mut used: Vec<usize> = vec![0];
    for &w in &wanted {
        if !used.contains(&w) {
            used.push(w);
        }
    }
    used.sort_unstable();
    let count = used.len();
    let max_frame = ports
        .iter()
        .map(|p| p.io.mtu() as usize + 14)
        .max()
        .unwrap_or(1514)
        .max(1514);
    let slab = Arc::new(Slab::new(per_worker * count, max_frame)?);
    let total_ports = ports.len();
    let mut views = Vec::with_capacity(total_ports);
    let mut sockets: Vec<Vec<(usize, WorkerPort)>> = (0..count).map(|_| Vec::new()).collect();
    for (global, (port, w)) in ports.into_iter().zip(wanted).enumerate() {
        let owner = used.iter().position(|&u| u == w).unwrap_or(0);
        let (view, socket) = PortView::split(port, owner);
        views.push(view);
        if let Some(s) = socket {
            sockets[owner].push((global, s));
        }
    }
    let mut links = Vec::new();
    let mut queue_workers = Vec::new();
    for (index, ports) in sockets.into_iter().enumerate().skip(1) {
        // Every message names a slot, and no slot is in two messages at once: rings as big
        // as the slab never fill.
        let (to_q, from_lun) = handoff::channel(slab.slots())?;
        let (to_lun, from_q) = handoff::channel(slab.slots())?;
        let shared = Arc::new(QueueShared {
            worker: index,
            slots: per_worker as u64,
            paths: ports
                .iter()
                .map(|(g, _)| SharedPath {
                    port: *g,
                    ..SharedPath::default()
                })
                .collect(),
            ..QueueShared::default()
        });
        let mut local_of = vec![None; total_ports];
        for (l, (g, _)) in ports.iter().enumerate() {
            local_of[*g] = Some(l);
        }
        let own = (index * per_worker) as u32..((index + 1) * per_worker) as u32;
        let n = ports.len();
        queue_workers.push(QueueWorker {
            index,
            ports,
            local_of,
            slab: SlabHandle::new(slab.clone()),
            free: own.clone().rev().collect(),
            own,
            to_lun,
            from_lun,
            stop_fd,
            shared: shared.clone(),
            stats: vec![PathStats::default(); n],
            tx: (0..n).map(|_| Vec::with_capacity(per_worker)).collect(),
            spin: Duration::from_micros(super::DEFAULT_SPIN_MICROS),
            spin_hits: 0,
            dropped_handoffs: 0,
        });
        links.push(QueueLink {
            worker: index,
            to: to_q,
            from: from_q,
            shared,
            last_heartbeat: u64::MAX,
            heartbeat_seen: Instant::now(),
        });
    }
    Ok(Spread {
        views,
        links,
        queue_workers,
        slab,
        per_worker,
    })
}

impl QueueWorker {
    /// Records the core this worker was pinned to.
    pub fn set_cpu(&self, cpu: Option<usize>) {
        self.shared
            .cpu
            .store(cpu.map_or(0, |c| c as u64 + 1), Ordering::Relaxed);
    }

    /// Sets how long the worker watches its rings before sleeping (zero: never).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Runs until the LUN worker closes its ring (it stops last), or until a stop was
    /// requested and every slot of this worker is back.
    pub fn run(&mut self) -> io::Result<()> {
        let n = self.ports.len();
        let mut readable = vec![true; n];
        let mut stopping = false;
        let mut iterations: u64 = 0;
        // Reused for every sleep: the loop allocates nothing.
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(n + 2);
        loop {
            iterations += 1;
            self.shared.heartbeat.store(iterations, Ordering::Relaxed);
            while let Some(m) = self.from_lun.pop() {
                match m {
                    Message::Send { slot, port, len } => {
                        match self.local_of.get(port as usize).copied().flatten() {
                            Some(l) => self.tx[l].push((slot, len as usize)),
                            None => self.give_back(slot),
                        }
                    }
                    Message::Free { slot } => self.give_back(slot),
                    Message::Frame { slot, .. } => self.give_back(slot),
                }
            }
            if !stopping {
                for (p, r) in readable.iter_mut().enumerate() {
                    if *r && self.receive(p) {
                        *r = false;
                    }
                }
            }
            self.to_lun.wake();
            self.flush_tx();
            self.to_lun.wake();
            self.publish(iterations % 1024 == 0);
            if self.from_lun.closed() && !self.from_lun.pending() {
                // The LUN worker is gone: every slot it held is either back or will never be
                // used again (it finished all I/O before closing).
                break;
            }
            if stopping && self.free.len() == self.own.len() {
                break;
            }
            let can_receive = !stopping && !self.free.is_empty();
            if (can_receive && readable.iter().any(|r| *r)) || self.from_lun.pending() {
                continue;
            }
            if can_receive && self.spin_for_work(&mut readable) {
                continue;
            }
            if !self.from_lun.prepare_sleep() {
                continue;
            }
            self.publish(true);
            fds.clear();
            let poll = |fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            fds.push(poll(self.from_lun.wake_fd()));
            if !stopping {
                fds.push(poll(self.stop_fd));
                if can_receive {
                    fds.extend(self.ports.iter().map(|(_, p)| poll(p.io.poll_fd())));
                }
            }
            // SAFETY: `fds` is a live array of `fds.len()` pollfd entries.
            let r =
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, IDLE_POLL_MS) };
            self.from_lun.awake();
            if r > 0 && fds[0].revents != 0 {
                self.from_lun.clear_doorbell();
            }
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(e);
                }
                continue;
            }
            if !stopping {
                if fds[1].revents != 0 {
                    stopping = true;
                }
                if can_receive {
                    for (p, fd) in fds[2..].iter().enumerate() {
                        if fd.revents != 0 {
                            readable[p] = true;
                        }
                    }
                }
            }
        }
        self.publish(true);
        Ok(())
    }

    /// Takes back a slot of this worker (a slot of another worker goes home).
    fn give_back(&mut self, slot: u32) {
        if self.own.contains(&slot) {
            self.free.push(slot);
        } else if !self.to_lun.push(Message::Free { slot }) {
            self.dropped_handoffs += 1;
        }
    }

    fn spin_for_work(&mut self, readable: &mut [bool]) -> bool {
        if self.spin.is_zero()
            || !self
                .ports
                .iter_mut()
                .any(|(_, p)| p.io.rx_pending().is_some())
        {
            return false;
        }
        let start = Instant::now();
        loop {
            if self.from_lun.pending() {
                return true;
            }
            let mut found = false;
            for (p, (_, port)) in self.ports.iter_mut().enumerate() {
                if port.io.rx_pending() == Some(true) {
                    readable[p] = true;
                    found = true;
                }
            }
            if found {
                self.spin_hits += 1;
                return true;
            }
            if start.elapsed() >= self.spin {
                return false;
            }
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }

    /// Receives a batch from port `p` and hands every frame to the LUN worker; true once the
    /// socket is drained.
    fn receive(&mut self, p: usize) -> bool {
        for _round in 0..4 {
            let (global, port) = &mut self.ports[p];
            let r = batch::receive(
                port.io.as_mut(),
                &self.slab,
                &mut self.free,
                &mut self.stats[p],
            );
            if r.offered == 0 {
                return false;
            }
            for i in 0..r.got {
                let msg = Message::Frame {
                    slot: r.ids[i],
                    port: *global as u16,
                    len: r.lens[i].min(u16::MAX as usize) as u16,
                };
                if !self.to_lun.push(msg) {
                    self.dropped_handoffs += 1;
                    self.free.push(r.ids[i]);
                }
            }
            if r.got < r.offered {
                return true;
            }
        }
        false
    }

    /// Sends the replies handed over for each port, then frees their slots.
    fn flush_tx(&mut self) {
        for l in 0..self.ports.len() {
            if self.tx[l].is_empty() {
                continue;
            }
            batch::send(
                self.ports[l].1.io.as_mut(),
                &self.slab,
                &self.tx[l],
                &mut self.stats[l],
            );
            let sent = std::mem::take(&mut self.tx[l]);
            for &(slot, _) in &sent {
                self.give_back(slot);
            }
            self.tx[l] = sent;
            self.tx[l].clear();
        }
    }

    /// Publishes the counters (the socket's own, which may cost a system call, when `io`).
    fn publish(&mut self, io: bool) {
        for (l, path) in self.shared.paths.iter().enumerate() {
            path.store(&self.stats[l]);
            if io {
                path.store_io(&self.ports[l].1.io.counters());
            }
        }
        self.shared
            .slots_in_use
            .store((self.own.len() - self.free.len()) as u64, Ordering::Relaxed);
        self.shared
            .spin_hits
            .store(self.spin_hits, Ordering::Relaxed);
    }

    /// Logs each path's counters at stop, like the LUN worker does for its own.
    pub fn log_paths(&self) {
        for (l, (_, port)) in self.ports.iter().enumerate() {
            let io = port.io.counters();
            tracing::info!(port = port.io.name(), queue = port.queue, mode = port.mode, worker = self.index, stats = %self.stats[l], copies = io.copies, kernel_drops = io.kernel_drops, too_long = io.too_long, "path stats");
        }
        if self.dropped_handoffs > 0 {
            tracing::error!(
                worker = self.index,
                dropped = self.dropped_handoffs,
                "hand-off ring was full (a bug): frames dropped"
            );
        }
    }
}
