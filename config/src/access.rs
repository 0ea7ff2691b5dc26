//! Access control: named lists of hosts and per-LUN, per-operation rights.
//!
//! A list entry is a MAC address (`52:54:00:ae:00:01`), `*` (every host), the name of another
//! list, or a host name looked up in the ethers file (`/etc/ethers` unless configured). A LUN
//! grants each [`Right`] to the hosts its entries name; a right it does not mention is granted
//! to every host (the shelf behaves as the AoE specification describes until told otherwise).
//! The same resolver serves the YAML (errors located at file:line:col) and the console's
//! live `acl` edits.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Default ethers file for host names.
pub const DEFAULT_ETHERS: &str = "/etc/ethers";

/// An operation a host may be allowed on a LUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// See the LUN: Query Config replies, IDENTIFY, announcements. Without it every frame
    /// to the LUN is ignored, as if it did not exist.
    Discover,
    /// ATA reads.
    Read,
    /// ATA writes.
    Write,
    /// Read the config string (without it replies carry an empty string).
    ConfigRead,
    /// Set the config string (Query Config set / force set).
    ConfigSet,
    /// Edit the MAC mask list from the wire.
    Mask,
    /// Set, force or release reservations from the wire.
    Reserve,
}

impl Right {
    /// Every right, in bit order.
    pub const ALL: [Right; 7] = [
        Right::Discover,
        Right::Read,
        Right::Write,
        Right::ConfigRead,
        Right::ConfigSet,
        Right::Mask,
        Right::Reserve,
    ];

    /// The name in the YAML, the console and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Right::Discover => "discover",
            Right::Read => "read",
            Right::Write => "write",
            Right::ConfigRead => "config_read",
            Right::ConfigSet => "config_set",
            Right::Mask => "mask",
            Right::Reserve => "reserve",
        }
    }

    /// Bit of this right in a rights mask.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Index in [`Right::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for Right {
    type Err = String;
    fn from_str(s: &str) -> Result<Right, String> {
        Right::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown right '{s}': use {}",
                    Right::ALL.map(Right::name).join(", ")
                )
            })
    }
}

/// Whether mask-list and reservation edits from the wire are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireAdmin {
    /// As the AoE specification describes: any host with the right may edit (the default).
    #[default]
    Accept,
    /// Only the console changes mask lists and reservations; the wire may read them.
    Refuse,
}

impl WireAdmin {
    /// The name in the YAML and the console.
    pub fn name(self) -> &'static str {
        match self {
            WireAdmin::Accept => "accept",
            WireAdmin::Refuse => "refuse",
        }
    }
}

impl std::str::FromStr for WireAdmin {
    type Err = String;
    fn from_str(s: &str) -> Result<WireAdmin, String> {
        match s {
            "accept" => Ok(WireAdmin::Accept),
            "refuse" => Ok(WireAdmin::Refuse),
            other => Err(format!("'{other}' is not accept or refuse")),
        }
    }
}

/// The shelf-wide access settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShelfAccess {
    /// Named lists of entries.
    #[serde(default)]
    pub lists: BTreeMap<String, Vec<String>>,
    /// Wire-side mask/reservation edits, unless a LUN says otherwise.
    #[serde(default)]
    pub wire_admin: WireAdmin,
    /// Where host names are looked up.
    #[serde(default = "default_ethers")]
    pub ethers: PathBuf,
}

fn default_ethers() -> PathBuf {
    PathBuf::from(DEFAULT_ETHERS)
}

impl Default for ShelfAccess {
    fn default() -> Self {
        ShelfAccess {
            lists: BTreeMap::new(),
            wire_admin: WireAdmin::Accept,
            ethers: default_ethers(),
        }
    }
}

/// One LUN's rights: for each right it restricts, the entries granted it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LunAccess {
    /// Restricted rights and who holds them (a right absent here: every host).
    #[serde(default)]
    pub rights: BTreeMap<Right, Vec<String>>,
    /// Overrides the shelf's `wire_admin`.
    #[serde(default)]
    pub wire_admin: Option<WireAdmin>,
}

/// What one list entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    /// `*`: every host.
    Everyone,
    /// A MAC address.
    Mac([u8; 6]),
    /// A list or host name.
    Name(&'a str),
}

/// Reads an entry; an entry that looks like a MAC but is not one is an error.
pub fn parse_entry(s: &str) -> Result<Entry<'_>, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(Entry::Everyone);
    }
    if s.is_empty() {
        return Err("an empty entry names nobody: write a MAC, a list, a host or *".into());
    }
    let looks_like_mac = s.contains(':')
        || (s.len() == 12 && s.chars().all(|c| c.is_ascii_hexdigit()))
        || (s.len() == 17 && s.contains('-'));
    if looks_like_mac {
        return parse_mac(s)
            .map(Entry::Mac)
            .ok_or_else(|| format!("'{s}' is not a MAC address (write e.g. 52:54:00:ae:00:01)"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "'{s}' is not a MAC, a list name or a host name (letters, digits, '-', '_', '.')"
        ));
    }
    Ok(Entry::Name(s))
}

/// A MAC in `aa:bb:cc:dd:ee:ff`, `aa-bb-...` or `aabbccddeeff` form; ethers' short groups
/// (`8:0:20:1:2:3`) are accepted too.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    if s.contains(':') || s.contains('-') {
        let groups: Vec<&str> = s.split([':', '-']).collect();
        if groups.len() != 6 {
            return None;
        }
        for (byte, g) in mac.iter_mut().zip(groups) {
            if g.is_empty() || g.len() > 2 {
                return None;
            }
            *byte = u8::from_str_radix(g, 16).ok()?;
        }
        return Some(mac);
    }
    if s.len() != 12 || !s.is_ascii() {
        return None;
    }
    for (i, byte) in mac.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(mac)
}

/// MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Host names from an ethers file (`MAC name` per line, `#` comments).
#[derive(Debug, Clone, Default)]
pub struct Ethers {
    hosts: BTreeMap<String, [u8; 6]>,
    /// Why the file could not be read, if it could not.
    unreadable: Option<String>,
    path: PathBuf,
}

impl Ethers {
    /// Reads `path`; a missing or unreadable file gives an empty table that says why when a
    /// name is looked up.
    pub fn load(path: &Path) -> Ethers {
        let mut ethers = Ethers {
            path: path.to_path_buf(),
            ..Ethers::default()
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    let line = line.split('#').next().unwrap_or("");
                    let mut words = line.split_whitespace();
                    if let (Some(mac), Some(name)) = (words.next(), words.next()) {
                        if let Some(mac) = parse_mac(mac) {
                            ethers.hosts.entry(name.to_string()).or_insert(mac);
                        }
                    }
                }
            }
            Err(e) => ethers.unreadable = Some(e.to_string()),
        }
        ethers
    }

    /// The MAC of host `name`.
    pub fn lookup(&self, name: &str) -> Result<[u8; 6], String> {
        if let Some(mac) = self.hosts.get(name) {
            return Ok(*mac);
        }
        Err(match &self.unreadable {
            Some(why) => format!(
                "'{name}' is not an access list, and host names cannot be looked up: {}: {why}",
                self.path.display()
            ),
            None => format!(
                "'{name}' is neither an access list nor a host in {}",
                self.path.display()
            ),
        })
    }
}

/// Who an entry set names: every host, or a set of MACs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    /// `*` was among the entries.
    pub everyone: bool,
    /// The MACs named.
    pub macs: BTreeSet<[u8; 6]>,
}

/// A resolution failure: which entry (of the list being resolved, or of a list it pulls in)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    /// The list holding the bad entry (`None`: the entries given to [`Resolver::resolve`]).
    pub list: Option<String>,
    /// Index of the bad entry in that list.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

/// Resolves entries against named lists and an ethers table.
pub struct Resolver<'a> {
    lists: &'a BTreeMap<String, Vec<String>>,
    ethers: &'a Ethers,
}

impl<'a> Resolver<'a> {
    /// A resolver over `lists` and `ethers`.
    pub fn new(lists: &'a BTreeMap<String, Vec<String>>, ethers: &'a Ethers) -> Resolver<'a> {
        Resolver { lists, ethers }
    }

    /// The hosts `entries` name (lists expanded, names looked up).
    pub fn resolve(&self, entries: &[String]) -> Result<Hosts, ResolveError> {
        let mut out = Hosts::default();
        let mut path = Vec::new();
        self.walk(None, entries, &mut path, &mut out)?;
        Ok(out)
    }

    /// Checks list `name` and everything it pulls in (cycles included).
    pub fn check_list(&self, name: &str) -> Result<Hosts, ResolveError> {
        let entries = self.lists.get(name).cloned().unwrap_or_default();
        let mut out = Hosts::default();
        let mut path = vec![name.to_string()];
        self.walk(Some(name), &entries, &mut path, &mut out)?;
        Ok(out)
    }

    fn walk(
        &self,
        list: Option<&str>,
        entries: &[String],
        path: &mut Vec<String>,
        out: &mut Hosts,
    ) -> Result<(), ResolveError> {
        let fail = |index: usize, message: String| ResolveError {
            list: list.map(str::to_string),
            index,
            message,
        };
        for (index, raw) in entries.iter().enumerate() {
            match parse_entry(raw).map_err(|m| fail(index, m))? {
                Entry::Everyone => out.everyone = true,
                Entry::Mac(mac) => {
                    out.macs.insert(mac);
                }
                Entry::Name(name) => match self.lists.get(name) {
                    Some(inner) => {
                        if path.iter().any(|p| p == name) {
                            let mut cycle = path.clone();
                            cycle.push(name.to_string());
                            return Err(fail(
                                index,
                                format!("access lists form a cycle: {}", cycle.join(" -> ")),
                            ));
                        }
                        path.push(name.to_string());
                        self.walk(Some(name), inner, path, out)?;
                        path.pop();
                    }
                    None => {
                        let mac = self.ethers.lookup(name).map_err(|m| fail(index, m))?;
                        out.macs.insert(mac);
                    }
                },
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn entries_are_macs_lists_hosts_or_everyone() {
        assert_eq!(parse_entry("*"), Ok(Entry::Everyone));
        assert_eq!(
            parse_entry("52:54:00:ae:00:01"),
            Ok(Entry::Mac([0x52, 0x54, 0, 0xae, 0, 1]))
        );
        assert_eq!(
            parse_entry("8:0:20:1:2:3"),
            Ok(Entry::Mac([8, 0, 0x20, 1, 2, 3]))
        );
        assert_eq!(parse_entry("hv-a1"), Ok(Entry::Name("hv-a1")));
        assert!(parse_entry("52:54:00:ae:00").is_err());
        assert!(parse_entry("52:54:00:ae:00:zz").is_err());
        assert!(parse_entry("a b").is_err());
    }

    #[test]
    fn lists_expand_and_cycles_are_named() {
        let dir = std::env::temp_dir().join(format!("es-ethers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ethers");
        std::fs::write(&file, "# hosts\n52:54:00:00:00:09 hv9\nbad line\n").unwrap();
        let ethers = Ethers::load(&file);
        let l = lists(&[
            ("a", &["52:54:00:00:00:01", "b"]),
            ("b", &["hv9"]),
            ("loop1", &["loop2"]),
            ("loop2", &["52:54:00:00:00:02", "loop1"]),
        ]);
        let r = Resolver::new(&l, &ethers);
        let hosts = r.resolve(&["a".to_string()]).unwrap();
        assert_eq!(hosts.macs.len(), 2);
        assert!(hosts.macs.contains(&[0x52, 0x54, 0, 0, 0, 9]));
        let e = r.check_list("loop1").unwrap_err();
        assert_eq!(e.list.as_deref(), Some("loop2"));
        assert_eq!(e.index, 1);
        assert!(
            e.message.contains("loop1 -> loop2 -> loop1"),
            "{}",
            e.message
        );
        let e = r.resolve(&["nobody".to_string()]).unwrap_err();
        assert!(e.message.contains("neither an access list nor a host"));
        let missing = Ethers::load(&dir.join("absent"));
        let e = Resolver::new(&l, &missing)
            .resolve(&["hv9".to_string()])
            .unwrap_err();
        assert!(e.message.contains("cannot be looked up"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
