//! Deciding how an array assembles from the superblocks found on its member paths: which
//! member plays which role, which members are stale (older event counter: never trusted, must
//! be rebuilt), and whether every chunk still has a copy. Refusals are clear sentences.

use super::{Layout, MemberState, Superblock};

/// How the members came together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembly {
    /// The array's identity.
    pub array_uuid: [u8; 16],
    /// The newest event counter among the members.
    pub event: u64,
    /// Path index serving each role (`None`: missing, failed or stale).
    pub roles: Vec<Option<usize>>,
    /// Paths holding an older copy of this array: to be rebuilt, never read.
    pub stale: Vec<usize>,
    /// Paths that are hot spares of this array.
    pub spares: Vec<usize>,
    /// True when the newest superblock says writes may have been in flight (resync needed).
    pub dirty: bool,
}

impl Assembly {
    /// True when some role has no member.
    pub fn degraded(&self) -> bool {
        self.roles.iter().any(Option::is_none)
    }
}

/// The members cannot form a safe array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    /// No member carries a superblock.
    #[error("none of the members carries an array superblock (create the array first)")]
    Empty,
    /// A path belongs to another array.
    #[error(
        "member {path} belongs to another array; remove it from the list or wipe it deliberately"
    )]
    Foreign {
        /// Path index.
        path: usize,
    },
    /// Two current members claim one role.
    #[error("members {a} and {b} both claim role {role} of the array")]
    DuplicateRole {
        /// Role.
        role: u32,
        /// First path.
        a: usize,
        /// Second path.
        b: usize,
    },
    /// Current members disagree on the geometry.
    #[error("member {path} disagrees on the array geometry (members, chunk or sizes)")]
    Geometry {
        /// Path index.
        path: usize,
    },
    /// Both copies of some chunk are gone.
    #[error("roles {0:?} are missing and hold both copies of some chunks: the array cannot start without losing data")]
    Unavailable(Vec<u32>),
    /// Two members each ran without the other (they were started apart): their data
    /// diverged and neither can be trusted blindly.
    #[error("split brain: the member at path {path} (role {role}) went on writing (event {its_event}) after the newest members last saw it in sync (event {seen}); each side has writes the other lacks. Start with --force-assemble to keep the newest side (the other side's writes since then are lost), or remove that disk")]
    SplitBrain {
        /// Index of the diverged member's path.
        path: usize,
        /// Its role.
        role: u32,
        /// Its event counter.
        its_event: u64,
        /// The last event at which the newest side saw its role in sync.
        seen: u64,
    },
    /// Degraded start not allowed.
    #[error("roles {0:?} are missing; start degraded only if the configuration allows it (degraded_start: true)")]
    DegradedNotAllowed(Vec<u32>),
}

/// Assembles from `found`: (path index, superblock) for every member path that had one.
pub fn assemble(
    found: &[(usize, Superblock)],
    allow_degraded: bool,
    force: bool,
) -> Result<Assembly, AssembleError> {
    // The newest superblock is the authority; on a tie, the member listed first.
    let (newest_path, newest) = found
        .iter()
        .max_by(|a, b| a.1.event.cmp(&b.1.event).then(b.0.cmp(&a.0)))
        .map(|(p, sb)| (*p, sb.clone()))
        .ok_or(AssembleError::Empty)?;
    // Split brain: a member that says it was in sync, and went on writing events after the
    // newest superblock last saw its role in sync, ran on its own while the newest side ran
    // without it (with equal event counters too: each side may have counted as far).
    let mut diverged = Vec::new();
    for (path, sb) in found.iter().filter(|(p, _)| *p != newest_path) {
        let seen = newest
            .seen
            .as_ref()
            .filter(|_| sb.state == MemberState::Active && sb.array_uuid == newest.array_uuid)
            .and_then(|s| s.get(sb.role as usize).copied());
        if let Some(seen) = seen.filter(|seen| sb.event > *seen) {
            if !force {
                return Err(AssembleError::SplitBrain {
                    path: *path,
                    role: sb.role,
                    its_event: sb.event,
                    seen,
                });
            }
            // Forced: the newest side wins; this one is rebuilt from it.
            diverged.push(*path);
        }
    }
    let mut roles: Vec<Option<usize>> = vec![None; newest.members as usize];
    let (mut stale, mut spares) = (Vec::new(), Vec::new());
    for (path, sb) in found {
        if sb.array_uuid != newest.array_uuid {
            return Err(AssembleError::Foreign { path: *path });
        }
        if sb.members != newest.members
            || sb.chunk_sectors != newest.chunk_sectors
            || sb.array_sectors != newest.array_sectors
            || sb.member_sectors != newest.member_sectors
        {
            if sb.event == newest.event {
                return Err(AssembleError::Geometry { path: *path });
            }
            stale.push(*path);
            continue;
        }
        match sb.state {
            MemberState::Spare => spares.push(*path),
            MemberState::Failed => stale.push(*path),
            _ if sb.event < newest.event || diverged.contains(path) => stale.push(*path),
            _ => {
                let slot = &mut roles[sb.role as usize];
                if let Some(a) = *slot {
                    return Err(AssembleError::DuplicateRole {
                        role: sb.role,
                        a,
                        b: *path,
                    });
                }
                *slot = Some(*path);
            }
        }
    }
    let missing: Vec<u32> = roles
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_none())
        .map(|(r, _)| r as u32)
        .collect();
    if !missing.is_empty() {
        // The pairing pattern repeats every `members` chunks.
        let layout = Layout::new(
            newest.members as usize,
            newest.chunk_sectors as u64,
            newest.chunk_sectors as u64 * newest.members as u64,
        )
        .map_err(|_| AssembleError::Geometry { path: found[0].0 })?;
        let lost = (0..newest.members as u64).any(|chunk| {
            layout
                .locate(chunk * newest.chunk_sectors as u64)
                .iter()
                .all(|(m, _)| roles[*m].is_none())
        });
        if lost {
            return Err(AssembleError::Unavailable(missing));
        }
        let newly_missing: Vec<u32> = missing
            .iter()
            .copied()
            .filter(|r| !newest.knew_out(*r as usize))
            .collect();
        if !allow_degraded && !newly_missing.is_empty() {
            return Err(AssembleError::DegradedNotAllowed(newly_missing));
        }
    }
    Ok(Assembly {
        array_uuid: newest.array_uuid,
        event: newest.event,
        roles,
        stale,
        spares,
        dirty: newest.dirty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(role: u32, members: u32, event: u64) -> Superblock {
        Superblock {
            array_uuid: [1; 16],
            role,
            members,
            chunk_sectors: 128,
            event,
            dirty: false,
            state: MemberState::Active,
            data_offset: 2048,
            member_sectors: 1 << 20,
            array_sectors: members as u64 * (1 << 19),
            rebuild_checkpoint: 0,
            home: None,
            seen: None,
        }
    }

    #[test]
    fn members_in_any_order_find_their_roles() {
        let found = vec![
            (0, sb(2, 4, 5)),
            (1, sb(0, 4, 5)),
            (2, sb(3, 4, 5)),
            (3, sb(1, 4, 5)),
        ];
        let a = assemble(&found, false, false).unwrap();
        assert_eq!(a.roles, vec![Some(1), Some(3), Some(0), Some(2)]);
        assert!(!a.degraded() && a.stale.is_empty());
    }

    #[test]
    fn a_stale_member_is_never_trusted() {
        let found = vec![
            (0, sb(0, 4, 9)),
            (1, sb(1, 4, 8)),
            (2, sb(2, 4, 9)),
            (3, sb(3, 4, 9)),
        ];
        assert_eq!(
            assemble(&found, false, false),
            Err(AssembleError::DegradedNotAllowed(vec![1]))
        );
        let a = assemble(&found, true, false).unwrap();
        assert_eq!(a.stale, vec![1]);
        assert_eq!(a.roles[1], None);
        assert!(a.degraded());
    }

    #[test]
    fn losing_both_copies_refuses_to_start() {
        // Roles 0 and 1 mirror each other in a 4-member near-2 array.
        let found = vec![(0, sb(2, 4, 3)), (1, sb(3, 4, 3))];
        assert_eq!(
            assemble(&found, true, false),
            Err(AssembleError::Unavailable(vec![0, 1]))
        );
        // Roles 0 and 2 are in different pairs: degraded but complete.
        let found = vec![(0, sb(1, 4, 3)), (1, sb(3, 4, 3))];
        assert!(assemble(&found, true, false).unwrap().degraded());
        // With 3 members every adjacent pair shares chunks: any two missing loses data.
        let found = vec![(0, sb(2, 3, 3))];
        assert!(matches!(
            assemble(&found, true, false),
            Err(AssembleError::Unavailable(_))
        ));
    }

    #[test]
    fn foreign_duplicate_and_mismatched_members_are_refused() {
        let mut other = sb(1, 2, 1);
        other.array_uuid = [2; 16];
        assert_eq!(
            assemble(&[(0, sb(0, 2, 1)), (1, other)], true, false),
            Err(AssembleError::Foreign { path: 1 })
        );
        assert_eq!(
            assemble(&[(0, sb(0, 2, 1)), (1, sb(0, 2, 1))], true, false),
            Err(AssembleError::DuplicateRole {
                role: 0,
                a: 0,
                b: 1
            })
        );
        let mut odd = sb(1, 2, 1);
        odd.chunk_sectors = 256;
        assert_eq!(
            assemble(&[(0, sb(0, 2, 1)), (1, odd)], true, false),
            Err(AssembleError::Geometry { path: 1 })
        );
        assert_eq!(assemble(&[], true, false), Err(AssembleError::Empty));
    }

    #[test]
    fn spares_and_failed_members_are_sorted_out() {
        let mut spare = sb(0, 2, 4);
        spare.state = MemberState::Spare;
        let mut failed = sb(1, 2, 4);
        failed.state = MemberState::Failed;
        let a = assemble(&[(0, sb(0, 2, 4)), (1, failed), (2, spare)], true, false).unwrap();
        assert_eq!((a.spares.clone(), a.stale.clone()), (vec![2], vec![1]));
        assert_eq!(a.roles, vec![Some(0), None]);
    }
}
