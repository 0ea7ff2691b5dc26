//! RAID-10 LUNs in the worker: a client request becomes member I/Os on the worker's
//! io_uring (reads from one copy, chosen by fewest in flight; writes to every live copy),
//! member errors are retried, repaired or turned into a failed member, and the background
//! sync jobs (rebuild, resync, scrub) run as throttled steps ordered against client writes.

use super::{Extent, Op, Worker, UD_RAID, UD_SYNC};
use crate::store::raid10::{Fault, Piece, RoleState, Step, SyncKind, MAX_STEPS};
use crate::wire::{ATA_DATA_OFFSET, SECTOR_SIZE};
use io_uring::{opcode, types};

/// Member sub-operations of a client request.
const SUB_READ: u64 = 0;
const SUB_WRITE: u64 = 1;
const SUB_FLUSH: u64 = 2;
const SUB_REWRITE: u64 = 3;
/// Sub-operations of a sync step.
const STEP_READ: u64 = 0;
const STEP_COMPARE: u64 = 1;
const STEP_WRITE: u64 = 2;

/// Sync steps in flight across all arrays of a worker (each owns two step buffers).
pub const SYNC_SLOTS: usize = 8;

/// Packs a member I/O of a client request into io_uring user data.
fn raid_ud(slot: u32, piece: usize, member: usize, sub: u64) -> u64 {
    UD_RAID
        | slot as u64
        | ((piece as u64 & 0xFF) << 24)
        | ((member as u64 & 0xFF) << 32)
        | (sub << 40)
}

fn sync_ud(step: usize, member: usize, sub: u64) -> u64 {
    UD_SYNC | step as u64 | ((member as u64 & 0xFF) << 32) | (sub << 40)
}

/// A sync step in flight.
#[derive(Debug, Clone, Copy)]
pub struct SyncSlot {
    /// Owning target.
    pub target: u16,
    /// Step index inside its job.
    pub job_step: usize,
    /// The step.
    pub step: Step,
    /// Member I/Os outstanding.
    pub pending: u8,
    /// Some member I/O failed.
    pub failed: bool,
    /// Phase: reading (source/compare) or writing.
    pub writing: bool,
}

/// Per-array bookkeeping the worker keeps beside the array.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArrayPace {
    /// Sync bytes still allowed in this tick.
    pub budget: i64,
    /// Client I/Os since the last tick (the job backs off to the minimum rate).
    pub client_ios: u64,
    /// Regions below this array sector have been cleared after resync.
    pub cleared_below: u64,
    /// Ticks since the rebuild checkpoint was last persisted.
    pub since_checkpoint: u32,
}

impl Worker {
    /// Whether target `t` is a RAID-10 LUN.
    pub(super) fn is_raid(&self, t: u16) -> bool {
        self.arrays.get(t as usize).is_some_and(Option::is_some)
    }

    /// Queues one member I/O, or a synthetic EIO when a fault is injected on that member.
    // The arguments are the fields of one io_uring entry; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn member_io(
        &mut self,
        t: usize,
        member: usize,
        sector: u64,
        buf: *mut u8,
        bytes: u32,
        write: bool,
        flags: i32,
        ud: u64,
    ) {
        let Some(array) = self.arrays[t].as_mut() else {
            return;
        };
        let role = &mut array.roles[member];
        role.in_flight += 1;
        let injected = match role.fault {
            Fault::None => false,
            Fault::Read => !write,
            Fault::Write => write,
            Fault::All => true,
        };
        let Some(dev) = role.dev.as_ref() else {
            self.synthetic.push((ud, -libc::ENODEV));
            return;
        };
        if injected {
            self.synthetic.push((ud, -libc::EIO));
            return;
        }
        let io = super::merge::MemberIo {
            fd: dev.fd(),
            offset: dev.byte_offset(sector),
            buf: buf as usize,
            bytes,
            write,
            flags,
            ud,
        };
        // Held to the end of the batch, where contiguous member I/Os are merged.
        self.member_pending.push(io);
    }

    fn member_flush(&mut self, t: usize, member: usize, ud: u64) {
        let Some(array) = self.arrays[t].as_mut() else {
            return;
        };
        let role = &mut array.roles[member];
        role.in_flight += 1;
        match (&role.dev, role.fault) {
            (None, _) => self.synthetic.push((ud, -libc::ENODEV)),
            (Some(_), Fault::Write | Fault::All) => self.synthetic.push((ud, -libc::EIO)),
            (Some(dev), _) => {
                let sqe = opcode::Fsync::new(types::Fd(dev.fd()))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(ud);
                self.push_sqe(sqe);
            }
        }
    }

    /// Starts the member I/O of an admitted client request in `slot`.
    pub(super) fn raid_submit(&mut self, slot: u32) {
        let s = self.slots[slot as usize];
        let t = s.target as usize;
        let Some(array) = self.arrays[t].as_mut() else {
            return;
        };
        array_note_client(&mut self.pace[t]);
        let layout = *array.layout();
        let mut subs = [(0usize, 0usize, 0u64, 0usize, 0u32); 80];
        let mut n = 0;
        let mut lost = false;
        match s.op {
            Op::Read | Op::Write => {
                let Some(pieces) = layout.pieces(s.lba, s.count as u64) else {
                    return self.raid_finish(slot, false);
                };
                let write = s.op == Op::Write;
                if write && array.intent.begin_write(s.lba, s.count as u64) {
                    if let Err(e) = array.persist_bitmap() {
                        tracing::error!(lun = %array.label, error = %e, "bitmap update failed");
                    }
                }
                for (i, piece) in pieces.enumerate() {
                    let at = ((piece.array_lba - s.lba) as usize) * SECTOR_SIZE;
                    let bytes = piece.sectors as u32 * SECTOR_SIZE as u32;
                    if write {
                        let mut any = false;
                        for (m, sector) in piece.copies {
                            if array.writable(m) && n < subs.len() {
                                subs[n] = (i, m, sector, at, bytes);
                                n += 1;
                                any = true;
                            }
                        }
                        lost |= !any;
                    } else {
                        match array.pick_read(&piece, None) {
                            Some(m) if n < subs.len() => {
                                let sector = member_sector(&piece, m);
                                subs[n] = (i, m, sector, at, bytes);
                                n += 1;
                            }
                            _ => lost = true,
                        }
                    }
                }
            }
            Op::Flush => {
                for m in 0..array.roles.len() {
                    if array.writable(m) {
                        subs[n] = (0, m, 0, 0, 0);
                        n += 1;
                    }
                }
            }
            Op::Idle => return,
        }
        if lost {
            if let Some(a) = self.arrays[t].as_mut() {
                if !a.lost {
                    tracing::error!(lun = %a.label, lba = s.lba, count = s.count, "no surviving copy: answering ATA UNC; the LUN is failed");
                }
                a.lost = true;
            }
        }
        let st = &mut self.slots[slot as usize];
        st.pending = n as u16;
        st.piece_ok = 0;
        st.bad = 0;
        st.failed = lost;
        if n == 0 {
            return self.raid_finish(slot, !lost);
        }
        self.in_flight += 1;
        let flags = if self.targets[t].writethrough {
            libc::RWF_DSYNC
        } else {
            0
        };
        // SAFETY: the data area of slot `slot` starts at offset 36 and holds `count` sectors.
        let data = unsafe { self.slab.frame_ptr(slot as usize).add(ATA_DATA_OFFSET) };
        for &(piece, m, sector, at, bytes) in &subs[..n] {
            match s.op {
                Op::Flush => self.member_flush(t, m, raid_ud(slot, 0, m, SUB_FLUSH)),
                op => {
                    let write = op == Op::Write;
                    let sub = if write { SUB_WRITE } else { SUB_READ };
                    // SAFETY: `at + bytes` stays inside the slot's data area.
                    let buf = unsafe { data.add(at) };
                    self.member_io(
                        t,
                        m,
                        sector,
                        buf,
                        bytes,
                        write,
                        flags,
                        raid_ud(slot, piece, m, sub),
                    );
                }
            }
        }
    }

    /// A member I/O of a client request completed.
    pub(super) fn raid_complete(&mut self, ud: u64, result: i32) {
        let slot = (ud & 0xFF_FFFF) as u32;
        let piece_index = ((ud >> 24) & 0xFF) as usize;
        let m = ((ud >> 32) & 0xFF) as usize;
        let sub = (ud >> 40) & 0xFF;
        let s = self.slots[slot as usize];
        let t = s.target as usize;
        let Some(array) = self.arrays[t].as_mut() else {
            return;
        };
        let layout = *array.layout();
        let piece = layout
            .pieces(s.lba, s.count as u64)
            .and_then(|mut p| p.nth(piece_index));
        let expected = piece.map_or(0, |p| p.sectors as i32 * SECTOR_SIZE as i32);
        let ok = match sub {
            SUB_FLUSH => result == 0,
            _ => result == expected,
        };
        {
            let role = &mut array.roles[m];
            role.in_flight = role.in_flight.saturating_sub(1);
            let took = crate::metrics::monotonic_ns().saturating_sub(s.submitted);
            if sub == SUB_READ {
                role.counters.read_latency.record(took);
                role.counters.read_bytes += result.max(0) as u64;
            } else {
                role.counters.write_latency.record(took);
                role.counters.written_bytes += result.max(0) as u64;
            }
            if ok {
                role.counters.ios += 1;
                role.counters.bytes += result.max(0) as u64;
            } else if sub == SUB_READ {
                role.counters.read_errors += 1;
            } else {
                role.counters.write_errors += 1;
            }
        }
        // O_DIRECT refusing the alignment: once per member, then the page cache.
        if result == -libc::EINVAL && sub != SUB_FLUSH {
            if let Some(dev) = array.roles[m].dev.as_mut() {
                if dev.is_direct() {
                    dev.buffered_only = true;
                    self.stats.direct_fallbacks += 1;
                    tracing::warn!(lun = %array.label, disk = dev.disk, "O_DIRECT refuses this I/O size here: member I/O goes through the page cache");
                    return self.raid_reissue(slot, piece_index, m, sub, piece);
                }
            }
        }
        if !ok {
            tracing::warn!(lun = %array.label, member = m, lba = s.lba, result, sub, "member I/O failed");
        }
        match sub {
            SUB_READ => {
                if ok {
                    self.slots[slot as usize].piece_ok |= 1 << piece_index;
                } else if let Some(piece) = piece {
                    let st = &mut self.slots[slot as usize];
                    if st.bad == 0 {
                        st.bad = m as u8 + 1;
                        st.rewrite_piece = piece_index as u8;
                    } else if st.bad as usize != m + 1 {
                        array.fail_role(m, "read error");
                    }
                    match array.pick_read(&piece, Some(m)) {
                        Some(other) => {
                            self.slots[slot as usize].pending += 1;
                            self.raid_reissue(slot, piece_index, other, SUB_READ, Some(piece));
                        }
                        None => {
                            self.slots[slot as usize].failed = true;
                            array.lost = true;
                            tracing::error!(lun = %array.label, lba = piece.array_lba, "read failed on every copy: answering ATA UNC");
                        }
                    }
                }
            }
            SUB_WRITE => {
                if ok {
                    self.slots[slot as usize].piece_ok |= 1 << piece_index;
                } else {
                    // The member missed a write: it must never be read again. Recorded on the
                    // other members before this write is acknowledged.
                    array.fail_role(m, "write error");
                }
            }
            SUB_FLUSH if !ok => {
                array.fail_role(m, "flush error");
            }
            SUB_REWRITE => {
                if ok {
                    array.roles[m].counters.corrected += 1;
                    tracing::info!(lun = %array.label, member = m, lba = s.lba, "read error repaired by rewriting from the other copy");
                } else {
                    array.fail_role(m, "read error and the rewrite failed");
                }
                self.order_done(slot);
            }
            _ => {}
        }
        let st = &mut self.slots[slot as usize];
        st.pending = st.pending.saturating_sub(1);
        if st.pending > 0 {
            return;
        }
        self.in_flight -= 1;
        let pieces = layout
            .pieces(s.lba, s.count as u64)
            .map_or(0, |p| p.count());
        let all = if pieces >= 64 {
            u64::MAX
        } else {
            (1u64 << pieces) - 1
        };
        let st = self.slots[slot as usize];
        let success = match s.op {
            Op::Flush => {
                !st.failed
                    && self.arrays[t]
                        .as_ref()
                        .is_some_and(|a| !a.unreadable_chunk())
            }
            _ => !st.failed && st.piece_ok & all == all,
        };
        // A read that needed the other copy: rewrite the bad member from the good data first.
        if s.op == Op::Read && success && st.bad != 0 && sub != SUB_REWRITE {
            let bad = st.bad as usize - 1;
            if let Some(piece) = layout
                .pieces(s.lba, s.count as u64)
                .and_then(|mut p| p.nth(st.rewrite_piece as usize))
            {
                let writable = self.arrays[t].as_ref().is_some_and(|a| a.writable(bad));
                let extent = Extent {
                    lun: t as u16,
                    lba: piece.array_lba,
                    count: piece.sectors as u32,
                };
                if writable && self.order.try_admit(slot, extent) {
                    self.in_flight += 1;
                    self.slots[slot as usize].pending = 1;
                    let at = ((piece.array_lba - s.lba) as usize) * SECTOR_SIZE;
                    // SAFETY: inside the slot's data area, as for the read.
                    let buf =
                        unsafe { self.slab.frame_ptr(slot as usize).add(ATA_DATA_OFFSET + at) };
                    let sector = member_sector(&piece, bad);
                    let ud = raid_ud(slot, st.rewrite_piece as usize, bad, SUB_REWRITE);
                    self.member_io(
                        t,
                        bad,
                        sector,
                        buf,
                        piece.sectors as u32 * SECTOR_SIZE as u32,
                        true,
                        libc::RWF_DSYNC,
                        ud,
                    );
                    return;
                }
                if writable {
                    // A write to these sectors is in flight: it rewrites the member itself
                    // (or fails it).
                    tracing::debug!(lun = t, "rewrite skipped: a write covers the region");
                }
            }
        }
        self.raid_finish(slot, success);
    }

    /// Reissues one member I/O (after EINVAL or on the other copy).
    fn raid_reissue(
        &mut self,
        slot: u32,
        piece_index: usize,
        m: usize,
        sub: u64,
        piece: Option<Piece>,
    ) {
        let s = self.slots[slot as usize];
        let t = s.target as usize;
        let flags = if self.targets[t].writethrough {
            libc::RWF_DSYNC
        } else {
            0
        };
        let ud = raid_ud(slot, piece_index, m, sub);
        let Some(piece) = piece else {
            return self.member_flush(t, m, ud);
        };
        if sub == SUB_FLUSH {
            return self.member_flush(t, m, ud);
        }
        let at = ((piece.array_lba - s.lba) as usize) * SECTOR_SIZE;
        // SAFETY: inside the slot's data area.
        let buf = unsafe { self.slab.frame_ptr(slot as usize).add(ATA_DATA_OFFSET + at) };
        let write = sub == SUB_WRITE || sub == SUB_REWRITE;
        let flags = if sub == SUB_REWRITE {
            libc::RWF_DSYNC
        } else {
            flags
        };
        self.member_io(
            t,
            m,
            member_sector(&piece, m),
            buf,
            piece.sectors as u32 * SECTOR_SIZE as u32,
            write,
            flags,
            ud,
        );
    }

    /// Completes a client request: bitmap, write order, reply.
    fn raid_finish(&mut self, slot: u32, success: bool) {
        let s = self.slots[slot as usize];
        let t = s.target as usize;
        if s.op == Op::Write {
            let tick = self.ticks;
            if let Some(a) = self.arrays[t].as_mut() {
                a.intent.end_write(s.lba, s.count as u64, tick);
            }
            self.order_done(slot);
        }
        self.publish_health(t);
        self.reply_io(slot, success);
    }

    /// Marks `slot`'s ordered write done and submits what waited behind it.
    pub(super) fn order_done(&mut self, slot: u32) {
        self.ready.clear();
        let mut ready = std::mem::take(&mut self.ready);
        self.order.complete(slot, &mut ready);
        for &w in &ready {
            if (w as usize) >= self.slots.len() {
                self.sync_read(w as usize - self.slots.len());
            } else {
                self.submit(w);
            }
        }
        self.ready = ready;
    }

    /// Mirrors the array state into the target (SMART health) after a change.
    pub(super) fn publish_health(&mut self, t: usize) {
        if let Some(a) = self.arrays[t].as_ref() {
            let degraded = a.degraded() || a.lost;
            self.targets[t]
                .degraded
                .store(degraded, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Once per tick: refill budgets, pull in spares, start and pace sync jobs, clear idle
    /// bitmap regions, persist checkpoints.
    pub(super) fn raid_tick(&mut self) {
        self.ticks += 1;
        for t in 0..self.arrays.len() {
            if self.arrays[t].is_none() {
                continue;
            }
            self.pull_spare(t);
            let busy = std::mem::take(&mut self.pace[t].client_ios) > 0;
            let rate = if busy { self.rates.min } else { self.rates.max };
            let per_tick = (rate / super::TICKS_PER_SECOND) as i64;
            self.pace[t].budget = (self.pace[t].budget + per_tick).min(per_tick);
            let tick = self.ticks;
            let Some(a) = self.arrays[t].as_mut() else {
                continue;
            };
            let resyncing =
                a.resync_owed || a.sync.as_ref().is_some_and(|j| j.kind == SyncKind::Resync);
            if !resyncing && tick % super::TICKS_PER_SECOND == 0 {
                let cleared = a.intent.clear_idle(tick, 5 * super::TICKS_PER_SECOND);
                if cleared > 0 {
                    if let Err(e) = a.persist_bitmap() {
                        tracing::error!(lun = %a.label, error = %e, "bitmap update failed");
                    }
                }
            }
            if a.sync.as_ref().is_some_and(|j| j.kind == SyncKind::Rebuild) {
                self.pace[t].since_checkpoint += 1;
                if self.pace[t].since_checkpoint >= 5 * super::TICKS_PER_SECOND as u32 {
                    self.pace[t].since_checkpoint = 0;
                    if let Err(e) = a.commit("rebuild checkpoint") {
                        tracing::error!(lun = %a.label, error = %e, "checkpoint not recorded");
                    }
                }
            }
            self.pump_sync(t);
        }
    }

    /// Gives a spare to an array with a failed or missing role.
    pub(super) fn pull_spare(&mut self, t: usize) {
        let Some(a) = self.arrays[t].as_mut() else {
            return;
        };
        let Some(r) = a.role_needing_disk() else {
            return;
        };
        if self.spares.is_empty() || a.unreadable_chunk() {
            return;
        }
        let dev = self.spares.remove(0);
        if let Some(old) = a.take_failed(r) {
            tracing::info!(lun = %a.label, role = r, disk = old.disk, "failed disk taken out of the array (replace it, then add it back as a spare)");
            self.failed_disks.push(old);
        }
        if let Err(dev) = a.add_for_rebuild(r, dev) {
            tracing::warn!(lun = %a.label, disk = dev.disk, "spare is too small for this array");
            self.spares.push(dev);
        }
        self.publish_health(t);
    }

    /// Issues sync steps for array `t` while budget and step slots allow.
    pub(super) fn pump_sync(&mut self, t: usize) {
        if self.stopping {
            return;
        }
        loop {
            let Some(a) = self.arrays[t].as_mut() else {
                return;
            };
            if a.next_job().is_none() {
                return;
            }
            if self.pace[t].budget <= 0 {
                return;
            }
            let Some(sid) = self.sync_slots.iter().position(Option::is_none) else {
                return;
            };
            let Some(mut job) = a.sync.take() else {
                return;
            };
            let Some(k) = job.free_step() else {
                a.sync = Some(job);
                return;
            };
            let step = job.plan(a);
            let Some(step) = step else {
                let done = job.done();
                a.sync = Some(job);
                if done {
                    self.finish_job(t);
                }
                return;
            };
            job.started_step(k, step.lba);
            a.sync = Some(job);
            self.pace[t].budget -= (step.sectors * SECTOR_SIZE as u64) as i64;
            self.sync_slots[sid] = Some(SyncSlot {
                target: t as u16,
                job_step: k,
                step,
                pending: 0,
                failed: false,
                writing: false,
            });
            let pseudo = (self.slots.len() + sid) as u32;
            let extent = Extent {
                lun: t as u16,
                lba: step.lba,
                count: step.sectors as u32,
            };
            if self.order.admit(pseudo, extent) {
                self.sync_read(sid);
            }
        }
    }

    fn sync_buf(&self, sid: usize, second: bool) -> *mut u8 {
        let i = sid * 2 + second as usize;
        // SAFETY: slot `i` of the sync slab; its data area starts at offset 36 (aligned).
        unsafe { self.sync_slab.frame_ptr(i).add(ATA_DATA_OFFSET) }
    }

    /// Reads the source (and the compare copy) of step `sid`.
    fn sync_read(&mut self, sid: usize) {
        let Some(s) = self.sync_slots[sid] else {
            return;
        };
        let t = s.target as usize;
        let bytes = (s.step.sectors * SECTOR_SIZE as u64) as u32;
        let (m, sector) = s.step.source;
        let mut pending = 1;
        let buf = self.sync_buf(sid, false);
        self.member_io(
            t,
            m,
            sector,
            buf,
            bytes,
            false,
            0,
            sync_ud(sid, m, STEP_READ),
        );
        if let Some((c, csector)) = s.step.compare {
            pending += 1;
            let buf2 = self.sync_buf(sid, true);
            self.member_io(
                t,
                c,
                csector,
                buf2,
                bytes,
                false,
                0,
                sync_ud(sid, c, STEP_COMPARE),
            );
        }
        if let Some(slot) = self.sync_slots[sid].as_mut() {
            slot.pending = pending;
        }
        self.in_flight += 1;
    }

    /// A member I/O of a sync step completed.
    pub(super) fn sync_complete(&mut self, ud: u64, result: i32) {
        let sid = (ud & 0xFF) as usize;
        let m = ((ud >> 32) & 0xFF) as usize;
        let sub = (ud >> 40) & 0xFF;
        let Some(mut s) = self.sync_slots[sid] else {
            return;
        };
        let t = s.target as usize;
        let bytes = s.step.sectors * SECTOR_SIZE as u64;
        let ok = result as i64 == bytes as i64;
        if let Some(a) = self.arrays[t].as_mut() {
            let role = &mut a.roles[m];
            role.in_flight = role.in_flight.saturating_sub(1);
            if ok {
                role.counters.ios += 1;
                role.counters.bytes += bytes;
            } else {
                if sub == STEP_WRITE {
                    role.counters.write_errors += 1;
                } else {
                    role.counters.read_errors += 1;
                }
                tracing::warn!(lun = %a.label, member = m, lba = s.step.lba, result, "sync I/O failed");
                a.fail_role(
                    m,
                    if sub == STEP_WRITE {
                        "write error during sync"
                    } else {
                        "read error during sync"
                    },
                );
                s.failed = true;
            }
        }
        s.pending = s.pending.saturating_sub(1);
        self.sync_slots[sid] = Some(s);
        if s.pending > 0 {
            return;
        }
        // Reads done: compare and/or write.
        if !s.writing && !s.failed {
            let mut write_to = s.step.target;
            if let Some(_c) = s.step.compare {
                // SAFETY: both step buffers hold `bytes` bytes just read.
                let (a, b) = unsafe {
                    (
                        std::slice::from_raw_parts(self.sync_buf(sid, false), bytes as usize),
                        std::slice::from_raw_parts(self.sync_buf(sid, true), bytes as usize),
                    )
                };
                let differ = a != b;
                if let Some(job) = self.arrays[t].as_mut().and_then(|a| a.sync.as_mut()) {
                    job.compared += 1;
                    if differ {
                        job.mismatches += 1;
                        if matches!(job.kind, SyncKind::Scrub { repair: true }) {
                            write_to = s.step.compare;
                        }
                    }
                }
                if differ {
                    tracing::warn!(
                        lun = t,
                        lba = s.step.lba,
                        sectors = s.step.sectors,
                        "scrub: the copies differ"
                    );
                }
            }
            if let Some((w, wsector)) = write_to {
                if let Some(slot) = self.sync_slots[sid].as_mut() {
                    slot.writing = true;
                    slot.pending = 1;
                }
                let buf = self.sync_buf(sid, false);
                let flags = libc::RWF_DSYNC;
                self.member_io(
                    t,
                    w,
                    wsector,
                    buf,
                    bytes as u32,
                    true,
                    flags,
                    sync_ud(sid, w, STEP_WRITE),
                );
                return;
            }
        }
        // Step done.
        self.in_flight -= 1;
        self.sync_slots[sid] = None;
        let pseudo = (self.slots.len() + sid) as u32;
        self.order_done(pseudo);
        let Some(a) = self.arrays[t].as_mut() else {
            return;
        };
        let Some(job) = a.sync.as_mut() else {
            return;
        };
        job.finished_step(s.job_step, if s.failed { 0 } else { bytes });
        let cp = job.checkpoint();
        let kind = job.kind;
        if kind == SyncKind::Rebuild {
            a.set_checkpoint(cp);
        }
        if kind == SyncKind::Resync {
            let region = a.intent.region_sectors();
            let mut at = self.pace[t].cleared_below;
            while at + region <= cp {
                a.intent.synced(at);
                at += region;
            }
            self.pace[t].cleared_below = at;
        }
        self.publish_health(t);
        self.pump_sync(t);
    }

    /// Ends the job of array `t` and records what it achieved.
    fn finish_job(&mut self, t: usize) {
        let Some(a) = self.arrays[t].as_mut() else {
            return;
        };
        let Some(job) = a.sync.take() else {
            return;
        };
        let secs = job.bytes as f64 / job.rate().max(1.0);
        match job.kind {
            SyncKind::Rebuild => {
                let mut finished = 0;
                for r in a.roles.iter_mut() {
                    if r.state == RoleState::Recovering && r.dev.is_some() {
                        r.state = RoleState::Active;
                        finished += 1;
                    }
                }
                a.set_checkpoint(0);
                if job.unrecoverable > 0 {
                    a.lost = true;
                }
                tracing::info!(lun = %a.label, members = finished, bytes = job.bytes, seconds = format!("{secs:.1}"), rate_mib_s = format!("{:.1}", job.rate() / 1048576.0), unrecoverable = job.unrecoverable, "rebuild finished");
                if let Err(e) = a.commit("rebuild finished") {
                    tracing::error!(lun = %a.label, error = %e, "could not record the rebuild");
                }
            }
            SyncKind::Resync => {
                let was_init = a.initing;
                a.initing = false;
                self.pace[t].cleared_below = 0;
                tracing::info!(lun = %a.label, bytes = job.bytes, seconds = format!("{secs:.1}"), rate_mib_s = format!("{:.1}", job.rate() / 1048576.0), remaining_dirty = a.intent.dirty_count(), "{}", if was_init { "initial sync finished" } else { "resync finished" });
                if let Err(e) = a.persist_bitmap() {
                    tracing::error!(lun = %a.label, error = %e, "bitmap update failed");
                }
                if was_init {
                    if let Err(e) = a.commit("initial sync finished") {
                        tracing::error!(lun = %a.label, error = %e, "could not record the sync");
                    }
                }
            }
            SyncKind::Scrub { repair } => {
                tracing::info!(lun = %a.label, compared = job.compared, mismatches = job.mismatches, repaired = repair, "scrub finished");
                a.last_scrub = Some((job.compared, job.mismatches, repair));
            }
        }
        self.publish_health(t);
    }
}

fn array_note_client(p: &mut ArrayPace) {
    p.client_ios += 1;
}

/// The member sector of `piece` on member `m`.
fn member_sector(piece: &Piece, m: usize) -> u64 {
    piece
        .copies
        .iter()
        .find(|(c, _)| *c == m)
        .map_or(piece.copies[0].1, |(_, s)| *s)
}

/// Compile-time check that step buffers fit the slot pool.
const _: () = assert!(SYNC_SLOTS >= MAX_STEPS);
