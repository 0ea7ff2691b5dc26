//! The fast path in both port modes: AF_XDP and AF_PACKET each serve two ports with two queues
//! per port under aoebench verify, every (port, queue) path carries frames, the worker is
//! pinned; the XDP program leaves non-AoE traffic to the kernel; `auto` says what it chose.

mod common;
use common::*;
use std::process::Command;

/// The counters of every "path stats" line in the shelf log: (port, queue, rx_frames).
fn path_counts(lab: &Lab) -> Vec<(String, u32, u64)> {
    let field = |line: &str, key: &str| -> String {
        let at = line
            .find(&format!(" {key}="))
            .unwrap_or_else(|| panic!("no {key} in {line}"));
        line[at + key.len() + 2..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string()
    };
    lab.log_lines("path stats")
        .iter()
        .map(|l| {
            (
                field(l, "port"),
                field(l, "queue").parse().unwrap(),
                field(l, "stats=rx_frames").parse().unwrap(),
            )
        })
        .collect()
}

fn two_ports_two_queues(mode: &'static str) {
    let mut lab = Lab::with_queues(2, 9000, 2);
    lab.mode = mode;
    let disk = lab.disk("lun.img", 256 << 20);
    let cfg = lab.config(4, &[(2, &disk)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let up = lab.log_lines("port up");
    let expected_sockets = if mode == "xdp" { 4 } else { 2 };
    assert_eq!(up.len(), expected_sockets, "{}", lab.log_text());
    assert!(
        up.iter().all(|l| l.contains(&format!("mode=\"{mode}\""))),
        "{up:?}"
    );
    // One worker per receive queue, up to the usable cores: AF_XDP has two queues per port,
    // AF_PACKET one socket per port.
    let cores = usable_cores();
    let expected_workers = if mode == "xdp" { cores.min(2) } else { 1 };
    let pinned = lab.log_lines("worker pinned");
    assert_eq!(pinned.len(), expected_workers, "{}", lab.log_text());
    let mut pinned_cpus: Vec<String> = pinned
        .iter()
        .map(|l| {
            assert!(l.contains("why="), "{l}");
            l.split(" cpu=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    pinned_cpus.dedup();
    assert_eq!(
        pinned_cpus.len(),
        expected_workers,
        "workers share a core: {pinned:?}"
    );
    assert!(
        lab.log_lines("serving")[0].contains(&format!("workers={expected_workers}")),
        "{}",
        lab.log_text()
    );

    let ifs = lab.gather_host_links();
    lab.steer_host_queues(2);
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "timeout", "120"])
        .arg(aoebench())
        .args([
            "run",
            "--target",
            "4.2",
            "--if",
            &ifs,
            "--rw",
            "randrw",
            "--bs",
            "16k",
            "--iodepth",
            "8",
            "--numjobs",
            "2",
            "--cpus",
            "0,1",
            "--runtime",
            "3s",
            "--size",
            "64m",
            "--verify",
            "crc32c",
            "--output-format",
            "json",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "aoebench failed: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let job = &doc["jobs"][0];
    assert_eq!(job["errors"], 0, "{job}");
    assert_eq!(job["verify_failures"].as_array().unwrap().len(), 0, "{job}");
    assert!(job["verified_blocks"].as_u64().unwrap() > 500, "{job}");
    for p in job["paths"].as_array().unwrap() {
        assert!(p["share"].as_f64().unwrap() > 0.2, "path unused: {job}");
    }
    // Every path and worker shows in the metrics: frames per (port, queue) and the core of
    // each worker.
    let metrics = lab.metrics();
    for q in 0..(if mode == "xdp" { 2 } else { 1 }) {
        let owner = q % expected_workers;
        let series = metrics
            .lines()
            .find(|l| {
                l.starts_with("ethershelf_path_rx_frames_total")
                    && l.contains(&format!("queue=\"{q}\""))
                    && l.contains(&format!("worker=\"{owner}\""))
            })
            .unwrap_or_else(|| panic!("no rx series for queue {q} on worker {owner}:\n{metrics}"));
        let value: f64 = series.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value > 1000.0, "{series}");
    }
    for w in 0..expected_workers {
        let cpu = metrics
            .lines()
            .find(|l| l.starts_with(&format!("ethershelf_worker_cpu{{worker=\"{w}\"")))
            .unwrap_or_else(|| panic!("no cpu of worker {w}:\n{metrics}"));
        assert!(!cpu.ends_with(" -1"), "worker {w} unpinned: {cpu}");
    }
    assert!(lab.stop().success());

    let counts = path_counts(&lab);
    println!("{mode}: per-path frames received: {counts:?}");
    assert_eq!(counts.len(), expected_sockets, "{}", lab.log_text());
    for (port, queue, rx) in &counts {
        assert!(
            *rx > 1000,
            "{mode}: path {port} queue {queue} carried only {rx} frames: {counts:?}"
        );
    }
    if mode == "xdp" {
        let mut queues: Vec<u32> = counts.iter().map(|c| c.1).collect();
        queues.sort_unstable();
        assert_eq!(queues, vec![0, 0, 1, 1], "{counts:?}");
    }
}

#[test]
fn xdp_two_ports_two_queues_verify_and_every_path_carries_frames() {
    two_ports_two_queues("xdp");
}

#[test]
fn packet_two_ports_two_queues_verify_and_every_path_carries_frames() {
    two_ports_two_queues("packet");
}

#[test]
fn xdp_program_passes_non_aoe_traffic_to_the_kernel() {
    require("ping", "iputils-ping");
    let mut lab = Lab::new(1, 9000);
    lab.mode = "xdp";
    run(&[
        "ip",
        "-n",
        &lab.shelf_ns,
        "addr",
        "add",
        "10.77.0.1/24",
        "dev",
        lab.shelf_if(0),
    ]);
    run(&[
        "ip",
        "-n",
        &lab.hosts[0],
        "addr",
        "add",
        "10.77.0.2/24",
        "dev",
        lab.host_if(0),
    ]);
    let disk = lab.disk("lun.img", 64 << 20);
    let cfg = lab.config(3, &[(1, &disk)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    assert!(
        lab.log_lines("port up")[0].contains("native XDP"),
        "{}",
        lab.log_text()
    );
    // IP (with ARP first) goes to the kernel while AoE goes to the shelf, at the same time.
    let ping = lab.host_cmd(
        0,
        20,
        &["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.77.0.1"],
    );
    let ping_text = String::from_utf8_lossy(&ping.stdout).to_string();
    assert!(
        ping.status.success(),
        "ping failed with the shelf running: {ping_text}"
    );
    assert!(ping_text.contains("5 received"), "{ping_text}");
    // A jumbo ping (several UMEM-chunk-sized buffers) passes too.
    let big = lab.host_cmd(
        0,
        20,
        &[
            "ping",
            "-c",
            "2",
            "-s",
            "8900",
            "-M",
            "do",
            "-W",
            "2",
            "10.77.0.1",
        ],
    );
    assert!(
        big.status.success(),
        "jumbo ping failed: {}",
        String::from_utf8_lossy(&big.stdout)
    );
    let o = lab.host_cmd(
        0,
        30,
        &[
            aoebench().to_str().unwrap(),
            "ping",
            "--target",
            "3.1",
            "--if",
            lab.host_if(0),
        ],
    );
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success() && t.contains("17 sectors per frame"),
        "{t}"
    );
    assert!(lab.stop().success());
    // After the shelf is gone, the program is detached and the kernel sees everything.
    let after = lab.host_cmd(0, 10, &["ping", "-c", "1", "-W", "2", "10.77.0.1"]);
    assert!(after.status.success());
    let link = run(&["ip", "-n", &lab.shelf_ns, "link", "show", lab.shelf_if(0)]);
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    assert!(!link.contains("xdp"), "XDP program left attached: {link}");
}

#[test]
fn auto_mode_says_what_it_chose_and_why() {
    let mut lab = Lab::new(1, 1500);
    lab.mode = "auto";
    let disk = lab.disk("lun.img", 16 << 20);
    let cfg = lab.config(3, &[(1, &disk)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let up = lab.log_lines("port up");
    assert_eq!(up.len(), 1, "{}", lab.log_text());
    assert!(up[0].contains("why=auto:"), "{}", up[0]);
    assert!(lab.stop().success());
}

/// aoebench verify (randrw 16k QD8, two jobs on two CPUs, so both queues carry frames)
/// against LUN `target` through `ifs` from host 0 for `secs`; returns aoebench's JSON job.
fn verify_load(lab: &Lab, target: &str, ifs: &str, secs: u32) -> serde_json::Value {
    let job = format!(
        "--if {ifs} --rw randrw --bs 16k --iodepth 8 --numjobs 2 --cpus 0,1 --runtime {secs}s --size 32m --verify crc32c"
    );
    bench_job(lab, target, &job.split_whitespace().collect::<Vec<_>>())
}

/// A RAID-10 LUN served by two workers (queue 1's frames cross to the LUN worker and back):
/// verify passes, a member failure under load is survived, and a stop in the middle of load
/// ends every worker promptly and cleanly.
#[test]
fn xdp_raid10_across_two_workers_verifies_survives_a_failure_and_stops_under_load() {
    let mut lab = Lab::with_queues(1, 9000, 2);
    lab.mode = "xdp";
    let disks: Vec<_> = (0..4)
        .map(|i| lab.disk(&format!("d{i}.img"), 48 << 20))
        .collect();
    let mut y = format!(
        "shelf: 5\nstate_dir: {}\nadmin: {{ socket: {} }}\nworkers: 2\nports:\n  - {{ interface: {}, mode: xdp }}\ndisks:\n",
        lab.dir.join("state").display(),
        lab.dir.join("admin.sock").display(),
        lab.shelf_if(0)
    );
    for d in &disks {
        y += &format!("  - {}\n", d.display());
    }
    y += "luns:\n  - slot: 1\n    raid10: { disks: [0, 1, 2, 3], clean: true }\n";
    let cfg = lab.dir.join("shelf.yaml");
    std::fs::write(&cfg, y).unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let cores = usable_cores();
    let workers = cores.min(2);
    assert_eq!(
        lab.log_lines("worker pinned").len(),
        workers,
        "{}",
        lab.log_text()
    );
    let ifs = lab.host_if(0).to_string();
    lab.steer_host_queues(2);

    let job = verify_load(&lab, "5.1", &ifs, 3);
    assert_eq!(job["errors"], 0, "{job}");
    assert_eq!(job["verify_failures"].as_array().unwrap().len(), 0, "{job}");
    assert!(job["verified_blocks"].as_u64().unwrap() > 300, "{job}");
    // The frames of one 16k request continue each other on the same members: their member
    // I/Os were merged.
    let merged = metric_value(&lab.metrics(), "ethershelf_merged_ios_total");
    assert!(merged > 100.0, "no merged member I/O: {merged}");

    // A member fails while both queues carry load: the array degrades, nothing is lost.
    let sock = lab.dir.join("admin.sock");
    let ctl = |line: &str| {
        let o = Command::new(binary())
            .args(["ctl", "-s", sock.to_str().unwrap()])
            .args(line.split_whitespace())
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let failer = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(800));
            Command::new(binary())
                .args(["ctl", "-s", sock.to_str().unwrap(), "fail", "1.0.2"])
                .output()
                .unwrap()
        })
    };
    let job = verify_load(&lab, "5.1", &ifs, 3);
    let failed = failer.join().unwrap();
    assert!(failed.status.success(), "fail: {failed:?}");
    assert_eq!(job["errors"], 0, "{job}");
    assert_eq!(job["verify_failures"].as_array().unwrap().len(), 0, "{job}");
    assert!(ctl("list -l").contains("degraded"), "{}", ctl("list -l"));

    // Stop in the middle of load: every worker ends, and quickly.
    let mut load = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "timeout", "30"])
        .arg(aoebench())
        .args([
            "run",
            "--target",
            "5.1",
            "--if",
            &ifs,
            "--rw",
            "randwrite",
            "--bs",
            "16k",
            "--iodepth",
            "16",
            "--numjobs",
            "2",
            "--cpus",
            "0,1",
            "--runtime",
            "8s",
            "--size",
            "32m",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let status = lab.stop();
    let took = started.elapsed();
    // The load has nothing left to talk to: end it (timeout passes SIGTERM on to aoebench).
    // SAFETY: signals the process this test spawned, by its PID.
    unsafe { libc::kill(load.id() as i32, libc::SIGTERM) };
    let _ = load.wait();
    assert!(status.success(), "{status:?}\n{}", lab.log_text());
    assert!(
        took < std::time::Duration::from_secs(10),
        "stop took {took:?}"
    );
    let stats = lab.log_lines("path stats");
    assert_eq!(stats.len(), 2, "{}", lab.log_text());
    if workers == 2 {
        assert!(
            stats.iter().any(|l| l.contains("worker=1")),
            "queue worker logged no path: {stats:?}"
        );
    }
    assert!(
        lab.log_lines("hand-off ring was full").is_empty(),
        "{}",
        lab.log_text()
    );
    println!("stop under load took {took:?}; {stats:?}");
}

/// Runs aoebench `args` from host 0 against `target`; returns its JSON job (whatever the
/// exit status: a run that met I/O errors still reports them).
fn bench_job(lab: &Lab, target: &str, args: &[&str]) -> serde_json::Value {
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "timeout", "120"])
        .arg(aoebench())
        .args(["run", "--target", target])
        .args(if args.contains(&"--if") {
            vec![]
        } else {
            vec!["--if", lab.host_if(0)]
        })
        .args(args)
        .args(["--output-format", "json"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "aoebench gave no JSON ({e}): {out}{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    doc["jobs"][0].clone()
}

/// aoebench `job` (space-separated options) with crc32c verify against `target`: asserts no
/// error, no verify failure and at least `min_blocks` blocks verified.
fn assert_verified(lab: &Lab, target: &str, job: &str, min_blocks: u64) {
    let mut args: Vec<&str> = job.split_whitespace().collect();
    args.extend(["--verify", "crc32c"]);
    let job = bench_job(lab, target, &args);
    assert_eq!(job["errors"], 0, "{job}");
    assert_eq!(job["verify_failures"].as_array().unwrap().len(), 0, "{job}");
    assert!(
        job["verified_blocks"].as_u64().unwrap() >= min_blocks,
        "{job}"
    );
}

/// The sum of every series of `metric` in Prometheus text (over workers, say).
fn metric_value(text: &str, metric: &str) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(!values.is_empty(), "no {metric} in:\n{text}");
    values.iter().sum()
}

/// Frames of one large write arrive together and continue each other: they reach the disk as
/// one vectored write (counted), data verifies; when the disk fails, a merged write is split
/// and every request gets its own error; when the disk is back, I/O works again.
#[test]
fn contiguous_requests_merge_and_a_failed_merge_answers_every_request() {
    let mut lab = Lab::new(1, 9000);
    lab.mode = "packet";
    let backing = lab.dir.join("backing");
    std::fs::create_dir_all(&backing).unwrap();
    let f = std::fs::File::create(backing.join("lun.img")).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let fuse = FaultFs::mount(&backing, &lab.dir.join("fuse"));
    let cfg = lab.config(6, &[(0, &fuse.mount.join("lun.img"))], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let ring = lab.log_lines("io_uring ready");
    assert!(
        ring[0].contains("fixed_buffers=true") && ring[0].contains("fixed_files=true"),
        "registered buffers and files expected: {ring:?}"
    );

    assert_verified(
        &lab,
        "6.0",
        "--rw write --bs 64k --iodepth 4 --runtime 2s --size 16m",
        51,
    );
    let m = lab.metrics();
    let runs = metric_value(&m, "ethershelf_merged_ios_total");
    let requests = metric_value(&m, "ethershelf_merged_requests_total");
    println!("merged: {runs} I/Os made of {requests} requests");
    assert!(runs > 10.0, "no merged I/O: {runs}");
    assert!(
        requests >= 2.0 * runs,
        "{requests} requests in {runs} merged I/Os"
    );

    // The disk fails: merged writes fail, are split, and every request gets its error.
    std::fs::write(backing.join("lun.img.fail"), b"").unwrap();
    let job = bench_job(
        &lab,
        "6.0",
        &"--rw write --bs 64k --iodepth 4 --runtime 1s --size 16m"
            .split_whitespace()
            .collect::<Vec<_>>(),
    );
    assert!(
        job["errors"].as_u64().unwrap() > 0,
        "failing disk, no errors: {job}"
    );
    std::fs::remove_file(backing.join("lun.img.fail")).unwrap();
    // The disk is back: I/O works and verifies again.
    assert_verified(
        &lab,
        "6.0",
        "--rw write --bs 64k --iodepth 4 --runtime 1s --size 16m",
        1,
    );
    assert!(lab.stop().success(), "{}", lab.log_text());
    let stopped = lab.log_lines("stopped");
    let split: u64 = stopped[0]
        .split(" split_runs=")
        .nth(1)
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no split_runs in {stopped:?}"));
    assert!(
        split > 0,
        "failed merged writes were not split: {stopped:?}"
    );
    assert!(!lab.log_lines("answering ATA UNC").is_empty());
}

/// `sqpoll: true`: the LUN worker's submissions go through a kernel polling thread, and
/// reads and writes verify as without it.
#[test]
fn sqpoll_ring_serves_verified_io() {
    let mut lab = Lab::new(1, 9000);
    lab.mode = "xdp";
    let disk = lab.disk("lun.img", 64 << 20);
    let cfg = lab.config(8, &[(2, &disk)], "");
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("sqpoll: true\n{yaml}")).unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    assert_eq!(lab.log_lines("SQPOLL on").len(), 1, "{}", lab.log_text());
    for (rw, bs) in [("randrw", "4k"), ("write", "64k")] {
        let job = format!("--rw {rw} --bs {bs} --iodepth 16 --runtime 2s --size 16m");
        assert_verified(&lab, "8.2", &job, 101);
    }
    assert!(lab.stop().success(), "{}", lab.log_text());
}
