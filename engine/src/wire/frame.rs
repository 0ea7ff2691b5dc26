//! The Ethernet header plus the 10-byte common AoE header (frame offsets 0..24).

use super::error::{check_len, check_room};
use super::{MacAddr, WireError};

/// EtherType of AoE.
pub const ETHERTYPE_AOE: u16 = 0x88A2;
/// Ethernet header (14) plus the common AoE header (10).
pub const AOE_HEADER_LEN: usize = 24;
/// The only AoE protocol version.
pub const AOE_VERSION: u8 = 1;
/// Every frame we send is padded to at least this length (the Ethernet minimum without
/// FCS): `aoeping` ignores shorter replies and veth pads nothing.
pub const MIN_FRAME_LEN: usize = 60;

const FLAG_RESPONSE: u8 = 0x08;
const FLAG_ERROR: u8 = 0x04;

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const VER_FLAGS: usize = 14;
    pub const ERROR: usize = 15;
    pub const MAJOR: Range<usize> = 16..18;
    pub const MINOR: usize = 18;
    pub const COMMAND: usize = 19;
    pub const TAG: Range<usize> = 20..24;
}

/// AoE command codes (byte 19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AoeCommand {
    /// 0: issue an ATA command.
    Ata,
    /// 1: query config information.
    QueryConfig,
    /// 2: MAC mask list.
    MacMask,
    /// 3: reserve/release.
    Reserve,
    /// Anything else (4..=255, vendor-specific included).
    Other(u8),
}

impl From<u8> for AoeCommand {
    fn from(v: u8) -> Self {
        match v {
            0 => AoeCommand::Ata,
            1 => AoeCommand::QueryConfig,
            2 => AoeCommand::MacMask,
            3 => AoeCommand::Reserve,
            other => AoeCommand::Other(other),
        }
    }
}

impl From<AoeCommand> for u8 {
    fn from(c: AoeCommand) -> u8 {
        match c {
            AoeCommand::Ata => 0,
            AoeCommand::QueryConfig => 1,
            AoeCommand::MacMask => 2,
            AoeCommand::Reserve => 3,
            AoeCommand::Other(v) => v,
        }
    }
}

/// AoE-level error codes (byte 15 when the E flag is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AoeErrorCode {
    /// 1: unrecognised command code.
    BadCommand = 1,
    /// 2: bad argument parameter.
    BadArgument = 2,
    /// 3: device unavailable.
    DeviceUnavailable = 3,
    /// 4: config string present.
    ConfigStringPresent = 4,
    /// 5: unsupported version.
    UnsupportedVersion = 5,
    /// 6: target reserved.
    TargetReserved = 6,
}

/// A zero-copy view of an AoE frame starting at the Ethernet header.
#[derive(Debug, Clone, Copy)]
pub struct AoeFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AoeFrame<T> {
    /// Wraps `buffer` without checking anything.
    pub const fn new_unchecked(buffer: T) -> Self {
        AoeFrame { buffer }
    }

    /// Wraps `buffer` after checking it holds the 24-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len(buffer.as_ref(), AOE_HEADER_LEN)?;
        Ok(AoeFrame { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Ethernet destination.
    pub fn dst(&self) -> MacAddr {
        MacAddr::from_slice(&self.b()[field::DST])
    }
    /// Ethernet source.
    pub fn src(&self) -> MacAddr {
        MacAddr::from_slice(&self.b()[field::SRC])
    }
    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.b()[12], self.b()[13]])
    }
    /// Protocol version (high nibble of byte 14).
    pub fn version(&self) -> u8 {
        self.b()[field::VER_FLAGS] >> 4
    }
    /// R flag: this frame is a response.
    pub fn is_response(&self) -> bool {
        self.b()[field::VER_FLAGS] & FLAG_RESPONSE != 0
    }
    /// E flag: this frame reports an AoE error.
    pub fn is_error(&self) -> bool {
        self.b()[field::VER_FLAGS] & FLAG_ERROR != 0
    }
    /// The error byte (meaningful with E).
    pub fn error(&self) -> u8 {
        self.b()[field::ERROR]
    }
    /// Major address (shelf).
    pub fn shelf(&self) -> u16 {
        u16::from_be_bytes([self.b()[16], self.b()[17]])
    }
    /// Minor address (slot).
    pub fn slot(&self) -> u8 {
        self.b()[field::MINOR]
    }
    /// Command code.
    pub fn command(&self) -> AoeCommand {
        AoeCommand::from(self.b()[field::COMMAND])
    }
    /// The initiator's opaque tag.
    pub fn tag(&self) -> u32 {
        let b = &self.b()[field::TAG];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// The command argument: everything after the 24-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.b()[AOE_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AoeFrame<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets the Ethernet destination.
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.bm()[field::DST].copy_from_slice(&mac.0);
    }
    /// Sets the Ethernet source.
    pub fn set_src(&mut self, mac: MacAddr) {
        self.bm()[field::SRC].copy_from_slice(&mac.0);
    }
    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, value: u16) {
        self.bm()[field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets version and flags (R, E).
    pub fn set_version_flags(&mut self, version: u8, response: bool, error: bool) {
        let mut b = version << 4;
        if response {
            b |= FLAG_RESPONSE;
        }
        if error {
            b |= FLAG_ERROR;
        }
        self.bm()[field::VER_FLAGS] = b;
    }
    /// Sets the error byte.
    pub fn set_error(&mut self, value: u8) {
        self.bm()[field::ERROR] = value;
    }
    /// Sets the shelf.
    pub fn set_shelf(&mut self, value: u16) {
        self.bm()[field::MAJOR].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the slot.
    pub fn set_slot(&mut self, value: u8) {
        self.bm()[field::MINOR] = value;
    }
    /// Sets the command code.
    pub fn set_command(&mut self, value: AoeCommand) {
        self.bm()[field::COMMAND] = value.into();
    }
    /// Sets the tag.
    pub fn set_tag(&mut self, value: u32) {
        self.bm()[field::TAG].copy_from_slice(&value.to_be_bytes());
    }
    /// The mutable argument area after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bm()[AOE_HEADER_LEN..]
    }
}

/// The parsed common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AoeHeaderRepr {
    /// Ethernet destination.
    pub dst: MacAddr,
    /// Ethernet source.
    pub src: MacAddr,
    /// Protocol version (1).
    pub version: u8,
    /// R flag.
    pub response: bool,
    /// `Some(code)` when the E flag is set.
    pub error: Option<u8>,
    /// Shelf (major).
    pub shelf: u16,
    /// Slot (minor).
    pub slot: u8,
    /// Command.
    pub command: AoeCommand,
    /// Tag.
    pub tag: u32,
}

impl AoeHeaderRepr {
    /// Parses the header; fails on short frames and foreign EtherTypes. The version is
    /// reported, not judged: the caller decides (error 5).
    pub fn parse<T: AsRef<[u8]>>(frame: &AoeFrame<T>) -> Result<Self, WireError> {
        check_len(frame.b(), AOE_HEADER_LEN)?;
        if frame.ethertype() != ETHERTYPE_AOE {
            return Err(WireError::NotAoe(frame.ethertype()));
        }
        Ok(AoeHeaderRepr {
            dst: frame.dst(),
            src: frame.src(),
            version: frame.version(),
            response: frame.is_response(),
            error: if frame.is_error() {
                Some(frame.error())
            } else {
                None
            },
            shelf: frame.shelf(),
            slot: frame.slot(),
            command: frame.command(),
            tag: frame.tag(),
        })
    }

    /// Writes the header into the first 24 bytes of `frame`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut AoeFrame<T>,
    ) -> Result<(), WireError> {
        check_room(frame.b(), AOE_HEADER_LEN)?;
        frame.set_dst(self.dst);
        frame.set_src(self.src);
        frame.set_ethertype(ETHERTYPE_AOE);
        frame.set_version_flags(self.version, self.response, self.error.is_some());
        frame.set_error(self.error.unwrap_or(0));
        frame.set_shelf(self.shelf);
        frame.set_slot(self.slot);
        frame.set_command(self.command);
        frame.set_tag(self.tag);
        Ok(())
    }

    /// The header of a reply to this request, sent from `port_mac`, naming our own address.
    pub fn reply(&self, port_mac: MacAddr, shelf: u16, slot: u8) -> AoeHeaderRepr {
        AoeHeaderRepr {
            dst: self.src,
            src: port_mac,
            version: AOE_VERSION,
            response: true,
            error: None,
            shelf,
            slot,
            command: self.command,
            tag: self.tag,
        }
    }
}
