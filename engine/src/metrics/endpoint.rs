//! The HTTP listener Prometheus scrapes: `GET /metrics` asks the workers for a snapshot
//! (answered between batches), renders it and replies. One connection at a time with short
//! timeouts: scrapes are rare, and a stuck client must not hold the endpoint for long.

use super::render::render;
use super::snapshot::Snapshot;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Longest request head read.
const MAX_REQUEST: usize = 8192;
/// Per-connection read/write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Where snapshots come from (the workers, through the admin channel).
pub type SnapshotSource = Box<dyn Fn() -> Option<Snapshot> + Send>;

/// Binds `listen` and serves scrapes on a thread for the life of the process; returns the
/// bound address (useful with port 0).
pub fn start(listen: SocketAddr, source: SnapshotSource) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let Err(e) = serve_one(conn, &source) {
                    tracing::debug!(error = %e, "metrics connection ended");
                }
            }
        })?;
    Ok(addr)
}

fn serve_one(mut conn: TcpStream, source: &SnapshotSource) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
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
        ("GET", "/metrics") => match source() {
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
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "ethershelf: metrics at /metrics\n".to_string(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET is served\n".to_string(),
        ),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
        let addr = start("127.0.0.1:0".parse().unwrap(), source).unwrap();
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
    }

    #[test]
    fn a_silent_worker_gives_503() {
        let addr = start("127.0.0.1:0".parse().unwrap(), Box::new(|| None)).unwrap();
        assert!(get(addr, "/metrics").starts_with("HTTP/1.1 503"));
    }
}
