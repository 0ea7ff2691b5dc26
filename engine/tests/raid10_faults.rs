//! RAID-10 under faults as real disks produce them, checked the way an independent initiator
//! would: the whole LUN is written with a pattern that says what each block must hold, the
//! fault happens, then every block is read back and sorted into good, wrong (data that is
//! not the last acknowledged write, answered as good) and errors. Wrong must always be 0;
//! errors only where no copy of the data exists.

mod common;
use common::raid::*;
use common::raw::{ata_regs, RawInitiator};
use common::*;
use ethershelf::wire::ATA_DATA_OFFSET;
use std::time::Duration;

const READ_EXT: u8 = 0x24;
const WRITE_EXT: u8 = 0x34;
/// Sectors per request (fits MTU 9000).
const BLOCK: u64 = 16;
const OK: (u8, u8) = (0x40, 0);
const UNC: (u8, u8) = (0x41, 0x40);

/// What block `lba` holds after a fill with `seed`.
fn block_data(seed: u64, lba: u64) -> Vec<u8> {
    pattern(
        seed ^ lba.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        (BLOCK * 512) as usize,
    )
}

/// Tags for raw requests, unique within a test.
struct Tags(u32);

impl Tags {
    fn next(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

/// Writes every block of `lbas` with the pattern of `seed`; every write must succeed.
fn fill(ini: &RawInitiator, tags: &mut Tags, lbas: std::ops::Range<u64>, seed: u64) {
    for lba in lbas.step_by(BLOCK as usize) {
        let r = ini.ata_io(
            1,
            0,
            tags.next(),
            WRITE_EXT,
            true,
            lba,
            BLOCK as u8,
            &block_data(seed, lba),
        );
        assert_eq!(ata_regs(&r), OK, "write at {lba}");
    }
}

/// How a full read-back went.
#[derive(Debug, Default)]
struct Check {
    good: u64,
    wrong: Vec<u64>,
    errors: Vec<u64>,
}

/// Reads every block of `lbas` and sorts it against the pattern of `seed`.
fn check(ini: &RawInitiator, tags: &mut Tags, lbas: std::ops::Range<u64>, seed: u64) -> Check {
    let mut c = Check::default();
    for lba in lbas.step_by(BLOCK as usize) {
        let r = ini.ata_io(1, 0, tags.next(), READ_EXT, true, lba, BLOCK as u8, &[]);
        if ata_regs(&r) != OK {
            c.errors.push(lba);
            continue;
        }
        let data = &r[ATA_DATA_OFFSET..ATA_DATA_OFFSET + (BLOCK * 512) as usize];
        if data == block_data(seed, lba).as_slice() {
            c.good += 1;
        } else {
            c.wrong.push(lba);
        }
    }
    c
}

fn assert_no_wrong(c: &Check, lab: &Lab, what: &str) {
    assert!(
        c.wrong.is_empty(),
        "{what}: {} blocks of WRONG data served as good (first at {:?}); {} good, {} errors\n{}",
        c.wrong.len(),
        c.wrong.first(),
        c.good,
        c.errors.len(),
        lab.log_text()
    );
}

/// Array sectors of a RAID-10 of `members` disks of `size` bytes (64 KiB chunks).
fn array_sectors(members: u64, size: u64) -> u64 {
    let member = (size - DATA_OFFSET) / 512 / 128 * 128;
    member * members / 2
}

/// A started shelf with one RAID-10 LUN of `members` disks (+ `spares`) of `size` bytes,
/// written whole with the pattern of `seed`.
struct Filled {
    lab: Lab,
    disks: Vec<std::path::PathBuf>,
    ini: RawInitiator,
    tags: Tags,
    sectors: u64,
}

fn start_filled(members: usize, spares: usize, size: u64, rebuild: &str, seed: u64) -> Filled {
    let mut lab = Lab::new(1, 9000);
    let (cfg, disks) = raid_lab_with(&lab, members, spares, size, ", clean: true", rebuild);
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let ini = lab.raw(0);
    let mut tags = Tags(0);
    let sectors = array_sectors(members as u64, size);
    fill(&ini, &mut tags, 0..sectors, seed);
    Filled {
        lab,
        disks,
        ini,
        tags,
        sectors,
    }
}

const SLOW_REBUILD: &str = "min_rate: 4MiB, max_rate: 4MiB";
const FAST_REBUILD: &str = "min_rate: 20MiB, max_rate: 400MiB";

#[test]
fn a_read_error_on_the_last_good_copy_during_a_rebuild_serves_no_wrong_data() {
    let Filled {
        mut lab,
        disks,
        ini,
        mut tags,
        sectors,
    } = start_filled(2, 1, 33 * MIB, SLOW_REBUILD, 1);
    // Role 1 fails: the spare rebuilds it from role 0, the last in-sync copy.
    ctl(&lab, "fail 0.1");
    std::thread::sleep(Duration::from_millis(1200));
    // Role 0 stops reading for a while, as a disk with a flaky head does.
    ctl(&lab, "inject 0.0 read");
    std::thread::sleep(Duration::from_secs(2));
    ctl(&lab, "inject 0.0 off");
    wait_log(&lab, "rebuild finished", 1, 60);
    let list = ctl(&lab, "list -l");
    println!("{list}");
    assert!(
        !list.contains("0.0.0 failed"),
        "a read error failed the last in-sync copy:\n{list}"
    );
    assert!(
        list.contains("badblocks="),
        "the ranges the rebuild could not copy are not listed:\n{list}"
    );
    assert!(!lab.log_lines("listed bad on the new member").is_empty());
    // The source reads again: every block reads back right, none as an error.
    let c = check(&ini, &mut tags, 0..sectors, 1);
    assert_no_wrong(&c, &lab, "after the rebuild");
    assert!(
        c.errors.is_empty(),
        "errors where a copy exists: {:?}",
        &c.errors[..c.errors.len().min(10)]
    );
    // Reading healed the holes: the list is empty and both copies are equal.
    let list = ctl(&lab, "list -l");
    assert!(
        !list.contains("badblocks="),
        "holes not healed by reads:\n{list}"
    );
    assert!(lab.stop().success());
    assert_same_data(&disks[0], &disks[2]);
}

#[test]
fn a_member_cut_short_under_the_shelf_is_failed_and_its_partner_serves() {
    let Filled {
        mut lab,
        disks,
        ini,
        mut tags,
        sectors,
    } = start_filled(4, 0, 17 * MIB, FAST_REBUILD, 2);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disks[1])
        .unwrap()
        .set_len(0)
        .unwrap();
    let c = check(&ini, &mut tags, 0..sectors, 2);
    assert_no_wrong(&c, &lab, "after the truncation");
    assert!(
        c.errors.is_empty(),
        "errors where a copy exists: {:?}",
        &c.errors[..c.errors.len().min(10)]
    );
    wait_log(&lab, "shrank", 1, 5);
    let list = ctl(&lab, "list -l");
    assert!(list.contains("0.0.1 failed"), "{list}");
    // New writes and reads go on through the surviving copies.
    fill(&ini, &mut tags, 0..sectors, 3);
    let c = check(&ini, &mut tags, 0..sectors, 3);
    assert_no_wrong(&c, &lab, "after rewriting");
    assert!(c.errors.is_empty());
    assert!(lab.stop().success());
    let len = std::fs::metadata(&disks[1]).unwrap().len();
    assert!(
        len <= DATA_OFFSET,
        "no data was written to the cut member after it failed (it is {len} bytes: only its failed superblock belongs there)"
    );
}

#[test]
fn a_bad_sector_on_the_only_copy_answers_unc_for_those_sectors_and_nothing_else() {
    let Filled {
        mut lab,
        disks: _,
        ini,
        mut tags,
        sectors,
    } = start_filled(2, 0, 9 * MIB, FAST_REBUILD, 4);
    ctl(&lab, "fail 0.1");
    // Two members: array sector = member sector. One bad sector at 4100.
    ctl(&lab, "inject 0.0 read 4100-4100");
    let c = check(&ini, &mut tags, 0..sectors, 4);
    assert_no_wrong(&c, &lab, "with a bad sector");
    assert_eq!(
        c.errors,
        vec![4096],
        "exactly the block holding sector 4100 fails"
    );
    let r = ini.ata_io(1, 0, tags.next(), READ_EXT, true, 4100, 1, &[]);
    assert_eq!(ata_regs(&r), UNC, "the bad sector answers UNC");
    let r = ini.ata_io(1, 0, tags.next(), READ_EXT, true, 4101, 8, &[]);
    assert_eq!(ata_regs(&r), OK, "its neighbours read");
    let list = ctl(&lab, "list -l");
    assert!(
        list.contains("0.0.0 normal"),
        "a read error failed the only copy:\n{list}"
    );
    // The sector reads again once the disk does: nothing was made permanent by a read.
    ctl(&lab, "inject 0.0 off");
    let c = check(&ini, &mut tags, 4096..4096 + BLOCK, 4);
    assert_eq!((c.good, c.errors.len()), (1, 0));
    assert!(lab.stop().success());
}

#[test]
fn a_failed_write_to_the_only_copy_is_never_read_back_as_good() {
    let Filled {
        mut lab,
        disks: _,
        ini,
        mut tags,
        sectors: _,
    } = start_filled(2, 0, 9 * MIB, FAST_REBUILD, 5);
    ctl(&lab, "fail 0.1");
    ctl(&lab, "inject 0.0 write 8192-8192");
    let r = ini.ata_io(
        1,
        0,
        tags.next(),
        WRITE_EXT,
        true,
        8192,
        BLOCK as u8,
        &block_data(6, 8192),
    );
    assert_eq!(
        ata_regs(&r).0 & 1,
        1,
        "the failed write is answered with an error"
    );
    ctl(&lab, "inject 0.0 off");
    // Those sectors now hold neither the old nor the new data for sure: UNC, not either.
    let r = ini.ata_io(1, 0, tags.next(), READ_EXT, true, 8192, BLOCK as u8, &[]);
    assert_eq!(ata_regs(&r), UNC);
    let c = check(&ini, &mut tags, 0..8192, 5);
    assert_no_wrong(&c, &lab, "the rest");
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let list = ctl(&lab, "list -l");
    assert!(
        list.contains("0.0.0 normal") && list.contains("badblocks=16"),
        "{list}"
    );
    // A good write over the range makes it readable again, with the new data.
    fill(&ini, &mut tags, 8192..8192 + BLOCK, 7);
    let c = check(&ini, &mut tags, 8192..8192 + BLOCK, 7);
    assert_eq!((c.good, c.errors.len(), c.wrong.len()), (1, 0, 0));
    assert!(lab.stop().success());
}

#[test]
fn the_partner_failing_mid_rebuild_leaves_errors_not_wrong_data() {
    let Filled {
        mut lab,
        disks: _,
        ini,
        mut tags,
        sectors,
    } = start_filled(4, 1, 17 * MIB, SLOW_REBUILD, 8);
    ctl(&lab, "fail 0.1");
    std::thread::sleep(Duration::from_millis(1500));
    // The admin may not fail the last in-sync copy by mistake.
    let out = std::process::Command::new(binary())
        .args([
            "ctl",
            "-s",
            lab.dir.join("admin.sock").to_str().unwrap(),
            "fail",
            "0.0",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "failing the only copy must be refused"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("only in-sync copy"));
    // The source of the rebuild stops working altogether: pair (0, 1) has no in-sync copy
    // left above the checkpoint.
    ctl(&lab, "inject 0.0 all");
    wait_log(&lab, "rebuild finished", 1, 60);
    let c = check(&ini, &mut tags, 0..sectors, 8);
    assert_no_wrong(&c, &lab, "after losing the rebuild's source");
    assert!(!c.errors.is_empty(), "the lost chunks must answer errors");
    assert!(c.good > 0, "the other pair and the rebuilt part must serve");
    // Chunks of the other pair (odd chunks: roles 2 and 3) are all good.
    assert!(
        c.errors.iter().all(|lba| (lba / 128) % 2 == 0),
        "errors outside the lost pair: {:?}",
        c.errors.iter().find(|lba| (*lba / 128) % 2 == 1)
    );
    println!("{}", ctl(&lab, "list -l"));
    assert!(lab.stop().success());
}

#[test]
fn late_completions_of_a_replaced_disk_cannot_touch_its_successor() {
    let Filled {
        mut lab,
        disks,
        ini,
        mut tags,
        sectors,
    } = start_filled(4, 1, 17 * MIB, FAST_REBUILD, 9);
    // Role 1 gets stuck in error recovery: its I/O neither completes nor fails.
    ctl(&lab, "inject 0.1 hang");
    let mut pending = Vec::new();
    for lba in (0..128).step_by(BLOCK as usize) {
        let tag = tags.next();
        ini.send(&ini.ata(
            None,
            1,
            0,
            tag,
            WRITE_EXT,
            true,
            lba,
            BLOCK as u8,
            &block_data(10, lba),
        ));
        pending.push(tag);
    }
    std::thread::sleep(Duration::from_millis(300));
    // The admin gives up on it: the spare takes role 1 and the rebuild starts.
    ctl(&lab, "fail 0.1");
    // Now the old disk answers, late and with errors.
    ctl(&lab, "inject 0.1 off");
    let replies = ini.recv_tags(&pending, Duration::from_secs(5));
    assert_eq!(
        replies.len(),
        pending.len(),
        "held writes unanswered:\n{}",
        lab.log_text()
    );
    for (tag, r) in replies {
        assert_eq!(ata_regs(&r), OK, "write {tag}: role 0 took every write");
    }
    wait_log(&lab, "rebuild finished", 1, 60);
    let list = ctl(&lab, "list -l");
    assert!(
        list.contains("0.0.1 normal 0.017") || list.contains("0.0.1 normal"),
        "the old disk's late errors failed its successor:\n{list}"
    );
    assert_eq!(
        lab.log_lines("member failed lun=").len(),
        1,
        "only the admin's fail: {}",
        lab.log_text()
    );
    let mut c = check(&ini, &mut tags, 0..128, 10);
    let rest = check(&ini, &mut tags, 128..sectors, 9);
    c.good += rest.good;
    c.wrong.extend(rest.wrong);
    c.errors.extend(rest.errors);
    assert_no_wrong(&c, &lab, "after the late completions");
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert!(lab.stop().success());
    assert_same_data(&disks[0], &disks[4]);
}
