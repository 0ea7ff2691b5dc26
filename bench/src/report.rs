//! Results: a human summary like fio's and a JSON document with stable field names
//! (documented in bench/README.md).

use crate::discover::Target;
use crate::engine::{DirStats, RunStats};
use crate::job::Job;
use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Minimum.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
}

/// One direction's results.
#[derive(Debug, Clone, Serialize)]
pub struct Direction {
    /// Completed I/Os.
    pub ios: u64,
    /// Bytes.
    pub bytes: u64,
    /// I/Os per second.
    pub iops: f64,
    /// MiB per second.
    pub mib_per_s: f64,
    /// Latency.
    pub latency: Latency,
}

/// One path's share.
#[derive(Debug, Clone, Serialize)]
pub struct PathShare {
    /// Local interface.
    pub interface: String,
    /// Target port MAC.
    pub target_mac: String,
    /// Frames sent on it.
    pub frames: u64,
    /// Share of all frames, 0..1.
    pub share: f64,
}

/// A job's results (schema version 1).
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// Schema version of this document.
    pub schema: u32,
    /// Job name.
    pub name: String,
    /// Target `shelf.slot`.
    pub target: String,
    /// Pattern.
    pub rw: String,
    /// Block size, bytes.
    pub bs: u64,
    /// I/Os in flight per job.
    pub iodepth: usize,
    /// Parallel jobs.
    pub numjobs: usize,
    /// Frames in flight allowed per job.
    pub window: usize,
    /// Sectors per frame.
    pub frame_sectors: u8,
    /// Measured seconds.
    pub seconds: f64,
    /// Reads.
    pub read: Direction,
    /// Writes.
    pub write: Direction,
    /// Retransmitted frames.
    pub retransmits: u64,
    /// Late replies.
    pub late_replies: u64,
    /// Failed I/Os.
    pub errors: u64,
    /// Blocks verified (0 without --verify).
    pub verified_blocks: u64,
    /// Verify failures: LBA and reason (at most 100 listed).
    pub verify_failures: Vec<VerifyFailure>,
    /// Per-path frame counts.
    pub paths: Vec<PathShare>,
}

/// One verify failure.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyFailure {
    /// First LBA of the block.
    pub lba: u64,
    /// What was wrong.
    pub reason: String,
}

fn direction(d: &DirStats, seconds: f64) -> Direction {
    let us = |ns: f64| (ns / 1000.0 * 10.0).round() / 10.0;
    let h = &d.latency;
    let lat = if d.ios == 0 {
        Latency {
            min_us: 0.0,
            mean_us: 0.0,
            p50_us: 0.0,
            p90_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            max_us: 0.0,
        }
    } else {
        Latency {
            min_us: us(h.min() as f64),
            mean_us: us(h.mean()),
            p50_us: us(h.value_at_quantile(0.5) as f64),
            p90_us: us(h.value_at_quantile(0.9) as f64),
            p99_us: us(h.value_at_quantile(0.99) as f64),
            p999_us: us(h.value_at_quantile(0.999) as f64),
            max_us: us(h.max() as f64),
        }
    };
    let s = seconds.max(1e-9);
    Direction {
        ios: d.ios,
        bytes: d.bytes,
        iops: (d.ios as f64 / s).round(),
        mib_per_s: ((d.bytes as f64 / s / 1048576.0) * 100.0).round() / 100.0,
        latency: lat,
    }
}

/// Merges the stats of parallel jobs.
pub fn merge(parts: Vec<RunStats>) -> RunStats {
    let mut all = RunStats::default();
    for p in parts {
        all.read.ios += p.read.ios;
        all.read.bytes += p.read.bytes;
        let _ = all.read.latency.add(&p.read.latency);
        all.write.ios += p.write.ios;
        all.write.bytes += p.write.bytes;
        let _ = all.write.latency.add(&p.write.latency);
        all.retransmits += p.retransmits;
        all.late_replies += p.late_replies;
        all.errors += p.errors;
        all.verified_blocks += p.verified_blocks;
        all.verify_failures.extend(p.verify_failures);
        if all.path_frames.len() < p.path_frames.len() {
            all.path_frames.resize(p.path_frames.len(), 0);
        }
        for (a, b) in all.path_frames.iter_mut().zip(&p.path_frames) {
            *a += b;
        }
        all.seconds = all.seconds.max(p.seconds);
    }
    all
}

/// Builds the report of `job` on `target`.
pub fn build(
    job: &Job,
    target: &Target,
    ifaces: &[String],
    window: usize,
    stats: &RunStats,
) -> JobReport {
    let total: u64 = stats.path_frames.iter().sum();
    JobReport {
        schema: 1,
        name: job.name.clone(),
        target: target.addr.to_string(),
        rw: format!("{:?}", job.rw).to_lowercase(),
        bs: job.bs,
        iodepth: job.iodepth,
        numjobs: job.numjobs,
        window,
        frame_sectors: target.frame_sectors,
        seconds: (stats.seconds * 1000.0).round() / 1000.0,
        read: direction(&stats.read, stats.seconds),
        write: direction(&stats.write, stats.seconds),
        retransmits: stats.retransmits,
        late_replies: stats.late_replies,
        errors: stats.errors,
        verified_blocks: stats.verified_blocks,
        verify_failures: stats
            .verify_failures
            .iter()
            .map(|(lba, reason)| VerifyFailure {
                lba: *lba,
                reason: reason.clone(),
            })
            .collect(),
        paths: target
            .paths
            .iter()
            .zip(&stats.path_frames)
            .map(|(p, n)| PathShare {
                interface: ifaces[p.sock].clone(),
                target_mac: p.target_mac.to_string(),
                frames: *n,
                share: if total == 0 {
                    0.0
                } else {
                    *n as f64 / total as f64
                },
            })
            .collect(),
    }
}

/// The human summary.
pub fn human(r: &JobReport) -> String {
    let mut s = format!(
        "{}: target e{} rw={} bs={} iodepth={} numjobs={} window={} frames of {} sectors, {:.1} s\n",
        r.name, r.target, r.rw, r.bs, r.iodepth, r.numjobs, r.window, r.frame_sectors, r.seconds
    );
    for (name, d) in [("read", &r.read), ("write", &r.write)] {
        if d.ios == 0 {
            continue;
        }
        let l = &d.latency;
        s += &format!(
            "  {name:5}: IOPS={:.0}, BW={:.2} MiB/s ({} I/Os)\n         lat (us): min={} mean={} p50={} p90={} p99={} p99.9={} max={}\n",
            d.iops, d.mib_per_s, d.ios, l.min_us, l.mean_us, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    s += &format!(
        "  retransmits={} late_replies={} errors={}",
        r.retransmits, r.late_replies, r.errors
    );
    if r.verified_blocks > 0 || !r.verify_failures.is_empty() {
        s += &format!(
            " verified_blocks={} verify_failures={}",
            r.verified_blocks,
            r.verify_failures.len()
        );
    }
    s += "\n  paths:";
    for p in &r.paths {
        s += &format!(" {}->{} {:.1}%", p.interface, p.target_mac, p.share * 100.0);
    }
    for f in r.verify_failures.iter().take(10) {
        s += &format!("\n  VERIFY FAILED at LBA {}: {}", f.lba, f.reason);
    }
    s + "\n"
}
