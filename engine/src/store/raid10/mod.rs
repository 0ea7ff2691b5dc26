//! RAID-10: the md-style "near 2" layout, the per-member superblock and write-intent bitmap,
//! the assembly decision, member disks, the running array and its background sync jobs
//! (rebuild, resync, scrub). The worker moves the data through io_uring; these types decide
//! where it goes and record every state change on the members first.

mod array;
mod assemble;
mod badblocks;
mod bitmap;
mod layout;
mod member;
mod request;
mod step;
mod superblock;
mod sync;

pub use array::{
    Array, ArrayError, BitmapDone, BitmapJob, Fault, MemberCounters, OpenReport, Role, RoleState,
};
pub use assemble::{assemble, AssembleError, Assembly};
pub use badblocks::{BadBlocks, BADBLOCKS_BYTES, BADBLOCKS_OFFSET, MAX_RANGES};
pub use bitmap::{region_sectors_for, WriteIntent, BITMAP_BYTES, BITMAP_OFFSET};
pub use layout::{Layout, LayoutError, Piece, COPIES, MAX_CHUNK_SECTORS, MAX_MEMBERS};
pub use member::{MemberDisk, Metadata, DATA_OFFSET_SECTORS};
pub use request::{
    member_sector, Completion, MemberOp, OpKind, Progress, Request, RequestKind, MAX_OPS,
};
pub use step::{StepNext, StepOp, StepOpKind, StepPlan, StepState};
pub use superblock::{MemberState, Superblock, SuperblockError, SUPERBLOCK_BYTES};
pub use sync::{Step, SyncJob, SyncKind, MAX_STEPS, STEP_SECTORS};

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;
