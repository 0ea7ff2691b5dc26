//! Command semantics for config strings (command 1), mask lists (2) and reservations (3).

use super::audit::{now_secs, Audit};
use super::persist::{PersistError, SetBy, StateFile};
use super::persister::{Persister, StateCell};
use super::rights::{mac_key, Rights};
use crate::wire::{
    ConfigCommand, DirectiveCommand, MacAddr, MaskCommand, MaskError, ReserveCommand,
    CONFIG_STRING_MAX,
};
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;

/// Most MACs in a mask list (AoE's Dir Count is one byte).
pub const MASK_LIST_MAX: usize = 255;

/// The lists checked on every frame, swapped in whole when they change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLists {
    /// Allowed initiators, in list order; empty = everyone.
    pub mask: Vec<MacAddr>,
    /// Reserving initiators; empty = not reserved.
    pub reserve: Vec<MacAddr>,
    /// Per-operation rights.
    pub rights: Rights,
    /// `mask` and `reserve` as sorted keys: a frame is checked by binary search, so a full
    /// 255-entry list costs 8 comparisons, not 255.
    mask_keys: Vec<u64>,
    reserve_keys: Vec<u64>,
}

fn sorted_keys(macs: &[MacAddr]) -> Vec<u64> {
    let mut keys: Vec<u64> = macs.iter().map(|m| mac_key(m.0)).collect();
    keys.sort_unstable();
    keys
}

impl AccessLists {
    /// The lists as the frame path reads them.
    pub fn new(mask: Vec<MacAddr>, reserve: Vec<MacAddr>, rights: Rights) -> AccessLists {
        AccessLists {
            mask_keys: sorted_keys(&mask),
            reserve_keys: sorted_keys(&reserve),
            mask,
            reserve,
            rights,
        }
    }
    /// May `mac` talk to this LUN at all?
    #[inline]
    pub fn admits(&self, mac: MacAddr) -> bool {
        self.mask_keys.is_empty() || self.mask_keys.binary_search(&mac_key(mac.0)).is_ok()
    }
    /// Is the LUN reserved by someone other than `mac`?
    #[inline]
    pub fn reserved_against(&self, mac: MacAddr) -> bool {
        !self.reserve_keys.is_empty() && self.reserve_keys.binary_search(&mac_key(mac.0)).is_err()
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
    cell: Arc<StateCell>,
    access: ArcSwap<AccessLists>,
    /// Makes changes durable off the frame path (`None`: written before the reply, inline).
    persister: Option<Persister>,
    audit: Audit,
    /// `e<shelf>.<slot>`, for the audit trail.
    name: String,
}

fn set_by(by: &str) -> SetBy {
    SetBy {
        by: by.to_string(),
        at: now_secs(),
    }
}

fn mac_list(macs: &[[u8; 6]]) -> String {
    if macs.is_empty() {
        return "(empty)".into();
    }
    macs.iter()
        .map(|m| MacAddr(*m).to_string())
        .collect::<Vec<_>>()
        .join(" ")
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
        let access = AccessLists::new(
            to_macs(&state.mask),
            to_macs(&state.reserve),
            Rights::default(),
        );
        Ok(LunState {
            cell: Arc::new(StateCell::new(state, path)),
            access: ArcSwap::from_pointee(access),
            persister: None,
            audit: Audit::disabled(),
            name: String::new(),
        })
    }

    /// The shared state: what a parked reply waits on.
    pub fn cell(&self) -> &Arc<StateCell> {
        &self.cell
    }

    /// Console changes are durable before the console answers.
    fn sync_now(&self) -> Result<(), String> {
        if self.persister.is_some() {
            self.cell
                .store_now()
                .map_err(|e| format!("the change is live but could not be saved: {e}"))?;
        }
        Ok(())
    }

    /// Records this LUN's changes, as `name`, in the audit trail, and makes them durable
    /// through the persister (off the frame path) when there is one.
    pub fn with_services(mut self, services: &super::StateServices, name: String) -> LunState {
        self.audit = services.audit.clone();
        self.persister = services.persister.clone();
        self.name = name;
        self
    }

    /// Publishes new rights (the lists checked on every frame are swapped in whole).
    pub fn set_rights(&self, rights: Rights) {
        let _state = self.cell.state.lock();
        let current = self.access.load();
        if current.rights != rights {
            self.access.store(Arc::new(AccessLists::new(
                current.mask.clone(),
                current.reserve.clone(),
                rights,
            )));
        }
    }

    /// The mask list with who added each entry and when.
    pub fn mask_entries(&self) -> Vec<(MacAddr, Option<SetBy>)> {
        let state = self.cell.state.lock();
        state
            .mask
            .iter()
            .map(|m| {
                let origin = state
                    .mask_origin
                    .iter()
                    .find(|(mac, _)| mac == m)
                    .map(|(_, o)| o.clone());
                (MacAddr(*m), origin)
            })
            .collect()
    }

    /// The reservation list, who set it and when.
    pub fn reservation(&self) -> (Vec<MacAddr>, Option<SetBy>) {
        let state = self.cell.state.lock();
        (to_macs(&state.reserve), state.reserve_origin.clone())
    }

    /// Console: releases the reservation whoever holds it; returns the list it had.
    pub fn clear_reservation(&self, by: &str) -> Result<Vec<MacAddr>, String> {
        let old = {
            let mut state = self.cell.state.lock();
            let old = state.reserve.clone();
            if old.is_empty() {
                return Ok(vec![]);
            }
            let change = StateFile {
                reserve: vec![],
                reserve_origin: Some(set_by(by)),
                ..state.clone()
            };
            self.commit(&mut state, change).map_err(|e| e.to_string())?;
            old
        };
        self.sync_now()?;
        self.audit.record(
            by,
            &self.name,
            format!("reservation cleared (was {})", mac_list(&old)),
        );
        Ok(to_macs(&old))
    }

    /// The state of a LUN that no longer exists: empty, never persisted (nothing reaches it).
    pub fn detached() -> LunState {
        LunState {
            cell: Arc::new(StateCell::new(StateFile::default(), PathBuf::new())),
            access: ArcSwap::from_pointee(AccessLists::default()),
            persister: None,
            audit: Audit::disabled(),
            name: String::new(),
        }
    }

    /// Where the state persists.
    pub fn path(&self) -> &std::path::Path {
        &self.cell.path
    }

    /// Console edit of the mask list: adds `add`, removes `remove`, persists; returns the new
    /// list. Refused (state unchanged) if the list would exceed [`MASK_LIST_MAX`].
    pub fn edit_mask(
        &self,
        add: &[MacAddr],
        remove: &[MacAddr],
        by: &str,
    ) -> Result<Vec<MacAddr>, String> {
        let list = self.edit_mask_in_memory(add, remove, by)?;
        self.sync_now()?;
        Ok(list)
    }

    fn edit_mask_in_memory(
        &self,
        add: &[MacAddr],
        remove: &[MacAddr],
        by: &str,
    ) -> Result<Vec<MacAddr>, String> {
        let mut state = self.cell.state.lock();
        let mut change = state.clone();
        change.mask.retain(|m| !remove.iter().any(|r| r.0 == *m));
        for a in add {
            if !change.mask.contains(&a.0) {
                change.mask.push(a.0);
            }
        }
        if change.mask == state.mask {
            return Ok(to_macs(&state.mask));
        }
        stamp_mask(&mut change, &state.mask, by);
        if change.mask.len() > MASK_LIST_MAX {
            return Err(format!(
                "a mask list holds at most {MASK_LIST_MAX} addresses"
            ));
        }
        self.commit(&mut state, change).map_err(|e| e.to_string())?;
        self.audit.record(
            by,
            &self.name,
            format!("mask list set to {}", mac_list(&state.mask)),
        );
        Ok(to_macs(&state.mask))
    }

    /// The lists for per-frame checks; lock-free.
    pub fn access(&self) -> arc_swap::Guard<Arc<AccessLists>> {
        self.access.load()
    }

    /// The current config string.
    pub fn config_string(&self) -> Vec<u8> {
        self.cell.state.lock().config_string.clone()
    }

    /// Applies `change` to the state and publishes the new lists. With a persister the write
    /// is queued (the caller's reply waits for [`StateCell::unsynced`] to clear); without
    /// one it is written first, and on a failure the state is left as it was.
    fn commit(&self, state: &mut StateFile, change: StateFile) -> Result<(), PersistError> {
        if self.persister.is_none() {
            change.store(&self.cell.path)?;
        }
        *state = change;
        let version = self.cell.bump();
        match &self.persister {
            Some(p) => p.queue(&self.cell),
            None => self.cell.mark_durable(version),
        }
        let rights = self.access.load().rights.clone();
        self.access.store(Arc::new(AccessLists::new(
            to_macs(&state.mask),
            to_macs(&state.reserve),
            rights,
        )));
        Ok(())
    }

    /// Runs a Query Config subcommand with the request's string from `sender`; a sender that
    /// may not read the string (`visible` false) is answered as if it were empty.
    pub fn config(
        &self,
        command: ConfigCommand,
        string: &[u8],
        visible: bool,
        sender: MacAddr,
    ) -> Result<ConfigOutcome, PersistError> {
        let mut state = self.cell.state.lock();
        let hidden = Vec::new();
        let current = if visible || matches!(command, ConfigCommand::Set | ConfigCommand::ForceSet)
        {
            &state.config_string
        } else {
            &hidden
        };
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
                    self.audit.record(
                        &format!("host {sender}"),
                        &self.name,
                        format!("config string set to {:?}", String::from_utf8_lossy(string)),
                    );
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
        sender: MacAddr,
    ) -> Result<MaskOutcome, PersistError> {
        let mut state = self.cell.state.lock();
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
                    let by = format!("host {sender}");
                    let mut change = StateFile {
                        mask,
                        ..state.clone()
                    };
                    stamp_mask(&mut change, &state.mask, &by);
                    self.commit(&mut state, change)?;
                    self.audit.record(
                        &by,
                        &self.name,
                        format!("mask list set to {}", mac_list(&state.mask)),
                    );
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
        let mut state = self.cell.state.lock();
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
            let by = format!("host {sender}");
            let change = StateFile {
                reserve: list,
                reserve_origin: Some(set_by(&by)),
                ..state.clone()
            };
            self.commit(&mut state, change)?;
            self.audit.record(
                &by,
                &self.name,
                format!(
                    "reservation {} {}",
                    if command == ReserveCommand::ForceSet {
                        "forced to"
                    } else {
                        "set to"
                    },
                    mac_list(&state.reserve)
                ),
            );
        }
        Ok(ReserveOutcome::List(to_macs(&state.reserve)))
    }
}

/// Keeps the origins of entries still listed and stamps the entries new since `before`.
fn stamp_mask(change: &mut StateFile, before: &[[u8; 6]], by: &str) {
    let now = set_by(by);
    let mask = change.mask.clone();
    change
        .mask_origin
        .retain(|(m, _)| mask.contains(m) && before.contains(m));
    for m in mask.iter().filter(|m| !before.contains(m)) {
        change.mask_origin.push((*m, now.clone()));
    }
}
