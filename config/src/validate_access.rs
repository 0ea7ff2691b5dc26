//! Checks of the `access:` section and of each LUN's `access:`: every entry is a MAC, `*`,
//! a defined list or a host of the ethers file; lists do not form cycles. Errors point at
//! the entry at fault.

use crate::access::{parse_entry, Entry, Ethers, LunAccess, ResolveError, Resolver, ShelfAccess};
use crate::error::ConfigError;
use crate::schema::{
    CecConfig, RawAccess, RawCec, RawEntries, RawLunAccess, DEFAULT_CEC_SESSIONS, MAX_CEC_SESSIONS,
};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Most hosts one right may name (a LUN's table is searched on every frame).
pub const MAX_HOSTS_PER_RIGHT: usize = 4096;

fn err<T>(origin: &str, s: &Spanned<T>, message: impl Into<String>) -> ConfigError {
    ConfigError::at(origin, s.referenced.line(), s.referenced.column(), message)
}

/// The shelf-wide access settings, checked, with what LUN checks need.
pub(crate) struct CheckedShelf {
    /// As the engine uses it.
    pub access: ShelfAccess,
    /// The host table.
    pub ethers: Ethers,
    spans: BTreeMap<String, Vec<Spanned<String>>>,
}

impl CheckedShelf {
    fn locate(&self, e: ResolveError, own: &[Spanned<String>], origin: &str) -> ConfigError {
        let entry = match &e.list {
            Some(list) => self.spans.get(list).and_then(|v| v.get(e.index)),
            None => own.get(e.index),
        };
        match entry {
            Some(at) => err(origin, at, e.message),
            None => ConfigError::at(origin, 0, 0, e.message),
        }
    }
}

fn strings(entries: &RawEntries) -> Vec<String> {
    entries.value.iter().map(|s| s.value.clone()).collect()
}

pub(crate) fn shelf_access(
    raw: Option<RawAccess>,
    origin: &str,
) -> Result<CheckedShelf, ConfigError> {
    let Some(raw) = raw else {
        return Ok(CheckedShelf {
            access: ShelfAccess::default(),
            ethers: Ethers::load(&ShelfAccess::default().ethers),
            spans: BTreeMap::new(),
        });
    };
    let mut access = ShelfAccess::default();
    if let Some(w) = &raw.wire_admin {
        access.wire_admin = w
            .value
            .parse()
            .map_err(|m: String| err(origin, w, format!("wire_admin: {m}")))?;
    }
    if let Some(e) = &raw.ethers {
        if e.value.is_empty() {
            return Err(err(origin, e, "ethers: the path is empty"));
        }
        access.ethers = PathBuf::from(&e.value);
    }
    let mut spans = BTreeMap::new();
    for (name, entries) in &raw.lists {
        match parse_entry(name) {
            Ok(Entry::Name(_)) => {}
            _ => {
                return Err(err(
                    origin,
                    entries,
                    format!("'{name}' cannot name a list: use letters, digits, '-', '_' or '.' (not a MAC or *)"),
                ))
            }
        }
        access.lists.insert(name.clone(), strings(entries));
        spans.insert(name.clone(), entries.value.clone());
    }
    let checked = CheckedShelf {
        ethers: Ethers::load(&access.ethers),
        access,
        spans,
    };
    let resolver = Resolver::new(&checked.access.lists, &checked.ethers);
    for name in checked.access.lists.keys() {
        let hosts = resolver
            .check_list(name)
            .map_err(|e| checked.locate(e, &[], origin))?;
        if hosts.macs.len() > MAX_HOSTS_PER_RIGHT {
            let at = &raw.lists[name];
            return Err(err(
                origin,
                at,
                format!(
                    "list '{name}' names {} hosts; at most {MAX_HOSTS_PER_RIGHT}",
                    hosts.macs.len()
                ),
            ));
        }
    }
    Ok(checked)
}

pub(crate) fn lun_access(
    raw: Option<&RawLunAccess>,
    shelf: &CheckedShelf,
    origin: &str,
) -> Result<LunAccess, ConfigError> {
    let Some(raw) = raw else {
        return Ok(LunAccess::default());
    };
    let mut out = LunAccess::default();
    if let Some(w) = &raw.wire_admin {
        out.wire_admin = Some(
            w.value
                .parse()
                .map_err(|m: String| err(origin, w, format!("wire_admin: {m}")))?,
        );
    }
    let resolver = Resolver::new(&shelf.access.lists, &shelf.ethers);
    for (right, entries) in raw.rights() {
        let list = strings(entries);
        let hosts = resolver
            .resolve(&list)
            .map_err(|e| shelf.locate(e, &entries.value, origin))?;
        if hosts.macs.len() > MAX_HOSTS_PER_RIGHT {
            return Err(err(
                origin,
                entries,
                format!(
                    "{} names {} hosts; at most {MAX_HOSTS_PER_RIGHT}",
                    right.name(),
                    hosts.macs.len()
                ),
            ));
        }
        out.rights.insert(right, list);
    }
    Ok(out)
}

/// Checks the `cec:` section: the password is printable, the allowed hosts resolve (like a
/// LUN's rights), the session bound is in range.
pub(crate) fn cec(
    raw: Option<RawCec>,
    shelf: &CheckedShelf,
    origin: &str,
) -> Result<CecConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(CecConfig::default());
    };
    let mut out = CecConfig {
        enabled: raw.enabled,
        ..CecConfig::default()
    };
    if let Some(p) = &raw.password {
        if p.value.is_empty()
            || p.value.len() > 128
            || !p.value.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Err(err(
                origin,
                p,
                "cec password: use 1 to 128 printable ASCII characters (it is typed on the console)",
            ));
        }
        out.password = Some(p.value.clone());
    }
    if let Some(entries) = &raw.allow {
        let list = strings(entries);
        let resolver = Resolver::new(&shelf.access.lists, &shelf.ethers);
        let hosts = resolver
            .resolve(&list)
            .map_err(|e| shelf.locate(e, &entries.value, origin))?;
        out.allow = if hosts.everyone {
            None
        } else {
            Some(hosts.macs)
        };
    }
    if let Some(s) = &raw.sessions {
        let n = s.value as usize;
        if n == 0 || n > MAX_CEC_SESSIONS {
            return Err(err(
                origin,
                s,
                format!(
                    "cec sessions must be 1..{MAX_CEC_SESSIONS} (default {DEFAULT_CEC_SESSIONS})"
                ),
            ));
        }
        out.sessions = n;
    }
    if let Some(n) = &raw.name {
        if n.value.is_empty()
            || n.value.len() > 200
            || !n.value.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Err(err(
                origin,
                n,
                "cec name: use 1 to 200 printable ASCII characters",
            ));
        }
        out.name = Some(n.value.clone());
    }
    Ok(out)
}
