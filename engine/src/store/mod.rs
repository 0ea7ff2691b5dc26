//! Backing stores. A LUN is a slice of a file or block device, opened with O_DIRECT where the
//! filesystem allows it; the worker drives the I/O through its own io_uring.

mod file;
pub mod raid10;

pub use file::{Backing, BackingOptions, StoreError};
