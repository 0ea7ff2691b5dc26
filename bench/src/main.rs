//! `aoebench`: drive AoE targets like fio, ping them like aoeping, set config strings like
//! aoecfg, and stand in as a null target to measure the lab's ceiling.

use clap::{Parser, Subcommand};
use ethershelf::wire::ConfigCommand;
use ethershelf_bench::discover::{self, TargetAddr};
use ethershelf_bench::engine::{Engine, EngineOptions, Phase, RunStats};
use ethershelf_bench::job::{parse_duration, parse_size, Job, JobFile, Rw};
use ethershelf_bench::report;
use ethershelf_bench::socket::AoeSocket;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// aoebench: a userspace ATA-over-Ethernet initiator and benchmark.
///
/// Every command names the interfaces it uses (--if); nothing is sent anywhere else.
#[derive(Parser)]
#[command(name = "aoebench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a fio-style job (flags) or every job of a YAML file, against one target.
    Run(RunArgs),
    /// Query config, IDENTIFY and SMART status of a target (like aoeping).
    Ping {
        /// Target SHELF.SLOT.
        #[arg(long)]
        target: TargetAddr,
        /// Interfaces, comma separated.
        #[arg(long = "if", value_delimiter = ',', required = true)]
        ifaces: Vec<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Config string commands (like aoecfg): read, test, prefix, set, fset.
    Cfg {
        /// Target SHELF.SLOT (default: every target, 65535.255).
        #[arg(long, default_value = "65535.255")]
        target: TargetAddr,
        /// Interfaces, comma separated.
        #[arg(long = "if", value_delimiter = ',', required = true)]
        ifaces: Vec<String>,
        /// read | test | prefix | set | fset.
        #[arg(long, default_value = "read")]
        command: String,
        /// The string for test/prefix/set/fset.
        #[arg(long, default_value = "")]
        string: String,
        /// How long to collect answers.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        wait: f64,
    },
    /// Serve the LUN as an NBD export on a Unix socket, so real fio can drive it
    /// (`fio --ioengine=nbd --uri='nbd+unix:///?socket=PATH'`). Stops after --duration.
    Nbd {
        /// Target SHELF.SLOT.
        #[arg(long)]
        target: TargetAddr,
        /// Interfaces, comma separated.
        #[arg(long = "if", value_delimiter = ',', required = true)]
        ifaces: Vec<String>,
        /// Unix socket path to listen on.
        #[arg(long)]
        socket: std::path::PathBuf,
        /// Stop after this long.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        duration: f64,
    },
    /// Behave like a hostile or broken host: send frames of one kind at --rate frames per
    /// second (0: as fast as the socket takes them) for --duration, then print what was sent
    /// (JSON). For measuring what a flood does to the other hosts of a shelf; use it only on
    /// a lab interface.
    Flood {
        /// Interface to flood from (one, in a lab namespace).
        #[arg(long = "if")]
        iface: String,
        /// Target SHELF.SLOT.
        #[arg(long, default_value = "1.0")]
        target: TargetAddr,
        /// What to send.
        #[arg(long, value_enum)]
        kind: ethershelf_bench::flood::FloodKind,
        /// Frames per second; 0 = as fast as possible.
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// How long (bounded: at most 10 minutes).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: f64,
        /// MACs the mask-edit and reserve floods keep listed (the well-behaved hosts).
        #[arg(long, value_delimiter = ',')]
        keep: Vec<String>,
        /// Seed of the random parts (garbage).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Forward every frame between two interfaces with seeded loss, duplication,
    /// reordering, delay, corruption, truncation and link cuts (a misbehaving switch, for
    /// tests in lab namespaces). Stops after --duration or at SIGINT/SIGTERM and prints what
    /// it did (JSON). SIGUSR1 starts a link cut, SIGUSR2 ends it (cuts timed by a script).
    Relay {
        /// First interface.
        #[arg(long)]
        a: String,
        /// Second interface.
        #[arg(long)]
        b: String,
        /// Percent of frames dropped (each direction).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Percent of frames sent twice.
        #[arg(long, default_value_t = 0.0)]
        duplicate: f64,
        /// Hold each frame a random time up to this, so frames overtake each other (e.g. 1ms).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        reorder: f64,
        /// Hold each frame this long.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        delay: f64,
        /// Percent of frames with one bit flipped after the Ethernet header.
        #[arg(long, default_value_t = 0.0)]
        corrupt: f64,
        /// Percent of frames cut short.
        #[arg(long, default_value_t = 0.0)]
        truncate: f64,
        /// Link cut START+LENGTH in seconds after start (repeatable), e.g. 5+20.
        #[arg(long = "cut", value_parser = ethershelf_bench::relay::parse_cut)]
        cuts: Vec<(Duration, Duration)>,
        /// Seed of every random decision.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How long to run (at most 1 hour).
        #[arg(long, value_parser = parse_duration)]
        duration: f64,
    },
    /// Answer reads with zeros and discard writes for a bounded time (the network ceiling).
    NullTarget {
        /// Interface to serve on.
        #[arg(long = "if")]
        iface: String,
        /// Shelf.
        #[arg(long, default_value_t = 1)]
        shelf: u16,
        /// Slot.
        #[arg(long, default_value_t = 0)]
        slot: u8,
        /// Advertised capacity.
        #[arg(long, default_value = "1g", value_parser = parse_size)]
        size: u64,
        /// Stop after this long.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: f64,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// A YAML job file (`jobs: [...]`); flags below are ignored when given.
    job_file: Option<std::path::PathBuf>,
    /// Target SHELF.SLOT.
    #[arg(long)]
    target: TargetAddr,
    /// Local interfaces, comma separated (several = multipath).
    #[arg(long = "if", value_delimiter = ',', required = true)]
    ifaces: Vec<String>,
    /// read | write | randread | randwrite | randrw.
    #[arg(long, default_value = "randread")]
    rw: Rw,
    /// Block size (e.g. 4k, 64k).
    #[arg(long, default_value = "4k", value_parser = parse_size)]
    bs: u64,
    /// I/Os in flight per job.
    #[arg(long, default_value_t = 1)]
    iodepth: usize,
    /// Parallel jobs (each on its own slice of the region).
    #[arg(long, default_value_t = 1)]
    numjobs: usize,
    /// Measured time (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    runtime: f64,
    /// Unmeasured warm-up (e.g. 1s).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    ramp: f64,
    /// Region size (default: min(LUN, 1 GiB)).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Region start.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    offset: u64,
    /// Read percentage of randrw.
    #[arg(long, default_value_t = 50)]
    rwmixread: u8,
    /// Verify data (crc32c): reads are checked, writes are read back at the end.
    #[arg(long)]
    verify: Option<String>,
    /// human | json.
    #[arg(long, default_value = "human")]
    output_format: String,
    /// Drop every Nth frame before sending (tests retransmission).
    #[arg(long, default_value_t = 0)]
    drop_every: u64,
    /// Pin job threads to these CPUs (job N on the Nth, round robin), e.g. `0,1`.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// How long discovery waits for answers.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    discover_wait: f64,
}

fn open_socks(ifaces: &[String]) -> Result<Vec<AoeSocket>, String> {
    ifaces
        .iter()
        .map(|i| AoeSocket::open(i).map_err(|e| e.to_string()))
        .collect()
}

fn run_job(
    job: &Job,
    args: &RunArgs,
    target: &discover::Target,
    json: bool,
) -> Result<report::JobReport, String> {
    job.validate()?;
    let tty = std::io::stderr().is_terminal() && !json;
    let mut parts: Vec<RunStats> = Vec::new();
    let mut window = 0;
    let results: Vec<Result<(RunStats, usize), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..job.numjobs)
            .map(|part| {
                scope.spawn(move || -> Result<(RunStats, usize), String> {
                    if !args.cpus.is_empty() {
                        let id = args.cpus[part % args.cpus.len()];
                        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                            return Err(format!("cannot pin job {part} to cpu {id}"));
                        }
                    }
                    let socks = open_socks(&args.ifaces)?;
                    let opts = EngineOptions {
                        job_id: part as u32,
                        drop_every: args.drop_every,
                        seed: 0x5eed + part as u64,
                    };
                    let mut engine = Engine::new(&socks, target, job, opts, part, job.numjobs)
                        .map_err(|e| e.to_string())?;
                    let w = engine.window();
                    let mut quiet = |_: f64, _: u64| {};
                    let mut quiet_main = |_: f64, _: u64| {};
                    let mut live = |t: f64, n: u64| {
                        eprint!("\r{}: {:.0} s, {} I/Os   ", job.name, t, n);
                        let _ = std::io::stderr().flush();
                    };
                    let progress: &mut dyn FnMut(f64, u64) = if tty && part == 0 {
                        &mut live
                    } else {
                        &mut quiet_main
                    };
                    let verify = job.verify.is_some();
                    if verify && job.rw.reads() {
                        let pre = engine
                            .run(Phase::Prefill, &mut quiet)
                            .map_err(|e| e.to_string())?;
                        if pre.errors > 0 {
                            return Err(format!(
                                "prefill for verify failed: {} I/O errors",
                                pre.errors
                            ));
                        }
                    }
                    let mut main = engine
                        .run(Phase::Main, progress)
                        .map_err(|e| e.to_string())?;
                    if verify && job.rw.writes() {
                        let check = engine
                            .run(Phase::VerifyAll, &mut quiet)
                            .map_err(|e| e.to_string())?;
                        main.verified_blocks += check.verified_blocks;
                        main.verify_failures.extend(check.verify_failures);
                        main.errors += check.errors;
                    }
                    Ok((main, w))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("job thread panicked".into()))
            })
            .collect()
    });
    if tty {
        eprintln!();
    }
    for r in results {
        let (s, w) = r?;
        window = w;
        parts.push(s);
    }
    Ok(report::build(
        job,
        target,
        &args.ifaces,
        window,
        &report::merge(parts),
    ))
}

fn run(args: RunArgs) -> Result<bool, String> {
    let json = match args.output_format.as_str() {
        "json" => true,
        "human" => false,
        other => return Err(format!("--output-format {other}: use human or json")),
    };
    let jobs: Vec<Job> = match &args.job_file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let file: JobFile =
                serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            file.jobs
        }
        None => vec![Job {
            name: format!("{:?}-{}", args.rw, args.bs).to_lowercase(),
            rw: args.rw,
            bs: args.bs,
            iodepth: args.iodepth,
            numjobs: args.numjobs,
            runtime: args.runtime,
            ramp: args.ramp,
            size: args.size,
            offset: args.offset,
            rwmixread: args.rwmixread,
            verify: args.verify.clone(),
        }],
    };
    let socks = open_socks(&args.ifaces)?;
    let target = discover::discover(
        &socks,
        args.target,
        Duration::from_secs_f64(args.discover_wait),
    )
    .map_err(|e| e.to_string())?;
    drop(socks);
    if !json {
        println!(
            "target e{}: {} ({} sectors, {:.1} GiB, lba48={}), buffer count {}, {} sectors per frame, {} path(s)",
            target.addr,
            target.model,
            target.sectors,
            target.sectors as f64 * 512.0 / (1u64 << 30) as f64,
            target.lba48,
            target.buffer_count,
            target.frame_sectors,
            target.paths.len()
        );
    }
    let mut ok = true;
    let mut reports = Vec::new();
    for job in &jobs {
        let r = run_job(job, &args, &target, json)?;
        ok &= r.errors == 0 && r.verify_failures.is_empty();
        if !json {
            print!("{}", report::human(&r));
        }
        reports.push(r);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "schema": 1, "jobs": reports }))
                .map_err(|e| e.to_string())?
        );
    }
    Ok(ok)
}

fn ping(target: TargetAddr, ifaces: &[String], json: bool) -> Result<bool, String> {
    let socks = open_socks(ifaces)?;
    let t =
        discover::discover(&socks, target, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let smart = ethershelf::wire::AtaRepr {
        aflags: Default::default(),
        err_feature: 0xDA,
        sector_count: 0,
        cmd_status: 0xB0,
        lba: [0, 0x4F, 0xC2, 0, 0, 0],
    };
    let r = discover::ata_once(&socks, &t, 0x8000_0000 | 0x00C3_0000, smart, &[])
        .map_err(|e| e.to_string())?;
    let healthy = r.len() >= 36 && r[27] & 0x01 == 0 && r[29] == 0x4F && r[30] == 0xC2;
    let paths: Vec<String> = t
        .paths
        .iter()
        .map(|p| format!("{}->{}", socks[p.sock].iface, p.target_mac))
        .collect();
    if json {
        let doc = serde_json::json!({ "target": t.addr.to_string(), "model": t.model, "serial": t.serial, "sectors": t.sectors, "lba48": t.lba48,
            "buffer_count": t.buffer_count, "firmware": t.firmware, "frame_sectors": t.frame_sectors, "smart_healthy": healthy, "paths": paths });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "e{}: model \"{}\" serial \"{}\" firmware {:#06x}",
            t.addr, t.model, t.serial, t.firmware
        );
        println!(
            "  {} sectors ({} bytes), lba48={}, buffer count {}, {} sectors per frame",
            t.sectors,
            t.sectors * 512,
            t.lba48,
            t.buffer_count,
            t.frame_sectors
        );
        println!(
            "  SMART status: {}",
            if healthy {
                "healthy"
            } else {
                "THRESHOLD EXCEEDED"
            }
        );
        println!("  paths: {}", paths.join(" "));
    }
    Ok(true)
}

fn cfg(
    target: TargetAddr,
    ifaces: &[String],
    command: &str,
    string: &str,
    wait: f64,
) -> Result<bool, String> {
    let ccmd = match command {
        "read" => ConfigCommand::Read,
        "test" => ConfigCommand::Test,
        "prefix" => ConfigCommand::Prefix,
        "set" => ConfigCommand::Set,
        "fset" => ConfigCommand::ForceSet,
        other => {
            return Err(format!(
                "--command {other}: use read, test, prefix, set or fset"
            ))
        }
    };
    if string.len() > 1024 {
        return Err("a config string holds at most 1024 bytes".into());
    }
    let socks = open_socks(ifaces)?;
    let answers = discover::config_command(
        &socks,
        target,
        ccmd,
        string.as_bytes(),
        Duration::from_secs_f64(wait),
    )
    .map_err(|e| e.to_string())?;
    let mut ok = true;
    for (addr, result) in answers {
        match result {
            Ok(s) => println!("{addr}\t{}", String::from_utf8_lossy(&s)),
            Err(code) => {
                ok = false;
                println!(
                    "{addr}\terror {code}{}",
                    if code == 4 {
                        " (config string present)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(ok)
}

fn nbd(
    target: TargetAddr,
    ifaces: &[String],
    socket: &std::path::Path,
    duration: f64,
) -> Result<bool, String> {
    let socks = open_socks(ifaces)?;
    let t =
        discover::discover(&socks, target, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    eprintln!(
        "nbd: serving e{} ({} bytes) on {}",
        t.addr,
        t.sectors * 512,
        socket.display()
    );
    let stats = ethershelf_bench::nbd::serve(socket, &socks, &t, Duration::from_secs_f64(duration))
        .map_err(|e| e.to_string())?;
    eprintln!(
        "nbd: {} client(s), {} reads, {} writes, {} flushes, {} errors, {} retransmits",
        stats.clients, stats.reads, stats.writes, stats.flushes, stats.errors, stats.retransmits
    );
    Ok(stats.errors == 0)
}

/// `aoebench flood`: one bounded flood; prints its report as JSON.
fn flood(
    iface: &str,
    target: TargetAddr,
    kind: ethershelf_bench::flood::FloodKind,
    rate: u64,
    duration: f64,
    keep: &[String],
    seed: u64,
) -> Result<bool, String> {
    let keep = keep
        .iter()
        .map(|m| m.parse().map_err(|e| format!("--keep: {e}")))
        .collect::<Result<Vec<ethershelf::wire::MacAddr>, String>>()?;
    if !(0.0..=600.0).contains(&duration) {
        return Err("--duration must be at most 10m".into());
    }
    let options = ethershelf_bench::flood::FloodOptions {
        kind,
        shelf: target.shelf,
        slot: target.slot,
        rate: (rate > 0).then_some(rate),
        duration: Duration::from_secs_f64(duration),
        keep,
        seed,
    };
    let sock = AoeSocket::open(iface).map_err(|e| e.to_string())?;
    let report = ethershelf_bench::flood::flood(&sock, &options).map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(true)
}

fn main() -> ExitCode {
    let cli: Cli = ethershelf::docs::parse("1");
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Ping {
            target,
            ifaces,
            json,
        } => ping(target, &ifaces, json),
        Command::Cfg {
            target,
            ifaces,
            command,
            string,
            wait,
        } => cfg(target, &ifaces, &command, &string, wait),
        Command::Nbd {
            target,
            ifaces,
            socket,
            duration,
        } => nbd(target, &ifaces, &socket, duration),
        Command::Flood {
            iface,
            target,
            kind,
            rate,
            duration,
            keep,
            seed,
        } => flood(&iface, target, kind, rate, duration, &keep, seed),
        Command::Relay {
            a,
            b,
            loss,
            duplicate,
            reorder,
            delay,
            corrupt,
            truncate,
            cuts,
            seed,
            duration,
        } => relay(
            &a,
            &b,
            ethershelf_bench::relay::Impairments {
                loss,
                duplicate,
                reorder: Duration::from_secs_f64(reorder),
                delay: Duration::from_secs_f64(delay),
                corrupt,
                truncate,
                cuts,
            },
            duration,
            seed,
        ),
        Command::NullTarget {
            iface,
            shelf,
            slot,
            size,
            duration,
        } => AoeSocket::open(&iface)
            .and_then(|s| {
                ethershelf_bench::null_target::serve(
                    &s,
                    shelf,
                    slot,
                    size / 512,
                    Duration::from_secs_f64(duration),
                )
            })
            .map(|n| {
                eprintln!("null-target: answered {n} frames");
                true
            })
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("aoebench: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn relay(
    a: &str,
    b: &str,
    how: ethershelf_bench::relay::Impairments,
    duration: f64,
    seed: u64,
) -> Result<bool, String> {
    for (name, p) in [
        ("loss", how.loss),
        ("duplicate", how.duplicate),
        ("corrupt", how.corrupt),
        ("truncate", how.truncate),
    ] {
        if !(0.0..=100.0).contains(&p) {
            return Err(format!("--{name} {p}: give a percentage 0..100"));
        }
    }
    let controls = ethershelf_bench::relay::Controls::default();
    for (sig, flag) in [
        (signal_hook::consts::SIGINT, &controls.stop),
        (signal_hook::consts::SIGTERM, &controls.stop),
        (signal_hook::consts::SIGUSR1, &controls.cut_begin),
        (signal_hook::consts::SIGUSR2, &controls.cut_end),
    ] {
        signal_hook::flag::register(sig, flag.clone()).map_err(|e| e.to_string())?;
    }
    let report = ethershelf_bench::relay::run(
        a,
        b,
        &how,
        Duration::from_secs_f64(duration),
        seed,
        &controls,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(true)
}
