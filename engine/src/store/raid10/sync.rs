//! Background copy jobs of an array: rebuild (onto recovering roles), resync (dirty
//! regions after a crash, or the whole array when it is new) and scrub (compare both copies,
//! optionally repair). A job hands out bounded steps in array order; the worker runs them
//! through its io_uring, throttled, ordered against client writes to the same sectors.

use super::array::{Array, RoleState};
use std::fmt;
use std::time::{Duration, Instant};

/// Sectors one step moves at most (256 KiB).
pub const STEP_SECTORS: u64 = 512;
/// Steps in flight at most per job.
pub const MAX_STEPS: usize = 4;
/// Pieces examined per planning call at most (keeps the worker loop responsive on huge
/// arrays where most pieces need nothing).
const SCAN_LIMIT: usize = 4096;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Copy onto recovering roles from their partners.
    Rebuild,
    /// Copy the first copy onto the second in dirty regions.
    Resync,
    /// Compare both copies; with `repair`, copy the first onto the second where they differ.
    Scrub {
        /// Fix mismatches.
        repair: bool,
    },
}

impl fmt::Display for SyncKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncKind::Rebuild => "rebuild",
            SyncKind::Resync => "resync",
            SyncKind::Scrub { repair: false } => "scrub-check",
            SyncKind::Scrub { repair: true } => "scrub-repair",
        })
    }
}

/// One step: read `sectors` at `lba` from `source`, then write to `target` (rebuild, resync,
/// repair) or compare with `compare` (scrub).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Array sector.
    pub lba: u64,
    /// Sectors.
    pub sectors: u64,
    /// The copy read: (member, member sector).
    pub source: (usize, u64),
    /// Where the data goes, if anywhere.
    pub target: Option<(usize, u64)>,
    /// The copy to compare with (scrub).
    pub compare: Option<(usize, u64)>,
}

impl Step {
    /// The member sector of this step's copy on member `m`.
    pub fn sector_on(&self, m: usize) -> u64 {
        [self.target, self.compare, Some(self.source)]
            .into_iter()
            .flatten()
            .find(|(member, _)| *member == m)
            .map_or(self.source.1, |(_, s)| s)
    }
}

/// A running job.
#[derive(Debug, Clone)]
pub struct SyncJob {
    /// What it does.
    pub kind: SyncKind,
    /// Next array sector to plan.
    pub cursor: u64,
    /// Where it started.
    pub start: u64,
    /// Where it ends.
    pub end: u64,
    in_flight: [Option<u64>; MAX_STEPS],
    /// Bytes written (or compared) so far.
    pub bytes: u64,
    /// Pieces compared (scrub).
    pub compared: u64,
    /// Mismatches found (scrub).
    pub mismatches: u64,
    /// Pieces that had no source copy (data lost there).
    pub unrecoverable: u64,
    /// Sectors whose source could not be read: listed bad on the target (still readable from
    /// the source once it reads again).
    pub unreadable_sectors: u64,
    /// This job's identity within its array.
    pub id: u32,
    /// Resync: bitmap regions below this array sector are cleared.
    pub cleared_below: u64,
    started: Instant,
}

impl SyncJob {
    /// A job over array sectors `from..end`.
    pub fn new(kind: SyncKind, from: u64, end: u64, id: u32) -> SyncJob {
        SyncJob {
            kind,
            cursor: from,
            start: from,
            end,
            in_flight: [None; MAX_STEPS],
            bytes: 0,
            compared: 0,
            mismatches: 0,
            unrecoverable: 0,
            unreadable_sectors: 0,
            id,
            cleared_below: from,
            started: Instant::now(),
        }
    }

    /// Lowest array sector not known done: everything below it is finished.
    pub fn checkpoint(&self) -> u64 {
        self.in_flight
            .iter()
            .flatten()
            .copied()
            .fold(self.cursor, u64::min)
    }

    /// Steps in flight.
    pub fn steps_in_flight(&self) -> usize {
        self.in_flight.iter().flatten().count()
    }

    /// A free step slot.
    pub fn free_step(&self) -> Option<usize> {
        self.in_flight.iter().position(Option::is_none)
    }

    /// Records step `k` at `lba` as started.
    pub fn started_step(&mut self, k: usize, lba: u64) {
        self.in_flight[k] = Some(lba);
    }

    /// Records step `k` as finished, having moved `bytes`.
    pub fn finished_step(&mut self, k: usize, bytes: u64) {
        self.in_flight[k] = None;
        self.bytes += bytes;
    }

    /// True once everything is planned and finished.
    pub fn done(&self) -> bool {
        self.cursor >= self.end && self.steps_in_flight() == 0
    }

    /// Percent of the range covered.
    pub fn percent(&self) -> f64 {
        let span = self.end.saturating_sub(self.start).max(1) as f64;
        (self.checkpoint().saturating_sub(self.start) as f64 * 100.0 / span).min(100.0)
    }

    /// Average rate so far in bytes per second.
    pub fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bytes as f64 / secs
    }

    /// Estimated time left, from the rate of progress through the range.
    pub fn eta(&self) -> Option<Duration> {
        let covered = self.checkpoint().saturating_sub(self.start);
        if covered == 0 {
            return None;
        }
        let secs = self.started.elapsed().as_secs_f64();
        let left = self.end.saturating_sub(self.checkpoint()) as f64;
        Some(Duration::from_secs_f64(secs * left / covered as f64))
    }

    /// Plans the next step from the cursor, skipping pieces that need nothing. `None` when
    /// nothing is left or the scan limit was reached (call again later). A rebuild piece
    /// whose partner holds no in-sync copy is listed bad on the recovering role: the rebuild
    /// goes on, and those sectors stay unreadable instead of being served unwritten.
    pub fn plan(&mut self, array: &mut Array) -> Option<Step> {
        let layout = *array.layout();
        let chunk = layout.chunk_sectors();
        for _ in 0..SCAN_LIMIT {
            if self.cursor >= self.end {
                return None;
            }
            let lba = self.cursor;
            let len = (chunk - lba % chunk).min(STEP_SECTORS).min(self.end - lba);
            let [a, b] = layout.locate(lba);
            let step = match self.kind {
                SyncKind::Rebuild => {
                    let (source, target) = match (role_state(array, a.0), role_state(array, b.0)) {
                        (RoleState::Recovering, RoleState::Active) => (b, a),
                        (RoleState::Active, RoleState::Recovering) => (a, b),
                        (RoleState::Recovering, _) | (_, RoleState::Recovering) => {
                            let (r, sector) = if role_state(array, a.0) == RoleState::Recovering {
                                a
                            } else {
                                b
                            };
                            self.unrecoverable += 1;
                            array.roles[r].bad.add(sector, len);
                            self.cursor += len;
                            continue;
                        }
                        _ => {
                            self.cursor += len;
                            continue;
                        }
                    };
                    if array.roles[source.0].bad.overlaps(source.1, len) {
                        // The source itself does not hold these sectors: nothing to copy.
                        self.unreadable_sectors += len;
                        array.roles[target.0].bad.add(target.1, len);
                        self.cursor += len;
                        continue;
                    }
                    Step {
                        lba,
                        sectors: len,
                        source,
                        target: Some(target),
                        compare: None,
                    }
                }
                SyncKind::Resync | SyncKind::Scrub { .. } => {
                    if self.kind == SyncKind::Resync && !array.intent.is_dirty_at(lba) {
                        let region = array.intent.region_sectors();
                        self.cursor = ((lba / region) + 1) * region;
                        continue;
                    }
                    if role_state(array, a.0) != RoleState::Active
                        || role_state(array, b.0) != RoleState::Active
                    {
                        self.cursor += len;
                        continue;
                    }
                    // A copy listed bad holds nothing to copy or compare: it is rewritten from
                    // the other one (never the reverse), or left alone when both are bad.
                    let bad_a = array.roles[a.0].bad.overlaps(a.1, len);
                    let bad_b = array.roles[b.0].bad.overlaps(b.1, len);
                    let (source, target, compare) = match (bad_a, bad_b, self.kind) {
                        (true, true, _) => {
                            self.cursor += len;
                            continue;
                        }
                        (true, false, _) => (b, Some(a), None),
                        (false, true, _) => (a, Some(b), None),
                        (false, false, SyncKind::Resync) => (a, Some(b), None),
                        (false, false, _) => (a, None, Some(b)),
                    };
                    Step {
                        lba,
                        sectors: len,
                        source,
                        target,
                        compare,
                    }
                }
            };
            self.cursor += len;
            return Some(step);
        }
        None
    }
}

/// A role's state, `Missing` when it has no disk.
fn role_state(array: &Array, m: usize) -> RoleState {
    if array.roles[m].dev.is_some() {
        array.roles[m].state
    } else {
        RoleState::Missing
    }
}
