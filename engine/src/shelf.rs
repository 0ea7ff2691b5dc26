//! Building a running shelf from a validated configuration: open the LUNs and ports, log
//! what was opened, announce, serve until SIGINT/SIGTERM, drain, report.

use crate::admin::WorkerLink;
use crate::cec::{server::CecSettings, CecCounters};
use crate::lun::{AccessBook, Audit, Book, LunState, Persister, StateServices};
use crate::net::open_port;
use crate::store::raid10::{Array, MemberDisk, Metadata};
use crate::store::{Backing, BackingOptions};
use crate::wire::max_sectors_for_mtu;
use crate::worker::admin::{AdminLink, AdminRequest};
use crate::worker::console::ShelfBook;
use crate::worker::{RaidSetup, SlabHandle, Target, Worker, WorkerPort};
use ethershelf_config::{Backend, Config, MetricsListen, WriteCache, DEFAULT_METRICS_LISTEN};
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// Frame buffers per worker: in-flight requests across all LUNs and ports.
pub const WORKER_SLOTS: usize = 512;

/// How many workers serve `ports`: one per receive queue (a queue worker for each queue
/// beyond the first), capped by `configured` and by the cores that may be used.
pub fn worker_count(ports: &[WorkerPort], configured: Option<usize>, usable_cores: usize) -> usize {
    let queues = ports
        .iter()
        .map(|p| p.queue as usize + 1)
        .max()
        .unwrap_or(1);
    queues
        .min(configured.unwrap_or(usize::MAX))
        .min(usable_cores)
        .max(1)
}

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
    /// The audit log cannot be opened.
    #[error("audit log {path}: {source}")]
    Audit {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The access book (`state_dir/access.json`) cannot be read.
    #[error("{source}")]
    Access {
        /// Cause.
        source: crate::lun::PersistError,
    },
    /// A RAID-10 LUN's array.
    #[error("LUN {shelf}.{slot}: {message}")]
    Array {
        /// Shelf.
        shelf: u16,
        /// Slot.
        slot: u8,
        /// What is wrong.
        message: String,
    },
    /// The admin socket.
    #[error("admin socket {path}: {source}")]
    Admin {
        /// Socket path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A port.
    #[error("port {interface}: {source}")]
    Port {
        /// Interface.
        interface: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The metrics endpoint.
    #[error("metrics listen {listen}: {source}")]
    Metrics {
        /// Address.
        listen: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The worker.
    #[error("worker: {0}")]
    Worker(std::io::Error),
    /// The console's LUN book in state_dir.
    #[error("LUN book: {0}")]
    Book(String),
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

/// The LUNs of a configuration, opened: the targets the worker serves and the arrays and
/// spares behind the RAID-10 ones.
pub struct OpenedLuns {
    /// Targets in configuration order.
    pub targets: Vec<Arc<Target>>,
    /// Arrays (by target index) and spares.
    pub raid: RaidSetup,
}

/// Opens every LUN of `config`: file LUNs, then RAID-10 arrays (assembled, or created on
/// blank disks), with the shelf's hot spares.
pub fn open_luns(config: &Config, services: &StateServices) -> Result<OpenedLuns, ShelfError> {
    let host = host_id();
    let mut spares = Vec::new();
    for &i in &config.spares {
        let path = &config.disks[i];
        match MemberDisk::open(i, path) {
            Ok(d) => spares.push(d),
            Err(e) => tracing::warn!(disk = i, error = %e, "spare disk cannot be opened; not used"),
        }
    }
    let mut targets = Vec::new();
    let mut arrays = Vec::new();
    for lun in &config.luns {
        let (shelf, slot) = (config.shelf, lun.slot);
        let state_path = crate::lun::state_path(&config.state_dir, shelf, slot);
        let state = LunState::open(state_path.clone(), &lun.mask)
            .map_err(|source| ShelfError::State {
                shelf,
                slot,
                source,
            })?
            .with_services(services, format!("e{shelf}.{slot}"));
        let writethrough = lun.write_cache == WriteCache::Writethrough;
        let label = format!("e{shelf}.{slot}");
        let (backing, array) = match &lun.backend {
            Backend::File(f) => {
                create_if_asked(f)?;
                let backing = Backing::open(
                    &f.path,
                    &BackingOptions {
                        exclusive: false,
                        read_only: lun.read_only,
                        direct: f.direct,
                        offset: f.offset,
                        length: f.length,
                    },
                )
                .map_err(|source| ShelfError::Store {
                    shelf,
                    slot,
                    source,
                })?;
                tracing::info!(
                    lun = %label,
                    path = %f.path.display(),
                    bytes = backing.sectors() * 512,
                    direct = backing.is_direct(),
                    read_only = lun.read_only,
                    write_cache = if writethrough { "writethrough" } else { "writeback" },
                    state = %state_path.display(),
                    mask_entries = state.access().mask.len(),
                    "LUN opened"
                );
                (Some(backing), None)
            }
            Backend::Raid10(r) => {
                let disks: Vec<(usize, std::path::PathBuf)> = r
                    .disks
                    .iter()
                    .map(|&i| (i, config.disks[i].clone()))
                    .collect();
                let (array, report) = Array::open(
                    &label,
                    &disks,
                    &mut spares,
                    r.chunk / 512,
                    r.clean,
                    r.degraded_start,
                    config.force_assemble,
                )
                .map_err(|e| ShelfError::Array {
                    shelf,
                    slot,
                    message: e.to_string(),
                })?;
                tracing::info!(
                    lun = %label,
                    members = array.roles.len(),
                    chunk = array.layout().chunk_sectors() * 512,
                    bytes = array.sectors() * 512,
                    state = %array.state(),
                    created = report.created,
                    was_dirty = report.was_dirty,
                    dirty_regions = report.dirty_regions,
                    rebuilding = ?report.rebuilding,
                    released_to_spares = ?report.released,
                    write_cache = if writethrough { "writethrough" } else { "writeback" },
                    "RAID-10 LUN opened"
                );
                (None, Some(array))
            }
        };
        let sectors = array.as_ref().map_or(0, |a| a.sectors());
        targets.push(Arc::new(Target::new(
            shelf,
            slot,
            state,
            backing,
            sectors,
            lun.read_only,
            writethrough,
            config.buffer_count,
            &host,
        )));
        arrays.push(array);
    }
    Ok(OpenedLuns {
        targets,
        raid: RaidSetup {
            arrays,
            spares,
            rates: config.rebuild,
        },
    })
}

/// Checks that every LUN's storage can be opened, without changing any disk: file LUNs are
/// opened; RAID-10 member disks are opened and their superblocks read. Returns one line per LUN
/// (none for a shelf with no LUNs, which is valid and serves nothing).
pub fn check_luns(config: &Config) -> Result<Vec<String>, ShelfError> {
    let mut lines = Vec::new();
    for lun in &config.luns {
        let (shelf, slot) = (config.shelf, lun.slot);
        match &lun.backend {
            Backend::File(f) if f.create && !f.path.exists() => {
                lines.push(format!(
                    "e{shelf}.{slot}: {} does not exist yet: it will be created ({} bytes) at start",
                    f.path.display(),
                    f.length.unwrap_or(0)
                ));
            }
            Backend::File(f) => {
                let b = Backing::open(
                    &f.path,
                    &BackingOptions {
                        exclusive: false,
                        read_only: true,
                        direct: false,
                        offset: f.offset,
                        length: f.length,
                    },
                )
                .map_err(|source| ShelfError::Store {
                    shelf,
                    slot,
                    source,
                })?;
                lines.push(format!(
                    "e{shelf}.{slot}  file {}  {} bytes{}",
                    f.path.display(),
                    b.sectors() * 512,
                    if lun.read_only { " (read-only)" } else { "" }
                ));
            }
            Backend::Raid10(r) => {
                let mut parts = Vec::new();
                for &i in &r.disks {
                    let what = match MemberDisk::open(i, &config.disks[i]) {
                        Err(e) => format!("{shelf}.{i}: cannot open ({e})"),
                        Ok(d) => match d.read_metadata() {
                            Ok(Metadata::Blank) => format!("{shelf}.{i}: blank"),
                            Ok(Metadata::Member(sb)) => format!(
                                "{shelf}.{i}: role {} of a {}-member array, event {}",
                                sb.role, sb.members, sb.event
                            ),
                            Ok(Metadata::Damaged(w)) => {
                                format!("{shelf}.{i}: damaged superblock ({w})")
                            }
                            Err(e) => format!("{shelf}.{i}: unreadable ({e})"),
                        },
                    };
                    parts.push(what);
                }
                lines.push(format!(
                    "e{shelf}.{slot}  raid10 chunk {} over {}",
                    r.chunk,
                    parts.join("; ")
                ));
            }
        }
    }
    Ok(lines)
}

/// Opens every port of `config`.
pub fn open_ports(config: &Config) -> Result<Vec<WorkerPort>, ShelfError> {
    let mut ports = Vec::new();
    for p in &config.ports {
        let buffer_bytes =
            (config.buffer_count as usize * 16 * 1024).max(4 << 20) * config.luns.len().max(1);
        let port_error = |source| ShelfError::Port {
            interface: p.interface.clone(),
            source,
        };
        let (sockets, why) = open_port(&p.interface, p.mode, buffer_bytes).map_err(port_error)?;
        for (n, socket) in sockets.into_iter().enumerate() {
            let io = socket.io;
            let by_mtu = max_sectors_for_mtu(io.mtu());
            let max_sectors = p.max_sectors.map_or(by_mtu, |cap| cap.min(by_mtu));
            if max_sectors == 0 {
                return Err(port_error(std::io::Error::other(format!(
                    "MTU {} is too small for one sector",
                    io.mtu()
                ))));
            }
            tracing::info!(port = %p.interface, queue = socket.queue, mode = socket.mode, how = %socket.detail, mac = %io.mac(), mtu = io.mtu(), sectors_per_frame = max_sectors, why = %why, "port up");
            ports.push(WorkerPort {
                io,
                max_sectors,
                sectors_cap: p.max_sectors,
                queue: socket.queue,
                mode: socket.mode,
                announces: n == 0,
            });
        }
    }
    Ok(ports)
}

/// The configuration in effect: the YAML, with the console's LUN book (if the console ever
/// changed anything) replacing its `luns:` and `spares:`. Returns it with the book.
pub fn effective_config(config: &Config) -> Result<(Config, Book), ShelfError> {
    let path = Book::path(config);
    match Book::load(&path).map_err(|e| ShelfError::Book(e.to_string()))? {
        Some(book) => {
            let effective = book
                .apply(config)
                .map_err(|e| ShelfError::Book(format!("{}: {e}", path.display())))?;
            tracing::info!(book = %path.display(), luns = book.luns.len(), spares = ?book.spares, "console changes saved in the LUN book replace the YAML's luns and spares");
            Ok((effective, book))
        }
        None => Ok((config.clone(), Book::from_config(config))),
    }
}

/// Creates a file LUN's file (sparse) when its YAML says `create: true` and it is missing.
fn create_if_asked(f: &ethershelf_config::FileSpec) -> Result<(), ShelfError> {
    if !f.create || f.path.exists() {
        return Ok(());
    }
    let len = f.length.unwrap_or(0);
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&f.path)
        .and_then(|file| file.set_len(len).and_then(|()| file.sync_all()));
    match made {
        Ok(()) => {
            tracing::info!(file = %f.path.display(), bytes = len, "LUN file created (create: true)");
            Ok(())
        }
        Err(e) => Err(ShelfError::Worker(std::io::Error::new(
            e.kind(),
            format!("cannot create {} (create: true): {e}", f.path.display()),
        ))),
    }
}

/// Re-reads `path` on SIGHUP and hands the result to the worker (an invalid file is
/// reported and changes nothing).
fn start_reloader(path: std::path::PathBuf, link: WorkerLink) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                crate::systemd::notify("RELOADING=1");
                match ethershelf_config::load(&path) {
                    Ok(config) => {
                        match link.ask(
                            |reply| AdminRequest::Reload(Box::new(config), reply),
                            std::time::Duration::from_secs(30),
                        ) {
                            Ok(summary) => tracing::info!(file = %path.display(), %summary, "reload done"),
                            Err(why) => tracing::error!(why, "reload not applied"),
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: the configuration file is not valid; nothing changed"),
                }
                crate::systemd::notify("READY=1");
            }
        })?;
    Ok(())
}

/// How long a scrape waits for the worker's counters.
const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the console over Ethernet when the configuration turns it on; its commands go to
/// the worker through `link` like the local console's. A shelf whose ports cannot take it
/// says so and serves on.
fn start_cec(config: &Config, link: &WorkerLink) -> Option<Arc<CecCounters>> {
    if !config.cec.enabled {
        return None;
    }
    let link = link.try_clone().ok()?;
    let runner: crate::cec::server::Runner = Box::new(move |line, user| {
        link.ask(
            |reply| AdminRequest::Command {
                line: line.to_string(),
                user: user.to_string(),
                reply,
            },
            std::time::Duration::from_secs(30),
        )
        .unwrap_or_else(|why| format!("error: {why}\n"))
    });
    let settings = CecSettings {
        shelf: config.shelf,
        name: config.cec.name.clone().unwrap_or_else(host_name),
        password: config.cec.password.clone(),
        allow: config.cec.allow.clone(),
        max_sessions: config.cec.sessions,
    };
    let interfaces: Vec<String> = config.ports.iter().map(|p| p.interface.clone()).collect();
    let counters = Arc::new(CecCounters::default());
    match crate::cec::server::start(&interfaces, settings, runner, counters.clone()) {
        Ok(()) => {
            if config.cec.password.is_none() {
                tracing::warn!("console over Ethernet is on without a password: every host of the storage segment can run any console command (set cec: password)");
            }
            Some(counters)
        }
        Err(e) => {
            tracing::error!(error = %e, "console over Ethernet not started");
            None
        }
    }
}

/// This machine's host name (for the console's offer).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ethershelf".into())
}

/// Starts the Prometheus endpoint of `config` (scrapes ask the worker through `link`).
fn start_metrics(
    config: &Config,
    link: &WorkerLink,
    cec: Option<Arc<CecCounters>>,
) -> Result<(), ShelfError> {
    let (addr, required) = match config.metrics {
        MetricsListen::Off => return Ok(()),
        MetricsListen::At(a) => (a, true),
        MetricsListen::Default => match DEFAULT_METRICS_LISTEN.parse() {
            Ok(a) => (a, false),
            Err(_) => return Ok(()),
        },
    };
    let scrape_link = link.try_clone().map_err(ShelfError::Worker)?;
    let panel_link = link.try_clone().map_err(ShelfError::Worker)?;
    let source = crate::metrics::Sources {
        snapshot: Box::new(move || {
            let mut snap = scrape_link
                .ask(AdminRequest::Snapshot, SCRAPE_TIMEOUT)
                .ok()?;
            snap.cec = cec.as_ref().map(|c| c.sample());
            Some(snap)
        }),
        panel: Box::new(move || panel_link.ask(AdminRequest::Panel, SCRAPE_TIMEOUT).ok()),
    };
    match crate::metrics::start(addr, source) {
        Ok(bound) => {
            tracing::info!(listen = %bound, "management endpoint ready (front panel at /, metrics at /metrics)");
            Ok(())
        }
        Err(source) if required => Err(ShelfError::Metrics {
            listen: addr.to_string(),
            source,
        }),
        Err(e) => {
            tracing::warn!(listen = %addr, error = %e, "metrics endpoint not started (set metrics: {{ listen: IP:PORT }} or 'off')");
            Ok(())
        }
    }
}

/// Serves `config` until SIGINT or SIGTERM, then finishes in-flight I/O and returns.
/// With `reload_from`, SIGHUP re-reads that file and applies what can change live.
pub fn serve(config: &Config, reload_from: Option<&std::path::Path>) -> Result<(), ShelfError> {
    // Pin first, so the worker's buffers and rings are allocated on its core's NUMA node.
    // The cores are ranked before: once pinned, this thread may use only its own.
    let interfaces: Vec<String> = config.ports.iter().map(|p| p.interface.clone()).collect();
    let cores = crate::affinity::choose_many(&interfaces, &config.cpus, usize::MAX);
    let pinned = match cores.first() {
        Some(choice) if crate::affinity::pin_current(choice.cpu) => {
            tracing::info!(worker = 0, cpu = choice.cpu, why = %choice.why, "worker pinned");
            Some(choice.cpu)
        }
        Some(_) => None,
        None => {
            tracing::warn!("no usable core found; the worker runs unpinned");
            None
        }
    };
    let (effective, book) = effective_config(config)?;
    let config = &effective;
    let file = reload_from.map_or("the configuration file".into(), |p| p.display().to_string());
    if config.luns.is_empty() {
        tracing::warn!("no LUNs configured: serving nothing; edit {file} (or make LUNs from the console: ethershelf console)");
    }
    if config.ports.is_empty() {
        tracing::warn!("no ports configured: no frame is sent or answered; add ports to {file}");
    }
    if config.disks_auto {
        for (i, path) in config.disks.iter().enumerate() {
            let device = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            tracing::info!(disk = %format!("{}.{i}", config.shelf), path = %path.display(), device = %device.display(), "disks: auto");
        }
    }
    let ports = open_ports(config)?;
    let wanted = worker_count(&ports, config.workers, usize::MAX);
    let workers = worker_count(&ports, config.workers, cores.len().max(1));
    if workers < wanted {
        tracing::info!(
            queues = wanted,
            workers,
            "fewer usable cores than receive queues: workers serve several queues"
        );
    }
    let (stop_rx, stop_tx) = std::os::unix::net::UnixStream::pair().map_err(ShelfError::Worker)?;
    let mut spread = crate::worker::spread(ports, workers, WORKER_SLOTS, stop_rx.as_raw_fd())
        .map_err(ShelfError::Worker)?;
    let audit_path = config.state_dir.join(crate::lun::audit::AUDIT_FILE);
    let audit = Audit::start(audit_path.clone()).map_err(|source| ShelfError::Audit {
        path: audit_path.display().to_string(),
        source,
    })?;
    let access =
        AccessBook::load_or_config(config).map_err(|source| ShelfError::Access { source })?;
    let (persister, persist_wake) = Persister::start().map_err(ShelfError::Worker)?;
    let services = StateServices {
        audit,
        persister: Some(persister.clone()),
    };
    let opened = open_luns(config, &services)?;
    let targets = opened.targets;
    let shelf_book = ShelfBook {
        records: book.luns.into_iter().map(Some).collect(),
        path: Book::path(config),
        config: config.clone(),
        host: host_id(),
        access,
        services,
    };
    let (req_tx, req_rx) = std::sync::mpsc::sync_channel(16);
    let (wake_rx, wake_tx) = std::os::unix::net::UnixStream::pair().map_err(ShelfError::Worker)?;
    let link = WorkerLink::new(req_tx, wake_tx);
    let cec = start_cec(config, &link);
    start_metrics(config, &link, cec)?;
    let _admin = crate::admin::start(
        &config.admin_socket,
        link.try_clone().map_err(ShelfError::Worker)?,
    )
    .map_err(|source| ShelfError::Admin {
        path: config.admin_socket.display().to_string(),
        source,
    })?;
    wake_rx.set_nonblocking(true).map_err(ShelfError::Worker)?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::low_level::pipe::register(
            sig,
            stop_tx.try_clone().map_err(ShelfError::Worker)?,
        )
        .map_err(ShelfError::Worker)?;
    }
    let queue_workers = std::mem::take(&mut spread.queue_workers);
    let mut worker = Worker::new(
        spread.views,
        spread.links,
        SlabHandle::new(spread.slab),
        spread.per_worker,
        targets,
        stop_rx.as_raw_fd(),
        opened.raid,
        Some(AdminLink {
            requests: req_rx,
            wake: wake_rx,
        }),
        shelf_book,
    )
    .map_err(ShelfError::Worker)?;
    worker.set_cpu(pinned);
    if let Some(path) = reload_from {
        start_reloader(
            path.to_path_buf(),
            link.try_clone().map_err(ShelfError::Worker)?,
        )
        .map_err(ShelfError::Worker)?;
    }
    if let Some(interval) = crate::systemd::watchdog_interval() {
        crate::systemd::start_watchdog(worker.liveness(), interval).map_err(ShelfError::Worker)?;
    }
    let mut queue_threads = Vec::new();
    // Each queue worker says when it is pinned: the shelf reports ready only after that.
    let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
    for mut qw in queue_workers {
        let core = cores.get(qw.index).cloned();
        let up = up_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("queue-{}", qw.index))
            .spawn(move || {
                match core {
                    Some(c) if crate::affinity::pin_current(c.cpu) => {
                        tracing::info!(worker = qw.index, cpu = c.cpu, why = %c.why, "worker pinned");
                        qw.set_cpu(Some(c.cpu));
                    }
                    _ => tracing::warn!(worker = qw.index, "queue worker runs unpinned"),
                }
                let _ = up.send(());
                if let Err(e) = qw.run() {
                    tracing::error!(worker = qw.index, error = %e, "queue worker failed; its queues are no longer served");
                }
                qw.log_paths();
            })
            .map_err(ShelfError::Worker)?;
        queue_threads.push(thread);
    }
    drop(up_tx);
    for _ in 0..queue_threads.len() {
        if up_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .is_err()
        {
            tracing::warn!("a queue worker did not start within 5 s");
            break;
        }
    }
    worker.announce();
    tracing::info!(
        shelf = config.shelf,
        luns = config.luns.len(),
        ports = config.ports.len(),
        workers,
        buffer_count = config.buffer_count,
        "serving"
    );
    crate::systemd::notify(&format!(
        "READY=1\nSTATUS=serving {} LUN(s) on {} port(s)",
        config.luns.len(),
        config.ports.len()
    ));
    worker.set_persist_wake(persist_wake);
    let links = crate::net::watch::start(worker.port_names()).map_err(ShelfError::Worker)?;
    worker.set_link_states(links);
    let result = worker.run();
    crate::systemd::notify("STOPPING=1");
    if !persister.flush(std::time::Duration::from_secs(10)) {
        tracing::error!(
            "LUN state changes still unwritten at exit (their requests were never answered)"
        );
    }
    worker.close_peers();
    for t in queue_threads {
        let _ = t.join();
    }
    worker.log_paths();
    tracing::info!(stats = %worker.stats, "stopped");
    drop(stop_rx);
    result.map_err(ShelfError::Worker)
}
