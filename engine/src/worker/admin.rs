//! Admin commands as the worker runs them: the admin socket thread hands over one line and
//! a reply channel; the worker answers between batches (never on the frame path).

use super::console::Answer;
use super::Worker;
use crate::metrics::snapshot::{ArraySample, LunSample, MemberSample, PathSample, WorkerSample};
use crate::metrics::Snapshot;
use crate::store::raid10::{Fault, MemberDisk, RoleState, SyncJob, SyncKind};
use serde_json::json;
use std::fmt::Write as _;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, Sender};

/// What the admin socket, the metrics endpoint and the health check ask the worker.
pub enum AdminRequest {
    /// One command line and where its answer goes (text; a first line starting with
    /// `error:` means it failed).
    Command {
        /// The command line.
        line: String,
        /// Who sent it, for the audit trail (`console root`).
        user: String,
        /// The answer.
        reply: Sender<String>,
    },
    /// A copy of the worker's counters for a metrics scrape.
    Snapshot(Sender<Snapshot>),
    /// The front panel's document (disk slots, LUN tree, counters).
    Panel(Sender<serde_json::Value>),
    /// SIGHUP: the configuration file as re-read; the answer says what was applied.
    Reload(Box<ethershelf_config::Config>, Sender<String>),
}

/// The worker's end of the admin channel.
pub struct AdminLink {
    /// Requests.
    pub requests: Receiver<AdminRequest>,
    /// Readable when requests wait (one byte per request).
    pub wake: UnixStream,
}

impl AdminLink {
    /// The descriptor the worker polls.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }
}

pub(super) fn human_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

pub(super) fn parse_role(arg: &str) -> Option<(u8, usize)> {
    let parts: Vec<&str> = arg.split('.').collect();
    match parts.as_slice() {
        [lun, role] | [lun, "0", role] => Some((lun.parse().ok()?, role.parse().ok()?)),
        _ => None,
    }
}

impl Worker {
    /// Answers every waiting admin request.
    pub(super) fn serve_admin(&mut self) {
        // Everything queued so far reaches the kernel (which takes its file references)
        // before a command may close a member or open another disk.
        self.submit_pending_members();
        let _ = self.ring.submit();
        let mut requests = Vec::new();
        if let Some(link) = self.admin.as_mut() {
            let mut drain = [0u8; 64];
            use std::io::Read;
            let _ = link.wake.read(&mut drain);
            while let Ok(r) = link.requests.try_recv() {
                requests.push(r);
            }
        }
        for r in requests {
            match r {
                AdminRequest::Command { line, user, reply } => {
                    self.console_user = user;
                    let answer = self.admin_command(line.trim());
                    let _ = reply.send(answer);
                }
                AdminRequest::Snapshot(reply) => {
                    let _ = reply.send(self.snapshot());
                }
                AdminRequest::Panel(reply) => {
                    let _ = reply.send(self.panel());
                }
                AdminRequest::Reload(config, reply) => {
                    let _ = reply.send(self.apply_reload(*config));
                }
            }
        }
    }

    fn array_of(&self, slot: u8) -> Result<usize, String> {
        let t = self.target_of(slot)?;
        if self.arrays[t].is_none() {
            return Err(format!(
                "error: LUN {slot} is a file LUN, not a RAID-10 array"
            ));
        }
        Ok(t)
    }

    /// `status`: LUNs, arrays and members with states and counters.
    pub(super) fn status(&self) -> Answer {
        let mut out = String::new();
        let mut luns = Vec::new();
        let _ = writeln!(out, "{:<8} {:<10} {:>12}  STATE", "LUN", "TYPE", "SIZE");
        for t in self.existing() {
            let target = &self.targets[t];
            let online = self.book.is_online(t);
            let name = format!("{}.{}", target.shelf, target.slot);
            let size = human_bytes((target.sectors * 512) as f64);
            let c = &self.luns[t];
            let kind = self.book.record(t).map_or("file", |r| r.kind.name());
            let presence = if online { "online" } else { "offline" };
            match &self.arrays[t] {
                None => {
                    let path = target
                        .backing
                        .as_ref()
                        .map(|b| b.path().display().to_string())
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{name:<8} {kind:<10} {size:>12}  normal {presence}  {path}"
                    );
                    luns.push(
                        json!({"lun": name, "type": kind, "bytes": target.sectors * 512,
                        "state": "normal", "online": online, "path": path,
                        "reads": c.reads, "writes": c.writes}),
                    );
                }
                Some(a) => {
                    let _ = writeln!(
                        out,
                        "{name:<8} {kind:<10} {size:>12}  {} {presence}  ({} members, chunk {})",
                        a.state(),
                        a.roles.len(),
                        human_bytes((a.layout().chunk_sectors() * 512) as f64)
                    );
                    let mut members = Vec::new();
                    for (r, role) in a.roles.iter().enumerate() {
                        let (disk, path) =
                            role.dev
                                .as_ref()
                                .map_or(("-".to_string(), String::new()), |d| {
                                    (
                                        format!("{}.{}", target.shelf, d.disk),
                                        d.path().display().to_string(),
                                    )
                                });
                        let c = role.counters;
                        let fault = if role.fault == Fault::None {
                            String::new()
                        } else {
                            format!("  fault-injected={:?}", role.fault)
                        };
                        let _ = writeln!(
                            out,
                            "  {}.0.{r:<4} disk {disk:<6} {:<10} ios {} bytes {} read-errors {} write-errors {} corrected {}  {path}{fault}",
                            target.slot,
                            role.state.to_string(),
                            c.ios,
                            c.bytes,
                            c.read_errors,
                            c.write_errors,
                            c.corrected
                        );
                        members.push(
                            json!({"member": format!("{}.0.{r}", target.slot), "disk": disk,
                            "state": role.state.to_string(), "ios": c.ios, "bytes": c.bytes,
                            "read_errors": c.read_errors, "write_errors": c.write_errors,
                            "corrected": c.corrected, "path": path}),
                        );
                    }
                    let scrub = a.last_scrub.map(|(compared, mismatches, repair)| {
                        let _ = writeln!(
                            out,
                            "  last scrub: {compared} pieces compared, {mismatches} mismatches{}",
                            if repair { " (repaired)" } else { "" }
                        );
                        json!({"compared": compared, "mismatches": mismatches, "repaired": repair})
                    });
                    luns.push(
                        json!({"lun": name, "type": kind, "bytes": target.sectors * 512,
                        "state": a.state(), "online": online, "members": members,
                        "chunk": a.layout().chunk_sectors() * 512, "last_scrub": scrub,
                        "reads": c.reads, "writes": c.writes}),
                    );
                }
            }
        }
        Answer {
            text: out,
            json: json!({ "luns": luns }),
        }
    }

    /// `when`: progress of rebuilds, resyncs and scrubs.
    pub(super) fn when(&self) -> Answer {
        let mut out = String::new();
        let mut jobs = Vec::new();
        for t in self.existing() {
            let Some(a) = &self.arrays[t] else { continue };
            let target = &self.targets[t];
            let element = format!("{}.0", target.slot);
            match &a.sync {
                Some(j) => {
                    let eta_secs = j.eta().map(|d| d.as_secs());
                    let eta = eta_secs
                        .map(|s| format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60))
                        .unwrap_or_else(|| "?:??:??".into());
                    let _ = writeln!(
                        out,
                        "{element} {} {:.2}% {:.0} KBps {eta} left",
                        j.kind,
                        j.percent(),
                        j.rate() / 1000.0,
                    );
                    jobs.push(json!({"element": element, "kind": j.kind.to_string(),
                        "percent": j.percent(), "bytes_per_second": j.rate(),
                        "seconds_left": eta_secs, "bytes_done": j.bytes}));
                }
                None if a.resync_owed => {
                    let _ = writeln!(out, "{element} resync pending");
                    jobs.push(json!({"element": element, "kind": "resync", "pending": true}));
                }
                None => {}
            }
        }
        if out.is_empty() {
            out.push_str("no rebuild, resync or scrub running\n");
        }
        Answer {
            text: out,
            json: json!({ "jobs": jobs }),
        }
    }

    /// `spares`: hot spares, then failed disks taken out of arrays.
    pub(super) fn show_spares(&self) -> Answer {
        let shelf = self.shelf;
        let mut out = String::new();
        let mut spares = Vec::new();
        let mut failed = Vec::new();
        for d in &self.spares {
            let _ = writeln!(
                out,
                "{shelf}.{}  {:.3}GB  {}",
                d.disk,
                (d.sectors() * 512) as f64 / 1e9,
                d.path().display()
            );
            spares.push(
                json!({"disk": format!("{shelf}.{}", d.disk), "bytes": d.sectors() * 512,
                "path": d.path().display().to_string()}),
            );
        }
        for d in &self.failed_disks {
            let _ = writeln!(
                out,
                "{shelf}.{}  failed (taken out of its array)  {}",
                d.disk,
                d.path().display()
            );
            failed.push(json!({"disk": format!("{shelf}.{}", d.disk),
                "path": d.path().display().to_string()}));
        }
        if out.is_empty() {
            out.push_str("no spares\n");
        }
        Answer {
            text: out,
            json: json!({ "spares": spares, "failed": failed }),
        }
    }

    pub(super) fn cmd_fail(&mut self, who: &str, force: bool) -> Result<String, String> {
        let (slot, r) =
            parse_role(who).ok_or_else(|| format!("error: '{who}' is not LUN.ROLE (e.g. 0.2)"))?;
        let t = self.array_of(slot)?;
        let a = self.arrays[t].as_mut().ok_or("error: no array")?;
        if r >= a.roles.len() {
            return Err(format!(
                "error: LUN {slot} has roles 0..{}",
                a.roles.len() - 1
            ));
        }
        if !force && a.only_copy(r) {
            return Err(format!(
                "error: {who} holds the only in-sync copy of some of the LUN's data: failing it makes that data unreadable (use 'fail -f {who}' to fail it anyway)"
            ));
        }
        if !a.fail_role(r, "failed by the admin") {
            return Err(format!(
                "error: {who} is not in service ({})",
                a.roles[r].state
            ));
        }
        self.publish_health(t);
        self.pull_spare(t);
        Ok(format!(
            "{who} failed; LUN state {}\n",
            self.arrays[t]
                .as_ref()
                .map(|a| a.state())
                .unwrap_or_default()
        ))
    }

    pub(super) fn cmd_replace(&mut self, who: &str, disk: &str) -> Result<String, String> {
        let (slot, r) =
            parse_role(who).ok_or_else(|| format!("error: '{who}' is not LUN.ROLE (e.g. 0.2)"))?;
        let disk: usize = disk
            .rsplit('.')
            .next()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("error: '{disk}' is not a disk number"))?;
        let t = self.array_of(slot)?;
        let a = self.arrays[t].as_mut().ok_or("error: no array")?;
        if r >= a.roles.len() {
            return Err(format!(
                "error: LUN {slot} has roles 0..{}",
                a.roles.len() - 1
            ));
        }
        if !matches!(a.roles[r].state, RoleState::Failed | RoleState::Missing) {
            return Err(format!(
                "error: {who} is {}: fail it first",
                a.roles[r].state
            ));
        }
        // The new disk: a hot spare, or a failed disk's slot where a new disk was swapped in
        // (re-opened from its path, so the new device is used, not the old handle).
        let dev = if let Some(pos) = self.spares.iter().position(|d| d.disk == disk) {
            self.spares.remove(pos)
        } else {
            let old = if a.roles[r].dev.as_ref().is_some_and(|d| d.disk == disk) {
                a.take_failed(r)
            } else {
                self.failed_disks
                    .iter()
                    .position(|d| d.disk == disk)
                    .map(|i| self.failed_disks.remove(i))
            };
            let Some(old) = old else {
                return Err(format!("error: disk {disk} is neither a hot spare nor a failed disk taken out (see 'spares')"));
            };
            let path = old.path_buf();
            drop(old);
            MemberDisk::open(disk, &path)
                .map_err(|e| format!("error: disk {disk} cannot be opened: {e}"))?
        };
        let a = self.arrays[t].as_mut().ok_or("error: no array")?;
        if let Some(old) = a.take_failed(r) {
            self.failed_disks.push(old);
        }
        if let Err(dev) = a.add_for_rebuild(r, dev) {
            let size = dev.sectors() * 512;
            self.spares.push(dev);
            return Err(format!(
                "error: disk {disk} ({size} bytes) is too small for LUN {slot}; it is kept as a spare"
            ));
        }
        self.publish_health(t);
        Ok(format!("disk {disk} replaces {who}; rebuild started\n"))
    }

    pub(super) fn cmd_scrub(&mut self, lun: &str, repair: bool) -> Result<String, String> {
        let slot: u8 = lun
            .parse()
            .map_err(|_| format!("error: '{lun}' is not a LUN number"))?;
        let t = self.array_of(slot)?;
        let a = self.arrays[t].as_mut().ok_or("error: no array")?;
        if let Some(j) = &a.sync {
            return Err(format!("error: LUN {slot} is busy with a {}", j.kind));
        }
        let id = a.new_job_id();
        a.sync = Some(SyncJob::new(SyncKind::Scrub { repair }, 0, a.sectors(), id));
        self.pump_sync(t);
        Ok(format!(
            "scrub of LUN {slot} started{}\n",
            if repair { " (repair)" } else { "" }
        ))
    }

    pub(super) fn cmd_inject(
        &mut self,
        who: &str,
        what: &str,
        range: Option<&str>,
    ) -> Result<String, String> {
        let range = match range {
            None => None,
            Some(r) => {
                let bad = || {
                    format!("error: '{r}' is not a sector range FROM-TO (member data sectors, e.g. 2048-2055)")
                };
                let (a, b) = r.split_once('-').ok_or_else(bad)?;
                let (a, b) = (
                    a.parse::<u64>().map_err(|_| bad())?,
                    b.parse::<u64>().map_err(|_| bad())?,
                );
                if b < a {
                    return Err(bad());
                }
                Some((a, b + 1))
            }
        };
        let (slot, r) =
            parse_role(who).ok_or_else(|| format!("error: '{who}' is not LUN.ROLE (e.g. 0.2)"))?;
        let fault = match what {
            "read" => Fault::Read,
            "write" => Fault::Write,
            "all" => Fault::All,
            "hang" => Fault::Hang,
            "off" => Fault::None,
            _ => {
                return Err(format!(
                    "error: '{what}' is not read, write, all, hang or off"
                ))
            }
        };
        let t = self.array_of(slot)?;
        let a = self.arrays[t].as_mut().ok_or("error: no array")?;
        let role = a
            .roles
            .get_mut(r)
            .ok_or_else(|| format!("error: no role {r}"))?;
        role.fault = fault;
        role.fault_range = range;
        tracing::warn!(lun = %a.label, role = r, ?fault, ?range, "fault injection set by the admin");
        self.release_held(Some(t), Some(r));
        Ok(format!("{who}: injecting {what}\n"))
    }

    /// Copies the counters for a metrics scrape (allocates: runs between batches only).
    pub fn snapshot(&self) -> Snapshot {
        let shelf = self.shelf;
        let paths = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let (stats, io, worker) = self.path_counters(i);
                PathSample {
                    port: port.name.clone(),
                    queue: port.queue,
                    mode: port.mode,
                    worker,
                    stats,
                    copies: io.copies,
                    kernel_drops: io.kernel_drops,
                }
            })
            .collect();
        let mut luns = Vec::new();
        let mut members = Vec::new();
        let mut arrays = Vec::new();
        for t in self.existing() {
            let target = &self.targets[t];
            let lun = format!("{}.{}", target.shelf, target.slot);
            luns.push(LunSample {
                lun: lun.clone(),
                online: self.by_slot[target.slot as usize] == t as u16,
                size_bytes: target.sectors * 512,
                counters: self.luns[t],
            });
            let Some(a) = &self.arrays[t] else { continue };
            for (r, role) in a.roles.iter().enumerate() {
                members.push(MemberSample {
                    lun: lun.clone(),
                    role: r,
                    disk: role
                        .dev
                        .as_ref()
                        .map_or("missing".into(), |d| format!("{shelf}.{}", d.disk)),
                    state: role.state.to_string(),
                    ios: role.counters.ios,
                    bytes: role.counters.bytes,
                    read_errors: role.counters.read_errors,
                    write_errors: role.counters.write_errors,
                    corrected: role.counters.corrected,
                    bad_sectors: role.bad.sectors(),
                    in_flight: role.in_flight,
                    read_latency: role.counters.read_latency,
                    write_latency: role.counters.write_latency,
                });
            }
            arrays.push(ArraySample {
                lun,
                state: a.state(),
                sync_kind: a.sync.as_ref().map(|j| j.kind.to_string()),
                sync_progress: a.sync.as_ref().map_or(0.0, |j| j.percent() / 100.0),
                sync_rate: a.sync.as_ref().map_or(0.0, |j| j.rate()),
                member_failures: a.member_failures,
            });
        }
        Snapshot {
            shelf,
            workers: self.worker_samples(),
            paths,
            luns,
            members,
            arrays,
            spares: self.spares.len() as u64,
            disks: self.disk_samples(),
            cec: None,
        }
    }

    /// This worker's sample, then one per queue worker (from what it published).
    fn worker_samples(&self) -> Vec<WorkerSample> {
        let mut workers = vec![WorkerSample {
            cpu: self.cpu,
            submissions: self.submissions,
            in_flight: self.in_flight as u64,
            slots: self.per_worker as u64,
            slots_in_use: (self.per_worker as usize - self.free.len()) as u64,
            spin_hits: self.stats.spin_hits,
            ordered_waits: self.stats.ordered_waits,
            direct_fallbacks: self.stats.direct_fallbacks,
            tx_errors: self.stats.tx_errors,
            merged_runs: self.stats.merged_runs,
            merged_requests: self.stats.merged_requests,
        }];
        for link in &self.peers {
            let q = &link.shared;
            workers.push(WorkerSample {
                cpu: q.cpu(),
                slots: q.slots,
                slots_in_use: q.slots_in_use.load(std::sync::atomic::Ordering::Relaxed),
                spin_hits: q.spin_hits.load(std::sync::atomic::Ordering::Relaxed),
                tx_errors: q.paths.iter().map(|p| p.load().0.tx_errors).sum(),
                ..WorkerSample::default()
            });
        }
        workers
    }

    /// True unless a queue worker's loop has not moved for [`super::queue::STUCK_AFTER`] (it
    /// wakes at least every 100 ms even when idle): a stuck one makes the shelf unhealthy.
    pub(super) fn queue_workers_alive(&mut self) -> bool {
        let mut alive = true;
        for link in &mut self.peers {
            let now = link
                .shared
                .heartbeat
                .load(std::sync::atomic::Ordering::Relaxed);
            if now != link.last_heartbeat {
                link.last_heartbeat = now;
                link.heartbeat_seen = std::time::Instant::now();
            } else if link.heartbeat_seen.elapsed() > super::queue::STUCK_AFTER {
                tracing::error!(
                    worker = link.worker,
                    "queue worker has not turned for {:?}",
                    super::queue::STUCK_AFTER
                );
                alive = false;
            }
        }
        alive
    }

    /// Records a clean stop on every array.
    pub(super) fn close_arrays(&mut self) {
        for a in self.arrays.iter_mut().flatten() {
            if let Err(e) = a.close() {
                tracing::error!(lun = %a.label, error = %e, "could not mark the array clean");
            }
        }
    }
}
