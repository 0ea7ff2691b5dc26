//! The shelf's management HTTP listener: `GET /metrics` (Prometheus) asks the workers for
//! a snapshot (answered between batches), renders it and replies; `GET /` is the read-only
//! front panel (a page built into the binary) and `GET /panel.json` its live document. Each connection has its own thread,
//! up to `MAX_CONNECTIONS` at once (more are answered 503 at once), and a deadline for the
//! whole request head: a client that sends a byte every few seconds is cut off after
//! `HEAD_DEADLINE`, and never holds up another scrape.

use super::render::render;
use super::snapshot::Snapshot;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Longest request head read.
const MAX_REQUEST: usize = 8192;
/// Per-connection write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole request head must arrive within this.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 8;

/// Where snapshots come from (the workers, through the admin channel).
pub type SnapshotSource = Box<dyn Fn() -> Option<Snapshot> + Send + Sync>;
/// Where the front panel's document comes from.
pub type PanelSource = Box<dyn Fn() -> Option<serde_json::Value> + Send + Sync>;

/// What the listener serves.
pub struct Sources {
    /// Counters for `/metrics`.
    pub snapshot: SnapshotSource,
    /// The document for `/panel.json`.
    pub panel: PanelSource,
}

/// The front panel page (HTML, CSS and script in one file; no outside assets).
const PANEL_PAGE: &str = include_str!("../../assets/panel.html");

/// Binds `listen` and serves scrapes on a thread for the life of the process; returns the
/// bound address (useful with port 0).
pub fn start(listen: SocketAddr, source: Sources) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let source = std::sync::Arc::new(source);
    let active = std::sync::Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    let _ = conn.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = reply(
                        &mut conn,
                        "503 Service Unavailable",
                        "text/plain; charset=utf-8",
                        "too many connections\n",
                    );
                    continue;
                }
                let (source, active) = (source.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("metrics-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve_one(conn, &source) {
                            tracing::debug!(error = %e, "metrics connection ended");
                        }
                        active.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    tracing::warn!("metrics connection dropped: no thread for it");
                }
            }
        })?;
    Ok(addr)
}

fn serve_one(mut conn: TcpStream, source: &Sources) -> std::io::Result<()> {
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request head not complete in time",
            ));
        }
        conn.set_read_timeout(Some(left))?;
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET", "/metrics") => match (source.snapshot)() {
            Some(snap) => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                render(&snap),
            ),
            None => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                "the shelf's worker did not answer in time\n".to_string(),
            ),
        },
        ("GET", "/" | "/index.html") => {
            ("200 OK", "text/html; charset=utf-8", PANEL_PAGE.to_string())
        }
        ("GET", "/panel.json") => match (source.panel)() {
            Some(doc) => ("200 OK", "application/json", doc.to_string()),
            None => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                "the shelf's worker did not answer in time\n".to_string(),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: the front panel is at /, metrics at /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET is served\n".to_string(),
        ),
    };
    reply(&mut conn, status, kind, &body)
}

fn reply(conn: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body.as_bytes())?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snapshot::{LunCounters, LunSample};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn scrape_renders_a_parseable_snapshot_and_other_paths_are_refused() {
        let source: SnapshotSource = Box::new(|| {
            let mut counters = LunCounters {
                reads: 7,
                ..LunCounters::default()
            };
            counters.read_latency.record(40_000);
            Some(Snapshot {
                shelf: 3,
                luns: vec![LunSample {
                    lun: "3.1".into(),
                    online: true,
                    size_bytes: 1 << 20,
                    counters,
                }],
                ..Snapshot::default()
            })
        });
        let addr = start(
            "127.0.0.1:0".parse().unwrap(),
            Sources {
                snapshot: source,
                panel: Box::new(|| Some(serde_json::json!({"shelf": 3}))),
            },
        )
        .unwrap();
        let reply = get(addr, "/metrics");
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        let body = reply.split("\r\n\r\n").nth(1).unwrap();
        let lines = body.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let reads = scrape
            .samples
            .iter()
            .find(|s| s.metric == "ethershelf_lun_reads_total")
            .expect("reads counter present");
        assert_eq!(reads.labels.get("lun"), Some("3.1"));
        assert!(matches!(reads.value, prometheus_parse::Value::Counter(v) if v == 7.0));
        assert!(body.contains(
            "ethershelf_lun_request_duration_seconds_bucket{lun=\"3.1\",op=\"read\",le=\"0.00005\"} 1"
        ));
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        let page = get(addr, "/");
        assert!(page.starts_with("HTTP/1.1 200 OK") && page.contains("text/html"));
        assert!(page.contains("panel.json"), "the page polls its document");
        let doc = get(addr, "/panel.json");
        assert!(
            doc.contains("application/json") && doc.ends_with("{\"shelf\":3}"),
            "{doc}"
        );
    }

    #[test]
    fn slow_clients_neither_block_scrapes_nor_stay_for_ever() {
        let addr = start(
            "127.0.0.1:0".parse().unwrap(),
            Sources {
                snapshot: Box::new(|| Some(Snapshot::default())),
                panel: Box::new(|| None),
            },
        )
        .unwrap();
        // Clients that dribble a byte now and then hold their own connection only.
        let mut slow = Vec::new();
        for _ in 0..3 {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"G").unwrap();
            slow.push(c);
        }
        let t = Instant::now();
        assert!(get(addr, "/metrics").starts_with("HTTP/1.1 200"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a scrape waited behind slow clients"
        );
        // A dribbler is cut off at the deadline however it keeps sending.
        let c = &mut slow[0];
        let t = Instant::now();
        let mut cut = false;
        while t.elapsed() < HEAD_DEADLINE + Duration::from_secs(3) {
            if c.write_all(b"E").is_err() {
                cut = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            let mut b = [0u8; 1];
            c.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
            if matches!(c.read(&mut b), Ok(0)) {
                cut = true;
                break;
            }
        }
        assert!(cut, "a slow client kept its connection past the deadline");
        // More connections than the limit are turned away, not queued.
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS + 2 {
            held.push(TcpStream::connect(addr).unwrap());
        }
        let mut busy = String::new();
        held.last_mut().unwrap().read_to_string(&mut busy).unwrap();
        assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    }

    #[test]
    fn a_silent_worker_gives_503() {
        let addr = start(
            "127.0.0.1:0".parse().unwrap(),
            Sources {
                snapshot: Box::new(|| None),
                panel: Box::new(|| None),
            },
        )
        .unwrap();
        assert!(get(addr, "/metrics").starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/panel.json").starts_with("HTTP/1.1 503"));
    }
}
