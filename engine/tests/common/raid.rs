//! RAID-10 lab helpers: a shelf config over disk files, the console, the log.

use super::{binary, Lab};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;
/// Member data starts after 1 MiB of metadata.
pub const DATA_OFFSET: u64 = MIB;

/// A shelf config with `members` + `spares` disks of `size` bytes and one RAID-10 LUN 0.
pub fn raid_lab(
    lab: &Lab,
    members: usize,
    spares: usize,
    size: u64,
    raid_extra: &str,
) -> (PathBuf, Vec<PathBuf>) {
    raid_lab_with(
        lab,
        members,
        spares,
        size,
        raid_extra,
        "min_rate: 20MiB, max_rate: 400MiB",
    )
}

/// Same, with the `rebuild:` settings given (e.g. `min_rate: 4MiB, max_rate: 4MiB`).
pub fn raid_lab_with(
    lab: &Lab,
    members: usize,
    spares: usize,
    size: u64,
    raid_extra: &str,
    rebuild: &str,
) -> (PathBuf, Vec<PathBuf>) {
    let mut disks = Vec::new();
    for i in 0..members + spares {
        disks.push(lab.disk(&format!("d{i}.img"), size));
    }
    let mut y = format!(
        "shelf: 1\nstate_dir: {}\nadmin: {{ socket: {} }}\nrebuild: {{ {rebuild} }}\nports:\n",
        lab.dir.join("state").display(),
        lab.dir.join("admin.sock").display(),
    );
    for (s, _) in &lab.links {
        y += &format!("  - {{ interface: {s}, mode: packet }}\n");
    }
    y += "disks:\n";
    for d in &disks {
        y += &format!("  - {}\n", d.display());
    }
    let member_list: Vec<String> = (0..members).map(|i| i.to_string()).collect();
    let spare_list: Vec<String> = (members..members + spares).map(|i| i.to_string()).collect();
    y += &format!("spares: [{}]\n", spare_list.join(", "));
    y += &format!(
        "luns:\n  - slot: 0\n    raid10: {{ disks: [{}], chunk: 64KiB{raid_extra} }}\n",
        member_list.join(", ")
    );
    let p = lab.dir.join("shelf.yaml");
    std::fs::write(&p, y).unwrap();
    (p, disks)
}

pub fn ctl(lab: &Lab, cmd: &str) -> String {
    let o = Command::new(binary())
        .args(["ctl", "-s", lab.dir.join("admin.sock").to_str().unwrap()])
        .args(cmd.split_whitespace())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "ctl {cmd} failed: {text}");
    text
}

pub fn wait_log(lab: &Lab, needle: &str, count: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while lab.log_lines(needle).len() < count {
        assert!(
            Instant::now() < deadline,
            "'{needle}' did not appear {count} time(s) in {secs} s:\n{}",
            lab.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn lun_state(lab: &Lab) -> String {
    let show = ctl(lab, "status");
    show.lines()
        .find(|l| l.starts_with("1.0 "))
        .unwrap_or_else(|| panic!("no LUN line in:\n{show}"))
        .to_string()
}

/// The data areas of two members hold the same bytes (copies of the same chunks).
pub fn assert_same_data(a: &Path, b: &Path) {
    let (fa, fb) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let n = fa.len().min(fb.len());
    let start = DATA_OFFSET as usize;
    if fa[start..n] != fb[start..n] {
        let first = (start..n).find(|i| fa[*i] != fb[*i]).unwrap();
        panic!(
            "{} and {} differ at byte {first} (member sector {})",
            a.display(),
            b.display(),
            (first - start) / 512
        );
    }
}
