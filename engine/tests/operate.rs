//! Operating a running shelf: the console (make -> online -> I/O -> fail -> spare rebuild ->
//! when), reconfiguration while another LUN serves verified I/O, clear refusals, the LUN book
//! across restarts, Prometheus metrics per path on two ports, and the systemd integration
//! (unit verification, READY and watchdog notifications, SIGHUP reload).

mod common;
use common::*;
use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// A shelf config with `disks` blank disks, LUN 0 on a file, metrics on the shelf
/// namespace's loopback (brought up here).
fn shelf_yaml(lab: &Lab, disks: usize, extra: &str) -> PathBuf {
    run(&["ip", "-n", &lab.shelf_ns, "link", "set", "lo", "up"]);
    let file = lab.disk("lun0.img", 64 * MIB);
    let mut y = format!(
        "shelf: 7\nstate_dir: {}\nadmin: {{ socket: {} }}\nmetrics: {{ listen: \"127.0.0.1:9478\" }}\n{extra}ports:\n",
        lab.dir.join("state").display(),
        lab.dir.join("admin.sock").display()
    );
    for (s, _) in &lab.links {
        y += &format!("  - {{ interface: {s}, mode: {} }}\n", lab.mode);
    }
    if disks > 0 {
        y += "disks:\n";
    }
    for i in 0..disks {
        y += &format!(
            "  - {}\n",
            lab.disk(&format!("d{i}.img"), 16 * MIB).display()
        );
    }
    y += &format!("luns:\n  - slot: 0\n    file: {}\n", file.display());
    let p = lab.dir.join("shelf.yaml");
    std::fs::write(&p, y).unwrap();
    p
}

fn ctl_raw(lab: &Lab, args: &[&str]) -> Output {
    Command::new(binary())
        .args(["ctl", "-s", lab.dir.join("admin.sock").to_str().unwrap()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs a console command one-shot; asserts success; returns stdout.
fn ctl(lab: &Lab, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let o = ctl_raw(lab, &words);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "ctl {line} failed: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Runs a console command that must fail; returns its stdout + stderr.
fn ctl_fails(lab: &Lab, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let o = ctl_raw(lab, &words);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "ctl {line} should fail: {text}");
    text
}

/// Starts aoebench verify against 7.`slot` on host 0 for `secs`.
fn bench(lab: &Lab, slot: u8, secs: u32, rw: &str) -> Child {
    lab.verified_io(0, &format!("7.{slot}"), secs, rw)
}

/// Waits for a bench and asserts it saw no errors and no verify failures.
fn bench_clean(child: Child, what: &str) -> serde_json::Value {
    verified_clean(child, what)
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every metric named in deploy/grafana/ethershelf.json is in `scraped`.
fn dashboard_uses_only_exported_metrics(scraped: &prometheus_parse::Scrape) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/ethershelf.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() > 20, "{exprs:?}");
    let names: std::collections::HashSet<&str> =
        scraped.samples.iter().map(|s| s.metric.as_str()).collect();
    for expr in &exprs {
        for (at, _) in expr.match_indices("ethershelf_") {
            let name: String = expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let name = name.strip_suffix("_bucket").unwrap_or(&name);
            assert!(
                names.contains(name),
                "the dashboard uses {name}, which is not exported"
            );
        }
    }
}

#[test]
fn console_makes_a_raid10_lun_online_serves_it_fails_a_member_and_rebuilds_onto_a_spare() {
    require("curl", "curl");
    let mut lab = Lab::new(1, 9000);
    let cfg = shelf_yaml(&lab, 6, "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    // LUN 0 serves verified I/O through every change below.
    let steady = bench(&lab, 0, 12, "randrw");
    assert!(ctl_fails(&lab, "make 1 raid10 7.0-3").contains("needs confirmation"));
    let made = ctl(&lab, "make -f 1 raid10 7.0-3");
    assert!(
        made.contains("LUN 1 made") && made.contains("offline"),
        "{made}"
    );
    let list = ctl(&lab, "list -l");
    assert!(list.contains("  1 ") && list.contains("offline"), "{list}");
    assert!(list.contains("1.0.3 normal"), "{list}");
    ctl(&lab, "spare 7.4");
    assert!(ctl(&lab, "spares").contains("7.4"));
    ctl(&lab, "label vmstore 1");
    ctl(&lab, "online 1");
    wait_for("the initial sync", 30, || {
        ctl(&lab, "list -l").contains("raid10 normal")
    });
    let io = bench(&lab, 1, 6, "randrw");
    std::thread::sleep(Duration::from_millis(1500));
    println!("{}", ctl(&lab, "fail 1.0.1"));
    let mut saw_rebuild = String::new();
    wait_for("the rebuild onto the spare", 40, || {
        let when = ctl(&lab, "when");
        if when.contains("rebuild") {
            saw_rebuild = when;
        }
        !lab.log_lines(" rebuild finished ").is_empty()
    });
    println!("when during the rebuild: {saw_rebuild}");
    let job = bench_clean(io, "LUN 1 through fail and rebuild");
    println!("LUN 1: {job}");
    let list = ctl(&lab, "list -l");
    println!("{list}");
    assert!(
        list.contains("1 0.") && list.contains("online vmstore"),
        "{list}"
    );
    assert!(list.contains("raid10 normal"), "{list}");
    assert!(
        list.contains("1.0.1 normal") && list.contains(" 7.4\n"),
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_str(&ctl(&lab, "--json list -l")).unwrap();
    assert_eq!(json["luns"][1]["state"], "normal", "{json}");
    assert_eq!(json["luns"][1]["components"][1]["disk"], "7.4", "{json}");
    let stats = ctl(&lab, "iostats");
    assert!(stats.lines().any(|l| l.starts_with("1.0.0 ")), "{stats}");
    // Metrics of the array and its members, and every series the Grafana dashboard uses.
    let scraped = scrape(&lab);
    let normal = scraped.samples.iter().find(|s| {
        s.metric == "ethershelf_array_state"
            && s.labels.get("lun") == Some("7.1")
            && s.labels.get("state") == Some("normal")
    });
    assert_eq!(normal.map(value), Some(1.0), "array state exported");
    let member_ios = by_label(&scraped, "ethershelf_member_ios_total", "disk");
    assert!(
        member_ios["7.4"] > 0.0,
        "the spare's I/O is counted: {member_ios:?}"
    );
    dashboard_uses_only_exported_metrics(&scraped);
    // Take LUN 1 away again while LUN 0 keeps serving.
    assert!(ctl_fails(&lab, "remove -f 1").contains("offline 1"));
    ctl(&lab, "offline -f 1");
    ctl(&lab, "remove -f 1");
    assert!(!ctl(&lab, "list -l").contains("vmstore"));
    assert!(ctl(&lab, "disks").contains("7.0 "));
    bench_clean(steady, "LUN 0 through every reconfiguration");
    assert!(lab.stop().success());
}

#[test]
fn console_refuses_bad_commands_clearly_and_its_changes_survive_a_restart() {
    let mut lab = Lab::new(1, 1500);
    let cfg = shelf_yaml(&lab, 4, "");
    let cfg = cfg.to_str().unwrap().to_string();
    lab.start(&["serve", "-c", &cfg]);
    for (line, says) in [
        ("make -f 2 raid0 7.0-1", "raid0 is not supported"),
        ("make -f 2 raid1 7.0-2", "exactly 2 disks"),
        ("make -f 2 raid10 7.0 7.9", "does not exist"),
        ("make -f 0 jbod 7.0", "exists already"),
        ("online 42", "no LUN 42"),
        ("offline -f 0 300", "not a valid lun value"),
        ("remove -f 0", "online"),
        ("frobnicate", "unknown command"),
        ("mask +zz", "not a MAC address"),
    ] {
        let text = ctl_fails(&lab, line);
        assert!(text.contains(says), "'{line}' said: {text}");
        assert!(text.starts_with("error: "), "'{line}' said: {text}");
    }
    let json = ctl_fails(&lab, "--json online 42");
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("no LUN 42"), "{v}");
    ctl(&lab, "make -f -c 2 raid1 7.0-1");
    ctl(&lab, "make -f 3 jbod 7.2");
    ctl(&lab, "online 3");
    ctl(&lab, "mask 3 +52:54:00:00:00:99");
    ctl(&lab, "spare 7.3");
    assert!(ctl_fails(&lab, "make -f 4 jbod 7.3").contains("in use (spare)"));
    // Operator input is bounded before anything is allocated.
    assert!(ctl_fails(&lab, "make -f 9 raid10 7.0-4000000000").contains("more disks than a shelf"));
    let exported = ctl(&lab, "export-config");
    assert!(lab.stop().success());
    // The exported YAML is a valid configuration.
    let exported_path = lab.dir.join("exported.yaml");
    std::fs::write(&exported_path, &exported).unwrap();
    let check = Command::new(binary())
        .args(["check", "-c", exported_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success(), "{exported}\n{check:?}");
    // The console's LUN book wins over the YAML at the next start.
    lab.start(&["serve", "-c", &cfg]);
    assert!(!lab.log_lines("replace the YAML's luns").is_empty());
    let list = ctl(&lab, "list -l");
    println!("{list}");
    assert!(
        list.contains("  2 ") && list.contains("raid1 normal"),
        "{list}"
    );
    assert!(list.contains("  3 0.017GB online"), "{list}");
    assert!(
        list.contains("  2 0.0") && list.contains("offline"),
        "{list}"
    );
    assert!(ctl(&lab, "mask 3").contains("525400000099"));
    assert!(ctl(&lab, "spares").contains("7.3"));
    assert!(lab.stop().success());
}

/// Scrapes /metrics inside the shelf namespace and parses it.
fn scrape(lab: &Lab) -> prometheus_parse::Scrape {
    let text = lab.metrics();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("scrape does not parse: {e}\n{text}"))
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

/// Sum of `metric` per value of `label`.
fn by_label(scrape: &prometheus_parse::Scrape, metric: &str, label: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for s in scrape.samples.iter().filter(|s| s.metric == metric) {
        let key = s.labels.get(label).unwrap_or("").to_string();
        *out.entry(key).or_insert(0.0) += value(s);
    }
    out
}

#[test]
fn metrics_show_throughput_per_path_on_two_ports_and_move_under_load() {
    require("curl", "curl");
    let mut lab = Lab::new(2, 9000);
    let cfg = shelf_yaml(&lab, 0, "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let before = scrape(&lab);
    let ifs = lab.gather_host_links();
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "timeout", "60"])
        .arg(aoebench())
        .args(["run", "--target", "7.0", "--if", &ifs, "--rw", "randrw"])
        .args([
            "--bs",
            "16k",
            "--iodepth",
            "8",
            "--runtime",
            "3s",
            "--size",
            "32m",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let after = scrape(&lab);
    let rx0 = by_label(&before, "ethershelf_path_rx_frames_total", "port");
    let rx1 = by_label(&after, "ethershelf_path_rx_frames_total", "port");
    let tx1 = by_label(&after, "ethershelf_path_tx_bytes_total", "port");
    println!("per-path rx frames before {rx0:?} after {rx1:?}; tx bytes {tx1:?}");
    for port in [lab.shelf_if(0), lab.shelf_if(1)] {
        let gained = rx1.get(port).copied().unwrap_or(0.0) - rx0.get(port).copied().unwrap_or(0.0);
        assert!(
            gained > 1000.0,
            "path {port} gained only {gained} frames: {rx1:?}"
        );
        assert!(tx1.get(port).copied().unwrap_or(0.0) > 1e6, "{tx1:?}");
    }
    let reads = by_label(&after, "ethershelf_lun_reads_total", "lun");
    let writes = by_label(&after, "ethershelf_lun_writes_total", "lun");
    assert!(
        reads["7.0"] > 1000.0 && writes["7.0"] > 1000.0,
        "{reads:?} {writes:?}"
    );
    let latency = after
        .samples
        .iter()
        .find(|s| {
            s.metric == "ethershelf_lun_request_duration_seconds"
                && s.labels.get("op") == Some("read")
        })
        .expect("read latency histogram");
    match &latency.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let total = buckets.last().map_or(0.0, |b| b.count);
            assert!(total >= reads["7.0"], "{buckets:?}");
        }
        other => panic!("latency is not a histogram: {other:?}"),
    }
    let cpu = by_label(&after, "ethershelf_worker_cpu", "worker");
    assert!(
        cpu["0"] >= 0.0,
        "the worker's pinned core is exported: {cpu:?}"
    );
    let slots = by_label(&after, "ethershelf_buffer_slots", "worker");
    assert!(slots["0"] > 0.0);
    assert!(lab.stop().success());
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    require("systemd-analyze", "systemd");
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/ethershelf.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "CapabilityBoundingSet=",
        "ReadWritePaths=",
        "ExecReload=",
    ] {
        assert!(text.contains(needed), "the unit lacks {needed}");
    }
    // The package installs the binary where the unit says (deploy/package.sh).
    assert!(text.contains("ExecStart=/usr/sbin/ethershelf serve"));
    // Verify it as installed, with the binary path pointing at this build.
    let dir = std::env::temp_dir().join(format!("es-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let local = dir.join("ethershelf.service");
    std::fs::write(
        &local,
        text.replace("/usr/sbin/ethershelf", binary().to_str().unwrap()),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", local.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A shelf started by hand, killed if the test fails before stopping it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn notifies_ready_pings_the_watchdog_and_reloads_on_sighup() {
    let lab = Lab::new(1, 1500);
    let cfg = shelf_yaml(&lab, 0, "");
    let notify_path = lab.dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Collect every notification as it arrives (a datagram queue is short).
    let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (messages, done) = (messages.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = notify.recv(&mut buf) {
                    let m = String::from_utf8_lossy(&buf[..n]).to_string();
                    messages.lock().unwrap().push(m);
                }
            }
        })
    };
    let count = |needle: &str| {
        messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains(needle))
            .count()
    };
    let log = std::fs::File::create(&lab.log).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.shelf_ns])
        .arg(binary())
        .args(["serve", "-c", cfg.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .env("ETHERSHELF_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let pid = child.0.id() as i32;
    wait_for("READY and three watchdog pings", 15, || {
        count("WATCHDOG=1") >= 3
    });
    let first = messages.lock().unwrap()[0].clone();
    assert!(first.starts_with("READY=1"), "{first}");
    assert!(lab.log_lines("LUN opened").len() == 1 && !lab.log_lines("port up").is_empty());
    // SIGHUP: a LUN appended to the file comes up online without a restart.
    let extra = lab.disk("lun5.img", 8 * MIB);
    let mut yaml = std::fs::read_to_string(&cfg).unwrap();
    yaml += &format!("  - slot: 5\n    file: {}\n", extra.display());
    std::fs::write(&cfg, yaml).unwrap();
    // SAFETY: signalling our own child by PID (`ip netns exec` execs ethershelf).
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_for("the reload", 10, || {
        !lab.log_lines("reload done").is_empty()
    });
    let reloaded = lab.log_lines("reload done");
    assert!(reloaded[0].contains("LUN 5 added"), "{reloaded:?}");
    let o = lab.host_cmd(
        0,
        20,
        &[
            aoebench().to_str().unwrap(),
            "ping",
            "--target",
            "7.5",
            "--if",
            lab.host_if(0),
        ],
    );
    assert!(o.status.success(), "LUN 5 does not answer: {o:?}");
    // An invalid file changes nothing and says why.
    std::fs::write(&cfg, "shelf: [").unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_for("the refusal", 10, || {
        !lab.log_lines("not valid; nothing changed").is_empty()
    });
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{}", lab.log_text());
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    collector.join().unwrap();
    assert_eq!(count("STOPPING=1"), 1, "{:?}", messages.lock().unwrap());
    assert!(count("RELOADING=1") >= 2);
}

#[test]
fn interactive_console_completes_asks_before_destroying_and_keeps_history() {
    require("script", "bsdutils");
    let mut lab = Lab::new(1, 1500);
    let cfg = shelf_yaml(&lab, 1, "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let home = lab.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let console = format!(
        "{} console -s {}",
        binary().display(),
        lab.dir.join("admin.sock").display()
    );
    // `script` gives the console a terminal; keys are typed one line at a time.
    let mut child = Command::new("script")
        .args(["-qec", &console, "/dev/null"])
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    for line in [
        "rel\t\n",
        "make 1 jbod 7.0\n",
        "n\n",
        "make 1 jbod 7.0\n",
        "y\n",
        "list -l\n",
        "quit\n",
    ] {
        std::thread::sleep(Duration::from_millis(400));
        use std::io::Write;
        keys.write_all(line.as_bytes()).unwrap();
    }
    drop(keys);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    println!("{text}");
    assert!(text.contains("ethershelf shelf 7> "), "prompt: {text}");
    assert!(
        text.contains("ethershelf-"),
        "Tab completed 'rel' to 'release': {text}"
    );
    assert!(
        text.contains("Continue? [n]") && text.contains("cancelled"),
        "{text}"
    );
    assert!(text.contains("LUN 1 made: jbod"), "{text}");
    assert!(text.contains("1.0.0 normal"), "{text}");
    let history = std::fs::read_to_string(home.join(".ethershelf_history")).unwrap();
    assert!(
        history.contains("release") && history.contains("list -l"),
        "{history}"
    );
    assert!(lab.stop().success());
}

/// A LUN entry reused after `remove` sends I/O to its new disk only: the registered file
/// table follows the LUN, never a stale descriptor of the removed one.
#[test]
fn a_reused_lun_entry_writes_to_its_new_disk_only() {
    let mut lab = Lab::new(1, 1500);
    let cfg = shelf_yaml(&lab, 3, "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    ctl(&lab, "make -f 1 jbod 7.0");
    ctl(&lab, "online 1");
    bench_clean(bench(&lab, 1, 1, "write"), "LUN 1 on 7.0");
    ctl(&lab, "offline -f 1");
    ctl(&lab, "remove -f 1");
    let old_disk = lab.dir.join("d0.img");
    let before = std::fs::read(&old_disk).unwrap();
    assert!(before.iter().any(|b| *b != 0), "LUN 1 wrote nothing");
    ctl(&lab, "make -f 2 jbod 7.1");
    ctl(&lab, "online 2");
    bench_clean(bench(&lab, 2, 2, "randrw"), "LUN 2 on 7.1");
    assert!(
        std::fs::read(&old_disk).unwrap() == before,
        "the removed LUN's disk changed after its entry was reused"
    );
    let new_disk = std::fs::read(lab.dir.join("d1.img")).unwrap();
    assert!(new_disk.iter().any(|b| *b != 0), "LUN 2's disk got nothing");
    assert!(lab.stop().success());
}

#[test]
fn the_admin_socket_is_root_only_whatever_the_umask() {
    require("setpriv", "util-linux");
    use std::os::unix::fs::PermissionsExt;
    let mut lab = Lab::new(1, 1500);
    let cfg = shelf_yaml(&lab, 0, "");
    // The shelf is started from a process with a lax umask.
    // SAFETY: umask swaps the file-creation mask; restored right after the start.
    let old = unsafe { libc::umask(0) };
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let sock = lab.dir.join("admin.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket was created {mode:o}");
    // Even if its mode is opened up, another user is turned away by its credentials.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary())
        .args(["ctl", "-s", sock.to_str().unwrap(), "list"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !o.status.success() && text.contains("permission denied"),
        "{text}"
    );
    assert!(!lab.log_lines("admin connection refused").is_empty());
    // Root still gets its answers.
    assert!(ctl(&lab, "list").contains("0"));
    assert!(lab.stop().success());
}
