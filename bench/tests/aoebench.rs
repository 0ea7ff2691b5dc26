//! aoebench against ethershelf and vblade in lab namespaces: discovery, identify, read/write
//! with verify, retransmission after injected drops, two paths both used, JSON schema.

#[path = "../../engine/tests/common/mod.rs"]
mod common;
use common::*;
use serde_json::Value;
use std::process::Command;

fn bench(lab: &Lab, h: usize, args: &[&str]) -> (bool, String) {
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[h], "timeout", "120"])
        .arg(aoebench())
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn json_run(lab: &Lab, ifs: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "run",
        "--target",
        "1.0",
        "--if",
        ifs,
        "--output-format",
        "json",
    ];
    args.extend_from_slice(extra);
    let (ok, out) = bench(lab, 0, &args);
    assert!(ok, "aoebench failed: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The documented JSON fields are present with the documented types.
fn check_schema(doc: &Value) {
    assert_eq!(doc["schema"], 1);
    let job = &doc["jobs"][0];
    for k in ["name", "target", "rw"] {
        assert!(job[k].is_string(), "{k}: {job}");
    }
    for k in [
        "bs",
        "iodepth",
        "numjobs",
        "window",
        "frame_sectors",
        "retransmits",
        "late_replies",
        "errors",
        "verified_blocks",
    ] {
        assert!(job[k].is_u64(), "{k}: {job}");
    }
    assert!(job["seconds"].is_f64());
    for d in ["read", "write"] {
        for k in ["ios", "bytes"] {
            assert!(job[d][k].is_u64(), "{d}.{k}");
        }
        for k in ["iops", "mib_per_s"] {
            assert!(job[d][k].is_number(), "{d}.{k}");
        }
        for k in [
            "min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
        ] {
            assert!(job[d]["latency"][k].is_number(), "{d}.latency.{k}");
        }
    }
    assert!(job["verify_failures"].is_array() && job["paths"].is_array());
    for p in job["paths"].as_array().unwrap() {
        assert!(
            p["interface"].is_string()
                && p["target_mac"].is_string()
                && p["frames"].is_u64()
                && p["share"].is_number()
        );
    }
}

#[test]
fn against_ethershelf_two_paths_verify_and_retransmit() {
    let mut lab = Lab::new(2, 9000);
    let disk = lab.disk("lun.img", 256 << 20);
    let cfg = lab.config(1, &[(0, &disk)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let ifs = lab.gather_host_links();

    let (ok, out) = bench(&lab, 0, &["ping", "--target", "1.0", "--if", &ifs]);
    assert!(
        ok && out.contains("model \"ethershelf\"")
            && out.contains("SMART status: healthy")
            && out.contains("17 sectors per frame"),
        "{out}"
    );
    assert_eq!(out.matches("->").count(), 2, "both paths discovered: {out}");

    let doc = json_run(
        &lab,
        &ifs,
        &[
            "--rw",
            "randrw",
            "--bs",
            "16k",
            "--iodepth",
            "16",
            "--runtime",
            "2s",
            "--size",
            "32m",
            "--verify",
            "crc32c",
            "--drop-every",
            "500",
        ],
    );
    check_schema(&doc);
    let job = &doc["jobs"][0];
    assert_eq!(job["errors"], 0);
    assert_eq!(job["verify_failures"].as_array().unwrap().len(), 0);
    assert!(job["verified_blocks"].as_u64().unwrap() > 100, "{job}");
    assert!(
        job["retransmits"].as_u64().unwrap() > 0,
        "injected drops must be retransmitted: {job}"
    );
    assert!(job["read"]["ios"].as_u64().unwrap() > 0 && job["write"]["ios"].as_u64().unwrap() > 0);
    let paths = job["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2);
    for p in paths {
        assert!(
            p["share"].as_f64().unwrap() > 0.3,
            "round robin uses both paths: {job}"
        );
    }

    // Sequential write then read back in a second job file, LBA-checked by verify.
    let jobs = lab.dir.join("jobs.yaml");
    std::fs::write(&jobs, "jobs:\n  - { name: seqwrite, rw: write, bs: 64k, iodepth: 8, runtime: 1, size: 16m, verify: crc32c }\n  - { name: seqread, rw: read, bs: 64k, iodepth: 8, runtime: 1, size: 16m }\n").unwrap();
    let (ok, out) = bench(
        &lab,
        0,
        &[
            "run",
            jobs.to_str().unwrap(),
            "--target",
            "1.0",
            "--if",
            &ifs,
        ],
    );
    assert!(
        ok && out.contains("seqwrite:")
            && out.contains("seqread:")
            && out.contains("verify_failures=0"),
        "{out}"
    );

    // cfg like aoecfg.
    let (ok, out) = bench(
        &lab,
        0,
        &[
            "cfg",
            "--if",
            lab.host_if(0),
            "--target",
            "1.0",
            "--command",
            "set",
            "--string",
            "bench",
        ],
    );
    assert!(ok && out.trim() == "1.0\tbench", "{out}");
    let (ok, out) = bench(
        &lab,
        0,
        &[
            "cfg",
            "--if",
            lab.host_if(0),
            "--target",
            "1.0",
            "--command",
            "set",
            "--string",
            "other",
        ],
    );
    assert!(!ok && out.contains("error 4"), "{out}");
    lab.stop();
}

#[test]
fn against_vblade_and_null_target() {
    require("vblade", "vblade");
    let lab = Lab::new(1, 9000);
    let disk = lab.disk("lun.img", 64 << 20);
    let mut vblade = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.shelf_ns,
            "vblade",
            "1",
            "0",
            lab.shelf_if(0),
        ])
        .arg(&disk)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let doc = json_run(
        &lab,
        lab.host_if(0),
        &[
            "--rw",
            "randread",
            "--bs",
            "4k",
            "--iodepth",
            "32",
            "--runtime",
            "2s",
            "--size",
            "16m",
            "--verify",
            "crc32c",
        ],
    );
    let job = &doc["jobs"][0];
    assert_eq!(job["errors"], 0);
    assert_eq!(job["window"], 16, "vblade advertises a buffer count of 16");
    assert!(
        job["verified_blocks"].as_u64().unwrap() > 1000
            && job["verify_failures"].as_array().unwrap().is_empty(),
        "{job}"
    );
    unsafe { libc::kill(vblade.id() as i32, libc::SIGTERM) };
    let _ = vblade.wait();

    let mut null = Command::new("ip")
        .args(["netns", "exec", &lab.shelf_ns])
        .arg(aoebench())
        .args(["null-target", "--if", lab.shelf_if(0), "--duration", "20s"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let doc = json_run(
        &lab,
        lab.host_if(0),
        &[
            "--rw",
            "randread",
            "--bs",
            "64k",
            "--iodepth",
            "8",
            "--runtime",
            "1s",
        ],
    );
    let job = &doc["jobs"][0];
    assert_eq!(job["errors"], 0);
    assert!(job["read"]["ios"].as_u64().unwrap() > 100, "{job}");
    let _ = null.kill();
    let _ = null.wait();
}

#[test]
fn nbd_bridge_passes_fio_verify() {
    require("fio", "fio");
    let mut lab = Lab::new(1, 9000);
    let disk = lab.disk("lun.img", 128 << 20);
    let cfg = lab.config(1, &[(0, &disk)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let sock = lab.dir.join("nbd.sock");
    let log = lab.dir.join("nbd.log");
    let mut bridge = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "timeout", "120"])
        .arg(aoebench())
        .args([
            "nbd",
            "--target",
            "1.0",
            "--if",
            lab.host_if(0),
            "--socket",
            sock.to_str().unwrap(),
            "--duration",
            "90s",
        ])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("nbd: serving")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "bridge did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let uri = format!("nbd+unix:///?socket={}", sock.display());
    for (rw, bs) in [("randwrite", "4k"), ("write", "128k")] {
        let o = Command::new("timeout")
            .args([
                "100",
                "fio",
                "--name=verify",
                "--ioengine=nbd",
                &format!("--uri={uri}"),
                &format!("--rw={rw}"),
                &format!("--bs={bs}"),
                "--size=24m",
                "--iodepth=8",
                "--verify=crc32c",
                "--verify_fatal=1",
            ])
            .output()
            .unwrap();
        let out =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && out.contains("err= 0"),
            "fio {rw} verify through the NBD bridge failed:\n{out}"
        );
    }
    let _ = bridge.kill();
    let _ = bridge.wait();
    lab.stop();
}
