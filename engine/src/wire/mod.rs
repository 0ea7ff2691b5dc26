//! AoE wire format: zero-copy packet views (`*Packet<T: AsRef<[u8]>>`) beside parsed
//! representations (`*Repr`) with `parse` and `emit`, in the manner of smoltcp's `wire`.
//!
//! Nothing here allocates, performs I/O or panics on any input: every accessor used on
//! untrusted bytes sits behind a `new_checked` length check. Offsets are those of
//! `AOE-PROTOCOL.md` and are measured from the start of the Ethernet frame for the common
//! header, and from the start of the AoE argument (frame offset 24) for the commands.

mod ata;
mod config;
mod error;
mod frame;
mod mac;
mod mask;
mod reserve;

pub use ata::{AtaFlags, AtaPacket, AtaRepr, ATA_HEADER_LEN};
pub use config::{ConfigCommand, ConfigPacket, ConfigRepr, CONFIG_HEADER_LEN, CONFIG_STRING_MAX};
pub use error::WireError;
pub use frame::{
    AoeCommand, AoeErrorCode, AoeFrame, AoeHeaderRepr, AOE_HEADER_LEN, AOE_VERSION, ETHERTYPE_AOE,
    MIN_FRAME_LEN,
};
pub use mac::MacAddr;
pub use mask::{
    DirectiveCommand, MaskCommand, MaskDirective, MaskError, MaskPacket, MaskRepr,
    MASK_DIRECTIVE_LEN, MASK_HEADER_LEN,
};
pub use reserve::{ReserveCommand, ReservePacket, ReserveRepr, RESERVE_HEADER_LEN};

/// Bytes in one ATA sector; AoE sectors are always 512 bytes.
pub const SECTOR_SIZE: usize = 512;

/// Frame offset of ATA data (Ethernet 14 + AoE 10 + ATA 12).
pub const ATA_DATA_OFFSET: usize = AOE_HEADER_LEN + ATA_HEADER_LEN;

/// Frame offset of a Query Config string.
pub const CONFIG_STRING_OFFSET: usize = AOE_HEADER_LEN + CONFIG_HEADER_LEN;

/// The most sectors that fit a frame on a link of `mtu` bytes: floor((MTU - 36) / 512),
/// the rule every AoE implementation uses (2 at 1500, 17 at 9000).
pub fn max_sectors_for_mtu(mtu: u32) -> u8 {
    let sectors = (mtu.saturating_sub(ATA_DATA_OFFSET as u32)) / SECTOR_SIZE as u32;
    sectors.min(u8::MAX as u32) as u8
}

#[cfg(test)]
mod tests;
