//! Per-host shares: each source MAC's request buffers in use and its token buckets for state
//! changes and broadcasts, in a fixed table (no allocation after start, no lock: the LUN
//! worker owns it). A host that floods is limited; the others keep their share. Shelf-wide
//! buckets behind the per-host ones bound floods from forged, ever-changing MACs.

use crate::wire::MacAddr;

/// Entries in the table (a power of two).
const ENTRIES: usize = 4096;
/// Entries probed for a MAC before one is recycled.
const PROBE: usize = 8;

/// State changes (config set, mask edit, reserve set) one host may send per second...
pub const ADMIN_RATE: u64 = 50;
/// ...with bursts of this many.
pub const ADMIN_BURST: u64 = 100;
/// State changes per second from all hosts together.
pub const SHELF_ADMIN_RATE: u64 = 2_000;
/// Broadcast (wildcard) queries one host may send per second...
pub const BROADCAST_RATE: u64 = 100;
/// ...with bursts of this many.
pub const BROADCAST_BURST: u64 = 200;
/// Broadcast queries per second from all hosts together.
pub const SHELF_BROADCAST_RATE: u64 = 5_000;

/// Other non-I/O commands (config/mask/reserve reads, IDENTIFY, SMART...) one host may send
/// per second (a real initiator sends a handful at discovery)...
pub const CONTROL_RATE: u64 = 500;
/// ...with bursts of this many.
pub const CONTROL_BURST: u64 = 1000;
/// Other non-I/O commands per second from all hosts together.
pub const SHELF_CONTROL_RATE: u64 = 20_000;

/// A token bucket in thousandths of a token.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    milli: u64,
    at_ns: u64,
}

impl Bucket {
    fn take(&mut self, now_ns: u64, rate: u64, burst: u64) -> bool {
        let cap = burst * 1000;
        if self.at_ns == 0 {
            self.milli = cap;
        } else {
            let elapsed = now_ns.saturating_sub(self.at_ns);
            // rate tokens per second = rate * 1000 milli per 1e9 ns.
            let refill = elapsed.saturating_mul(rate) / 1_000_000;
            self.milli = (self.milli + refill).min(cap);
        }
        self.at_ns = now_ns;
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Host {
    /// MAC as an integer + 1 (0: free entry).
    key: u64,
    in_flight: u32,
    last_seen_ns: u64,
    admin: Bucket,
    broadcast: Bucket,
    control: Bucket,
}

/// An entry of the table (kept in a request's slot to give its buffer back).
pub type HostId = u16;

/// What a host may do right now.
pub struct Hosts {
    table: Box<[Host]>,
    shelf_admin: Bucket,
    shelf_broadcast: Bucket,
    shelf_control: Bucket,
}

fn key(mac: MacAddr) -> u64 {
    mac.0.iter().fold(0u64, |k, b| (k << 8) | u64::from(*b)) + 1
}

impl Default for Hosts {
    fn default() -> Self {
        Hosts::new()
    }
}

impl Hosts {
    /// An empty table.
    pub fn new() -> Hosts {
        Hosts {
            table: vec![Host::default(); ENTRIES].into_boxed_slice(),
            shelf_admin: Bucket::default(),
            shelf_broadcast: Bucket::default(),
            shelf_control: Bucket::default(),
        }
    }

    /// The entry of `mac`, made if needed (recycling the least recently seen idle entry of
    /// its probe window; if all are busy, the one with the fewest buffers is shared).
    pub fn id(&mut self, mac: MacAddr, now_ns: u64) -> HostId {
        let k = key(mac);
        let start = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize & (ENTRIES - 1);
        let mut victim = start;
        for i in 0..PROBE {
            let at = (start + i) & (ENTRIES - 1);
            let h = &self.table[at];
            if h.key == k {
                self.table[at].last_seen_ns = now_ns;
                return at as HostId;
            }
            let v = &self.table[victim];
            let better = (h.in_flight, h.last_seen_ns) < (v.in_flight, v.last_seen_ns);
            if h.key == 0 || better {
                victim = at;
            }
        }
        let h = &mut self.table[victim];
        if h.in_flight == 0 {
            *h = Host {
                key: k,
                last_seen_ns: now_ns,
                ..Host::default()
            };
        }
        victim as HostId
    }

    /// May host `id` take one more request buffer? `busy` says whether buffers run short:
    /// then a host already holding `share` or more is refused (the others still get theirs).
    pub fn may_take(&self, id: HostId, busy: bool, share: u32) -> bool {
        !busy || self.table[id as usize].in_flight < share
    }

    /// Host `id` took a buffer.
    pub fn took(&mut self, id: HostId) {
        self.table[id as usize].in_flight += 1;
    }

    /// Host `id` gave a buffer back.
    pub fn gave_back(&mut self, id: HostId) {
        let h = &mut self.table[id as usize];
        h.in_flight = h.in_flight.saturating_sub(1);
    }

    /// Buffers host `id` holds.
    #[cfg(test)]
    pub fn in_flight(&self, id: HostId) -> u32 {
        self.table[id as usize].in_flight
    }

    /// May host `id` change state now (its rate and the shelf's)?
    pub fn admin_allowed(&mut self, id: HostId, now_ns: u64) -> bool {
        self.table[id as usize]
            .admin
            .take(now_ns, ADMIN_RATE, ADMIN_BURST)
            && self
                .shelf_admin
                .take(now_ns, SHELF_ADMIN_RATE, SHELF_ADMIN_RATE)
    }

    /// May host `id` send another non-I/O command now (its rate and the shelf's)?
    pub fn control_allowed(&mut self, id: HostId, now_ns: u64) -> bool {
        self.table[id as usize]
            .control
            .take(now_ns, CONTROL_RATE, CONTROL_BURST)
            && self
                .shelf_control
                .take(now_ns, SHELF_CONTROL_RATE, SHELF_CONTROL_RATE)
    }

    /// May host `id` send a broadcast query now (its rate and the shelf's)?
    pub fn broadcast_allowed(&mut self, id: HostId, now_ns: u64) -> bool {
        self.table[id as usize]
            .broadcast
            .take(now_ns, BROADCAST_RATE, BROADCAST_BURST)
            && self
                .shelf_broadcast
                .take(now_ns, SHELF_BROADCAST_RATE, SHELF_BROADCAST_RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_flooding_host_is_held_to_its_rate_and_others_keep_theirs() {
        let mut hosts = Hosts::new();
        let a = hosts.id(MacAddr([2, 0, 0, 0, 0, 1]), SEC);
        let b = hosts.id(MacAddr([2, 0, 0, 0, 0, 2]), SEC);
        assert_ne!(a, b);
        let allowed = (0..1000)
            .filter(|i| hosts.admin_allowed(a, SEC + i * 1000))
            .count();
        assert!(
            (ADMIN_BURST as usize..ADMIN_BURST as usize + 2).contains(&allowed),
            "{allowed}"
        );
        assert!(
            hosts.admin_allowed(b, SEC + 2_000_000),
            "B has its own bucket"
        );
        // One second later A has ADMIN_RATE more.
        let later = (0..1000)
            .filter(|_| hosts.admin_allowed(a, 2 * SEC + 2_000_000))
            .count();
        assert!(
            (ADMIN_RATE as usize - 1..=ADMIN_RATE as usize + 1).contains(&later),
            "{later}"
        );
    }

    #[test]
    fn forged_macs_are_bounded_by_the_shelf_bucket() {
        let mut hosts = Hosts::new();
        let mut allowed = 0;
        for i in 0..20_000u32 {
            let b = i.to_be_bytes();
            let id = hosts.id(MacAddr([2, 1, b[0], b[1], b[2], b[3]]), SEC);
            allowed += usize::from(hosts.admin_allowed(id, SEC));
        }
        assert_eq!(allowed, SHELF_ADMIN_RATE as usize);
    }

    #[test]
    fn buffers_are_shared_when_they_run_short() {
        let mut hosts = Hosts::new();
        let a = hosts.id(MacAddr([2, 0, 0, 0, 0, 1]), SEC);
        let b = hosts.id(MacAddr([2, 0, 0, 0, 0, 2]), SEC);
        for _ in 0..128 {
            assert!(hosts.may_take(a, false, 128));
            hosts.took(a);
        }
        assert!(hosts.may_take(a, false, 128), "plenty left: no limit");
        assert!(!hosts.may_take(a, true, 128), "short: A has its share");
        assert!(hosts.may_take(b, true, 128), "B still gets buffers");
        for _ in 0..128 {
            hosts.gave_back(a);
        }
        assert_eq!(hosts.in_flight(a), 0);
        // A busy entry is never recycled under another MAC.
        hosts.took(a);
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            let b = i.to_be_bytes();
            seen.insert(hosts.id(MacAddr([2, 9, b[0], b[1], b[2], b[3]]), 2 * SEC));
        }
        assert_eq!(hosts.id(MacAddr([2, 0, 0, 0, 0, 1]), 3 * SEC), a);
        assert_eq!(hosts.in_flight(a), 1);
    }
}
