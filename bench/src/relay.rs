//! A frame relay that misbehaves on purpose: it forwards every Ethernet frame between two
//! interfaces (in lab namespaces) with seeded loss, duplication, reordering, delay,
//! corruption, truncation and link cuts, for a bounded time, and counts what it did. The
//! kernel here has no netem; this stands in for a bad switch or cable.

use crate::socket::AoeSocket;
use std::collections::BinaryHeap;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest run allowed.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Frames held for delay/reordering at most; more are dropped (and counted).
pub const MAX_HELD: usize = 65_536;

/// What the relay does to frames (percentages are per frame and per direction).
#[derive(Debug, Clone, Default)]
pub struct Impairments {
    /// Frames dropped, percent.
    pub loss: f64,
    /// Frames sent twice, percent.
    pub duplicate: f64,
    /// Each frame is held a random time up to this (so frames overtake each other).
    pub reorder: Duration,
    /// Each frame is held this long (added to the reordering hold).
    pub delay: Duration,
    /// Frames with one byte after the Ethernet header flipped, percent.
    pub corrupt: f64,
    /// Frames cut to a random shorter length (at least the Ethernet header), percent.
    pub truncate: f64,
    /// Windows (start after the relay starts, length) during which nothing passes.
    pub cuts: Vec<(Duration, Duration)>,
}

/// What the relay did, per direction (`a_to_b`, `b_to_a`).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Counts {
    /// Frames received.
    pub received: u64,
    /// Frames sent on (duplicates included).
    pub forwarded: u64,
    /// Frames dropped by the loss setting.
    pub lost: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Frames corrupted.
    pub corrupted: u64,
    /// Frames truncated.
    pub truncated: u64,
    /// Frames dropped during a link cut.
    pub cut: u64,
    /// Frames received that were sent to the broadcast address (discovery from hosts,
    /// announcements from shelves).
    pub broadcast: u64,
    /// Frames dropped because too many were held.
    pub overflow: u64,
    /// Frames the far side's socket refused.
    pub send_errors: u64,
}

/// The whole run's counts.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Report {
    /// Seconds the relay ran.
    pub seconds: f64,
    /// Frames from the first interface to the second.
    pub a_to_b: Counts,
    /// Frames from the second interface to the first.
    pub b_to_a: Counts,
    /// Link cuts started on demand ([`Controls::cut_begin`]).
    pub cuts_on_demand: u32,
}

/// Flags another thread (a signal handler) sets to steer a running relay.
#[derive(Debug, Default)]
pub struct Controls {
    /// Set: the relay stops and returns its report.
    pub stop: Arc<AtomicBool>,
    /// Set: a link cut begins now (nothing passes until `cut_end`); the relay clears it.
    pub cut_begin: Arc<AtomicBool>,
    /// Set: the cut begun on demand ends now; the relay clears it.
    pub cut_end: Arc<AtomicBool>,
}

/// A small seeded generator (xorshift64*): the same seed gives the same decisions for the
/// same frame sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn percent(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() % 1_000_000) as f64 / 10_000.0 < p
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Sends one frame without waiting; `false` when the kernel did not take it.
fn send_now(to: &AoeSocket, frame: &[u8]) -> bool {
    matches!(to.send_batch(&[frame]), Ok(1))
}

/// A frame waiting for its time.
struct Held {
    due: Instant,
    order: u64,
    to_b: bool,
    frame: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.order) == (o.due, o.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    /// Earliest first in a max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.order).cmp(&(self.due, self.order))
    }
}

/// Relays between `a` and `b` with `how` for `duration` (at most [`MAX_DURATION`]) or
/// until `controls.stop` is set.
pub fn run(
    a: &str,
    b: &str,
    how: &Impairments,
    duration: Duration,
    seed: u64,
    controls: &Controls,
) -> io::Result<Report> {
    use std::sync::atomic::Ordering::Relaxed;
    if a == b {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the relay needs two different interfaces",
        ));
    }
    let duration = duration.min(MAX_DURATION);
    let sockets = [
        AoeSocket::open_every_frame(a)?,
        AoeSocket::open_every_frame(b)?,
    ];
    let mut rng = Rng(seed.max(1) ^ 0x9E37_79B9_7F4A_7C15);
    let mut report = Report::default();
    let mut held: BinaryHeap<Held> = BinaryHeap::new();
    let mut order = 0u64;
    let start = Instant::now();
    let end = start + duration;
    let mut bufs = vec![vec![0u8; 65_536]; 64];
    let mut lens = [0usize; 64];
    let mut cut_now = false;
    while Instant::now() < end && !controls.stop.load(Relaxed) {
        if controls.cut_begin.swap(false, Relaxed) && !cut_now {
            cut_now = true;
            report.cuts_on_demand += 1;
        }
        if controls.cut_end.swap(false, Relaxed) {
            cut_now = false;
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h| h.due <= now) {
            let Some(h) = held.pop() else { break };
            let (to, counts) = if h.to_b {
                (&sockets[1], &mut report.a_to_b)
            } else {
                (&sockets[0], &mut report.b_to_a)
            };
            if send_now(to, &h.frame) {
                counts.forwarded += 1;
            } else {
                counts.send_errors += 1;
            }
        }
        let wait_ms = held.peek().map_or(10, |h| {
            h.due.saturating_duration_since(now).as_millis().min(10) as i32
        });
        crate::socket::wait_readable(&sockets, wait_ms);
        for side in 0..2 {
            let got = sockets[side].recv_batch(&mut bufs, &mut lens)?;
            for (buf, &n) in bufs.iter().zip(&lens).take(got) {
                let to_b = side == 0;
                let elapsed = Instant::now().duration_since(start);
                let counts = if to_b {
                    &mut report.a_to_b
                } else {
                    &mut report.b_to_a
                };
                counts.received += 1;
                if n >= 6 && buf[..6] == [0xFF; 6] {
                    counts.broadcast += 1;
                }
                if cut_now
                    || how
                        .cuts
                        .iter()
                        .any(|(at, len)| elapsed >= *at && elapsed < *at + *len)
                {
                    counts.cut += 1;
                    continue;
                }
                if rng.percent(how.loss) {
                    counts.lost += 1;
                    continue;
                }
                let mut frame = buf[..n].to_vec();
                if frame.len() > 14 && rng.percent(how.corrupt) {
                    let at = 14 + rng.below(frame.len() as u64 - 14) as usize;
                    frame[at] ^= 1 << rng.below(8);
                    counts.corrupted += 1;
                }
                if frame.len() > 15 && rng.percent(how.truncate) {
                    let keep = 14 + rng.below(frame.len() as u64 - 14) as usize;
                    frame.truncate(keep);
                    counts.truncated += 1;
                }
                let copies = if rng.percent(how.duplicate) {
                    counts.duplicated += 1;
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let hold = how.delay
                        + Duration::from_micros(rng.below(how.reorder.as_micros() as u64 + 1));
                    if hold.is_zero() {
                        let to = &sockets[usize::from(to_b)];
                        if send_now(to, &frame) {
                            counts.forwarded += 1;
                        } else {
                            counts.send_errors += 1;
                        }
                        continue;
                    }
                    if held.len() >= MAX_HELD {
                        counts.overflow += 1;
                        continue;
                    }
                    order += 1;
                    held.push(Held {
                        due: Instant::now() + hold,
                        order,
                        to_b,
                        frame: frame.clone(),
                    });
                }
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Parses a cut window `START+LEN` in seconds (e.g. `5+20`: from 5 s to 25 s after start).
pub fn parse_cut(s: &str) -> Result<(Duration, Duration), String> {
    let (a, b) = s
        .split_once('+')
        .ok_or_else(|| format!("cut '{s}': write START+LENGTH in seconds, e.g. 5+20"))?;
    let num = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0 && *x <= 3600.0)
            .ok_or_else(|| format!("cut '{s}': '{v}' is not a number of seconds (0..3600)"))
    };
    Ok((
        Duration::from_secs_f64(num(a)?),
        Duration::from_secs_f64(num(b)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded_and_percentages_hold() {
        let mut a = Rng(42);
        let mut b = Rng(42);
        let xs: Vec<u64> = (0..10).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..10).map(|_| b.next()).collect();
        assert_eq!(xs, ys);
        let mut r = Rng(7);
        let hits = (0..100_000).filter(|_| r.percent(5.0)).count();
        assert!((4_500..5_500).contains(&hits), "{hits} of 100000 at 5 %");
        assert_eq!((0..1000).filter(|_| r.percent(0.0)).count(), 0);
    }

    #[test]
    fn cut_windows_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_cut("5+20"),
            Ok((Duration::from_secs(5), Duration::from_secs(20)))
        );
        assert!(parse_cut("5").is_err());
        assert!(parse_cut("x+1").is_err());
        assert!(parse_cut("1+-3").is_err());
    }
}
