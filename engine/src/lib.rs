//! ethershelf: an ATA-over-Ethernet storage shelf engine.
pub mod wire;
