//! `perf-acl` (run through `perf/acl-compare`): what access control costs on the frame path.
//!
//! 4k random reads at QD32 from one host against a page-cache file LUN (so the shelf's CPU,
//! not the disk, sets the pace), with three configurations started alternately (A B C A B C
//! ...): no lists at all; a 255-entry access list granting discover/read/write (the host is
//! one entry); and the same plus a full 255-entry AoE mask list. Ratios are against "no
//! list" measured in the same run.
//!
//! The shelf runs pinned to CPU 1, aoebench to CPU 0, in namespaces this program creates.

#[path = "../lab.rs"]
mod lab;

use clap::Parser;
use lab::{
    aoebench_job, bin, median, sh, write_results, Lab, Pinned, HOST_IF, HOST_NS, SHELF_IF, SHELF_NS,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Access-control cost on the frame path, measured side by side.
#[derive(Parser)]
struct Args {
    /// Rounds (each runs every configuration once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measured seconds per run (after 1 s of ramp).
    #[arg(long, default_value_t = 5.0)]
    runtime: f64,
    /// Where results go.
    #[arg(long, default_value = "perf/results")]
    out: PathBuf,
}

/// 254 other hosts plus `host`: a full list, the host somewhere in the middle.
fn full_list(host: &str) -> Vec<String> {
    let mut macs: Vec<String> = (0..254u32)
        .map(|i| {
            format!(
                "02:00:5e:{:02x}:{:02x}:{:02x}",
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            )
        })
        .collect();
    macs.insert(127, host.to_string());
    macs
}

fn config(work: &Path, name: &str, host: &str) -> Result<PathBuf, String> {
    let mut y = format!(
        "shelf: 1\nstate_dir: {}\nadmin: {{ socket: {} }}\nports: [{{ interface: {SHELF_IF}, mode: packet }}]\n",
        work.join(format!("state-{name}")).display(),
        work.join("admin.sock").display()
    );
    let quoted = |v: Vec<String>| {
        v.iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if name != "none" {
        y += &format!(
            "access:\n  lists:\n    hosts: [{}]\n",
            quoted(full_list(host))
        );
    }
    y += &format!(
        "luns:\n  - slot: 0\n    file: {}\n    direct: false\n",
        work.join("lun.img").display()
    );
    if name != "none" {
        y += "    access: { discover: [hosts], read: [hosts], write: [hosts] }\n";
    }
    if name == "acl+mask" {
        y += &format!("    mask: [{}]\n", quoted(full_list(host)));
    }
    let p = work.join(format!("{name}.yaml"));
    std::fs::write(&p, y).map_err(|e| e.to_string())?;
    Ok(p)
}

fn run(args: &Args) -> Result<(), String> {
    let work = PathBuf::from("/var/tmp/ethershelf-perf-acl");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    sh(Command::new("dd").args([
        "if=/dev/urandom",
        &format!("of={}", work.join("lun.img").display()),
        "bs=1M",
        "count=256",
        "status=none",
    ]))?;
    let _lab = Lab::new(1500)?;
    let host = sh(Command::new("ip").args([
        "netns",
        "exec",
        HOST_NS,
        "cat",
        &format!("/sys/class/net/{HOST_IF}/address"),
    ]))?
    .trim()
    .to_string();
    let names = ["none", "acl255", "acl+mask"];
    let mut cfgs = Vec::new();
    for n in names {
        cfgs.push(config(&work, n, &host)?);
    }
    eprintln!(
        "== 4k randread QD32, page-cache file LUN, MTU 1500: shelf on CPU 1, aoebench on CPU 0"
    );
    let mut iops: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut p99: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 1..=args.rounds {
        for (i, cfg) in cfgs.iter().enumerate() {
            let cmd = vec![
                bin("ethershelf").display().to_string(),
                "serve".into(),
                "-c".into(),
                cfg.display().to_string(),
            ];
            let mut t = Pinned::start(SHELF_NS, 1, &cmd, work.join("shelf.log"))?;
            t.wait_ready(Some(" serving "), Duration::from_millis(100))?;
            let cpu0 = t.cpu_seconds();
            let r = aoebench_job("randread", "4k", 32, args.runtime);
            let used = t.cpu_seconds() - cpu0;
            t.stop();
            let r = r?["read"].clone();
            let v = r["iops"].as_f64().unwrap_or(0.0);
            let ios = r["ios"].as_u64().unwrap_or(1).max(1) as f64;
            iops[i].push(v);
            p99[i].push(r["latency"]["p99_us"].as_f64().unwrap_or(0.0));
            cpu[i].push(used / ios * 1e6);
            eprintln!("   round {round} {:9} {v:>10.0} IOPS", names[i]);
        }
    }
    let base = median(&mut iops[0].clone());
    let base_p99 = median(&mut p99[0].clone());
    let mut md = String::from("| configuration | IOPS (median) | vs no list | p99 us | shelf CPU us/IO |\n|---|---|---|---|---|\n");
    let mut rows = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (m, l, c) = (
            median(&mut iops[i].clone()),
            median(&mut p99[i].clone()),
            median(&mut cpu[i].clone()),
        );
        md += &format!(
            "| {name} | {m:.0} | {:.3} | {l:.0} ({:.2}x) | {c:.2} |\n",
            m / base.max(1e-9),
            l / base_p99.max(1e-9)
        );
        rows.push(json!({"configuration": name, "iops": iops[i], "p99_us": p99[i], "cpu_us_per_io": cpu[i],
            "iops_median": m, "ratio": m / base.max(1e-9), "p99_median_us": l}));
    }
    let notes = "none: no access section, no mask. acl255: a 255-entry access list (the host is entry 128) granting discover, read and write on the LUN. acl+mask: the same plus a 255-entry AoE mask list. Every frame checks mask + discover + read by binary search over sorted tables published with the LUN's lists (no lock, no allocation).";
    println!("{md}\n{notes}");
    let doc = json!({
        "settings": {"rounds": args.rounds, "runtime_s": args.runtime}, "rows": rows});
    write_results(&args.out, "acl", doc, &md, notes)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("perf-acl: error: {e}");
        std::process::exit(1);
    }
}
