//! Plain per-worker counters (owned by one thread, no atomics on the hot path).

use std::fmt;

/// What one worker has seen and done.
#[derive(Debug, Default, Clone)]
pub struct WorkerStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Frames that failed to send.
    pub tx_errors: u64,
    /// Dropped: shorter than a header, or truncated by the socket.
    pub drop_truncated: u64,
    /// Dropped: R flag set (a response, maybe our own).
    pub drop_response: u64,
    /// Dropped: addressed to another shelf or slot.
    pub drop_not_ours: u64,
    /// Dropped: sender not on the LUN's mask list.
    pub drop_masked: u64,
    /// Dropped: a config/mask/reserve argument too short or inconsistent.
    pub drop_malformed: u64,
    /// Dropped: config test/prefix mismatch (silence is the answer).
    pub silent_config: u64,
    /// Wildcard ATA/mask/reserve requests that matched several LUNs (refused).
    pub drop_ambiguous: u64,
    /// Dropped: the host over its fair share, or the state-change backlog full.
    pub drop_busy: u64,
    /// Dropped: the host over its rate of state changes or broadcasts.
    pub drop_rate_limited: u64,
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
    /// Flushes completed.
    pub flushes: u64,
    /// ATA errors sent (ABRT/IDNF/UNC).
    pub ata_errors: u64,
    /// AoE errors sent.
    pub aoe_errors: u64,
    /// I/O retried without O_DIRECT because of alignment.
    pub direct_fallbacks: u64,
    /// Writes that waited behind an overlapping write.
    pub ordered_waits: u64,
    /// Times spinning on the rings found frames without sleeping.
    pub spin_hits: u64,
    /// Messages a hand-off ring refused (sized never to fill: nonzero is a bug).
    pub handoff_full: u64,
    /// Vectored I/Os made of several requests.
    pub merged_runs: u64,
    /// Requests that went to disk inside a merged I/O.
    pub merged_requests: u64,
    /// Merged I/Os that did not complete in full (their requests went again one by one).
    pub split_runs: u64,
}

impl WorkerStats {
    /// All dropped frames.
    pub fn dropped(&self) -> u64 {
        self.drop_truncated
            + self.drop_response
            + self.drop_not_ours
            + self.drop_masked
            + self.drop_malformed
            + self.drop_ambiguous
            + self.drop_busy
            + self.drop_rate_limited
    }
}

impl fmt::Display for WorkerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx={} tx={} tx_errors={} dropped={} (truncated={} response={} not_ours={} masked={} malformed={} ambiguous={} busy={} rate_limited={}) silent_config={} reads={} writes={} flushes={} ata_errors={} aoe_errors={} direct_fallbacks={} ordered_waits={} spin_hits={} handoff_full={} merged_runs={} merged_requests={} split_runs={}",
            self.rx_frames, self.tx_frames, self.tx_errors, self.dropped(), self.drop_truncated, self.drop_response, self.drop_not_ours,
            self.drop_masked, self.drop_malformed, self.drop_ambiguous, self.drop_busy, self.drop_rate_limited, self.silent_config, self.reads, self.writes, self.flushes,
            self.ata_errors, self.aoe_errors, self.direct_fallbacks, self.ordered_waits, self.spin_hits,
            self.handoff_full, self.merged_runs, self.merged_requests, self.split_runs
        )
    }
}

/// Counters of one path (a port's socket on one queue), kept by the worker that owns it.
#[derive(Debug, Default, Clone, Copy)]
pub struct PathStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Receive calls that returned frames.
    pub rx_batches: u64,
    /// Largest receive batch.
    pub rx_batch_max: u64,
    /// Replies that could not be sent.
    pub tx_errors: u64,
    /// Frames dropped, by [`crate::metrics::snapshot::DROP_REASONS`].
    pub drops: [u64; 8],
}

impl fmt::Display for PathStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mean = if self.rx_batches == 0 {
            0.0
        } else {
            self.rx_frames as f64 / self.rx_batches as f64
        };
        write!(
            f,
            "rx_frames={} rx_bytes={} tx_frames={} tx_bytes={} rx_batches={} mean_batch={mean:.1} max_batch={}",
            self.rx_frames, self.rx_bytes, self.tx_frames, self.tx_bytes, self.rx_batches, self.rx_batch_max
        )
    }
}
