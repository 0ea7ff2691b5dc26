//! Which core the worker runs on, and pinning it there.
//!
//! The machine's topology comes from hwloc (`hwlocality`): a worker belongs on a core of the
//! NUMA node its NIC hangs off, so frames, rings and buffers stay in that node's memory.
//! Cores the process may not use (taskset, cgroups) are never chosen. When hwloc cannot read
//! the topology, or the NIC has no NUMA node (veth, single-node machines), the choice falls
//! back to the allowed cores, and the log says so.

use hwlocality::object::types::ObjectType;
use hwlocality::Topology;

/// A chosen core and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreChoice {
    /// OS index of the CPU (as in /proc/cpuinfo, taskset).
    pub cpu: usize,
    /// One sentence for the log.
    pub why: String,
}

/// CPUs this process may run on (sched_getaffinity), in increasing order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; sched_getaffinity fills it for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// The NUMA node of `iface`'s device, if the kernel knows one.
fn nic_numa_node(iface: &str) -> Option<usize> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/device/numa_node")).ok()?;
    text.trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| usize::try_from(n).ok())
}

/// CPUs of NUMA node `node` according to hwloc.
fn node_cpus(topology: &Topology, node: usize) -> Vec<usize> {
    topology
        .objects_with_type(ObjectType::NUMANode)
        .filter(|n| n.os_index() == Some(node))
        .filter_map(|n| n.cpuset())
        .flat_map(|set| set.iter_set().map(usize::from).collect::<Vec<_>>())
        .collect()
}

/// Picks the core for the worker serving `interfaces`. `configured` (the config's `cpus`)
/// wins when one of its cores is allowed.
pub fn choose(interfaces: &[String], configured: &[usize]) -> Option<CoreChoice> {
    choose_many(interfaces, configured, 1).into_iter().next()
}

/// Picks up to `n` distinct cores for the workers serving `interfaces`, best first: the
/// configured `cpus` that are allowed, in their order; else the allowed cores of the NIC's
/// NUMA node, then the other allowed cores (highest first: CPU 0 usually takes most
/// housekeeping interrupts). Fewer than `n` when fewer cores may be used.
pub fn choose_many(interfaces: &[String], configured: &[usize], n: usize) -> Vec<CoreChoice> {
    let allowed = allowed_cpus();
    if allowed.is_empty() || n == 0 {
        return Vec::new();
    }
    if !configured.is_empty() {
        let usable: Vec<CoreChoice> = configured
            .iter()
            .filter(|c| allowed.contains(c))
            .take(n)
            .map(|&cpu| CoreChoice {
                cpu,
                why: "configured (cpus)".into(),
            })
            .collect();
        if !usable.is_empty() {
            return usable;
        }
        tracing::warn!(configured = ?configured, allowed = ?allowed, "none of the configured cpus may be used by this process; choosing from the topology");
    }
    ranked(interfaces, &allowed).into_iter().take(n).collect()
}

/// Every allowed core, best first, each with the reason for its place.
fn ranked(interfaces: &[String], allowed: &[usize]) -> Vec<CoreChoice> {
    let mut by_preference: Vec<usize> = allowed.to_vec();
    by_preference.sort_unstable_by(|a, b| b.cmp(a));
    let topology = match Topology::new() {
        Ok(t) => t,
        Err(e) => {
            return by_preference
                .into_iter()
                .map(|cpu| CoreChoice {
                    cpu,
                    why: format!("hwloc could not read the topology ({e}); highest allowed core"),
                })
                .collect()
        }
    };
    let node = interfaces.iter().find_map(|i| nic_numa_node(i));
    let near: Vec<usize> = node.map_or_else(Vec::new, |n| node_cpus(&topology, n));
    let nodes = topology.objects_with_type(ObjectType::NUMANode).count();
    let mut out: Vec<CoreChoice> = by_preference
        .iter()
        .filter(|c| near.contains(c))
        .map(|&cpu| CoreChoice {
            cpu,
            why: format!(
                "on NUMA node {}, where the NIC is",
                node.unwrap_or_default()
            ),
        })
        .collect();
    for &cpu in &by_preference {
        if near.contains(&cpu) {
            continue;
        }
        out.push(CoreChoice {
            cpu,
            why: match node {
                Some(n) if out.is_empty() => format!(
                    "NIC on NUMA node {n} but none of its cores is allowed; highest allowed core"
                ),
                Some(n) => format!("NIC on NUMA node {n}, whose allowed cores are taken; next allowed core"),
                None => format!(
                    "the NIC reports no NUMA node ({nodes} node(s) on this machine); highest allowed core"
                ),
            },
        });
    }
    out
}

/// Pins the calling thread to `cpu`; returns false (and the log says why) when it cannot.
pub fn pin_current(cpu: usize) -> bool {
    let ok = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    if !ok {
        tracing::warn!(
            cpu,
            "could not pin the worker to its core; it runs unpinned"
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_is_an_allowed_cpu_and_configured_wins() {
        let allowed = allowed_cpus();
        assert!(!allowed.is_empty());
        let c = choose(&["lo".into()], &[]).expect("a core is always chosen");
        assert!(allowed.contains(&c.cpu), "{c:?} not in {allowed:?}");
        let first = allowed[0];
        let c = choose(&["lo".into()], &[9999, first]).unwrap();
        assert_eq!(c.cpu, first);
        assert_eq!(c.why, "configured (cpus)");
        let c = choose(&["lo".into()], &[9999]).unwrap();
        assert!(allowed.contains(&c.cpu));
    }

    #[test]
    fn many_cores_are_distinct_allowed_and_start_with_the_single_choice() {
        let allowed = allowed_cpus();
        let many = choose_many(&["lo".into()], &[], allowed.len() + 3);
        assert_eq!(many.len(), allowed.len(), "{many:?}");
        let mut cpus: Vec<usize> = many.iter().map(|c| c.cpu).collect();
        assert_eq!(many[0], choose(&["lo".into()], &[]).unwrap());
        cpus.sort_unstable();
        cpus.dedup();
        assert_eq!(cpus, allowed);
        let first = allowed[0];
        let configured = choose_many(&["lo".into()], &[9999, first], 4);
        assert_eq!(
            configured.len(),
            1,
            "only allowed configured cores: {configured:?}"
        );
        assert_eq!(configured[0].cpu, first);
        assert!(choose_many(&["lo".into()], &[], 0).is_empty());
    }
}
