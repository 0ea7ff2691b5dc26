//! `perf-compare` (run through `perf/compare`): ethershelf and vblade alternately (A B A B ...)
//! on the same backing file with the same aoebench job, plus the network ceiling (aoebench
//! against `aoebench null-target`) and the storage ceiling (fio with io_uring on the file).
//! The target (and null target, and fio) run pinned to CPU 1, the load generator to CPU 0.

mod chart;
mod lab;

use clap::Parser;
use lab::{aoebench_job, bin, sh, Lab, Pinned, HOST_IF, HOST_NS, SHELF_IF, SHELF_NS};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Side-by-side performance of ethershelf and vblade, with ceilings.
#[derive(Parser)]
struct Args {
    /// A B pairs per case (at least 3 for a median worth reading).
    #[arg(long, default_value_t = 3)]
    pairs: usize,
    /// Measured seconds per run (after 1 s of ramp).
    #[arg(long, default_value_t = 5.0)]
    runtime: f64,
    /// MTUs, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "9000,1500")]
    mtu: Vec<u32>,
    /// Backing modes: cache (page cache warm) and/or direct (O_DIRECT).
    #[arg(long, value_delimiter = ',', default_value = "cache,direct")]
    modes: Vec<String>,
    /// Only cases whose name contains one of these (e.g. "randread").
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Size of the backing file in MiB (filled with random data).
    #[arg(long, default_value_t = 1024)]
    file_mib: u64,
    /// Where results go.
    #[arg(long, default_value = "perf/results")]
    out: PathBuf,
}

struct Case {
    name: &'static str,
    rw: &'static str,
    bs: &'static str,
    iodepth: u32,
    /// true: MiB/s is the metric; false: IOPS.
    bandwidth: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "4k randread QD1",
        rw: "randread",
        bs: "4k",
        iodepth: 1,
        bandwidth: false,
    },
    Case {
        name: "4k randread QD32",
        rw: "randread",
        bs: "4k",
        iodepth: 32,
        bandwidth: false,
    },
    Case {
        name: "4k randwrite QD32",
        rw: "randwrite",
        bs: "4k",
        iodepth: 32,
        bandwidth: false,
    },
    Case {
        name: "64k read QD8",
        rw: "read",
        bs: "64k",
        iodepth: 8,
        bandwidth: true,
    },
    Case {
        name: "64k write QD8",
        rw: "write",
        bs: "64k",
        iodepth: 8,
        bandwidth: true,
    },
];

#[derive(Debug, Clone, Serialize)]
struct Sample {
    mtu: u32,
    mode: String,
    case: String,
    target: String,
    pair: usize,
    value: f64,
    unit: String,
    iops: f64,
    mib_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    ios: u64,
    cpu_seconds: f64,
    cpu_us_per_io: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    mtu: u32,
    mode: String,
    case: String,
    unit: String,
    ethershelf: [f64; 3],
    vblade: [f64; 3],
    network_ceiling: f64,
    storage_ceiling: f64,
    ratio_vs_vblade: f64,
    ratio_vs_lower_ceiling: f64,
    ethershelf_p50_p99_us: [f64; 2],
    vblade_p50_p99_us: [f64; 2],
    ethershelf_cpu_us_per_io: f64,
    vblade_cpu_us_per_io: f64,
}

fn median_min_max(v: &[f64]) -> [f64; 3] {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return [0.0; 3];
    }
    [s[s.len() / 2], s[0], s[s.len() - 1]]
}

/// Runs the aoebench job of `case` from the host namespace on CPU 0; returns its job JSON.
fn aoebench(case: &Case, runtime: f64) -> Result<Value, String> {
    aoebench_job(case.rw, case.bs, case.iodepth, runtime)
}

fn sample_of(job: &Value, case: &Case) -> (f64, f64, f64, f64, f64, u64) {
    let d = if case.rw.contains("write") {
        &job["write"]
    } else {
        &job["read"]
    };
    let iops = d["iops"].as_f64().unwrap_or(0.0);
    let mib = d["mib_per_s"].as_f64().unwrap_or(0.0);
    let ios = d["ios"].as_u64().unwrap_or(0);
    let value = if case.bandwidth { mib } else { iops };
    (
        value,
        iops,
        mib,
        d["latency"]["p50_us"].as_f64().unwrap_or(0.0),
        d["latency"]["p99_us"].as_f64().unwrap_or(0.0),
        ios.max(1),
    )
}

fn fio_ceiling(file: &Path, case: &Case, direct: bool, runtime: f64) -> Result<f64, String> {
    let mut cmd = Command::new("taskset");
    cmd.args([
        "-c",
        "1",
        "fio",
        "--name=ceiling",
        "--ioengine=io_uring",
        "--output-format=json",
        "--time_based",
        "--ramp_time=1",
    ])
    .arg(format!("--filename={}", file.display()))
    .arg(format!("--direct={}", direct as u8))
    .arg(format!("--rw={}", case.rw))
    .arg(format!("--bs={}", case.bs))
    .arg(format!("--iodepth={}", case.iodepth))
    .arg(format!("--runtime={runtime}"));
    if direct && case.rw.contains("write") {
        // Same durability as ethershelf's writethrough: every write is O_DSYNC.
        cmd.arg("--sync=dsync");
    }
    let out = sh(&mut cmd)?;
    let start = out.find('{').ok_or("fio printed no JSON")?;
    let doc: Value = serde_json::from_str(&out[start..]).map_err(|e| format!("fio JSON: {e}"))?;
    let d = if case.rw.contains("write") {
        &doc["jobs"][0]["write"]
    } else {
        &doc["jobs"][0]["read"]
    };
    Ok(if case.bandwidth {
        d["bw_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
    } else {
        d["iops"].as_f64().unwrap_or(0.0)
    })
}

fn machine_info() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    let mem_kib: f64 = read("/proc/meminfo")
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    serde_json::json!({
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "mem_gib": (mem_kib / 1048576.0 * 10.0).round() / 10.0,
    })
}

fn run(args: &Args) -> Result<(), String> {
    if args.pairs < 1 {
        return Err("--pairs must be at least 1".into());
    }
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| args.only.is_empty() || args.only.iter().any(|o| c.name.contains(o.as_str())))
        .collect();
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let work = PathBuf::from("/var/tmp/ethershelf-perf");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let file = work.join("backing.img");
    eprintln!(
        "== backing file: {} MiB of random data at {}",
        args.file_mib,
        file.display()
    );
    sh(Command::new("dd").args([
        "if=/dev/urandom",
        &format!("of={}", file.display()),
        "bs=1M",
        &format!("count={}", args.file_mib),
        "status=none",
        "conv=fsync",
    ]))?;
    let mut samples: Vec<Sample> = Vec::new();
    let mut net_ceiling: BTreeMap<(u32, &str), Vec<f64>> = BTreeMap::new();
    let mut sto_ceiling: BTreeMap<(String, &str), f64> = BTreeMap::new();
    for mode in &args.modes {
        let direct = match mode.as_str() {
            "direct" => true,
            "cache" => false,
            other => return Err(format!("unknown mode '{other}': use cache or direct")),
        };
        for case in &cases {
            if !direct {
                sh(Command::new("sh")
                    .arg("-c")
                    .arg(format!("cat {} > /dev/null", file.display())))?;
            }
            let v = (0..args.pairs)
                .map(|_| fio_ceiling(&file, case, direct, args.runtime))
                .collect::<Result<Vec<_>, _>>()?;
            let m = median_min_max(&v)[0];
            eprintln!("   storage ceiling {mode:6} {:18} {:.0}", case.name, m);
            sto_ceiling.insert((mode.clone(), case.name), m);
        }
    }
    for &mtu in &args.mtu {
        let _lab = Lab::new(mtu)?;
        eprintln!("== lab at MTU {mtu}: {SHELF_NS}/{SHELF_IF} <-> {HOST_NS}/{HOST_IF}; targets on CPU 1, aoebench on CPU 0");
        for case in &cases {
            for _ in 0..args.pairs {
                let cmd = vec![
                    bin("aoebench").display().to_string(),
                    "null-target".into(),
                    "--if".into(),
                    SHELF_IF.into(),
                    "--size".into(),
                    format!("{}m", args.file_mib),
                    "--duration".into(),
                    format!("{}s", args.runtime + 20.0),
                ];
                let mut t = Pinned::start(SHELF_NS, 1, &cmd, work.join("null.log"))?;
                t.wait_ready(None, Duration::from_millis(300))?;
                let job = aoebench(case, args.runtime);
                t.stop();
                let (value, ..) = sample_of(&job?, case);
                net_ceiling.entry((mtu, case.name)).or_default().push(value);
            }
            eprintln!(
                "   network ceiling MTU {mtu} {:18} {:.0}",
                case.name,
                median_min_max(&net_ceiling[&(mtu, case.name)])[0]
            );
        }
        for mode in &args.modes {
            let direct = mode == "direct";
            for case in &cases {
                for pair in 1..=args.pairs {
                    for target in ["ethershelf", "vblade"] {
                        if !direct {
                            sh(Command::new("sh")
                                .arg("-c")
                                .arg(format!("cat {} > /dev/null", file.display())))?;
                        }
                        let cmd: Vec<String> = if target == "ethershelf" {
                            let mut c = vec![
                                bin("ethershelf").display().to_string(),
                                "export".into(),
                                "--state-dir".into(),
                                work.join("state").display().to_string(),
                            ];
                            if !direct {
                                c.extend(["--buffered".into(), "--writeback".into()]);
                            }
                            c.extend([
                                "1".into(),
                                "0".into(),
                                SHELF_IF.into(),
                                file.display().to_string(),
                            ]);
                            c
                        } else {
                            let mut c = vec!["vblade".to_string()];
                            if direct {
                                c.extend(["-d".into(), "-s".into()]);
                            }
                            c.extend([
                                "1".into(),
                                "0".into(),
                                SHELF_IF.into(),
                                file.display().to_string(),
                            ]);
                            c
                        };
                        let mut t =
                            Pinned::start(SHELF_NS, 1, &cmd, work.join(format!("{target}.log")))?;
                        if target == "ethershelf" {
                            t.wait_ready(Some(" serving "), Duration::from_millis(50))?;
                        } else {
                            t.wait_ready(None, Duration::from_millis(500))?;
                        }
                        let cpu0 = t.cpu_seconds();
                        let job = aoebench(case, args.runtime);
                        let cpu = t.cpu_seconds() - cpu0;
                        t.stop();
                        let job = job?;
                        let (value, iops, mib, p50, p99, ios) = sample_of(&job, case);
                        eprintln!(
                            "   MTU {mtu} {mode:6} {:18} pair {pair} {target:10} {value:>10.1} {}",
                            case.name,
                            if case.bandwidth { "MiB/s" } else { "IOPS" }
                        );
                        samples.push(Sample {
                            mtu,
                            mode: mode.clone(),
                            case: case.name.into(),
                            target: target.into(),
                            pair,
                            value,
                            unit: if case.bandwidth { "MiB/s" } else { "IOPS" }.into(),
                            iops,
                            mib_per_s: mib,
                            p50_us: p50,
                            p99_us: p99,
                            ios,
                            cpu_seconds: cpu,
                            cpu_us_per_io: cpu / ios as f64 * 1e6,
                        });
                    }
                }
            }
        }
    }
    // Summaries.
    let mut rows = Vec::new();
    for &mtu in &args.mtu {
        for mode in &args.modes {
            for case in &cases {
                let pick = |t: &str| {
                    samples
                        .iter()
                        .filter(|s| {
                            s.mtu == mtu && &s.mode == mode && s.case == case.name && s.target == t
                        })
                        .cloned()
                        .collect::<Vec<_>>()
                };
                let (es, vb) = (pick("ethershelf"), pick("vblade"));
                let stat = |v: &[Sample], f: fn(&Sample) -> f64| {
                    median_min_max(&v.iter().map(f).collect::<Vec<_>>())
                };
                let e = stat(&es, |s| s.value);
                let v = stat(&vb, |s| s.value);
                let net = median_min_max(&net_ceiling[&(mtu, case.name)])[0];
                let sto = sto_ceiling[&(mode.clone(), case.name)];
                rows.push(Row {
                    mtu,
                    mode: mode.clone(),
                    case: case.name.into(),
                    unit: if case.bandwidth { "MiB/s" } else { "IOPS" }.into(),
                    ethershelf: e,
                    vblade: v,
                    network_ceiling: net,
                    storage_ceiling: sto,
                    ratio_vs_vblade: if v[0] > 0.0 { e[0] / v[0] } else { 0.0 },
                    ratio_vs_lower_ceiling: e[0] / net.min(sto).max(1e-9),
                    ethershelf_p50_p99_us: [stat(&es, |s| s.p50_us)[0], stat(&es, |s| s.p99_us)[0]],
                    vblade_p50_p99_us: [stat(&vb, |s| s.p50_us)[0], stat(&vb, |s| s.p99_us)[0]],
                    ethershelf_cpu_us_per_io: stat(&es, |s| s.cpu_us_per_io)[0],
                    vblade_cpu_us_per_io: stat(&vb, |s| s.cpu_us_per_io)[0],
                });
            }
        }
    }
    let mut md = String::from("| MTU | backing | case | ethershelf median (min-max) | vblade median (min-max) | es/vblade | network ceiling | storage ceiling | es/lower ceiling | p50/p99 us es | p50/p99 us vblade | CPU us/IO es | CPU us/IO vblade |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &rows {
        md += &format!(
            "| {} | {} | {} | {:.0} ({:.0}-{:.0}) {} | {:.0} ({:.0}-{:.0}) | {:.2} | {:.0} | {:.0} | {:.2} | {:.0}/{:.0} | {:.0}/{:.0} | {:.1} | {:.1} |\n",
            r.mtu, r.mode, r.case, r.ethershelf[0], r.ethershelf[1], r.ethershelf[2], r.unit, r.vblade[0], r.vblade[1], r.vblade[2], r.ratio_vs_vblade, r.network_ceiling, r.storage_ceiling,
            r.ratio_vs_lower_ceiling, r.ethershelf_p50_p99_us[0], r.ethershelf_p50_p99_us[1], r.vblade_p50_p99_us[0], r.vblade_p50_p99_us[1], r.ethershelf_cpu_us_per_io, r.vblade_cpu_us_per_io
        );
    }
    let notes = "backing `cache`: file in the page cache (warmed with cat before each run); ethershelf `--buffered --writeback`, vblade plain. backing `direct`: ethershelf O_DIRECT + writethrough (RWF_DSYNC), vblade `-d -s`; storage ceiling fio io_uring --direct=1 (--sync=dsync for writes). Targets, null target and fio pinned to CPU 1, aoebench to CPU 0.";
    println!("{md}\n{notes}");
    let stamp = sh(Command::new("date").args(["-u", "+%Y%m%dT%H%M%SZ"]))?
        .trim()
        .to_string();
    let git = sh(Command::new("git").args(["rev-parse", "--short", "HEAD"]))
        .unwrap_or_default()
        .trim()
        .to_string();
    let base = args.out.join(format!("compare-{stamp}"));
    let doc = serde_json::json!({ "schema": 1, "date": stamp, "git": git, "machine": machine_info(), "notes": notes,
        "settings": { "pairs": args.pairs, "runtime_s": args.runtime, "ramp_s": 1, "file_mib": args.file_mib, "mtu": args.mtu, "modes": args.modes },
        "rows": rows, "samples": samples });
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(base.with_extension("md"), format!("{md}\n{notes}\n"))
        .map_err(|e| e.to_string())?;
    let bars: Vec<chart::Bar> = rows
        .iter()
        .map(|r| chart::Bar {
            label: format!("{} MTU{} {}", r.case, r.mtu, r.mode),
            vs_vblade: r.ratio_vs_vblade,
            vs_ceiling: r.ratio_vs_lower_ceiling,
        })
        .collect();
    chart::draw(
        &base.with_extension("png"),
        &format!("ethershelf ratios ({git}, {stamp})"),
        &bars,
    )?;
    eprintln!("results: {}.{{json,md,png}}", base.display());
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("perf-compare: error: {e}");
        std::process::exit(1);
    }
}
