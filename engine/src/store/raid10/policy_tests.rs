//! One unit test per rule of the request and sync-step state machines: completions are fed
//! by hand (no I/O is performed; the array's metadata lives on small scratch files), so each
//! rule is checked on its own, including the orders real disks produce (late, short,
//! after a member change).

use super::tests::{open, scratch};
use super::*;

fn done(op: MemberOp, result: i32) -> Completion {
    Completion {
        op,
        result,
        took_ns: 0,
    }
}

fn full(op: &MemberOp) -> i32 {
    op.bytes as i32
}

/// A 2-member array: array sector = member sector, copies on roles 0 and 1.
fn pair() -> (std::path::PathBuf, Array) {
    let (dir, disks) = scratch(2, 4);
    let (a, _) = open(&disks, false).unwrap();
    (dir, a)
}

/// Role 1 fails and shelf disk `disk` takes its place (to be rebuilt).
fn replace_role_1(a: &mut Array, disks: &[(usize, std::path::PathBuf)], disk: usize) {
    assert!(a.fail_role(1, "test"));
    assert!(a.take_failed(1).is_some());
    let new = MemberDisk::open(disk, &disks[disk].1).unwrap();
    assert!(a.add_for_rebuild(1, new).is_ok());
}

fn start(a: &mut Array, kind: RequestKind, lba: u64, count: u8) -> (Request, Vec<MemberOp>) {
    let mut req = Request::new(kind, lba, count, true);
    let mut ops = Vec::new();
    assert_eq!(a.start_request(&mut req, &mut ops), Progress::Waiting);
    (req, ops)
}

#[test]
fn a_read_error_is_retried_on_the_other_copy_then_the_bad_copy_is_rewritten() {
    let (dir, mut a) = pair();
    let (mut req, ops) = start(&mut a, RequestKind::Read, 16, 8);
    assert_eq!(ops.len(), 1);
    let first = ops[0];
    let mut out = Vec::new();
    assert_eq!(
        a.complete_request(&mut req, done(first, -libc::EIO), &mut out),
        Progress::Waiting
    );
    assert_eq!(out.len(), 1, "retried once");
    assert!(out[0].retry && out[0].member != first.member);
    let retry = out[0];
    match a.complete_request(&mut req, done(retry, full(&retry)), &mut out) {
        Progress::Rewrite(op) => {
            assert_eq!((op.kind, op.member), (OpKind::Rewrite, first.member));
            req.rewrite_issued();
            assert_eq!(
                a.complete_request(&mut req, done(op, full(&op)), &mut out),
                Progress::Done { success: true }
            );
        }
        other => panic!("expected a rewrite, got {other:?}"),
    }
    assert_eq!(
        a.roles[first.member as usize].state,
        RoleState::Active,
        "never failed for a read error"
    );
    assert_eq!(a.roles[first.member as usize].counters.corrected, 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_read_error_on_the_only_copy_answers_an_error_and_fails_nothing() {
    let (dir, mut a) = pair();
    assert!(a.fail_role(1, "test"));
    assert!(a.only_copy(0));
    let (mut req, ops) = start(&mut a, RequestKind::Read, 16, 8);
    let mut out = Vec::new();
    assert_eq!(
        a.complete_request(&mut req, done(ops[0], -libc::EIO), &mut out),
        Progress::Done { success: false }
    );
    assert!(out.is_empty());
    assert_eq!(a.roles[0].state, RoleState::Active);
    assert!(
        a.roles[0].bad.is_empty(),
        "a read error makes nothing permanent"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_short_transfer_is_retried_once_then_is_an_error() {
    let (dir, mut a) = pair();
    a.fail_role(1, "test");
    let (mut req, ops) = start(&mut a, RequestKind::Read, 0, 8);
    let mut out = Vec::new();
    assert_eq!(
        a.complete_request(&mut req, done(ops[0], 512), &mut out),
        Progress::Waiting
    );
    assert_eq!(out, vec![ops[0]], "the same I/O again");
    assert_eq!(
        a.complete_request(&mut req, done(out[0], 1024), &mut out),
        Progress::Done { success: false },
        "a second short one is an error, never zero-filled data"
    );
    // Once retried, a full transfer succeeds.
    let (mut req, ops) = start(&mut a, RequestKind::Read, 0, 8);
    a.complete_request(&mut req, done(ops[0], 0), &mut out);
    assert_eq!(
        a.complete_request(&mut req, done(out[0], full(&ops[0])), &mut out),
        Progress::Done { success: true }
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_completion_from_a_replaced_disk_acts_on_nothing() {
    let (dir, disks) = scratch(3, 4);
    let (mut a, _) = open(&disks[..2], false).unwrap();
    let (mut req, ops) = start(&mut a, RequestKind::Write, 0, 8);
    assert_eq!(ops.len(), 2);
    // Role 1's disk is failed and replaced while its write is in flight.
    replace_role_1(&mut a, &disks, 2);
    let late = *ops.iter().find(|o| o.member == 1).unwrap();
    let good = *ops.iter().find(|o| o.member == 0).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        a.complete_request(&mut req, done(late, -libc::EIO), &mut out),
        Progress::Waiting
    );
    assert_eq!(
        a.roles[1].state,
        RoleState::Recovering,
        "the late error did not fail the new disk"
    );
    assert_eq!(
        a.complete_request(&mut req, done(good, full(&good)), &mut out),
        Progress::Done { success: true }
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_write_error_fails_the_member_unless_it_holds_the_only_copy() {
    let (dir, mut a) = pair();
    let (mut req, ops) = start(&mut a, RequestKind::Write, 0, 8);
    let mut out = Vec::new();
    a.complete_request(&mut req, done(ops[0], -libc::EIO), &mut out);
    assert_eq!(
        a.complete_request(&mut req, done(ops[1], full(&ops[1])), &mut out),
        Progress::Done { success: true }
    );
    let failed = ops[0].member as usize;
    assert_eq!(
        a.roles[failed].state,
        RoleState::Failed,
        "the other copy took it"
    );
    // Now the survivor is the only copy: its write error lists the range instead.
    let (mut req, ops) = start(&mut a, RequestKind::Write, 64, 8);
    assert_eq!(ops.len(), 1);
    assert_eq!(
        a.complete_request(&mut req, done(ops[0], -libc::EIO), &mut out),
        Progress::Done { success: false }
    );
    let m = ops[0].member as usize;
    assert_eq!(a.roles[m].state, RoleState::Active);
    assert!(a.roles[m].bad.overlaps(64, 8));
    // Reads of the range answer UNC at once, without touching the disk.
    let mut req = Request::new(RequestKind::Read, 64, 8, true);
    assert_eq!(
        a.start_request(&mut req, &mut out),
        Progress::Done { success: false }
    );
    // A durable write over it clears it; a volatile one would not.
    let mut req = Request::new(RequestKind::Write, 64, 8, false);
    a.start_request(&mut req, &mut out);
    let op = out[0];
    a.complete_request(&mut req, done(op, full(&op)), &mut out);
    assert!(
        a.roles[m].bad.overlaps(64, 8),
        "a write-back write may vanish: the range stays"
    );
    let (mut req, ops) = start(&mut a, RequestKind::Write, 64, 8);
    a.complete_request(&mut req, done(ops[0], full(&ops[0])), &mut out);
    assert!(a.roles[m].bad.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_write_only_a_rebuilding_member_took_is_not_acknowledged() {
    let (dir, disks) = scratch(3, 4);
    let (mut a, _) = open(&disks[..2], false).unwrap();
    replace_role_1(&mut a, &disks, 2);
    assert!(a.next_job().is_some(), "the rebuild starts at sector 0");
    let (mut req, ops) = start(&mut a, RequestKind::Write, 1000, 8);
    let mut out = Vec::new();
    let on0 = *ops.iter().find(|o| o.member == 0).unwrap();
    let on1 = *ops.iter().find(|o| o.member == 1).unwrap();
    a.complete_request(&mut req, done(on0, -libc::EIO), &mut out);
    assert_eq!(
        a.complete_request(&mut req, done(on1, full(&on1)), &mut out),
        Progress::Done { success: false },
        "sector 1000 is above the checkpoint: it could not be read back"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_rebuild_source_read_error_lists_the_range_on_the_new_member_and_goes_on() {
    let (dir, disks) = scratch(3, 4);
    let (mut a, _) = open(&disks[..2], false).unwrap();
    replace_role_1(&mut a, &disks, 2);
    let StepPlan::Step(mut step) = a.plan_step() else {
        panic!("a rebuild step")
    };
    let mut ops = Vec::new();
    assert_eq!(a.step_reads(&mut step, &mut ops), StepNext::Issue);
    let read = ops[0];
    assert_eq!(read.member, 0);
    assert_eq!(
        a.step_member_done(&mut step, read, -libc::EIO, || false, &mut ops),
        StepNext::Done
    );
    a.step_done(&step);
    assert_eq!(
        a.roles[0].state,
        RoleState::Active,
        "the source is never failed for it"
    );
    assert!(a.roles[1]
        .bad
        .overlaps(step.step.sector_on(1), step.step.sectors));
    assert!(
        a.checkpoint() >= step.step.lba + step.step.sectors,
        "the rebuild goes on"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_step_of_a_replaced_job_changes_nothing() {
    let (dir, disks) = scratch(4, 4);
    let (mut a, _) = open(&disks[..2], false).unwrap();
    replace_role_1(&mut a, &disks, 2);
    let StepPlan::Step(mut old) = a.plan_step() else {
        panic!("a rebuild step")
    };
    let mut ops = Vec::new();
    a.step_reads(&mut old, &mut ops);
    // The new disk fails too and another takes the role: the rebuild restarts.
    replace_role_1(&mut a, &disks, 3);
    let StepPlan::Step(new) = a.plan_step() else {
        panic!("a new rebuild step")
    };
    let read = ops[0];
    assert_eq!(
        a.step_member_done(&mut old, read, full_step(&read), || false, &mut ops),
        StepNext::Done,
        "no write for a replaced job"
    );
    a.step_done(&old);
    assert_eq!(
        a.sync.as_ref().unwrap().steps_in_flight(),
        1,
        "the new job's step is untouched"
    );
    assert_eq!(
        a.checkpoint(),
        0,
        "its checkpoint does not move past its step in flight"
    );
    let _ = new;
    let _ = std::fs::remove_dir_all(dir);
}

fn full_step(op: &StepOp) -> i32 {
    op.bytes as i32
}

#[test]
fn a_scrub_read_error_is_repaired_from_the_other_copy() {
    let (dir, mut a) = pair();
    let id = a.new_job_id();
    a.sync = Some(SyncJob::new(
        SyncKind::Scrub { repair: false },
        0,
        a.sectors(),
        id,
    ));
    let StepPlan::Step(mut step) = a.plan_step() else {
        panic!("a scrub step")
    };
    let mut ops = Vec::new();
    a.step_reads(&mut step, &mut ops);
    assert_eq!(ops.len(), 2);
    let (src, cmp) = (ops[0], ops[1]);
    assert_eq!(
        a.step_member_done(&mut step, src, -libc::EIO, || false, &mut ops),
        StepNext::Waiting
    );
    assert_eq!(
        a.step_member_done(&mut step, cmp, full_step(&cmp), || false, &mut ops),
        StepNext::Issue
    );
    assert_eq!(
        (ops[0].kind, ops[0].member, ops[0].second_buffer),
        (StepOpKind::Write, src.member, true),
        "the good copy is written over the bad one"
    );
    assert_eq!(a.roles[src.member as usize].state, RoleState::Active);
    let _ = std::fs::remove_dir_all(dir);
}
