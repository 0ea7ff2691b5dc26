//! `perf-compare` (run through `perf/compare`): ethershelf with AF_XDP ports, ethershelf with
//! AF_PACKET ports and vblade alternately (A B C A B C ...)
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

/// Side-by-side performance of ethershelf (xdp and packet ports) and vblade, with ceilings.
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
    /// Targets, run alternately for each pair: xdp (ethershelf with AF_XDP ports), packet
    /// (ethershelf with AF_PACKET ports), vblade.
    #[arg(long, value_delimiter = ',', default_value = "xdp,packet,vblade")]
    targets: Vec<String>,
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
    bytes: u64,
    cpu_seconds: f64,
    cpu_us_per_io: f64,
}

/// One target's summary in one case.
#[derive(Debug, Clone, Serialize)]
struct TargetSummary {
    target: String,
    /// Median, min, max of the case's metric.
    value: [f64; 3],
    p50_us: f64,
    p99_us: f64,
    /// CPU seconds of the target per million I/Os (= CPU microseconds per I/O).
    cpu_s_per_million_ios: f64,
    /// CPU seconds of the target per GiB moved.
    cpu_s_per_gib: f64,
    /// Median / vblade's median (0 when vblade did not run).
    vs_vblade: f64,
    /// Median / the lower of the two ceilings.
    vs_lower_ceiling: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    mtu: u32,
    mode: String,
    case: String,
    unit: String,
    network_ceiling: f64,
    storage_ceiling: f64,
    targets: Vec<TargetSummary>,
}

/// The process label of a target in the table.
fn label(target: &str) -> String {
    match target {
        "vblade" => "vblade".into(),
        mode => format!("ethershelf ({mode})"),
    }
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

fn sample_of(job: &Value, case: &Case) -> (f64, f64, f64, f64, f64, u64, u64) {
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
        d["bytes"].as_u64().unwrap_or(0).max(1),
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
    // fio drops the file's page cache before a job unless told not to.
    .arg(format!("--invalidate={}", direct as u8))
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
    if let Some(t) = args
        .targets
        .iter()
        .find(|t| !["xdp", "packet", "vblade"].contains(&t.as_str()))
    {
        return Err(format!("unknown target '{t}': use xdp, packet or vblade"));
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
                    for target in args.targets.iter().map(String::as_str) {
                        if !direct {
                            sh(Command::new("sh")
                                .arg("-c")
                                .arg(format!("cat {} > /dev/null", file.display())))?;
                        }
                        let cmd: Vec<String> = if target != "vblade" {
                            let mut c = vec![
                                bin("ethershelf").display().to_string(),
                                "export".into(),
                                "--mode".into(),
                                target.into(),
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
                        if target != "vblade" {
                            t.wait_ready(Some(" serving "), Duration::from_millis(50))?;
                        } else {
                            t.wait_ready(None, Duration::from_millis(500))?;
                        }
                        let cpu0 = t.cpu_seconds();
                        let job = aoebench(case, args.runtime);
                        let cpu = t.cpu_seconds() - cpu0;
                        t.stop();
                        let job = job?;
                        let (value, iops, mib, p50, p99, ios, bytes) = sample_of(&job, case);
                        eprintln!(
                            "   MTU {mtu} {mode:6} {:18} pair {pair} {target:7} {value:>10.1} {}",
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
                            bytes,
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
                let stat = |v: &[Sample], f: fn(&Sample) -> f64| {
                    median_min_max(&v.iter().map(f).collect::<Vec<_>>())
                };
                let net = median_min_max(&net_ceiling[&(mtu, case.name)])[0];
                let sto = sto_ceiling[&(mode.clone(), case.name)];
                let vblade = stat(&pick("vblade"), |s| s.value)[0];
                let targets = args
                    .targets
                    .iter()
                    .map(|t| {
                        let v = pick(t);
                        let value = stat(&v, |s| s.value);
                        TargetSummary {
                            target: label(t),
                            value,
                            p50_us: stat(&v, |s| s.p50_us)[0],
                            p99_us: stat(&v, |s| s.p99_us)[0],
                            cpu_s_per_million_ios: stat(&v, |s| s.cpu_us_per_io)[0],
                            cpu_s_per_gib: stat(&v, |s| {
                                s.cpu_seconds / (s.bytes as f64 / (1u64 << 30) as f64)
                            })[0],
                            vs_vblade: if vblade > 0.0 { value[0] / vblade } else { 0.0 },
                            vs_lower_ceiling: value[0] / net.min(sto).max(1e-9),
                        }
                    })
                    .collect();
                rows.push(Row {
                    mtu,
                    mode: mode.clone(),
                    case: case.name.into(),
                    unit: if case.bandwidth { "MiB/s" } else { "IOPS" }.into(),
                    network_ceiling: net,
                    storage_ceiling: sto,
                    targets,
                });
            }
        }
    }
    let mut md = String::from("| MTU | backing | case | target | median (min-max) | x vblade | x lower ceiling | p50/p99 us | CPU s per M I/O | CPU s per GiB |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &rows {
        md += &format!(
            "| {} | {} | {} | ceilings: network {:.0}, storage {:.0} {} | | | | | | |\n",
            r.mtu, r.mode, r.case, r.network_ceiling, r.storage_ceiling, r.unit
        );
        for t in &r.targets {
            md += &format!(
                "| {} | {} | {} | {} | {:.0} ({:.0}-{:.0}) | {:.2} | {:.2} | {:.0}/{:.0} | {:.1} | {:.2} |\n",
                r.mtu, r.mode, r.case, t.target, t.value[0], t.value[1], t.value[2], t.vs_vblade,
                t.vs_lower_ceiling, t.p50_us, t.p99_us, t.cpu_s_per_million_ios, t.cpu_s_per_gib
            );
        }
    }
    let notes = "backing `cache`: file in the page cache (warmed with cat before each run); ethershelf `--buffered --writeback`, vblade plain. backing `direct`: ethershelf O_DIRECT + writethrough (RWF_DSYNC), vblade `-d -s`; storage ceiling fio io_uring --direct=1 (--sync=dsync for writes). Targets, null target and fio pinned to CPU 1, aoebench to CPU 0.";
    println!("{md}\n{notes}");
    let (stamp, git) = lab::stamp_and_git()?;
    let base = args.out.join(format!("compare-{stamp}"));
    let doc = serde_json::json!({ "schema": 1, "date": stamp, "git": git, "machine": machine_info(), "notes": notes,
        "settings": { "targets": args.targets, "pairs": args.pairs, "runtime_s": args.runtime, "ramp_s": 1, "file_mib": args.file_mib, "mtu": args.mtu, "modes": args.modes },
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
        .flat_map(|r| {
            r.targets
                .iter()
                .filter(|t| t.target != "vblade")
                .map(move |t| chart::Bar {
                    label: format!("{} {} MTU{} {}", t.target, r.case, r.mtu, r.mode),
                    vs_vblade: t.vs_vblade,
                    vs_ceiling: t.vs_lower_ceiling,
                })
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
