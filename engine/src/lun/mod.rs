//! A LUN's protocol state: the config string, the MAC mask list and the reservation list,
//! with the exact AoE rules for each command and atomic persistence in `state_dir`.
//!
//! Per-frame checks (mask, reservation) read a lock-free snapshot (`ArcSwap`); the rare
//! commands that change state take a lock and persist before the reply is sent.

mod access_book;
pub mod audit;
mod persist;
pub mod persister;
mod registry;
pub mod rights;
mod state;

pub use access_book::{AccessBook, ACCESS_FILE};
pub use audit::Audit;
pub use persist::{state_path, write_atomic, PersistError, SetBy, StateFile};
pub use persister::{PersistWake, Persister, StateCell};
pub use registry::{Book, LunKind, LunRecord, BOOK_FILE};
pub use rights::{Refusal, Rights};
pub use state::{AccessLists, ConfigOutcome, LunState, MaskOutcome, ReserveOutcome, MASK_LIST_MAX};

/// What every LUN's state reports to: the audit trail and the persister.
#[derive(Clone, Default)]
pub struct StateServices {
    /// Access-control changes are recorded here.
    pub audit: Audit,
    /// Changes are made durable here (`None`: inline, before the reply).
    pub persister: Option<Persister>,
}

#[cfg(test)]
mod tests;
