//! RAID-10 building blocks (issue 4, in progress): the md-style "near 2" layout and the
//! per-member superblock, and the assembly decision. The array engine (degraded service, bitmap, rebuild) builds on these.

mod assemble;
mod bitmap;
mod layout;
mod superblock;

pub use assemble::{assemble, AssembleError, Assembly};
pub use bitmap::WriteIntent;
pub use layout::{Layout, LayoutError, Piece, COPIES};
pub use superblock::{MemberState, Superblock, SuperblockError, SUPERBLOCK_BYTES};
