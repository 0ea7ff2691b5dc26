//! ethershelf: an ATA-over-Ethernet storage shelf engine.
//!
//! `wire` parses and builds frames; `ata` and `lun` give them meaning; `store` reads and
//! writes the backing files with io_uring; `net` moves frames; `worker` ties a batch of
//! frames to a batch of I/O; `shelf` builds it all from a configuration.

pub mod admin;
pub mod affinity;
pub mod appliance;
pub mod ata;
pub mod cec;
pub mod docs;
pub mod lun;
pub mod mapping;
pub mod metrics;
pub mod net;
pub mod shelf;
pub mod store;
pub mod systemd;
pub mod wire;
pub mod worker;
