//! The admin socket: a Unix stream socket (mode 0600, root only) that takes one command line
//! per connection and answers with text. The worker runs the commands between batches; this
//! module only moves lines. `ethershelf ctl` and `ethershelf console` are its clients.

pub mod client;
pub mod console;

use crate::worker::admin::AdminRequest;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::time::Duration;

/// Longest command line accepted.
const MAX_LINE: u64 = 4096;
/// How long a command may take before the client is told the shelf is busy.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A way to put requests to the worker from another thread: the bounded request channel
/// and the socket whose readability wakes the worker's ring.
pub struct WorkerLink {
    requests: SyncSender<AdminRequest>,
    wake: UnixStream,
}

impl WorkerLink {
    /// Wraps the sending ends.
    pub fn new(requests: SyncSender<AdminRequest>, wake: UnixStream) -> WorkerLink {
        WorkerLink { requests, wake }
    }

    /// Another handle on the same worker.
    pub fn try_clone(&self) -> std::io::Result<WorkerLink> {
        Ok(WorkerLink {
            requests: self.requests.clone(),
            wake: self.wake.try_clone()?,
        })
    }

    /// Sends the request `make` builds around a reply channel and waits up to `timeout` for
    /// the answer. `Err` says why there is none (busy, or no answer in time).
    pub fn ask<T>(
        &self,
        make: impl FnOnce(mpsc::Sender<T>) -> AdminRequest,
        timeout: Duration,
    ) -> Result<T, &'static str> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .try_send(make(tx))
            .map_err(|_| "the shelf is busy with other admin requests; try again")?;
        let _ = (&self.wake).write(&[1]);
        rx.recv_timeout(timeout)
            .map_err(|_| "the shelf did not answer in time")
    }
}

/// The listening socket; the socket file is removed when this is dropped.
pub struct AdminServer {
    path: PathBuf,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` and serves it on a thread: each line goes to the worker through `link`.
pub fn start(path: &Path, link: WorkerLink) -> std::io::Result<AdminServer> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: another ethershelf is running with this admin socket",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // The socket is created 0600 at once (no window between bind and chmod under a lax
    // umask). umask is process-wide: this runs at start, before the workers create files.
    // SAFETY: umask only swaps the process's file-creation mask; it touches no memory.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                // Defence in depth behind the file mode: only root or the shelf's own user.
                let uid = match peer_uid(&conn) {
                    Some(uid) if uid == 0 || uid == effective_uid() => uid,
                    uid => {
                        tracing::warn!(?uid, "admin connection refused: not root");
                        refuse(&mut conn);
                        continue;
                    }
                };
                if let Err(e) = serve_one(conn, &link, &console_user(uid)) {
                    tracing::debug!(error = %e, "admin connection ended");
                }
            }
        })?;
    tracing::info!(socket = %path.display(), "admin socket ready (ethershelf ctl / console)");
    Ok(AdminServer {
        path: path.to_path_buf(),
    })
}

/// Reads the refused client's line (bounded, briefly) so that the answer is not lost to a
/// reset, then says why.
fn refuse(conn: &mut UnixStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    let _ = BufReader::new((&*conn).take(MAX_LINE)).read_line(&mut line);
    let _ = conn.write_all(b"error: permission denied: the admin socket takes root only\n");
}

/// The user id of the process at the other end (SO_PEERCRED).
fn peer_uid(conn: &UnixStream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred of that size.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// The audit trail's name for a console user: `console NAME` from the password database.
fn console_user(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id = f.nth(1)?.parse::<u32>().ok()?;
                (id == uid).then(|| name.to_string())
            })
        });
    match name {
        Some(n) => format!("console {n}"),
        None => format!("console uid {uid}"),
    }
}

fn serve_one(mut conn: UnixStream, link: &WorkerLink, user: &str) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new((&conn).take(MAX_LINE)).read_line(&mut line)?;
    let line = line.trim().to_string();
    let answer = link
        .ask(
            |reply| AdminRequest::Command {
                line,
                user: user.to_string(),
                reply,
            },
            ANSWER_TIMEOUT,
        )
        .unwrap_or_else(|why| format!("error: {why}\n"));
    conn.write_all(answer.as_bytes())
}

/// Sends one command to the admin socket at `path` and returns the answer.
pub fn request(path: &Path, line: &str) -> std::io::Result<String> {
    let mut conn = UnixStream::connect(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot reach the shelf at {}: {e} (is it running? is this the admin socket of its configuration?)",
                path.display()
            ),
        )
    })?;
    conn.set_read_timeout(Some(ANSWER_TIMEOUT + Duration::from_secs(5)))?;
    conn.write_all(line.as_bytes())?;
    conn.write_all(b"\n")?;
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    Ok(answer)
}
