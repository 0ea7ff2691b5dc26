//! RAID-10 LUNs in lab namespaces: service through a failing member and a spare rebuild,
//! crash resync of dirty regions only, a stale member rebuilt rather than trusted, initial
//! sync, SMART health while degraded, scrub, and the admin commands that drive them.

mod common;
use common::raid::*;
use common::raw::ata_regs;
use common::*;
use ethershelf::wire::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const READ_EXT: u8 = 0x24;
const WRITE_EXT: u8 = 0x34;

/// Runs `ethershelf serve -c cfg` expecting a refusal; returns its stderr.
fn serve_fails(lab: &Lab, cfg: &Path) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.shelf_ns])
        .arg(binary())
        .args(["serve", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the shelf should have refused to start"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn smart_status(lab: &Lab, tag: u32) -> (u8, u8) {
    let ini = lab.raw(0);
    let mut f = ini.ata(None, 1, 0, tag, 0xB0, false, 0xC2_4F00, 0, &[]);
    f[AOE_HEADER_LEN + 1] = 0xDA;
    ini.send(&f);
    let r = ini
        .recv_tag(tag, Duration::from_secs(5))
        .expect("SMART reply");
    (r[AOE_HEADER_LEN + 5], r[AOE_HEADER_LEN + 6])
}

fn aoebench_verify(lab: &Lab, secs: &str, size: &str) -> std::thread::JoinHandle<(bool, String)> {
    let ns = lab.hosts[0].clone();
    let ifs = lab.host_if(0).to_string();
    let (secs, size) = (secs.to_string(), size.to_string());
    std::thread::spawn(move || {
        let o = Command::new("ip")
            .args(["netns", "exec", &ns, "timeout", "180"])
            .arg(aoebench())
            .args([
                "run",
                "--target",
                "1.0",
                "--if",
                &ifs,
                "--rw",
                "randrw",
                "--bs",
                "16k",
                "--iodepth",
                "16",
                "--runtime",
                &secs,
                "--size",
                &size,
                "--verify",
                "crc32c",
            ])
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
    })
}

#[test]
fn a_failing_member_is_invisible_to_clients_and_a_spare_rebuilds_it() {
    let mut lab = Lab::new(1, 9000);
    let (cfg, disks) = raid_lab(&lab, 4, 1, 48 * MIB, ", clean: true");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    assert!(
        lun_state(&lab).contains("normal"),
        "{}",
        ctl(&lab, "status")
    );
    assert_eq!(
        smart_status(&lab, 1),
        (0x4F, 0xC2),
        "healthy before the failure"
    );
    let bench = aoebench_verify(&lab, "6", "64m");
    std::thread::sleep(Duration::from_secs(3));
    ctl(&lab, "inject 0.1 all");
    let (ok, out) = bench.join().unwrap();
    assert!(
        ok,
        "aoebench saw errors or verify failures through the member failure:\n{out}\n{}",
        lab.log_text()
    );
    wait_log(&lab, "member failed", 1, 10);
    wait_log(&lab, "rebuild finished", 1, 60);
    let show = ctl(&lab, "status");
    println!("{show}");
    for l in lab
        .log_lines("member failed")
        .iter()
        .chain(&lab.log_lines("rebuild finished"))
    {
        println!("{l}");
    }
    assert!(
        lun_state(&lab).contains("normal"),
        "after the rebuild:\n{show}"
    );
    assert!(
        show.contains("disk 1.4"),
        "the spare (disk 4) took role 1:\n{show}"
    );
    assert!(
        ctl(&lab, "spares").contains("failed"),
        "the failed disk is listed"
    );
    assert_eq!(
        smart_status(&lab, 2),
        (0x4F, 0xC2),
        "healthy after the rebuild"
    );
    // A second verified run on the rebuilt array.
    let (ok, out) = aoebench_verify(&lab, "2", "64m").join().unwrap();
    assert!(ok, "second verify failed:\n{out}");
    assert!(lab.stop().success());
    // Near-2 over 4 members: roles (0,1) and (2,3) mirror each other; role 1 is disk 4 now.
    assert_same_data(&disks[0], &disks[4]);
    assert_same_data(&disks[2], &disks[3]);
}

#[test]
fn a_member_failing_with_kernel_eio_is_failed_and_rebuilt_onto_a_spare() {
    let mut lab = Lab::new(1, 9000);
    let (cfg, disks) = raid_lab(&lab, 4, 1, 24 * MIB, ", clean: true");
    // Member 2 lives on the fault filesystem.
    let backing = lab.dir.join("fuse-backing");
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::rename(&disks[2], backing.join("d2.img")).unwrap();
    let fuse = FaultFs::mount(&backing, &lab.dir.join("fuse"));
    let on_fuse = fuse.mount.join("d2.img");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            &disks[2].display().to_string(),
            &on_fuse.display().to_string(),
        ),
    )
    .unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let bench = aoebench_verify(&lab, "5", "32m");
    std::thread::sleep(Duration::from_secs(2));
    // From now on the kernel answers EIO for every I/O on member 2.
    std::fs::write(backing.join("d2.img.fail"), b"").unwrap();
    let (ok, out) = bench.join().unwrap();
    assert!(
        ok,
        "aoebench saw errors through a member returning EIO:\n{out}\n{}",
        lab.log_text()
    );
    wait_log(&lab, "member failed", 1, 10);
    let failed = lab.log_lines("member failed");
    assert!(failed[0].contains("role=2"), "{}", failed[0]);
    // The EIO shows on a data I/O (result=-5) or on a metadata write (os error 5),
    // whichever reaches the failing member first.
    let mut eio = lab.log_lines("result=-5");
    eio.extend(lab.log_lines("os error 5"));
    assert!(
        !eio.is_empty(),
        "the kernel's EIO reached the engine:\n{}",
        lab.log_text()
    );
    println!("{}\n{}", failed[0], eio[0]);
    wait_log(&lab, "rebuild finished", 1, 60);
    assert!(
        lun_state(&lab).contains("normal"),
        "{}",
        ctl(&lab, "status")
    );
    assert!(lab.stop().success());
    drop(fuse);
    assert_same_data(&disks[3], &disks[4]);
}

#[test]
fn sigkill_resyncs_only_dirty_regions_and_keeps_acknowledged_writes() {
    let mut lab = Lab::new(1, 9000);
    let (cfg, disks) = raid_lab(&lab, 4, 0, 40 * MIB, ", clean: true");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    // A write-heavy load on [16 MiB, 20 MiB) runs while the checked writes are made and when
    // the shelf is killed (its own outcome does not matter: it loses its target).
    let mut load = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "timeout", "20"])
        .arg(aoebench())
        .args([
            "run",
            "--target",
            "1.0",
            "--if",
            lab.host_if(0),
            "--rw",
            "randwrite",
            "--bs",
            "8k",
            "--iodepth",
            "32",
            "--runtime",
            "10",
            "--offset",
            "16m",
            "--size",
            "4m",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let ini = lab.raw(0);
    let mut written = Vec::new();
    // 64 writes of 8.5 KiB inside the first MiB (one bitmap region), crossing chunks.
    for i in 0..64u32 {
        let data = pattern(500 + i as u64, 17 * 512);
        let lba = i as u64 * 31;
        let r = ini.ata_io(1, 0, 0x100 + i, WRITE_EXT, true, lba, 17, &data);
        assert_eq!(ata_regs(&r), (0x40, 0), "write {i}");
        written.push((lba, data));
    }
    assert!(load.try_wait().unwrap().is_none(), "the load still runs");
    lab.stop_with(libc::SIGKILL);
    let _ = load.kill();
    let _ = load.wait();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let opened = lab.log_lines("RAID-10 LUN opened");
    let last = opened.last().unwrap();
    println!("{last}");
    assert!(last.contains("was_dirty=true"), "{last}");
    // Region 0 (the checked writes) and the 4 regions of the load, out of 78.
    let dirty: usize = last
        .split("dirty_regions=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(
        (2..=5).contains(&dirty),
        "only the written regions resync: {last}"
    );
    wait_log(&lab, "resync finished", 1, 30);
    let ini = lab.raw(0);
    for (i, (lba, data)) in written.iter().enumerate() {
        let r = ini.ata_io(1, 0, 0x400 + i as u32, READ_EXT, true, *lba, 17, &[]);
        assert_eq!(ata_regs(&r), (0x40, 0));
        assert!(
            r[ATA_DATA_OFFSET..ATA_DATA_OFFSET + data.len()] == data[..],
            "acknowledged write at LBA {lba} lost after SIGKILL"
        );
    }
    assert!(lab.stop().success());
    assert_same_data(&disks[0], &disks[1]);
    assert_same_data(&disks[2], &disks[3]);
}

#[test]
fn a_new_array_syncs_and_a_stale_member_is_rebuilt_not_trusted() {
    let mut lab = Lab::new(1, 1500);
    let (cfg, disks) = raid_lab(&lab, 4, 0, 24 * MIB, ", degraded_start: true");
    // Make the members differ so that the initial sync has something to do.
    for (i, d) in disks.iter().enumerate() {
        let f = std::fs::OpenOptions::new().write(true).open(d).unwrap();
        f.write_all_at(&pattern(i as u64, 4 * MIB as usize), DATA_OFFSET)
            .unwrap();
    }
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    wait_log(&lab, "initial sync finished", 1, 60);
    assert!(lun_state(&lab).contains("normal"));
    let ini = lab.raw(0);
    let old = pattern(7, 1024);
    let r = ini.ata_io(1, 0, 1, WRITE_EXT, true, 256, 2, &old);
    assert_eq!(ata_regs(&r), (0x40, 0));
    assert!(lab.stop().success());
    assert_same_data(&disks[0], &disks[1]);
    assert_same_data(&disks[2], &disks[3]);

    // Take role 2 away, write while it is gone.
    let away = lab.dir.join("d2.away");
    std::fs::rename(&disks[2], &away).unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let state = lun_state(&lab);
    assert!(state.contains("degraded"), "{state}");
    assert_eq!(
        smart_status(&lab, 2),
        (0xF4, 0x2C),
        "threshold exceeded while degraded"
    );
    let ini = lab.raw(0);
    // Chunk 1 (sectors 128..255) lives on roles 2 and 3.
    let new = pattern(8, 8 * 1024);
    for i in 0..4u32 {
        let r = ini.ata_io(
            1,
            0,
            10 + i,
            WRITE_EXT,
            true,
            128 + i as u64 * 16,
            2,
            &new[..1024],
        );
        assert_eq!(ata_regs(&r), (0x40, 0));
    }
    assert!(lab.stop().success());

    // Bring it back: older event counter, so it is rebuilt from role 3.
    std::fs::rename(&away, &disks[2]).unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let opened = lab.log_lines("RAID-10 LUN opened");
    assert!(
        opened.last().unwrap().contains("rebuilding=[2]"),
        "{}",
        opened.last().unwrap()
    );
    wait_log(&lab, "rebuild finished", 1, 60);
    ctl(&lab, "fail 0.3");
    // Role 3 is gone now: the data must come from the rebuilt role 2.
    let ini = lab.raw(0);
    for i in 0..4u32 {
        let r = ini.ata_io(1, 0, 20 + i, READ_EXT, true, 128 + i as u64 * 16, 2, &[]);
        assert_eq!(ata_regs(&r), (0x40, 0));
        assert!(
            r[ATA_DATA_OFFSET..ATA_DATA_OFFSET + 1024] == new[..1024],
            "rebuilt data wrong at {i}"
        );
    }
    let r = ini.ata_io(1, 0, 30, READ_EXT, true, 256, 2, &[]);
    assert!(
        r[ATA_DATA_OFFSET..ATA_DATA_OFFSET + 1024] == old[..],
        "old data kept"
    );
    assert!(lab.stop().success());
}

#[test]
fn scrub_counts_and_repairs_mismatches() {
    let mut lab = Lab::new(1, 1500);
    let (cfg, disks) = raid_lab(&lab, 2, 0, 8 * MIB, ", clean: true");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    assert!(lab.stop().success());
    // Corrupt one copy behind the shelf's back.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&disks[1])
        .unwrap();
    f.write_all_at(&[0xAB; 4096], DATA_OFFSET + 3 * MIB)
        .unwrap();
    drop(f);
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    ctl(&lab, "scrub 0");
    wait_log(&lab, "scrub finished", 1, 30);
    assert!(
        ctl(&lab, "status").contains("1 mismatches"),
        "{}",
        ctl(&lab, "status")
    );
    ctl(&lab, "scrub 0 repair");
    wait_log(&lab, "scrub finished", 2, 30);
    ctl(&lab, "scrub 0");
    wait_log(&lab, "scrub finished", 3, 30);
    assert!(
        ctl(&lab, "status").contains(" 0 mismatches"),
        "{}",
        ctl(&lab, "status")
    );
    assert!(lab.stop().success());
    assert_same_data(&disks[0], &disks[1]);
}

#[test]
fn unsafe_arrays_are_refused_with_clear_messages() {
    let mut lab = Lab::new(1, 1500);
    let (cfg, disks) = raid_lab(&lab, 4, 0, 8 * MIB, ", clean: true");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    assert!(lab.stop().success());
    // A missing member without degraded_start.
    std::fs::rename(&disks[1], lab.dir.join("gone")).unwrap();
    let err = serve_fails(&lab, &cfg);
    assert!(err.contains("degraded_start"), "{err}");
    std::fs::rename(lab.dir.join("gone"), &disks[1]).unwrap();
    // Both copies of a chunk missing: refused even with degraded_start.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("clean: true", "clean: true, degraded_start: true"),
    )
    .unwrap();
    std::fs::rename(&disks[0], lab.dir.join("gone0")).unwrap();
    std::fs::rename(&disks[1], lab.dir.join("gone1")).unwrap();
    let err = serve_fails(&lab, &cfg);
    assert!(err.contains("cannot start without losing data"), "{err}");
    // A member of another array.
    std::fs::rename(lab.dir.join("gone0"), &disks[0]).unwrap();
    std::fs::rename(lab.dir.join("gone1"), &disks[1]).unwrap();
    let foreign = lab.dir.join("foreign.yaml");
    let mut other = std::fs::read_to_string(&cfg).unwrap();
    for (i, d) in disks.iter().enumerate() {
        other = other.replace(
            &d.display().to_string(),
            &lab.dir.join(format!("x{i}.img")).display().to_string(),
        );
    }
    for i in 0..4 {
        lab.disk(&format!("x{i}.img"), 8 * MIB);
    }
    std::fs::write(&foreign, &other).unwrap();
    lab.start(&["serve", "-c", foreign.to_str().unwrap()]);
    assert!(lab.stop().success());
    std::fs::copy(lab.dir.join("x2.img"), &disks[2]).unwrap();
    let err = serve_fails(&lab, &cfg);
    assert!(err.contains("belongs to another array"), "{err}");
}

#[test]
fn when_no_copy_survives_the_initiator_gets_unc_and_the_lun_shows_failed() {
    let mut lab = Lab::new(1, 1500);
    let (cfg, _disks) = raid_lab(&lab, 4, 0, 8 * MIB, ", clean: true");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    // Both disks of pair (2, 3) die: the second one only by force (the console refuses to
    // fail the last in-sync copy otherwise). Read errors alone never fail a member.
    ctl(&lab, "fail 0.2");
    ctl(&lab, "fail -f 0.3");
    let ini = lab.raw(0);
    // Chunk 0 (roles 0 and 1) still reads; chunk 1 (roles 2 and 3) has no copy left.
    let r = ini.ata_io(1, 0, 1, READ_EXT, true, 0, 2, &[]);
    assert_eq!(ata_regs(&r), (0x40, 0), "chunk 0 is fine");
    let r = ini.ata_io(1, 0, 2, READ_EXT, true, 128, 2, &[]);
    assert_eq!(ata_regs(&r), (0x41, 0x40), "DRDY|ERR with UNC");
    let state = lun_state(&lab);
    assert!(state.contains("failed"), "{state}");
    assert_eq!(smart_status(&lab, 3), (0xF4, 0x2C));
    let r = ini.ata_io(1, 0, 4, READ_EXT, true, 0, 2, &[]);
    assert_eq!(ata_regs(&r), (0x40, 0), "the rest of the LUN keeps serving");
    assert!(lab.stop().success());
}

#[test]
fn replace_rebuilds_onto_a_new_disk_swapped_in_at_the_failed_path() {
    let mut lab = Lab::new(1, 1500);
    let (cfg, disks) = raid_lab(&lab, 2, 0, 8 * MIB, ", clean: true");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let ini = lab.raw(0);
    let data = pattern(42, 1024);
    let r = ini.ata_io(1, 0, 1, WRITE_EXT, true, 1000, 2, &data);
    assert_eq!(ata_regs(&r), (0x40, 0));
    ctl(&lab, "fail 0.1");
    assert!(
        lun_state(&lab).contains("degraded"),
        "no spare: stays degraded"
    );
    let when = ctl(&lab, "when");
    assert!(when.contains("no rebuild"), "{when}");
    // The operator swaps the disk: a new, blank one at the same path.
    std::fs::remove_file(&disks[1]).unwrap();
    lab.disk("d1.img", 8 * MIB);
    let out = Command::new(binary())
        .args(["ctl", "-s", lab.dir.join("admin.sock").to_str().unwrap()])
        .args(["replace", "0.1", "7"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "disk 7 does not exist");
    assert!(String::from_utf8_lossy(&out.stdout).contains("neither a hot spare"));
    println!("{}", ctl(&lab, "replace 0.1 1"));
    wait_log(&lab, "rebuild finished", 1, 30);
    assert!(
        lun_state(&lab).contains("normal"),
        "{}",
        ctl(&lab, "status")
    );
    assert!(lab.stop().success());
    assert_same_data(&disks[0], &disks[1]);
    let f = std::fs::File::open(&disks[1]).unwrap();
    let mut back = vec![0u8; 1024];
    // Two members: chunk 0 is on both, sector 1000 lies in chunk 7 (row 7).
    f.read_exact_at(&mut back, DATA_OFFSET + 1000 * 512)
        .unwrap();
    assert!(back == data, "the new disk holds the data");
}

#[test]
fn a_disk_has_one_owner_whatever_path_names_it() {
    let mut lab = Lab::new(1, 1500);
    let (cfg, disks) = raid_lab(&lab, 2, 1, 8 * MIB, ", clean: true");
    // The spare is member 0 again, reached through another path.
    let alias = lab.dir.join("alias.img");
    std::os::unix::fs::symlink(&disks[0], &alias).unwrap();
    let yaml = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(disks[2].to_str().unwrap(), alias.to_str().unwrap());
    let twice = lab.dir.join("twice.yaml");
    std::fs::write(&twice, yaml).unwrap();
    let err = serve_fails(&lab, &twice);
    assert!(err.contains("in use"), "{err}");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    // Exporting a member file beside the running shelf is refused, not a second writer.
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.shelf_ns, "timeout", "5"])
        .arg(binary())
        .args(["export", "--state-dir"])
        .arg(lab.dir.join("x-state"))
        .args(["1", "9", lab.shelf_if(0)])
        .arg(&disks[1])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("in use"), "{err}");
    assert!(lab.stop().success());
}

#[test]
fn mirror_halves_started_apart_are_a_split_brain_refused_unless_forced() {
    let mut lab = Lab::new(1, 1500);
    let (cfg, disks) = raid_lab(&lab, 2, 0, 8 * MIB, ", clean: true, degraded_start: true");
    let cfg = cfg.to_str().unwrap().to_string();
    let ini = lab.raw(0);
    let mut tag = 0;
    let mut write = |lab: &mut Lab, seed: u64| {
        lab.start(&["serve", "-c", &cfg]);
        tag += 1;
        let r = ini.ata_io(1, 0, tag, WRITE_EXT, true, 0, 2, &pattern(seed, 1024));
        assert_eq!(ata_regs(&r), (0x40, 0));
        assert!(lab.stop().success());
    };
    write(&mut lab, 1);
    // The halves of the mirror are started apart, and each takes writes.
    for (away, seed) in [(1usize, 2u64), (0, 3)] {
        let gone = lab.dir.join("gone");
        std::fs::rename(&disks[away], &gone).unwrap();
        write(&mut lab, seed);
        std::fs::rename(&gone, &disks[away]).unwrap();
    }
    let err = serve_fails(&lab, Path::new(&cfg));
    assert!(err.contains("split brain"), "{err}");
    // The admin keeps the newest side: it serves one side's data whole, and the other disk
    // is rebuilt from it.
    lab.start(&["serve", "-c", &cfg, "--force-assemble"]);
    let r = ini.ata_io(1, 0, 99, READ_EXT, true, 0, 2, &[]);
    assert_eq!(ata_regs(&r), (0x40, 0));
    let data = &r[ethershelf::wire::ATA_DATA_OFFSET..ethershelf::wire::ATA_DATA_OFFSET + 1024];
    assert!(data == pattern(2, 1024).as_slice() || data == pattern(3, 1024).as_slice());
    wait_log(&lab, " rebuild finished ", 1, 30);
    assert!(lab.stop().success());
    assert_same_data(&disks[0], &disks[1]);
}
