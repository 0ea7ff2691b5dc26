//! RAID-10 LUNs in the worker: a client request becomes member I/Os on the worker's
//! io_uring (reads from one copy, chosen by fewest in flight; writes to every live copy),
//! member errors are retried, repaired or turned into a failed member, and the background
//! sync jobs (rebuild, resync, scrub) run as throttled steps ordered against client writes.

use super::{Extent, Op, Worker, UD_RAID, UD_SYNC};
use crate::store::raid10::{Array, Fault, Piece, RoleState, Step, SyncKind, MAX_STEPS};
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

/// User-data bits 48..55 of member I/O: the generation of the role's disk at submission.
const GEN_SHIFT: u32 = 48;

/// The role generation a member I/O was issued under.
fn ud_generation(ud: u64) -> u8 {
    (ud >> GEN_SHIFT) as u8
}

/// Member I/Os one client request may need at most.
const SUBS: usize = 80;
const _: () = assert!(SUBS >= crate::store::raid10::MAX_MEMBERS && SUBS >= 2 * 33);

/// Sync steps in flight across all arrays of a worker (each owns two step buffers).
pub const SYNC_SLOTS: usize = 8;

/// A member I/O held by an injected hang.
#[derive(Debug, Clone, Copy)]
pub struct HeldIo {
    target: u16,
    member: u8,
    /// The read or write (`None`: a flush).
    io: Option<super::merge::MemberIo>,
    ud: u64,
}

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
    /// The source read failed.
    pub source_failed: bool,
    /// The compare read failed (scrub).
    pub compare_failed: bool,
    /// The write failed.
    pub write_failed: bool,
    /// A resync step copies the other way (its first copy did not read).
    pub reversed: bool,
    /// Phase: reading (source/compare) or writing.
    pub writing: bool,
    /// The member and sector the write went to.
    pub written_to: (usize, u64),
    /// The job the step belongs to.
    pub job_id: u32,
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
    /// Lets the I/O held by a hang on role `member` of target `t` (every role: `None`) go:
    /// if the role still has the same disk it is submitted now; if the disk was replaced in
    /// the meantime, it completes at once as the old disk's late error, which the role's
    /// generation must fence off (it must not fail the new disk).
    pub(super) fn release_held(&mut self, t: Option<usize>, member: Option<usize>) {
        let mut i = 0;
        while i < self.held.len() {
            let h = self.held[i];
            let hit = t.is_none_or(|t| t == h.target as usize)
                && member.is_none_or(|m| m == h.member as usize);
            if !hit {
                i += 1;
                continue;
            }
            self.held.swap_remove(i);
            let same = self.arrays[h.target as usize].as_ref().is_some_and(|a| {
                a.roles[h.member as usize].generation == ud_generation(h.ud)
                    && a.roles[h.member as usize].dev.is_some()
            });
            match (same, h.io) {
                (true, Some(io)) => self.member_pending.push(io),
                (true, None) => {
                    let fd = self.arrays[h.target as usize]
                        .as_ref()
                        .and_then(|a| a.roles[h.member as usize].dev.as_ref())
                        .map(|d| d.fd());
                    if let Some(fd) = fd {
                        let sqe = opcode::Fsync::new(types::Fd(fd))
                            .flags(types::FsyncFlags::DATASYNC)
                            .build()
                            .user_data(h.ud);
                        self.push_sqe(sqe);
                    }
                }
                // The old disk's late answer is an error, as a dying disk's is.
                (false, _) => self.synthetic.push((h.ud, -libc::EIO)),
            }
        }
    }

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
        let ud = ud | (u64::from(role.generation) << GEN_SHIFT);
        let injected = role.fault_hits(write, sector, bytes);
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
        if role.hangs(sector, bytes) {
            self.held.push(HeldIo {
                target: t as u16,
                member: member as u8,
                io: Some(io),
                ud,
            });
            return;
        }
        // Held to the end of the batch, where contiguous member I/Os are merged.
        self.member_pending.push(io);
    }

    fn member_flush(&mut self, t: usize, member: usize, ud: u64) {
        let Some(array) = self.arrays[t].as_mut() else {
            return;
        };
        let role = &mut array.roles[member];
        role.in_flight += 1;
        let ud = ud | (u64::from(role.generation) << GEN_SHIFT);
        match (&role.dev, role.fault) {
            (None, _) => self.synthetic.push((ud, -libc::ENODEV)),
            (Some(_), Fault::Hang) => self.held.push(HeldIo {
                target: t as u16,
                member: member as u8,
                io: None,
                ud,
            }),
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
        // A request of 255 sectors over 8-sector chunks is at most 33 pieces of 2 copies; a
        // flush touches every member (at most MAX_MEMBERS).
        let mut subs = [(0usize, 0usize, 0u64, 0usize, 0u32); SUBS];
        let mut n = 0;
        let mut lost = false;
        let mut unreadable = false;
        let mut heal = None;
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
                                // A writable copy listed bad here is healed from this read.
                                if heal.is_none() {
                                    heal = piece
                                        .copies
                                        .iter()
                                        .find(|(c, cs)| {
                                            *c != m
                                                && array.writable(*c)
                                                && array.roles[*c].bad.overlaps(*cs, piece.sectors)
                                        })
                                        .map(|(c, _)| (*c, i));
                                }
                            }
                            _ => unreadable = true,
                        }
                    }
                }
            }
            Op::Flush => {
                for m in 0..array.roles.len() {
                    if array.writable(m) && n < subs.len() {
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
        if unreadable {
            if let Some(a) = self.arrays[t].as_ref() {
                tracing::warn!(lun = %a.label, lba = s.lba, count = s.count, "no readable copy of some sector: answering ATA UNC");
            }
        }
        let st = &mut self.slots[slot as usize];
        st.pending = n as u16;
        st.piece_ok = 0;
        (st.bad, st.rewrite_piece) = match heal {
            Some((c, i)) => (c as u8 + 1, i as u8),
            None => (0, 0),
        };
        st.short_retried = false;
        st.failed = lost || unreadable;
        if n == 0 {
            let failed = st.failed;
            return self.raid_finish(slot, !failed);
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
        // Bits 40..43: the sub-operation; 44..47: the attempt (0, or 1 on the other copy).
        let sub_field = (ud >> 40) & 0xFF;
        let sub = sub_field & 0xF;
        let attempt = sub_field >> 4;
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
        // A completion of I/O issued to a disk that has since left the role: it proves
        // nothing about the role's current disk and must not act on it.
        let stale = array.roles[m].generation != ud_generation(ud);
        {
            let role = &mut array.roles[m];
            role.in_flight = role.in_flight.saturating_sub(1);
        }
        // A short transfer is retried once (whole, which is idempotent), then is an error.
        if !stale && sub != SUB_FLUSH && (0..expected).contains(&result) && !s.short_retried {
            self.slots[slot as usize].short_retried = true;
            tracing::warn!(lun = %array.label, member = m, lba = s.lba, result, expected, "short member transfer: retrying it once");
            return self.raid_reissue(slot, piece_index, m, sub_field, piece);
        }
        let ok = !stale
            && match sub {
                SUB_FLUSH => result == 0,
                _ => result == expected,
            };
        count_member_io(&mut array.roles[m].counters, sub, result, ok, s.submitted);
        if stale {
            tracing::debug!(lun = %array.label, member = m, "completion of a disk that left the role: ignored");
        }
        // O_DIRECT refusing the alignment: once per member, then the page cache.
        if !stale && result == -libc::EINVAL && sub != SUB_FLUSH {
            if let Some(dev) = array.roles[m].dev.as_mut() {
                if dev.is_direct() {
                    dev.buffered_only = true;
                    self.stats.direct_fallbacks += 1;
                    tracing::warn!(lun = %array.label, disk = dev.disk, "O_DIRECT refuses this I/O size here: member I/O goes through the page cache");
                    return self.raid_reissue(slot, piece_index, m, sub_field, piece);
                }
            }
        }
        if !ok && !stale {
            tracing::warn!(lun = %array.label, member = m, lba = s.lba, result, sub, "member I/O failed");
            fail_if_shrunk(array, m);
        }
        match sub {
            SUB_READ => {
                if ok {
                    self.slots[slot as usize].piece_ok |= 1 << piece_index;
                } else if let Some(piece) = piece {
                    // A read error never fails a member by itself (md): the other copy
                    // answers and the bad one is rewritten from it.
                    let st = &mut self.slots[slot as usize];
                    if st.bad == 0 && !stale {
                        st.bad = m as u8 + 1;
                        st.rewrite_piece = piece_index as u8;
                    }
                    // Each piece has two copies: the second attempt is the last.
                    let other = if attempt == 0 {
                        array.pick_read(&piece, Some(m))
                    } else {
                        None
                    };
                    match other {
                        Some(other) => {
                            self.slots[slot as usize].pending += 1;
                            let retry = SUB_READ | (1 << 4);
                            self.raid_reissue(slot, piece_index, other, retry, Some(piece));
                        }
                        None => {
                            self.slots[slot as usize].failed = true;
                            tracing::error!(lun = %array.label, lba = piece.array_lba, sectors = piece.sectors, "no other copy can be read: answering ATA UNC for this request");
                        }
                    }
                }
            }
            SUB_WRITE => {
                if ok {
                    self.slots[slot as usize].piece_ok |= 1 << piece_index;
                    if let Some(piece) = piece {
                        clear_bad(array, m, &piece);
                    }
                } else if let (false, Some(piece)) = (stale, piece) {
                    // The member missed a write: it must never be read there again.
                    member_write_failed(array, m, &piece, "write error");
                }
            }
            SUB_FLUSH if !ok && !stale => {
                if array.only_copy(m) {
                    self.slots[slot as usize].failed = true;
                } else {
                    array.fail_role(m, "flush error");
                }
            }
            SUB_REWRITE => {
                if let (true, Some(piece)) = (ok, piece) {
                    array.roles[m].counters.corrected += 1;
                    clear_bad(array, m, &piece);
                    tracing::info!(lun = %array.label, member = m, lba = s.lba, "member range rewritten from the other copy");
                } else if let (false, Some(piece)) = (stale, piece) {
                    member_write_failed(array, m, &piece, "the rewrite from the other copy failed");
                }
                self.order_done(slot);
            }
            _ => {}
        }
        let st = &mut self.slots[slot as usize];
        debug_assert!(st.pending > 0, "completion without a pending member I/O");
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
        if s.op == Op::Read
            && success
            && st.bad != 0
            && sub != SUB_REWRITE
            && self.start_rewrite(slot)
        {
            return;
        }
        self.raid_finish(slot, success);
    }

    /// After a read that was served from the other copy, rewrites the copy that failed (or
    /// that the bad-block list excluded) with the good data, ordered against writes to the
    /// same sectors. Returns false when there is nothing to do (the reply goes out at once).
    fn start_rewrite(&mut self, slot: u32) -> bool {
        let st = self.slots[slot as usize];
        let t = st.target as usize;
        let bad = st.bad as usize - 1;
        let Some(array) = self.arrays[t].as_ref() else {
            return false;
        };
        let Some(piece) = array
            .layout()
            .pieces(st.lba, st.count as u64)
            .and_then(|mut p| p.nth(st.rewrite_piece as usize))
        else {
            return false;
        };
        if !array.writable(bad) || !piece.copies.iter().any(|(c, _)| *c == bad) {
            return false;
        }
        let extent = Extent {
            lun: t as u16,
            lba: piece.array_lba,
            count: piece.sectors as u32,
        };
        if !self.order.try_admit(slot, extent) {
            // A write to these sectors is in flight: it rewrites the member itself (or
            // fails it).
            tracing::debug!(lun = t, "rewrite skipped: a write covers the region");
            return false;
        }
        self.in_flight += 1;
        self.slots[slot as usize].pending = 1;
        let at = ((piece.array_lba - st.lba) as usize) * SECTOR_SIZE;
        // SAFETY: inside the slot's data area, as for the read.
        let buf = unsafe { self.slab.frame_ptr(slot as usize).add(ATA_DATA_OFFSET + at) };
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
        true
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
        let sub = sub & 0xF;
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
            // SMART: a member with bad sectors is a threshold exceeded as much as a missing one.
            let degraded = a.degraded() || a.lost || a.bad_sectors() > 0;
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
            // A disk cut short under the shelf is failed before it can serve what lies past
            // its new end.
            for m in 0..a.roles.len() {
                if a.writable(m) {
                    fail_if_shrunk(a, m);
                }
            }
            let resyncing =
                a.resync_owed || a.sync.as_ref().is_some_and(|j| j.kind == SyncKind::Resync);
            if !resyncing && tick % super::TICKS_PER_SECOND == 0 {
                // Write-back: the data a region's bit protects must be stable before the bit
                // goes, or a power cut would lose writes that no resync knows about.
                if !self.targets[t].writethrough && a.intent.dirty_count() > 0 {
                    flush_members(a);
                }
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
            let job_id = job.id;
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
                source_failed: false,
                compare_failed: false,
                write_failed: false,
                reversed: false,
                writing: false,
                written_to: (0, 0),
                job_id,
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
        if let Some(a) = self.arrays[t].as_mut() {
            let stale = a.roles[m].generation != ud_generation(ud);
            let ok = !stale && result as i64 == bytes as i64;
            let role = &mut a.roles[m];
            role.in_flight = role.in_flight.saturating_sub(1);
            if ok {
                role.counters.ios += 1;
                role.counters.bytes += bytes;
            } else if !stale {
                if sub == STEP_WRITE {
                    role.counters.write_errors += 1;
                } else {
                    role.counters.read_errors += 1;
                }
                tracing::warn!(lun = %a.label, member = m, lba = s.step.lba, result, "sync I/O failed");
                fail_if_shrunk(a, m);
            }
            if !ok {
                match sub {
                    STEP_READ => s.source_failed = true,
                    STEP_COMPARE => s.compare_failed = true,
                    _ => s.write_failed = true,
                }
            }
            if sub == STEP_WRITE && !stale {
                let (w, wsector) = s.written_to;
                if ok {
                    let role = &mut a.roles[w];
                    if !role.bad.is_empty() {
                        role.bad.clear(wsector, s.step.sectors);
                    }
                } else if a.only_copy(w) {
                    a.record_bad(w, wsector, s.step.sectors, "write error during sync");
                } else {
                    a.fail_role(w, "write error during sync");
                }
            }
        }
        s.pending = s.pending.saturating_sub(1);
        self.sync_slots[sid] = Some(s);
        if s.pending > 0 {
            return;
        }
        if !s.writing && self.sync_after_reads(sid, s) {
            return;
        }
        self.sync_step_done(sid, s);
    }

    /// Both reads of step `sid` are in: decides what to write (rebuild target, resync copy,
    /// scrub repair), or retries a resync in the other direction. Returns true when more I/O
    /// was started for the step.
    fn sync_after_reads(&mut self, sid: usize, mut s: SyncSlot) -> bool {
        let t = s.target as usize;
        let bytes = s.step.sectors * SECTOR_SIZE as u64;
        let Some(a) = self.arrays[t].as_mut() else {
            return false;
        };
        // A step of a job that was replaced writes nothing.
        let kind = a.sync.as_ref().filter(|j| j.id == s.job_id).map(|j| j.kind);
        let mut write = None;
        match kind {
            Some(SyncKind::Scrub { repair }) => match (s.source_failed, s.compare_failed) {
                (false, false) => {
                    // SAFETY: both step buffers hold `bytes` bytes just read.
                    let differ = unsafe {
                        std::slice::from_raw_parts(self.sync_buf(sid, false), bytes as usize)
                            != std::slice::from_raw_parts(self.sync_buf(sid, true), bytes as usize)
                    };
                    if let Some(job) = self.arrays[t].as_mut().and_then(|a| a.sync.as_mut()) {
                        job.compared += 1;
                        if differ {
                            job.mismatches += 1;
                        }
                    }
                    if differ {
                        tracing::warn!(
                            lun = t,
                            lba = s.step.lba,
                            sectors = s.step.sectors,
                            "scrub: the copies differ"
                        );
                        if repair {
                            write = s.step.compare.map(|c| (c, false));
                        }
                    }
                }
                // A scrub read error is repaired from the other copy, never a failure.
                (true, false) => write = Some((s.step.source, true)),
                (false, true) => write = s.step.compare.map(|c| (c, false)),
                (true, true) => {
                    tracing::error!(
                        lun = t,
                        lba = s.step.lba,
                        sectors = s.step.sectors,
                        "scrub: neither copy can be read"
                    )
                }
            },
            Some(SyncKind::Resync) if s.source_failed => {
                if let (false, Some(target)) = (s.reversed, s.step.target) {
                    // The first copy cannot be read: copy the other way instead.
                    s.reversed = true;
                    s.source_failed = false;
                    s.step.target = Some(s.step.source);
                    s.step.source = target;
                    self.sync_slots[sid] = Some(s);
                    self.in_flight -= 1;
                    self.sync_read(sid);
                    return true;
                }
                tracing::error!(
                    lun = t,
                    lba = s.step.lba,
                    sectors = s.step.sectors,
                    "resync: neither copy can be read"
                );
            }
            Some(SyncKind::Rebuild) if s.source_failed => {
                // The last in-sync copy did not read: it stays in service, and the range is
                // listed bad on the rebuilt member (never served from it unwritten).
                if let Some((r, sector)) = s.step.target {
                    a.roles[r].bad.add(sector, s.step.sectors);
                    if let Some(j) = a.sync.as_mut() {
                        j.unreadable_sectors += s.step.sectors;
                    }
                    tracing::error!(lun = %a.label, lba = s.step.lba, sectors = s.step.sectors, role = r, "rebuild: the source cannot read this range: listed bad on the new member, the rebuild goes on");
                }
            }
            Some(_) => write = s.step.target.map(|c| (c, false)),
            None => {}
        }
        let Some(((w, wsector), from_second)) = write else {
            return false;
        };
        s.writing = true;
        s.pending = 1;
        s.written_to = (w, wsector);
        self.sync_slots[sid] = Some(s);
        let buf = self.sync_buf(sid, from_second);
        self.member_io(
            t,
            w,
            wsector,
            buf,
            bytes as u32,
            true,
            libc::RWF_DSYNC,
            sync_ud(sid, w, STEP_WRITE),
        );
        true
    }

    /// Step `sid` is finished: frees it, moves the job's checkpoint (only if the step belongs
    /// to the running job) and plans more.
    fn sync_step_done(&mut self, sid: usize, s: SyncSlot) {
        let t = s.target as usize;
        let bytes = s.step.sectors * SECTOR_SIZE as u64;
        self.in_flight -= 1;
        self.sync_slots[sid] = None;
        let pseudo = (self.slots.len() + sid) as u32;
        self.order_done(pseudo);
        let Some(a) = self.arrays[t].as_mut() else {
            return;
        };
        let Some(job) = a.sync.as_mut().filter(|j| j.id == s.job_id) else {
            // A step of a job that was replaced (a disk added restarts the rebuild): its
            // result belongs to nobody now.
            self.pump_sync(t);
            return;
        };
        let failed = s.source_failed || s.compare_failed || s.write_failed;
        job.finished_step(s.job_step, if failed { 0 } else { bytes });
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
                tracing::info!(lun = %a.label, members = finished, bytes = job.bytes, seconds = format!("{secs:.1}"), rate_mib_s = format!("{:.1}", job.rate() / 1048576.0), unrecoverable = job.unrecoverable, unreadable_sectors = job.unreadable_sectors, bad_sectors = a.bad_sectors(), "rebuild finished");
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

/// Counts one completed member I/O of a client request.
fn count_member_io(
    c: &mut crate::store::raid10::MemberCounters,
    sub: u64,
    result: i32,
    ok: bool,
    submitted: u64,
) {
    let took = crate::metrics::monotonic_ns().saturating_sub(submitted);
    let moved = result.max(0) as u64;
    if sub == SUB_READ {
        c.read_latency.record(took);
        c.read_bytes += moved;
    } else {
        c.write_latency.record(took);
        c.written_bytes += moved;
    }
    if ok {
        c.ios += 1;
        c.bytes += moved;
    } else if sub == SUB_READ {
        c.read_errors += 1;
    } else {
        c.write_errors += 1;
    }
}

/// Fails member `m` if its disk shrank below what the array needs (a file cut short, a
/// device resized): what it would return past its new end is not the array's data.
fn fail_if_shrunk(array: &mut Array, m: usize) -> bool {
    let sectors = array.member_sectors();
    let shrunk = array.roles[m]
        .dev
        .as_ref()
        .is_some_and(|d| d.shrank_below(sectors));
    if shrunk {
        array.fail_role(m, "the disk shrank below the array's member size");
    }
    shrunk
}

/// A write to member `m` of `piece` failed: the member no longer holds those sectors. It is
/// failed, unless it holds the only in-sync copy of some data: then only the range is
/// listed bad (reads of it answer UNC) and everything else keeps being served.
fn member_write_failed(array: &mut Array, m: usize, piece: &Piece, why: &str) {
    if array.only_copy(m) {
        array.record_bad(m, member_sector(piece, m), piece.sectors, why);
    } else {
        array.fail_role(m, why);
    }
}

/// Member `m` now holds `piece`'s data: takes the range off its bad-block list.
fn clear_bad(array: &mut Array, m: usize, piece: &Piece) {
    let role = &mut array.roles[m];
    if !role.bad.is_empty() && role.bad.clear(member_sector(piece, m), piece.sectors) {
        tracing::info!(lun = %array.label, member = m, lba = piece.array_lba, "bad range rewritten: readable again");
    }
}

/// Makes every live member's written data stable (write-back arrays, before bits clear).
fn flush_members(array: &mut Array) {
    for m in 0..array.roles.len() {
        if !array.writable(m) {
            continue;
        }
        let res = array.roles[m].dev.as_ref().map(|d| d.sync_data());
        if let Some(Err(e)) = res {
            tracing::error!(lun = %array.label, member = m, error = %e, "flush before clearing the write-intent bitmap failed");
            if !array.only_copy(m) {
                array.fail_role(m, "flush error");
            }
        }
    }
}
