//! A host reached through `aoebench relay` (loss, duplicates, reordering, cuts) instead of a
//! straight veth: shelf port <-> relay namespace <-> host namespace.

use super::{aoebench, run, Lab};
use std::process::{Child, Command, Stdio};

/// The relay namespace of one relayed host and its two interfaces (shelf side, host side).
pub struct Relayed {
    pub host: usize,
    pub ns: String,
    pub a: String,
    pub b: String,
}

impl Lab {
    /// Adds a host namespace joined to the shelf through a relay namespace. Call before
    /// `config` so the shelf serves the new port.
    pub fn add_relayed_host(&mut self, mtu: u32) -> Relayed {
        let h = self.hosts.len();
        let id = &self.id;
        let (host_ns, relay_ns) = (format!("es{id}h{h}"), format!("es{id}r{h}"));
        run(&["ip", "netns", "add", &host_ns]);
        self.hosts.push(host_ns.clone());
        run(&["ip", "netns", "add", &relay_ns]);
        self.extra_ns.push(relay_ns.clone());
        let (s, ra, rb, hi) = (
            format!("e{id}s{h}"),
            format!("e{id}a{h}"),
            format!("e{id}b{h}"),
            format!("e{id}h{h}"),
        );
        run(&["ip", "link", "add", &s, "type", "veth", "peer", "name", &ra]);
        run(&[
            "ip", "link", "add", &rb, "type", "veth", "peer", "name", &hi,
        ]);
        run(&["ip", "link", "set", &s, "netns", &self.shelf_ns]);
        run(&["ip", "link", "set", &ra, "netns", &relay_ns]);
        run(&["ip", "link", "set", &rb, "netns", &relay_ns]);
        run(&["ip", "link", "set", &hi, "netns", &host_ns]);
        let mtu = mtu.to_string();
        run(&[
            "ip",
            "-n",
            &self.shelf_ns,
            "link",
            "set",
            &s,
            "mtu",
            &mtu,
            "up",
        ]);
        for i in [&ra, &rb] {
            run(&["ip", "-n", &relay_ns, "link", "set", i, "mtu", &mtu, "up"]);
        }
        run(&[
            "ip", "-n", &host_ns, "link", "set", &hi, "mtu", &mtu, "promisc", "on", "up",
        ]);
        self.links.push((s, hi));
        Relayed {
            host: h,
            ns: relay_ns,
            a: ra,
            b: rb,
        }
    }

    /// Starts the relay of `r` with extra `aoebench relay` arguments for `secs` seconds;
    /// its JSON report comes on stdout when it ends.
    pub fn start_relay(&self, r: &Relayed, secs: u32, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &r.ns])
            .arg(aoebench())
            .args(["relay", "--a", &r.a, "--b", &r.b, "--duration"])
            .arg(format!("{secs}s"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("aoebench relay")
    }
}

/// Waits for a relay and returns its report.
pub fn relay_report(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("relay output");
    assert!(
        out.status.success(),
        "relay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "relay report is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
