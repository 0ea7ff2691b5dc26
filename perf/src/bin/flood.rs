//! `perf-flood` (run through `perf/flood-compare`): what a hostile host does to a well-behaved
//! one. Host A runs 4k random reads at QD8 through port 1 while host B floods through port 2
//! (`aoebench flood`): config force-sets, config reads, broadcast discoveries, mask edits,
//! reservation changes, IDENTIFY, same-LBA writes, garbage; at 20k frames/s and as fast as
//! the lab allows. Host A's IOPS and p99 are reported against host A alone, measured in the
//! same run, for ethershelf and for vblade (two vblade processes, one per port, same file).
//!
//! Shelf (or vblade) pinned to CPU 1; host A's aoebench and host B's flood share CPU 0 (the
//! machine has two), so at the highest rate part of A's loss is the client's CPU: the vblade
//! column pays the same.

#[path = "../lab.rs"]
mod lab;

use clap::Parser;
use lab::{
    bin, median, sh, write_results, Lab, Pinned, HOST2_IF, HOST2_NS, HOST_IF, HOST_NS, SHELF_IF,
    SHELF_IF2, SHELF_NS,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Host A's IOPS and p99 under floods from host B, ethershelf and vblade side by side.
#[derive(Parser)]
struct Args {
    /// Measured seconds per run (after 1 s of ramp).
    #[arg(long, default_value_t = 4.0)]
    runtime: f64,
    /// Floods (comma separated); default all.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "config-fset,config-read,broadcast,mask-edit,reserve,identify,same-lba-write,garbage"
    )]
    floods: Vec<String>,
    /// Rates in frames/s (0 = as fast as possible).
    #[arg(long, value_delimiter = ',', default_value = "20000,0")]
    rates: Vec<u64>,
    /// Targets: ethershelf, vblade.
    #[arg(long, value_delimiter = ',', default_value = "ethershelf,vblade")]
    targets: Vec<String>,
    /// Where results go.
    #[arg(long, default_value = "perf/results")]
    out: PathBuf,
}

fn mac_of(ns: &str, iface: &str) -> Result<String, String> {
    Ok(sh(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "cat",
        &format!("/sys/class/net/{iface}/address"),
    ]))?
    .trim()
    .to_string())
}

/// Host A's job: 4k randread QD8 (errors counted, not fatal: a flood may cause them).
fn host_a(runtime: f64) -> Result<Value, String> {
    let o = Command::new("ip")
        .args(["netns", "exec", HOST_NS, "taskset", "-c", "0"])
        .arg(bin("aoebench"))
        .args([
            "run", "--target", "1.0", "--if", HOST_IF, "--rw", "randread", "--bs", "4k",
        ])
        .args([
            "--iodepth",
            "8",
            "--runtime",
            &format!("{runtime}s"),
            "--ramp",
            "1s",
        ])
        .args(["--discover-wait", "0.5s", "--output-format", "json"])
        .output()
        .map_err(|e| format!("aoebench: {e}"))?;
    let doc: Value = serde_json::from_slice(&o.stdout).map_err(|e| {
        format!(
            "aoebench output: {e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })?;
    Ok(doc["jobs"][0].clone())
}

fn start_target(work: &Path, target: &str) -> Result<Vec<Pinned>, String> {
    let file = work.join("lun.img").display().to_string();
    if target == "vblade" {
        let mut v = Vec::new();
        for (i, port) in [SHELF_IF, SHELF_IF2].iter().enumerate() {
            let cmd = vec![
                "vblade".into(),
                "1".into(),
                "0".into(),
                port.to_string(),
                file.clone(),
            ];
            let mut p = Pinned::start(SHELF_NS, 1, &cmd, work.join(format!("vblade{i}.log")))?;
            p.wait_ready(None, Duration::from_millis(500))?;
            v.push(p);
        }
        return Ok(v);
    }
    let cfg = work.join("shelf.yaml");
    std::fs::write(
        &cfg,
        format!(
            "shelf: 1\nstate_dir: {}\nadmin: {{ socket: {} }}\nports: [{{ interface: {SHELF_IF}, mode: packet }}, {{ interface: {SHELF_IF2}, mode: packet }}]\nluns:\n  - slot: 0\n    file: {file}\n    direct: false\n    write_cache: writeback\n",
            work.join("state").display(),
            work.join("admin.sock").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(work.join("state"));
    let cmd = vec![
        bin("ethershelf").display().to_string(),
        "serve".into(),
        "-c".into(),
        cfg.display().to_string(),
    ];
    let mut p = Pinned::start(SHELF_NS, 1, &cmd, work.join("shelf.log"))?;
    p.wait_ready(Some(" serving "), Duration::from_millis(100))?;
    Ok(vec![p])
}

fn run(args: &Args) -> Result<(), String> {
    let work = PathBuf::from("/var/tmp/ethershelf-perf-flood");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    sh(Command::new("dd").args([
        "if=/dev/urandom",
        &format!("of={}", work.join("lun.img").display()),
        "bs=1M",
        "count=128",
        "status=none",
    ]))?;
    let lab = Lab::new(1500)?;
    lab.add_second_host(1500)?;
    let a_mac = mac_of(HOST_NS, HOST_IF)?;
    eprintln!("== host A {a_mac}: 4k randread QD8 via port 1; host B floods via port 2");
    let mut rows = Vec::new();
    let mut md = String::from("| flood | rate (sent/s) | target | A IOPS | x alone | A p99 us | x alone | A errors |\n|---|---|---|---|---|---|---|---|\n");
    for target in &args.targets {
        let procs = start_target(&work, target)?;
        // Host A alone, before and after the floods (median of both).
        let alone0 = host_a(args.runtime)?;
        let mut results = Vec::new();
        for flood in &args.floods {
            for &rate in &args.rates {
                let f = Command::new("ip")
                    .args(["netns", "exec", HOST2_NS, "taskset", "-c", "0"])
                    .arg(bin("aoebench"))
                    .args([
                        "flood", "--if", HOST2_IF, "--target", "1.0", "--kind", flood,
                    ])
                    .args(["--rate", &rate.to_string(), "--keep", &a_mac])
                    .args(["--duration", &format!("{}s", args.runtime + 2.0)])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("aoebench flood: {e}"))?;
                std::thread::sleep(Duration::from_millis(300));
                let a = host_a(args.runtime);
                let o = f.wait_with_output().map_err(|e| e.to_string())?;
                let sent: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
                let a = a?;
                eprintln!(
                    "   {target:10} {flood:15} {:>7} /s sent  A {:>8.0} IOPS p99 {:>6.0} us errors {}",
                    sent["frames_per_second"].as_f64().unwrap_or(0.0),
                    a["read"]["iops"].as_f64().unwrap_or(0.0),
                    a["read"]["latency"]["p99_us"].as_f64().unwrap_or(0.0),
                    a["errors"]
                );
                results.push((flood.clone(), rate, sent, a));
            }
        }
        let alone1 = host_a(args.runtime)?;
        for p in procs {
            p.stop();
        }
        let iops = |j: &Value| j["read"]["iops"].as_f64().unwrap_or(0.0);
        let p99 = |j: &Value| j["read"]["latency"]["p99_us"].as_f64().unwrap_or(0.0);
        let base_iops = median(&mut [iops(&alone0), iops(&alone1)]).max(1.0);
        let base_p99 = ((p99(&alone0) + p99(&alone1)) / 2.0).max(1.0);
        md += &format!(
            "| none (A alone) | - | {target} | {base_iops:.0} | 1.00 | {base_p99:.0} | 1.00 | 0 |\n"
        );
        for (flood, rate, sent, a) in results {
            let fps = sent["frames_per_second"].as_f64().unwrap_or(0.0);
            let (i, l) = (iops(&a), p99(&a));
            md +=
                &format!(
                "| {flood} | {} ({fps:.0}) | {target} | {i:.0} | {:.2} | {l:.0} | {:.2} | {} |\n",
                if rate == 0 { "max".to_string() } else { rate.to_string() },
                i / base_iops,
                l / base_p99,
                a["errors"]
            );
            rows.push(
                json!({"target": target, "flood": flood, "rate": rate, "sent_per_second": fps,
                "a_iops": i, "a_p99_us": l, "iops_ratio": i / base_iops, "p99_ratio": l / base_p99,
                "a_errors": a["errors"], "alone_iops": base_iops, "alone_p99_us": base_p99}),
            );
        }
    }
    drop(lab);
    let notes = "Host A: aoebench 4k randread QD8 on a page-cache file LUN (ethershelf: direct false, writeback; vblade: plain), via port 1. Host B: aoebench flood via port 2 (broadcast destination) at the rate shown (max = as fast as its socket takes frames); mask-edit and reserve floods keep A listed. Shelf/vblade pinned to CPU 1; A and B share CPU 0. x alone = against A alone on the same target (median of a run before and after the floods). Goal: >= 0.8x IOPS and <= 2x p99 at 20k frames/s.";
    println!("{md}\n{notes}");
    let doc = json!({
        "settings": {"runtime_s": args.runtime, "rates": args.rates}, "rows": rows});
    write_results(&args.out, "flood", doc, &md, notes)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("perf-flood: error: {e}");
        std::process::exit(1);
    }
}
