//! The initiator engine: keeps a window of frames in flight to one target over every path,
//! splits each I/O of `bs` into frames of the target's sector count, retransmits on timeout
//! with a new tag (adaptive RTO), spreads frames round-robin over paths, matches replies on
//! shelf/slot/tag, counts late replies, measures latency and verifies data.

use crate::discover::Target;
use crate::job::{Job, Rw};
use crate::pattern;
use crate::socket::{wait_readable, AoeSocket, BATCH};
use ethershelf::wire::*;
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Frame and I/O counters of one direction.
#[derive(Debug, Clone)]
pub struct DirStats {
    /// Completed I/Os in the measured window.
    pub ios: u64,
    /// Bytes moved in the measured window.
    pub bytes: u64,
    /// Latency (issue to last frame answered), nanoseconds.
    pub latency: Histogram<u64>,
}

impl Default for DirStats {
    fn default() -> Self {
        DirStats {
            ios: 0,
            bytes: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }
}

/// What one engine run saw.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Reads.
    pub read: DirStats,
    /// Writes.
    pub write: DirStats,
    /// Frames retransmitted after a timeout.
    pub retransmits: u64,
    /// Replies to a tag already retransmitted or completed.
    pub late_replies: u64,
    /// I/Os that failed (ATA error status or AoE error).
    pub errors: u64,
    /// Blocks that failed verification: (LBA, reason).
    pub verify_failures: Vec<(u64, String)>,
    /// Blocks verified.
    pub verified_blocks: u64,
    /// Frames sent per path.
    pub path_frames: Vec<u64>,
    /// Measured seconds.
    pub seconds: f64,
}

/// What to do in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Write every block of the region once, sequentially (before verified reads).
    Prefill,
    /// The job itself, for its runtime.
    Main,
    /// Read back every block ever written and verify it.
    VerifyAll,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FrameState {
    Free,
    Pending,
    InFlight,
}

struct FrameSlot {
    io: usize,
    /// Sector offset inside the I/O.
    sector_off: u32,
    count: u8,
    gen: u8,
    state: FrameState,
    sent_at: Instant,
    path: usize,
    retries: u32,
}

struct IoSlot {
    active: bool,
    write: bool,
    block: u64,
    lba: u64,
    frames_left: u32,
    started: Instant,
    generation: u32,
    failed: bool,
    data: Vec<u8>,
}

/// Jacobson/Karels RTO with bounds.
struct Rto {
    srtt: f64,
    rttvar: f64,
    initialized: bool,
}

impl Rto {
    const MIN: f64 = 0.020;
    const MAX: f64 = 5.0;
    fn sample(&mut self, rtt: f64) {
        if !self.initialized {
            self.srtt = rtt;
            self.rttvar = rtt / 2.0;
            self.initialized = true;
        } else {
            self.rttvar = 0.75 * self.rttvar + 0.25 * (self.srtt - rtt).abs();
            self.srtt = 0.875 * self.srtt + 0.125 * rtt;
        }
    }
    fn timeout(&self, retries: u32) -> Duration {
        let base = if self.initialized {
            self.srtt + 4.0 * self.rttvar
        } else {
            0.2
        };
        Duration::from_secs_f64(
            (base * (1u64 << retries.min(6)) as f64).clamp(Self::MIN, Self::MAX),
        )
    }
}

/// Options outside the job itself.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Job index (0..63) carried in tags so parallel jobs ignore each other's replies.
    pub job_id: u32,
    /// Drop (do not send) every Nth frame, to exercise retransmission. 0 = never.
    pub drop_every: u64,
    /// Seed for random offsets.
    pub seed: u64,
}

/// One job's engine over its own sockets.
pub struct Engine<'a> {
    socks: &'a [AoeSocket],
    target: &'a Target,
    job: &'a Job,
    opts: EngineOptions,
    /// First LBA of this engine's region, and its size in blocks.
    region_lba: u64,
    blocks: u64,
    block_sectors: u32,
    frames_per_io: u32,
    window: usize,
    frames: Vec<FrameSlot>,
    pending: VecDeque<usize>,
    in_flight: usize,
    ios: Vec<IoSlot>,
    free_ios: Vec<usize>,
    /// Current generation written to each block (0 = never written).
    generations: Vec<u32>,
    busy: Vec<bool>,
    rto: Rto,
    next_path: usize,
    rng: u64,
    seq_next: u64,
    frame_buf: Vec<Vec<u8>>,
    sent_frames: u64,
}

/// The run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The region does not fit the LUN or holds no block.
    #[error("{0}")]
    Region(String),
    /// Socket failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl<'a> Engine<'a> {
    /// Prepares an engine for `job` on the part `part` of `parts` of the job's region.
    pub fn new(
        socks: &'a [AoeSocket],
        target: &'a Target,
        job: &'a Job,
        opts: EngineOptions,
        part: usize,
        parts: usize,
    ) -> Result<Engine<'a>, EngineError> {
        let capacity = target.sectors * 512;
        let size = job
            .size
            .unwrap_or(capacity.saturating_sub(job.offset).min(1 << 30));
        if job.offset % 512 != 0 || job.offset + size > capacity {
            return Err(EngineError::Region(format!(
                "region offset {} + size {} exceeds the LUN ({} bytes) or is misaligned",
                job.offset, size, capacity
            )));
        }
        let block_sectors = (job.bs / 512) as u32;
        let total_blocks = size / job.bs;
        let blocks = total_blocks / parts as u64;
        if blocks == 0 {
            return Err(EngineError::Region(format!(
                "region of {size} bytes holds no {}-byte block per job",
                job.bs
            )));
        }
        let region_lba = job.offset / 512 + part as u64 * blocks * block_sectors as u64;
        let frame_sectors = target.frame_sectors.max(1) as u32;
        let frames_per_io = block_sectors.div_ceil(frame_sectors);
        let nframes = job.iodepth * frames_per_io as usize;
        if nframes > 0xFFFF {
            return Err(EngineError::Region(format!(
                "iodepth x frames per I/O = {nframes} exceeds 65535 frames in flight"
            )));
        }
        let per_job_window =
            (target.buffer_count as usize * target.paths.len() / job.numjobs.max(1)).max(1);
        let window = per_job_window.min(nframes);
        let max_frame = ATA_DATA_OFFSET + frame_sectors as usize * 512;
        Ok(Engine {
            socks,
            target,
            job,
            region_lba,
            blocks,
            block_sectors,
            frames_per_io,
            window,
            frames: (0..nframes)
                .map(|_| FrameSlot {
                    io: 0,
                    sector_off: 0,
                    count: 0,
                    gen: 0,
                    state: FrameState::Free,
                    sent_at: Instant::now(),
                    path: 0,
                    retries: 0,
                })
                .collect(),
            pending: VecDeque::with_capacity(nframes),
            in_flight: 0,
            ios: (0..job.iodepth)
                .map(|_| IoSlot {
                    active: false,
                    write: false,
                    block: 0,
                    lba: 0,
                    frames_left: 0,
                    started: Instant::now(),
                    generation: 0,
                    failed: false,
                    data: vec![0u8; job.bs as usize],
                })
                .collect(),
            free_ios: (0..job.iodepth).rev().collect(),
            generations: vec![0; blocks as usize],
            busy: vec![false; blocks as usize],
            rto: Rto {
                srtt: 0.0,
                rttvar: 0.0,
                initialized: false,
            },
            next_path: 0,
            rng: opts.seed ^ 0x2545_F491_4F6C_DD1D ^ ((part as u64 + 1) << 32),
            seq_next: 0,
            frame_buf: vec![vec![0u8; max_frame.max(MIN_FRAME_LEN)]; BATCH],
            sent_frames: 0,
            opts,
        })
    }

    /// Frames allowed in flight.
    pub fn window(&self) -> usize {
        self.window
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn tag(&self, frame: usize, gen: u8) -> u32 {
        0x8000_0000 | ((self.opts.job_id & 0x3F) << 24) | ((gen as u32) << 16) | frame as u32
    }

    /// Picks the next I/O for `phase`; None when the phase has nothing more to issue.
    fn next_io(&mut self, phase: Phase) -> Option<(u64, bool)> {
        match phase {
            Phase::Prefill => {
                let b = self.seq_next;
                (b < self.blocks).then(|| {
                    self.seq_next += 1;
                    (b, true)
                })
            }
            Phase::VerifyAll => {
                while self.seq_next < self.blocks {
                    let b = self.seq_next;
                    self.seq_next += 1;
                    if self.generations[b as usize] > 0 {
                        return Some((b, false));
                    }
                }
                None
            }
            Phase::Main => {
                let write = match self.job.rw {
                    Rw::Read | Rw::Randread => false,
                    Rw::Write | Rw::Randwrite => true,
                    Rw::Randrw => (self.rand() % 100) as u8 >= self.job.rwmixread,
                };
                for _ in 0..64 {
                    let b = if self.job.rw.random() {
                        self.rand() % self.blocks
                    } else {
                        let b = self.seq_next % self.blocks;
                        self.seq_next += 1;
                        b
                    };
                    if !self.busy[b as usize] {
                        return Some((b, write));
                    }
                }
                None
            }
        }
    }

    fn start_io(&mut self, block: u64, write: bool, now: Instant) {
        let Some(io) = self.free_ios.pop() else {
            return;
        };
        let lba = self.region_lba + block * self.block_sectors as u64;
        self.busy[block as usize] = true;
        let verify = self.job.verify.is_some();
        let generation = if write {
            self.generations[block as usize].wrapping_add(1).max(1)
        } else {
            self.generations[block as usize]
        };
        let slot = &mut self.ios[io];
        slot.active = true;
        slot.write = write;
        slot.block = block;
        slot.lba = lba;
        slot.frames_left = self.frames_per_io;
        slot.started = now;
        slot.generation = generation;
        slot.failed = false;
        if write {
            if verify {
                pattern::write_block(&mut slot.data, lba, generation);
            } else {
                slot.data[..8].copy_from_slice(&lba.to_le_bytes());
            }
        }
        let fs = self.target.frame_sectors.max(1) as u32;
        for f in 0..self.frames_per_io {
            let idx = io * self.frames_per_io as usize + f as usize;
            let off = f * fs;
            let frame = &mut self.frames[idx];
            frame.io = io;
            frame.sector_off = off;
            frame.count = (self.block_sectors - off).min(fs) as u8;
            frame.state = FrameState::Pending;
            frame.retries = 0;
            self.pending.push_back(idx);
        }
    }

    fn build_frame(&self, idx: usize, buf: &mut [u8]) -> usize {
        let fr = &self.frames[idx];
        let io = &self.ios[fr.io];
        let path = &self.target.paths[fr.path];
        let sock = &self.socks[path.sock];
        let lba = io.lba + fr.sector_off as u64;
        let data_len = if io.write { fr.count as usize * 512 } else { 0 };
        let len = (ATA_DATA_OFFSET + data_len).max(MIN_FRAME_LEN);
        let h = AoeHeaderRepr {
            dst: path.target_mac,
            src: sock.mac,
            version: AOE_VERSION,
            response: false,
            error: None,
            shelf: self.target.addr.shelf,
            slot: self.target.addr.slot,
            command: AoeCommand::Ata,
            tag: self.tag(idx, fr.gen),
        };
        let _ = h.emit(&mut AoeFrame::new_unchecked(&mut buf[..]));
        let ext = self.target.lba48;
        let b = lba.to_le_bytes();
        let lba_bytes = if ext {
            [b[0], b[1], b[2], b[3], b[4], b[5]]
        } else {
            [b[0], b[1], b[2], 0xE0 | (b[3] & 0x0F), 0, 0]
        };
        let opcode = match (io.write, ext) {
            (false, false) => 0x20,
            (false, true) => 0x24,
            (true, false) => 0x30,
            (true, true) => 0x34,
        };
        let aflags = (if ext { AtaFlags::EXTENDED } else { 0 })
            | (if io.write { AtaFlags::WRITE } else { 0 });
        let repr = AtaRepr {
            aflags: AtaFlags(aflags),
            err_feature: 0,
            sector_count: fr.count,
            cmd_status: opcode,
            lba: lba_bytes,
        };
        let _ = repr.emit(&mut AtaPacket::new_unchecked(&mut buf[AOE_HEADER_LEN..]));
        if io.write {
            let start = fr.sector_off as usize * 512;
            buf[ATA_DATA_OFFSET..ATA_DATA_OFFSET + data_len]
                .copy_from_slice(&io.data[start..start + data_len]);
        } else {
            buf[ATA_DATA_OFFSET..len].fill(0);
        }
        len
    }

    /// Sends pending frames while the window has room.
    fn send_pending(&mut self, now: Instant, stats: &mut RunStats) -> std::io::Result<()> {
        while self.in_flight < self.window && !self.pending.is_empty() {
            // Group by socket: take frames for one socket at a time.
            let mut batch: [usize; BATCH] = [0; BATCH];
            let mut lens: [usize; BATCH] = [0; BATCH];
            let mut n = 0;
            let mut sock = usize::MAX;
            while n < BATCH && self.in_flight + n < self.window {
                let Some(&idx) = self.pending.front() else {
                    break;
                };
                let path = self.next_path % self.target.paths.len();
                let s = self.target.paths[path].sock;
                if sock != usize::MAX && s != sock {
                    break;
                }
                sock = s;
                self.pending.pop_front();
                self.next_path += 1;
                self.frames[idx].path = path;
                batch[n] = idx;
                n += 1;
            }
            let mut bufs = std::mem::take(&mut self.frame_buf);
            for i in 0..n {
                lens[i] = self.build_frame(batch[i], &mut bufs[i]);
            }
            // Frames chosen for an injected drop count as sent but never leave.
            let mut to_send: Vec<&[u8]> = Vec::with_capacity(n);
            let mut sent_idx: Vec<usize> = Vec::with_capacity(n);
            for i in 0..n {
                self.sent_frames += 1;
                let drop = self.opts.drop_every > 0 && self.sent_frames % self.opts.drop_every == 0;
                if !drop {
                    to_send.push(&bufs[i][..lens[i]]);
                }
                sent_idx.push(batch[i]);
            }
            let mut taken = 0;
            let mut tries = 0;
            while taken < to_send.len() && tries < 1000 {
                let k = self.socks[sock].send_batch(&to_send[taken..])?;
                taken += k;
                if k == 0 {
                    tries += 1;
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
            self.frame_buf = bufs;
            for idx in sent_idx {
                let f = &mut self.frames[idx];
                f.state = FrameState::InFlight;
                f.sent_at = now;
                stats.path_frames[f.path] += 1;
                self.in_flight += 1;
            }
        }
        Ok(())
    }

    fn on_reply(&mut self, frame: &[u8], now: Instant, measuring: bool, stats: &mut RunStats) {
        let Ok(v) = AoeFrame::new_checked(frame) else {
            return;
        };
        if !v.is_response()
            || v.shelf() != self.target.addr.shelf
            || v.slot() != self.target.addr.slot
            || v.command() != AoeCommand::Ata
        {
            return;
        }
        let tag = v.tag();
        if tag & 0x8000_0000 == 0 || (tag >> 24) & 0x3F != self.opts.job_id & 0x3F {
            return;
        }
        let idx = (tag & 0xFFFF) as usize;
        let gen = ((tag >> 16) & 0xFF) as u8;
        if idx >= self.frames.len()
            || self.frames[idx].state != FrameState::InFlight
            || self.frames[idx].gen != gen
        {
            stats.late_replies += 1;
            return;
        }
        let fr_io = self.frames[idx].io;
        let (sector_off, count, retries) = (
            self.frames[idx].sector_off,
            self.frames[idx].count,
            self.frames[idx].retries,
        );
        if retries == 0 {
            self.rto
                .sample(now.duration_since(self.frames[idx].sent_at).as_secs_f64());
        }
        self.frames[idx].state = FrameState::Free;
        self.frames[idx].gen = self.frames[idx].gen.wrapping_add(1);
        self.in_flight -= 1;
        let io = &mut self.ios[fr_io];
        let status = frame.get(27).copied().unwrap_or(0xFF);
        if v.is_error() || status & 0xA9 != 0 {
            io.failed = true;
        } else if !io.write {
            let start = sector_off as usize * 512;
            let len = count as usize * 512;
            match frame.get(ATA_DATA_OFFSET..ATA_DATA_OFFSET + len) {
                Some(d) => io.data[start..start + len].copy_from_slice(d),
                None => io.failed = true,
            }
        }
        io.frames_left -= 1;
        if io.frames_left == 0 {
            self.complete_io(fr_io, now, measuring, stats);
        }
    }

    fn complete_io(&mut self, io_idx: usize, now: Instant, measuring: bool, stats: &mut RunStats) {
        let verify = self.job.verify.is_some();
        let io = &mut self.ios[io_idx];
        io.active = false;
        self.busy[io.block as usize] = false;
        if io.failed {
            stats.errors += 1;
        } else if io.write {
            self.generations[io.block as usize] = io.generation;
        } else if verify && io.generation > 0 {
            stats.verified_blocks += 1;
            if let Err(e) = pattern::check_block(&io.data, io.lba, io.generation) {
                if stats.verify_failures.len() < 100 {
                    stats.verify_failures.push((io.lba, e.to_string()));
                }
            }
        }
        if measuring {
            let d = if io.write {
                &mut stats.write
            } else {
                &mut stats.read
            };
            d.ios += 1;
            d.bytes += io.data.len() as u64;
            let _ = d
                .latency
                .record(now.duration_since(io.started).as_nanos().max(1) as u64);
        }
        self.free_ios.push(io_idx);
    }

    fn check_timeouts(&mut self, now: Instant, stats: &mut RunStats) {
        for idx in 0..self.frames.len() {
            let f = &self.frames[idx];
            if f.state == FrameState::InFlight
                && now.duration_since(f.sent_at) > self.rto.timeout(f.retries)
            {
                let f = &mut self.frames[idx];
                f.state = FrameState::Pending;
                f.gen = f.gen.wrapping_add(1);
                f.retries += 1;
                self.in_flight -= 1;
                stats.retransmits += 1;
                self.pending.push_front(idx);
            }
        }
    }

    /// Runs `phase`: the job's runtime (after its ramp) for `Main`, until done otherwise.
    /// `progress` is called about once a second with (elapsed seconds, I/Os so far).
    pub fn run(
        &mut self,
        phase: Phase,
        progress: &mut dyn FnMut(f64, u64),
    ) -> Result<RunStats, EngineError> {
        let mut stats = RunStats {
            path_frames: vec![0; self.target.paths.len()],
            ..Default::default()
        };
        self.seq_next = 0;
        let start = Instant::now();
        let ramp_end = start
            + if phase == Phase::Main {
                self.job.ramp()
            } else {
                Duration::ZERO
            };
        let end = if phase == Phase::Main {
            Some(ramp_end + self.job.runtime())
        } else {
            None
        };
        let mut measure_start = if phase == Phase::Main && self.job.ramp > 0.0 {
            None
        } else {
            Some(start)
        };
        let mut bufs = vec![vec![0u8; 9216]; BATCH];
        let mut lens = [0usize; BATCH];
        let mut issuing = true;
        let mut next_check = start;
        let mut next_progress = start + Duration::from_secs(1);
        let give_up = Instant::now() + Duration::from_secs(3600);
        loop {
            let now = Instant::now();
            if measure_start.is_none() && now >= ramp_end {
                stats.read = DirStats::default();
                stats.write = DirStats::default();
                measure_start = Some(now);
            }
            if end.is_some_and(|e| now >= e) {
                issuing = false;
            }
            while issuing && !self.free_ios.is_empty() {
                match self.next_io(phase) {
                    Some((block, write)) => self.start_io(block, write, now),
                    None => {
                        if phase != Phase::Main {
                            issuing = false;
                        }
                        break;
                    }
                }
            }
            let outstanding = self.ios.iter().any(|io| io.active);
            if !issuing && !outstanding {
                break;
            }
            if now > give_up {
                return Err(EngineError::Region(
                    "no progress for an hour: the target stopped answering".into(),
                ));
            }
            self.send_pending(now, &mut stats)?;
            let mut got_any = false;
            for s in 0..self.socks.len() {
                loop {
                    let n = self.socks[s].recv_batch(&mut bufs, &mut lens)?;
                    let now = Instant::now();
                    let measuring = measure_start.is_some();
                    for k in 0..n {
                        let (frame, len) = (&bufs[k], lens[k]);
                        self.on_reply(&frame[..len], now, measuring, &mut stats);
                    }
                    got_any |= n > 0;
                    if n < BATCH {
                        break;
                    }
                }
            }
            let now = Instant::now();
            if now >= next_check {
                self.check_timeouts(now, &mut stats);
                next_check = now + Duration::from_millis(2);
            }
            if now >= next_progress {
                progress(
                    now.duration_since(start).as_secs_f64(),
                    stats.read.ios + stats.write.ios,
                );
                next_progress = now + Duration::from_secs(1);
            }
            if !got_any && (self.pending.is_empty() || self.in_flight >= self.window) {
                wait_readable(self.socks, 1);
            }
        }
        stats.seconds = measure_start
            .map(|m| Instant::now().duration_since(m).as_secs_f64())
            .unwrap_or(0.0);
        Ok(stats)
    }
}
