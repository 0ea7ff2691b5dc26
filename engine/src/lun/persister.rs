//! The persister: LUN state changes (config string, mask list, reservations) made durable by
//! their own thread, with group commit, so that no disk write or fsync ever runs on the frame
//! path. The frame path changes the state in memory, queues the LUN, builds its reply and
//! parks it; the persister writes every queued LUN's latest state (temporary file, fsync,
//! rename), syncs each directory once for the whole batch, marks the versions durable and
//! wakes the worker, which then sends the parked replies. A host is never told a change
//! happened before it is on disk.

use super::persist::{replace_file, sync_dir, PersistError, StateFile};
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// LUNs queued at most (a LUN is queued once until written: more than the shelf's LUNs).
const QUEUE: usize = 1024;
/// Pause before retrying writes that failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One LUN's state as the frame path, the console and the persister share it.
pub struct StateCell {
    /// The state; `version` changes under this lock.
    pub(super) state: Mutex<StateFile>,
    /// Bumped by every change (under the state lock).
    version: AtomicU64,
    /// The highest version known to be on disk.
    durable: AtomicU64,
    /// Queued for the persister and not yet picked up.
    queued: AtomicBool,
    /// Serialises writers of the file (persister and console), so a later snapshot is never
    /// overwritten by an earlier one.
    file: Mutex<()>,
    /// Where the state lives.
    pub(super) path: PathBuf,
}

impl StateCell {
    /// A cell holding `state`, already on disk as far as anyone knows.
    pub fn new(state: StateFile, path: PathBuf) -> StateCell {
        StateCell {
            state: Mutex::new(state),
            version: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            queued: AtomicBool::new(false),
            file: Mutex::new(()),
            path,
        }
    }

    /// Records a change (call with the state lock held); returns its version.
    pub(super) fn bump(&self) -> u64 {
        self.version.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Version `v` (or a later one) is on disk.
    pub(super) fn mark_durable(&self, v: u64) {
        self.durable.fetch_max(v, Ordering::AcqRel);
    }

    /// The version the last reply must wait for, if the state on disk is behind.
    pub fn unsynced(&self) -> Option<u64> {
        let v = self.version.load(Ordering::Acquire);
        (self.durable.load(Ordering::Acquire) < v).then_some(v)
    }

    /// Is version `v` on disk?
    pub fn is_durable(&self, v: u64) -> bool {
        self.durable.load(Ordering::Acquire) >= v
    }

    /// Writes the latest state now (temporary file, fsync, rename, and the directory when
    /// `sync_directory`); returns the version written.
    fn write_latest(&self, sync_directory: bool) -> Result<u64, PersistError> {
        let _file = self.file.lock();
        let (snapshot, v) = {
            let s = self.state.lock();
            (s.clone(), self.version.load(Ordering::Acquire))
        };
        let body = serde_json::to_vec_pretty(&snapshot).map_err(|e| PersistError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        replace_file(&self.path, &body)?;
        if sync_directory {
            sync_dir(self.path.parent().unwrap_or(std::path::Path::new(".")))?;
        }
        Ok(v)
    }

    /// Writes the latest state durably on the calling thread (console changes).
    pub fn store_now(&self) -> Result<(), PersistError> {
        let v = self.write_latest(true)?;
        self.mark_durable(v);
        Ok(())
    }
}

enum Job {
    Write(Arc<StateCell>),
    Flush(SyncSender<()>),
}

/// A handle to the persister thread; cheap to clone.
#[derive(Clone)]
pub struct Persister {
    tx: SyncSender<Job>,
    failures: Arc<AtomicU64>,
}

/// The worker's end: readable after every batch the persister made durable.
pub struct PersistWake {
    rx: UnixStream,
}

impl PersistWake {
    /// The descriptor to poll.
    pub fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
    /// Empties the wake-up pipe (after a poll said it is readable).
    pub fn drain(&self) {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl Persister {
    /// Starts the persister thread.
    pub fn start() -> std::io::Result<(Persister, PersistWake)> {
        let (tx, rx) = sync_channel(QUEUE);
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let failures = Arc::new(AtomicU64::new(0));
        let f = failures.clone();
        std::thread::Builder::new()
            .name("es-persist".into())
            .spawn(move || run(rx, wake_tx, f))?;
        Ok((Persister { tx, failures }, PersistWake { rx: wake_rx }))
    }

    /// Queues `cell` to be written (once, however many changes it gets before the persister
    /// picks it up). Never blocks.
    pub fn queue(&self, cell: &Arc<StateCell>) {
        if cell.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(TrySendError::Full(Job::Write(c)) | TrySendError::Disconnected(Job::Write(c))) =
            self.tx.try_send(Job::Write(cell.clone()))
        {
            // Cannot happen with fewer LUNs than QUEUE; the next change queues it again.
            c.queued.store(false, Ordering::Release);
            tracing::error!(path = %c.path.display(), "persister queue full: state change not queued");
        }
    }

    /// Waits (at most `timeout`) until everything queued so far is on disk.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done_tx, done_rx) = sync_channel(1);
        if self.tx.send(Job::Flush(done_tx)).is_err() {
            return false;
        }
        done_rx.recv_timeout(timeout).is_ok()
    }

    /// Batches that failed to write (each retried).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

fn run(rx: Receiver<Job>, mut wake: UnixStream, failures: Arc<AtomicU64>) {
    let mut retry: Vec<Arc<StateCell>> = Vec::new();
    let mut flushes: Vec<SyncSender<()>> = Vec::new();
    loop {
        let first = if retry.is_empty() {
            match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(RETRY_AFTER) {
                Ok(j) => Some(j),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        let mut cells = std::mem::take(&mut retry);
        for job in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            match job {
                Job::Write(c) => cells.push(c),
                Job::Flush(done) => flushes.push(done),
            }
        }
        let mut written = Vec::new();
        let mut dirs = BTreeSet::new();
        for cell in cells {
            // Cleared before the snapshot: a change made after it queues the LUN again.
            cell.queued.store(false, Ordering::Release);
            match cell.write_latest(false) {
                Ok(v) => {
                    if let Some(d) = cell.path.parent() {
                        dirs.insert(d.to_path_buf());
                    }
                    written.push((cell, v));
                }
                Err(e) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "LUN state could not be written; retrying in 1 s (the hosts' requests stay unanswered until it is)");
                    retry.push(cell);
                }
            }
        }
        let mut dirs_ok = true;
        for d in &dirs {
            if let Err(e) = sync_dir(d) {
                failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "state directory could not be synced; retrying in 1 s");
                dirs_ok = false;
            }
        }
        if dirs_ok {
            for (cell, v) in &written {
                cell.mark_durable(*v);
            }
            if !written.is_empty() {
                let _ = wake.write(&[1]);
            }
        } else {
            retry.extend(written.into_iter().map(|(c, _)| c));
        }
        // A flush is answered once everything before it is durable (a retry pending: later).
        if retry.is_empty() {
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_become_durable_in_groups_and_the_worker_is_woken() {
        let dir = std::env::temp_dir().join(format!("es-persister-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (p, wake) = Persister::start().unwrap();
        let cells: Vec<Arc<StateCell>> = (0..4)
            .map(|i| {
                Arc::new(StateCell::new(
                    StateFile::default(),
                    dir.join(format!("lun-1.{i}.json")),
                ))
            })
            .collect();
        let mut last = Vec::new();
        for round in 0..50u32 {
            for c in &cells {
                let v = {
                    let mut s = c.state.lock();
                    s.config_string = format!("round {round}").into_bytes();
                    c.bump()
                };
                p.queue(c);
                last.push(v);
            }
        }
        assert!(p.flush(Duration::from_secs(10)));
        for c in &cells {
            assert_eq!(c.unsynced(), None, "the last version is durable");
            let on_disk = StateFile::load(&c.path).unwrap().unwrap();
            assert_eq!(on_disk.config_string, b"round 49");
        }
        let mut pfd = libc::pollfd {
            fd: wake.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 1000) }, 1, "worker woken");
        wake.drain();
        assert_eq!(p.failures(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_is_retried_and_stays_unsynced_until_it_works() {
        let dir = std::env::temp_dir().join(format!("es-persister-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A directory where the state file should be: the rename fails.
        let path = dir.join("lun-1.0.json");
        std::fs::create_dir_all(path.join("blocker")).unwrap();
        let (p, _wake) = Persister::start().unwrap();
        let cell = Arc::new(StateCell::new(StateFile::default(), path.clone()));
        let v = {
            let _s = cell.state.lock();
            cell.bump()
        };
        p.queue(&cell);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(cell.unsynced(), Some(v), "not durable while writes fail");
        assert!(p.failures() >= 1);
        std::fs::remove_dir_all(&path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while cell.unsynced().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "retry never succeeded"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(StateFile::load(&path).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
