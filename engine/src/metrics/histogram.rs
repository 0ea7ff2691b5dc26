//! Latency histograms kept by one worker: fixed buckets and plain counters (one owner, no
//! atomics), read whole on scrape.

/// Upper bounds of the buckets, in seconds (the last bucket, `+Inf`, is implicit).
pub const BOUNDS_SECONDS: [f64; 16] = [
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
    500e-3, 1.0, 2.5,
];

const BOUNDS_NS: [u64; 16] = [
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
];

/// Buckets including `+Inf`.
pub const BUCKETS: usize = BOUNDS_NS.len() + 1;

/// A latency histogram: per-bucket counts (not cumulative) and the exact sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u64; BUCKETS],
    sum_ns: u64,
    max_ns: u64,
}

impl LatencyHistogram {
    /// Records one observation of `ns` nanoseconds.
    pub fn record(&mut self, ns: u64) {
        let bucket = BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.counts[bucket] += 1;
        self.sum_ns = self.sum_ns.wrapping_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// The longest observation, in seconds.
    pub fn max_seconds(&self) -> f64 {
        self.max_ns as f64 / 1e9
    }

    /// Mean observation in seconds (0 when empty).
    pub fn mean_seconds(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            n => self.sum_seconds() / n as f64,
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of all observations in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    /// Cumulative counts per bucket (`le` = `BOUNDS_SECONDS[i]`, then `+Inf`).
    pub fn cumulative(&self) -> [u64; BUCKETS] {
        let mut out = [0; BUCKETS];
        let mut running = 0;
        for (o, c) in out.iter_mut().zip(self.counts) {
            running += c;
            *o = running;
        }
        out
    }

    /// Adds `other`'s observations (aggregating workers).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }
}

/// Nanoseconds on the monotonic clock (a vDSO read, no system call).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_bucket_whose_bound_covers_them() {
        let mut h = LatencyHistogram::default();
        h.record(25_000); // exactly on the first bound: le="2.5e-5"
        h.record(25_001); // just above: second bucket
        h.record(3_000_000_000); // above every bound: +Inf
        let c = h.cumulative();
        assert_eq!(c[0], 1);
        assert_eq!(c[1], 2);
        assert_eq!(c[BUCKETS - 2], 2);
        assert_eq!(c[BUCKETS - 1], 3);
        assert_eq!(h.count(), 3);
        assert!((h.sum_seconds() - 3.000050001).abs() < 1e-9);
    }

    #[test]
    fn bounds_in_seconds_and_nanoseconds_agree() {
        for (s, ns) in BOUNDS_SECONDS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn merging_adds_counts_and_sums() {
        let mut a = LatencyHistogram::default();
        let mut b = LatencyHistogram::default();
        a.record(1_000);
        b.record(2_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.cumulative()[5], 1);
        assert_eq!(a.cumulative()[6], 2);
    }
}
