//! The shelf console over Ethernet: Coraid's CEC protocol (EtherType 0xBCBC). `frame` reads
//! and builds its frames, `socket` moves them, `editor` and `session` are one session's
//! state machine, `server` runs the shelf's side and `client` is `ethershelf cec`.

pub mod cli;
pub mod client;
pub mod counters;
pub mod editor;
pub mod frame;
pub mod guard;
pub mod server;
pub mod session;
pub mod socket;

pub use counters::{CecCounters, CecSample};
