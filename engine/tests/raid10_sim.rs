//! Deterministic simulation of a RAID-10 array: the real policy (`Array` with its request
//! and sync-step state machines, superblocks, bitmap and bad-block lists on real small
//! files) against simulated member disks, driven by one seed through random schedules:
//! client reads, writes and flushes with random completion order (late completions); member
//! faults (read/write errors on ranges, short transfers, a dead disk, a hang); admin fails;
//! spares pulled in; rebuild, resync and scrub steps beside client writes; power cuts that
//! lose unsynced writes, followed by reassembly. The oracle checks every read: each sector
//! holds the last acknowledged write (or one the crash or a failed write may have left), or
//! the read reports an error; at the end, with the faults gone and the array in sync, both
//! copies of every chunk are equal.
//!
//! `cargo test --test raid10_sim` runs a bounded batch (SIM_SEEDS, default 5000, about 20 s, from
//! SIM_FIRST_SEED); a failing seed prints its number and replays with
//! `SIM_FIRST_SEED=N SIM_SEEDS=1`. A soak: `SIM_SEEDS=20000 cargo test --release --test raid10_sim`.

use ethershelf::store::raid10::{
    Array, Completion, MemberDisk, MemberOp, OpKind, Progress, Request, RequestKind, RoleState,
    StepNext, StepOp, StepOpKind, StepPlan, StepState, DATA_OFFSET_SECTORS,
};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Array chunk: 8 sectors (the smallest), so requests span pieces.
const CHUNK: u64 = 8;
/// Member data sectors.
const MEMBER_SECTORS: u64 = 256;

/// xorshift64*: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What a simulated disk does to the I/O that reaches it.
#[derive(Debug, Clone, Default)]
struct DiskFaults {
    /// Reads of these member data sectors fail.
    bad_read: Option<(u64, u64)>,
    /// Writes of these member data sectors fail.
    bad_write: Option<(u64, u64)>,
    /// Every I/O fails.
    dead: bool,
    /// Transfers stop short (once each, then they work).
    short: bool,
}

/// A simulated member disk: a real file (the array's metadata code writes it directly and
/// syncs it) whose data I/O the simulator performs, with a volatile cache: a write without
/// DSYNC is lost at a power cut unless a flush came after it.
struct Disk {
    path: PathBuf,
    file: std::fs::File,
    faults: DiskFaults,
    /// Old contents of sectors written since the last flush, newest last.
    unsynced: Vec<(u64, Vec<u8>)>,
}

impl Disk {
    fn offset(sector: u64) -> u64 {
        (DATA_OFFSET_SECTORS + sector) * 512
    }
    fn hits(range: Option<(u64, u64)>, sector: u64, sectors: u64) -> bool {
        range.is_some_and(|(a, b)| sector < b && sector + sectors > a)
    }
    /// Performs a read or write of `buf` at member `sector`; returns the result code.
    fn io(&mut self, write: bool, sync: bool, sector: u64, buf: &mut [u8], rng: &mut Rng) -> i32 {
        let sectors = buf.len() as u64 / 512;
        if self.faults.dead
            || (!write && Disk::hits(self.faults.bad_read, sector, sectors))
            || (write && Disk::hits(self.faults.bad_write, sector, sectors))
        {
            return -libc::EIO;
        }
        if self.faults.short && buf.len() > 512 && rng.chance(30) {
            // A short transfer: part of it happens.
            let part = 512 * (1 + rng.below(sectors - 1)) as usize;
            return self.io(write, sync, sector, &mut buf[..part], rng);
        }
        let at = Disk::offset(sector);
        if let Some(t) = std::env::var("SIM_TRACE_SECTOR")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            if t >= sector && t < sector + buf.len() as u64 / 512 {
                let k = ((t - sector) * 512) as usize;
                let v = u64::from_le_bytes(buf[k..k + 8].try_into().unwrap());
                eprintln!(
                    "TRACE {} {} sector {t} version {v}",
                    self.path.display(),
                    if write { "write" } else { "read" }
                );
            }
        }
        if write {
            if sync {
                // Stable at once: an earlier cached write of these sectors can no longer
                // take them back at a power cut.
                let end = at + buf.len() as u64;
                for (uat, old) in &mut self.unsynced {
                    let uend = *uat + old.len() as u64;
                    let (from, to) = (at.max(*uat), end.min(uend));
                    if from < to {
                        old[(from - *uat) as usize..(to - *uat) as usize]
                            .copy_from_slice(&buf[(from - at) as usize..(to - at) as usize]);
                    }
                }
            } else {
                let mut old = vec![0u8; buf.len()];
                self.file.read_exact_at(&mut old, at).unwrap();
                self.unsynced.push((at, old));
            }
            self.file.write_all_at(buf, at).unwrap();
        } else {
            self.file.read_exact_at(buf, at).unwrap();
        }
        buf.len() as i32
    }
    fn flush(&mut self) -> i32 {
        if self.faults.dead {
            return -libc::EIO;
        }
        self.unsynced.clear();
        0
    }
    /// Power cut: what the cache held is gone.
    fn power_cut(&mut self) {
        while let Some((at, old)) = self.unsynced.pop() {
            self.file.write_all_at(&old, at).unwrap();
        }
    }
}

/// The oracle's view of one array sector.
#[derive(Debug, Clone)]
struct SectorTruth {
    /// Versions a read may return now.
    allowed: Vec<u64>,
    /// Versions written (acknowledged) since the last completed flush, and the one before.
    since_flush: Vec<u64>,
}

/// A client request in flight.
struct ClientIo {
    req: Request,
    /// Version written (writes).
    version: u64,
    data: Vec<u8>,
    /// Member ops issued, with the disk each went to.
    ops: Vec<(MemberOp, usize)>,
    rewriting: bool,
    /// Flushes: the version each sector had acknowledged when the flush was issued (what
    /// the flush makes durable; later writes are not covered).
    covers: Vec<u64>,
}

/// A sync step in flight.
struct SyncIo {
    state: StepState,
    bufs: [Vec<u8>; 2],
    ops: Vec<(StepOp, usize)>,
    started: bool,
}

struct Sim {
    rng: Rng,
    dir: PathBuf,
    members: usize,
    config_spares: Vec<usize>,
    disks: Vec<Disk>,
    array: Option<Array>,
    spares: Vec<MemberDisk>,
    writeback: bool,
    truth: Vec<SectorTruth>,
    clients: BTreeMap<u64, ClientIo>,
    syncs: BTreeMap<u64, SyncIo>,
    next_id: u64,
    version: u64,
    tick: u64,
    /// Reads checked, and reads that answered errors.
    reads: u64,
    read_errors: u64,
    faults_injected: u64,
    crashes: u64,
    log: Vec<String>,
}

fn sector_data(version: u64, lba: u64) -> [u8; 512] {
    let mut s = [0u8; 512];
    if version == 0 {
        return s;
    }
    for (i, chunk) in s.chunks_mut(16).enumerate() {
        chunk[..8].copy_from_slice(&version.to_le_bytes());
        chunk[8..].copy_from_slice(&(lba ^ i as u64).to_le_bytes());
    }
    s
}

fn version_of(data: &[u8], lba: u64) -> Option<u64> {
    if data.iter().all(|b| *b == 0) {
        return Some(0);
    }
    let v = u64::from_le_bytes(data[..8].try_into().unwrap());
    (data == sector_data(v, lba)).then_some(v)
}

impl Sim {
    fn new(seed: u64, root: &Path) -> Sim {
        let mut rng = Rng::new(seed);
        let members = 2 + rng.below(3) as usize;
        let spares = rng.below(3) as usize;
        let dir = root.join(format!("seed-{seed}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut disks = Vec::new();
        for i in 0..members + spares {
            let path = dir.join(format!("d{i}.img"));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            file.set_len((DATA_OFFSET_SECTORS + MEMBER_SECTORS) * 512)
                .unwrap();
            disks.push(Disk {
                path,
                file,
                faults: DiskFaults::default(),
                unsynced: Vec::new(),
            });
        }
        let writeback = rng.chance(30);
        let first =
            format!("seed {seed}: {members} members, {spares} spares, writeback {writeback}");
        let mut sim = Sim {
            rng,
            dir,
            members,
            config_spares: (members..members + spares).collect(),
            disks,
            array: None,
            spares: Vec::new(),
            writeback,
            truth: Vec::new(),
            clients: BTreeMap::new(),
            syncs: BTreeMap::new(),
            next_id: 0,
            version: 0,
            tick: 0,
            reads: 0,
            read_errors: 0,
            faults_injected: 0,
            crashes: 0,
            log: vec![first],
        };
        sim.assemble(true);
        let sectors = sim.array().sectors() as usize;
        sim.truth = vec![
            SectorTruth {
                allowed: vec![0],
                since_flush: vec![0],
            };
            sectors
        ];
        sim
    }

    fn array(&mut self) -> &mut Array {
        self.array.as_mut().expect("array assembled")
    }

    /// Opens (or creates) the array from the disks, as the shelf does at start.
    fn assemble(&mut self, clean: bool) {
        let list: Vec<(usize, PathBuf)> = (0..self.members)
            .map(|i| (i, self.disks[i].path.clone()))
            .collect();
        let mut spares: Vec<MemberDisk> = self
            .config_spares
            .iter()
            .filter_map(|&i| MemberDisk::open(i, &self.disks[i].path).ok())
            .collect();
        // Every disk is present at each start: the array must assemble without being allowed
        // to start degraded or forced (a refusal here would be a false split brain).
        let opened = Array::open("e1.0", &list, &mut spares, CHUNK, clean, false, false);
        let (array, _report) = opened.unwrap_or_else(|e| {
            panic!(
                "array refused to assemble with every disk present: {e}\n{}",
                self.log.join("\n")
            )
        });
        let roles: Vec<String> = array
            .roles
            .iter()
            .map(|r| format!("{:?}:{}", r.dev.as_ref().map(|d| d.disk), r.state))
            .collect();
        self.log.push(format!(
            "assembled: roles {roles:?} checkpoint {} state {} report {_report:?}",
            array.checkpoint(),
            array.state()
        ));
        self.array = Some(array);
        self.spares = spares;
    }

    /// The disk (file index) in role `m` now.
    fn disk_of(&mut self, m: usize) -> Option<usize> {
        self.array().roles[m].dev.as_ref().map(|d| d.disk)
    }

    fn overlaps_write(&self, lba: u64, count: u64) -> bool {
        let hit = |l: u64, c: u64| lba < l + c && l < lba + count;
        self.clients.values().any(|c| {
            (c.req.kind == RequestKind::Write || c.rewriting) && hit(c.req.lba, c.req.count as u64)
        }) || self
            .syncs
            .values()
            .any(|s| s.started && hit(s.state.step.lba, s.state.step.sectors))
    }

    fn start_client(&mut self) {
        let sectors = self.array().sectors();
        let kind = match self.rng.below(10) {
            0 => RequestKind::Flush,
            1..=4 => RequestKind::Write,
            _ => RequestKind::Read,
        };
        let count = 1 + self.rng.below(24);
        let lba = self.rng.below(sectors - count);
        // Hosts do not overlap a read and a write in flight (the block layer promises nothing
        // for that): the oracle can then say exactly what a read must return.
        let overlaps_client = self.clients.values().any(|c| {
            c.req.kind != RequestKind::Flush
                && (kind == RequestKind::Write || c.req.kind == RequestKind::Write)
                && lba < c.req.lba + c.req.count as u64
                && c.req.lba < lba + count
        });
        if kind != RequestKind::Flush
            && (overlaps_client || (kind == RequestKind::Write && self.overlaps_write(lba, count)))
        {
            return;
        }
        let mut req = Request::new(kind, lba, count as u8, !self.writeback);
        let mut data = vec![0u8; count as usize * 512];
        self.version += 1;
        let version = self.version;
        if kind == RequestKind::Write {
            for k in 0..count {
                let s = sector_data(version, lba + k);
                data[k as usize * 512..(k as usize + 1) * 512].copy_from_slice(&s);
                self.truth[(lba + k) as usize].allowed.push(version);
            }
        }
        let mut ops = Vec::new();
        let progress = self.array().start_request(&mut req, &mut ops);
        let id = self.next_id;
        self.next_id += 1;
        let covers = if kind == RequestKind::Flush {
            self.truth
                .iter()
                .map(|t| {
                    if t.allowed.len() == 1 {
                        t.allowed[0]
                    } else {
                        0
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut io = ClientIo {
            req,
            version,
            data,
            ops: Vec::new(),
            rewriting: false,
            covers,
        };
        for op in ops {
            let disk = self.disk_of(op.member as usize).unwrap();
            self.log.push(format!(
                "  {id} op {:?} m{} disk {disk} sector {}",
                op.kind, op.member, op.sector
            ));
            io.ops.push((op, disk));
        }
        self.clients.insert(id, io);
        if let Progress::Done { success } = progress {
            self.finish_client(id, success);
        }
    }

    /// Completes one member op of a client request (chosen at random among all in flight).
    fn complete_client_op(&mut self, id: u64) {
        let io = self.clients.get_mut(&id).unwrap();
        let k = self.rng.below(io.ops.len() as u64) as usize;
        let (op, disk) = io.ops.swap_remove(k);
        let writethrough = !self.writeback;
        let result = {
            let io = self.clients.get_mut(&id).unwrap();
            let d = &mut self.disks[disk];
            match op.kind {
                OpKind::Flush => d.flush(),
                kind => {
                    let buf = &mut io.data[op.at as usize..(op.at + op.bytes) as usize];
                    let sync = kind == OpKind::Rewrite || writethrough;
                    d.io(kind.writes(), sync, op.sector, buf, &mut self.rng)
                }
            }
        };
        let mut io = self.clients.remove(&id).unwrap();
        let mut ops = Vec::new();
        let c = Completion {
            op,
            result,
            took_ns: 0,
        };
        let progress = self.array().complete_request(&mut io.req, c, &mut ops);
        for op in ops {
            let disk = self.disk_of(op.member as usize).unwrap();
            io.ops.push((op, disk));
        }
        let was_rewrite = op.kind == OpKind::Rewrite;
        self.clients.insert(id, io);
        match progress {
            Progress::Waiting => {}
            Progress::Done { success } => self.finish_client(id, success),
            Progress::Rewrite(rewrite) => {
                let (lba, count) = (
                    self.clients[&id].req.lba + u64::from(rewrite.at) / 512,
                    u64::from(rewrite.bytes) / 512,
                );
                if was_rewrite || self.overlaps_write(lba, count) {
                    self.finish_client(id, true);
                } else {
                    let disk = self.disk_of(rewrite.member as usize).unwrap();
                    let io = self.clients.get_mut(&id).unwrap();
                    io.req.rewrite_issued();
                    io.rewriting = true;
                    io.ops.push((rewrite, disk));
                }
            }
        }
    }

    fn finish_client(&mut self, id: u64, success: bool) {
        let io = self.clients.remove(&id).unwrap();
        let (lba, count) = (io.req.lba, io.req.count as u64);
        let state = self.array().state();
        self.log.push(format!(
            "client {:?} {lba}+{count} v{} -> {success} ({state})",
            io.req.kind, io.version
        ));
        match io.req.kind {
            RequestKind::Write => {
                let a = self.array();
                a.intent.end_write(lba, count, 0);
                for k in 0..count {
                    let t = &mut self.truth[(lba + k) as usize];
                    if success {
                        t.allowed = vec![io.version];
                        t.since_flush.push(io.version);
                    } else {
                        // A failed write may have landed on some copies: old or new.
                        t.since_flush.push(io.version);
                    }
                }
            }
            RequestKind::Read => {
                self.reads += 1;
                if !success {
                    self.read_errors += 1;
                    return;
                }
                for k in 0..count {
                    let data = &io.data[k as usize * 512..(k as usize + 1) * 512];
                    let t = &self.truth[(lba + k) as usize];
                    let v = version_of(data, lba + k);
                    assert!(
                        v.is_some_and(|v| t.allowed.contains(&v)),
                        "WRONG DATA served as good at array sector {}: got version {:?}, allowed {:?}\n{}",
                        lba + k,
                        v,
                        t.allowed,
                        self.log.join("\n")
                    );
                }
            }
            RequestKind::Flush => {
                if success {
                    for (t, &floor) in self.truth.iter_mut().zip(&io.covers) {
                        t.since_flush.retain(|v| *v >= floor);
                        if t.since_flush.is_empty() {
                            t.since_flush.push(floor);
                        }
                    }
                }
            }
        }
    }

    fn start_sync(&mut self) {
        let plan = self.array().plan_step();
        match plan {
            StepPlan::Idle => {}
            StepPlan::Finished => {
                self.array().finish_job();
                self.log.push("job finished".into());
            }
            StepPlan::Step(state) => {
                let bytes = state.step.sectors as usize * 512;
                let id = self.next_id;
                self.next_id += 1;
                self.syncs.insert(
                    id,
                    SyncIo {
                        state,
                        bufs: [vec![0u8; bytes], vec![0u8; bytes]],
                        ops: Vec::new(),
                        started: false,
                    },
                );
            }
        }
    }

    /// Starts a planned step once no client write overlaps it (the worker's write order).
    fn admit_sync(&mut self, id: u64) {
        let s = &self.syncs[&id];
        let (lba, n) = (s.state.step.lba, s.state.step.sectors);
        let busy = self.clients.values().any(|c| {
            (c.req.kind == RequestKind::Write || c.rewriting)
                && lba < c.req.lba + c.req.count as u64
                && c.req.lba < lba + n
        }) || self.syncs.iter().any(|(k, o)| {
            *k != id
                && o.started
                && lba < o.state.step.lba + o.state.step.sectors
                && o.state.step.lba < lba + n
        });
        if busy {
            return;
        }
        let mut io = self.syncs.remove(&id).unwrap();
        let mut ops = Vec::new();
        if self.array().step_reads(&mut io.state, &mut ops) == StepNext::Done {
            let state = io.state;
            self.array().step_done(&state);
            return;
        }
        for op in ops {
            let disk = self.disk_of(op.member as usize);
            io.ops.push((op, disk.unwrap_or(usize::MAX)));
        }
        io.started = true;
        self.syncs.insert(id, io);
    }

    fn complete_sync_op(&mut self, id: u64) {
        let mut io = self.syncs.remove(&id).unwrap();
        let k = self.rng.below(io.ops.len() as u64) as usize;
        let (op, disk) = io.ops.swap_remove(k);
        let result = if disk == usize::MAX {
            -libc::ENODEV
        } else {
            let buf = &mut io.bufs[op.second_buffer as usize];
            self.disks[disk].io(
                op.kind == StepOpKind::Write,
                true,
                op.sector,
                buf,
                &mut self.rng,
            )
        };
        let (b0, b1) = (io.bufs[0].clone(), io.bufs[1].clone());
        let mut ops = Vec::new();
        let next = self
            .array()
            .step_member_done(&mut io.state, op, result, || b0 != b1, &mut ops);
        match next {
            StepNext::Waiting => {
                self.syncs.insert(id, io);
            }
            StepNext::Issue => {
                for op in ops {
                    let disk = self.disk_of(op.member as usize);
                    io.ops.push((op, disk.unwrap_or(usize::MAX)));
                }
                self.syncs.insert(id, io);
            }
            StepNext::Done => {
                let state = io.state;
                self.log.push(format!("step done {:?}", state.step));
                self.array().step_done(&state);
            }
        }
    }

    /// Changes the faults of a random disk, or an array's membership, as an admin or a
    /// failing disk would.
    fn fault(&mut self) {
        let n = self.disks.len();
        let d = self.rng.below(n as u64) as usize;
        let sector = self.rng.below(MEMBER_SECTORS);
        let len = 1 + self.rng.below(16);
        self.faults_injected += 1;
        let what = self.rng.below(10);
        let f = &mut self.disks[d].faults;
        match what {
            0 | 1 => f.bad_read = Some((sector, sector + len)),
            2 => f.bad_write = Some((sector, sector + len)),
            3 => f.short = true,
            4 if self.rng.chance(30) => f.dead = true,
            5 => {
                // The admin fails a member (the console refuses the only in-sync copy).
                let m = self.rng.below(self.members as u64) as usize;
                let a = self.array();
                if !a.only_copy(m) {
                    a.fail_role(m, "sim: admin");
                    self.log.push(format!("admin fails role {m}"));
                }
            }
            _ => *f = DiskFaults::default(),
        }
        self.log
            .push(format!("fault {what} on disk {d} at {sector}+{len}"));
    }

    /// Housekeeping, as the worker's tick: spares into failed roles, checkpoints, bitmap.
    fn housekeeping(&mut self) {
        self.tick += 1;
        let tick = self.tick;
        let writeback = self.writeback;
        let a = self.array.as_mut().unwrap();
        if let (Some(r), false) = (a.role_needing_disk(), a.unreadable_chunk()) {
            if !self.spares.is_empty() {
                let dev = self.spares.remove(0);
                let _old = a.take_failed(r);
                if let Err(dev) = a.add_for_rebuild(r, dev) {
                    self.spares.push(dev);
                }
                self.log.push(format!("spare into role {r}"));
            }
        }
        if tick % 7 == 0 {
            let _ = a.commit("sim checkpoint");
        }
        if a.clear_idle_regions(tick, 3, writeback) {
            for d in &mut self.disks {
                d.unsynced.clear();
            }
        }
    }

    /// Power cut: in-flight I/O never happens, caches are lost; then the shelf starts again.
    fn crash(&mut self) {
        self.crashes += 1;
        self.log.push("power cut".into());
        for io in std::mem::take(&mut self.clients).into_values() {
            if io.req.kind == RequestKind::Write {
                for k in 0..io.req.count as u64 {
                    self.truth[(io.req.lba + k) as usize]
                        .since_flush
                        .push(io.version);
                }
            }
        }
        self.syncs.clear();
        self.array = None;
        self.spares.clear();
        for d in &mut self.disks {
            d.power_cut();
        }
        let writeback = self.writeback;
        for t in &mut self.truth {
            // Unacknowledged writes may or may not have landed; in write-back mode,
            // acknowledged ones since the last flush may be gone too.
            let mut allowed = t.allowed.clone();
            if writeback {
                allowed.extend(t.since_flush.iter().copied());
            }
            allowed.extend(
                t.since_flush
                    .iter()
                    .copied()
                    .filter(|v| !t.allowed.contains(v) && !writeback),
            );
            allowed.sort_unstable();
            allowed.dedup();
            t.allowed = allowed;
        }
        self.assemble(false);
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=29 if self.clients.len() < 8 => self.start_client(),
            30..=59 if !self.clients.is_empty() => {
                let ids: Vec<u64> = self.clients.keys().copied().collect();
                let id = ids[self.rng.below(ids.len() as u64) as usize];
                if !self.clients[&id].ops.is_empty() {
                    self.complete_client_op(id);
                }
            }
            60..=74 => {
                let ids: Vec<u64> = self.syncs.keys().copied().collect();
                if ids.is_empty() || self.syncs.len() < 2 && self.rng.chance(50) {
                    self.start_sync();
                } else {
                    let id = ids[self.rng.below(ids.len() as u64) as usize];
                    if !self.syncs[&id].started {
                        self.admit_sync(id);
                    } else if !self.syncs[&id].ops.is_empty() {
                        self.complete_sync_op(id);
                    }
                }
            }
            75..=77 => self.fault(),
            78..=89 => self.housekeeping(),
            90 if self.rng.chance(10) => self.crash(),
            _ => {}
        }
    }

    /// Ends every fault and runs the array to quiescence, then checks every sector and that
    /// both copies of every chunk agree.
    fn settle_and_check(&mut self) {
        for d in &mut self.disks {
            d.faults = DiskFaults::default();
        }
        for _ in 0..200_000 {
            if self.clients.is_empty() && self.syncs.is_empty() {
                break;
            }
            let cid = self
                .clients
                .iter()
                .find(|(_, c)| !c.ops.is_empty())
                .map(|(k, _)| *k);
            if let Some(id) = cid {
                self.complete_client_op(id);
                continue;
            }
            let sid = self.syncs.keys().next().copied();
            if let Some(id) = sid {
                if self.syncs[&id].started {
                    self.complete_sync_op(id);
                } else {
                    self.admit_sync(id);
                }
            }
        }
        // Run the background jobs to the end (no client I/O now).
        for _ in 0..100_000 {
            self.housekeeping();
            self.start_sync();
            let ids: Vec<u64> = self.syncs.keys().copied().collect();
            for id in ids {
                self.admit_sync(id);
                while self.syncs.get(&id).is_some_and(|s| !s.ops.is_empty()) {
                    self.complete_sync_op(id);
                }
            }
            let a = self.array();
            if a.sync.is_none() && !a.resync_owed && a.role_needing_disk().is_none() {
                break;
            }
            if a.sync.is_none() && !a.resync_owed && self.spares.is_empty() {
                break;
            }
        }
        // Every sector: read it back through the array.
        let sectors = self.array().sectors();
        let mut lba = 0;
        while lba < sectors {
            let count = (sectors - lba).min(16);
            let mut req = Request::new(RequestKind::Read, lba, count as u8, !self.writeback);
            let mut ops = Vec::new();
            let progress = self.array().start_request(&mut req, &mut ops);
            let id = self.next_id;
            self.next_id += 1;
            let mut io = ClientIo {
                req,
                version: 0,
                data: vec![0u8; count as usize * 512],
                ops: Vec::new(),
                rewriting: false,
                covers: Vec::new(),
            };
            for op in ops {
                let disk = self.disk_of(op.member as usize).unwrap();
                io.ops.push((op, disk));
            }
            self.clients.insert(id, io);
            if let Progress::Done { success } = progress {
                self.finish_client(id, success);
            }
            while self.clients.get(&id).is_some_and(|c| !c.ops.is_empty()) {
                self.complete_client_op(id);
            }
            lba += count;
        }
        self.check_copies();
    }

    /// With every role active, both copies of each chunk hold the same bytes (outside the
    /// ranges a member lists bad).
    fn check_copies(&mut self) {
        let a = self.array.as_ref().unwrap();
        if a.roles.iter().any(|r| r.state != RoleState::Active) || a.sync.is_some() || a.resync_owed
        {
            return;
        }
        let layout = *a.layout();
        let mut lba = 0;
        while lba < layout.sectors() {
            let [(m0, s0), (m1, s1)] = layout.locate(lba);
            let bad = |m: usize, s: u64| a.roles[m].bad.overlaps(s, CHUNK);
            if !bad(m0, s0) && !bad(m1, s1) {
                let (d0, d1) = (
                    a.roles[m0].dev.as_ref().unwrap().disk,
                    a.roles[m1].dev.as_ref().unwrap().disk,
                );
                let mut x = vec![0u8; CHUNK as usize * 512];
                let mut y = x.clone();
                self.disks[d0]
                    .file
                    .read_exact_at(&mut x, Disk::offset(s0))
                    .unwrap();
                self.disks[d1]
                    .file
                    .read_exact_at(&mut y, Disk::offset(s1))
                    .unwrap();
                assert!(
                    x == y,
                    "copies differ at array sector {lba} after recovery\n{}",
                    self.log.join("\n")
                );
            }
            lba += CHUNK;
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_schedules_of_faults_never_serve_wrong_data() {
    let first = env_u64("SIM_FIRST_SEED", 1);
    let seeds = env_u64("SIM_SEEDS", 5000);
    let steps = env_u64("SIM_STEPS", 1500);
    // tmpfs keeps the metadata fsyncs cheap; any directory works.
    let root = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
    .join(format!("es-raid-sim-{}", std::process::id()));
    let (mut reads, mut errors, mut faults, mut crashes) = (0, 0, 0, 0);
    for seed in first..first + seeds {
        let result = std::panic::catch_unwind(|| {
            let mut sim = Sim::new(seed, &root);
            for _ in 0..steps {
                sim.step();
            }
            sim.settle_and_check();
            let _ = std::fs::remove_dir_all(&sim.dir);
            (sim.reads, sim.read_errors, sim.faults_injected, sim.crashes)
        });
        match result {
            Ok((r, e, f, c)) => {
                reads += r;
                errors += e;
                faults += f;
                crashes += c;
            }
            Err(panic) => {
                let _ = std::fs::remove_dir_all(&root);
                panic!(
                    "seed {seed} failed (replay: SIM_FIRST_SEED={seed} SIM_SEEDS=1 cargo test --test raid10_sim): {}",
                    panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("panic")
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "raid10 simulation: {seeds} seeds x {steps} steps, {reads} reads checked ({errors} answered errors), {faults} faults injected, {crashes} power cuts, 0 wrong reads"
    );
    assert!(
        reads > seeds,
        "the simulation read too little to prove anything"
    );
}
