//! Building a running shelf from a validated configuration: open the LUNs and ports, log
//! what was opened, announce, serve until SIGINT/SIGTERM, drain, report.

use crate::lun::LunState;
use crate::net::{FrameIo, PacketPort};
use crate::store::{Backing, BackingOptions};
use crate::wire::max_sectors_for_mtu;
use crate::worker::{Target, Worker, WorkerPort};
use ethershelf_config::{Config, PortMode, WriteCache};
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// Frame buffers per worker: in-flight requests across all LUNs and ports.
pub const WORKER_SLOTS: usize = 512;

/// The shelf could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShelfError {
    /// A LUN's backing store.
    #[error("LUN {shelf}.{slot}: {source}")]
    Store {
        /// Shelf.
        shelf: u16,
        /// Slot.
        slot: u8,
        /// Cause.
        source: crate::store::StoreError,
    },
    /// A LUN's state file.
    #[error("LUN {shelf}.{slot}: {source}")]
    State {
        /// Shelf.
        shelf: u16,
        /// Slot.
        slot: u8,
        /// Cause.
        source: crate::lun::PersistError,
    },
    /// A port.
    #[error("port {interface}: {source}")]
    Port {
        /// Interface.
        interface: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The worker.
    #[error("worker: {0}")]
    Worker(std::io::Error),
    /// Nothing to serve.
    #[error("no LUNs configured: add at least one under 'luns:'")]
    NoLuns,
}

/// A short id of this machine for IDENTIFY serial numbers (first 8 hex digits of
/// /etc/machine-id, else the host name).
pub fn host_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().chars().take(8).collect::<String>())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().chars().take(8).collect())
        })
        .unwrap_or_else(|| "shelf".into())
}

/// Opens every LUN of `config`.
pub fn open_targets(config: &Config) -> Result<Vec<Arc<Target>>, ShelfError> {
    if config.luns.is_empty() {
        return Err(ShelfError::NoLuns);
    }
    let host = host_id();
    let mut targets = Vec::new();
    for lun in &config.luns {
        let (shelf, slot) = (config.shelf, lun.slot);
        let backing = Backing::open(
            &lun.file,
            &BackingOptions {
                read_only: lun.read_only,
                direct: lun.direct,
                offset: lun.offset,
                length: lun.length,
            },
        )
        .map_err(|source| ShelfError::Store {
            shelf,
            slot,
            source,
        })?;
        let state_path = config.state_dir.join(format!("lun-{shelf}.{slot}.json"));
        let state =
            LunState::open(state_path.clone(), &lun.mask).map_err(|source| ShelfError::State {
                shelf,
                slot,
                source,
            })?;
        let writethrough = lun.write_cache == WriteCache::Writethrough;
        tracing::info!(
            lun = %format!("e{shelf}.{slot}"),
            path = %lun.file.display(),
            bytes = backing.sectors() * 512,
            sectors = backing.sectors(),
            direct = backing.is_direct(),
            read_only = lun.read_only,
            write_cache = if writethrough { "writethrough" } else { "writeback" },
            state = %state_path.display(),
            mask_entries = state.access().mask.len(),
            "LUN opened"
        );
        targets.push(Arc::new(Target::new(
            shelf,
            slot,
            state,
            backing,
            writethrough,
            config.buffer_count,
            &host,
        )));
    }
    Ok(targets)
}

/// Opens every port of `config`.
pub fn open_ports(config: &Config) -> Result<Vec<WorkerPort>, ShelfError> {
    let mut ports = Vec::new();
    for p in &config.ports {
        let buffer_bytes =
            (config.buffer_count as usize * 16 * 1024).max(4 << 20) * config.luns.len().max(1);
        let io =
            PacketPort::open(&p.interface, buffer_bytes).map_err(|source| ShelfError::Port {
                interface: p.interface.clone(),
                source,
            })?;
        let by_mtu = max_sectors_for_mtu(io.mtu());
        let max_sectors = p.max_sectors.map_or(by_mtu, |cap| cap.min(by_mtu));
        if max_sectors == 0 {
            return Err(ShelfError::Port {
                interface: p.interface.clone(),
                source: std::io::Error::other(format!(
                    "MTU {} is too small for one sector",
                    io.mtu()
                )),
            });
        }
        let why = match p.mode {
            PortMode::Auto => "auto: AF_XDP is not built yet, AF_PACKET chosen",
            _ => "configured",
        };
        tracing::info!(port = %p.interface, mode = "packet", mac = %io.mac(), mtu = io.mtu(), sectors_per_frame = max_sectors, why, "port up");
        ports.push(WorkerPort {
            io: Box::new(io),
            max_sectors,
        });
    }
    Ok(ports)
}

/// Serves `config` until SIGINT or SIGTERM, then finishes in-flight I/O and returns.
pub fn serve(config: &Config) -> Result<(), ShelfError> {
    let targets = Arc::new(open_targets(config)?);
    let ports = open_ports(config)?;
    let (stop_rx, stop_tx) = std::os::unix::net::UnixStream::pair().map_err(ShelfError::Worker)?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::low_level::pipe::register(
            sig,
            stop_tx.try_clone().map_err(ShelfError::Worker)?,
        )
        .map_err(ShelfError::Worker)?;
    }
    let mut worker = Worker::new(
        config.shelf,
        ports,
        targets,
        WORKER_SLOTS,
        stop_rx.as_raw_fd(),
    )
    .map_err(ShelfError::Worker)?;
    worker.announce();
    tracing::info!(
        shelf = config.shelf,
        luns = config.luns.len(),
        ports = config.ports.len(),
        buffer_count = config.buffer_count,
        "serving"
    );
    let result = worker.run();
    tracing::info!(stats = %worker.stats, "stopped");
    drop(stop_rx);
    result.map_err(ShelfError::Worker)
}
