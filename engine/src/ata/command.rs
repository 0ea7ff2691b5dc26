//! Decoding an ATA request into what the shelf must do.

use super::{ERROR_ABRT, ERROR_IDNF};
use crate::wire::AtaRepr;

/// What an ATA request asks for, already checked against the LUN and the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtaCommand {
    /// READ SECTORS (EXT).
    Read {
        /// First sector.
        lba: u64,
        /// Sectors.
        count: u8,
    },
    /// WRITE SECTORS (EXT); the data follows the header in the frame.
    Write {
        /// First sector.
        lba: u64,
        /// Sectors.
        count: u8,
    },
    /// IDENTIFY DEVICE.
    Identify,
    /// FLUSH CACHE or FLUSH CACHE EXT.
    Flush,
    /// CHECK POWER MODE.
    CheckPowerMode,
    /// SMART with a subcommand.
    Smart(SmartCommand),
}

/// SMART subcommands we answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmartCommand {
    /// 0xD0 READ DATA.
    ReadData,
    /// 0xD8 ENABLE OPERATIONS / 0xD9 DISABLE OPERATIONS / 0xDB autosave / 0xD4 offline
    /// immediate: accepted, nothing to do on a virtual disk.
    Accept,
    /// 0xDA RETURN STATUS.
    ReturnStatus,
}

/// Why a request is refused, as the ATA error register bit to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtaRejection {
    /// Unsupported opcode or subcommand.
    Unsupported(u8),
    /// Count is zero or above what the port advertises.
    BadCount(u8),
    /// Write payload shorter than count x 512.
    ShortPayload,
    /// Write to a read-only LUN.
    ReadOnly,
    /// LBA + count past the end of the LUN.
    OutOfRange,
}

impl AtaRejection {
    /// The ATA error register value for this rejection.
    pub fn error_bits(self) -> u8 {
        match self {
            AtaRejection::OutOfRange => ERROR_IDNF,
            _ => ERROR_ABRT,
        }
    }
}

/// Opcodes.
mod op {
    pub const READ: u8 = 0x20;
    pub const READ_EXT: u8 = 0x24;
    pub const WRITE: u8 = 0x30;
    pub const WRITE_EXT: u8 = 0x34;
    pub const IDENTIFY: u8 = 0xEC;
    pub const CHECK_POWER_MODE: u8 = 0xE5;
    pub const FLUSH: u8 = 0xE7;
    pub const FLUSH_EXT: u8 = 0xEA;
    pub const SMART: u8 = 0xB0;
}

/// Decodes `ata` for a LUN of `lun_sectors` sectors served on a port that advertises
/// `max_sectors`, with `payload_len` data bytes after the ATA header.
pub fn decode(
    ata: &AtaRepr,
    lun_sectors: u64,
    max_sectors: u8,
    payload_len: usize,
    read_only: bool,
) -> Result<AtaCommand, AtaRejection> {
    let opcode = ata.cmd_status;
    let (write, ext) = match opcode {
        op::READ => (false, false),
        op::READ_EXT => (false, true),
        op::WRITE => (true, false),
        op::WRITE_EXT => (true, true),
        op::IDENTIFY => return Ok(AtaCommand::Identify),
        op::CHECK_POWER_MODE => return Ok(AtaCommand::CheckPowerMode),
        op::FLUSH | op::FLUSH_EXT => return Ok(AtaCommand::Flush),
        op::SMART => return decode_smart(ata),
        other => return Err(AtaRejection::Unsupported(other)),
    };
    // LBA28 keys on the opcode: the high nibble of lba3 carries the device register.
    let lba = if ext { ata.lba48() } else { ata.lba28() };
    let count = ata.sector_count;
    if count == 0 || count > max_sectors {
        return Err(AtaRejection::BadCount(count));
    }
    if lba
        .checked_add(count as u64)
        .is_none_or(|end| end > lun_sectors)
    {
        return Err(AtaRejection::OutOfRange);
    }
    if write {
        if read_only {
            return Err(AtaRejection::ReadOnly);
        }
        if payload_len < count as usize * crate::wire::SECTOR_SIZE {
            return Err(AtaRejection::ShortPayload);
        }
        Ok(AtaCommand::Write { lba, count })
    } else {
        Ok(AtaCommand::Read { lba, count })
    }
}

fn decode_smart(ata: &AtaRepr) -> Result<AtaCommand, AtaRejection> {
    if ata.lba[1] != super::SMART_LBA_MID || ata.lba[2] != super::SMART_LBA_HIGH {
        return Err(AtaRejection::Unsupported(op::SMART));
    }
    match ata.err_feature {
        0xD0 => Ok(AtaCommand::Smart(SmartCommand::ReadData)),
        0xDA => Ok(AtaCommand::Smart(SmartCommand::ReturnStatus)),
        0xD4 | 0xD8 | 0xD9 | 0xDB => Ok(AtaCommand::Smart(SmartCommand::Accept)),
        _ => Err(AtaRejection::Unsupported(op::SMART)),
    }
}
