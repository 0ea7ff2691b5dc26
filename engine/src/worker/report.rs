//! Console reports in Coraid's layouts: `show -l` (disks), `disks`, `list -l` (the LUN
//! tree), `iostats`, `ifstat`, `release`, and `export-config`.

use super::console::Answer;
use super::reconfig::DiskUse;
use super::Worker;
use crate::lun::{Book, LunKind};
use crate::metrics::LatencyHistogram;
use crate::store::raid10::MemberDisk;
use serde_json::json;
use std::fmt::Write as _;

/// Decimal gigabytes with three places, as Coraid prints sizes.
fn gb(bytes: u64) -> String {
    format!("{:.3}GB", bytes as f64 / 1e9)
}

/// Megabytes, average and max milliseconds of one direction.
fn io_columns(bytes: u64, h: &LatencyHistogram) -> (String, serde_json::Value) {
    let text = format!(
        "{:.3}MB {:.0}ms {:.0}ms",
        bytes as f64 / 1e6,
        h.mean_seconds() * 1e3,
        h.max_seconds() * 1e3
    );
    let json = json!({"bytes": bytes, "count": h.count(), "avg_seconds": h.mean_seconds(),
        "max_seconds": h.max_seconds()});
    (text, json)
}

impl Worker {
    /// The size of shelf disk `d`, if it can be opened.
    fn disk_bytes(&self, d: usize) -> Option<u64> {
        let path = self.book.config.disks.get(d)?;
        MemberDisk::open(d, path).ok().map(|m| m.sectors() * 512)
    }

    /// `show -l`: every disk with its size and up/down.
    pub(super) fn show_disks(&self) -> Answer {
        let shelf = self.shelf;
        let mut text = String::new();
        let mut disks = Vec::new();
        for d in 0..self.book.config.disks.len() {
            let size = self.disk_bytes(d);
            let up = size.is_some();
            let _ = writeln!(
                text,
                "{shelf}.{d:<4} {:>12} {}",
                gb(size.unwrap_or(0)),
                if up { "up" } else { "down" }
            );
            disks.push(
                json!({"disk": format!("{shelf}.{d}"), "bytes": size.unwrap_or(0), "up": up}),
            );
        }
        if text.is_empty() {
            text = "no disks (add them under 'disks:' in the configuration)\n".into();
        }
        Answer {
            text,
            json: json!({ "disks": disks }),
        }
    }

    /// `disks`: size, use and path of every disk.
    pub(super) fn disks_table(&self) -> Answer {
        let shelf = self.shelf;
        let uses = self.disk_uses();
        let mut text = format!("{:<8} {:>12} {:<20} PATH\n", "DISK", "SIZE", "USE");
        let mut disks = Vec::new();
        for (d, path) in self.book.config.disks.iter().enumerate() {
            let size = self.disk_bytes(d);
            let size_text = size.map_or_else(|| "missing".to_string(), gb);
            let use_text = uses.get(d).map_or("free".into(), DiskUse::describe);
            let _ = writeln!(
                text,
                "{:<8} {size_text:>12} {use_text:<20} {}",
                format!("{shelf}.{d}"),
                path.display()
            );
            disks.push(
                json!({"disk": format!("{shelf}.{d}"), "bytes": size, "use": use_text,
                "path": path.display().to_string()}),
            );
        }
        Answer {
            text,
            json: json!({ "disks": disks }),
        }
    }

    /// `list -l`: LUN, element and component lines, indented by depth.
    pub(super) fn list_tree(&self) -> Answer {
        let shelf = self.shelf;
        let mut text = String::new();
        let mut luns = Vec::new();
        for t in self.existing() {
            let Some(r) = self.book.record(t) else {
                continue;
            };
            let target = &self.targets[t];
            let size = target.sectors * 512;
            let online = if self.book.is_online(t) {
                "online"
            } else {
                "offline"
            };
            let _ = writeln!(text, "{:>3} {} {online} {}", r.slot, gb(size), r.label);
            let mut components = Vec::new();
            let (kind, state, percent) = match &self.arrays[t] {
                Some(a) => {
                    let pct = a.sync.as_ref().map(|j| j.percent());
                    (r.kind.name(), a.state(), pct)
                }
                None => (r.kind.name(), "normal".to_string(), None),
            };
            let pct_text = percent.map(|p| format!(" {p:.2}%")).unwrap_or_default();
            let _ = writeln!(
                text,
                "   {}.0 {} {kind} {state}{pct_text}",
                r.slot,
                gb(size)
            );
            match &self.arrays[t] {
                Some(a) => {
                    for (i, role) in a.roles.iter().enumerate() {
                        let disk = role
                            .dev
                            .as_ref()
                            .map_or("missing".to_string(), |d| format!("{shelf}.{}", d.disk));
                        let bytes = role.dev.as_ref().map_or(0, |d| d.data_sectors() * 512);
                        let bad = role.bad.sectors();
                        let bad_text = if bad > 0 {
                            format!(" badblocks={bad}")
                        } else {
                            String::new()
                        };
                        let _ = writeln!(
                            text,
                            "     {}.0.{i} {} {} {disk}{bad_text}",
                            r.slot,
                            role.state,
                            gb(bytes)
                        );
                        components.push(json!({"component": format!("{}.0.{i}", r.slot),
                            "state": role.state.to_string(), "bytes": bytes, "disk": disk,
                            "bad_sectors": bad}));
                    }
                }
                None => {
                    let what = match r.kind {
                        LunKind::Jbod => r
                            .disks
                            .first()
                            .map_or("?".into(), |d| format!("{shelf}.{d}")),
                        _ => target
                            .backing
                            .as_ref()
                            .map_or(String::new(), |b| b.path().display().to_string()),
                    };
                    let _ = writeln!(text, "     {}.0.0 normal {} {what}", r.slot, gb(size));
                    components.push(json!({"component": format!("{}.0.0", r.slot),
                        "state": "normal", "bytes": size, "disk": what}));
                }
            }
            luns.push(
                json!({"lun": r.slot, "bytes": size, "online": self.book.is_online(t),
                "label": r.label, "type": kind, "state": state, "percent": percent,
                "components": components}),
            );
        }
        if text.is_empty() {
            text = "no LUNs\n".into();
        }
        Answer {
            text,
            json: json!({ "luns": luns }),
        }
    }

    /// `iostats`: per LUN and member, MB moved and average/max latency since start.
    pub(super) fn iostats(&self) -> Answer {
        let mut text = format!(
            "{:<8} {:<24} {:<24}\n",
            "LUN", "READ (MB avg max)", "WRITE (MB avg max)"
        );
        let mut rows = Vec::new();
        for t in self.existing() {
            let target = &self.targets[t];
            let c = &self.luns[t];
            let (r, rj) = io_columns(c.read_bytes, &c.read_latency);
            let (w, wj) = io_columns(c.written_bytes, &c.write_latency);
            let _ = writeln!(text, "{:<8} {r:<24} {w:<24}", target.slot);
            rows.push(json!({"lun": target.slot, "read": rj, "write": wj}));
            let Some(a) = &self.arrays[t] else { continue };
            for (i, role) in a.roles.iter().enumerate() {
                let m = &role.counters;
                let (r, rj) = io_columns(m.read_bytes, &m.read_latency);
                let (w, wj) = io_columns(m.written_bytes, &m.write_latency);
                let name = format!("{}.0.{i}", target.slot);
                let _ = writeln!(text, "{name:<8} {r:<24} {w:<24}");
                rows.push(json!({"component": name, "read": rj, "write": wj}));
            }
        }
        Answer {
            text,
            json: json!({ "iostats": rows }),
        }
    }

    /// `ifstat`: each port's address, link speed and MTU, then frames per path.
    pub(super) fn ifstat(&self) -> Answer {
        let mut text = format!("{:<16} {:<14} {:<12} MTU\n", "NAME", "ADDR", "LINK (Mbps)");
        let mut ports = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for port in &self.ports {
            let name = port.name.clone();
            if seen.contains(&name) {
                continue;
            }
            seen.push(name.clone());
            let speed = std::fs::read_to_string(format!("/sys/class/net/{name}/speed"))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|s| *s > 0);
            let addr: String = port.mac.0.iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(
                text,
                "{name:<16} {addr:<14} {:<12} {}",
                speed.map_or("unknown".into(), |s| format!("{s}/{s}")),
                port.mtu
            );
            ports.push(json!({"name": name, "addr": addr, "mbps": speed, "mtu": port.mtu}));
        }
        let _ = writeln!(
            text,
            "\n{:<16} {:>5} {:<7} {:>12} {:>12} {:>8}",
            "PATH", "QUEUE", "MODE", "RX FRAMES", "TX FRAMES", "DROPS"
        );
        let mut paths = Vec::new();
        for (i, port) in self.ports.iter().enumerate() {
            let (p, io, _) = self.path_counters(i);
            let drops: u64 = p.drops.iter().sum::<u64>() + io.kernel_drops;
            let _ = writeln!(
                text,
                "{:<16} {:>5} {:<7} {:>12} {:>12} {:>8}",
                port.name, port.queue, port.mode, p.rx_frames, p.tx_frames, drops
            );
            paths.push(
                json!({"port": port.name, "queue": port.queue, "mode": port.mode,
                "rx_frames": p.rx_frames, "tx_frames": p.tx_frames, "rx_bytes": p.rx_bytes,
                "tx_bytes": p.tx_bytes, "drops": drops}),
            );
        }
        Answer {
            text,
            json: json!({ "ports": ports, "paths": paths }),
        }
    }

    /// `release`: the running version.
    pub(super) fn release_line(&self) -> Answer {
        let v = env!("CARGO_PKG_VERSION");
        Answer {
            text: format!("ethershelf-{v}\n"),
            json: json!({ "release": format!("ethershelf-{v}") }),
        }
    }

    /// `export-config`: the running shelf as YAML.
    pub(super) fn export_config(&self) -> Answer {
        let book = Book {
            version: 1,
            luns: self.book.records.iter().flatten().cloned().collect(),
            spares: self.spares.iter().map(|d| d.disk).collect(),
        };
        let yaml = book.export_yaml(&self.book.config, &self.book.access);
        Answer {
            json: json!({ "yaml": yaml }),
            text: yaml,
        }
    }
}
