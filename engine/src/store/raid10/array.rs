//! A running RAID-10 array: its members by role and their states, the write-intent bitmap,
//! the event counter, and every state change written to the members' superblocks before it
//! takes effect. The worker drives the data I/O; this type decides where it may go.

use super::badblocks::BadBlocks;
use super::bitmap::{region_sectors_for, WriteIntent};
use super::member::{MemberDisk, DATA_OFFSET_SECTORS};
use super::sync::{SyncJob, SyncKind};
use super::{Layout, MemberState, Piece, Superblock, MAX_MEMBERS};
use std::fmt;

/// Where a role stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleState {
    /// In sync, read and written.
    Active,
    /// Being rebuilt: written always, read only below the rebuild checkpoint.
    Recovering,
    /// Failed by an I/O error or by the admin: never touched again until replaced.
    Failed,
    /// No disk (absent at start).
    Missing,
}

impl fmt::Display for RoleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoleState::Active => "normal",
            RoleState::Recovering => "recovering",
            RoleState::Failed => "failed",
            RoleState::Missing => "missing",
        })
    }
}

/// Errors injected into a member (like Coraid's per-drive `rdfail`), for tests and drills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// No injection.
    #[default]
    None,
    /// Reads fail with EIO.
    Read,
    /// Writes fail with EIO.
    Write,
    /// Every I/O fails with EIO.
    All,
    /// Every I/O is held without completing until the fault changes, then completes late
    /// (a dying disk stuck in its error recovery).
    Hang,
}

/// Per-member counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemberCounters {
    /// Data I/Os completed (client and sync).
    pub ios: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Read errors seen.
    pub read_errors: u64,
    /// Write errors seen.
    pub write_errors: u64,
    /// Read errors repaired by rewriting the region from the other copy.
    pub corrected: u64,
    /// Bytes read for client requests.
    pub read_bytes: u64,
    /// Bytes written for client requests.
    pub written_bytes: u64,
    /// Submission to completion of member reads for client requests.
    pub read_latency: crate::metrics::LatencyHistogram,
    /// Same, writes and flushes.
    pub write_latency: crate::metrics::LatencyHistogram,
}

/// One role of the array.
#[derive(Debug)]
pub struct Role {
    /// The disk in this role, if any.
    pub dev: Option<MemberDisk>,
    /// Its state.
    pub state: RoleState,
    /// I/Os submitted and not completed.
    pub in_flight: u32,
    /// Counters.
    pub counters: MemberCounters,
    /// Injected errors.
    pub fault: Fault,
    /// Member data sectors `[from, to)` the injected errors are limited to (none: all).
    pub fault_range: Option<(u64, u64)>,
    /// Member ranges that do not hold the array's data (never read from this member).
    pub bad: BadBlocks,
    /// Incarnation of the disk in this role (bumped whenever the disk changes): a completion
    /// of I/O issued to an earlier disk is recognised and cannot act on the new one.
    pub generation: u8,
}

impl Role {
    /// Whether an injected fault hits an I/O of `bytes` at member sector `sector`.
    pub fn fault_hits(&self, write: bool, sector: u64, bytes: u32) -> bool {
        let kind = match self.fault {
            Fault::None | Fault::Hang => false,
            Fault::Read => !write,
            Fault::Write => write,
            Fault::All => true,
        };
        kind && self.in_fault_range(sector, bytes)
    }

    fn in_fault_range(&self, sector: u64, bytes: u32) -> bool {
        self.fault_range
            .is_none_or(|(from, to)| sector < to && sector + u64::from(bytes).div_ceil(512) > from)
    }

    /// Whether an injected hang holds an I/O at member sector `sector`.
    pub fn hangs(&self, sector: u64, bytes: u32) -> bool {
        self.fault == Fault::Hang && self.in_fault_range(sector, bytes)
    }

    fn new(dev: Option<MemberDisk>, state: RoleState) -> Role {
        Role {
            dev,
            state,
            in_flight: 0,
            counters: MemberCounters::default(),
            fault: Fault::None,
            fault_range: None,
            bad: BadBlocks::new(),
            generation: 0,
        }
    }
}

/// An array-level failure to start or to change state.
#[derive(Debug, thiserror::Error)]
pub enum ArrayError {
    /// Assembly refused.
    #[error("{0}")]
    Assemble(#[from] super::AssembleError),
    /// Geometry.
    #[error("{0}")]
    Layout(#[from] super::LayoutError),
    /// A disk is unusable.
    #[error("{0}")]
    Disk(String),
    /// Metadata I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A RAID-10 array in service.
pub struct Array {
    /// The LUN name for logs (`e1.0`).
    pub label: String,
    uuid: [u8; 16],
    layout: Layout,
    member_sectors: u64,
    event: u64,
    /// Roles in order.
    pub roles: Vec<Role>,
    /// Regions that may differ between copies.
    pub intent: WriteIntent,
    /// The running sync job, if any.
    pub sync: Option<SyncJob>,
    /// A resync of the dirty regions is owed (after a crash or for a new array).
    pub resync_owed: bool,
    /// The owed resync is the initial sync of a new array (`initing`).
    pub initing: bool,
    /// Some I/O found no surviving copy.
    pub lost: bool,
    /// Rebuild checkpoint (array sectors) recorded for recovering roles.
    checkpoint: u64,
    /// Scrub results: pieces compared and mismatches found by the last scrub.
    pub last_scrub: Option<(u64, u64, bool)>,
    /// Identity of the next sync job (a step of an ended job cannot touch a newer one).
    next_job_id: u32,
    /// Members switched to buffered I/O because O_DIRECT refused an I/O.
    pub direct_fallbacks: u64,
    /// Members failed since start (I/O errors, metadata writes, the admin).
    pub member_failures: u64,
    /// Per role, the last event at which it was in sync (written into every superblock).
    seen: [u64; MAX_MEMBERS],
    /// Version of the newest bitmap write assigned (synchronous or queued).
    pub(super) bitmap_version: u64,
    /// Version of the newest bitmap on the members, shared with the metadata writer: a
    /// queued write older than what is already there is skipped, never written over it.
    bitmap_written: std::sync::Arc<parking_lot::Mutex<u64>>,
}

/// A bitmap write handed to the metadata writer thread (the worker never waits for it).
pub struct BitmapJob {
    /// Version: written only if newer than what the members hold.
    pub version: u64,
    /// The bits it records.
    pub snapshot: Vec<bool>,
    /// The on-disk block.
    pub block: Vec<u8>,
    /// The live members (role, their own descriptor).
    pub members: Vec<(usize, std::fs::File)>,
    /// Make the members' data stable before writing (a clear in write-back mode).
    pub flush_first: bool,
    /// The array's newest written version.
    pub written: std::sync::Arc<parking_lot::Mutex<u64>>,
}

/// What became of a [`BitmapJob`].
#[derive(Debug, Clone)]
pub struct BitmapDone {
    /// The job's version.
    pub version: u64,
    /// The job's bits.
    pub snapshot: Vec<bool>,
    /// Roles whose write (or flush) failed, with the error.
    pub failed: Vec<(usize, String)>,
    /// A newer bitmap was already on the members: nothing written.
    pub superseded: bool,
    /// Members that took it.
    pub written_to: usize,
}

impl BitmapJob {
    /// Writes the job (on the metadata writer thread): flush if asked, then the block to
    /// every member with an fdatasync, unless a newer version is already there.
    pub fn run(self) -> BitmapDone {
        let mut failed = Vec::new();
        let mut written_to = 0;
        let mut newest = self.written.lock();
        let superseded = *newest >= self.version;
        if !superseded {
            for (role, f) in &self.members {
                use std::os::unix::fs::FileExt;
                let flushed = if self.flush_first {
                    f.sync_data()
                } else {
                    Ok(())
                };
                let result = flushed
                    .and_then(|()| f.write_all_at(&self.block, super::bitmap::BITMAP_OFFSET))
                    .and_then(|()| f.sync_data());
                match result {
                    Ok(()) => written_to += 1,
                    Err(e) => failed.push((*role, e.to_string())),
                }
            }
            if written_to > 0 {
                *newest = self.version;
            }
        }
        BitmapDone {
            version: self.version,
            snapshot: self.snapshot,
            failed,
            superseded,
            written_to,
        }
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("label", &self.label)
            .field("members", &self.roles.len())
            .field("event", &self.event)
            .finish()
    }
}

/// What `Array::open` found and did, for the log.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// The array was created now.
    pub created: bool,
    /// Disks that hold a stale or damaged copy and are being rebuilt.
    pub rebuilding: Vec<usize>,
    /// Disks of the list that hold a stale copy and are not needed (handed to the spares).
    pub released: Vec<usize>,
    /// The newest superblock said writes may have been in flight.
    pub was_dirty: bool,
    /// Dirty regions to resync.
    pub dirty_regions: usize,
}

fn random_uuid() -> [u8; 16] {
    let mut u = [0u8; 16];
    // SAFETY: getrandom writes at most `u.len()` bytes into `u`.
    let n = unsafe { libc::getrandom(u.as_mut_ptr().cast(), u.len(), 0) };
    if n != u.len() as isize {
        // Fall back to time and pid: uniqueness, not secrecy, is what matters here.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        u[..16].copy_from_slice(&(t ^ ((std::process::id() as u128) << 64)).to_le_bytes());
    }
    u
}

impl Array {
    /// Opens the array whose configured members are `disks` (shelf index, path), looking for
    /// members that moved to `spares` (shelf index, path) during earlier rebuilds. Creates the
    /// array when no disk carries a superblock (`clean`: skip the initial sync). Consumes the
    /// spares it takes; returns the stale disks it releases through the report.
    pub fn open(
        label: &str,
        disks: &[(usize, std::path::PathBuf)],
        spares: &mut Vec<MemberDisk>,
        chunk_sectors: u64,
        clean: bool,
        degraded_start: bool,
        force: bool,
    ) -> Result<(Array, OpenReport), ArrayError> {
        let mut opened: Vec<Option<MemberDisk>> = Vec::new();
        let mut meta = Vec::new();
        for (disk, path) in disks {
            match MemberDisk::open(*disk, path) {
                Ok(d) => match d.read_metadata() {
                    Ok(m) => {
                        meta.push(Some(m));
                        opened.push(Some(d));
                    }
                    Err(e) => {
                        // A disk that fails its first read is treated as absent, never
                        // as a reason to keep the whole shelf down.
                        tracing::error!(lun = label, disk, path = %path.display(), error = %e, "member disk unreadable: treated as missing");
                        meta.push(None);
                        opened.push(None);
                    }
                },
                Err(e) => {
                    tracing::warn!(lun = label, disk, error = %e, "member disk cannot be opened");
                    meta.push(None);
                    opened.push(None);
                }
            }
        }
        use super::member::Metadata;
        let any_member = meta.iter().any(|m| matches!(m, Some(Metadata::Member(_))));
        if !any_member {
            if opened.iter().any(Option::is_none) {
                return Err(ArrayError::Disk(format!(
                    "{label}: cannot create a new array while a member disk is missing"
                )));
            }
            if let Some((i, why)) = meta.iter().enumerate().find_map(|(i, m)| match m {
                Some(Metadata::Damaged(w)) => Some((i, w.clone())),
                _ => None,
            }) {
                return Err(ArrayError::Disk(format!("{label}: disk {} has a damaged array superblock ({why}); wipe it deliberately before creating an array on it", disks[i].0)));
            }
            let devs: Vec<MemberDisk> = opened.into_iter().flatten().collect();
            return Array::create(label, devs, chunk_sectors, clean).map(|a| {
                (
                    a,
                    OpenReport {
                        created: true,
                        ..OpenReport::default()
                    },
                )
            });
        }
        // Members that moved onto spares belong to the array as much as the listed ones.
        let newest_uuid = meta
            .iter()
            .filter_map(|m| match m {
                Some(Metadata::Member(sb)) => Some(sb),
                _ => None,
            })
            .max_by_key(|sb| sb.event)
            .map(|sb| sb.array_uuid)
            .unwrap_or_default();
        let mut i = 0;
        while i < spares.len() {
            match spares[i].read_metadata() {
                Ok(Metadata::Member(sb))
                    if sb.array_uuid == newest_uuid && sb.state != MemberState::Spare =>
                {
                    let d = spares.remove(i);
                    tracing::info!(
                        lun = label,
                        disk = d.disk,
                        "a spare disk is a member of this array (taken in by an earlier rebuild)"
                    );
                    meta.push(Some(Metadata::Member(sb)));
                    opened.push(Some(d));
                }
                _ => i += 1,
            }
        }
        let found: Vec<(usize, Superblock)> = meta
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m {
                Some(Metadata::Member(sb)) => Some((i, sb.clone())),
                _ => None,
            })
            .collect();
        // Decide with degraded allowed, then apply the policy: a role may be filled by a
        // present disk of the list (stale, blank or damaged) that gets rebuilt; only roles
        // without any disk make the start "degraded".
        let asm = super::assemble(&found, true, force)?;
        let newest = found
            .iter()
            .find(|(p, _)| Some(*p) == asm.roles.iter().flatten().next().copied())
            .map(|(_, sb)| sb.clone())
            .ok_or(super::AssembleError::Empty)?;
        let mut candidates: Vec<usize> = asm.stale.clone();
        for (i, m) in meta.iter().enumerate() {
            if matches!(m, Some(Metadata::Blank) | Some(Metadata::Damaged(_))) {
                candidates.push(i);
            }
        }
        let mut roles: Vec<Role> = Vec::new();
        let mut report = OpenReport {
            was_dirty: asm.dirty,
            ..OpenReport::default()
        };
        let mut taken = vec![false; opened.len()];
        let mut role_paths = vec![None; asm.roles.len()];
        for (r, p) in asm.roles.iter().enumerate() {
            if let Some(p) = p {
                taken[*p] = true;
                role_paths[r] = Some((*p, false));
            }
        }
        // Fill missing roles: a stale disk goes back to its own role when it can.
        for (r, slot) in role_paths.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let own = candidates.iter().position(|c| {
                !taken[*c] && found.iter().any(|(p, sb)| p == c && sb.role as usize == r)
            });
            let pick = own.or_else(|| candidates.iter().position(|c| !taken[*c]));
            if let Some(k) = pick {
                let c = candidates[k];
                if opened[c]
                    .as_ref()
                    .is_some_and(|d| d.data_sectors() >= newest.member_sectors)
                {
                    taken[c] = true;
                    *slot = Some((c, true));
                }
            }
        }
        let missing: Vec<u32> = role_paths
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_none())
            .map(|(r, _)| r as u32)
            .collect();
        // Roles the newest superblock already knew to be out keep the array as degraded as
        // it was: that start is safe. A role that was in sync and has no disk now is a new
        // loss: only with degraded_start.
        let newly_missing: Vec<u32> = missing
            .iter()
            .copied()
            .filter(|r| !newest.knew_out(*r as usize))
            .collect();
        if !newly_missing.is_empty() && !degraded_start {
            return Err(super::AssembleError::DegradedNotAllowed(newly_missing).into());
        }
        if force && !asm.stale.is_empty() {
            tracing::warn!(lun = label, stale = ?asm.stale, "assembly forced: the newest side is kept, the other members are rebuilt from it");
        }
        let layout = Layout::new(
            newest.members as usize,
            newest.chunk_sectors as u64,
            newest.member_sectors,
        )?;
        let mut recovering_checkpoint = None;
        for slot in role_paths.iter() {
            let (dev, state) = match slot {
                None => (None, RoleState::Missing),
                Some((p, rebuild)) => {
                    let d = opened[*p].take();
                    let current = found.iter().find(|(q, _)| q == p).map(|(_, sb)| sb);
                    let state = if *rebuild {
                        if let Some(d) = &d {
                            report.rebuilding.push(d.disk);
                        }
                        RoleState::Recovering
                    } else if current.is_some_and(|sb| sb.state == MemberState::Recovering) {
                        let cp = current.map(|sb| sb.rebuild_checkpoint).unwrap_or(0);
                        recovering_checkpoint =
                            Some(recovering_checkpoint.map_or(cp, |c: u64| c.min(cp)));
                        RoleState::Recovering
                    } else {
                        RoleState::Active
                    };
                    (d, state)
                }
            };
            roles.push(Role::new(dev, state));
        }
        // A freshly re-added disk restarts the rebuild for everyone.
        let checkpoint = if report.rebuilding.is_empty() {
            recovering_checkpoint.unwrap_or(0)
        } else {
            0
        };
        for (p, d) in opened.iter_mut().enumerate() {
            if let Some(d) = d.take() {
                if taken[p] {
                    continue;
                }
                report.released.push(d.disk);
                spares.push(d);
            }
        }
        let mut intent = WriteIntent::new(layout.sectors(), region_sectors_for(layout.sectors()));
        let mut bitmap_ok = false;
        for role in &roles {
            if role.state != RoleState::Active {
                continue;
            }
            if let Some(d) = &role.dev {
                if let Ok(block) = d.read_bitmap() {
                    bitmap_ok |= intent.load_block(&block, &newest.array_uuid);
                }
            }
        }
        let initing = asm.dirty && newest.rebuild_checkpoint == u64::MAX;
        if asm.dirty && !bitmap_ok {
            tracing::warn!(
                lun = label,
                "the array was not shut down cleanly and no bitmap is readable: resyncing all of it"
            );
            intent.mark_all();
        }
        report.dirty_regions = intent.dirty_count();
        for (r, role) in roles.iter_mut().enumerate() {
            let Some(d) = &role.dev else {
                continue;
            };
            if role.state == RoleState::Recovering && report.rebuilding.contains(&d.disk) {
                // Re-added for a full rebuild: its old list no longer describes it.
                role.bad.unsaved = true;
                continue;
            }
            match d.read_badblocks(&newest.array_uuid) {
                Ok(list) => {
                    if !list.is_empty() {
                        tracing::warn!(lun = label, role = r, disk = d.disk, ranges = list.ranges().len(), sectors = list.sectors(), "member carries a bad-block list: those sectors are read from the other copy or answered as unreadable");
                    }
                    role.bad = list;
                }
                Err(e) => {
                    tracing::error!(lun = label, role = r, disk = d.disk, error = %e, "bad-block list unreadable: the member is rebuilt from its partner");
                    role.state = RoleState::Recovering;
                    role.bad.unsaved = true;
                    report.rebuilding.push(d.disk);
                }
            }
        }
        let checkpoint = if report.rebuilding.is_empty() {
            checkpoint
        } else {
            0
        };
        let mut array = Array {
            bitmap_version: 0,
            bitmap_written: Default::default(),
            label: label.to_string(),
            uuid: newest.array_uuid,
            layout,
            member_sectors: newest.member_sectors,
            event: asm.event,
            roles,
            intent,
            sync: None,
            resync_owed: report.dirty_regions > 0,
            initing,
            lost: false,
            checkpoint,
            last_scrub: None,
            next_job_id: 1,
            direct_fallbacks: 0,
            member_failures: 0,
            seen: newest.seen.as_deref().copied().unwrap_or([0; MAX_MEMBERS]),
        };
        array.commit("assembled")?;
        Ok((array, report))
    }

    /// Creates a new array on blank `devs` (in role order).
    fn create(
        label: &str,
        devs: Vec<MemberDisk>,
        chunk_sectors: u64,
        clean: bool,
    ) -> Result<Array, ArrayError> {
        let smallest = devs
            .iter()
            .min_by_key(|d| d.data_sectors())
            .ok_or_else(|| ArrayError::Disk(format!("{label}: no member disks")))?;
        let member_sectors = smallest.data_sectors();
        if member_sectors < chunk_sectors {
            return Err(ArrayError::Disk(format!(
                "{label}: disk {} ({}) is too small: it holds {} bytes, an array member needs at least {} (1 MiB of metadata + one {}-byte chunk)",
                smallest.disk,
                smallest.path().display(),
                smallest.sectors() * 512,
                (DATA_OFFSET_SECTORS + chunk_sectors) * 512,
                chunk_sectors * 512
            )));
        }
        let layout = Layout::new(devs.len(), chunk_sectors, member_sectors)?;
        let largest = devs.iter().map(|d| d.data_sectors()).max().unwrap_or(0);
        if largest > member_sectors + member_sectors / 10 {
            tracing::warn!(
                lun = label,
                smallest = member_sectors * 512,
                largest = largest * 512,
                "member sizes differ by more than 10%: every member only contributes the smallest one's size"
            );
        }
        let roles = devs
            .into_iter()
            .map(|d| {
                let mut role = Role::new(Some(d), RoleState::Active);
                // A new array: whatever list an earlier life of the disk left is void.
                role.bad.unsaved = true;
                role
            })
            .collect();
        let mut intent = WriteIntent::new(layout.sectors(), region_sectors_for(layout.sectors()));
        if !clean {
            intent.mark_all();
        }
        let mut array = Array {
            bitmap_version: 0,
            bitmap_written: Default::default(),
            label: label.to_string(),
            uuid: random_uuid(),
            layout,
            member_sectors,
            event: 0,
            roles,
            intent,
            sync: None,
            resync_owed: !clean,
            initing: !clean,
            lost: false,
            checkpoint: 0,
            last_scrub: None,
            next_job_id: 1,
            direct_fallbacks: 0,
            member_failures: 0,
            seen: [0; MAX_MEMBERS],
        };
        // The bitmap first (all dirty unless clean), then the superblocks that make it an
        // array: a crash in between leaves blank disks, never an array without its bitmap.
        array.persist_bitmap()?;
        array.commit(if clean {
            "created clean (members known to be zeroed)"
        } else {
            "created; initial sync starts"
        })?;
        Ok(array)
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Array capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.layout.sectors()
    }

    /// The event counter.
    pub fn event(&self) -> u64 {
        self.event
    }

    /// The rebuild checkpoint (array sectors below it are rebuilt on recovering roles).
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Moves the rebuild checkpoint (persisted with the next `commit`).
    pub fn set_checkpoint(&mut self, lba: u64) {
        self.checkpoint = lba;
    }

    fn superblock(&self, role: usize, state: MemberState, dirty: bool) -> Superblock {
        Superblock {
            array_uuid: self.uuid,
            role: role as u32,
            members: self.roles.len() as u32,
            chunk_sectors: self.layout.chunk_sectors() as u32,
            event: self.event,
            dirty,
            state,
            data_offset: DATA_OFFSET_SECTORS,
            member_sectors: self.member_sectors,
            array_sectors: self.layout.sectors(),
            rebuild_checkpoint: if state == MemberState::Recovering {
                self.checkpoint
            } else if self.initing {
                u64::MAX
            } else {
                0
            },
            home: home_of(&self.label),
            seen: Some(Box::new(self.seen)),
        }
    }

    /// Bumps the event counter and writes every live member's superblock (marked dirty:
    /// the array is in service). A member whose superblock cannot be written is failed.
    pub fn commit(&mut self, why: &str) -> Result<(), ArrayError> {
        self.persist_badblocks();
        self.write_superblocks(true, why)
    }

    /// Writes every changed bad-block list to its member (before any superblock that could
    /// make the listed sectors reachable). A member that cannot take its list is failed
    /// unless it holds the only in-sync copy of some data (then the list stays in memory and
    /// the error is logged).
    pub fn persist_badblocks(&mut self) {
        for r in 0..self.roles.len() {
            let role = &self.roles[r];
            if !role.bad.unsaved || !matches!(role.state, RoleState::Active | RoleState::Recovering)
            {
                continue;
            }
            let Some(d) = &role.dev else {
                continue;
            };
            match d.write_badblocks(&role.bad, &self.uuid) {
                Ok(()) => self.roles[r].bad.unsaved = false,
                Err(e) => {
                    tracing::error!(lun = %self.label, role = r, disk = d.disk, error = %e, "bad-block list not written");
                    if !self.only_copy(r) {
                        self.roles[r].state = RoleState::Failed;
                        self.member_failures += 1;
                        self.roles[r].bad.unsaved = false;
                    }
                }
            }
        }
    }

    /// Lists member sectors `sector..sector + sectors` of role `r` as not holding the array's
    /// data, and makes the list stable at once. Returns false if it could not be written.
    pub fn record_bad(&mut self, r: usize, sector: u64, sectors: u64, why: &str) -> bool {
        let Some(role) = self.roles.get_mut(r) else {
            return false;
        };
        if !role.bad.add(sector, sectors) {
            return true;
        }
        tracing::error!(lun = %self.label, role = r, disk = role.dev.as_ref().map(|d| d.disk), sector, sectors, why, "bad range recorded: never read from this member until rewritten");
        self.persist_badblocks();
        !self.roles[r].bad.unsaved
    }

    /// True when role `r` holds the only in-sync copy of some chunk: failing it would lose
    /// data, so errors on it are answered per range instead.
    pub fn only_copy(&self, r: usize) -> bool {
        let n = self.roles.len() as u64;
        (0..n.min(self.layout.chunks())).any(|chunk| {
            let copies = self.layout.locate(chunk * self.layout.chunk_sectors());
            copies.iter().any(|(m, _)| *m == r)
                && copies
                    .iter()
                    .all(|(m, _)| *m == r || self.roles[*m].state != RoleState::Active)
        })
    }

    /// Data sectors every member contributes.
    pub fn member_sectors(&self) -> u64 {
        self.member_sectors
    }

    /// Sectors listed bad over all members.
    pub fn bad_sectors(&self) -> u64 {
        self.roles.iter().map(|r| r.bad.sectors()).sum()
    }

    /// Clears bitmap regions no write touched for `idle` ticks (not while a resync is owed
    /// or running). Write-back (`writeback`): the data a region's bit protects must be stable
    /// before the bit goes, or a power cut would lose writes that no resync knows about, so
    /// every live member is flushed first. Returns true if members were flushed.
    pub fn clear_idle_regions(&mut self, tick: u64, idle: u64, writeback: bool) -> bool {
        if !self.may_clear_regions() {
            return false;
        }
        if writeback {
            self.flush_members();
        }
        if self.intent.clear_idle(tick, idle, self.bitmap_version) > 0 {
            if let Err(e) = self.persist_bitmap() {
                tracing::error!(lun = %self.label, error = %e, "bitmap update failed");
            }
        }
        writeback
    }

    /// Makes every live member's written data stable.
    fn flush_members(&mut self) {
        for m in 0..self.roles.len() {
            if !self.writable(m) {
                continue;
            }
            let res = self.roles[m].dev.as_ref().map(|d| d.sync_data());
            if let Some(Err(e)) = res {
                tracing::error!(lun = %self.label, member = m, error = %e, "flush before clearing the write-intent bitmap failed");
                if !self.only_copy(m) {
                    self.fail_role(m, "flush error");
                }
            }
        }
    }

    /// A fresh identity for a new sync job.
    pub fn new_job_id(&mut self) -> u32 {
        let id = self.next_job_id;
        self.next_job_id = self.next_job_id.wrapping_add(1).max(1);
        id
    }

    /// Orderly shutdown with nothing in flight: both copies agree everywhere except where a
    /// resync is still owed, so the bitmap keeps only those regions; a running rebuild keeps
    /// its checkpoint and resumes at the next start.
    pub fn close(&mut self) -> Result<(), ArrayError> {
        let resync_pending = self.resync_owed
            || self
                .sync
                .as_ref()
                .is_some_and(|s| s.kind == SyncKind::Resync);
        if let Some(j) = self.sync.as_ref().filter(|j| j.kind == SyncKind::Rebuild) {
            self.checkpoint = j.checkpoint();
        }
        if !resync_pending {
            self.intent.load(&[]);
        }
        self.persist_bitmap()?;
        self.persist_badblocks();
        self.write_superblocks(resync_pending, "stopped")
    }

    fn write_superblocks(&mut self, dirty: bool, why: &str) -> Result<(), ArrayError> {
        self.event += 1;
        loop {
            for (r, role) in self.roles.iter().enumerate() {
                if role.state == RoleState::Active && role.dev.is_some() {
                    self.seen[r] = self.event;
                }
            }
            let mut failed_now = None;
            let mut written = 0;
            for r in 0..self.roles.len() {
                let state = match self.roles[r].state {
                    RoleState::Active => MemberState::Active,
                    RoleState::Recovering => MemberState::Recovering,
                    _ => continue,
                };
                let sb = self.superblock(r, state, dirty);
                let Some(dev) = &self.roles[r].dev else {
                    continue;
                };
                if let Err(e) = dev.write_superblock(&sb) {
                    tracing::error!(lun = %self.label, role = r, disk = dev.disk, error = %e, "superblock write failed: failing the member");
                    failed_now = Some(r);
                    break;
                }
                written += 1;
            }
            match failed_now {
                Some(r) => {
                    self.roles[r].state = RoleState::Failed;
                    self.member_failures += 1;
                    self.event += 1;
                }
                None => {
                    if written == 0 {
                        return Err(ArrayError::Disk(format!(
                            "{}: no member accepted the superblock update",
                            self.label
                        )));
                    }
                    tracing::info!(lun = %self.label, event = self.event, state = %self.state(), why, "array metadata updated");
                    return Ok(());
                }
            }
        }
    }

    /// Writes the bitmap block to every live member now (before the writes it announces),
    /// on the calling thread. The worker queues [`Array::bitmap_job`]s instead, except at
    /// assembly and at the end of a resync.
    pub fn persist_bitmap(&mut self) -> Result<(), ArrayError> {
        self.bitmap_version += 1;
        let version = self.bitmap_version;
        let snapshot = self.intent.snapshot();
        let block = self.intent.encode_block(&self.uuid);
        let mut ok = 0;
        let mut failed = Vec::new();
        {
            let mut newest = self.bitmap_written.lock();
            for (r, role) in self.roles.iter().enumerate() {
                if !matches!(role.state, RoleState::Active | RoleState::Recovering) {
                    continue;
                }
                if let Some(d) = &role.dev {
                    match d.write_bitmap(&block) {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            tracing::error!(lun = %self.label, role = r, error = %e, "bitmap write failed");
                            failed.push(r);
                        }
                    }
                }
            }
            if ok > 0 {
                *newest = version;
            }
        }
        for r in failed {
            self.fail_role(r, "bitmap write failed");
        }
        if ok == 0 {
            return Err(ArrayError::Disk(format!(
                "{}: no member accepted the bitmap update",
                self.label
            )));
        }
        self.intent.written(&snapshot, version);
        Ok(())
    }

    /// A bitmap write of the current bits for the metadata writer thread.
    pub fn bitmap_job(&mut self, flush_first: bool) -> BitmapJob {
        self.bitmap_version += 1;
        let members = self
            .roles
            .iter()
            .enumerate()
            .filter(|(_, role)| matches!(role.state, RoleState::Active | RoleState::Recovering))
            .filter_map(|(r, role)| Some((r, role.dev.as_ref()?.metadata_handle().ok()?)))
            .collect();
        BitmapJob {
            version: self.bitmap_version,
            snapshot: self.intent.snapshot(),
            block: self.intent.encode_block(&self.uuid),
            members,
            flush_first,
            written: self.bitmap_written.clone(),
        }
    }

    /// Applies what became of a queued bitmap write: members that failed it are failed;
    /// regions it recorded become durable.
    pub fn bitmap_done(&mut self, done: &BitmapDone) {
        for (r, e) in &done.failed {
            tracing::error!(lun = %self.label, role = r, error = %e, "bitmap write failed");
            self.fail_role(*r, "bitmap write failed");
        }
        if !done.superseded && done.written_to > 0 {
            self.intent.written(&done.snapshot, done.version);
        }
    }

    /// Whether idle regions may be cleared now: some are dirty, and no resync is owed or
    /// running (it needs the dirty bits).
    fn may_clear_regions(&self) -> bool {
        let resyncing = self.resync_owed
            || self
                .sync
                .as_ref()
                .is_some_and(|j| j.kind == SyncKind::Resync);
        !resyncing && self.intent.dirty_count() > 0
    }

    /// The array's identity.
    pub fn uuid(&self) -> [u8; 16] {
        self.uuid
    }

    /// The newest bitmap version assigned (regions cleared now are cleared after it).
    pub fn bitmap_version(&self) -> u64 {
        self.bitmap_version
    }

    /// Clears the bitmap regions idle for `idle` ticks (not while a resync is owed or runs)
    /// and returns the bitmap write that records it, for the metadata writer. In write-back
    /// mode the job makes the members' data stable before it writes.
    pub fn clear_idle_job(&mut self, tick: u64, idle: u64, writeback: bool) -> Option<BitmapJob> {
        if !self.may_clear_regions() {
            return None;
        }
        let version = self.bitmap_version;
        (self.intent.clear_idle(tick, idle, version) > 0).then(|| self.bitmap_job(writeback))
    }

    /// Fails role `r` (I/O error or admin) and records it on the other members before
    /// anything else happens. Returns false if it was not live.
    pub fn fail_role(&mut self, r: usize, why: &str) -> bool {
        let Some(role) = self.roles.get_mut(r) else {
            return false;
        };
        if !matches!(role.state, RoleState::Active | RoleState::Recovering) {
            return false;
        }
        role.state = RoleState::Failed;
        let disk = role.dev.as_ref().map(|d| d.disk);
        self.member_failures += 1;
        tracing::error!(lun = %self.label, role = r, disk, why, "member failed");
        self.interrupt_copy_jobs("a member failed");
        if let Some(d) = &self.roles[r].dev {
            // Best effort: a failing disk may not take it; the event counter decides anyway.
            let sb = self.superblock(r, MemberState::Failed, true);
            let _ = d.write_superblock(&sb);
        }
        if let Err(e) = self.commit("member failed") {
            tracing::error!(lun = %self.label, error = %e, "could not record the failure on any member");
        }
        if self.unreadable_chunk() {
            self.lost = true;
        }
        true
    }

    /// Membership changed: a running resync or scrub stops (md interrupts recovery the
    /// same way), since steps planned for the old members must not copy from or onto the new
    /// ones; a resync is owed again and restarts once the members are settled.
    fn interrupt_copy_jobs(&mut self, why: &str) {
        match self.sync.as_ref().map(|j| j.kind) {
            Some(SyncKind::Resync) => {
                self.sync = None;
                self.resync_owed = true;
                tracing::warn!(lun = %self.label, why, "resync interrupted: it restarts from the beginning");
            }
            Some(SyncKind::Scrub { .. }) => {
                self.sync = None;
                tracing::warn!(lun = %self.label, why, "scrub interrupted");
            }
            _ => {}
        }
    }

    /// Puts `dev` into role `r` (failed or missing) to be rebuilt. Returns the disk back if
    /// the role is live or the disk too small.
    pub fn add_for_rebuild(&mut self, r: usize, dev: MemberDisk) -> Result<(), MemberDisk> {
        if r >= self.roles.len()
            || matches!(
                self.roles[r].state,
                RoleState::Active | RoleState::Recovering
            )
            || dev.data_sectors() < self.member_sectors
        {
            return Err(dev);
        }
        tracing::info!(lun = %self.label, role = r, disk = dev.disk, path = %dev.path().display(), "disk added: rebuild starts");
        let old = self.roles[r].dev.replace(dev);
        drop(old);
        let role = &mut self.roles[r];
        role.state = RoleState::Recovering;
        role.fault = Fault::None;
        role.fault_range = None;
        role.counters = MemberCounters::default();
        role.generation = role.generation.wrapping_add(1);
        // Whatever list the disk carries from an earlier life is void: written empty.
        role.bad = BadBlocks::new();
        role.bad.unsaved = true;
        self.checkpoint = 0;
        // A running rebuild restarts from the beginning so that it covers the new role.
        if self
            .sync
            .as_ref()
            .is_some_and(|s| s.kind == SyncKind::Rebuild)
        {
            self.sync = None;
        }
        self.interrupt_copy_jobs("a disk was added");
        if let Err(e) = self.commit("disk added for rebuild") {
            tracing::error!(lun = %self.label, error = %e, "could not record the new member");
        }
        Ok(())
    }

    /// Takes the disk out of a failed role (to eject or replace it).
    pub fn take_failed(&mut self, r: usize) -> Option<MemberDisk> {
        let role = self.roles.get_mut(r)?;
        if role.state != RoleState::Failed {
            return None;
        }
        role.generation = role.generation.wrapping_add(1);
        role.dev.take()
    }

    /// True when some chunk has no readable copy.
    pub fn unreadable_chunk(&self) -> bool {
        let n = self.roles.len() as u64;
        (0..n.min(self.layout.chunks())).any(|chunk| {
            self.layout
                .locate(chunk * self.layout.chunk_sectors())
                .iter()
                .all(|(m, _)| self.roles[*m].state != RoleState::Active)
        })
    }

    /// A failed or missing role, if any.
    pub fn role_needing_disk(&self) -> Option<usize> {
        self.roles
            .iter()
            .position(|r| matches!(r.state, RoleState::Failed | RoleState::Missing))
    }

    /// Whether copy `m` of `piece` may be read.
    pub fn readable(&self, m: usize, piece: &Piece) -> bool {
        let role = &self.roles[m];
        if role.dev.is_none() {
            return false;
        }
        if !role.bad.is_empty() {
            let sector = piece.copies.iter().find(|(c, _)| *c == m).map(|(_, s)| *s);
            if sector.is_none_or(|s| role.bad.overlaps(s, piece.sectors)) {
                return false;
            }
        }
        match role.state {
            RoleState::Active => true,
            RoleState::Recovering => {
                self.sync
                    .as_ref()
                    .is_some_and(|s| s.kind == SyncKind::Rebuild)
                    && piece.array_lba + piece.sectors <= self.checkpoint
            }
            _ => false,
        }
    }

    /// Whether role `m` takes writes.
    pub fn writable(&self, m: usize) -> bool {
        self.roles[m].dev.is_some()
            && matches!(
                self.roles[m].state,
                RoleState::Active | RoleState::Recovering
            )
    }

    /// The copy to read `piece` from: during a resync only the first readable copy (so that
    /// two reads of an unsynced region agree), else the one with the fewest I/Os in flight.
    /// `avoid` excludes a member that just failed this read.
    pub fn pick_read(&self, piece: &Piece, avoid: Option<usize>) -> Option<usize> {
        let candidates = piece
            .copies
            .iter()
            .map(|(m, _)| *m)
            .filter(|m| Some(*m) != avoid && self.readable(*m, piece));
        let resyncing = self.resync_owed
            || self
                .sync
                .as_ref()
                .is_some_and(|s| s.kind == SyncKind::Resync);
        if resyncing && self.intent.is_dirty_at(piece.array_lba) {
            return candidates.into_iter().next();
        }
        candidates.min_by_key(|m| self.roles[*m].in_flight)
    }

    /// States shown for the LUN: `normal`, or a combination of `initing`, `degraded`,
    /// `recovering`, `failed`.
    pub fn state(&self) -> String {
        let mut parts = Vec::new();
        if self.initing && (self.resync_owed || self.sync.is_some()) {
            parts.push("initing");
        }
        if self.roles.iter().any(|r| r.state != RoleState::Active) {
            parts.push("degraded");
        }
        if self.roles.iter().any(|r| r.state == RoleState::Recovering) {
            parts.push("recovering");
        }
        if self.lost || self.unreadable_chunk() {
            parts.push("failed");
        }
        if self.roles.iter().any(|r| !r.bad.is_empty()) {
            parts.push("badblocks");
        }
        if parts.is_empty() {
            "normal".into()
        } else {
            parts.join(",")
        }
    }

    /// True while not every role is active and in sync.
    pub fn degraded(&self) -> bool {
        self.roles.iter().any(|r| r.state != RoleState::Active)
    }

    /// Starts the next sync job owed, if none runs: rebuild first, then resync.
    pub fn next_job(&mut self) -> Option<&SyncJob> {
        if self.sync.is_none() {
            let rebuild = self
                .roles
                .iter()
                .any(|r| r.state == RoleState::Recovering && r.dev.is_some());
            if rebuild {
                let id = self.new_job_id();
                self.sync = Some(SyncJob::new(
                    SyncKind::Rebuild,
                    self.checkpoint,
                    self.sectors(),
                    id,
                ));
            } else if self.resync_owed {
                self.resync_owed = false;
                let id = self.new_job_id();
                self.sync = Some(SyncJob::new(SyncKind::Resync, 0, self.sectors(), id));
            }
            if let Some(j) = &self.sync {
                tracing::info!(lun = %self.label, job = %j.kind, from = j.cursor, "sync job starts");
            }
        }
        self.sync.as_ref()
    }
}

/// The (shelf, slot) of a label `e<shelf>.<slot>`.
fn home_of(label: &str) -> Option<(u16, u8)> {
    let (shelf, slot) = label.strip_prefix('e')?.split_once('.')?;
    Some((shelf.parse().ok()?, slot.parse().ok()?))
}
