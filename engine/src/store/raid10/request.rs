//! The policy of one client request on a RAID-10 array, as a state machine. A request starts
//! and member I/Os come out; each member completion goes in and retries, repairs, member
//! failures, bad ranges and finally the answer come out. Nothing here does I/O: the worker
//! turns `MemberOp`s into io_uring submissions, the simulator into simulated disks, and both
//! feed the completions back.
//!
//! The rules (Linux md raid10 is the model):
//! - a read goes to one readable copy; a failed read is retried once on the other copy and
//!   the failed copy is rewritten from the good data; a read error alone never fails a member;
//! - a short transfer is retried once, then it is an error; a member that shrank is failed;
//! - a write goes to every writable copy; a member that misses a write is failed, unless it
//!   holds the only in-sync copy of some data: then only the range is listed bad;
//! - a completion of a disk that has left its role (older generation) acts on nothing.

use super::array::{Array, RoleState};
use super::Piece;

/// Member I/Os one request may need at most: 255 sectors over 8-sector chunks is 33 pieces
/// of two copies; a flush touches every member.
pub const MAX_OPS: usize = 80;
const _: () = assert!(MAX_OPS >= super::MAX_MEMBERS && MAX_OPS >= 2 * 33);

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestKind {
    /// Read sectors.
    #[default]
    Read,
    /// Write sectors.
    Write,
    /// Make every acknowledged write stable.
    Flush,
}

/// What one member I/O does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Read a piece from one copy.
    Read = 0,
    /// Write a piece to one copy.
    Write = 1,
    /// fdatasync the member.
    Flush = 2,
    /// Write good data over a copy that failed to read (or is listed bad).
    Rewrite = 3,
}

impl OpKind {
    /// From the code in `OpKind as u8`.
    pub fn from_code(code: u8) -> Option<OpKind> {
        Some(match code {
            0 => OpKind::Read,
            1 => OpKind::Write,
            2 => OpKind::Flush,
            3 => OpKind::Rewrite,
            _ => return None,
        })
    }

    /// Whether it writes.
    pub fn writes(self) -> bool {
        matches!(self, OpKind::Write | OpKind::Rewrite)
    }
}

/// One member I/O a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberOp {
    /// What it does.
    pub kind: OpKind,
    /// Index of the piece within the request.
    pub piece: u8,
    /// The member (role).
    pub member: u8,
    /// The second attempt of a read, on the other copy (there is no third).
    pub retry: bool,
    /// Member data sector.
    pub sector: u64,
    /// Byte offset of the piece in the request's data.
    pub at: u32,
    /// Bytes (0 for a flush).
    pub bytes: u32,
    /// The generation of the member's disk when the op was made.
    pub generation: u8,
}

/// A member I/O came back.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// The op as issued (generation included).
    pub op: MemberOp,
    /// Bytes moved, 0 for a flush, or a negative errno.
    pub result: i32,
    /// Issue to completion, for the member's latency histograms.
    pub took_ns: u64,
}

/// A client request's progress over the members.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request {
    /// What it does.
    pub kind: RequestKind,
    /// First array sector.
    pub lba: u64,
    /// Sectors.
    pub count: u8,
    pending: u16,
    piece_ok: u64,
    /// Member + 1 to rewrite from the good data once the read is done; 0 = none.
    rewrite_member: u8,
    rewrite_piece: u8,
    failed: bool,
    short_retried: bool,
    /// Writes reach stable media before they complete (write-through, RWF_DSYNC): only
    /// then may a write take a range off a bad-block list.
    pub durable: bool,
}

impl Request {
    /// A request not started yet.
    pub fn new(kind: RequestKind, lba: u64, count: u8, durable: bool) -> Request {
        Request {
            kind,
            lba,
            count,
            durable,
            ..Request::default()
        }
    }

    /// Member I/Os outstanding.
    pub fn pending(&self) -> u16 {
        self.pending
    }

    /// The rewrite returned by `Progress::Rewrite` was issued: wait for it.
    pub fn rewrite_issued(&mut self) {
        debug_assert_eq!(self.pending, 0);
        self.pending = 1;
    }
}

/// What the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Issue what was pushed to `ops` (maybe nothing) and wait for more completions.
    Waiting,
    /// Answer the host: success, or an ATA error.
    Done {
        /// The request succeeded.
        success: bool,
    },
    /// The read succeeded through the other copy: issue this rewrite once the write order
    /// admits it (then `rewrite_issued` and wait), or answer success at once if it does not.
    Rewrite(MemberOp),
}

impl Array {
    /// Starts `req`: pushes its member I/Os to `ops` (cleared first).
    pub fn start_request(&mut self, req: &mut Request, ops: &mut Vec<MemberOp>) -> Progress {
        ops.clear();
        let mut lost = false;
        let mut unreadable = false;
        let mut heal = None;
        match req.kind {
            RequestKind::Read | RequestKind::Write => {
                let layout = *self.layout();
                let Some(pieces) = layout.pieces(req.lba, req.count as u64) else {
                    return Progress::Done { success: false };
                };
                let write = req.kind == RequestKind::Write;
                if write && self.intent.begin_write(req.lba, req.count as u64) {
                    if let Err(e) = self.persist_bitmap() {
                        tracing::error!(lun = %self.label, error = %e, "bitmap update failed");
                    }
                }
                for (i, piece) in pieces.enumerate() {
                    if write {
                        let mut any = false;
                        for (m, _) in piece.copies {
                            if self.writable(m) && ops.len() < MAX_OPS {
                                ops.push(self.op(OpKind::Write, req, i, &piece, m, false));
                                any = true;
                            }
                        }
                        lost |= !any;
                        continue;
                    }
                    match self.pick_read(&piece, None) {
                        Some(m) if ops.len() < MAX_OPS => {
                            ops.push(self.op(OpKind::Read, req, i, &piece, m, false));
                            // A writable copy listed bad here is healed from this read.
                            if heal.is_none() {
                                heal = self.listed_bad_copy(&piece, m).map(|c| (c, i));
                            }
                        }
                        _ => unreadable = true,
                    }
                }
            }
            RequestKind::Flush => {
                for m in 0..self.roles.len() {
                    if self.writable(m) && ops.len() < MAX_OPS {
                        ops.push(MemberOp {
                            kind: OpKind::Flush,
                            piece: 0,
                            member: m as u8,
                            retry: false,
                            sector: 0,
                            at: 0,
                            bytes: 0,
                            generation: self.roles[m].generation,
                        });
                    }
                }
            }
        }
        if lost {
            if !self.lost {
                tracing::error!(lun = %self.label, lba = req.lba, count = req.count, "no surviving copy: answering ATA UNC; the LUN is failed");
            }
            self.lost = true;
        }
        if unreadable {
            tracing::warn!(lun = %self.label, lba = req.lba, count = req.count, "no readable copy of some sector: answering ATA UNC");
        }
        req.pending = ops.len() as u16;
        req.piece_ok = 0;
        (req.rewrite_member, req.rewrite_piece) = match heal {
            Some((c, i)) => (c as u8 + 1, i as u8),
            None => (0, 0),
        };
        req.short_retried = false;
        req.failed = lost || unreadable;
        if ops.is_empty() {
            return Progress::Done {
                success: !req.failed,
            };
        }
        Progress::Waiting
    }

    /// A member I/O of `req` completed: pushes any reissue to `ops` (cleared first).
    pub fn complete_request(
        &mut self,
        req: &mut Request,
        c: Completion,
        ops: &mut Vec<MemberOp>,
    ) -> Progress {
        ops.clear();
        let m = c.op.member as usize;
        let piece = self
            .layout()
            .pieces(req.lba, req.count as u64)
            .and_then(|mut p| p.nth(c.op.piece as usize));
        // The caller only needs to keep kind, piece, member, attempt and generation: where
        // the op went follows from the request.
        let op = match piece {
            Some(p) if c.op.kind != OpKind::Flush && p.copies.iter().any(|(x, _)| *x == m) => {
                MemberOp {
                    sector: member_sector(&p, m),
                    at: ((p.array_lba - req.lba) * 512) as u32,
                    bytes: (p.sectors * 512) as u32,
                    ..c.op
                }
            }
            _ => c.op,
        };
        let expected = match (op.kind, piece) {
            (OpKind::Flush, _) | (_, None) => 0,
            (_, Some(p)) => (p.sectors * 512) as i32,
        };
        // A completion of a disk that has since left the role proves nothing about the
        // role's current disk and must not act on it.
        let stale = m >= self.roles.len() || self.roles[m].generation != op.generation;
        if stale {
            tracing::debug!(lun = %self.label, member = m, "completion of a disk that left the role: ignored");
        }
        // A short transfer is retried once (whole, which is idempotent), then is an error.
        if !stale
            && op.kind != OpKind::Flush
            && (0..expected).contains(&c.result)
            && !req.short_retried
        {
            req.short_retried = true;
            tracing::warn!(lun = %self.label, member = m, lba = req.lba, result = c.result, expected, "short member transfer: retrying it once");
            ops.push(op);
            return Progress::Waiting;
        }
        let ok = !stale && c.result == expected;
        if !stale {
            count_member_io(
                &mut self.roles[m].counters,
                op.kind,
                c.result,
                ok,
                c.took_ns,
            );
        }
        // O_DIRECT refusing the alignment: once per member, then the page cache.
        if !stale
            && c.result == -libc::EINVAL
            && op.kind != OpKind::Flush
            && self.fall_back_to_buffered(m)
        {
            ops.push(op);
            return Progress::Waiting;
        }
        if !ok && !stale {
            tracing::warn!(lun = %self.label, member = m, lba = req.lba, result = c.result, kind = ?op.kind, "member I/O failed");
            self.fail_if_shrunk(m);
        }
        match (op.kind, piece) {
            (OpKind::Read, Some(piece)) => self.read_done(req, op, &piece, ok, stale, ops),
            (OpKind::Write, Some(piece)) => {
                if ok {
                    // Only a copy that can be read back makes the write good: a member
                    // being rebuilt above its checkpoint cannot serve it yet.
                    if self.readable_once_written(m, &piece) {
                        req.piece_ok |= 1 << op.piece;
                    }
                    // A volatile write may vanish at a power cut: the range stays listed
                    // until a write that is on stable media covers it.
                    if req.durable {
                        self.clear_bad(m, &piece);
                    }
                } else if !stale {
                    // The member missed a write: it must never be read there again.
                    self.member_write_failed(m, &piece, "write error");
                }
            }
            (OpKind::Flush, _) if !ok && !stale => {
                if self.only_copy(m) {
                    req.failed = true;
                } else {
                    self.fail_role(m, "flush error");
                }
            }
            (OpKind::Rewrite, Some(piece)) => {
                if ok {
                    self.roles[m].counters.corrected += 1;
                    self.clear_bad(m, &piece);
                    tracing::info!(lun = %self.label, member = m, lba = piece.array_lba, "member range rewritten from the other copy");
                } else if !stale {
                    self.member_write_failed(m, &piece, "the rewrite from the other copy failed");
                }
            }
            _ => {}
        }
        debug_assert!(req.pending > 0, "completion without a pending member I/O");
        req.pending = req.pending.saturating_sub(1) + ops.len() as u16;
        if req.pending > 0 {
            return Progress::Waiting;
        }
        let success = self.request_succeeded(req);
        if req.kind == RequestKind::Read && success && op.kind != OpKind::Rewrite {
            if let Some(rewrite) = self.rewrite_op(req) {
                return Progress::Rewrite(rewrite);
            }
        }
        Progress::Done { success }
    }

    fn read_done(
        &mut self,
        req: &mut Request,
        op: MemberOp,
        piece: &Piece,
        ok: bool,
        stale: bool,
        ops: &mut Vec<MemberOp>,
    ) {
        let m = op.member as usize;
        if ok {
            req.piece_ok |= 1 << op.piece;
            return;
        }
        // A read error never fails a member by itself (md): the other copy answers and the
        // failed one is rewritten from it.
        if req.rewrite_member == 0 && !stale {
            req.rewrite_member = m as u8 + 1;
            req.rewrite_piece = op.piece;
        }
        // Each piece has two copies: the second attempt is the last.
        let other = if op.retry {
            None
        } else {
            self.pick_read(piece, Some(m))
        };
        match other {
            Some(other) => {
                ops.push(self.op(OpKind::Read, req, op.piece as usize, piece, other, true))
            }
            None => {
                req.failed = true;
                tracing::error!(lun = %self.label, lba = piece.array_lba, sectors = piece.sectors, "no other copy can be read: answering ATA UNC for this request");
            }
        }
    }

    fn request_succeeded(&self, req: &Request) -> bool {
        if req.kind == RequestKind::Flush {
            return !req.failed && !self.unreadable_chunk();
        }
        let pieces = self
            .layout()
            .pieces(req.lba, req.count as u64)
            .map_or(0, |p| p.count());
        let all = if pieces >= 64 {
            u64::MAX
        } else {
            (1u64 << pieces) - 1
        };
        !req.failed && req.piece_ok & all == all
    }

    /// The rewrite of the copy that failed (or is listed bad) after a good read.
    fn rewrite_op(&self, req: &Request) -> Option<MemberOp> {
        let bad = (req.rewrite_member as usize).checked_sub(1)?;
        let piece = self
            .layout()
            .pieces(req.lba, req.count as u64)?
            .nth(req.rewrite_piece as usize)?;
        if !self.writable(bad) || !piece.copies.iter().any(|(c, _)| *c == bad) {
            return None;
        }
        Some(self.op(
            OpKind::Rewrite,
            req,
            req.rewrite_piece as usize,
            &piece,
            bad,
            false,
        ))
    }

    fn op(
        &self,
        kind: OpKind,
        req: &Request,
        piece_index: usize,
        piece: &Piece,
        m: usize,
        retry: bool,
    ) -> MemberOp {
        MemberOp {
            kind,
            piece: piece_index as u8,
            member: m as u8,
            retry,
            sector: member_sector(piece, m),
            at: ((piece.array_lba - req.lba) * 512) as u32,
            bytes: (piece.sectors * 512) as u32,
            generation: self.roles[m].generation,
        }
    }

    /// A writable copy of `piece` other than `m` whose range is listed bad.
    fn listed_bad_copy(&self, piece: &Piece, m: usize) -> Option<usize> {
        piece
            .copies
            .iter()
            .find(|(c, cs)| {
                *c != m && self.writable(*c) && self.roles[*c].bad.overlaps(*cs, piece.sectors)
            })
            .map(|(c, _)| *c)
    }

    /// Whether member `m` serves `piece` once it holds the piece's data: an in-sync member,
    /// or one being rebuilt whose checkpoint has passed the piece.
    fn readable_once_written(&self, m: usize, piece: &Piece) -> bool {
        match self.roles[m].state {
            RoleState::Active => true,
            RoleState::Recovering => {
                self.sync
                    .as_ref()
                    .is_some_and(|s| s.kind == super::SyncKind::Rebuild)
                    && piece.array_lba + piece.sectors <= self.checkpoint()
            }
            _ => false,
        }
    }

    /// Switches member `m` to buffered I/O after O_DIRECT refused an I/O. False if it was
    /// already buffered.
    fn fall_back_to_buffered(&mut self, m: usize) -> bool {
        let Some(dev) = self.roles[m].dev.as_mut() else {
            return false;
        };
        if !dev.is_direct() {
            return false;
        }
        dev.buffered_only = true;
        self.direct_fallbacks += 1;
        tracing::warn!(lun = %self.label, disk = dev.disk, "O_DIRECT refuses this I/O size here: member I/O goes through the page cache");
        true
    }

    /// Fails member `m` if its disk shrank below what the array needs (a file cut short, a
    /// device resized): what it would return past its new end is not the array's data.
    pub fn fail_if_shrunk(&mut self, m: usize) -> bool {
        let sectors = self.member_sectors();
        let shrunk = self.roles[m]
            .dev
            .as_ref()
            .is_some_and(|d| d.shrank_below(sectors));
        if shrunk {
            self.fail_role(m, "the disk shrank below the array's member size");
        }
        shrunk
    }

    /// A write to member `m` of `piece` failed: the member no longer holds those sectors.
    /// It is failed, unless it holds the only in-sync copy of some data: then only the range
    /// is listed bad (reads of it answer UNC) and everything else keeps being served.
    pub fn member_write_failed(&mut self, m: usize, piece: &Piece, why: &str) {
        if self.only_copy(m) {
            self.record_bad(m, member_sector(piece, m), piece.sectors, why);
        } else {
            self.fail_role(m, why);
        }
    }

    /// Member `m` now holds `piece`'s data: takes the range off its bad-block list.
    fn clear_bad(&mut self, m: usize, piece: &Piece) {
        let role = &mut self.roles[m];
        if !role.bad.is_empty() && role.bad.clear(member_sector(piece, m), piece.sectors) {
            tracing::info!(lun = %self.label, member = m, lba = piece.array_lba, "bad range rewritten: readable again");
        }
    }
}

/// The member sector of `piece` on member `m`.
pub fn member_sector(piece: &Piece, m: usize) -> u64 {
    piece
        .copies
        .iter()
        .find(|(c, _)| *c == m)
        .map_or(piece.copies[0].1, |(_, s)| *s)
}

/// Counts one completed member I/O of a client request.
fn count_member_io(c: &mut super::MemberCounters, kind: OpKind, result: i32, ok: bool, took: u64) {
    let moved = result.max(0) as u64;
    if kind == OpKind::Read {
        c.read_latency.record(took);
        c.read_bytes += moved;
    } else {
        c.write_latency.record(took);
        c.written_bytes += moved;
    }
    if ok {
        c.ios += 1;
        c.bytes += moved;
    } else if kind == OpKind::Read {
        c.read_errors += 1;
    } else {
        c.write_errors += 1;
    }
}
