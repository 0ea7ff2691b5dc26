//! A LUN's access rights compiled for the frame path: one sorted table of (MAC, rights bits)
//! searched by binary search, plus the rights every host holds. Built when the access
//! configuration changes and published with the LUN's other lists (lock-free reads, no
//! allocation per frame).

use crate::wire::MacAddr;
use ethershelf_config::access::{Ethers, LunAccess, Resolver, Right, ShelfAccess, WireAdmin};

/// Why a host was refused (metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not on the LUN's access list for this right.
    Acl,
    /// Not on the LUN's AoE mask list.
    Mask,
    /// The LUN is reserved by other hosts.
    Reserved,
    /// Mask/reservation edits from the wire are refused on this LUN.
    WireAdmin,
}

impl Refusal {
    /// Every reason, in counter order.
    pub const ALL: [Refusal; 4] = [
        Refusal::Acl,
        Refusal::Mask,
        Refusal::Reserved,
        Refusal::WireAdmin,
    ];
    /// Metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Acl => "acl",
            Refusal::Mask => "mask",
            Refusal::Reserved => "reserved",
            Refusal::WireAdmin => "wire_admin",
        }
    }
    /// Index in [`Refusal::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Every right's bit.
const ALL_BITS: u8 = 0x7f;

/// A MAC as a sortable integer (its 6 bytes, big-endian).
#[inline]
pub(super) fn mac_key(mac: [u8; 6]) -> u64 {
    mac.iter().fold(0u64, |k, b| (k << 8) | u64::from(*b))
}

fn unkey(k: u64) -> MacAddr {
    let b = k.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Compiled rights of one LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    /// Rights every host holds.
    open: u8,
    /// Hosts with rights beyond `open`, sorted by MAC.
    hosts: Vec<(u64, u8)>,
    /// Wire-side mask/reservation edits accepted.
    wire_admin: bool,
}

impl Default for Rights {
    /// Everything open, wire edits accepted: the AoE specification's shelf.
    fn default() -> Rights {
        Rights {
            open: ALL_BITS,
            hosts: Vec::new(),
            wire_admin: true,
        }
    }
}

impl Rights {
    /// Compiles `lun`'s rights against the shelf's lists. Entries that no longer resolve
    /// (a host gone from the ethers file, a list removed) grant nothing and are reported in
    /// the returned warnings: access fails closed, never open.
    pub fn compile(lun: &LunAccess, shelf: &ShelfAccess, ethers: &Ethers) -> (Rights, Vec<String>) {
        let resolver = Resolver::new(&shelf.lists, ethers);
        let mut open = ALL_BITS;
        let mut table: std::collections::BTreeMap<u64, u8> = Default::default();
        let mut warnings = Vec::new();
        for (right, entries) in &lun.rights {
            open &= !right.bit();
            // Resolve entry by entry, so one bad entry does not void the others.
            for entry in entries {
                match resolver.resolve(std::slice::from_ref(entry)) {
                    Ok(hosts) => {
                        if hosts.everyone {
                            open |= right.bit();
                        }
                        for mac in hosts.macs {
                            *table.entry(mac_key(mac)).or_default() |= right.bit();
                        }
                    }
                    Err(e) => warnings.push(format!("{}: {}", right.name(), e.message)),
                }
            }
        }
        let hosts = table
            .into_iter()
            .map(|(k, bits)| (k, bits & !open))
            .filter(|(_, bits)| *bits != 0)
            .collect();
        let wire_admin = lun.wire_admin.unwrap_or(shelf.wire_admin) == WireAdmin::Accept;
        (
            Rights {
                open,
                hosts,
                wire_admin,
            },
            warnings,
        )
    }

    /// May `mac` do `right`? One binary search at most; no allocation.
    #[inline]
    pub fn allows(&self, mac: MacAddr, right: Right) -> bool {
        let bit = right.bit();
        if self.open & bit != 0 {
            return true;
        }
        match self
            .hosts
            .binary_search_by_key(&mac_key(mac.0), |(k, _)| *k)
        {
            Ok(i) => self.hosts[i].1 & bit != 0,
            Err(_) => false,
        }
    }

    /// Are mask-list and reservation edits from the wire accepted?
    pub fn wire_admin(&self) -> bool {
        self.wire_admin
    }

    /// The hosts allowed `right` (`None`: every host).
    pub fn holders(&self, right: Right) -> Option<Vec<MacAddr>> {
        if self.open & right.bit() != 0 {
            return None;
        }
        Some(
            self.hosts
                .iter()
                .filter(|(_, bits)| bits & right.bit() != 0)
                .map(|(k, _)| unkey(*k))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
    const B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
    const C: [u8; 6] = [0x52, 0x54, 0, 0, 0, 3];

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn rights_not_mentioned_are_open_and_mentioned_ones_are_exact() {
        let mut shelf = ShelfAccess::default();
        shelf
            .lists
            .insert("hv".into(), s(&["52:54:00:00:00:01", "52:54:00:00:00:02"]));
        let mut lun = LunAccess::default();
        lun.rights.insert(Right::Write, s(&["52:54:00:00:00:01"]));
        lun.rights.insert(Right::Read, s(&["hv"]));
        lun.rights.insert(Right::ConfigSet, vec![]);
        lun.rights.insert(Right::Discover, s(&["*"]));
        let (r, warnings) = Rights::compile(&lun, &shelf, &Ethers::default());
        assert!(warnings.is_empty());
        assert!(r.allows(MacAddr(C), Right::Discover));
        assert!(r.allows(MacAddr(C), Right::Mask), "not mentioned: open");
        assert!(r.allows(MacAddr(A), Right::Write));
        assert!(!r.allows(MacAddr(B), Right::Write));
        assert!(r.allows(MacAddr(B), Right::Read));
        assert!(!r.allows(MacAddr(C), Right::Read));
        assert!(
            !r.allows(MacAddr(A), Right::ConfigSet),
            "empty list: nobody"
        );
        assert_eq!(r.holders(Right::Write), Some(vec![MacAddr(A)]));
        assert_eq!(r.holders(Right::Discover), None);
        assert!(r.wire_admin());
    }

    #[test]
    fn an_unresolvable_entry_fails_closed_and_is_reported() {
        let shelf = ShelfAccess {
            lists: BTreeMap::new(),
            wire_admin: WireAdmin::Refuse,
            ethers: "/nonexistent/ethers".into(),
        };
        let mut lun = LunAccess::default();
        lun.rights
            .insert(Right::Read, s(&["gone-host", "52:54:00:00:00:03"]));
        let ethers = Ethers::load(&shelf.ethers);
        let (r, warnings) = Rights::compile(&lun, &shelf, &ethers);
        assert_eq!(warnings.len(), 1);
        assert!(r.allows(MacAddr(C), Right::Read));
        assert!(!r.allows(MacAddr(A), Right::Read));
        assert!(!r.wire_admin(), "the shelf's policy applies");
    }

    #[test]
    fn a_large_table_is_searched_exactly() {
        let macs: Vec<String> = (0..255u8)
            .map(|i| format!("02:00:00:00:{:02x}:{:02x}", i / 7, i))
            .collect();
        let mut lun = LunAccess::default();
        lun.rights.insert(Right::Read, macs.clone());
        let (r, _) = Rights::compile(&lun, &ShelfAccess::default(), &Ethers::default());
        for i in 0..255u8 {
            assert!(r.allows(MacAddr([2, 0, 0, 0, i / 7, i]), Right::Read));
            assert!(!r.allows(MacAddr([2, 0, 0, 1, i / 7, i]), Right::Read));
        }
    }
}
