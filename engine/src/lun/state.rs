//! Command semantics for config strings (command 1), mask lists (2) and reservations (3).

use super::persist::{PersistError, StateFile};
use crate::wire::{
    ConfigCommand, DirectiveCommand, MacAddr, MaskCommand, MaskError, ReserveCommand,
    CONFIG_STRING_MAX,
};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;

/// Most MACs in a mask list (AoE's Dir Count is one byte).
pub const MASK_LIST_MAX: usize = 255;

/// The lists checked on every frame, swapped in whole when they change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLists {
    /// Allowed initiators; empty = everyone.
    pub mask: Vec<MacAddr>,
    /// Reserving initiators; empty = not reserved.
    pub reserve: Vec<MacAddr>,
}

impl AccessLists {
    /// May `mac` talk to this LUN at all?
    pub fn admits(&self, mac: MacAddr) -> bool {
        self.mask.is_empty() || self.mask.contains(&mac)
    }
    /// Is the LUN reserved by someone other than `mac`?
    pub fn reserved_against(&self, mac: MacAddr) -> bool {
        !self.reserve.is_empty() && !self.reserve.contains(&mac)
    }
}

/// What to answer a config command with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// Reply with the current string.
    Reply(Vec<u8>),
    /// Stay silent (test/prefix mismatch).
    Silent,
    /// AoE error: 4 (string present) or 2 (bad argument).
    Error(u8),
}

/// What to answer a mask command with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskOutcome {
    /// Reply with the list (MError 0).
    List(Vec<MacAddr>),
    /// Edit failed at directive `index` with `error`; no list.
    EditFailed {
        /// MError.
        error: MaskError,
        /// Index of the failing directive (sent as Dir Count).
        index: u8,
    },
    /// AoE error 2 (unknown MCmd).
    BadArgument,
}

/// What to answer a reserve command with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Reply with the list.
    List(Vec<MacAddr>),
    /// AoE error code (6 reserved, 2 bad argument).
    Error(u8),
}

/// The mutable protocol state of one LUN.
pub struct LunState {
    inner: Mutex<StateFile>,
    access: ArcSwap<AccessLists>,
    path: PathBuf,
}

fn to_macs(raw: &[[u8; 6]]) -> Vec<MacAddr> {
    raw.iter().map(|m| MacAddr(*m)).collect()
}

impl LunState {
    /// Loads the state at `path`, or starts from `initial_mask` when there is none.
    pub fn open(path: PathBuf, initial_mask: &[[u8; 6]]) -> Result<LunState, PersistError> {
        let state = match StateFile::load(&path)? {
            Some(s) => s,
            None => StateFile {
                mask: initial_mask.to_vec(),
                ..Default::default()
            },
        };
        let access = AccessLists {
            mask: to_macs(&state.mask),
            reserve: to_macs(&state.reserve),
        };
        Ok(LunState {
            inner: Mutex::new(state),
            access: ArcSwap::from_pointee(access),
            path,
        })
    }

    /// The state of a LUN that no longer exists: empty, never persisted (nothing reaches it).
    pub fn detached() -> LunState {
        LunState {
            inner: Mutex::new(StateFile::default()),
            access: ArcSwap::from_pointee(AccessLists::default()),
            path: PathBuf::new(),
        }
    }

    /// Where the state persists.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Console edit of the mask list: adds `add`, removes `remove`, persists; returns the new
    /// list. Refused (state unchanged) if the list would exceed [`MASK_LIST_MAX`].
    pub fn edit_mask(&self, add: &[MacAddr], remove: &[MacAddr]) -> Result<Vec<MacAddr>, String> {
        let mut state = self.inner.lock();
        let mut change = state.clone();
        change.mask.retain(|m| !remove.iter().any(|r| r.0 == *m));
        for a in add {
            if !change.mask.contains(&a.0) {
                change.mask.push(a.0);
            }
        }
        if change.mask.len() > MASK_LIST_MAX {
            return Err(format!(
                "a mask list holds at most {MASK_LIST_MAX} addresses"
            ));
        }
        self.commit(&mut state, change).map_err(|e| e.to_string())?;
        Ok(to_macs(&state.mask))
    }

    /// The lists for per-frame checks; lock-free.
    pub fn access(&self) -> arc_swap::Guard<Arc<AccessLists>> {
        self.access.load()
    }

    /// The current config string.
    pub fn config_string(&self) -> Vec<u8> {
        self.inner.lock().config_string.clone()
    }

    /// Applies `change` to the state, persists it, and publishes the new lists. On a
    /// persistence failure the state is left as it was.
    fn commit(&self, state: &mut StateFile, change: StateFile) -> Result<(), PersistError> {
        change.store(&self.path)?;
        *state = change;
        self.access.store(Arc::new(AccessLists {
            mask: to_macs(&state.mask),
            reserve: to_macs(&state.reserve),
        }));
        Ok(())
    }

    /// Runs a Query Config subcommand with the request's string.
    pub fn config(
        &self,
        command: ConfigCommand,
        string: &[u8],
    ) -> Result<ConfigOutcome, PersistError> {
        let mut state = self.inner.lock();
        let current = &state.config_string;
        match command {
            ConfigCommand::Read => Ok(ConfigOutcome::Reply(current.clone())),
            ConfigCommand::Test if string == current.as_slice() => {
                Ok(ConfigOutcome::Reply(current.clone()))
            }
            ConfigCommand::Prefix if current.starts_with(string) => {
                Ok(ConfigOutcome::Reply(current.clone()))
            }
            ConfigCommand::Test | ConfigCommand::Prefix => Ok(ConfigOutcome::Silent),
            _ if string.len() > CONFIG_STRING_MAX => Ok(ConfigOutcome::Error(2)),
            // A retransmitted set of the identical string succeeds.
            ConfigCommand::Set if !current.is_empty() && current.as_slice() != string => {
                Ok(ConfigOutcome::Error(4))
            }
            ConfigCommand::Set | ConfigCommand::ForceSet => {
                if current.as_slice() != string {
                    let change = StateFile {
                        config_string: string.to_vec(),
                        ..state.clone()
                    };
                    self.commit(&mut state, change)?;
                }
                Ok(ConfigOutcome::Reply(string.to_vec()))
            }
            ConfigCommand::Other(_) => Ok(ConfigOutcome::Error(2)),
        }
    }

    /// Runs a MAC Mask List command.
    pub fn mask(
        &self,
        command: MaskCommand,
        directives: impl Iterator<Item = (DirectiveCommand, MacAddr)>,
    ) -> Result<MaskOutcome, PersistError> {
        let mut state = self.inner.lock();
        match command {
            MaskCommand::Read => Ok(MaskOutcome::List(to_macs(&state.mask))),
            MaskCommand::Edit => {
                let mut mask = state.mask.clone();
                for (index, (cmd, mac)) in directives.enumerate() {
                    let index = index.min(255) as u8;
                    match cmd {
                        DirectiveCommand::NoOp => {}
                        DirectiveCommand::Add if mask.contains(&mac.0) => {}
                        DirectiveCommand::Add if mask.len() >= MASK_LIST_MAX => {
                            return Ok(MaskOutcome::EditFailed {
                                error: MaskError::ListFull,
                                index,
                            })
                        }
                        DirectiveCommand::Add => mask.push(mac.0),
                        DirectiveCommand::Delete => mask.retain(|m| *m != mac.0),
                        DirectiveCommand::Other(_) => {
                            return Ok(MaskOutcome::EditFailed {
                                error: MaskError::BadDirective,
                                index,
                            })
                        }
                    }
                }
                if mask != state.mask {
                    let change = StateFile {
                        mask,
                        ..state.clone()
                    };
                    self.commit(&mut state, change)?;
                }
                Ok(MaskOutcome::List(to_macs(&state.mask)))
            }
            MaskCommand::Other(_) => Ok(MaskOutcome::BadArgument),
        }
    }

    /// Runs a Reserve/Release command from `sender`.
    pub fn reserve(
        &self,
        command: ReserveCommand,
        sender: MacAddr,
        macs: impl Iterator<Item = MacAddr>,
    ) -> Result<ReserveOutcome, PersistError> {
        let mut state = self.inner.lock();
        let replace = match command {
            ReserveCommand::Read => return Ok(ReserveOutcome::List(to_macs(&state.reserve))),
            ReserveCommand::Set
                if !state.reserve.is_empty() && !state.reserve.contains(&sender.0) =>
            {
                return Ok(ReserveOutcome::Error(6))
            }
            ReserveCommand::Set | ReserveCommand::ForceSet => true,
            ReserveCommand::Other(_) => false,
        };
        if !replace {
            return Ok(ReserveOutcome::Error(2));
        }
        let mut list: Vec<[u8; 6]> = Vec::new();
        for m in macs {
            if !list.contains(&m.0) {
                list.push(m.0);
            }
        }
        if list != state.reserve {
            let change = StateFile {
                reserve: list,
                ..state.clone()
            };
            self.commit(&mut state, change)?;
        }
        Ok(ReserveOutcome::List(to_macs(&state.reserve)))
    }
}
