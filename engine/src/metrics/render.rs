//! Turns a [`Snapshot`] into Prometheus text: counters and gauges through
//! `metrics-exporter-prometheus` (a fresh recorder per scrape, so removed LUNs and disks
//! leave no stale series), histograms written here from the workers' fixed buckets (exact
//! counts and sums, no per-sample replay).

use super::histogram::{LatencyHistogram, BOUNDS_SECONDS};
use super::snapshot::{Snapshot, AOE_ERROR_NAMES, ATA_ERROR_KINDS, DROP_REASONS};
use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use metrics_exporter_prometheus::PrometheusBuilder;
use std::fmt::Write as _;

/// Array states reported as one 0/1 series each.
const ARRAY_STATES: [&str; 5] = ["normal", "initing", "degraded", "recovering", "failed"];
/// Member states reported as one 0/1 series each.
const MEMBER_STATES: [&str; 4] = ["normal", "recovering", "failed", "missing"];

/// Renders `snap` in the Prometheus text exposition format.
pub fn render(snap: &Snapshot) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe();
        record(snap);
    });
    let mut text = handle.render();
    histograms(&mut text, snap);
    text
}

fn describe() {
    describe_gauge!("ethershelf_build_info", "ethershelf version (value is 1)");
    describe_gauge!("ethershelf_spares", "Hot spares available to every array");
    describe_counter!(
        "ethershelf_path_rx_frames_total",
        "Frames received per path (port and queue)"
    );
    describe_counter!(
        "ethershelf_path_rx_bytes_total",
        Unit::Bytes,
        "Bytes received per path"
    );
    describe_counter!("ethershelf_path_tx_frames_total", "Frames sent per path");
    describe_counter!(
        "ethershelf_path_tx_bytes_total",
        Unit::Bytes,
        "Bytes sent per path"
    );
    describe_counter!(
        "ethershelf_path_tx_errors_total",
        "Replies that could not be sent per path"
    );
    describe_counter!(
        "ethershelf_path_rx_batches_total",
        "Receive calls that returned frames (frames / batches = mean batch size)"
    );
    describe_gauge!(
        "ethershelf_path_rx_batch_max_frames",
        "Largest receive batch seen on the path"
    );
    describe_counter!(
        "ethershelf_path_drops_total",
        "Received frames dropped by the shelf, by reason"
    );
    describe_counter!(
        "ethershelf_path_kernel_drops_total",
        "Frames the kernel dropped before the shelf saw them (ring full)"
    );
    describe_counter!(
        "ethershelf_path_copies_total",
        "Frames copied between the socket and the frame buffers (zero-copy not possible)"
    );
    describe_gauge!(
        "ethershelf_lun_online",
        "1 when the LUN answers on the network"
    );
    describe_gauge!("ethershelf_lun_size_bytes", Unit::Bytes, "LUN capacity");
    describe_counter!("ethershelf_lun_reads_total", "ATA reads answered with data");
    describe_counter!("ethershelf_lun_writes_total", "ATA writes acknowledged");
    describe_counter!(
        "ethershelf_lun_flushes_total",
        "ATA FLUSH CACHE acknowledged"
    );
    describe_counter!(
        "ethershelf_lun_read_bytes_total",
        Unit::Bytes,
        "Bytes read by initiators"
    );
    describe_counter!(
        "ethershelf_lun_written_bytes_total",
        Unit::Bytes,
        "Bytes written by initiators"
    );
    describe_counter!(
        "ethershelf_lun_ata_errors_total",
        "ATA errors sent, by kind (abrt, idnf, unc)"
    );
    describe_counter!(
        "ethershelf_lun_aoe_errors_total",
        "AoE errors sent, by code"
    );
    describe_counter!(
        "ethershelf_lun_commands_total",
        "Config, mask and reserve commands served"
    );
    describe_counter!("ethershelf_member_ios_total", "Member disk I/Os completed");
    describe_counter!(
        "ethershelf_member_bytes_total",
        Unit::Bytes,
        "Bytes moved to and from the member disk"
    );
    describe_counter!(
        "ethershelf_member_errors_total",
        "Member disk I/O errors, by direction"
    );
    describe_counter!(
        "ethershelf_member_corrected_total",
        "Read errors repaired by rewriting from the other copy"
    );
    describe_gauge!("ethershelf_member_in_flight", "Member I/Os in flight");
    describe_gauge!(
        "ethershelf_member_bad_sectors",
        "Sectors on the member's bad-block list (read from the other copy, or answered UNC)"
    );
    describe_gauge!(
        "ethershelf_member_state",
        "1 for the member's current state (normal, recovering, failed, missing)"
    );
    describe_gauge!(
        "ethershelf_array_state",
        "1 for each state the array is in (normal, initing, degraded, recovering, failed)"
    );
    describe_gauge!(
        "ethershelf_array_sync_progress_ratio",
        "Progress of the running rebuild, resync or scrub (0..1)"
    );
    describe_gauge!(
        "ethershelf_array_sync_rate_bytes_per_second",
        "Rate of the running rebuild, resync or scrub"
    );
    describe_gauge!(
        "ethershelf_worker_cpu",
        "Core the worker is pinned to (-1: not pinned)"
    );
    describe_counter!(
        "ethershelf_uring_submissions_total",
        "io_uring entries submitted"
    );
    describe_gauge!("ethershelf_uring_in_flight", "Requests in io_uring now");
    describe_gauge!("ethershelf_buffer_slots", "Frame buffers of the worker");
    describe_gauge!("ethershelf_buffer_slots_in_use", "Frame buffers in use now");
    describe_counter!(
        "ethershelf_worker_spin_hits_total",
        "Times watching the rings found work without sleeping"
    );
    describe_counter!(
        "ethershelf_ordered_waits_total",
        "Writes held back behind an overlapping write"
    );
    describe_counter!(
        "ethershelf_direct_fallbacks_total",
        "I/Os retried through the page cache because O_DIRECT refused them"
    );
    describe_counter!(
        "ethershelf_merged_ios_total",
        "Vectored disk I/Os made of several contiguous requests"
    );
    describe_counter!(
        "ethershelf_merged_requests_total",
        "Requests that went to disk inside a merged I/O"
    );
    describe_counter!(
        "ethershelf_member_failures_total",
        "Members of the LUN's array failed since start (I/O errors, metadata writes, the admin)"
    );
    describe_gauge!(
        "ethershelf_disk_state",
        "Each disk slot's state (1 for the current one): up, failed, spare, recovering, missing, free"
    );
    describe_counter!(
        "ethershelf_cec_frames_total",
        "Console-over-Ethernet frames by outcome (accepted, malformed, refused_host, sessions_full, no_session)"
    );
    describe_counter!(
        "ethershelf_cec_sessions_opened_total",
        "Console-over-Ethernet sessions opened"
    );
    describe_counter!(
        "ethershelf_cec_sessions_expired_total",
        "Console-over-Ethernet sessions dropped because the client stopped acknowledging"
    );
    describe_counter!(
        "ethershelf_cec_resends_total",
        "Console-over-Ethernet data frames sent again"
    );
    describe_counter!(
        "ethershelf_cec_commands_total",
        "Console commands run over Ethernet"
    );
    describe_gauge!(
        "ethershelf_cec_sessions",
        "Console-over-Ethernet sessions now"
    );
}

fn record(snap: &Snapshot) {
    gauge!("ethershelf_build_info", "version" => env!("CARGO_PKG_VERSION"), "shelf" => snap.shelf.to_string()).set(1.0);
    gauge!("ethershelf_spares").set(snap.spares as f64);
    for (w, s) in snap.workers.iter().enumerate() {
        let worker = w.to_string();
        gauge!("ethershelf_worker_cpu", "worker" => worker.clone())
            .set(s.cpu.map_or(-1.0, |c| c as f64));
        counter!("ethershelf_uring_submissions_total", "worker" => worker.clone())
            .absolute(s.submissions);
        gauge!("ethershelf_uring_in_flight", "worker" => worker.clone()).set(s.in_flight as f64);
        gauge!("ethershelf_buffer_slots", "worker" => worker.clone()).set(s.slots as f64);
        gauge!("ethershelf_buffer_slots_in_use", "worker" => worker.clone())
            .set(s.slots_in_use as f64);
        counter!("ethershelf_worker_spin_hits_total", "worker" => worker.clone())
            .absolute(s.spin_hits);
        counter!("ethershelf_ordered_waits_total", "worker" => worker.clone())
            .absolute(s.ordered_waits);
        counter!("ethershelf_direct_fallbacks_total", "worker" => worker.clone())
            .absolute(s.direct_fallbacks);
        counter!("ethershelf_merged_ios_total", "worker" => worker.clone()).absolute(s.merged_runs);
        counter!("ethershelf_merged_requests_total", "worker" => worker)
            .absolute(s.merged_requests);
    }
    for p in &snap.paths {
        let labels = [
            ("port", p.port.clone()),
            ("queue", p.queue.to_string()),
            ("mode", p.mode.to_string()),
            ("worker", p.worker.to_string()),
        ];
        let s = &p.stats;
        counter!("ethershelf_path_rx_frames_total", &labels).absolute(s.rx_frames);
        counter!("ethershelf_path_rx_bytes_total", &labels).absolute(s.rx_bytes);
        counter!("ethershelf_path_tx_frames_total", &labels).absolute(s.tx_frames);
        counter!("ethershelf_path_tx_bytes_total", &labels).absolute(s.tx_bytes);
        counter!("ethershelf_path_tx_errors_total", &labels).absolute(s.tx_errors);
        counter!("ethershelf_path_rx_batches_total", &labels).absolute(s.rx_batches);
        gauge!("ethershelf_path_rx_batch_max_frames", &labels).set(s.rx_batch_max as f64);
        counter!("ethershelf_path_kernel_drops_total", &labels).absolute(p.kernel_drops);
        counter!("ethershelf_path_copies_total", &labels).absolute(p.copies);
        for (reason, n) in DROP_REASONS.iter().zip(s.drops) {
            let mut l = labels.to_vec();
            l.push(("reason", reason.to_string()));
            counter!("ethershelf_path_drops_total", &l).absolute(n);
        }
    }
    for lun in &snap.luns {
        let l = [("lun", lun.lun.clone())];
        let c = &lun.counters;
        gauge!("ethershelf_lun_online", &l).set(if lun.online { 1.0 } else { 0.0 });
        gauge!("ethershelf_lun_size_bytes", &l).set(lun.size_bytes as f64);
        counter!("ethershelf_lun_reads_total", &l).absolute(c.reads);
        counter!("ethershelf_lun_writes_total", &l).absolute(c.writes);
        counter!("ethershelf_lun_flushes_total", &l).absolute(c.flushes);
        counter!("ethershelf_lun_read_bytes_total", &l).absolute(c.read_bytes);
        counter!("ethershelf_lun_written_bytes_total", &l).absolute(c.written_bytes);
        for (kind, n) in ATA_ERROR_KINDS.iter().zip(c.ata_errors) {
            counter!("ethershelf_lun_ata_errors_total", "lun" => lun.lun.clone(), "kind" => *kind)
                .absolute(n);
        }
        for (code, n) in c.aoe_errors.iter().enumerate().skip(1) {
            if *n > 0 || code <= 6 {
                counter!("ethershelf_lun_aoe_errors_total", "lun" => lun.lun.clone(), "code" => code.to_string(), "name" => AOE_ERROR_NAMES[code]).absolute(*n);
            }
        }
        for (command, n) in [
            ("config", c.config_commands),
            ("mask", c.mask_commands),
            ("reserve", c.reserve_commands),
        ] {
            counter!("ethershelf_lun_commands_total", "lun" => lun.lun.clone(), "command" => command)
                .absolute(n);
        }
        for right in ethershelf_config::access::Right::ALL {
            for reason in crate::lun::Refusal::ALL {
                let n = c.refused[right.index()][reason.index()];
                counter!("ethershelf_lun_refused_total", "lun" => lun.lun.clone(), "right" => right.name(), "reason" => reason.name())
                    .absolute(n);
            }
        }
    }
    for m in &snap.members {
        let labels = [
            ("lun", m.lun.clone()),
            ("role", m.role.to_string()),
            ("disk", m.disk.clone()),
        ];
        counter!("ethershelf_member_ios_total", &labels).absolute(m.ios);
        counter!("ethershelf_member_bytes_total", &labels).absolute(m.bytes);
        counter!("ethershelf_member_corrected_total", &labels).absolute(m.corrected);
        gauge!("ethershelf_member_in_flight", &labels).set(m.in_flight as f64);
        gauge!("ethershelf_member_bad_sectors", &labels).set(m.bad_sectors as f64);
        for (kind, n) in [("read", m.read_errors), ("write", m.write_errors)] {
            let mut l = labels.to_vec();
            l.push(("kind", kind.to_string()));
            counter!("ethershelf_member_errors_total", &l).absolute(n);
        }
        for state in MEMBER_STATES {
            let mut l = labels.to_vec();
            l.push(("state", state.to_string()));
            gauge!("ethershelf_member_state", &l).set(if m.state == state { 1.0 } else { 0.0 });
        }
    }
    for a in &snap.arrays {
        let states: Vec<&str> = a.state.split(',').collect();
        for state in ARRAY_STATES {
            gauge!("ethershelf_array_state", "lun" => a.lun.clone(), "state" => state)
                .set(if states.contains(&state) { 1.0 } else { 0.0 });
        }
        let kind = a.sync_kind.clone().unwrap_or_else(|| "none".into());
        gauge!("ethershelf_array_sync_progress_ratio", "lun" => a.lun.clone(), "kind" => kind.clone())
            .set(a.sync_progress);
        gauge!("ethershelf_array_sync_rate_bytes_per_second", "lun" => a.lun.clone(), "kind" => kind)
            .set(a.sync_rate);
        counter!("ethershelf_member_failures_total", "lun" => a.lun.clone())
            .absolute(a.member_failures);
    }
    for d in &snap.disks {
        for state in super::snapshot::DISK_STATES {
            gauge!("ethershelf_disk_state", "disk" => d.disk.clone(), "state" => state)
                .set(if d.state == state { 1.0 } else { 0.0 });
        }
    }
    if let Some(c) = &snap.cec {
        record_cec(c);
    }
}

fn record_cec(c: &crate::cec::CecSample) {
    for (outcome, n) in [
        ("accepted", c.accepted),
        ("malformed", c.malformed),
        ("refused_host", c.refused_host),
        ("sessions_full", c.sessions_full),
        ("no_session", c.no_session),
    ] {
        counter!("ethershelf_cec_frames_total", "outcome" => outcome).absolute(n);
    }
    counter!("ethershelf_cec_sessions_opened_total").absolute(c.sessions_opened);
    counter!("ethershelf_cec_sessions_expired_total").absolute(c.sessions_expired);
    counter!("ethershelf_cec_resends_total").absolute(c.resends);
    counter!("ethershelf_cec_commands_total").absolute(c.commands);
    gauge!("ethershelf_cec_sessions").set(c.sessions as f64);
}

fn histograms(out: &mut String, snap: &Snapshot) {
    let name = "ethershelf_lun_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Request arrival to reply sent, per LUN and operation\n# TYPE {name} histogram"
    );
    for lun in &snap.luns {
        let c = &lun.counters;
        for (op, h) in [
            ("read", &c.read_latency),
            ("write", &c.write_latency),
            ("flush", &c.flush_latency),
        ] {
            series(
                out,
                name,
                &format!("lun=\"{}\",op=\"{op}\"", escape(&lun.lun)),
                h,
            );
        }
    }
    let name = "ethershelf_member_io_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Member disk I/O submission to completion (client requests)\n# TYPE {name} histogram"
    );
    for m in &snap.members {
        for (op, h) in [("read", &m.read_latency), ("write", &m.write_latency)] {
            let labels = format!(
                "lun=\"{}\",role=\"{}\",disk=\"{}\",op=\"{op}\"",
                escape(&m.lun),
                m.role,
                escape(&m.disk)
            );
            series(out, name, &labels, h);
        }
    }
}

fn series(out: &mut String, name: &str, labels: &str, h: &LatencyHistogram) {
    let cumulative = h.cumulative();
    for (i, n) in cumulative.iter().enumerate() {
        let le = BOUNDS_SECONDS
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_seconds());
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
