//! Access control at the console: mask lists with who set each entry, reservations shown and
//! cleared, named access lists and per-LUN rights edited live, and the audit trail. Every
//! change is persisted (LUN state files, `state_dir/access.json`) and audited with the
//! console user as its source.

use super::console::Answer;
use super::reconfig::parse_lun;
use super::Worker;
use crate::lun::audit::{self, AuditRecord};
use crate::lun::{AccessBook, Rights, SetBy};
use crate::wire::MacAddr;
use ethershelf_config::access::{format_mac, Ethers, LunAccess, Resolver, Right, WireAdmin};
use serde_json::json;
use std::fmt::Write as _;

/// Audit records `audit` shows unless told otherwise.
const AUDIT_DEFAULT_LINES: usize = 20;
/// Most audit records one `audit N` shows.
const AUDIT_MAX_LINES: usize = 10_000;

fn when(at: u64) -> String {
    // UTC, like the journal's --utc output: YYYY-MM-DD HH:MM:SS.
    let days = at / 86_400;
    let secs = at % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn origin_text(o: &Option<SetBy>) -> String {
    match o {
        Some(o) => format!("{} at {} UTC", o.by, when(o.at)),
        None => "(before ethershelf kept origins)".into(),
    }
}

fn origin_json(o: &Option<SetBy>) -> serde_json::Value {
    match o {
        Some(o) => json!({"by": o.by, "at": o.at}),
        None => serde_json::Value::Null,
    }
}

impl Worker {
    /// Compiles and publishes every LUN's rights (after a start, a reload or an `acl` edit).
    pub(super) fn apply_access(&mut self) {
        let ethers = Ethers::load(&self.book.access.shelf.ethers);
        for t in self.existing() {
            self.publish_rights(t, &ethers);
        }
    }

    /// Compiles and publishes the rights of target `t` (a LUN just made or restored).
    pub(super) fn apply_access_to(&mut self, t: usize) {
        let ethers = Ethers::load(&self.book.access.shelf.ethers);
        self.publish_rights(t, &ethers);
    }

    fn publish_rights(&self, t: usize, ethers: &Ethers) {
        let target = &self.targets[t];
        let lun = self.book.access.lun(target.slot);
        let (rights, warnings) = Rights::compile(&lun, &self.book.access.shelf, ethers);
        for w in warnings {
            tracing::warn!(lun = %format!("e{}.{}", self.shelf, target.slot), "access entry grants nothing: {w}");
        }
        target.state.set_rights(rights);
    }

    /// `mask [LUN...] [+MAC...] [-MAC...]`: show or edit mask lists.
    pub(super) fn cmd_mask(&mut self, args: &[&str]) -> Result<Answer, String> {
        let mut luns = Vec::new();
        let mut add = Vec::new();
        let mut remove = Vec::new();
        for a in args {
            if let Some(m) = a.strip_prefix('+') {
                add.push(m.parse::<MacAddr>().map_err(|e| e.to_string())?);
            } else if let Some(m) = a.strip_prefix('-') {
                remove.push(m.parse::<MacAddr>().map_err(|e| e.to_string())?);
            } else {
                luns.push(self.target_of(parse_lun(a)?)?);
            }
        }
        if (!add.is_empty() || !remove.is_empty()) && luns.is_empty() {
            return Err("name the LUNs whose mask lists change (mask LUN +MAC)".into());
        }
        if luns.is_empty() {
            luns = self.existing();
        }
        if !add.is_empty() || !remove.is_empty() {
            for &t in &luns {
                self.targets[t]
                    .state
                    .edit_mask(&add, &remove, &self.console_user)?;
            }
        }
        let mut text = String::from("LUN  MASK\n");
        let mut out = Vec::new();
        for &t in &luns {
            let entries = self.targets[t].state.mask_entries();
            let slot = self.targets[t].slot;
            if entries.is_empty() {
                let _ = writeln!(text, "{slot:<4} (everyone)");
            }
            // Coraid's console writes MACs as 12 hex digits.
            let hex = |m: &MacAddr| m.0.iter().map(|b| format!("{b:02x}")).collect::<String>();
            for (mac, origin) in &entries {
                let _ = writeln!(
                    text,
                    "{slot:<4} {}  added by {}",
                    hex(mac),
                    origin_text(origin)
                );
            }
            let list: Vec<_> = entries
                .iter()
                .map(|(m, o)| json!({"mac": hex(m), "set_by": origin_json(o)}))
                .collect();
            out.push(json!({"lun": slot, "mask": list}));
        }
        Ok(Answer {
            text,
            json: json!({ "masks": out }),
        })
    }

    /// `reserve [-c] [LUN...]`: show reservations, or clear them (`-c`).
    pub(super) fn cmd_reserve(&mut self, args: &[&str]) -> Result<Answer, String> {
        let clear = args.contains(&"-c");
        let mut luns = Vec::new();
        for a in args.iter().filter(|a| **a != "-c") {
            luns.push(self.target_of(parse_lun(a)?)?);
        }
        if clear && luns.is_empty() {
            return Err("name the LUNs whose reservations to clear (reserve LUN -c)".into());
        }
        if luns.is_empty() {
            luns = self.existing();
        }
        let mut text = String::new();
        let mut out = Vec::new();
        for &t in &luns {
            let slot = self.targets[t].slot;
            if clear {
                let was = self.targets[t]
                    .state
                    .clear_reservation(&self.console_user)?;
                let _ = writeln!(
                    text,
                    "LUN {slot}: reservation {}",
                    if was.is_empty() {
                        "was not set".to_string()
                    } else {
                        format!(
                            "of {} cleared",
                            was.iter()
                                .map(MacAddr::to_string)
                                .collect::<Vec<_>>()
                                .join(" ")
                        )
                    }
                );
            }
            let (holders, origin) = self.targets[t].state.reservation();
            let list: Vec<String> = holders.iter().map(MacAddr::to_string).collect();
            if !clear {
                if list.is_empty() {
                    let _ = writeln!(text, "LUN {slot}: not reserved");
                } else {
                    let _ = writeln!(
                        text,
                        "LUN {slot}: reserved by {}  (set by {})",
                        list.join(" "),
                        origin_text(&origin)
                    );
                }
            }
            out.push(json!({"lun": slot, "reserved_by": list, "set_by": origin_json(&origin)}));
        }
        Ok(Answer {
            text,
            json: json!({ "reservations": out }),
        })
    }

    /// `audit [N]`: the last N access-control changes.
    pub(super) fn cmd_audit(&self, args: &[&str]) -> Result<Answer, String> {
        let n = match args {
            [] => AUDIT_DEFAULT_LINES,
            [n] => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=AUDIT_MAX_LINES).contains(n))
                .ok_or_else(|| format!("'{n}' is not a count of records (1..{AUDIT_MAX_LINES})"))?,
            _ => return Err("usage: audit [N]".into()),
        };
        let path = self.book.config.state_dir.join(audit::AUDIT_FILE);
        let records: Vec<AuditRecord> =
            audit::tail(&path, n).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut text = String::new();
        for r in &records {
            let _ = writeln!(
                text,
                "{} UTC  {:<8} {:<32} {}",
                when(r.at),
                r.lun,
                r.source,
                r.change
            );
        }
        if records.is_empty() {
            text.push_str("no access-control changes recorded\n");
        }
        Ok(Answer {
            text,
            json: json!({ "records": records }),
        })
    }

    /// `acl ...`: show or change access lists and rights.
    pub(super) fn cmd_acl(&mut self, args: &[&str]) -> Result<Answer, String> {
        match args {
            [] | ["show"] => Ok(self.show_acl()),
            ["list", name, entries @ ..] => {
                let mut book = self.book.access.clone();
                let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
                book.shelf.lists.insert(name.to_string(), entries.clone());
                check_book(&book, Some(name))?;
                self.commit_access(book, "shelf", format!("list {name} set to [{}]", entries.join(", ")))
            }
            ["unlist", name] => {
                let mut book = self.book.access.clone();
                if book.shelf.lists.remove(*name).is_none() {
                    return Err(format!("no access list '{name}'"));
                }
                if let Some(user) = users_of(&book, name) {
                    return Err(format!("list '{name}' is still used by {user}: change that first"));
                }
                self.commit_access(book, "shelf", format!("list {name} deleted"))
            }
            ["set", lun, right, entries @ ..] => {
                let slot = parse_lun(lun)?;
                self.target_of(slot)?;
                let right: Right = right.parse()?;
                let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
                let mut book = self.book.access.clone();
                book.luns
                    .entry(slot)
                    .or_default()
                    .rights
                    .insert(right, entries.clone());
                check_book(&book, None)?;
                self.commit_access(
                    book,
                    &format!("e{}.{slot}", self.shelf),
                    format!(
                        "{} granted to [{}]",
                        right.name(),
                        if entries.is_empty() {
                            "nobody".to_string()
                        } else {
                            entries.join(", ")
                        }
                    ),
                )
            }
            ["open", lun, right] => {
                let slot = parse_lun(lun)?;
                self.target_of(slot)?;
                let mut book = self.book.access.clone();
                let rights: Vec<Right> = if *right == "all" {
                    Right::ALL.to_vec()
                } else {
                    vec![right.parse()?]
                };
                if let Some(l) = book.luns.get_mut(&slot) {
                    for r in &rights {
                        l.rights.remove(r);
                    }
                }
                book.luns.retain(|_, l| *l != LunAccess::default());
                self.commit_access(
                    book,
                    &format!("e{}.{slot}", self.shelf),
                    format!("{right} opened to every host"),
                )
            }
            ["wire", policy] => {
                let policy: WireAdmin = policy.parse()?;
                let mut book = self.book.access.clone();
                book.shelf.wire_admin = policy;
                self.commit_access(
                    book,
                    "shelf",
                    format!("wire-side mask/reservation edits: {}", policy.name()),
                )
            }
            ["wire", lun, policy] => {
                let slot = parse_lun(lun)?;
                self.target_of(slot)?;
                let mut book = self.book.access.clone();
                let policy: Option<WireAdmin> = match *policy {
                    "default" => None,
                    p => Some(p.parse()?),
                };
                book.luns.entry(slot).or_default().wire_admin = policy;
                book.luns.retain(|_, l| *l != LunAccess::default());
                self.commit_access(
                    book,
                    &format!("e{}.{slot}", self.shelf),
                    format!(
                        "wire-side mask/reservation edits: {}",
                        policy.map_or("as the shelf", WireAdmin::name)
                    ),
                )
            }
            _ => Err(format!("usage: acl [show] | acl list NAME [ENTRY...] | acl unlist NAME | acl set LUN RIGHT [ENTRY...] | acl open LUN RIGHT|all | acl wire [LUN] accept|refuse|default  (RIGHT: {})", Right::ALL.map(Right::name).join(", "))),
        }
    }

    /// Saves `book` to `state_dir/access.json`, publishes every LUN's rights and audits.
    fn commit_access(
        &mut self,
        book: AccessBook,
        scope: &str,
        change: String,
    ) -> Result<Answer, String> {
        let path = self.book.config.state_dir.join(crate::lun::ACCESS_FILE);
        book.store(&path)
            .map_err(|e| format!("nothing changed: the access book could not be saved: {e}"))?;
        self.book.access = book;
        self.apply_access();
        self.book
            .services
            .audit
            .record(&self.console_user, scope, change.clone());
        Ok(Answer::done(format!("{scope}: {change}")))
    }

    fn show_acl(&self) -> Answer {
        let book = &self.book.access;
        let mut text = format!(
            "wire-side mask/reservation edits: {} (shelf default)\nhost names from: {}\n",
            book.shelf.wire_admin.name(),
            book.shelf.ethers.display()
        );
        if book.shelf.lists.is_empty() {
            text.push_str("no access lists\n");
        }
        for (name, entries) in &book.shelf.lists {
            let _ = writeln!(text, "list {name}: [{}]", entries.join(", "));
        }
        let mut luns = Vec::new();
        let _ = writeln!(text, "LUN  RIGHT        WHO");
        for t in self.existing() {
            let slot = self.targets[t].slot;
            let lun = book.lun(slot);
            let access = self.targets[t].state.access();
            let mut rights = serde_json::Map::new();
            for right in Right::ALL {
                let who = match lun.rights.get(&right) {
                    None => "(every host)".to_string(),
                    Some(e) if e.is_empty() => "(nobody)".to_string(),
                    Some(e) => e.join(", "),
                };
                let hosts = access
                    .rights
                    .holders(right)
                    .map(|h| h.iter().map(|m| format_mac(&m.0)).collect::<Vec<_>>());
                let _ = writeln!(text, "{slot:<4} {:<12} {who}", right.name());
                rights.insert(
                    right.name().into(),
                    json!({"entries": lun.rights.get(&right), "hosts": hosts}),
                );
            }
            let wire = lun.wire_admin.unwrap_or(book.shelf.wire_admin);
            let _ = writeln!(text, "{slot:<4} {:<12} {}", "wire_admin", wire.name());
            luns.push(json!({"lun": slot, "rights": rights, "wire_admin": wire.name()}));
        }
        Answer {
            text,
            json: json!({
                "wire_admin": book.shelf.wire_admin.name(),
                "ethers": book.shelf.ethers.display().to_string(),
                "lists": book.shelf.lists,
                "luns": luns,
            }),
        }
    }
}

/// Checks that every list and every right of `book` resolves (console edits are strict:
/// an entry that names nothing is refused, never saved).
fn check_book(book: &AccessBook, list: Option<&str>) -> Result<(), String> {
    let ethers = Ethers::load(&book.shelf.ethers);
    let resolver = Resolver::new(&book.shelf.lists, &ethers);
    if let Some(name) = list {
        ethers_config_name(name)?;
    }
    for name in book.shelf.lists.keys() {
        resolver.check_list(name).map_err(|e| e.message)?;
    }
    for (slot, lun) in &book.luns {
        for (right, entries) in &lun.rights {
            resolver
                .resolve(entries)
                .map_err(|e| format!("LUN {slot} {}: {}", right.name(), e.message))?;
        }
    }
    Ok(())
}

fn ethers_config_name(name: &str) -> Result<(), String> {
    match ethershelf_config::access::parse_entry(name) {
        Ok(ethershelf_config::access::Entry::Name(_)) => Ok(()),
        _ => Err(format!(
            "'{name}' cannot name a list: use letters, digits, '-', '_' or '.' (not a MAC or *)"
        )),
    }
}

/// Who still names list `name` (another list or a LUN's right), if anyone.
fn users_of(book: &AccessBook, name: &str) -> Option<String> {
    for (list, entries) in &book.shelf.lists {
        if entries.iter().any(|e| e == name) {
            return Some(format!("list '{list}'"));
        }
    }
    for (slot, lun) in &book.luns {
        for (right, entries) in &lun.rights {
            if entries.iter().any(|e| e == name) {
                return Some(format!("LUN {slot} ({})", right.name()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_rendered_in_utc() {
        assert_eq!(super::when(0), "1970-01-01 00:00:00");
        assert_eq!(super::when(1_796_292_000), "2026-12-03 10:00:00");
        assert_eq!(super::when(951_782_400), "2000-02-29 00:00:00");
    }
}
