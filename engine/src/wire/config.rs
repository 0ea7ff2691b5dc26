//! Command 1, Query Config Information: the 8-byte argument and the config string.

use super::error::{check_len, check_room};
use super::WireError;

/// Length of the config argument header.
pub const CONFIG_HEADER_LEN: usize = 8;
/// Longest config string the protocol allows.
pub const CONFIG_STRING_MAX: usize = 1024;

/// Config subcommands (CCmd, low nibble of byte 5 of the argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigCommand {
    /// 0: read the string.
    Read,
    /// 1: reply only if the string matches exactly.
    Test,
    /// 2: reply only if the request's string is a prefix of ours.
    Prefix,
    /// 3: set if empty (or identical), else error 4.
    Set,
    /// 4: set unconditionally.
    ForceSet,
    /// 5..=15: not defined.
    Other(u8),
}

impl From<u8> for ConfigCommand {
    fn from(v: u8) -> Self {
        match v & 0x0f {
            0 => ConfigCommand::Read,
            1 => ConfigCommand::Test,
            2 => ConfigCommand::Prefix,
            3 => ConfigCommand::Set,
            4 => ConfigCommand::ForceSet,
            other => ConfigCommand::Other(other),
        }
    }
}

impl From<ConfigCommand> for u8 {
    fn from(c: ConfigCommand) -> u8 {
        match c {
            ConfigCommand::Read => 0,
            ConfigCommand::Test => 1,
            ConfigCommand::Prefix => 2,
            ConfigCommand::Set => 3,
            ConfigCommand::ForceSet => 4,
            ConfigCommand::Other(v) => v & 0x0f,
        }
    }
}

/// A zero-copy view of a config argument, starting at frame offset 24.
#[derive(Debug, Clone, Copy)]
pub struct ConfigPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ConfigPacket<T> {
    /// Wraps `buffer` after checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len(buffer.as_ref(), CONFIG_HEADER_LEN)?;
        Ok(ConfigPacket { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Buffer count.
    pub fn buffer_count(&self) -> u16 {
        u16::from_be_bytes([self.b()[0], self.b()[1]])
    }
    /// Firmware version.
    pub fn firmware(&self) -> u16 {
        u16::from_be_bytes([self.b()[2], self.b()[3]])
    }
    /// Sector count (0 means 2).
    pub fn sector_count(&self) -> u8 {
        self.b()[4]
    }
    /// AoE version supported (high nibble of byte 5).
    pub fn aoe_version(&self) -> u8 {
        self.b()[5] >> 4
    }
    /// The subcommand.
    pub fn command(&self) -> ConfigCommand {
        ConfigCommand::from(self.b()[5])
    }
    /// The string length field.
    pub fn string_len(&self) -> usize {
        u16::from_be_bytes([self.b()[6], self.b()[7]]) as usize
    }
}

/// A parsed config argument; the string borrows from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigRepr<'a> {
    /// Outstanding requests the target can queue.
    pub buffer_count: u16,
    /// Firmware version.
    pub firmware: u16,
    /// Most sectors per ATA request (0 means 2).
    pub sector_count: u8,
    /// Protocol version (1).
    pub aoe_version: u8,
    /// Subcommand.
    pub command: ConfigCommand,
    /// The config string.
    pub string: &'a [u8],
}

impl<'a> ConfigRepr<'a> {
    /// Parses the argument; fails if the string length exceeds 1024 or the frame.
    pub fn parse(packet: &ConfigPacket<&'a [u8]>) -> Result<Self, WireError> {
        let buf: &'a [u8] = packet.buffer;
        check_len(buf, CONFIG_HEADER_LEN)?;
        let len = packet.string_len();
        if len > CONFIG_STRING_MAX || CONFIG_HEADER_LEN + len > buf.len() {
            return Err(WireError::BadLength(len));
        }
        Ok(ConfigRepr {
            buffer_count: packet.buffer_count(),
            firmware: packet.firmware(),
            sector_count: packet.sector_count(),
            aoe_version: packet.aoe_version(),
            command: packet.command(),
            string: &buf[CONFIG_HEADER_LEN..CONFIG_HEADER_LEN + len],
        })
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        CONFIG_HEADER_LEN + self.string.len()
    }

    /// Writes the argument and the string into `buf` (starting at frame offset 24).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        if self.string.len() > CONFIG_STRING_MAX {
            return Err(WireError::BadLength(self.string.len()));
        }
        check_room(buf, self.buffer_len())?;
        buf[0..2].copy_from_slice(&self.buffer_count.to_be_bytes());
        buf[2..4].copy_from_slice(&self.firmware.to_be_bytes());
        buf[4] = self.sector_count;
        buf[5] = (self.aoe_version << 4) | u8::from(self.command);
        buf[6..8].copy_from_slice(&(self.string.len() as u16).to_be_bytes());
        buf[CONFIG_HEADER_LEN..self.buffer_len()].copy_from_slice(self.string);
        Ok(())
    }
}
