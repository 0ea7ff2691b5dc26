//! Why a frame could not be parsed.

/// A frame (or its argument) could not be parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the fixed header of what was asked for.
    #[error("frame truncated: {needed} bytes needed, {actual} present")]
    Truncated {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The EtherType is not 0x88A2.
    #[error("not an AoE frame (EtherType {0:#06x})")]
    NotAoe(u16),
    /// A length field points past the end of the frame or above its limit.
    #[error("length field {0} exceeds the frame or the protocol limit")]
    BadLength(usize),
    /// The output buffer is too small for `emit`.
    #[error("output buffer too small: {needed} bytes needed, {actual} available")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        actual: usize,
    },
}

/// Returns `Err(Truncated)` unless `buf` holds at least `needed` bytes.
pub(crate) fn check_len(buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::Truncated {
            needed,
            actual: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Returns `Err(BufferTooSmall)` unless `buf` holds at least `needed` bytes.
pub(crate) fn check_room(buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::BufferTooSmall {
            needed,
            actual: buf.len(),
        })
    } else {
        Ok(())
    }
}
