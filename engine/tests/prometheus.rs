//! A real Prometheus (Debian's) scrapes two shelves (two processes, two ports each, metrics
//! on a management link of their own) while hosts run multipath load: the per-path rates it
//! computes are non-zero on every port of both shelves and add up to what the load
//! generator measured. The shipped rules load and evaluate in it.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const LOAD_SECS: u32 = 12;

/// The management namespace: Prometheus runs there, one veth to each shelf namespace.
struct Mgmt {
    ns: String,
}

impl Drop for Mgmt {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A shelf with two ports to one host namespace and its metrics on 10.77.N.2:9478.
fn shelf(n: u16, mgmt: &Mgmt) -> (Lab, String) {
    let mut lab = Lab::new(2, 1500);
    let ifs = lab.gather_host_links();
    let lun = lab.disk("lun0", 64 * MIB);
    let cfg = lab.config(n, &[(0, &lun)], "");
    let (m, s) = (format!("em{}", lab.id), format!("en{}", lab.id));
    run(&["ip", "link", "add", &m, "type", "veth", "peer", "name", &s]);
    run(&["ip", "link", "set", &m, "netns", &mgmt.ns]);
    run(&["ip", "link", "set", &s, "netns", &lab.shelf_ns]);
    run(&[
        "ip",
        "-n",
        &mgmt.ns,
        "addr",
        "add",
        &format!("10.77.{n}.1/24"),
        "dev",
        &m,
    ]);
    run(&["ip", "-n", &mgmt.ns, "link", "set", &m, "up"]);
    run(&[
        "ip",
        "-n",
        &lab.shelf_ns,
        "addr",
        "add",
        &format!("10.77.{n}.2/24"),
        "dev",
        &s,
    ]);
    run(&["ip", "-n", &lab.shelf_ns, "link", "set", &s, "up"]);
    let mut yaml = std::fs::read_to_string(&cfg).unwrap();
    yaml += &format!("metrics: {{ listen: \"10.77.{n}.2:9478\" }}\n");
    std::fs::write(&cfg, yaml).unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    (lab, ifs)
}

fn rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/ethershelf-rules.yml")
}

/// Prometheus, ended when dropped (also when the test fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn start_prometheus(mgmt: &Mgmt, dir: &Path) -> Running {
    require("prometheus", "prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n\
             \x20 - job_name: ethershelf\n\
             \x20   static_configs:\n\
             \x20     - targets: [\"10.77.1.2:9478\"]\n\
             \x20       labels: {{ shelf_name: shelf1 }}\n\
             \x20     - targets: [\"10.77.2.2:9478\"]\n\
             \x20       labels: {{ shelf_name: shelf2 }}\n",
            rules_file().display()
        ),
    )
    .unwrap();
    Command::new("ip")
        .args(["netns", "exec", &mgmt.ns, "timeout", "300", "prometheus"])
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .map(Running)
        .expect("prometheus")
}

/// An instant query; returns (labels, value) per series, or `Err` with what came back.
fn try_query(mgmt: &Mgmt, promql: &str) -> Result<Vec<(serde_json::Value, f64)>, String> {
    require("curl", "curl");
    let o = Command::new("ip")
        .args(["netns", "exec", &mgmt.ns, "curl", "-sf", "--max-time", "5"])
        .args(["--data-urlencode", &format!("query={promql}")])
        .arg("http://127.0.0.1:9090/api/v1/query")
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| {
        format!(
            "query {promql}: {e}: {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })?;
    if doc["status"] != "success" {
        return Err(format!("{promql}: {doc}"));
    }
    Ok(doc["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let v: f64 = r["value"][1].as_str()?.parse().ok()?;
            Some((r["metric"].clone(), v))
        })
        .collect())
}

fn query(mgmt: &Mgmt, promql: &str) -> Vec<(serde_json::Value, f64)> {
    try_query(mgmt, promql).unwrap_or_else(|e| panic!("{e}"))
}

fn load(lab: &Lab, ifs: &str, target: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "timeout", "90"])
        .arg(aoebench())
        .args(["run", "--target", target, "--if", ifs, "--rw", "randrw"])
        .args(["--bs", "16k", "--iodepth", "8", "--size", "32m"])
        .args([
            "--runtime",
            &format!("{LOAD_SECS}s"),
            "--output-format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: Child) -> serde_json::Value {
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    doc["jobs"][0].clone()
}

#[test]
fn prometheus_sees_every_path_of_two_shelves_and_the_rates_add_up() {
    let mgmt = Mgmt {
        ns: format!("es{}m", std::process::id()),
    };
    run(&["ip", "netns", "add", &mgmt.ns]);
    run(&["ip", "-n", &mgmt.ns, "link", "set", "lo", "up"]);
    let (mut one, ifs1) = shelf(1, &mgmt);
    let (mut two, ifs2) = shelf(2, &mgmt);
    let prometheus = start_prometheus(&mgmt, &one.dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ups = try_query(&mgmt, "up{job=\"ethershelf\"} == 1");
        if matches!(&ups, Ok(u) if u.len() == 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus does not see both shelves up: {ups:?}\n{}",
            std::fs::read_to_string(one.dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Totals as Prometheus has them before the load (after two more scrapes).
    std::thread::sleep(Duration::from_secs(2));
    let totals = |shelf: &str| {
        let frames = query(
            &mgmt,
            &format!("sum(ethershelf_path_rx_frames_total{{shelf_name=\"{shelf}\"}})"),
        );
        let bytes = query(
            &mgmt,
            &format!(
                "sum(ethershelf_lun_read_bytes_total{{shelf_name=\"{shelf}\"}}) \
                 + sum(ethershelf_lun_written_bytes_total{{shelf_name=\"{shelf}\"}})"
            ),
        );
        (frames[0].1, bytes[0].1)
    };
    let before = [totals("shelf1"), totals("shelf2")];
    let (a, b) = (load(&one, &ifs1, "1.0"), load(&two, &ifs2, "2.0"));
    std::thread::sleep(Duration::from_secs(LOAD_SECS as u64 * 2 / 3));
    // During the load: every port of both shelves carries traffic.
    let live = query(
        &mgmt,
        "sum by (shelf_name, port) (rate(ethershelf_path_rx_frames_total[4s]))",
    );
    println!("live per-path rx frame rates: {live:?}");
    assert_eq!(live.len(), 4, "expected 2 ports x 2 shelves: {live:?}");
    for (labels, v) in &live {
        assert!(
            *v > 10.0,
            "path {labels} idle during the load ({v} frames/s)"
        );
    }
    let (ja, jb) = (finished(a), finished(b));
    // Two more scrapes, then compare what Prometheus counted during the run with what the
    // load generator counted.
    std::thread::sleep(Duration::from_secs(3));
    for (i, (shelf, job)) in [("shelf1", &ja), ("shelf2", &jb)].into_iter().enumerate() {
        let sent: u64 = job["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["frames"].as_u64().unwrap())
            .sum();
        let moved =
            job["read"]["bytes"].as_u64().unwrap() + job["write"]["bytes"].as_u64().unwrap();
        let after = totals(shelf);
        let (frames, bytes) = (after.0 - before[i].0, after.1 - before[i].1);
        // A request the initiator sent again (its reply was late) is served again: the
        // shelf moves its data twice. The generator counts such frames in its per-path
        // totals, and its retransmits separately.
        let retransmits = job["retransmits"].as_u64().unwrap_or(0);
        let frame_bytes = job["frame_sectors"].as_u64().unwrap_or(2) * 512;
        let moved_at_most = moved + retransmits * frame_bytes;
        println!(
            "{shelf}: load generator sent {sent} frames ({retransmits} again) and moved {moved} bytes; Prometheus: {frames:.0} frames ({:.3}x), {bytes:.0} bytes ({:.3}x, {:.3}x with resent requests)",
            frames / sent as f64,
            bytes / moved as f64,
            bytes / moved_at_most as f64,
        );
        assert!(sent > 1000 && moved > 0, "{job}");
        assert!(
            (frames / sent as f64 - 1.0).abs() < 0.10,
            "{shelf}: frames {frames} vs {sent}"
        );
        assert!(
            bytes > moved as f64 * 0.9 && bytes < moved_at_most as f64 * 1.1,
            "{shelf}: bytes {bytes} vs {moved} (at most {moved_at_most} with resent requests)"
        );
    }
    // The shipped recording rules evaluate against the real series.
    let recorded = query(&mgmt, "shelf:ethershelf_path_rx_frames:rate5m");
    assert_eq!(recorded.len(), 2, "recording rule per shelf: {recorded:?}");
    assert!(recorded.iter().all(|(_, v)| *v > 0.0), "{recorded:?}");
    drop(prometheus);
    one.stop();
    two.stop();
}
