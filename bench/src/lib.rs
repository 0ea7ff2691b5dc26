//! aoebench: a userspace AoE initiator library and load generator. It depends on the engine's
//! wire codec only: it is a peer on the wire, not a user of engine internals.

pub mod discover;
pub mod engine;
pub mod flood;
pub mod job;
pub mod nbd;
pub mod null_target;
pub mod pattern;
pub mod relay;
pub mod report;
pub mod socket;
pub mod transfer;
