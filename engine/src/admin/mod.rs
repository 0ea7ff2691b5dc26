//! The admin socket: a Unix stream socket (mode 0600, root only) that takes one command line
//! per connection and answers with text. The worker runs the commands between batches; this
//! module only moves lines. `ethershelf ctl` is its client.

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

/// The listening socket; the socket file is removed when this is dropped.
pub struct AdminServer {
    path: PathBuf,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` and serves it on a thread: each line goes to the worker through `requests`,
/// with a byte on `wake` so that its ring notices.
pub fn start(
    path: &Path,
    requests: SyncSender<AdminRequest>,
    wake: UnixStream,
) -> std::io::Result<AdminServer> {
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
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let Err(e) = serve_one(conn, &requests, &wake) {
                    tracing::debug!(error = %e, "admin connection ended");
                }
            }
        })?;
    tracing::info!(socket = %path.display(), "admin socket ready (ethershelf ctl / console)");
    Ok(AdminServer {
        path: path.to_path_buf(),
    })
}

fn serve_one(
    mut conn: UnixStream,
    requests: &SyncSender<AdminRequest>,
    mut wake: &UnixStream,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new((&conn).take(MAX_LINE)).read_line(&mut line)?;
    let (tx, rx) = mpsc::channel();
    let answer = match requests.try_send(AdminRequest {
        line: line.trim().to_string(),
        reply: tx,
    }) {
        Ok(()) => {
            let _ = wake.write(&[1]);
            rx.recv_timeout(ANSWER_TIMEOUT)
                .unwrap_or_else(|_| "error: the shelf did not answer in time\n".into())
        }
        Err(_) => "error: the shelf is busy with other admin commands; try again\n".into(),
    };
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
