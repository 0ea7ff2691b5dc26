//! Prometheus metrics: workers count in plain per-worker counters (no lock, no shared atomic
//! per frame); a scrape of `/metrics` collects a snapshot from each worker between batches,
//! adds them up and renders them.

pub mod endpoint;
pub mod histogram;
pub mod render;
pub mod snapshot;

pub use endpoint::{start, PanelSource, SnapshotSource, Sources};
pub use histogram::{monotonic_ns, LatencyHistogram};
pub use snapshot::{DropReason, LunCounters, Snapshot};
