//! Merging: reads or writes of a file LUN that arrive one after the other in a batch and
//! continue each other's sectors (an initiator splits one large I/O into frames) go to the
//! disk as one vectored I/O over the frames' own buffers: one io_uring entry, and for a
//! writethrough write one RWF_DSYNC instead of one per frame.
//!
//! RAID-10 member I/Os are merged the same way one level down: member I/Os of the batch on
//! the same member, same direction and flags, whose byte ranges continue each other, become
//! one vectored member I/O; its completion is handed to each part as if it had run alone.
//!
//! If a merged I/O does not complete in full (a short transfer, an error, O_DIRECT refusing
//! the layout), each request (or member I/O) is submitted again on its own, so errors stay
//! per request and RAID-10 sees each member failure as before.

use super::{monotonic_ns, Op, Worker, UD_KIND, UD_MVEC, UD_SYNC, UD_VEC};
use crate::wire::{ATA_DATA_OFFSET, SECTOR_SIZE};
use io_uring::{opcode, squeue, types};

/// Requests merged into one I/O at most.
pub const MAX_RUN: usize = 32;

/// A request as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// LUN.
    pub target: u16,
    /// Write (else read).
    pub write: bool,
    /// First sector.
    pub lba: u64,
    /// Sectors.
    pub count: u32,
    /// May take part in a merge (file LUN, O_DIRECT accepted so far).
    pub mergeable: bool,
}

impl Pending {
    /// `next` continues `self`: same LUN, same direction, its first sector right after.
    pub fn continued_by(&self, next: &Pending) -> bool {
        self.mergeable
            && next.mergeable
            && next.target == self.target
            && next.write == self.write
            && next.lba == self.lba + self.count as u64
    }
}

/// Cuts `pending` (in arrival order) into runs of requests that continue each other, at most
/// `max` long; calls `each(start, len)` for every run, singles included, in order.
pub fn plan_runs(pending: &[Pending], max: usize, mut each: impl FnMut(usize, usize)) {
    let mut start = 0;
    while start < pending.len() {
        let mut len = 1;
        while start + len < pending.len()
            && len < max
            && pending[start + len - 1].continued_by(&pending[start + len])
        {
            len += 1;
        }
        each(start, len);
        start += len;
    }
}

/// The buffers of one merged I/O; they stay put until its completion.
pub(super) struct Run {
    slots: [u32; MAX_RUN],
    iov: [libc::iovec; MAX_RUN],
    len: usize,
}

impl Default for Run {
    fn default() -> Run {
        Run {
            slots: [0; MAX_RUN],
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_RUN],
            len: 0,
        }
    }
}

// SAFETY: the iovec pointers are addresses of slab slots owned by the LUN worker while the
// run is in flight; a `Run` is only touched by that worker.
unsafe impl Send for Run {}

/// One RAID-10 member read or write, as built by the RAID code.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MemberIo {
    /// Member descriptor.
    pub fd: std::os::fd::RawFd,
    /// Byte offset on the member.
    pub offset: u64,
    /// Buffer address (inside a slab slot).
    pub buf: usize,
    /// Bytes.
    pub bytes: u32,
    /// Write (else read).
    pub write: bool,
    /// RWF_* flags.
    pub flags: i32,
    /// The user data its completion is reported with.
    pub ud: u64,
}

impl MemberIo {
    /// `next` continues `self` on the same member in the same way.
    fn continued_by(&self, next: &MemberIo) -> bool {
        next.fd == self.fd
            && next.write == self.write
            && next.flags == self.flags
            && next.offset == self.offset + self.bytes as u64
    }

    /// The single io_uring entry of this member I/O.
    fn entry(&self) -> squeue::Entry {
        let fd = types::Fd(self.fd);
        let buf = self.buf as *mut u8;
        let sqe = if self.write {
            opcode::Write::new(fd, buf, self.bytes)
                .offset(self.offset)
                .rw_flags(self.flags)
                .build()
        } else {
            opcode::Read::new(fd, buf, self.bytes)
                .offset(self.offset)
                .build()
        };
        sqe.user_data(self.ud)
    }
}

/// The parts of one merged member I/O and their buffers.
pub(super) struct MemberRun {
    parts: [MemberIo; MAX_RUN],
    iov: [libc::iovec; MAX_RUN],
    len: usize,
}

impl Default for MemberRun {
    fn default() -> MemberRun {
        MemberRun {
            parts: [MemberIo::default(); MAX_RUN],
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_RUN],
            len: 0,
        }
    }
}

// SAFETY: the iovec pointers are addresses of slab slots owned by the LUN worker while the
// run is in flight; a `MemberRun` is only touched by that worker.
unsafe impl Send for MemberRun {}

impl Worker {
    /// Queues a read or write of a file LUN for [`Worker::submit_pending`]; anything else is
    /// submitted at once.
    pub(super) fn submit_or_hold(&mut self, slot: u32) {
        let s = self.slots[slot as usize];
        let file_lun = !self.is_raid(s.target);
        if matches!(s.op, Op::Read | Op::Write) && file_lun && !s.retried_buffered {
            self.pending_io.push(slot);
        } else {
            self.submit(slot);
        }
    }

    /// Submits the requests and member I/Os held back during this batch, merging runs that
    /// continue each other.
    pub(super) fn submit_pending(&mut self) {
        self.submit_pending_members();
        if self.pending_io.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.pending_io);
        self.plan.clear();
        for &slot in &held {
            let s = self.slots[slot as usize];
            self.plan.push(Pending {
                target: s.target,
                write: s.op == Op::Write,
                lba: s.lba,
                count: s.count as u32,
                mergeable: !self.buffered_only[s.target as usize],
            });
        }
        let mut runs = std::mem::take(&mut self.plan_out);
        runs.clear();
        plan_runs(&self.plan, MAX_RUN, |start, len| runs.push((start, len)));
        for &(start, len) in &runs {
            let slots = &held[start..start + len];
            if len == 1 || self.free_runs.is_empty() {
                for &slot in slots {
                    self.submit(slot);
                }
            } else {
                self.submit_run(slots);
            }
        }
        self.plan_out = runs;
        self.pending_io = held;
        self.pending_io.clear();
    }

    /// Submits the held RAID-10 member I/Os, contiguous ones merged.
    pub(super) fn submit_pending_members(&mut self) {
        if self.member_pending.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.member_pending);
        let mut start = 0;
        while start < held.len() {
            let mut len = 1;
            while start + len < held.len()
                && len < MAX_RUN
                && held[start + len - 1].continued_by(&held[start + len])
            {
                len += 1;
            }
            let parts = &held[start..start + len];
            match self.free_member_runs.pop() {
                Some(r) if len > 1 => self.submit_member_run(r, parts),
                other => {
                    if let Some(r) = other {
                        self.free_member_runs.push(r);
                    }
                    for part in parts {
                        self.push_sqe(part.entry());
                    }
                }
            }
            start += len;
        }
        self.member_pending = held;
        self.member_pending.clear();
    }

    /// One vectored member I/O for `parts` (contiguous on one member).
    fn submit_member_run(&mut self, r: u32, parts: &[MemberIo]) {
        let run = &mut self.member_runs[r as usize];
        run.len = parts.len();
        for (k, part) in parts.iter().enumerate() {
            run.parts[k] = *part;
            run.iov[k] = libc::iovec {
                iov_base: part.buf as *mut libc::c_void,
                iov_len: part.bytes as usize,
            };
        }
        let first = parts[0];
        let fd = types::Fd(first.fd);
        let iov = run.iov.as_ptr();
        let n = run.len as u32;
        let sqe = if first.write {
            opcode::Writev::new(fd, iov, n)
                .offset(first.offset)
                .rw_flags(first.flags)
                .build()
        } else {
            opcode::Readv::new(fd, iov, n).offset(first.offset).build()
        };
        self.stats.merged_runs += 1;
        self.stats.merged_requests += parts.len() as u64;
        self.push_sqe(sqe.user_data(UD_MVEC | r as u64));
    }

    /// A merged member I/O finished: each part completes as if it had run alone, or (if the
    /// whole did not transfer) runs again alone.
    pub(super) fn complete_member_run(&mut self, r: u32, result: i32) {
        let run = &self.member_runs[r as usize];
        let len = run.len;
        let parts = run.parts;
        let expected: u64 = parts[..len].iter().map(|p| p.bytes as u64).sum();
        self.free_member_runs.push(r);
        if result >= 0 && result as u64 == expected {
            for part in &parts[..len] {
                match part.ud & UD_KIND {
                    UD_SYNC => self.sync_complete(part.ud, part.bytes as i32),
                    _ => self.raid_complete(part.ud, part.bytes as i32),
                }
            }
        } else {
            self.stats.split_runs += 1;
            for part in &parts[..len] {
                self.push_sqe(part.entry());
            }
        }
    }

    /// One vectored read or write over the frames of `slots` (a run of a file LUN).
    fn submit_run(&mut self, slots: &[u32]) {
        let Some(r) = self.free_runs.pop() else {
            for &slot in slots {
                self.submit(slot);
            }
            return;
        };
        let first = self.slots[slots[0] as usize];
        let target = &self.targets[first.target as usize];
        let (Some((fd, registered)), Some(backing)) =
            (self.file_of(first.target, false), target.backing.as_ref())
        else {
            self.free_runs.push(r);
            for &slot in slots {
                self.submit(slot);
            }
            return;
        };
        let offset = backing.byte_offset(first.lba);
        let writethrough = target.writethrough;
        let now = monotonic_ns();
        let run = &mut self.runs[r as usize];
        run.len = slots.len();
        for (k, &slot) in slots.iter().enumerate() {
            run.slots[k] = slot;
            let s = &mut self.slots[slot as usize];
            s.submitted = now;
            run.iov[k] = libc::iovec {
                // SAFETY: the data area (offset 36) lies inside slot `slot` of the slab.
                iov_base: unsafe { self.slab.frame_ptr(slot as usize).add(ATA_DATA_OFFSET) }.cast(),
                iov_len: s.count as usize * SECTOR_SIZE,
            };
        }
        let iov = run.iov.as_ptr();
        let n = run.len as u32;
        let sqe = if first.op == Op::Write {
            let flags = if writethrough { libc::RWF_DSYNC } else { 0 };
            opcode::Writev::new(fd, iov, n)
                .offset(offset)
                .rw_flags(flags)
                .build()
        } else {
            opcode::Readv::new(fd, iov, n).offset(offset).build()
        };
        let sqe = if registered {
            sqe.flags(squeue::Flags::FIXED_FILE)
        } else {
            sqe
        };
        self.in_flight += 1;
        self.stats.merged_runs += 1;
        self.stats.merged_requests += slots.len() as u64;
        self.push_sqe(sqe.user_data(UD_VEC | r as u64));
    }

    /// A merged I/O finished with `result`: every request is answered, or (if it did not
    /// transfer everything) submitted again on its own.
    pub(super) fn complete_run(&mut self, r: u32, result: i32) {
        self.in_flight -= 1;
        let run = &self.runs[r as usize];
        let len = run.len;
        let slots = run.slots;
        let expected: usize = run.iov[..len].iter().map(|v| v.iov_len).sum();
        self.free_runs.push(r);
        if result >= 0 && result as usize == expected {
            for &slot in &slots[..len] {
                if self.slots[slot as usize].op == Op::Write {
                    self.order_done(slot);
                }
                self.reply_io(slot, true);
            }
        } else {
            self.stats.split_runs += 1;
            tracing::debug!(
                result,
                expected,
                requests = len,
                "merged I/O incomplete: each request again on its own"
            );
            for &slot in &slots[..len] {
                self.submit(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(target: u16, write: bool, lba: u64, count: u32) -> Pending {
        Pending {
            target,
            write,
            lba,
            count,
            mergeable: true,
        }
    }

    fn runs(pending: &[Pending], max: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        plan_runs(pending, max, |s, l| out.push((s, l)));
        out
    }

    #[test]
    fn contiguous_same_direction_requests_of_one_lun_merge() {
        let batch = [
            p(0, false, 0, 16),
            p(0, false, 16, 16),
            p(0, false, 32, 8),
            p(0, true, 40, 8),  // other direction
            p(0, true, 48, 8),  // continues the write
            p(1, true, 56, 8),  // other LUN
            p(1, true, 100, 8), // gap
            p(1, true, 108, 8), // continues
            p(1, true, 108, 8), // same sectors again: not a continuation
        ];
        assert_eq!(
            runs(&batch, MAX_RUN),
            vec![(0, 3), (3, 2), (5, 1), (6, 2), (8, 1)]
        );
    }

    #[test]
    fn member_ios_continue_only_on_the_same_member_direction_and_flags() {
        let io = MemberIo {
            fd: 7,
            offset: 4096,
            buf: 0,
            bytes: 8704,
            write: true,
            flags: libc::RWF_DSYNC,
            ud: 1,
        };
        let next = MemberIo {
            offset: 4096 + 8704,
            ud: 2,
            ..io
        };
        assert!(io.continued_by(&next));
        assert!(!io.continued_by(&MemberIo { fd: 8, ..next }));
        assert!(!io.continued_by(&MemberIo {
            write: false,
            ..next
        }));
        assert!(!io.continued_by(&MemberIo { flags: 0, ..next }));
        assert!(!io.continued_by(&MemberIo {
            offset: 4096,
            ..next
        }));
        assert!(!next.continued_by(&io), "order matters");
    }

    #[test]
    fn runs_are_capped_and_unmergeable_requests_stand_alone() {
        let batch: Vec<Pending> = (0..10).map(|i| p(0, false, i * 8, 8)).collect();
        assert_eq!(runs(&batch, 4), vec![(0, 4), (4, 4), (8, 2)]);
        let mut batch = batch;
        batch[5].mergeable = false;
        assert_eq!(runs(&batch, MAX_RUN), vec![(0, 5), (5, 1), (6, 4)]);
        assert!(runs(&[], MAX_RUN).is_empty());
    }
}
