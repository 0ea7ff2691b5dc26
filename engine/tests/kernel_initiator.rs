//! The real Linux AoE initiator (aoe.ko in a qemu VM, `../shared/kernel-initiator/run.sh`)
//! runs fio's verify job against an `ethershelf export` of a file LUN.

mod common;
use std::path::PathBuf;
use std::process::Command;

fn harness() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/kernel-initiator");
    assert!(p.join("run.sh").exists(), "{}/run.sh is missing: the kernel-initiator harness must sit in ../shared beside the project", p.display());
    p
}

fn verify_at(mtu: u32) {
    common::require("qemu-system-x86_64", "qemu-system-x86");
    let h = harness();
    let dir = std::env::temp_dir().join(format!("es-ki-{}-{mtu}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let out = dir.join("out");
    let status = Command::new(h.join("run.sh"))
        .args(["--accel", "tcg", "--mtu", &mtu.to_string(), "--fio-job"])
        .arg(h.join("jobs/verify.fio"))
        .arg("--out")
        .arg(&out)
        .arg("--")
        .arg(common::binary())
        .args(["export", "--state-dir"])
        .arg(dir.join("state"))
        .args(["1", "0", "{IFACE}"])
        .arg(&disk)
        .status()
        .unwrap();
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    println!("{summary}");
    let target_log = std::fs::read_to_string(out.join("target.log")).unwrap_or_default();
    assert!(status.success(), "kernel initiator verify failed at MTU {mtu} ({status}):\n{summary}\n--- target log ---\n{target_log}");
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
fn linux_initiator_verifies_at_mtu_1500() {
    verify_at(1500);
}

#[test]
fn linux_initiator_verifies_at_mtu_9000() {
    verify_at(9000);
}
