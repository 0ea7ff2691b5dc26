//! The Coraid Ethernet Console frame: Ethernet header, EtherType 0xBCBC, then type, tag,
//! sequence, length and up to 255 bytes of data; padded to 60 bytes on the wire.

use crate::wire::MacAddr;

/// The console's EtherType.
pub const ETHERTYPE_CEC: u16 = 0xBCBC;
/// Ethernet header plus type, tag, sequence and length.
pub const HEADER_LEN: usize = 18;
/// Shortest frame on the wire (peers drop shorter ones).
pub const MIN_FRAME: usize = 60;
/// Most data bytes one frame carries (the length field is one byte).
pub const MAX_DATA: usize = 255;
/// Largest frame this module builds.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_DATA;

/// What a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Client opens a connection with its tag.
    InitA,
    /// Server answers with the same tag.
    InitB,
    /// Client confirms: the session is open.
    InitC,
    /// Console bytes.
    Data,
    /// Acknowledges the data frame with the same sequence.
    Ack,
    /// Who is there? (broadcast)
    Discover,
    /// A server's answer: "<shelf> <name>".
    Offer,
    /// Closes the session.
    Reset,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::InitA,
            1 => Kind::InitB,
            2 => Kind::InitC,
            3 => Kind::Data,
            4 => Kind::Ack,
            5 => Kind::Discover,
            6 => Kind::Offer,
            7 => Kind::Reset,
            _ => return None,
        })
    }

    fn byte(self) -> u8 {
        match self {
            Kind::InitA => 0,
            Kind::InitB => 1,
            Kind::InitC => 2,
            Kind::Data => 3,
            Kind::Ack => 4,
            Kind::Discover => 5,
            Kind::Offer => 6,
            Kind::Reset => 7,
        }
    }
}

/// Why a received frame was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than the header.
    #[error("frame shorter than the console header")]
    Short,
    /// Another EtherType.
    #[error("not a console frame")]
    NotCec,
    /// A type byte the protocol does not define.
    #[error("unknown console frame type {0}")]
    UnknownKind(u8),
    /// The length field runs past the end of the frame.
    #[error("console data length runs past the frame")]
    LengthPastEnd,
}

/// One console frame, its data borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CecFrame<'a> {
    /// Destination.
    pub dst: MacAddr,
    /// Source.
    pub src: MacAddr,
    /// Type.
    pub kind: Kind,
    /// Connection tag.
    pub tag: u8,
    /// Sequence number.
    pub seq: u8,
    /// Data (at most 255 bytes).
    pub data: &'a [u8],
}

impl<'a> CecFrame<'a> {
    /// Reads a frame from `buf` (padding after the data is ignored).
    pub fn parse(buf: &'a [u8]) -> Result<CecFrame<'a>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Err(FrameError::Short);
        }
        if u16::from_be_bytes([buf[12], buf[13]]) != ETHERTYPE_CEC {
            return Err(FrameError::NotCec);
        }
        let kind = Kind::from_byte(buf[14]).ok_or(FrameError::UnknownKind(buf[14]))?;
        let len = buf[17] as usize;
        let data = buf
            .get(HEADER_LEN..HEADER_LEN + len)
            .ok_or(FrameError::LengthPastEnd)?;
        Ok(CecFrame {
            dst: MacAddr::from_slice(&buf[0..6]),
            src: MacAddr::from_slice(&buf[6..12]),
            kind,
            tag: buf[15],
            seq: buf[16],
            data,
        })
    }

    /// Writes the frame into `out`, padded with zeros to 60 bytes; returns its length.
    /// Data past 255 bytes is not sent (callers chunk first).
    pub fn emit(&self, out: &mut [u8; MAX_FRAME]) -> usize {
        let data = &self.data[..self.data.len().min(MAX_DATA)];
        out[0..6].copy_from_slice(&self.dst.0);
        out[6..12].copy_from_slice(&self.src.0);
        out[12..14].copy_from_slice(&ETHERTYPE_CEC.to_be_bytes());
        out[14] = self.kind.byte();
        out[15] = self.tag;
        out[16] = self.seq;
        out[17] = data.len() as u8;
        out[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
        let end = HEADER_LEN + data.len();
        if end < MIN_FRAME {
            out[end..MIN_FRAME].fill(0);
        }
        end.max(MIN_FRAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_frames_are_padded_and_read_back() {
        let f = CecFrame {
            dst: MacAddr([2, 0, 0, 0, 0, 1]),
            src: MacAddr([2, 0, 0, 0, 0, 2]),
            kind: Kind::Data,
            tag: 9,
            seq: 1,
            data: b"l",
        };
        let mut out = [0u8; MAX_FRAME];
        let n = f.emit(&mut out);
        assert_eq!(n, MIN_FRAME);
        assert_eq!(&out[12..18], &[0xbc, 0xbc, 3, 9, 1, 1]);
        assert_eq!(CecFrame::parse(&out[..n]), Ok(f));
    }

    #[test]
    fn malformed_frames_are_refused_with_a_reason() {
        let mut buf = [0u8; 60];
        assert_eq!(CecFrame::parse(&buf[..10]), Err(FrameError::Short));
        assert_eq!(CecFrame::parse(&buf), Err(FrameError::NotCec));
        buf[12] = 0xbc;
        buf[13] = 0xbc;
        buf[14] = 8;
        assert_eq!(CecFrame::parse(&buf), Err(FrameError::UnknownKind(8)));
        buf[14] = 3;
        buf[17] = 200;
        assert_eq!(CecFrame::parse(&buf), Err(FrameError::LengthPastEnd));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = CecFrame::parse(&bytes);
        }

        #[test]
        fn emit_then_parse_is_identity(kind in 0u8..8, tag: u8, seq: u8,
                data in proptest::collection::vec(any::<u8>(), 0..=255)) {
            let f = CecFrame {
                dst: MacAddr([0xff; 6]),
                src: MacAddr([2, 1, 2, 3, 4, 5]),
                kind: Kind::from_byte(kind).unwrap(),
                tag,
                seq,
                data: &data,
            };
            let mut out = [0u8; MAX_FRAME];
            let n = f.emit(&mut out);
            prop_assert!(n >= MIN_FRAME);
            prop_assert_eq!(CecFrame::parse(&out[..n]), Ok(f));
        }
    }
}
