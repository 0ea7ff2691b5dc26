//! Command 3, Reserve/Release: RCmd, NMacs and a list of MACs.

use super::error::{check_len, check_room};
use super::{MacAddr, WireError};

/// Length of the reserve argument header.
pub const RESERVE_HEADER_LEN: usize = 2;

/// RCmd values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveCommand {
    /// 0: read the list.
    Read,
    /// 1: set (error 6 if reserved by others).
    Set,
    /// 2: force set.
    ForceSet,
    /// Anything else (error 2).
    Other(u8),
}

impl From<u8> for ReserveCommand {
    fn from(v: u8) -> Self {
        match v {
            0 => ReserveCommand::Read,
            1 => ReserveCommand::Set,
            2 => ReserveCommand::ForceSet,
            o => ReserveCommand::Other(o),
        }
    }
}

impl From<ReserveCommand> for u8 {
    fn from(c: ReserveCommand) -> u8 {
        match c {
            ReserveCommand::Read => 0,
            ReserveCommand::Set => 1,
            ReserveCommand::ForceSet => 2,
            ReserveCommand::Other(v) => v,
        }
    }
}

/// A zero-copy view of a reserve argument.
#[derive(Debug, Clone, Copy)]
pub struct ReservePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ReservePacket<T> {
    /// Wraps `buffer` after checking it holds the 2-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len(buffer.as_ref(), RESERVE_HEADER_LEN)?;
        Ok(ReservePacket { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// RCmd.
    pub fn command(&self) -> ReserveCommand {
        ReserveCommand::from(self.b()[0])
    }
    /// NMacs.
    pub fn mac_count(&self) -> u8 {
        self.b()[1]
    }
}

/// A parsed reserve argument; the MACs borrow from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveRepr<'a> {
    /// RCmd.
    pub command: ReserveCommand,
    macs: &'a [u8],
}

impl<'a> ReserveRepr<'a> {
    /// Parses the argument; fails if NMacs addresses do not fit the frame.
    pub fn parse(packet: &ReservePacket<&'a [u8]>) -> Result<Self, WireError> {
        let buf: &'a [u8] = packet.buffer;
        check_len(buf, RESERVE_HEADER_LEN)?;
        let end = RESERVE_HEADER_LEN + packet.mac_count() as usize * 6;
        if end > buf.len() {
            return Err(WireError::BadLength(packet.mac_count() as usize));
        }
        Ok(ReserveRepr {
            command: packet.command(),
            macs: &buf[RESERVE_HEADER_LEN..end],
        })
    }

    /// A repr over raw MAC bytes (a multiple of six).
    pub fn new(command: ReserveCommand, macs: &'a [u8]) -> Self {
        ReserveRepr {
            command,
            macs: &macs[..macs.len() / 6 * 6],
        }
    }

    /// The MACs, in order.
    pub fn macs(&self) -> impl Iterator<Item = MacAddr> + 'a {
        self.macs.chunks_exact(6).map(MacAddr::from_slice)
    }

    /// Number of MACs.
    pub fn mac_count(&self) -> usize {
        self.macs.len() / 6
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        RESERVE_HEADER_LEN + self.macs.len()
    }

    /// Writes the argument.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        if self.mac_count() > u8::MAX as usize {
            return Err(WireError::BadLength(self.mac_count()));
        }
        check_room(buf, self.buffer_len())?;
        buf[0] = self.command.into();
        buf[1] = self.mac_count() as u8;
        buf[RESERVE_HEADER_LEN..self.buffer_len()].copy_from_slice(self.macs);
        Ok(())
    }
}
