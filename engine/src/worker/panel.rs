//! The front panel's document (`/panel.json`): every disk slot with its state, the LUN tree
//! with sync progress, and the cumulative counters the page turns into live graphs. Built
//! between batches from what the worker holds in memory: no disk is touched for it.

use super::reconfig::DiskUse;
use super::Worker;
use crate::store::raid10::MemberDisk;
use serde_json::{json, Value};

/// A slot's state as the panel colours it.
fn slot_state(use_: &DiskUse, known: bool) -> &'static str {
    match use_ {
        DiskUse::Free if !known => "missing",
        DiskUse::Free => "free",
        DiskUse::Spare => "spare",
        DiskUse::Failed => "failed",
        DiskUse::Jbod(_) => "up",
        DiskUse::Member(_, state) => match state.as_str() {
            "recovering" => "recovering",
            "failed" => "failed",
            "missing" => "missing",
            _ => "up",
        },
    }
}

impl Worker {
    /// Bytes of disk `d` if the worker holds it open (member, spare or failed).
    fn held_disk_bytes(&self, d: usize) -> Option<u64> {
        let of = |m: &MemberDisk| (m.disk == d).then(|| m.sectors() * 512);
        self.arrays
            .iter()
            .flatten()
            .flat_map(|a| a.roles.iter().filter_map(|r| r.dev.as_ref()))
            .chain(&self.spares)
            .chain(&self.failed_disks)
            .find_map(of)
    }

    /// Every disk slot's state, for the metrics (`ethershelf_disk_state`).
    pub(super) fn disk_samples(&self) -> Vec<crate::metrics::snapshot::DiskSample> {
        let uses = self.disk_uses();
        self.book
            .config
            .disks
            .iter()
            .enumerate()
            .map(|(d, path)| {
                let use_ = uses.get(d).cloned().unwrap_or(DiskUse::Free);
                let known = self.held_disk_bytes(d).is_some() || path.exists();
                crate::metrics::snapshot::DiskSample {
                    disk: format!("{}.{d}", self.shelf),
                    state: slot_state(&use_, known),
                }
            })
            .collect()
    }

    /// The panel's JSON document.
    pub(super) fn panel(&self) -> Value {
        let shelf = self.shelf;
        let snap = self.snapshot();
        let uses = self.disk_uses();
        let sync_of = |lun: &str| snap.arrays.iter().find(|a| a.lun == lun);
        let mut slots = Vec::new();
        for (d, path) in self.book.config.disks.iter().enumerate() {
            let use_ = uses.get(d).cloned().unwrap_or(DiskUse::Free);
            let bytes = self.held_disk_bytes(d);
            let known = bytes.is_some() || path.exists();
            let state = slot_state(&use_, known);
            let percent = match (&use_, state) {
                (DiskUse::Member(m, _), "recovering") => m
                    .split('.')
                    .next()
                    .and_then(|l| sync_of(&format!("{shelf}.{l}")))
                    .filter(|a| a.sync_kind.is_some())
                    .map(|a| (a.sync_progress * 1000.0).round() / 10.0),
                _ => None,
            };
            slots.push(json!({
                "slot": d, "disk": format!("{shelf}.{d}"), "path": path.display().to_string(),
                "bytes": bytes, "state": state, "use": use_.describe(), "percent": percent,
            }));
        }
        let tree = self.list_tree().json;
        let mut luns = Vec::new();
        for l in tree["luns"].as_array().into_iter().flatten() {
            let slot = l["lun"].as_u64().unwrap_or(0);
            let name = format!("{shelf}.{slot}");
            let mut lun = l.clone();
            lun["name"] = json!(name);
            lun["sync"] = match sync_of(&name) {
                Some(a) if a.sync_kind.is_some() => json!({
                    "kind": a.sync_kind, "percent": (a.sync_progress * 1000.0).round() / 10.0,
                    "rate_bytes": a.sync_rate,
                }),
                _ => Value::Null,
            };
            if let Some(s) = snap.luns.iter().find(|s| s.lun == name) {
                let c = &s.counters;
                lun["reads"] = json!(c.reads);
                lun["writes"] = json!(c.writes);
                lun["read_bytes"] = json!(c.read_bytes);
                lun["written_bytes"] = json!(c.written_bytes);
                lun["read_latency_us_sum"] = json!(c.read_latency.sum_seconds() * 1e6);
                lun["read_latency_count"] = json!(c.read_latency.count());
                lun["write_latency_us_sum"] = json!(c.write_latency.sum_seconds() * 1e6);
                lun["write_latency_count"] = json!(c.write_latency.count());
            }
            luns.push(lun);
        }
        let paths: Vec<Value> = snap
            .paths
            .iter()
            .map(|p| {
                json!({
                    "port": p.port, "queue": p.queue, "mode": p.mode,
                    "rx_frames": p.stats.rx_frames, "tx_frames": p.stats.tx_frames,
                    "rx_bytes": p.stats.rx_bytes, "tx_bytes": p.stats.tx_bytes,
                    "drops": p.stats.drops.iter().sum::<u64>() + p.kernel_drops,
                })
            })
            .collect();
        json!({
            "shelf": shelf,
            "host": std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            "slots": slots,
            "luns": luns,
            "paths": paths,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_states_follow_the_disk_use() {
        let m = |s: &str| DiskUse::Member("0.0.1".into(), s.into());
        assert_eq!(slot_state(&m("normal"), true), "up");
        assert_eq!(slot_state(&m("recovering"), true), "recovering");
        assert_eq!(slot_state(&m("failed"), true), "failed");
        assert_eq!(slot_state(&m("missing"), false), "missing");
        assert_eq!(slot_state(&DiskUse::Spare, true), "spare");
        assert_eq!(slot_state(&DiskUse::Failed, true), "failed");
        assert_eq!(slot_state(&DiskUse::Free, true), "free");
        assert_eq!(slot_state(&DiskUse::Free, false), "missing");
        assert_eq!(slot_state(&DiskUse::Jbod(3), true), "up");
    }
}
