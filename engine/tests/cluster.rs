//! The cluster's network failures, with the real Linux initiator (aoe.ko in a qemu VM, the
//! project's harness deploy/vm/initiator.sh) running fio with verify against a shelf that
//! sits behind `aoebench relay` on every path (deploy/cluster/shelf.sh):
//! - a lossy network (5 % loss, 1 % duplicates, reordering within 1 ms) at MTU 1500 and
//!   9000, against a clean run of the same job through the same relay (the clean runs are
//!   also the suite's packet-mode runs of the Linux initiator; kernel_initiator.rs has the
//!   AF_XDP ones);
//! - multipath failover: two NICs, two shelf ports, one path cut for 20 s during fio;
//! - the shelf killed with SIGKILL during fio and started again;
//! - a VM with no disk booting from a LUN through iPXE (deploy/cluster/sanboot.sh);
//! - a whole shelf lost behind md RAID1 and re-added from its bitmap (deploy/cluster/md.sh);
//! - a VM handed over between two hosts with config-string claims (deploy/cluster/handoff.sh).
//!
//! Each test prints the harness's summary (fio's table), the relay's counts and, for the
//! multipath test, the per-path frame counters the shelf's metrics showed over time.

mod common;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One harness run: where its results are and what it said.
struct Run {
    passed: bool,
    out: PathBuf,
    summary: Value,
    text: String,
}

impl Run {
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join(name)).unwrap_or_default()
    }

    /// The relay's JSON report of path `i`.
    fn relay(&self, i: usize) -> Value {
        let text = self.file(&format!("relay{i}.json"));
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "relay{i}.json is not the relay's report ({e}): {text:?}\n{}",
                self.file(&format!("relay{i}.log"))
            )
        })
    }

    /// fio's I/O errors over every job.
    fn fio_errors(&self) -> u64 {
        self.jobs()
            .iter()
            .map(|j| j["total_err"].as_u64().unwrap_or(0) + j["error"].as_u64().unwrap_or(0))
            .sum()
    }

    fn jobs(&self) -> Vec<Value> {
        self.summary["fio"]["jobs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// MiB moved (writes and verify reads) per second of fio's run.
    fn mib_per_s(&self) -> f64 {
        let mib: f64 = self
            .jobs()
            .iter()
            .map(|j| j["io_mib"].as_f64().unwrap_or(0.0))
            .sum();
        let at = |name: &str| {
            self.summary["timeline"]
                .as_array()
                .and_then(|t| t.iter().find(|e| e["event"] == name))
                .and_then(|e| e["host_s"].as_f64())
                .unwrap_or(f64::NAN)
        };
        mib / (at("fio_end") - at("fio_start"))
    }

    /// When shelf.sh logged an event containing `what` (seconds since it started).
    fn shelf_event(&self, what: &str) -> f64 {
        let events = self.file("shelf-events.tsv");
        events
            .lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split('\t').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("shelf.sh never logged '{what}':\n{events}"))
    }

    fn assert_clean_pass(&self, what: &str) {
        assert!(
            self.passed && self.summary["verdict"] == "pass",
            "{what}: the run failed:\n{}\n--- shelf ---\n{}\n{}",
            self.text,
            self.file("shelf-events.tsv"),
            tail(&self.file("shelf.log"), 30)
        );
        assert_eq!(
            self.fio_errors(),
            0,
            "{what}: fio saw errors:\n{}",
            self.text
        );
        assert!(
            !self.jobs().is_empty(),
            "{what}: no fio results:\n{}",
            self.text
        );
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs the VM harness once: `nics` NICs at `mtu`, fio job `job` (a file of deploy/vm/jobs),
/// the shelf of deploy/cluster/shelf.sh with `shelf_args`.
fn run(name: &str, nics: u32, mtu: u32, job: &str, shelf_args: &[&str]) -> Run {
    common::require("qemu-system-x86_64", "qemu-system-x86");
    common::require("python3", "python3");
    let root = repo();
    let dir = std::env::temp_dir().join(format!("es-cluster-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let status = Command::new(root.join("deploy/vm/initiator.sh"))
        .args(["--accel", "tcg", "--settle", "2", "--wait", "60"])
        .args(["--mtu", &mtu.to_string(), "--nics", &nics.to_string()])
        // Long enough that no outage here makes aoe.ko give the device up.
        .args(["--aoe-params", "aoe_deadsecs=120"])
        .arg("--fio-job")
        .arg(root.join("deploy/vm/jobs").join(job))
        .arg("--out")
        .arg(&out)
        .arg("--")
        .arg(root.join("deploy/cluster/shelf.sh"))
        .arg("--bin")
        .arg(common::binary())
        .arg("--aoebench")
        .arg(common::aoebench())
        .args(["--ifaces", "{IFACES}", "--mtu", "{MTU}", "--out", "{OUT}"])
        .arg("--disk")
        .arg(dir.join("lun0.img"))
        .args(shelf_args)
        .status()
        .expect("deploy/vm/initiator.sh");
    let text = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    println!("== {name}\n{text}");
    Run {
        passed: status.success(),
        out,
        summary,
        text,
    }
}

fn cleanup(run: &Run) {
    if let Some(dir) = run.out.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn sum(report: &Value, field: &str) -> u64 {
    ["a_to_b", "b_to_a"]
        .iter()
        .map(|d| report[d][field].as_u64().unwrap_or(0))
        .sum()
}

fn lossy_at(mtu: u32) {
    let payload = if mtu >= 9000 { 8704 } else { 1024 };
    let clean = run(&format!("clean-{mtu}"), 1, mtu, "verify-tiny.fio", &[]);
    clean.assert_clean_pass("the clean run");
    let lossy = run(
        &format!("lossy-{mtu}"),
        1,
        mtu,
        "verify-tiny.fio",
        &[
            "--relay-all",
            "--loss 5 --duplicate 1 --reorder 1ms --seed 7",
        ],
    );
    let report = lossy.relay(0);
    println!("relay (5 % loss, 1 % duplicates, reordering within 1 ms): {report}");
    lossy.assert_clean_pass("the lossy run");
    for r in [&clean, &lossy] {
        assert_eq!(
            r.summary["device"]["payload_bytes"].as_u64(),
            Some(payload),
            "aoe.ko did not use {payload}-byte frames at MTU {mtu}:\n{}",
            r.text
        );
    }
    let (lost, dup) = (sum(&report, "lost"), sum(&report, "duplicated"));
    let received = sum(&report, "received");
    assert!(
        received > 1000 && lost > 0 && dup > 0,
        "the relay did not impair the traffic: {report}"
    );
    // 5 % of the frames, give or take what chance allows on this many.
    let rate = lost as f64 / received as f64;
    assert!(
        (0.03..0.07).contains(&rate),
        "loss rate {rate:.3}: {report}"
    );
    let (c, l) = (clean.mib_per_s(), lossy.mib_per_s());
    println!(
        "MTU {mtu}: clean {c:.2} MiB/s, lossy {l:.2} MiB/s ({:.2} x); {lost} frames lost, {dup} duplicated of {received}; fio errors 0",
        l / c
    );
    cleanup(&clean);
    cleanup(&lossy);
}

#[test]
fn linux_initiator_verifies_through_a_lossy_network_at_mtu_1500() {
    lossy_at(1500);
}

#[test]
fn linux_initiator_verifies_through_a_lossy_network_at_mtu_9000() {
    lossy_at(9000);
}

/// Per-path receive counters from paths.tsv: (seconds, port, rx frames).
fn path_rows(out: &Path) -> Vec<(f64, String, u64)> {
    std::fs::read_to_string(out.join("paths.tsv"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.to_string(),
                f.get(2)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Frames `port` received between the scrapes nearest after `from` and before `to`.
fn received_between(rows: &[(f64, String, u64)], port: &str, from: f64, to: f64) -> Option<u64> {
    let on: Vec<&(f64, String, u64)> = rows.iter().filter(|r| r.1 == port).collect();
    let first = on.iter().find(|r| r.0 >= from)?;
    let last = on.iter().rev().find(|r| r.0 <= to)?;
    (last.0 > first.0).then(|| last.2.saturating_sub(first.2))
}

#[test]
fn multipath_survives_a_path_cut_for_20_s_and_traffic_comes_back() {
    let r = run(
        "multipath",
        2,
        1500,
        "cluster-long.fio",
        &["--cut-path", "1", "--cut-after", "5", "--cut-for", "20"],
    );
    let (cut, back) = (
        r.shelf_event("path 1 cut"),
        r.shelf_event("path 1 restored"),
    );
    let rows = path_rows(&r.out);
    let table: String = rows
        .iter()
        .map(|(t, p, rx)| format!("{t:>7.1} {p} {rx}\n"))
        .collect();
    println!("per-path frames received (s, port, rx), cut {cut:.1} s .. {back:.1} s:\n{table}");
    println!("relay path 0: {}\nrelay path 1: {}", r.relay(0), r.relay(1));
    r.assert_clean_pass("the multipath run");
    let report = r.relay(1);
    assert_eq!(report["cuts_on_demand"], 1, "{report}");
    assert!(
        sum(&report, "cut") > 0,
        "nothing was sent into the cut path: {report}"
    );
    let before = received_between(&rows, "sp1", 0.0, cut).unwrap_or(0);
    assert!(
        before > 0,
        "path 1 carried nothing before the cut:\n{table}"
    );
    // One scrape of slack at each edge of the cut.
    let during_dead = received_between(&rows, "sp1", cut + 1.5, back - 0.5);
    let during_live = received_between(&rows, "sp0", cut + 1.5, back - 0.5);
    assert_eq!(
        during_dead,
        Some(0),
        "frames reached the cut path:\n{table}"
    );
    assert!(
        during_live.unwrap_or(0) > 100,
        "the traffic did not move to path 0 during the cut:\n{table}"
    );
    let after = received_between(&rows, "sp1", back + 1.0, f64::MAX).unwrap_or(0);
    assert!(
        after > 100,
        "the traffic did not come back to path 1 after the cut (or fio ended first):\n{table}"
    );
    println!(
        "path 1: {before} frames before the cut, 0 during the 20 s cut (path 0 took {}), {after} after; fio errors 0",
        during_live.unwrap_or(0)
    );
    cleanup(&r);
}

#[test]
fn a_shelf_killed_during_fio_restarts_and_fio_goes_on() {
    let r = run(
        "restart",
        1,
        1500,
        "verify-small.fio",
        &["--restart-after", "8", "--down", "3"],
    );
    println!("{}", r.file("shelf-events.tsv"));
    let report = r.relay(0);
    println!("relay: {report}");
    r.assert_clean_pass("the restart run");
    let killed = r.shelf_event("shelf killed");
    let events = r.file("shelf-events.tsv");
    let starts = events.matches("shelf started").count();
    assert_eq!(starts, 2, "the shelf was not started again:\n{events}");
    // The shelf announces itself (a broadcast config response) at each start.
    assert!(
        report["b_to_a"]["broadcast"].as_u64().unwrap_or(0) >= 2,
        "no announcement from the restarted shelf: {report}"
    );
    let log = r.file("shelf.log");
    assert!(
        log.matches("serving").count() >= 2,
        "the shelf did not serve twice:\n{log}"
    );
    // Frames did reach the new shelf process: the restarted shelf's metrics counted them.
    let rows = path_rows(&r.out);
    let after = received_between(&rows, "sp0", killed + 5.0, f64::MAX).unwrap_or(0);
    assert!(after > 100, "no I/O reached the restarted shelf");
    println!("shelf killed {killed:.1} s after start, back 3 s later; {after} frames after the restart; fio errors 0");
    cleanup(&r);
}

/// Runs the scenario driver deploy/cluster/NAME.sh with its results in a directory of the
/// test's (removed on success); returns that directory and everything the driver printed.
fn driver(name: &str) -> (PathBuf, String) {
    common::require("qemu-system-x86_64", "qemu-system-x86");
    let out = std::env::temp_dir().join(format!("es-cluster-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let result = Command::new(repo().join(format!("deploy/cluster/{name}.sh")))
        .arg("--out")
        .arg(&out)
        .env("ETHERSHELF_BIN", common::binary())
        .output()
        .unwrap_or_else(|e| panic!("deploy/cluster/{name}.sh: {e}"));
    let text = String::from_utf8_lossy(&result.stdout).to_string()
        + &String::from_utf8_lossy(&result.stderr);
    println!("{text}");
    assert!(
        result.status.success(),
        "deploy/cluster/{name}.sh failed (results in {}):\n{text}",
        out.display()
    );
    (out, text)
}

#[test]
fn a_diskless_vm_boots_from_a_lun_through_ipxe_and_its_marker_reads_back() {
    for (tool, package) in [
        ("syslinux", "syslinux"),
        ("mcopy", "mtools"),
        ("mkfs.vfat", "dosfstools"),
        ("mkfs.ext2", "e2fsprogs"),
        ("sfdisk", "fdisk"),
    ] {
        common::require(tool, package);
    }
    let (out, text) = driver("sanboot");
    let marker = text
        .lines()
        .find_map(|l| l.split("marker written: ").nth(1))
        .unwrap_or_else(|| panic!("no marker line:\n{text}"));
    let (written, read) = marker
        .split_once("; read back: ")
        .unwrap_or_else(|| panic!("odd marker line: {marker}"));
    assert!(written.starts_with("diskless-"), "{marker}");
    assert_eq!(
        written, read,
        "the marker did not come back through the shelf"
    );
    let summary = std::fs::read_to_string(out.join("diskless/summary.txt")).unwrap_or_default();
    assert!(
        summary.contains("root_on_lun") && summary.contains("no_local_disk"),
        "the diskless VM did not report its root on the LUN:\n{summary}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn md_raid1_over_two_shelves_survives_losing_one_and_resyncs_only_the_bitmap() {
    let (out, text) = driver("md");
    // "md_resynced ... dirty_chunks=80 chunk_kib=1024 resync_kib=81920 array_kib=261120 ..."
    let line = text
        .lines()
        .find(|l| l.starts_with("resync: md_resynced"))
        .unwrap_or_else(|| panic!("no resync line:\n{text}"));
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in: {line}"))
    };
    let (resync, array) = (field("resync_kib"), field("array_kib"));
    assert!(
        resync > 0 && resync < array,
        "the re-add did not resync from the bitmap only: {line}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("md_checked ") && l.contains("mismatch_cnt=0")),
        "md's check did not report mismatch_cnt=0:\n{text}"
    );
    assert!(text.contains("verified_on_both"), "{text}");
    for l in text.lines().filter(|l| l.contains(" MiB  errors ")) {
        assert!(l.trim_end().ends_with("errors 0"), "fio saw errors: {l}");
    }
    println!("md: {resync} KiB of {array} KiB resynced; mismatch_cnt 0; every verify run clean");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_vm_handoff_between_two_hosts_is_fenced_by_config_string_claims() {
    let (out, text) = driver("handoff");
    for step in [
        "a_claimed",
        "b_refused",
        "a_released",
        "b_claimed",
        "b_verified_a",
        "a_refused_later",
    ] {
        assert!(text.contains(step), "host step {step} missing:\n{text}");
    }
    let audit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("config string set to"))
        .collect();
    assert_eq!(audit.len(), 3, "expected claim, release, claim:\n{text}");
    assert!(audit[0].contains("hostA-vm17") && audit[0].contains("52:54:00:e5:01:01"));
    assert!(audit[1].contains("\"\"") && audit[1].contains("52:54:00:e5:01:01"));
    assert!(audit[2].contains("hostB-vm17") && audit[2].contains("52:54:00:e5:02:01"));
    let _ = std::fs::remove_dir_all(&out);
}
