//! The real Linux AoE initiator (aoe.ko in a qemu VM, the project's `deploy/vm/initiator.sh`)
//! runs fio's verify job against an `ethershelf export` of a file LUN over AF_XDP at MTU 1500
//! and 9000, and against a RAID-10 LUN with a failing member. (The packet-mode runs at both
//! MTUs are the clean baselines of tests/cluster.rs.)

mod common;
use std::path::PathBuf;
use std::process::Command;

fn harness() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/vm");
    assert!(
        p.join("initiator.sh").exists(),
        "{}/initiator.sh is missing: the VM harness lives in deploy/vm",
        p.display()
    );
    p
}

/// `job` is a file of deploy/vm/jobs (a quarter of the full verify job: the emulated guest is
/// slow; the paths differ, not the data).
fn verify_at(mtu: u32, mode: &str, job: &str) {
    common::require("qemu-system-x86_64", "qemu-system-x86");
    let h = harness();
    let dir = std::env::temp_dir().join(format!("es-ki-{}-{mtu}-{mode}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let out = dir.join("out");
    let status = Command::new(h.join("initiator.sh"))
        .args(["--accel", "tcg", "--mtu", &mtu.to_string(), "--fio-job"])
        .arg(h.join("jobs").join(job))
        .arg("--out")
        .arg(&out)
        .arg("--")
        .arg(common::binary())
        .args(["export", "--mode", mode, "--state-dir"])
        .arg(dir.join("state"))
        .args(["1", "0", "{IFACE}"])
        .arg(&disk)
        .status()
        .unwrap();
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    println!("{summary}");
    let target_log = std::fs::read_to_string(out.join("target.log")).unwrap_or_default();
    assert!(
        target_log.contains(&format!("mode=\"{mode}\"")),
        "the target did not run in {mode} mode:\n{target_log}"
    );
    assert!(status.success(), "kernel initiator verify failed at MTU {mtu} in {mode} mode ({status}):\n{summary}\n--- target log ---\n{target_log}");
    let payload = if mtu >= 9000 {
        "payload=8704"
    } else {
        "payload=1024"
    };
    assert!(
        summary.contains(payload),
        "expected {payload} at MTU {mtu}:\n{summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn linux_initiator_verifies_at_mtu_1500_xdp() {
    verify_at(1500, "xdp", "verify-small.fio");
}

#[test]
fn linux_initiator_verifies_at_mtu_9000_xdp() {
    verify_at(9000, "xdp", "verify-small.fio");
}

/// Runs the verify job against `ethershelf serve -c cfg` on the harness's interface.
fn verify_config(cfg: &std::path::Path, out: &std::path::Path) -> (bool, String, String) {
    let h = harness();
    let status = Command::new(h.join("initiator.sh"))
        .args(["--accel", "tcg", "--mtu", "9000", "--fio-job"])
        .arg(h.join("jobs/verify.fio"))
        .arg("--out")
        .arg(out)
        .arg("--")
        .arg(common::binary())
        .args(["serve", "-c"])
        .arg(cfg)
        .args(["--interface", "{IFACE}"])
        .status()
        .unwrap();
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    let log = std::fs::read_to_string(out.join("target.log")).unwrap_or_default();
    (status.success(), summary, log)
}

#[test]
fn linux_initiator_verifies_through_a_failing_raid10_member_and_after_the_rebuild() {
    common::require("qemu-system-x86_64", "qemu-system-x86");
    let dir = std::env::temp_dir().join(format!("es-ki-raid-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let backing = dir.join("fuse-backing");
    std::fs::create_dir_all(&backing).unwrap();
    let mut disks = Vec::new();
    for i in 0..5 {
        let p = if i == 2 {
            backing.join("d2.img")
        } else {
            dir.join(format!("d{i}.img"))
        };
        std::fs::File::create(&p)
            .unwrap()
            .set_len(96 << 20)
            .unwrap();
        disks.push(p);
    }
    // Member 2 sits on the fault filesystem: it will return EIO from the kernel.
    let fuse = common::FaultFs::mount(&backing, &dir.join("fuse"));
    disks[2] = fuse.mount.join("d2.img");
    let sock = dir.join("admin.sock");
    let mut y = format!(
        "shelf: 1\nstate_dir: {}\nadmin: {{ socket: {} }}\nports: [{{ interface: placeholder }}]\ndisks:\n",
        dir.join("state").display(),
        sock.display()
    );
    for d in &disks {
        y += &format!("  - {}\n", d.display());
    }
    y += "spares: [4]\nluns:\n  - slot: 0\n    raid10: { disks: [0, 1, 2, 3], chunk: 64KiB, clean: true }\n";
    let cfg = dir.join("shelf.yaml");
    std::fs::write(&cfg, y).unwrap();

    // Fail member 2 once the initiator has written through it for a while.
    let marker = backing.join("d2.img.fail");
    let trigger = {
        let (sock, marker) = (sock.clone(), marker.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(400);
            while std::time::Instant::now() < deadline {
                let out = Command::new(common::binary())
                    .args(["ctl", "-s", sock.to_str().unwrap(), "status"])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                let ios = text
                    .lines()
                    .find(|l| l.trim_start().starts_with("0.0.2"))
                    .and_then(|l| {
                        l.split_whitespace()
                            .skip_while(|w| *w != "ios")
                            .nth(1)
                            .map(str::to_string)
                    })
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                if ios >= 300 {
                    std::fs::write(&marker, b"").unwrap();
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            false
        })
    };
    let (ok, summary, log) = verify_config(&cfg, &dir.join("out1"));
    println!("{summary}");
    assert!(
        trigger.join().unwrap(),
        "member 2 never carried I/O:\n{log}"
    );
    assert!(
        ok,
        "fio failed or saw an error while member 2 failed:\n{summary}\n--- target log ---\n{log}"
    );
    assert!(
        log.contains("member failed"),
        "member 2 was not failed:\n{log}"
    );
    for l in log
        .lines()
        .filter(|l| l.contains("member failed") || l.contains("rebuild finished"))
    {
        println!("{l}");
    }

    // Second verify on the array the spare completed (the rebuild resumes if it was cut short).
    let (ok, summary2, log2) = verify_config(&cfg, &dir.join("out2"));
    println!("{summary2}");
    assert!(
        ok,
        "second verify failed:\n{summary2}\n--- target log ---\n{log2}"
    );
    assert!(
        format!("{log}{log2}").contains("rebuild finished"),
        "the spare was not rebuilt:\n{log}\n{log2}"
    );
    let last_state = log2
        .lines()
        .rfind(|l| l.contains("array metadata updated"))
        .unwrap_or_default()
        .to_string();
    assert!(
        last_state.contains("state=normal"),
        "not normal at the end: {last_state}\n{log2}"
    );
    drop(fuse);
    // Role 2 is on disk 4 now: it mirrors role 3.
    let (a, b) = (
        std::fs::read(dir.join("d3.img")).unwrap(),
        std::fs::read(dir.join("d4.img")).unwrap(),
    );
    assert!(
        a[1 << 20..] == b[1 << 20..],
        "the rebuilt copy differs from its mirror"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
