//! Command 0, Issue ATA Command: the 12-byte argument (frame offsets 24..36) and its data.

use super::error::{check_len, check_room};
use super::WireError;

/// Length of the ATA argument header.
pub const ATA_HEADER_LEN: usize = 12;

/// AFlags byte: `0 E 0 D 0 0 A W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AtaFlags(pub u8);

impl AtaFlags {
    /// E: LBA48 (extended) command.
    pub const EXTENDED: u8 = 0x40;
    /// D: device bit of the ATA device register.
    pub const DEVICE: u8 = 0x10;
    /// A: asynchronous write (no initiator sets it; we ignore it and stay synchronous).
    pub const ASYNC: u8 = 0x02;
    /// W: the request carries write data.
    pub const WRITE: u8 = 0x01;

    /// E flag.
    pub fn extended(self) -> bool {
        self.0 & Self::EXTENDED != 0
    }
    /// W flag.
    pub fn write(self) -> bool {
        self.0 & Self::WRITE != 0
    }
}

mod field {
    pub const AFLAGS: usize = 0;
    pub const ERR_FEATURE: usize = 1;
    pub const SECTOR_COUNT: usize = 2;
    pub const CMD_STATUS: usize = 3;
    pub const LBA: std::ops::Range<usize> = 4..10;
    pub const RESERVED: std::ops::Range<usize> = 10..12;
}

/// A zero-copy view of an ATA argument, starting at frame offset 24.
#[derive(Debug, Clone, Copy)]
pub struct AtaPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AtaPacket<T> {
    /// Wraps `buffer` after checking it holds the 12-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len(buffer.as_ref(), ATA_HEADER_LEN)?;
        Ok(AtaPacket { buffer })
    }
    /// Wraps `buffer` without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        AtaPacket { buffer }
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// AFlags.
    pub fn aflags(&self) -> AtaFlags {
        AtaFlags(self.b()[field::AFLAGS])
    }
    /// Features (request) / Error (response) register.
    pub fn err_feature(&self) -> u8 {
        self.b()[field::ERR_FEATURE]
    }
    /// Sector count.
    pub fn sector_count(&self) -> u8 {
        self.b()[field::SECTOR_COUNT]
    }
    /// Command (request) / Status (response) register.
    pub fn cmd_status(&self) -> u8 {
        self.b()[field::CMD_STATUS]
    }
    /// The six LBA bytes, lba0 first.
    pub fn lba_bytes(&self) -> [u8; 6] {
        let mut lba = [0u8; 6];
        lba.copy_from_slice(&self.b()[field::LBA]);
        lba
    }
    /// The data after the header (write data, read data, IDENTIFY page).
    pub fn data(&self) -> &[u8] {
        &self.b()[ATA_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AtaPacket<T> {
    /// Sets the Error register (response).
    pub fn set_err_feature(&mut self, v: u8) {
        self.buffer.as_mut()[field::ERR_FEATURE] = v;
    }
    /// Sets the sector count.
    pub fn set_sector_count(&mut self, v: u8) {
        self.buffer.as_mut()[field::SECTOR_COUNT] = v;
    }
    /// Sets the Status register (response).
    pub fn set_cmd_status(&mut self, v: u8) {
        self.buffer.as_mut()[field::CMD_STATUS] = v;
    }
    /// Sets the six LBA bytes.
    pub fn set_lba_bytes(&mut self, lba: [u8; 6]) {
        self.buffer.as_mut()[field::LBA].copy_from_slice(&lba);
    }
    /// Mutable data area.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[ATA_HEADER_LEN..]
    }
}

/// The parsed ATA argument header (the data stays in the buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AtaRepr {
    /// AFlags.
    pub aflags: AtaFlags,
    /// Features / Error register.
    pub err_feature: u8,
    /// Sector count.
    pub sector_count: u8,
    /// Command / Status register.
    pub cmd_status: u8,
    /// LBA bytes, lba0 (least significant) first.
    pub lba: [u8; 6],
}

impl AtaRepr {
    /// Parses the 12-byte header.
    pub fn parse<T: AsRef<[u8]>>(packet: &AtaPacket<T>) -> Result<Self, WireError> {
        check_len(packet.b(), ATA_HEADER_LEN)?;
        Ok(AtaRepr {
            aflags: packet.aflags(),
            err_feature: packet.err_feature(),
            sector_count: packet.sector_count(),
            cmd_status: packet.cmd_status(),
            lba: packet.lba_bytes(),
        })
    }

    /// Writes the header (reserved bytes zeroed).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut AtaPacket<T>,
    ) -> Result<(), WireError> {
        check_room(packet.b(), ATA_HEADER_LEN)?;
        let b = packet.buffer.as_mut();
        b[field::AFLAGS] = self.aflags.0;
        b[field::ERR_FEATURE] = self.err_feature;
        b[field::SECTOR_COUNT] = self.sector_count;
        b[field::CMD_STATUS] = self.cmd_status;
        b[field::LBA].copy_from_slice(&self.lba);
        b[field::RESERVED].fill(0);
        Ok(())
    }

    /// The 48-bit LBA (all six bytes, little-endian).
    pub fn lba48(&self) -> u64 {
        let l = self.lba;
        u64::from_le_bytes([l[0], l[1], l[2], l[3], l[4], l[5], 0, 0])
    }

    /// The 28-bit LBA: the high nibble of lba3 carries the device register and is masked.
    pub fn lba28(&self) -> u64 {
        self.lba48() & 0x0FFF_FFFF
    }
}
