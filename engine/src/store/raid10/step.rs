//! The policy of one background sync step (rebuild, resync, scrub) as a state machine: the
//! step is planned, its reads come out, their completions go in, then its write, and at the
//! end the job's checkpoint moves. Nothing here does I/O (the worker and the simulator do).
//!
//! The rules:
//! - a rebuild whose source cannot read a range lists that range bad on the member being
//!   rebuilt and goes on; the source, the last in-sync copy, is never failed for it;
//! - a resync whose first copy cannot be read copies the other way;
//! - a scrub read error is repaired from the other copy, never a failure;
//! - a write error fails the written member, unless it holds the only in-sync copy of some
//!   data (then the range is listed bad);
//! - a step of a job that was replaced (a disk added restarts the rebuild) touches nothing.

use super::array::{Array, RoleState};
use super::sync::{Step, SyncKind};

/// What one member I/O of a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOpKind {
    /// Read the source copy (into the first buffer).
    Read = 0,
    /// Read the copy to compare with (scrub, into the second buffer).
    Compare = 1,
    /// Write the data read.
    Write = 2,
}

impl StepOpKind {
    /// From the code in `StepOpKind as u8`.
    pub fn from_code(code: u8) -> Option<StepOpKind> {
        Some(match code {
            0 => StepOpKind::Read,
            1 => StepOpKind::Compare,
            2 => StepOpKind::Write,
            _ => return None,
        })
    }
}

/// One member I/O of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOp {
    /// What it does.
    pub kind: StepOpKind,
    /// The member.
    pub member: u8,
    /// Member data sector.
    pub sector: u64,
    /// Bytes.
    pub bytes: u32,
    /// Uses the step's second buffer (the compare copy; a scrub repair written from it).
    pub second_buffer: bool,
    /// The member's disk generation when the op was made.
    pub generation: u8,
}

/// A step in flight.
#[derive(Debug, Clone, Copy)]
pub struct StepState {
    /// The step.
    pub step: Step,
    /// Its index among the job's steps in flight.
    pub job_step: usize,
    /// The job it belongs to.
    pub job_id: u32,
    pending: u8,
    source_failed: bool,
    compare_failed: bool,
    write_failed: bool,
    reversed: bool,
    writing: bool,
}

/// What the planner has for the caller.
#[derive(Debug, Clone, Copy)]
pub enum StepPlan {
    /// A step to run (admit it to the write order, then `step_reads`).
    Step(StepState),
    /// Nothing now: no job, no free step, or the scan limit reached.
    Idle,
    /// The job is done: `finish_job`.
    Finished,
}

/// What to do after a member completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepNext {
    /// More completions are due.
    Waiting,
    /// Issue what was pushed to `ops`, then wait.
    Issue,
    /// The step is over: `step_done`.
    Done,
}

impl Array {
    /// Plans the next step of the running (or owed) job.
    pub fn plan_step(&mut self) -> StepPlan {
        if self.next_job().is_none() {
            return StepPlan::Idle;
        }
        let Some(mut job) = self.sync.take() else {
            return StepPlan::Idle;
        };
        let Some(k) = job.free_step() else {
            self.sync = Some(job);
            return StepPlan::Idle;
        };
        let planned = job.plan(self);
        let job_id = job.id;
        let Some(step) = planned else {
            let done = job.done();
            self.sync = Some(job);
            return if done {
                StepPlan::Finished
            } else {
                StepPlan::Idle
            };
        };
        job.started_step(k, step.lba);
        self.sync = Some(job);
        StepPlan::Step(StepState {
            step,
            job_step: k,
            job_id,
            pending: 0,
            source_failed: false,
            compare_failed: false,
            write_failed: false,
            reversed: false,
            writing: false,
        })
    }

    /// The reads of step `s` (source, and the compare copy for a scrub), pushed to `ops`
    /// (cleared first). The step was planned earlier and may have waited behind client
    /// writes: it is checked against the members as they are now. A rebuild step whose
    /// source is no longer in sync, or lists the range bad, becomes a hole on its target; a
    /// resync or scrub step copies from whichever copy is not listed bad. `Done`: nothing
    /// to do, the step is over.
    pub fn step_reads(&mut self, s: &mut StepState, ops: &mut Vec<StepOp>) -> StepNext {
        ops.clear();
        let len = s.step.sectors;
        let (src, src_sector) = s.step.source;
        let usable = |a: &Array, m: usize, sector: u64| {
            a.roles[m].state == RoleState::Active
                && a.roles[m].dev.is_some()
                && !a.roles[m].bad.overlaps(sector, len)
        };
        let kind = self
            .sync
            .as_ref()
            .filter(|j| j.id == s.job_id)
            .map(|j| j.kind);
        match kind {
            None => return StepNext::Done,
            Some(SyncKind::Rebuild) if !usable(self, src, src_sector) => {
                if let Some((r, sector)) = s.step.target {
                    self.roles[r].bad.add(sector, len);
                    if let Some(j) = self.sync.as_mut() {
                        j.unreadable_sectors += len;
                    }
                }
                s.source_failed = true;
                return StepNext::Done;
            }
            Some(SyncKind::Resync | SyncKind::Scrub { .. }) => {
                let other = s.step.target.or(s.step.compare);
                match other {
                    Some((o, osector)) if !usable(self, src, src_sector) => {
                        if !usable(self, o, osector) {
                            return StepNext::Done;
                        }
                        // Copy from the good one onto the other.
                        s.step.source = (o, osector);
                        s.step.target = Some((src, src_sector));
                        s.step.compare = None;
                    }
                    Some((o, osector)) if !usable(self, o, osector) => {
                        s.step.target = Some((o, osector));
                        s.step.compare = None;
                    }
                    _ => {}
                }
            }
            Some(_) => {}
        }
        let bytes = (len * 512) as u32;
        let (m, sector) = s.step.source;
        ops.push(self.step_op(StepOpKind::Read, m, sector, bytes, false));
        if let Some((c, csector)) = s.step.compare {
            ops.push(self.step_op(StepOpKind::Compare, c, csector, bytes, true));
        }
        s.pending = ops.len() as u8;
        s.writing = false;
        StepNext::Issue
    }

    fn step_op(&self, kind: StepOpKind, m: usize, sector: u64, bytes: u32, second: bool) -> StepOp {
        StepOp {
            kind,
            member: m as u8,
            sector,
            bytes,
            second_buffer: second,
            generation: self.roles[m].generation,
        }
    }

    /// A member I/O of step `s` completed. `differ` compares the two buffers (asked only for
    /// a scrub whose reads both succeeded). Pushes follow-up I/O to `ops` (cleared first).
    pub fn step_member_done(
        &mut self,
        s: &mut StepState,
        op: StepOp,
        result: i32,
        differ: impl FnOnce() -> bool,
        ops: &mut Vec<StepOp>,
    ) -> StepNext {
        ops.clear();
        let m = op.member as usize;
        let bytes = s.step.sectors * 512;
        let stale = m >= self.roles.len() || self.roles[m].generation != op.generation;
        let ok = !stale && result as i64 == bytes as i64;
        if !stale {
            let role = &mut self.roles[m];
            if ok {
                role.counters.ios += 1;
                role.counters.bytes += bytes;
            } else {
                if op.kind == StepOpKind::Write {
                    role.counters.write_errors += 1;
                } else {
                    role.counters.read_errors += 1;
                }
                tracing::warn!(lun = %self.label, member = m, lba = s.step.lba, result, "sync I/O failed");
                self.fail_if_shrunk(m);
            }
        }
        if !ok {
            match op.kind {
                StepOpKind::Read => s.source_failed = true,
                StepOpKind::Compare => s.compare_failed = true,
                StepOpKind::Write => s.write_failed = true,
            }
        }
        if op.kind == StepOpKind::Write && !stale {
            if ok {
                let role = &mut self.roles[m];
                if !role.bad.is_empty() {
                    role.bad.clear(op.sector, s.step.sectors);
                }
            } else if self.only_copy(m) {
                self.record_bad(m, op.sector, s.step.sectors, "write error during sync");
            } else {
                self.fail_role(m, "write error during sync");
            }
        }
        debug_assert!(s.pending > 0, "step completion without a pending I/O");
        s.pending = s.pending.saturating_sub(1);
        if s.pending > 0 {
            return StepNext::Waiting;
        }
        if s.writing {
            return StepNext::Done;
        }
        self.step_after_reads(s, differ, ops)
    }

    /// Both reads of `s` are in: decides what to write (rebuild target, resync copy, scrub
    /// repair), or retries a resync in the other direction.
    fn step_after_reads(
        &mut self,
        s: &mut StepState,
        differ: impl FnOnce() -> bool,
        ops: &mut Vec<StepOp>,
    ) -> StepNext {
        let bytes = (s.step.sectors * 512) as u32;
        // A step of a job that was replaced writes nothing.
        let kind = self
            .sync
            .as_ref()
            .filter(|j| j.id == s.job_id)
            .map(|j| j.kind);
        let mut write = None;
        match kind {
            Some(SyncKind::Scrub { repair }) if s.step.compare.is_some() => {
                match (s.source_failed, s.compare_failed) {
                    (false, false) => {
                        let differ = differ();
                        if let Some(job) = self.sync.as_mut() {
                            job.compared += 1;
                            job.mismatches += differ as u64;
                        }
                        if differ {
                            tracing::warn!(lun = %self.label, lba = s.step.lba, sectors = s.step.sectors, "scrub: the copies differ");
                            if repair {
                                write = s.step.compare.map(|c| (c, false));
                            }
                        }
                    }
                    // A scrub read error is repaired from the other copy, never a failure.
                    (true, false) => write = Some((s.step.source, true)),
                    (false, true) => write = s.step.compare.map(|c| (c, false)),
                    (true, true) => {
                        tracing::error!(lun = %self.label, lba = s.step.lba, sectors = s.step.sectors, "scrub: neither copy can be read")
                    }
                }
            }
            Some(SyncKind::Resync) if s.source_failed => {
                if let (false, Some(target)) = (s.reversed, s.step.target) {
                    // The first copy cannot be read: copy the other way instead.
                    s.reversed = true;
                    s.source_failed = false;
                    s.step.target = Some(s.step.source);
                    s.step.source = target;
                    return self.step_reads(s, ops);
                }
                tracing::error!(lun = %self.label, lba = s.step.lba, sectors = s.step.sectors, "resync: neither copy can be read");
            }
            Some(SyncKind::Rebuild) if s.source_failed => {
                // The last in-sync copy did not read: it stays in service, and the range is
                // listed bad on the rebuilt member (never served from it unwritten).
                if let Some((r, sector)) = s.step.target {
                    self.roles[r].bad.add(sector, s.step.sectors);
                    if let Some(j) = self.sync.as_mut() {
                        j.unreadable_sectors += s.step.sectors;
                    }
                    tracing::error!(lun = %self.label, lba = s.step.lba, sectors = s.step.sectors, role = r, "rebuild: the source cannot read this range: listed bad on the new member, the rebuild goes on");
                }
            }
            // A copy step (rebuild, resync, or a scrub healing a range listed bad) whose source
            // read failed writes nothing.
            Some(_) if s.source_failed => {}
            Some(_) => write = s.step.target.map(|c| (c, false)),
            None => {}
        }
        let Some(((w, wsector), second)) = write else {
            return StepNext::Done;
        };
        s.writing = true;
        s.pending = 1;
        ops.clear();
        ops.push(self.step_op(StepOpKind::Write, w, wsector, bytes, second));
        StepNext::Issue
    }

    /// Step `s` is over: records it in its job (only if the job is still the running one)
    /// and moves the rebuild checkpoint or clears the resynced bitmap regions.
    pub fn step_done(&mut self, s: &StepState) {
        let bytes = s.step.sectors * 512;
        let Some(job) = self.sync.as_mut().filter(|j| j.id == s.job_id) else {
            return;
        };
        let failed = s.source_failed || s.compare_failed || s.write_failed;
        job.finished_step(s.job_step, if failed { 0 } else { bytes });
        let cp = job.checkpoint();
        match job.kind {
            SyncKind::Rebuild => self.set_checkpoint(cp),
            SyncKind::Resync => {
                let region = self.intent.region_sectors();
                let mut at = job.cleared_below;
                while at + region <= cp {
                    self.intent.synced(at, self.bitmap_version);
                    at += region;
                }
                job.cleared_below = at;
            }
            SyncKind::Scrub { .. } => {}
        }
    }

    /// Ends the running job and records what it achieved.
    pub fn finish_job(&mut self) {
        let Some(job) = self.sync.take() else {
            return;
        };
        let secs = job.bytes as f64 / job.rate().max(1.0);
        let rate = format!("{:.1}", job.rate() / 1048576.0);
        match job.kind {
            SyncKind::Rebuild => {
                let mut finished = 0;
                for r in self.roles.iter_mut() {
                    if r.state == RoleState::Recovering && r.dev.is_some() {
                        r.state = RoleState::Active;
                        finished += 1;
                    }
                }
                self.set_checkpoint(0);
                if job.unrecoverable > 0 {
                    self.lost = true;
                }
                tracing::info!(lun = %self.label, members = finished, bytes = job.bytes, seconds = format!("{secs:.1}"), rate_mib_s = rate, unrecoverable = job.unrecoverable, unreadable_sectors = job.unreadable_sectors, bad_sectors = self.bad_sectors(), "rebuild finished");
                if let Err(e) = self.commit("rebuild finished") {
                    tracing::error!(lun = %self.label, error = %e, "could not record the rebuild");
                }
            }
            SyncKind::Resync => {
                let was_init = self.initing;
                self.initing = false;
                tracing::info!(lun = %self.label, bytes = job.bytes, seconds = format!("{secs:.1}"), rate_mib_s = rate, remaining_dirty = self.intent.dirty_count(), "{}", if was_init { "initial sync finished" } else { "resync finished" });
                if let Err(e) = self.persist_bitmap() {
                    tracing::error!(lun = %self.label, error = %e, "bitmap update failed");
                }
                if was_init {
                    if let Err(e) = self.commit("initial sync finished") {
                        tracing::error!(lun = %self.label, error = %e, "could not record the sync");
                    }
                }
            }
            SyncKind::Scrub { repair } => {
                tracing::info!(lun = %self.label, compared = job.compared, mismatches = job.mismatches, repaired = repair, "scrub finished");
                self.last_scrub = Some((job.compared, job.mismatches, repair));
            }
        }
    }
}
