//! `disks: auto`: every disk of the box except the one it boots from, in bus/slot order, named
//! by its stable `/dev/disk/by-path` link, so that one YAML file fits every box of a model
//! (like a shelf's numbered slots).

use std::path::{Path, PathBuf};

/// Where a scan looks (the real system, or a test's fake tree).
pub struct DiskProbe {
    /// `/sys/block`.
    pub sys_block: PathBuf,
    /// `/dev/disk/by-path`.
    pub by_path: PathBuf,
    /// The text of `/proc/self/mountinfo`.
    pub mountinfo: String,
    /// The text of `/proc/swaps`.
    pub swaps: String,
}

impl DiskProbe {
    /// This machine.
    pub fn system() -> DiskProbe {
        DiskProbe {
            sys_block: PathBuf::from("/sys/block"),
            by_path: PathBuf::from("/dev/disk/by-path"),
            mountinfo: std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            swaps: std::fs::read_to_string("/proc/swaps").unwrap_or_default(),
        }
    }
}

/// A disk the scan looked at and why it was or was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Kernel name (`vdb`, `sda`, `nvme0n1`).
    pub name: String,
    /// Its by-path link, if any.
    pub by_path: Option<String>,
    /// `None`: taken; else why not.
    pub skipped: Option<&'static str>,
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Compares by-path names field by field (fields split at `-`, `:` and `.`): fields that
/// are decimal numbers compare as numbers (`ata-2` before `ata-10`), others as text (PCI
/// addresses are fixed-width hex, so `00:05.0` before `00:1f.2`).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let fields = |s: &str| {
        s.split(['-', ':', '.'])
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (x, y) = (fields(a), fields(b));
    for (p, q) in x.iter().zip(&y) {
        let ord = match (p.parse::<u64>(), q.parse::<u64>()) {
            (Ok(m), Ok(n)) if !(p.starts_with('0') || q.starts_with('0')) => m.cmp(&n),
            _ => p.cmp(q),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    x.len().cmp(&y.len())
}

/// Every disk and the decision about it, taken disks first in slot order.
pub fn scan(probe: &DiskProbe) -> Vec<Seen> {
    let mounted: Vec<&str> = probe
        .mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let swaps: Vec<&str> = probe
        .swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // by-path link name for each kernel disk name (whole disks only: no "-partN").
    let mut links: Vec<(String, String)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(&probe.by_path) {
        for e in dir.flatten() {
            let link = e.file_name().to_string_lossy().into_owned();
            if link.contains("-part") {
                continue;
            }
            if let Ok(target) = std::fs::read_link(e.path()) {
                if let Some(name) = target.file_name() {
                    links.push((name.to_string_lossy().into_owned(), link));
                }
            }
        }
    }
    let mut seen = Vec::new();
    let Ok(dir) = std::fs::read_dir(&probe.sys_block) else {
        return seen;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let sys = e.path();
        let by_path = links
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, l)| l.clone())
            .min_by(|a, b| natural_cmp(a, b));
        // The disk and its partitions: their dev numbers and holders.
        let mut parts = vec![sys.clone()];
        if let Ok(d) = std::fs::read_dir(&sys) {
            parts.extend(
                d.flatten()
                    .filter(|p| p.file_name().to_string_lossy().starts_with(name.as_str()))
                    .map(|p| p.path()),
            );
        }
        let in_use = parts.iter().any(|p| {
            let dev = read(&p.join("dev"));
            let pname = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (!dev.is_empty() && mounted.contains(&dev.as_str()))
                || swaps.iter().any(|s| s.ends_with(&format!("/{pname}")))
                || std::fs::read_dir(p.join("holders")).is_ok_and(|mut h| h.next().is_some())
        });
        let skipped = if !sys.join("device").exists() {
            Some("not a physical disk (loop, ram, md, dm, zram...)")
        } else if read(&sys.join("removable")) == "1" {
            Some("removable")
        } else if read(&sys.join("ro")) == "1" {
            Some("read-only")
        } else if read(&sys.join("size")) == "0" {
            Some("no medium (size 0)")
        } else if in_use {
            Some("in use: the boot disk, or mounted, swap or held by md/dm")
        } else if by_path.is_none() {
            Some("no /dev/disk/by-path link")
        } else {
            None
        };
        seen.push(Seen {
            name,
            by_path,
            skipped,
        });
    }
    seen.sort_by(|a, b| {
        a.skipped.is_some().cmp(&b.skipped.is_some()).then_with(|| {
            natural_cmp(
                a.by_path.as_deref().unwrap_or(&a.name),
                b.by_path.as_deref().unwrap_or(&b.name),
            )
        })
    });
    seen
}

/// The disks `disks: auto` means on this box, as stable paths in slot order.
pub fn auto_disks(probe: &DiskProbe) -> Result<Vec<PathBuf>, String> {
    let seen = scan(probe);
    let taken: Vec<PathBuf> = seen
        .iter()
        .filter(|s| s.skipped.is_none())
        .filter_map(|s| s.by_path.as_ref().map(|l| probe.by_path.join(l)))
        .collect();
    if taken.is_empty() {
        let why: Vec<String> = seen
            .iter()
            .map(|s| format!("{}: {}", s.name, s.skipped.unwrap_or("taken")))
            .collect();
        return Err(format!(
            "disks: auto found no disk to use (every disk except the boot disk is taken; seen: {})",
            if why.is_empty() {
                "none".into()
            } else {
                why.join(", ")
            }
        ));
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn disk(root: &Path, name: &str, dev: &str, parts: &[(&str, &str)]) {
        let d = root.join("sys/block").join(name);
        std::fs::create_dir_all(d.join("device")).unwrap();
        std::fs::write(d.join("dev"), dev).unwrap();
        std::fs::write(d.join("size"), "2097152").unwrap();
        std::fs::write(d.join("removable"), "0").unwrap();
        std::fs::write(d.join("ro"), "0").unwrap();
        std::fs::create_dir_all(d.join("holders")).unwrap();
        for (p, pdev) in parts {
            std::fs::create_dir_all(d.join(p).join("holders")).unwrap();
            std::fs::write(d.join(p).join("dev"), pdev).unwrap();
        }
    }

    #[test]
    fn every_disk_but_the_boot_disk_in_slot_order() {
        let root = std::env::temp_dir().join(format!("es-disks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let by_path = root.join("by-path");
        std::fs::create_dir_all(&by_path).unwrap();
        // vda boots (its partition 2 is mounted); vdb..vdd are members; loop0 is no disk.
        disk(
            &root,
            "vda",
            "254:0",
            &[("vda1", "254:1"), ("vda2", "254:2")],
        );
        disk(&root, "vdb", "254:16", &[]);
        disk(&root, "vdc", "254:32", &[]);
        disk(&root, "sdb", "8:16", &[]);
        std::fs::create_dir_all(root.join("sys/block/loop0")).unwrap();
        for (link, name) in [
            ("pci-0000:00:04.0", "vda"),
            ("pci-0000:00:04.0-part1", "vda1"),
            ("pci-0000:00:10.0", "vdc"),
            ("pci-0000:00:05.0", "vdb"),
            ("pci-0000:00:1f.2-ata-10", "sdb"),
        ] {
            symlink(format!("../../{name}"), by_path.join(link)).unwrap();
        }
        let probe = DiskProbe {
            sys_block: root.join("sys/block"),
            by_path: by_path.clone(),
            mountinfo: "25 1 254:2 / / ro,relatime - ext4 /dev/vda2 ro\n".into(),
            swaps: "Filename Type Size Used Priority\n".into(),
        };
        let disks = auto_disks(&probe).unwrap();
        assert_eq!(
            disks,
            vec![
                by_path.join("pci-0000:00:05.0"),
                by_path.join("pci-0000:00:10.0"),
                by_path.join("pci-0000:00:1f.2-ata-10"),
            ]
        );
        let seen = scan(&probe);
        let vda = seen.iter().find(|s| s.name == "vda").unwrap();
        assert!(vda.skipped.unwrap().contains("boot disk"));
        let empty = DiskProbe {
            sys_block: root.join("nothing"),
            ..probe
        };
        assert!(auto_disks(&empty).unwrap_err().contains("found no disk"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn names_sort_with_numbers_as_numbers() {
        let mut v = vec!["ata-10", "ata-2", "ata-1", "ata-1.0"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["ata-1", "ata-1.0", "ata-2", "ata-10"]);
        let mut p = vec![
            "pci-0000:00:1f.2-ata-1",
            "pci-0000:00:05.0",
            "pci-0000:00:0a.0",
        ];
        p.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            p,
            vec![
                "pci-0000:00:05.0",
                "pci-0000:00:0a.0",
                "pci-0000:00:1f.2-ata-1"
            ]
        );
    }
}
