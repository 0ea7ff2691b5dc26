//! The shelf console as the worker runs it: one command line in, text or JSON out. Commands
//! and layouts follow Coraid's shelves (`show -l`, `list -l`, `make`, `online`, `when`...);
//! the worker runs them between batches, so a reconfiguration never races a frame.
//!
//! Flags understood on every command: `--json` (a JSON document instead of text) and `-f`
//! (the confirmation was given: destructive commands refuse to run without it; the console
//! and `ctl` ask the question and add `-f`).

use super::Worker;
use crate::lun::{Book, LunRecord};
use ethershelf_config::Config;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Commands that change or hide data and need `-f` (the client asks for confirmation).
pub const DESTRUCTIVE: &[&str] = &["make", "offline", "remove", "eject"];

/// Every command word, for completion in the interactive console.
pub const COMMANDS: &[&str] = &[
    "shelf",
    "show",
    "disks",
    "list",
    "status",
    "make",
    "online",
    "offline",
    "remove",
    "eject",
    "restore",
    "mask",
    "reserve",
    "acl",
    "audit",
    "spare",
    "spares",
    "rmspare",
    "fail",
    "replace",
    "when",
    "iostats",
    "ifstat",
    "release",
    "label",
    "unlabel",
    "scrub",
    "inject",
    "export-config",
    "help",
];

/// Help text of the console.
pub const HELP: &str = "\
disks and LUNs (names: disk SHELF.N, LUN N, member L.R.C or L.C; ranges like 7.0-3):
  show [-l]                   disks: size and up/down
  disks                       disks with size, use (member L.R.C, spare, jbod, free) and path
  list [-l]                   LUN tree: LUN, RAID element, members with states
  status                      LUNs, arrays and members with I/O and error counters
  make [-c] LUN TYPE DISKS    make a LUN, offline: TYPE raid10 (>= 2 disks), raid1 (2 disks)
                              or jbod (1 disk); -c skips the initial mirror sync (zeroed disks)
  online LUN...               expose LUNs on the network
  offline LUN...              hide LUNs (hosts lose them)
  remove LUN                  delete an offline LUN and clear RAID metadata on its disks
  eject LUN                   forget an offline LUN, keep its disks' metadata (to move them)
  restore [-l] [SHELF [LUN [NEWLUN]]]
                              bring back arrays found on unused disks (-l: only list them)
  label NAME LUN... / unlabel LUN...
                              free-text LUN label shown by list
access control (every change is written to the audit log):
  mask [LUN...] [+MAC...] [-MAC...]
                              show (who added each entry, when) or edit the AoE mask
                              lists: who may use a LUN at all (empty list: everyone)
  reserve [LUN...]            show reservations: holders, who set them, when
  reserve LUN... -c           clear reservations (e.g. set by a rogue host)
  acl [show]                  access lists, wire-side policy, every LUN's rights
  acl list NAME [ENTRY...]    define or replace a list; ENTRY: MAC, list name, host from
                              /etc/ethers, or * (every host)
  acl unlist NAME             delete a list nothing uses
  acl set LUN RIGHT [ENTRY...]
                              only ENTRY... hold RIGHT on LUN (none: nobody); RIGHT:
                              discover read write config_read config_set mask reserve
  acl open LUN RIGHT|all      every host holds RIGHT again
  acl wire [LUN] accept|refuse|default
                              accept or refuse mask/reservation edits from the wire
  audit [N]                   the last N access-control changes (default 20)
redundancy:
  spare [DISK...] / spares    mark disks as hot spares / list spares and failed disks
  rmspare DISK...             stop using disks as spares
  fail [-f] L.R.C             fail a member (a spare takes its place if there is one;
                              -f to fail the only in-sync copy of some data)
  replace L.R.C DISK          rebuild a failed or missing member onto DISK
  when                        rebuild/resync/scrub progress: percent, rate, time left
  scrub LUN [repair]          compare both copies of every chunk; repair fixes differences
  inject L.R.C read|write|all|hang|off [FROM-TO]  (FROM-TO: member data sectors only)
                              make a member's I/O fail (fault drill)
monitoring:
  iostats                     per LUN and member: MB, average and max latency since start
  ifstat                      ports: address, link speed, MTU, frames per path
  release                     the running version
  shelf                       the shelf number
  export-config               the running shelf as a YAML configuration
flags: --json (machine-readable output), -f (do not ask; required by make, offline, remove
and eject when sent raw to the admin socket)";

/// A command's answer: text for people, JSON for scripts.
pub struct Answer {
    /// Text.
    pub text: String,
    /// JSON.
    pub json: Value,
}

impl Answer {
    /// An action that succeeded with `message`.
    pub fn done(message: impl Into<String>) -> Answer {
        let message = message.into();
        Answer {
            json: json!({ "ok": true, "message": message.trim_end() }),
            text: if message.ends_with('\n') {
                message
            } else {
                message + "\n"
            },
        }
    }
}

/// The LUN book as the worker keeps it, with what `make` and `export-config` need.
pub struct ShelfBook {
    /// One record per target (`None`: removed).
    pub records: Vec<Option<LunRecord>>,
    /// Where the book persists (`state_dir/luns.json`).
    pub path: PathBuf,
    /// The configuration in effect (disks, state_dir, ports, buffer count...).
    pub config: Config,
    /// Host id for IDENTIFY serial numbers.
    pub host: String,
    /// Access lists and rights (`state_dir/access.json` once the console changed them).
    pub access: crate::lun::AccessBook,
    /// The audit trail and the persister every LUN's state uses.
    pub services: crate::lun::StateServices,
}

impl ShelfBook {
    /// Is target `t` online?
    pub fn is_online(&self, t: usize) -> bool {
        self.records
            .get(t)
            .and_then(Option::as_ref)
            .is_some_and(|r| r.online)
    }
    /// The record of target `t`, unless removed.
    pub fn record(&self, t: usize) -> Option<&LunRecord> {
        self.records.get(t).and_then(Option::as_ref)
    }
}

/// Strips a leading `error: ` (the worker's messages carry it for the text protocol).
fn bare(message: &str) -> &str {
    message
        .trim_end()
        .strip_prefix("error: ")
        .unwrap_or(message.trim_end())
}

impl Worker {
    /// Runs one console line and renders the answer as text or JSON.
    pub(super) fn admin_command(&mut self, line: &str) -> String {
        let mut json_out = false;
        let mut force = false;
        let words: Vec<&str> = line
            .split_whitespace()
            .filter(|w| match *w {
                "--json" => {
                    json_out = true;
                    false
                }
                "-f" => {
                    force = true;
                    false
                }
                _ => true,
            })
            .collect();
        let result = self.dispatch(&words, force);
        match (result, json_out) {
            (Ok(a), false) => a.text,
            (Ok(a), true) => format!("{}\n", a.json),
            (Err(e), false) => format!("error: {}\n", bare(&e)),
            (Err(e), true) => format!("{}\n", json!({ "error": bare(&e) })),
        }
    }

    fn dispatch(&mut self, words: &[&str], force: bool) -> Result<Answer, String> {
        let Some(&command) = words.first() else {
            return Ok(Answer::done(HELP));
        };
        if DESTRUCTIVE.contains(&command) && !force {
            return Err(format!(
                "'{command}' needs confirmation: the console asks for it; raw requests add -f"
            ));
        }
        let args = &words[1..];
        match (command, args) {
            ("help", _) => Ok(Answer::done(HELP)),
            ("shelf", []) => Ok(Answer {
                text: format!("{}\n", self.shelf),
                json: json!({ "shelf": self.shelf }),
            }),
            ("show", [] | ["-l"]) => Ok(self.show_disks()),
            ("disks", []) => Ok(self.disks_table()),
            ("list", [] | ["-l"]) => Ok(self.list_tree()),
            ("status", []) => Ok(self.status()),
            ("when", []) => Ok(self.when()),
            ("spares", []) | ("spare", []) => Ok(self.show_spares()),
            ("spare", disks) => self.cmd_spare(disks, force),
            ("rmspare", disks) if !disks.is_empty() => self.cmd_rmspare(disks),
            ("make", args) => self.cmd_make(args),
            ("online", luns) if !luns.is_empty() => self.cmd_online(luns, true),
            ("offline", luns) if !luns.is_empty() => self.cmd_online(luns, false),
            ("remove", [lun]) => self.cmd_remove(lun, true),
            ("eject", [lun]) => self.cmd_remove(lun, false),
            ("restore", args) => self.cmd_restore(args),
            ("label", [name, luns @ ..]) if !luns.is_empty() => self.cmd_label(name, luns),
            ("unlabel", luns) if !luns.is_empty() => self.cmd_label("", luns),
            ("mask", args) => self.cmd_mask(args),
            ("reserve", args) => self.cmd_reserve(args),
            ("acl", args) => self.cmd_acl(args),
            ("audit", args) => self.cmd_audit(args),
            ("fail", [who]) => {
                let answer = self.cmd_fail(who, force).map(Answer::done)?;
                self.refresh_book()?;
                Ok(answer)
            }
            ("replace", [who, disk]) => {
                let answer = self.cmd_replace(who, disk).map(Answer::done)?;
                self.refresh_book()?;
                Ok(answer)
            }
            ("scrub", [lun]) => self.cmd_scrub(lun, false).map(Answer::done),
            ("scrub", [lun, "repair"]) => self.cmd_scrub(lun, true).map(Answer::done),
            ("inject", [who, what]) => self.cmd_inject(who, what, None).map(Answer::done),
            ("inject", [who, what, range]) => {
                self.cmd_inject(who, what, Some(range)).map(Answer::done)
            }
            ("iostats", []) => Ok(self.iostats()),
            ("ifstat", []) => Ok(self.ifstat()),
            ("release", []) => Ok(self.release_line()),
            ("export-config", []) => Ok(self.export_config()),
            _ if COMMANDS.contains(&command) => Err(format!(
                "usage: wrong arguments for '{command}' (see 'help')"
            )),
            _ => Err(format!(
                "unknown command '{command}' (see 'help' for the list)"
            )),
        }
    }

    /// Writes the LUN book (RAID members as they are now, spares) so console changes survive
    /// a restart.
    pub(super) fn persist_book(&mut self) -> Result<(), String> {
        for t in 0..self.book.records.len() {
            let Some(a) = self.arrays.get(t).and_then(Option::as_ref) else {
                continue;
            };
            if let Some(Some(r)) = self.book.records.get_mut(t) {
                for (i, role) in a.roles.iter().enumerate() {
                    if let (Some(dev), Some(slot)) = (role.dev.as_ref(), r.disks.get_mut(i)) {
                        *slot = dev.disk;
                    }
                }
            }
        }
        let book = Book {
            version: 1,
            luns: self.book.records.iter().flatten().cloned().collect(),
            spares: self.spares.iter().map(|d| d.disk).collect(),
        };
        book.store(&self.book.path).map_err(|e| {
            tracing::error!(error = %e, "the LUN book could not be written");
            format!("the change is live but could not be saved: {e}")
        })
    }

    /// Rewrites the LUN book if the console already owns the LUNs (a member change is not by
    /// itself a reason to stop following the YAML: assembly finds moved members anyway).
    fn refresh_book(&mut self) -> Result<(), String> {
        if self.book.path.exists() {
            self.persist_book()?;
        }
        Ok(())
    }

    /// The target index of LUN `slot` (not removed).
    pub(super) fn target_of(&self, slot: u8) -> Result<usize, String> {
        (0..self.targets.len())
            .find(|&t| self.book.record(t).is_some() && self.targets[t].slot == slot)
            .ok_or_else(|| format!("error: no LUN {slot} on this shelf"))
    }

    /// Targets that exist (not removed), in order.
    pub(super) fn existing(&self) -> Vec<usize> {
        (0..self.targets.len())
            .filter(|&t| self.book.record(t).is_some())
            .collect()
    }
}
