//! systemd integration without libsystemd: `sd_notify` datagrams (READY, STATUS, STOPPING,
//! WATCHDOG) to `$NOTIFY_SOCKET`, and the watchdog thread that pings only while the worker
//! answers a health check.

use crate::worker::Liveness;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

/// Sends `state` (e.g. "READY=1") to systemd; a no-op when not started by systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    // Never block the caller (the watchdog, the reloader) on a full receive queue.
    let _ = sock.set_nonblocking(true);
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "could not notify systemd");
    }
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this process).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the systemd watchdog while the LUN worker's loop keeps turning and its queue
/// workers answer. The check reads the worker's heartbeat directly: it shares no channel with
/// the console or metrics scrapes, so a slow scrape or a long console command never looks like
/// a stuck worker (only a worker that stops turning does).
pub fn start_watchdog(liveness: Arc<Liveness>, interval: Duration) -> std::io::Result<()> {
    // Checked four times per interval: a stuck worker is noticed within about half of it.
    let period = interval / 4;
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut failing = false;
            let mut last = liveness.beat();
            loop {
                std::thread::sleep(period);
                let beat = liveness.beat();
                let turning = beat != last;
                last = beat;
                if turning && liveness.queue_workers_ok() {
                    if failing {
                        tracing::info!("worker passes the health check again");
                    }
                    failing = false;
                    notify("WATCHDOG=1");
                } else {
                    if !failing {
                        tracing::error!(
                            turning,
                            "worker failed the health check (its loop stopped turning, or a queue worker is stuck): not pinging the systemd watchdog"
                        );
                    }
                    failing = true;
                }
            }
        })?;
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog armed"
    );
    Ok(())
}
