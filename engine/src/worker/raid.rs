//! RAID-10 LUNs in the worker: the I/O side of the array policy. The request and sync-step
//! state machines (`store::raid10::{request, step}`) decide; this file turns their member
//! I/Os into io_uring submissions (or injected faults), feeds the completions back, admits
//! rewrites and steps to the write order, paces the background jobs and persists their
//! progress.

use super::{Extent, Op, Worker, UD_RAID, UD_SYNC};
use crate::store::raid10::{
    Completion, MemberOp, OpKind, Progress, Request, RequestKind, StepNext, StepOp, StepOpKind,
    StepPlan, StepState, SyncKind, MAX_STEPS,
};
use crate::wire::{ATA_DATA_OFFSET, SECTOR_SIZE};
use io_uring::{opcode, types};

/// User-data bits 48..55 of member I/O: the generation of the role's disk at submission.
const GEN_SHIFT: u32 = 48;
/// Bit 44: a read's second attempt (client) or the second step buffer (sync).
const FLAG_SHIFT: u32 = 44;

/// Sync steps in flight across all arrays of a worker (each owns two step buffers).
pub const SYNC_SLOTS: usize = 8;

/// Packs a member I/O of the client request in `slot` into io_uring user data.
fn raid_ud(slot: u32, op: &MemberOp) -> u64 {
    UD_RAID
        | slot as u64
        | (u64::from(op.piece) << 24)
        | (u64::from(op.member) << 32)
        | ((op.kind as u64) << 40)
        | (u64::from(op.retry) << FLAG_SHIFT)
        | (u64::from(op.generation) << GEN_SHIFT)
}

/// The slot and the op (kind, piece, member, attempt, generation) of client member I/O.
fn raid_op(ud: u64) -> Option<(u32, MemberOp)> {
    let kind = OpKind::from_code(((ud >> 40) & 0xF) as u8)?;
    Some((
        (ud & 0xFF_FFFF) as u32,
        MemberOp {
            kind,
            piece: (ud >> 24) as u8,
            member: (ud >> 32) as u8,
            retry: (ud >> FLAG_SHIFT) & 1 == 1,
            sector: 0,
            at: 0,
            bytes: 0,
            generation: (ud >> GEN_SHIFT) as u8,
        },
    ))
}

fn sync_ud(sid: usize, op: &StepOp) -> u64 {
    UD_SYNC
        | sid as u64
        | (u64::from(op.member) << 32)
        | ((op.kind as u64) << 40)
        | (u64::from(op.second_buffer) << FLAG_SHIFT)
        | (u64::from(op.generation) << GEN_SHIFT)
}

fn sync_op(ud: u64) -> Option<(usize, StepOp)> {
    let kind = StepOpKind::from_code(((ud >> 40) & 0xF) as u8)?;
    Some((
        (ud & 0xFF) as usize,
        StepOp {
            kind,
            member: (ud >> 32) as u8,
            sector: 0,
            bytes: 0,
            second_buffer: (ud >> FLAG_SHIFT) & 1 == 1,
            generation: (ud >> GEN_SHIFT) as u8,
        },
    ))
}

/// A sync step in flight: its array and its state.
#[derive(Debug, Clone, Copy)]
pub struct SyncSlot {
    /// Owning target.
    pub target: u16,
    /// The step.
    pub state: StepState,
}

/// Per-array bookkeeping the worker keeps beside the array.
#[derive(Debug, Clone, Default)]
pub struct ArrayPace {
    /// Sync bytes still allowed in this tick.
    pub budget: i64,
    /// Client I/Os since the last tick (the job backs off to the minimum rate).
    pub client_ios: u64,
    /// Ticks since the rebuild checkpoint was last persisted.
    pub since_checkpoint: u32,
    /// A bitmap write of this array is with the metadata writer.
    pub bitmap_in_flight: bool,
    /// Another bitmap write is wanted once that one is done.
    pub bitmap_again: bool,
    /// Client writes waiting for their regions' mark (slots).
    pub bitmap_waiting: Vec<u32>,
}

/// A member I/O held by an injected hang.
#[derive(Debug, Clone, Copy)]
pub struct HeldIo {
    target: u16,
    member: u8,
    /// The read or write (`None`: a flush).
    io: Option<super::merge::MemberIo>,
    ud: u64,
}

impl Worker {
    /// Whether target `t` is a RAID-10 LUN.
    pub(super) fn is_raid(&self, t: u16) -> bool {
        self.arrays.get(t as usize).is_some_and(Option::is_some)
    }

    /// Queues one member read or write at `buf`, or makes up its completion when a fault
    /// is injected on the member (EIO, or held by a hang).
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
        match (&role.dev, role.fault) {
            (None, _) => self.synthetic.push((ud, -libc::ENODEV)),
            (Some(_), crate::store::raid10::Fault::Hang) => self.held.push(HeldIo {
                target: t as u16,
                member: member as u8,
                io: None,
                ud,
            }),
            (Some(_), _) if role.fault_hits(true, 0, 0) => self.synthetic.push((ud, -libc::EIO)),
            (Some(dev), _) => {
                let sqe = opcode::Fsync::new(types::Fd(dev.fd()))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(ud);
                self.push_sqe(sqe);
            }
        }
    }

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
            let role = self.arrays[h.target as usize]
                .as_ref()
                .map(|a| &a.roles[h.member as usize]);
            let fd = role
                .filter(|r| r.generation == (h.ud >> GEN_SHIFT) as u8)
                .and_then(|r| r.dev.as_ref())
                .map(|d| d.fd());
            match (fd, h.io) {
                (Some(_), Some(io)) => self.member_pending.push(io),
                (Some(fd), None) => {
                    let sqe = opcode::Fsync::new(types::Fd(fd))
                        .flags(types::FsyncFlags::DATASYNC)
                        .build()
                        .user_data(h.ud);
                    self.push_sqe(sqe);
                }
                // The old disk's late answer is an error, as a dying disk's is.
                (None, _) => self.synthetic.push((h.ud, -libc::EIO)),
            }
        }
    }

    /// Starts the member I/O of an admitted client request in `slot`.
    pub(super) fn raid_submit(&mut self, slot: u32) {
        let s = self.slots[slot as usize];
        let t = s.target as usize;
        let kind = match s.op {
            Op::Read => RequestKind::Read,
            Op::Write => RequestKind::Write,
            Op::Flush => RequestKind::Flush,
            Op::Idle => return,
        };
        let Some(array) = self.arrays[t].as_mut() else {
            return;
        };
        // A write into a region not yet durably marked dirty waits for the metadata writer
        // (the mark reaches every member before the data; the worker never waits for it).
        // (With no member left to write, the request goes on and fails there.)
        if kind == RequestKind::Write
            && (0..array.roles.len()).any(|m| array.writable(m))
            && array.intent.needs_mark(s.lba, s.count as u64)
        {
            array.intent.hold(s.lba, s.count as u64);
            self.pace[t].bitmap_waiting.push(slot);
            self.queue_bitmap(t);
            return;
        }
        self.raid_start(slot, kind);
    }

    /// Starts the request in `slot` on its array (its bitmap mark, if it needed one, is down
    /// or could not be written anywhere).
    fn raid_start(&mut self, slot: u32, kind: RequestKind) {
        let s = self.slots[slot as usize];
        let t = s.target as usize;
        let Some(array) = self.arrays[t].as_mut() else {
            return;
        };
        self.pace[t].client_ios += 1;
        let durable = self.targets[t].writethrough;
        let mut req = Request::new(kind, s.lba, s.count, durable);
        let mut ops = std::mem::take(&mut self.raid_ops);
        let progress = array.start_request(&mut req, &mut ops);
        self.slots[slot as usize].raid = req;
        if progress == Progress::Waiting {
            self.in_flight += 1;
            self.issue_member_ops(slot, &ops);
        }
        self.raid_ops = ops;
        if let Progress::Done { success } = progress {
            self.raid_finish(slot, success);
        }
    }

    /// Sends target `t`'s array's current bitmap to the metadata writer (or asks for another
    /// write once the one in flight is done).
    pub(super) fn queue_bitmap(&mut self, t: usize) {
        if self.pace[t].bitmap_in_flight {
            self.pace[t].bitmap_again = true;
            return;
        }
        let Some(a) = self.arrays[t].as_mut() else {
            return;
        };
        let job = a.bitmap_job(false);
        let uuid = a.uuid();
        self.pace[t].bitmap_in_flight = true;
        self.pace[t].bitmap_again = false;
        self.meta.send(t as u16, uuid, job);
    }

    /// Applies finished bitmap writes and lets the writes that waited for them go.
    pub(super) fn bitmap_writes_done(&mut self) {
        for (t, uuid, done) in self.meta.finished() {
            let t = t as usize;
            let Some(a) = self.arrays.get_mut(t).and_then(Option::as_mut) else {
                continue;
            };
            if a.uuid() != uuid {
                continue; // the array was replaced meanwhile
            }
            a.bitmap_done(&done);
            // Written nowhere (no member could take it): the writes go on without waiting
            // again, and the array's own checks fail them or record the failure.
            let nowhere = !done.superseded && done.written_to == 0;
            self.pace[t].bitmap_in_flight = false;
            let waiting = std::mem::take(&mut self.pace[t].bitmap_waiting);
            for slot in waiting {
                let s = self.slots[slot as usize];
                if let Some(a) = self.arrays[t].as_mut() {
                    a.intent.unhold(s.lba, s.count as u64);
                }
                if nowhere {
                    self.raid_start(slot, RequestKind::Write);
                } else {
                    self.raid_submit(slot);
                }
            }
            if self.pace[t].bitmap_again && !self.pace[t].bitmap_in_flight {
                self.queue_bitmap(t);
            }
            self.publish_health(t);
        }
    }

    /// Submits member ops of the request in `slot`.
    fn issue_member_ops(&mut self, slot: u32, ops: &[MemberOp]) {
        let t = self.slots[slot as usize].target as usize;
        let writethrough = self.targets[t].writethrough;
        // SAFETY: the data area of slot `slot` starts at offset 36 and holds the request's
        // sectors; every op's `at + bytes` lies inside them (the array built it from them).
        let data = unsafe { self.slab.frame_ptr(slot as usize).add(ATA_DATA_OFFSET) };
        for op in ops {
            let ud = raid_ud(slot, op);
            let m = op.member as usize;
            if op.kind == OpKind::Flush {
                self.member_flush(t, m, ud);
                continue;
            }
            let flags = if op.kind == OpKind::Rewrite || (op.kind == OpKind::Write && writethrough)
            {
                libc::RWF_DSYNC
            } else {
                0
            };
            // SAFETY: see above.
            let buf = unsafe { data.add(op.at as usize) };
            self.member_io(t, m, op.sector, buf, op.bytes, op.kind.writes(), flags, ud);
        }
    }

    /// A member I/O of a client request completed.
    pub(super) fn raid_complete(&mut self, ud: u64, result: i32) {
        let Some((slot, op)) = raid_op(ud) else {
            return;
        };
        let s = self.slots[slot as usize];
        let t = s.target as usize;
        let Some(array) = self.arrays[t].as_mut() else {
            return;
        };
        if let Some(role) = array.roles.get_mut(op.member as usize) {
            role.in_flight = role.in_flight.saturating_sub(1);
        }
        let fallbacks = array.direct_fallbacks;
        let took_ns = crate::metrics::monotonic_ns().saturating_sub(s.submitted);
        let mut req = s.raid;
        let mut ops = std::mem::take(&mut self.raid_ops);
        let c = Completion {
            op,
            result,
            took_ns,
        };
        let progress = array.complete_request(&mut req, c, &mut ops);
        self.stats.direct_fallbacks += array.direct_fallbacks - fallbacks;
        self.slots[slot as usize].raid = req;
        self.issue_member_ops(slot, &ops);
        self.raid_ops = ops;
        if op.kind == OpKind::Rewrite && progress != Progress::Waiting {
            self.order_done(slot);
        }
        match progress {
            Progress::Waiting => {}
            Progress::Rewrite(rewrite) => {
                let piece_lba = s.lba + u64::from(rewrite.at) / SECTOR_SIZE as u64;
                let extent = Extent {
                    lun: t as u16,
                    lba: piece_lba,
                    count: rewrite.bytes / SECTOR_SIZE as u32,
                };
                if self.order.try_admit(slot, extent) {
                    self.slots[slot as usize].raid.rewrite_issued();
                    self.issue_member_ops(slot, &[rewrite]);
                } else {
                    // A write to these sectors is in flight: it rewrites the member itself
                    // (or fails it).
                    self.in_flight -= 1;
                    self.raid_finish(slot, true);
                }
            }
            Progress::Done { success } => {
                self.in_flight -= 1;
                self.raid_finish(slot, success);
            }
        }
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

    /// Once per tick: refill budgets, pull in spares, fail shrunk disks, start and pace sync
    /// jobs, clear idle bitmap regions, persist checkpoints.
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
            let writeback = !self.targets[t].writethrough;
            let Some(a) = self.arrays[t].as_mut() else {
                continue;
            };
            // A disk cut short under the shelf is failed before it can serve what lies past
            // its new end.
            for m in 0..a.roles.len() {
                if a.writable(m) {
                    a.fail_if_shrunk(m);
                }
            }
            if tick % super::TICKS_PER_SECOND == 0 && !self.pace[t].bitmap_in_flight {
                if let Some(job) = a.clear_idle_job(tick, 5 * super::TICKS_PER_SECOND, writeback) {
                    self.pace[t].bitmap_in_flight = true;
                    self.meta.send(t as u16, a.uuid(), job);
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
            if self.pace[t].budget <= 0 {
                return;
            }
            let Some(sid) = self.sync_slots.iter().position(Option::is_none) else {
                return;
            };
            let Some(a) = self.arrays[t].as_mut() else {
                return;
            };
            let state = match a.plan_step() {
                StepPlan::Step(state) => state,
                StepPlan::Idle => return,
                StepPlan::Finished => {
                    a.finish_job();
                    self.publish_health(t);
                    return;
                }
            };
            self.pace[t].budget -= (state.step.sectors * SECTOR_SIZE as u64) as i64;
            self.sync_slots[sid] = Some(SyncSlot {
                target: t as u16,
                state,
            });
            let pseudo = (self.slots.len() + sid) as u32;
            let extent = Extent {
                lun: t as u16,
                lba: state.step.lba,
                count: state.step.sectors as u32,
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

    /// Starts step `sid` (admitted to the write order): its reads.
    fn sync_read(&mut self, sid: usize) {
        let Some(mut s) = self.sync_slots[sid] else {
            return;
        };
        let t = s.target as usize;
        let Some(a) = self.arrays[t].as_mut() else {
            return;
        };
        let mut ops = std::mem::take(&mut self.step_ops);
        let next = a.step_reads(&mut s.state, &mut ops);
        self.sync_slots[sid] = Some(s);
        self.in_flight += 1;
        match next {
            StepNext::Done => self.sync_step_done(sid, s),
            _ => self.issue_step_ops(sid, t, &ops),
        }
        self.step_ops = ops;
    }

    /// Step `sid` is over: frees it, lets what waited behind it go, records it.
    fn sync_step_done(&mut self, sid: usize, s: SyncSlot) {
        let t = s.target as usize;
        self.in_flight -= 1;
        self.sync_slots[sid] = None;
        let pseudo = (self.slots.len() + sid) as u32;
        self.order_done(pseudo);
        if let Some(a) = self.arrays[t].as_mut() {
            a.step_done(&s.state);
        }
        self.publish_health(t);
        self.pump_sync(t);
    }

    fn issue_step_ops(&mut self, sid: usize, t: usize, ops: &[StepOp]) {
        for op in ops {
            let write = op.kind == StepOpKind::Write;
            let flags = if write { libc::RWF_DSYNC } else { 0 };
            let buf = self.sync_buf(sid, op.second_buffer);
            let ud = sync_ud(sid, op);
            self.member_io(
                t,
                op.member as usize,
                op.sector,
                buf,
                op.bytes,
                write,
                flags,
                ud,
            );
        }
    }

    /// A member I/O of a sync step completed.
    pub(super) fn sync_complete(&mut self, ud: u64, result: i32) {
        let Some((sid, mut op)) = sync_op(ud) else {
            return;
        };
        let Some(mut s) = self.sync_slots.get(sid).copied().flatten() else {
            return;
        };
        let t = s.target as usize;
        let bytes = (s.state.step.sectors * SECTOR_SIZE as u64) as usize;
        let (first, second) = (self.sync_buf(sid, false), self.sync_buf(sid, true));
        let Some(a) = self.arrays[t].as_mut() else {
            return;
        };
        if let Some(role) = a.roles.get_mut(op.member as usize) {
            role.in_flight = role.in_flight.saturating_sub(1);
        }
        op.sector = s.state.step.sector_on(op.member as usize);
        op.bytes = bytes as u32;
        let differ = || {
            // SAFETY: both step buffers hold `bytes` bytes just read, and nothing writes
            // them while the step waits for this decision.
            unsafe {
                std::slice::from_raw_parts(first, bytes)
                    != std::slice::from_raw_parts(second, bytes)
            }
        };
        let mut ops = std::mem::take(&mut self.step_ops);
        let next = a.step_member_done(&mut s.state, op, result, differ, &mut ops);
        self.sync_slots[sid] = Some(s);
        match next {
            StepNext::Waiting => {}
            StepNext::Issue => self.issue_step_ops(sid, t, &ops),
            StepNext::Done => self.sync_step_done(sid, s),
        }
        self.step_ops = ops;
    }
}

/// Compile-time check that step buffers fit the slot pool.
const _: () = assert!(SYNC_SLOTS >= MAX_STEPS);
