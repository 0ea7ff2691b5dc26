//! `perf-raid` (run through `perf/raid-compare`): RAID-10 read scaling and rebuild cost.
//!
//! 1. Read scaling: a 4-member RAID-10 LUN against a single-file LUN of the same capacity on
//!    the same filesystem, both O_DIRECT, alternately (A B A B ...), with the same aoebench
//!    jobs (64k sequential read QD8, 4k random read QD32). Ratio = RAID / single.
//! 2. Rebuild: 4k random reads QD8 on the array before and during a rebuild onto a spare
//!    (p50/p99 latency and IOPS), the rebuild rate under that load and the rate when idle.
//!
//! The shelf runs pinned to CPU 1, aoebench to CPU 0, in namespaces this program creates.

#[path = "../lab.rs"]
mod lab;

use clap::Parser;
use lab::{aoebench_job, bin, median, sh, write_results, Lab, Pinned, SHELF_IF, SHELF_NS};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// RAID-10 read scaling and rebuild cost, measured side by side.
#[derive(Parser)]
struct Args {
    /// A B pairs per case.
    #[arg(long, default_value_t = 3)]
    pairs: usize,
    /// Measured seconds per run (after 1 s of ramp).
    #[arg(long, default_value_t = 5.0)]
    runtime: f64,
    /// Size of each member disk in MiB (the single-file LUN gets 2 x this, the array's size).
    #[arg(long, default_value_t = 512)]
    member_mib: u64,
    /// MTU of the lab link.
    #[arg(long, default_value_t = 9000)]
    mtu: u32,
    /// Where results go.
    #[arg(long, default_value = "perf/results")]
    out: PathBuf,
}

fn random_file(path: &Path, mib: u64) -> Result<(), String> {
    sh(Command::new("dd").args([
        "if=/dev/urandom",
        &format!("of={}", path.display()),
        "bs=1M",
        &format!("count={mib}"),
        "status=none",
        "conv=fsync",
    ]))
    .map(|_| ())
}

fn config(work: &Path, raid: bool) -> PathBuf {
    let mut y = format!(
        "shelf: 1\nstate_dir: {}\nadmin: {{ socket: {} }}\nports: [{{ interface: {SHELF_IF}, mode: packet }}]\n",
        work.join("state").display(),
        work.join("admin.sock").display()
    );
    if raid {
        y += "disks:\n";
        for i in 0..6 {
            y += &format!("  - {}\n", work.join(format!("d{i}.img")).display());
        }
        y += "spares: [4, 5]\nrebuild: { min_rate: 20MiB, max_rate: 1GiB }\nluns:\n  - slot: 0\n    raid10: { disks: [0, 1, 2, 3], chunk: 64KiB, clean: true }\n";
    } else {
        y += &format!(
            "luns:\n  - slot: 0\n    file: {}\n",
            work.join("single.img").display()
        );
    }
    let p = work.join(if raid { "raid.yaml" } else { "single.yaml" });
    let _ = std::fs::write(&p, y);
    p
}

fn start(work: &Path, cfg: &Path) -> Result<Pinned, String> {
    let cmd = vec![
        bin("ethershelf").display().to_string(),
        "serve".into(),
        "-c".into(),
        cfg.display().to_string(),
    ];
    let mut t = Pinned::start(SHELF_NS, 1, &cmd, work.join("shelf.log"))?;
    t.wait_ready(Some(" serving "), Duration::from_millis(100))?;
    Ok(t)
}

fn aoebench(rw: &str, bs: &str, qd: u32, runtime: f64) -> Result<Value, String> {
    Ok(aoebench_job(rw, bs, qd, runtime)?["read"].clone())
}

fn ctl(work: &Path, cmd: &str) -> Result<String, String> {
    sh(Command::new(bin("ethershelf"))
        .args(["ctl", "-s", work.join("admin.sock").to_str().unwrap_or("")])
        .args(cmd.split_whitespace()))
}

/// The rate in a `ctl when` line ("0.0 rebuild 42.10% 36900 KBps 0:01:02 left"), in MiB/s.
fn rate_of(when: &str) -> Option<f64> {
    let line = when.lines().find(|l| l.contains("rebuild"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "KBps")?;
    let kb: f64 = words.get(i.checked_sub(1)?)?.parse().ok()?;
    Some(kb * 1000.0 / 1048576.0)
}

/// The rate logged by the last "rebuild finished" line, in MiB/s.
fn last_rebuild_rate(log: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rfind(|l| l.contains(" rebuild finished "))?;
    let at = line.find("rate_mib_s=\"")? + "rate_mib_s=\"".len();
    line[at..].split('"').next()?.parse().ok()
}

fn wait_rebuilt(work: &Path, count: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = std::fs::read_to_string(work.join("shelf.log")).unwrap_or_default();
        if text.matches(" rebuild finished ").count() >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("rebuild did not finish in 600 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(args: &Args) -> Result<(), String> {
    let work = PathBuf::from("/var/tmp/ethershelf-perf-raid");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    eprintln!(
        "== backing: 6 members of {} MiB (4 in the array, 2 spares) and one {} MiB file, random data, in {}",
        args.member_mib,
        2 * args.member_mib,
        work.display()
    );
    for i in 0..6 {
        random_file(&work.join(format!("d{i}.img")), args.member_mib)?;
    }
    random_file(&work.join("single.img"), 2 * args.member_mib)?;
    let raid_cfg = config(&work, true);
    let single_cfg = config(&work, false);
    let _lab = Lab::new(args.mtu)?;
    eprintln!(
        "== lab at MTU {}: shelf on CPU 1, aoebench on CPU 0",
        args.mtu
    );
    let cases = [
        ("64k read QD8", "read", "64k", 8u32, true),
        ("4k randread QD32", "randread", "4k", 32, false),
    ];
    let mut rows = Vec::new();
    let mut md = String::from(
        "| case | single file | RAID-10 (4 members) | RAID/single |\n|---|---|---|---|\n",
    );
    for (name, rw, bs, qd, bw) in cases {
        let (mut single, mut raid) = (Vec::new(), Vec::new());
        let mut cpu_per_io: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        for pair in 1..=args.pairs {
            for (label, cfg) in [("single", &single_cfg), ("raid10", &raid_cfg)] {
                let t = start(&work, cfg)?;
                let cpu0 = t.cpu_seconds();
                let r = aoebench(rw, bs, qd, args.runtime);
                let cpu = t.cpu_seconds() - cpu0;
                t.stop();
                let r = r?;
                let ios = r["ios"].as_u64().unwrap_or(1).max(1) as f64;
                cpu_per_io.entry(label).or_default().push(cpu / ios * 1e6);
                let v = if bw {
                    r["mib_per_s"].as_f64()
                } else {
                    r["iops"].as_f64()
                }
                .unwrap_or(0.0);
                eprintln!(
                    "   {name:18} pair {pair} {label:7} {v:>10.1} {}",
                    if bw { "MiB/s" } else { "IOPS" }
                );
                if label == "single" {
                    single.push(v)
                } else {
                    raid.push(v)
                }
            }
        }
        let (s, r) = (median(&mut single), median(&mut raid));
        let cs = median(cpu_per_io.entry("single").or_default());
        let cr = median(cpu_per_io.entry("raid10").or_default());
        let unit = if bw { "MiB/s" } else { "IOPS" };
        md += &format!(
            "| {name} | {s:.0} {unit} ({cs:.1} CPU us/IO) | {r:.0} {unit} ({cr:.1} CPU us/IO) | {:.2} |\n",
            r / s.max(1e-9)
        );
        rows.push(json!({ "case": name, "unit": unit, "single": single, "raid10": raid, "single_median": s, "raid10_median": r, "ratio": r / s.max(1e-9), "cpu_us_per_io_single": cs, "cpu_us_per_io_raid10": cr }));
    }

    // Rebuild cost: latency before and during a rebuild under load, then an idle rebuild.
    let t = start(&work, &raid_cfg)?;
    let before = aoebench("randread", "4k", 8, args.runtime)?;
    // The same load again; once it runs (after discovery and ramp), fail a member: the spare's
    // rebuild then runs at the minimum rate under that load for the rest of the window.
    let load_secs = 2.0 * args.runtime;
    let during = std::thread::spawn(move || aoebench("randread", "4k", 8, load_secs));
    std::thread::sleep(Duration::from_millis(1800));
    ctl(&work, "fail 0.1")?;
    let during = during
        .join()
        .map_err(|_| "aoebench thread panicked".to_string())??;
    let progress = ctl(&work, "when")?;
    let loaded_rate = rate_of(&progress).unwrap_or(0.0);
    eprintln!("   under load: {}", progress.trim());
    wait_rebuilt(&work, 1)?;
    ctl(&work, "fail 0.3")?;
    wait_rebuilt(&work, 2)?;
    let idle_rate = last_rebuild_rate(&work.join("shelf.log")).unwrap_or(0.0);
    t.stop();
    let lat = |v: &Value| {
        (
            v["iops"].as_f64().unwrap_or(0.0),
            v["latency"]["p50_us"].as_f64().unwrap_or(0.0),
            v["latency"]["p99_us"].as_f64().unwrap_or(0.0),
        )
    };
    let (bi, b50, b99) = lat(&before);
    let (di, d50, d99) = lat(&during);
    md += &format!(
        "\n| 4k randread QD8 on the array | IOPS | p50 us | p99 us |\n|---|---|---|---|\n| before the failure | {bi:.0} | {b50:.0} | {b99:.0} |\n| during the rebuild | {di:.0} | {d50:.0} | {d99:.0} |\n\nRebuild rate: {loaded_rate:.1} MiB/s while that load ran (min_rate 20 MiB/s; average since the rebuild started, read with `ctl when` as the load ended), {idle_rate:.1} MiB/s for a rebuild on an idle array (max_rate 1 GiB/s); {} MiB per member.\n",
        args.member_mib
    );
    let notes = "Both LUNs O_DIRECT on files of the same filesystem (one underlying device): the array spreads reads over 4 member files; the ratio shows what that buys on this storage. Shelf pinned to CPU 1, aoebench to CPU 0.";
    println!("{md}\n{notes}");
    let doc = json!({
        "settings": { "pairs": args.pairs, "runtime_s": args.runtime, "member_mib": args.member_mib, "mtu": args.mtu },
        "read_scaling": rows,
        "rebuild": { "before": { "iops": bi, "p50_us": b50, "p99_us": b99 }, "during": { "iops": di, "p50_us": d50, "p99_us": d99 },
                     "rate_mib_s_under_load": loaded_rate, "rate_mib_s_idle": idle_rate } });
    write_results(&args.out, "raid", doc, &md, notes)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("perf-raid: error: {e}");
        std::process::exit(1);
    }
}
