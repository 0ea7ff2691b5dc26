//! Command 2, MAC Mask List: a 4-byte argument and 8-byte directives.

use super::error::{check_len, check_room};
use super::{MacAddr, WireError};

/// Length of the mask argument header.
pub const MASK_HEADER_LEN: usize = 4;
/// Length of one directive.
pub const MASK_DIRECTIVE_LEN: usize = 8;

/// MCmd values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskCommand {
    /// 0: read the list.
    Read,
    /// 1: edit the list.
    Edit,
    /// Anything else (error 2).
    Other(u8),
}

impl From<u8> for MaskCommand {
    fn from(v: u8) -> Self {
        match v {
            0 => MaskCommand::Read,
            1 => MaskCommand::Edit,
            o => MaskCommand::Other(o),
        }
    }
}

impl From<MaskCommand> for u8 {
    fn from(c: MaskCommand) -> u8 {
        match c {
            MaskCommand::Read => 0,
            MaskCommand::Edit => 1,
            MaskCommand::Other(v) => v,
        }
    }
}

/// MError values of an edit reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MaskError {
    /// 1: unspecified.
    Unspecified = 1,
    /// 2: bad DCmd.
    BadDirective = 2,
    /// 3: list full.
    ListFull = 3,
}

/// DCmd of a directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveCommand {
    /// 0: no-op (also how a read reply lists entries).
    NoOp,
    /// 1: add the MAC.
    Add,
    /// 2: delete the MAC.
    Delete,
    /// Anything else (MError 2).
    Other(u8),
}

impl From<u8> for DirectiveCommand {
    fn from(v: u8) -> Self {
        match v {
            0 => DirectiveCommand::NoOp,
            1 => DirectiveCommand::Add,
            2 => DirectiveCommand::Delete,
            o => DirectiveCommand::Other(o),
        }
    }
}

impl From<DirectiveCommand> for u8 {
    fn from(c: DirectiveCommand) -> u8 {
        match c {
            DirectiveCommand::NoOp => 0,
            DirectiveCommand::Add => 1,
            DirectiveCommand::Delete => 2,
            DirectiveCommand::Other(v) => v,
        }
    }
}

/// One directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskDirective {
    /// What to do.
    pub command: DirectiveCommand,
    /// With which MAC.
    pub mac: MacAddr,
}

impl MaskDirective {
    /// Writes the directive into 8 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        check_room(buf, MASK_DIRECTIVE_LEN)?;
        buf[0] = 0;
        buf[1] = self.command.into();
        buf[2..8].copy_from_slice(&self.mac.0);
        Ok(())
    }
}

/// A zero-copy view of a mask argument.
#[derive(Debug, Clone, Copy)]
pub struct MaskPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MaskPacket<T> {
    /// Wraps `buffer` after checking it holds the 4-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len(buffer.as_ref(), MASK_HEADER_LEN)?;
        Ok(MaskPacket { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// MCmd.
    pub fn command(&self) -> MaskCommand {
        MaskCommand::from(self.b()[1])
    }
    /// MError.
    pub fn error(&self) -> u8 {
        self.b()[2]
    }
    /// Dir Count.
    pub fn dir_count(&self) -> u8 {
        self.b()[3]
    }
}

/// A parsed mask argument; directives borrow from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskRepr<'a> {
    /// MCmd.
    pub command: MaskCommand,
    /// MError.
    pub error: u8,
    /// Dir Count as sent (may differ from the directives present in an error reply).
    pub dir_count: u8,
    directives: &'a [u8],
}

impl<'a> MaskRepr<'a> {
    /// Parses the argument; fails if Dir Count directives do not fit the frame.
    pub fn parse(packet: &MaskPacket<&'a [u8]>) -> Result<Self, WireError> {
        let buf: &'a [u8] = packet.buffer;
        check_len(buf, MASK_HEADER_LEN)?;
        let count = packet.dir_count() as usize;
        let end = MASK_HEADER_LEN + count * MASK_DIRECTIVE_LEN;
        if end > buf.len() {
            return Err(WireError::BadLength(count));
        }
        Ok(MaskRepr {
            command: packet.command(),
            error: packet.error(),
            dir_count: packet.dir_count(),
            directives: &buf[MASK_HEADER_LEN..end],
        })
    }

    /// A repr over raw directive bytes (used to build requests in tests and tools).
    pub fn new(command: MaskCommand, error: u8, dir_count: u8, directives: &'a [u8]) -> Self {
        MaskRepr {
            command,
            error,
            dir_count,
            directives,
        }
    }

    /// The directives, in order.
    pub fn directives(&self) -> impl Iterator<Item = MaskDirective> + 'a {
        self.directives
            .chunks_exact(MASK_DIRECTIVE_LEN)
            .map(|d| MaskDirective {
                command: DirectiveCommand::from(d[1]),
                mac: MacAddr::from_slice(&d[2..8]),
            })
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        MASK_HEADER_LEN + self.directives.len()
    }

    /// Writes the header and the directive bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        check_room(buf, self.buffer_len())?;
        buf[0] = 0;
        buf[1] = self.command.into();
        buf[2] = self.error;
        buf[3] = self.dir_count;
        buf[MASK_HEADER_LEN..self.buffer_len()].copy_from_slice(self.directives);
        Ok(())
    }
}
