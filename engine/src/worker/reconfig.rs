//! Online reconfiguration from the console: make, online/offline, remove/eject, restore,
//! spares, labels and masks. Each runs between batches on the worker that owns the LUNs, so
//! other LUNs keep serving; each change is saved in the LUN book before it is reported.

use super::console::Answer;
use super::raid::ArrayPace;
use super::{Op, Target, Worker, NO_TARGET};
use crate::lun::{LunKind, LunRecord, LunState};
use crate::metrics::LunCounters;
use crate::store::raid10::{Array, MemberDisk, Metadata};
use crate::store::{Backing, BackingOptions};
use serde_json::json;
use std::fmt::Write as _;
use std::sync::Arc;

/// What a shelf disk is used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DiskUse {
    /// Nothing.
    Free,
    /// Member `L.R.C` of an array (state).
    Member(String, String),
    /// A jbod LUN.
    Jbod(u8),
    /// A hot spare.
    Spare,
    /// Failed and taken out of its array.
    Failed,
}

impl DiskUse {
    /// As the console prints it.
    pub(super) fn describe(&self) -> String {
        match self {
            DiskUse::Free => "free".into(),
            DiskUse::Member(m, state) => format!("{m} {state}"),
            DiskUse::Jbod(l) => format!("jbod {l}"),
            DiskUse::Spare => "spare".into(),
            DiskUse::Failed => "failed".into(),
        }
    }
}

/// An array found on unused disks: its UUID and (disk, superblock) per member found.
type FoundArray = ([u8; 16], Vec<(usize, crate::store::raid10::Superblock)>);

/// Parses a LUN number (0..=254).
pub(super) fn parse_lun(arg: &str) -> Result<u8, String> {
    arg.parse::<u8>()
        .ok()
        .filter(|n| *n != 255)
        .ok_or_else(|| format!("'{arg}' is not a valid lun value (0..254)"))
}

/// Most disks one shelf may list (bounds ranges typed at the console).
const MAX_SHELF_DISKS: usize = 4096;

/// Parses disk names: `7.0`, `0`, ranges `7.0-3` or `0-3`; the shelf, when given, must be
/// `shelf`.
pub(super) fn parse_disks(args: &[&str], shelf: u16) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for arg in args {
        let local = match arg.split_once('.') {
            Some((s, rest)) => {
                if s.parse::<u16>().ok() != Some(shelf) {
                    return Err(format!("disk '{arg}' is not on shelf {shelf}"));
                }
                rest
            }
            None => arg,
        };
        let bad = || format!("'{arg}' is not a disk (e.g. {shelf}.0, {shelf}.0-3)");
        let (from, to) = match local.split_once('-') {
            Some((a, b)) => (
                a.parse::<usize>().map_err(|_| bad())?,
                b.parse::<usize>().map_err(|_| bad())?,
            ),
            None => {
                let n = local.parse::<usize>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if to < from {
            return Err(bad());
        }
        // Bounded before anything is allocated: a shelf has at most this many disks.
        if to >= MAX_SHELF_DISKS || out.len() + (to - from) >= MAX_SHELF_DISKS {
            return Err(format!(
                "'{arg}' names more disks than a shelf can hold ({MAX_SHELF_DISKS})"
            ));
        }
        for d in from..=to {
            if out.contains(&d) {
                return Err(format!("disk {shelf}.{d} is named twice"));
            }
            out.push(d);
        }
    }
    Ok(out)
}

impl Worker {
    /// What every shelf disk is used for.
    pub(super) fn disk_uses(&self) -> Vec<DiskUse> {
        let mut uses = vec![DiskUse::Free; self.book.config.disks.len()];
        let mut set = |d: usize, u: DiskUse| {
            if let Some(slot) = uses.get_mut(d) {
                *slot = u;
            }
        };
        for t in self.existing() {
            let Some(r) = self.book.record(t) else {
                continue;
            };
            match &self.arrays[t] {
                Some(a) => {
                    for (i, &d) in r.disks.iter().enumerate() {
                        let state = a
                            .roles
                            .get(i)
                            .map_or("missing".into(), |r| r.state.to_string());
                        set(d, DiskUse::Member(format!("{}.0.{i}", r.slot), state));
                    }
                    for (i, role) in a.roles.iter().enumerate() {
                        if let Some(dev) = &role.dev {
                            set(
                                dev.disk,
                                DiskUse::Member(
                                    format!("{}.0.{i}", r.slot),
                                    role.state.to_string(),
                                ),
                            );
                        }
                    }
                }
                None if r.kind == LunKind::Jbod => {
                    if let Some(&d) = r.disks.first() {
                        set(d, DiskUse::Jbod(r.slot));
                    }
                }
                None => {}
            }
        }
        for d in &self.spares {
            set(d.disk, DiskUse::Spare);
        }
        for d in &self.failed_disks {
            set(d.disk, DiskUse::Failed);
        }
        uses
    }

    fn check_free(&self, disks: &[usize]) -> Result<(), String> {
        let uses = self.disk_uses();
        let shelf = self.shelf;
        for &d in disks {
            match uses.get(d) {
                None => {
                    return Err(format!(
                        "disk {shelf}.{d} does not exist (the shelf has {} disks)",
                        uses.len()
                    ))
                }
                Some(DiskUse::Free) => {}
                Some(u) => return Err(format!("disk {shelf}.{d} is in use ({})", u.describe())),
            }
        }
        Ok(())
    }

    /// Puts a new target in the first removed entry (or at the end); returns its index.
    fn insert_target(&mut self, target: Target, array: Option<Array>, record: LunRecord) -> usize {
        let t = (0..self.targets.len())
            .find(|&t| self.book.record(t).is_none())
            .unwrap_or(self.targets.len());
        if t == self.targets.len() {
            self.targets.push(Arc::new(target));
            self.arrays.push(array);
            self.pace.push(ArrayPace::default());
            self.buffered_only.push(false);
            self.luns.push(LunCounters::default());
            self.book.records.push(Some(record));
        } else {
            self.targets[t] = Arc::new(target);
            self.arrays[t] = array;
            self.pace[t] = ArrayPace::default();
            self.buffered_only[t] = false;
            self.luns[t] = LunCounters::default();
            self.book.records[t] = Some(record);
        }
        self.register_target_files(t);
        self.publish_health(t);
        self.apply_access_to(t);
        t
    }

    fn fresh_state(&self, slot: u8) -> Result<LunState, String> {
        let path = crate::lun::state_path(&self.book.config.state_dir, self.shelf, slot);
        // A new LUN starts with an empty config string, mask and reservation.
        let _ = std::fs::remove_file(&path);
        LunState::open(path, &[])
            .map(|s| s.with_services(&self.book.services, format!("e{}.{slot}", self.shelf)))
            .map_err(|e| e.to_string())
    }

    fn new_target(
        &self,
        slot: u8,
        state: LunState,
        backing: Option<Backing>,
        sectors: u64,
    ) -> Target {
        Target::new(
            self.shelf,
            slot,
            state,
            backing,
            sectors,
            false,
            true,
            self.book.config.buffer_count,
            &self.book.host,
        )
    }

    /// `make [-c] LUN TYPE DISKS`: a new LUN, offline.
    pub(super) fn cmd_make(&mut self, args: &[&str]) -> Result<Answer, String> {
        let clean = args.contains(&"-c");
        let rest: Vec<&str> = args.iter().copied().filter(|a| *a != "-c").collect();
        let [lun, kind, disk_args @ ..] = rest.as_slice() else {
            return Err(
                "usage: make [-c] LUN raid10|raid1|jbod DISKS (e.g. make 3 raid10 7.0-3)".into(),
            );
        };
        let slot = parse_lun(lun)?;
        if self.target_of(slot).is_ok() {
            return Err(format!("LUN {slot} exists already"));
        }
        let disks = parse_disks(disk_args, self.shelf)?;
        let (kind, wanted) = match *kind {
            "raid10" => (LunKind::Raid10, disks.len() >= 2),
            "raid1" => (LunKind::Raid1, disks.len() == 2),
            "jbod" => (LunKind::Jbod, disks.len() == 1),
            "raid0" | "raid5" | "raid6rs" | "raidl" | "raidL" | "raw" => {
                return Err(format!(
                    "{kind} is not supported by ethershelf: use raid10, raid1 or jbod"
                ))
            }
            other => {
                return Err(format!(
                    "unknown LUN type '{other}': use raid10, raid1 or jbod"
                ))
            }
        };
        if !wanted {
            return Err(format!(
                "{} needs {} (got {})",
                kind.name(),
                match kind {
                    LunKind::Raid1 => "exactly 2 disks",
                    LunKind::Jbod => "exactly 1 disk",
                    _ => "at least 2 disks",
                },
                disks.len()
            ));
        }
        self.check_free(&disks)?;
        let label = format!("e{}.{slot}", self.shelf);
        let state = self.fresh_state(slot)?;
        let chunk = ethershelf_config::DEFAULT_CHUNK;
        let mut record = LunRecord {
            slot,
            kind: kind.clone(),
            file: None,
            offset: 0,
            length: None,
            direct: true,
            disks: disks.clone(),
            chunk,
            read_only: false,
            writeback: false,
            online: false,
            label: String::new(),
        };
        let paths: Vec<(usize, std::path::PathBuf)> = disks
            .iter()
            .map(|&d| (d, self.book.config.disks[d].clone()))
            .collect();
        let (target, array, what) = if kind == LunKind::Jbod {
            let backing = Backing::open(
                &paths[0].1,
                &BackingOptions {
                    exclusive: false,
                    read_only: false,
                    direct: true,
                    offset: 0,
                    length: None,
                },
            )
            .map_err(|e| format!("disk {}.{}: {e}", self.shelf, paths[0].0))?;
            let sectors = backing.sectors();
            (
                self.new_target(slot, state, Some(backing), sectors),
                None,
                "jbod".to_string(),
            )
        } else {
            // A made array is new: whatever metadata the disks carried goes.
            for (d, path) in &paths {
                let dev = MemberDisk::open(*d, path)
                    .map_err(|e| format!("disk {}.{d}: {e}", self.shelf))?;
                dev.wipe_metadata()
                    .map_err(|e| format!("disk {}.{d}: clearing old metadata: {e}", self.shelf))?;
            }
            let (array, _) = Array::open(
                &label,
                &paths,
                &mut Vec::new(),
                chunk / 512,
                clean,
                false,
                false,
            )
            .map_err(|e| e.to_string())?;
            let sectors = array.sectors();
            let what = format!(
                "{} over {} disks{}",
                kind.name(),
                disks.len(),
                if clean {
                    ", clean (no initial sync)"
                } else {
                    ", initial sync running"
                }
            );
            (
                self.new_target(slot, state, None, sectors),
                Some(array),
                what,
            )
        };
        let size = target.sectors * 512;
        record.kind = kind;
        let t = self.insert_target(target, array, record);
        tracing::info!(lun = %label, what = %what, bytes = size, "LUN made (offline) from the console");
        self.persist_book()?;
        let _ = t;
        Ok(Answer {
            text: format!(
                "LUN {slot} made: {what}, {:.3}GB, offline (mask it, then 'online {slot}')\n",
                size as f64 / 1e9
            ),
            json: json!({"ok": true, "lun": slot, "type": what, "bytes": size, "online": false}),
        })
    }

    /// `online LUN...` / `offline LUN...`.
    pub(super) fn cmd_online(&mut self, luns: &[&str], online: bool) -> Result<Answer, String> {
        let slots = luns
            .iter()
            .map(|l| parse_lun(l))
            .collect::<Result<Vec<u8>, String>>()?;
        let ts = slots
            .iter()
            .map(|&s| {
                self.target_of(s)
                    .map_err(|e| format!("{e}, skipping nothing"))
            })
            .collect::<Result<Vec<usize>, String>>()?;
        for &t in &ts {
            let slot = self.targets[t].slot;
            if online && !self.book.is_online(t) {
                self.by_slot[slot as usize] = t as u16;
                self.live.push(t as u16);
            } else if !online && self.book.is_online(t) {
                self.by_slot[slot as usize] = NO_TARGET;
                self.live.retain(|&l| l as usize != t);
            }
            if let Some(Some(r)) = self.book.records.get_mut(t) {
                r.online = online;
            }
            let word = if online { "online" } else { "offline" };
            tracing::info!(lun = %format!("e{}.{slot}", self.shelf), "LUN {word} (console)");
        }
        if online {
            self.announce();
        }
        self.persist_book()?;
        let word = if online { "online" } else { "offline" };
        Ok(Answer {
            text: format!(
                "{} {word}\n",
                slots
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            json: json!({"ok": true, "luns": slots, "online": online}),
        })
    }

    /// `remove LUN` (clear RAID metadata) or `eject LUN` (keep it): the LUN must be offline.
    pub(super) fn cmd_remove(&mut self, lun: &str, wipe: bool) -> Result<Answer, String> {
        let slot = parse_lun(lun)?;
        let t = self
            .target_of(slot)
            .map_err(|_| format!("LUN {slot} not found, skipping"))?;
        if self.book.is_online(t) {
            return Err(format!("LUN {slot} is online: 'offline {slot}' first"));
        }
        let busy = self
            .slots
            .iter()
            .any(|s| s.op != Op::Idle && s.target as usize == t)
            || self
                .sync_slots
                .iter()
                .flatten()
                .any(|s| s.target as usize == t);
        if busy {
            return Err(format!(
                "LUN {slot} still has I/O in flight; try again in a moment"
            ));
        }
        let label = format!("e{}.{slot}", self.shelf);
        if let Some(mut a) = self.arrays[t].take() {
            if wipe {
                for role in &a.roles {
                    if let Some(dev) = &role.dev {
                        if let Err(e) = dev.wipe_metadata() {
                            tracing::warn!(lun = %label, disk = dev.disk, error = %e, "could not clear the disk's RAID metadata");
                        }
                    }
                }
            } else if let Err(e) = a.close() {
                tracing::error!(lun = %label, error = %e, "could not mark the ejected array clean");
            }
        }
        if wipe {
            let _ = std::fs::remove_file(self.targets[t].state.path());
        }
        // Dropping the old target closes its file; a detached stand-in keeps the index.
        self.targets[t] = Arc::new(self.new_target(slot, LunState::detached(), None, 0));
        self.register_target_files(t);
        self.book.records[t] = None;
        self.luns[t] = LunCounters::default();
        let verb = if wipe { "removed" } else { "ejected" };
        tracing::info!(lun = %label, "LUN {verb} (console)");
        self.persist_book()?;
        Ok(Answer::done(format!(
            "LUN {slot} {verb}{}\n",
            if wipe {
                ""
            } else {
                "; its disks keep their metadata ('restore' on the shelf that gets them)"
            }
        )))
    }

    /// `restore [-l] [SHELF [LUN [NEWLUN]]]`: arrays found on unused disks.
    pub(super) fn cmd_restore(&mut self, args: &[&str]) -> Result<Answer, String> {
        let list_only = args.first() == Some(&"-l");
        let args: Vec<&str> = args.iter().copied().filter(|a| *a != "-l").collect();
        let want_shelf = args
            .first()
            .map(|s| {
                s.parse::<u16>()
                    .map_err(|_| format!("'{s}' is not a shelf number"))
            })
            .transpose()?;
        let want_lun = args.get(1).map(|s| parse_lun(s)).transpose()?;
        let new_lun = args.get(2).map(|s| parse_lun(s)).transpose()?;
        let uses = self.disk_uses();
        // Group the superblocks found on free disks by array.
        let mut found: Vec<FoundArray> = Vec::new();
        for (d, path) in self.book.config.disks.iter().enumerate() {
            if uses[d] != DiskUse::Free {
                continue;
            }
            let Ok(dev) = MemberDisk::open(d, path) else {
                continue;
            };
            if let Ok(Metadata::Member(sb)) = dev.read_metadata() {
                match found.iter_mut().find(|(u, _)| *u == sb.array_uuid) {
                    Some((_, v)) => v.push((d, sb)),
                    None => found.push((sb.array_uuid, vec![(d, sb)])),
                }
            }
        }
        let shelf = self.shelf;
        let mut text = String::new();
        let mut listed = Vec::new();
        let mut restored = Vec::new();
        for (_, all) in &found {
            let newest = all.iter().map(|(_, sb)| sb).max_by_key(|sb| sb.event);
            let Some(sb) = newest.cloned() else { continue };
            // Disks with an older event are stale (failed out before the move): not used.
            let members: Vec<(usize, crate::store::raid10::Superblock)> = all
                .iter()
                .filter(|(_, m)| m.event == sb.event)
                .cloned()
                .collect();
            let (home_shelf, home_lun) = sb.home.map_or((None, None), |(s, l)| (Some(s), Some(l)));
            if want_shelf.is_some() && home_shelf != want_shelf {
                continue;
            }
            if want_lun.is_some() && home_lun != want_lun {
                continue;
            }
            let disks: Vec<usize> = members.iter().map(|(d, _)| *d).collect();
            let disk_names: Vec<String> = disks.iter().map(|d| format!("{shelf}.{d}")).collect();
            let home = match (home_shelf, home_lun) {
                (Some(s), Some(l)) => format!("{s}.{l}"),
                _ => "?".into(),
            };
            let size = sb.array_sectors * 512;
            if list_only {
                let _ = writeln!(
                    text,
                    "{home}  raid10  {} of {} members  {:.3}GB  disks {}",
                    members.len(),
                    sb.members,
                    size as f64 / 1e9,
                    disk_names.join(",")
                );
                listed.push(json!({"from": home, "members_found": members.len(),
                    "members": sb.members, "bytes": size, "disks": disk_names}));
                continue;
            }
            let Some(slot) = new_lun.or(home_lun) else {
                let _ = writeln!(
                    text,
                    "array on {} has no recorded LUN: name one (restore SHELF LUN NEWLUN)",
                    disk_names.join(",")
                );
                continue;
            };
            if self.target_of(slot).is_ok() {
                return Err(format!(
                    "LUN {slot} exists already: restore {home} as another LUN (restore SHELF LUN NEWLUN)"
                ));
            }
            let label = format!("e{shelf}.{slot}");
            let mut by_role = members;
            by_role.sort_by_key(|(_, sb)| sb.role);
            let paths: Vec<(usize, std::path::PathBuf)> = by_role
                .iter()
                .map(|(d, _)| (*d, self.book.config.disks[*d].clone()))
                .collect();
            let (array, report) = Array::open(
                &label,
                &paths,
                &mut Vec::new(),
                sb.chunk_sectors as u64,
                false,
                true,
                false,
            )
            .map_err(|e| format!("restoring {home} as LUN {slot}: {e}"))?;
            let state = self.fresh_state(slot)?;
            let sectors = array.sectors();
            let record = LunRecord {
                slot,
                kind: if sb.members == 2 {
                    LunKind::Raid1
                } else {
                    LunKind::Raid10
                },
                file: None,
                offset: 0,
                length: None,
                direct: true,
                disks: by_role.iter().map(|(d, _)| *d).collect(),
                chunk: sb.chunk_sectors as u64 * 512,
                read_only: false,
                writeback: false,
                online: false,
                label: String::new(),
            };
            let target = self.new_target(slot, state, None, sectors);
            self.insert_target(target, Some(array), record);
            tracing::info!(lun = %label, from = %home, disks = ?disks, was_dirty = report.was_dirty, "array restored (offline) from the console");
            let _ = writeln!(
                text,
                "{home} restored as LUN {slot} ({} of {} members, {:.3}GB), offline",
                by_role.len(),
                sb.members,
                size as f64 / 1e9
            );
            restored.push(json!({"from": home, "lun": slot, "disks": disk_names}));
        }
        if text.is_empty() {
            text = "no arrays found on unused disks\n".into();
        }
        if !restored.is_empty() {
            self.persist_book()?;
        }
        Ok(Answer {
            text,
            json: if list_only {
                json!({"arrays": listed})
            } else {
                json!({"ok": true, "restored": restored})
            },
        })
    }

    /// `spare DISK...`: new hot spares (`force`: wipe RAID metadata found on them).
    pub(super) fn cmd_spare(&mut self, args: &[&str], force: bool) -> Result<Answer, String> {
        let disks = parse_disks(args, self.shelf)?;
        let uses = self.disk_uses();
        let shelf = self.shelf;
        let mut opened = Vec::new();
        for &d in &disks {
            match uses.get(d) {
                None => return Err(format!("disk {shelf}.{d} does not exist")),
                Some(DiskUse::Free) | Some(DiskUse::Failed) => {}
                Some(u) => return Err(format!("disk {shelf}.{d} is in use ({})", u.describe())),
            }
            let path = &self.book.config.disks[d];
            let dev = MemberDisk::open(d, path).map_err(|e| format!("disk {shelf}.{d}: {e}"))?;
            match dev.read_metadata() {
                Ok(Metadata::Blank) => {}
                Ok(_) if force => dev
                    .wipe_metadata()
                    .map_err(|e| format!("disk {shelf}.{d}: {e}"))?,
                Ok(_) => {
                    return Err(format!(
                        "disk {shelf}.{d} carries RAID metadata ('restore -l' shows its array); 'spare -f {shelf}.{d}' wipes it"
                    ))
                }
                Err(e) => return Err(format!("disk {shelf}.{d} cannot be read: {e}")),
            }
            opened.push(dev);
        }
        for dev in opened {
            self.failed_disks.retain(|f| f.disk != dev.disk);
            tracing::info!(disk = dev.disk, "hot spare added (console)");
            self.spares.push(dev);
        }
        for t in 0..self.arrays.len() {
            self.pull_spare(t);
        }
        self.persist_book()?;
        Ok(Answer::done(format!(
            "{} spare\n",
            disks
                .iter()
                .map(|d| format!("{shelf}.{d}"))
                .collect::<Vec<_>>()
                .join(" ")
        )))
    }

    /// `rmspare DISK...`.
    pub(super) fn cmd_rmspare(&mut self, args: &[&str]) -> Result<Answer, String> {
        let disks = parse_disks(args, self.shelf)?;
        let shelf = self.shelf;
        if let Some(d) = disks
            .iter()
            .find(|d| !self.spares.iter().any(|s| s.disk == **d))
        {
            return Err(format!("disk {shelf}.{d} is not a spare"));
        }
        self.spares.retain(|s| !disks.contains(&s.disk));
        self.persist_book()?;
        Ok(Answer::done(format!(
            "{} no longer spare\n",
            disks
                .iter()
                .map(|d| format!("{shelf}.{d}"))
                .collect::<Vec<_>>()
                .join(" ")
        )))
    }

    /// `label NAME LUN...` (empty name: `unlabel`).
    pub(super) fn cmd_label(&mut self, name: &str, luns: &[&str]) -> Result<Answer, String> {
        if name.len() > 64 || name.chars().any(|c| c.is_control()) {
            return Err("a label is at most 64 printable characters".into());
        }
        let ts = luns
            .iter()
            .map(|l| parse_lun(l).and_then(|s| self.target_of(s)))
            .collect::<Result<Vec<usize>, String>>()?;
        for t in ts {
            if let Some(Some(r)) = self.book.records.get_mut(t) {
                r.label = name.to_string();
            }
        }
        self.persist_book()?;
        Ok(Answer::done(if name.is_empty() {
            "label cleared\n".to_string()
        } else {
            format!("labelled {name}\n")
        }))
    }
}

impl Worker {
    /// Applies a re-read configuration (SIGHUP): rebuild rates, disks appended to `disks:`,
    /// and (when the console has not taken over the LUNs) LUNs added to `luns:` come up
    /// online. Everything else is reported as needing a restart. Returns a summary.
    pub(super) fn apply_reload(&mut self, new: ethershelf_config::Config) -> String {
        let mut applied = Vec::new();
        let mut restart = Vec::new();
        let old = self.book.config.clone();
        if new.rebuild != self.rates {
            self.rates = new.rebuild;
            self.book.config.rebuild = new.rebuild;
            applied.push("rebuild rates".to_string());
        }
        if new.disks.len() > old.disks.len() && new.disks.starts_with(&old.disks) {
            applied.push(format!("{} new disk(s)", new.disks.len() - old.disks.len()));
            self.book.config.disks = new.disks.clone();
        } else if new.disks != old.disks {
            restart.push("disks (only appending disks applies live)");
        }
        for (changed, what) in [
            (new.shelf != old.shelf, "shelf"),
            (new.ports != old.ports, "ports"),
            (new.state_dir != old.state_dir, "state_dir"),
            (new.admin_socket != old.admin_socket, "admin socket"),
            (new.metrics != old.metrics, "metrics"),
            (new.cpus != old.cpus, "cpus"),
            (new.workers != old.workers, "workers"),
            (new.sqpoll != old.sqpoll, "sqpoll"),
            (new.buffer_count != old.buffer_count, "buffer_count"),
        ] {
            if changed {
                restart.push(what);
            }
        }
        let access_file = self.book.config.state_dir.join(crate::lun::ACCESS_FILE);
        let new_access = crate::lun::AccessBook::from_config(&new);
        if new_access != crate::lun::AccessBook::from_config(&old) {
            if access_file.exists() {
                restart.push("access (managed by the console since its first acl change: use acl, or export-config)");
            } else {
                self.book.access = new_access;
                self.book.config.access = new.access.clone();
                self.apply_access();
                self.book.services.audit.record(
                    "reload (SIGHUP)",
                    "shelf",
                    "access lists and rights re-read from the configuration file".into(),
                );
                applied.push("access lists and rights".to_string());
            }
        }
        // Rights are handled above; a LUN whose only change is its access block is unchanged.
        let without_access = |luns: &[ethershelf_config::Lun]| -> Vec<ethershelf_config::Lun> {
            luns.iter()
                .cloned()
                .map(|mut l| {
                    l.access = Default::default();
                    l
                })
                .collect()
        };
        let (new_luns, old_luns) = (without_access(&new.luns), without_access(&old.luns));
        if self.book.path.exists() {
            if new_luns != old_luns || new.spares != old.spares {
                restart.push("luns/spares (managed by the console since its first change: use it, or export-config)");
            }
        } else {
            let added: Vec<ethershelf_config::Lun> = new
                .luns
                .iter()
                .filter(|l| self.target_of(l.slot).is_err())
                .cloned()
                .collect();
            if new_luns
                .iter()
                .any(|l| old_luns.iter().any(|o| o.slot == l.slot && o != l))
                || old
                    .luns
                    .iter()
                    .any(|o| !new.luns.iter().any(|l| l.slot == o.slot))
            {
                restart.push("changed or removed LUNs (use the console: offline, remove)");
            }
            if !added.is_empty() {
                let mut sub = self.book.config.clone();
                sub.luns = added.clone();
                sub.spares = vec![];
                match crate::shelf::open_luns(&sub, &self.book.services) {
                    Ok(opened) => {
                        let mut arrays = opened.raid.arrays.into_iter();
                        for (target, lun) in opened.targets.into_iter().zip(&added) {
                            let array = arrays.next().flatten();
                            let record = LunRecord::from_config(lun);
                            let target = Arc::try_unwrap(target).unwrap_or_else(|t| {
                                // Only this function holds it; a clone would be a bug.
                                tracing::error!("new LUN target unexpectedly shared");
                                self.new_target(t.slot, LunState::detached(), None, 0)
                            });
                            let t = self.insert_target(target, array, record);
                            self.by_slot[lun.slot as usize] = t as u16;
                            self.live.push(t as u16);
                            self.book.config.luns.push(lun.clone());
                            applied.push(format!("LUN {} added", lun.slot));
                        }
                        self.announce();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a LUN added to the file cannot be opened");
                        restart.push("new LUNs (one cannot be opened: see the log)");
                    }
                }
            }
        }
        let summary = format!(
            "applied: {}; needs a restart: {}",
            if applied.is_empty() {
                "nothing".to_string()
            } else {
                applied.join(", ")
            },
            if restart.is_empty() {
                "nothing".to_string()
            } else {
                restart.join(", ")
            }
        );
        tracing::info!(%summary, "configuration reloaded (SIGHUP)");
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_names_accept_ranges_and_the_shelf_prefix() {
        assert_eq!(parse_disks(&["7.0-3"], 7).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_disks(&["4", "7.6"], 7).unwrap(), vec![4, 6]);
        assert!(parse_disks(&["8.0"], 7)
            .unwrap_err()
            .contains("not on shelf 7"));
        assert!(parse_disks(&["7.3-1"], 7).is_err());
        assert!(parse_disks(&["1", "1"], 7).unwrap_err().contains("twice"));
        assert!(parse_disks(&["x"], 7).is_err());
    }

    #[test]
    fn lun_numbers_stop_at_254() {
        assert_eq!(parse_lun("254"), Ok(254));
        assert!(parse_lun("255").is_err());
        assert!(parse_lun("-1").is_err());
    }
}
