use super::*;
use crate::wire::{
    ConfigCommand as C, DirectiveCommand as D, MacAddr, MaskCommand, ReserveCommand as R,
};

/// A LUN state file in a directory of its own, removed when the test ends.
struct TempState {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl Drop for TempState {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_state(name: &str) -> TempState {
    let dir = std::env::temp_dir().join(format!("es-lun-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("lun-1.0.json");
    TempState { dir, path }
}

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

#[test]
fn config_string_rules() {
    let state = temp_state("cfg");
    let s = LunState::open(state.path.clone(), &[]).unwrap();
    assert_eq!(
        s.config(C::Read, b"", true, A).unwrap(),
        ConfigOutcome::Reply(vec![])
    );
    assert_eq!(
        s.config(C::Test, b"x", true, A).unwrap(),
        ConfigOutcome::Silent
    );
    assert_eq!(
        s.config(C::Set, b"host-a", true, A).unwrap(),
        ConfigOutcome::Reply(b"host-a".to_vec())
    );
    assert_eq!(
        s.config(C::Set, b"host-a", true, A).unwrap(),
        ConfigOutcome::Reply(b"host-a".to_vec())
    );
    assert_eq!(
        s.config(C::Set, b"host-b", true, A).unwrap(),
        ConfigOutcome::Error(4)
    );
    assert_eq!(
        s.config(C::Test, b"host-a", true, A).unwrap(),
        ConfigOutcome::Reply(b"host-a".to_vec())
    );
    assert_eq!(
        s.config(C::Test, b"host", true, A).unwrap(),
        ConfigOutcome::Silent
    );
    assert_eq!(
        s.config(C::Prefix, b"host", true, A).unwrap(),
        ConfigOutcome::Reply(b"host-a".to_vec())
    );
    assert_eq!(
        s.config(C::Prefix, b"hosts", true, A).unwrap(),
        ConfigOutcome::Silent
    );
    assert_eq!(
        s.config(C::ForceSet, b"host-b", true, A).unwrap(),
        ConfigOutcome::Reply(b"host-b".to_vec())
    );
    assert_eq!(
        s.config(C::Other(7), b"", true, A).unwrap(),
        ConfigOutcome::Error(2)
    );
}

#[test]
fn state_survives_reopen_and_initial_mask_only_seeds() {
    let state = temp_state("persist");
    let path = state.path.clone();
    let s = LunState::open(path.clone(), &[A.0]).unwrap();
    assert!(s.access().admits(A) && !s.access().admits(B));
    s.config(C::Set, b"owner", true, A).unwrap();
    s.mask(MaskCommand::Edit, [(D::Add, B)].into_iter(), A)
        .unwrap();
    s.reserve(R::Set, A, [A].into_iter()).unwrap();
    drop(s);
    let again = LunState::open(path, &[]).unwrap();
    assert_eq!(again.config_string(), b"owner");
    assert_eq!(again.access().mask, vec![A, B]);
    assert_eq!(again.access().reserve, vec![A]);
}

#[test]
fn mask_edits_apply_in_order_and_stop_at_the_first_failure() {
    let state = temp_state("mask");
    let s = LunState::open(state.path.clone(), &[]).unwrap();
    let out = s
        .mask(
            MaskCommand::Edit,
            [
                (D::Add, A),
                (D::Add, A),
                (D::Add, B),
                (D::Delete, A),
                (D::Delete, A),
            ]
            .into_iter(),
            A,
        )
        .unwrap();
    assert_eq!(out, MaskOutcome::List(vec![B]));
    let out = s
        .mask(
            MaskCommand::Edit,
            [(D::Add, A), (D::Other(9), B)].into_iter(),
            A,
        )
        .unwrap();
    assert_eq!(
        out,
        MaskOutcome::EditFailed {
            error: crate::wire::MaskError::BadDirective,
            index: 1
        }
    );
    assert_eq!(s.access().mask, vec![B], "a failed edit changes nothing");
    let many = (0..=255u8).map(|i| (D::Add, MacAddr([2, 0, 0, 0, 1, i])));
    let out = s.mask(MaskCommand::Edit, many, A).unwrap();
    assert_eq!(
        out,
        MaskOutcome::EditFailed {
            error: crate::wire::MaskError::ListFull,
            index: 254
        }
    );
    assert_eq!(
        s.mask(MaskCommand::Other(5), std::iter::empty(), A)
            .unwrap(),
        MaskOutcome::BadArgument
    );
}

#[test]
fn reservations() {
    let state = temp_state("resv");
    let s = LunState::open(state.path.clone(), &[]).unwrap();
    assert_eq!(
        s.reserve(R::Set, A, [A].into_iter()).unwrap(),
        ReserveOutcome::List(vec![A])
    );
    assert!(s.access().reserved_against(B) && !s.access().reserved_against(A));
    assert_eq!(
        s.reserve(R::Set, B, [B].into_iter()).unwrap(),
        ReserveOutcome::Error(6)
    );
    assert_eq!(
        s.reserve(R::ForceSet, B, [B].into_iter()).unwrap(),
        ReserveOutcome::List(vec![B])
    );
    assert_eq!(
        s.reserve(R::Set, B, std::iter::empty()).unwrap(),
        ReserveOutcome::List(vec![])
    );
    assert!(!s.access().reserved_against(A));
    assert_eq!(
        s.reserve(R::Other(3), A, std::iter::empty()).unwrap(),
        ReserveOutcome::Error(2)
    );
}

#[test]
fn corrupt_state_is_a_clear_error() {
    let state = temp_state("corrupt");
    let path = state.path.clone();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"{not json").unwrap();
    let err = LunState::open(path, &[]).err().unwrap().to_string();
    assert!(err.contains("corrupt state file"), "{err}");
}

#[test]
fn a_hidden_config_string_reads_as_empty_and_origins_are_kept() {
    let state = temp_state("origins");
    let path = state.path.clone();
    let s = LunState::open(path.clone(), &[]).unwrap();
    s.config(C::Set, b"secret", true, A).unwrap();
    assert_eq!(
        s.config(C::Read, b"", false, B).unwrap(),
        ConfigOutcome::Reply(vec![]),
        "a host without config_read sees an empty string"
    );
    assert_eq!(
        s.config(C::Test, b"secret", false, B).unwrap(),
        ConfigOutcome::Silent
    );
    s.mask(MaskCommand::Edit, [(D::Add, A)].into_iter(), B)
        .unwrap();
    s.edit_mask(&[B], &[], "console root").unwrap();
    let entries = s.mask_entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].1.as_ref().unwrap().by, format!("host {B}"));
    assert_eq!(entries[1].1.as_ref().unwrap().by, "console root");
    s.reserve(R::Set, A, [A].into_iter()).unwrap();
    let (holders, origin) = s.reservation();
    assert_eq!(holders, vec![A]);
    assert_eq!(origin.unwrap().by, format!("host {A}"));
    assert_eq!(s.clear_reservation("console root").unwrap(), vec![A]);
    drop(s);
    let again = LunState::open(path.clone(), &[]).unwrap();
    assert!(again.reservation().0.is_empty(), "the clear persisted");
    assert_eq!(
        again.mask_entries()[1].1.as_ref().unwrap().by,
        "console root"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
