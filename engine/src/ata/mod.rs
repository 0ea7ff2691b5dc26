//! ATA semantics over AoE: which command a request is, the IDENTIFY page, SMART pages and
//! the status/error registers of replies.

mod command;
mod identify;
mod smart;

pub use command::{decode, AtaCommand, AtaRejection, SmartCommand};
pub use identify::{identify_page, IdentifyInfo};
pub use smart::{
    smart_read_data_page, SMART_LBA_HIGH, SMART_LBA_MID, SMART_THRESHOLD_LBA_HIGH,
    SMART_THRESHOLD_LBA_MID,
};

/// Status register: device ready.
pub const STATUS_DRDY: u8 = 0x40;
/// Status register: error.
pub const STATUS_ERR: u8 = 0x01;
/// Error register: uncorrectable data (I/O error).
pub const ERROR_UNC: u8 = 0x40;
/// Error register: sector not found (out of range).
pub const ERROR_IDNF: u8 = 0x10;
/// Error register: command aborted (unsupported, bad count, read-only).
pub const ERROR_ABRT: u8 = 0x04;

/// The registers of an ATA reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtaOutcome {
    /// Status register.
    pub status: u8,
    /// Error register.
    pub error: u8,
    /// Sector count register.
    pub sector_count: u8,
}

impl AtaOutcome {
    /// Success with a zero count.
    pub const OK: AtaOutcome = AtaOutcome {
        status: STATUS_DRDY,
        error: 0,
        sector_count: 0,
    };

    /// Failure: DRDY|ERR with `error` (ABRT, IDNF or UNC).
    pub const fn failed(error: u8) -> AtaOutcome {
        AtaOutcome {
            status: STATUS_DRDY | STATUS_ERR,
            error,
            sector_count: 0,
        }
    }
}

#[cfg(test)]
mod tests;
