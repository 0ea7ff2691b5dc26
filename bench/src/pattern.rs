//! Verify data: every block written carries a header (magic, LBA, generation, CRC32C over the
//! whole block) followed by bytes derived from (LBA, generation), so a read proves it holds
//! exactly the last data written to that place.

/// Bytes of the header at the start of each block.
pub const HEADER_LEN: usize = 24;
const MAGIC: &[u8; 4] = b"ESBV";

fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// Fills `block` with the data for (`lba`, `generation`).
pub fn write_block(block: &mut [u8], lba: u64, generation: u32) {
    fill(&mut block[HEADER_LEN..], lba ^ ((generation as u64) << 40));
    block[0..4].copy_from_slice(MAGIC);
    block[4..12].copy_from_slice(&lba.to_le_bytes());
    block[12..16].copy_from_slice(&generation.to_le_bytes());
    block[16..24].fill(0);
    let crc = crc32c::crc32c(block);
    block[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// Why a block failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No header where one was written.
    #[error("no verify header (data never written, or overwritten by someone else)")]
    NoHeader,
    /// The header names another LBA: data landed in the wrong place.
    #[error("header names LBA {0}")]
    WrongLba(u64),
    /// An older or newer generation: a lost or misordered write.
    #[error("generation {found}, expected {expected}")]
    WrongGeneration {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// The checksum does not match: corrupted bytes.
    #[error("CRC32C mismatch")]
    BadChecksum,
}

/// Checks that `block` holds the data of (`lba`, `generation`).
pub fn check_block(block: &[u8], lba: u64, generation: u32) -> Result<(), VerifyError> {
    if block.len() < HEADER_LEN || &block[0..4] != MAGIC {
        return Err(VerifyError::NoHeader);
    }
    let found_lba = u64::from_le_bytes(block[4..12].try_into().unwrap_or([0; 8]));
    if found_lba != lba {
        return Err(VerifyError::WrongLba(found_lba));
    }
    let found = u32::from_le_bytes(block[12..16].try_into().unwrap_or([0; 4]));
    if found != generation {
        return Err(VerifyError::WrongGeneration {
            found,
            expected: generation,
        });
    }
    let stored = u32::from_le_bytes(block[16..20].try_into().unwrap_or([0; 4]));
    let mut copy = block.to_vec();
    copy[16..24].fill(0);
    if crc32c::crc32c(&copy) != stored {
        return Err(VerifyError::BadChecksum);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_each_failure_is_named() {
        let mut b = vec![0u8; 4096];
        write_block(&mut b, 77, 3);
        assert_eq!(check_block(&b, 77, 3), Ok(()));
        assert_eq!(check_block(&b, 78, 3), Err(VerifyError::WrongLba(77)));
        assert_eq!(
            check_block(&b, 77, 4),
            Err(VerifyError::WrongGeneration {
                found: 3,
                expected: 4
            })
        );
        b[1000] ^= 1;
        assert_eq!(check_block(&b, 77, 3), Err(VerifyError::BadChecksum));
        assert_eq!(check_block(&[0u8; 512], 1, 1), Err(VerifyError::NoHeader));
    }
}
