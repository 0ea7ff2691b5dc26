//! A LUN's protocol state: the config string, the MAC mask list and the reservation list,
//! with the exact AoE rules for each command and atomic persistence in `state_dir`.
//!
//! Per-frame checks (mask, reservation) read a lock-free snapshot (`ArcSwap`); the rare
//! commands that change state take a lock and persist before the reply is sent.

mod persist;
mod registry;
mod state;

pub use persist::{state_path, write_atomic, PersistError, StateFile};
pub use registry::{Book, LunKind, LunRecord, BOOK_FILE};
pub use state::{AccessLists, ConfigOutcome, LunState, MaskOutcome, ReserveOutcome, MASK_LIST_MAX};

#[cfg(test)]
mod tests;
