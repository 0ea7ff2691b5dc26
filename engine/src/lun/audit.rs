//! The audit trail of access control: every change to a mask list, a reservation, a config
//! string or the access lists, from the wire or the console, with its source. Records go to
//! the journal (log target `audit`) and, one JSON object per line, to `state_dir/audit.log`,
//! written and synced by their own thread so the frame path never waits on it.

use serde::Serialize;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// File name of the audit log inside `state_dir`.
pub const AUDIT_FILE: &str = "audit.log";
/// The log is rotated to `audit.log.1` beyond this size.
const ROTATE_BYTES: u64 = 16 << 20;
/// Records waiting for the writer at most.
const QUEUE: usize = 4096;

/// One change.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Seconds since the epoch.
    pub at: u64,
    /// Who: `host 52:54:00:..` (a frame) or `console <user>`.
    pub source: String,
    /// The LUN (`e1.0`), or `shelf` for shelf-wide lists.
    pub lun: String,
    /// What changed.
    pub change: String,
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A handle to the audit writer; cheap to clone.
#[derive(Clone, Default)]
pub struct Audit {
    tx: Option<SyncSender<AuditRecord>>,
    lost: Arc<AtomicU64>,
}

impl Audit {
    /// Starts the writer appending to `path`.
    pub fn start(path: PathBuf) -> std::io::Result<Audit> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Opened once here so that a path that cannot be written fails the start, loudly.
        OpenOptions::new().create(true).append(true).open(&path)?;
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("es-audit".into())
            .spawn(move || write_loop(&path, rx))?;
        Ok(Audit {
            tx: Some(tx),
            lost: Arc::default(),
        })
    }

    /// A handle that records nothing (tests, detached LUN state).
    pub fn disabled() -> Audit {
        Audit::default()
    }

    /// Records a change. Never blocks: if the writer is more than [`QUEUE`] records behind,
    /// the record is counted as lost and logged here instead.
    pub fn record(&self, source: &str, lun: &str, change: String) {
        let Some(tx) = &self.tx else { return };
        let rec = AuditRecord {
            at: now_secs(),
            source: source.to_string(),
            lun: lun.to_string(),
            change,
        };
        match tx.try_send(rec) {
            Ok(()) => {}
            Err(TrySendError::Full(rec)) | Err(TrySendError::Disconnected(rec)) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "audit", source = %rec.source, lun = %rec.lun, change = %rec.change, "audit record not written to the audit log (writer behind)");
            }
        }
    }

    /// Records that could not be queued.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

fn write_loop(path: &Path, rx: Receiver<AuditRecord>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        let mut body = Vec::new();
        for r in &batch {
            tracing::info!(target: "audit", source = %r.source, lun = %r.lun, "{}", r.change);
            if let Ok(line) = serde_json::to_vec(r) {
                body.extend_from_slice(&line);
                body.push(b'\n');
            }
        }
        if let Err(e) = append(path, &body) {
            tracing::error!(path = %path.display(), error = %e, records = batch.len(), "audit log could not be written (the journal still has them)");
        }
    }
}

fn append(path: &Path, body: &[u8]) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > ROTATE_BYTES) {
        std::fs::rename(path, path.with_extension("log.1"))?;
    }
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(body)?;
    f.sync_data()
}

/// The last `n` records of the audit log at `path` (oldest first).
pub fn tail(path: &Path, n: usize) -> std::io::Result<Vec<AuditRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    Ok(lines[start..]
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reach_the_file_in_order() {
        let dir = std::env::temp_dir().join(format!("es-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join(AUDIT_FILE);
        let audit = Audit::start(path.clone()).unwrap();
        for i in 0..50 {
            audit.record("host 52:54:00:00:00:01", "e1.0", format!("change {i}"));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let got = tail(&path, 100).unwrap();
            if got.len() == 50 {
                assert_eq!(got[0].change, "change 0");
                assert_eq!(got[49].change, "change 49");
                assert_eq!(tail(&path, 3).unwrap()[0].change, "change 47");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "audit records not written"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(audit.lost(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
