//! Array-level tests on real files: creation, assembly in any order, failure records,
//! stale members, refusals, the bitmap across a restart, and sync-job planning.

use super::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

static N: AtomicU32 = AtomicU32::new(0);

pub(super) fn scratch(disks: usize, mib: u64) -> (PathBuf, Vec<(usize, PathBuf)>) {
    let dir = std::env::temp_dir().join(format!(
        "es-raid-unit-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let list = (0..disks)
        .map(|i| {
            let p = dir.join(format!("d{i}.img"));
            std::fs::File::create(&p)
                .unwrap()
                .set_len(mib << 20)
                .unwrap();
            (i, p)
        })
        .collect();
    (dir, list)
}

pub(super) fn open(
    disks: &[(usize, PathBuf)],
    degraded: bool,
) -> Result<(Array, OpenReport), ArrayError> {
    Array::open("e1.0", disks, &mut Vec::new(), 128, true, degraded, false)
}

#[test]
fn created_arrays_assemble_from_members_in_any_order() {
    let (dir, disks) = scratch(4, 4);
    let (a, report) = open(&disks, false).unwrap();
    assert!(report.created);
    assert_eq!(a.state(), "normal");
    // (4 MiB - 1 MiB metadata) = 3 MiB per member: 48 rows of 64 KiB, 4 x 48 / 2 chunks.
    assert_eq!(a.sectors(), 4 * 48 / 2 * 128);
    let event = a.event();
    drop(a);
    let mut shuffled = disks.clone();
    shuffled.reverse();
    let (b, report) = open(&shuffled, false).unwrap();
    assert!(!report.created);
    assert!(b.event() > event);
    for (role, r) in b.roles.iter().enumerate() {
        assert_eq!(
            r.dev.as_ref().unwrap().disk,
            role,
            "role {role} found its disk"
        );
        assert_eq!(r.state, RoleState::Active);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_failed_member_is_recorded_and_rebuilt_not_trusted_after_restart() {
    let (dir, disks) = scratch(4, 4);
    let (mut a, _) = open(&disks, false).unwrap();
    assert!(a.fail_role(1, "test"));
    assert!(!a.fail_role(1, "twice"), "already failed");
    assert_eq!(a.state(), "degraded");
    assert!(!a.unreadable_chunk(), "role 0 holds every chunk of role 1");
    assert_eq!(a.role_needing_disk(), Some(1));
    a.close().unwrap();
    drop(a);
    let (b, report) = open(&disks, false).unwrap();
    assert_eq!(
        report.rebuilding,
        vec![1],
        "the failed disk comes back as a rebuild"
    );
    assert_eq!(b.roles[1].state, RoleState::Recovering);
    let piece = b.layout().pieces(0, 8).unwrap().next().unwrap();
    assert_eq!(
        b.pick_read(&piece, None),
        Some(0),
        "never read the stale copy"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn losing_both_copies_marks_the_array_failed() {
    let (dir, disks) = scratch(4, 4);
    let (mut a, _) = open(&disks, false).unwrap();
    a.fail_role(2, "test");
    a.fail_role(3, "test");
    assert!(a.unreadable_chunk());
    assert!(a.state().contains("failed"), "{}", a.state());
    let piece = a.layout().pieces(128, 8).unwrap().next().unwrap();
    assert_eq!(
        a.pick_read(&piece, None),
        None,
        "chunk 1 lives on roles 2 and 3"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn refusals_are_clear() {
    let (dir, mut disks) = scratch(3, 4);
    let tiny = dir.join("tiny.img");
    std::fs::File::create(&tiny)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    disks.push((3, tiny));
    let e = open(&disks, false).unwrap_err().to_string();
    assert!(e.contains("too small"), "{e}");
    disks.pop();
    let (a, _) = open(&disks, false).unwrap();
    drop(a);
    // A missing member: only with degraded start.
    let gone = dir.join("gone");
    std::fs::rename(&disks[0].1, &gone).unwrap();
    let e = open(&disks, false).unwrap_err().to_string();
    assert!(e.contains("degraded_start"), "{e}");
    let (a, _) = open(&disks, true).unwrap();
    assert!(a.state().contains("degraded"));
    drop(a);
    std::fs::rename(&gone, &disks[0].1).unwrap();
    // A damaged superblock on a blank set is not overwritten silently.
    let (dir2, disks2) = scratch(2, 4);
    std::fs::write(&disks2[0].1, b"ESRAID10 but garbage after the magic").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&disks2[0].1)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let e = open(&disks2, false).unwrap_err().to_string();
    assert!(e.contains("damaged"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}

#[test]
fn the_bitmap_survives_a_crash_and_only_dirty_regions_resync() {
    let (dir, disks) = scratch(2, 8);
    let (mut a, _) = open(&disks, false).unwrap();
    assert!(a.intent.begin_write(10, 8), "first write into region 0");
    a.persist_bitmap().unwrap();
    drop(a); // no close(): a crash
    let (b, report) = open(&disks, false).unwrap();
    assert!(report.was_dirty);
    assert_eq!(report.dirty_regions, 1);
    assert!(b.resync_owed);
    assert!(b.intent.is_dirty_at(10) && !b.intent.is_dirty_at(4096));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sync_jobs_plan_only_what_is_needed() {
    let (dir, disks) = scratch(4, 4);
    let (mut a, _) = open(&disks, false).unwrap();
    a.fail_role(3, "test");
    let (d, _) = scratch(1, 4);
    let spare = MemberDisk::open(9, &d.join("d0.img")).unwrap();
    a.add_for_rebuild(3, spare).unwrap();
    assert!(a.state().contains("recovering"));
    let mut job = SyncJob::new(SyncKind::Rebuild, 0, a.sectors(), 1);
    let mut steps = Vec::new();
    while let Some(s) = job.plan(&mut a) {
        steps.push(s);
    }
    assert!(job.cursor >= a.sectors());
    // Role 3 holds the second copy of every odd chunk (slots 3, 7, ...): copied from role 2.
    assert_eq!(steps.len() as u64, a.layout().chunks() / 2);
    for s in &steps {
        assert_eq!(s.source.0, 2);
        assert_eq!(s.target.map(|t| t.0), Some(3));
        assert_eq!(
            s.source.1,
            s.target.unwrap().1,
            "near-2: same member sector"
        );
    }
    // Resync visits dirty regions only.
    let mut r = SyncJob::new(SyncKind::Resync, 0, a.sectors(), 1);
    assert!(r.plan(&mut a).is_none(), "nothing dirty");
    a.intent.begin_write(0, 1);
    let mut r = SyncJob::new(SyncKind::Resync, 0, a.sectors(), 1);
    let first = r.plan(&mut a).unwrap();
    assert_eq!(
        (first.lba, first.source.0, first.target.unwrap().0),
        (0, 0, 1)
    );
    // Scrub compares both copies where both are active (not the recovering pair).
    let mut s = SyncJob::new(SyncKind::Scrub { repair: false }, 0, a.sectors(), 1);
    let mut n = 0;
    while let Some(step) = s.plan(&mut a) {
        assert!(step.compare.is_some() && step.target.is_none());
        assert_ne!(step.source.0, 3);
        n += 1;
    }
    assert_eq!(n as u64, a.layout().chunks() / 2);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn reads_prefer_the_idle_copy_and_the_first_copy_while_resyncing() {
    let (dir, disks) = scratch(2, 4);
    let (mut a, _) = open(&disks, false).unwrap();
    let piece = a.layout().pieces(0, 8).unwrap().next().unwrap();
    a.roles[0].in_flight = 5;
    assert_eq!(a.pick_read(&piece, None), Some(1));
    assert_eq!(
        a.pick_read(&piece, Some(1)),
        Some(0),
        "avoid the one that failed"
    );
    a.intent.begin_write(0, 1);
    a.resync_owed = true;
    assert_eq!(
        a.pick_read(&piece, None),
        Some(0),
        "dirty region: first copy only"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A member path list without role `r` (its disk gone from the box).
fn without(disks: &[(usize, PathBuf)], r: usize) -> Vec<(usize, PathBuf)> {
    disks.iter().filter(|(i, _)| *i != r).cloned().collect()
}

#[test]
fn a_disk_gone_while_the_shelf_was_down_stops_the_array_but_a_known_failure_does_not() {
    let (dir, disks) = scratch(2, 4);
    let (mut a, _) = open(&disks, false).unwrap();
    a.close().unwrap();
    drop(a);
    // Disk 1 vanished while the shelf was down: a new loss, not started on its own.
    let e = open(&without(&disks, 1), false).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    // The admin failed it while running: the array knew, so it starts as degraded as it was.
    let (mut a, _) = open(&disks, false).unwrap();
    assert!(a.fail_role(1, "test"));
    a.close().unwrap();
    drop(a);
    let (a, _) = open(&without(&disks, 1), false).unwrap();
    assert!(a.degraded());
    drop(a);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn members_that_ran_apart_are_a_split_brain_refused_unless_forced() {
    let (dir, disks) = scratch(2, 4);
    let (mut a, _) = open(&disks, false).unwrap();
    a.close().unwrap();
    drop(a);
    // Boot 1: only disk 0 (forced degraded start); boot 2: only disk 1. Each writes events
    // the other never saw.
    for (alone, restarts) in [(0usize, 2), (1, 3)] {
        for _ in 0..restarts {
            let (mut a, _) = open(&without(&disks, 1 - alone), true).unwrap();
            a.commit("test").unwrap();
            a.close().unwrap();
        }
    }
    let e = open(&disks, true).unwrap_err().to_string();
    assert!(e.contains("split brain"), "{e}");
    // A stale member that merely stopped is not one: after forcing, the other side is
    // rebuilt, and the next start is clean.
    let (a, report) = Array::open("e1.0", &disks, &mut Vec::new(), 128, true, true, true).unwrap();
    assert_eq!(report.rebuilding.len(), 1, "{report:?}");
    drop(a);
    let (a, _) = open(&disks, false).unwrap();
    assert!(a.roles.iter().all(|r| r.dev.is_some()));
    drop(a);
    let _ = std::fs::remove_dir_all(dir);
}
