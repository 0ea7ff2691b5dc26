//! One receive batch and one send batch between a socket and slab slots: the part of the
//! frame path that the LUN worker and the queue workers share.

use super::slab::SlabHandle;
use super::stats::PathStats;
use crate::net::{FrameBuf, FrameIo};

/// Frames received or sent per system call at most.
pub const BATCH: usize = 64;

/// The frames of one receive call: `ids[..got]` are the slots, `lens[..got]` their lengths.
pub struct Received {
    /// Slots holding frames.
    pub ids: [u32; BATCH],
    /// Frame lengths.
    pub lens: [usize; BATCH],
    /// How many frames.
    pub got: usize,
    /// How many slots were offered (fewer frames than this: the socket is drained).
    pub offered: usize,
}

/// Receives up to [`BATCH`] frames from `io` into slots popped from `free` (the ones left
/// unused go back) and counts the batch on `path`.
pub fn receive(
    io: &mut (dyn FrameIo + Send),
    slab: &SlabHandle,
    free: &mut Vec<u32>,
    path: &mut PathStats,
) -> Received {
    let mut r = Received {
        ids: [0; BATCH],
        lens: [0; BATCH],
        got: 0,
        offered: free.len().min(BATCH),
    };
    if r.offered == 0 {
        return r;
    }
    let mut bufs = [FrameBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
    }; BATCH];
    let cap = slab.frame_capacity();
    for (id, buf) in r.ids.iter_mut().zip(bufs.iter_mut()).take(r.offered) {
        *id = free.pop().unwrap_or_default();
        *buf = FrameBuf {
            ptr: slab.frame_ptr(*id as usize),
            len: cap,
        };
    }
    // SAFETY: each buffer is a free slot owned by the calling worker, `cap` bytes long, and
    // nothing else touches it during the call.
    r.got = match unsafe { io.recv_batch(&bufs[..r.offered], &mut r.lens[..r.offered]) } {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(port = io.name(), error = %e, "receive failed");
            0
        }
    };
    for i in (r.got..r.offered).rev() {
        free.push(r.ids[i]);
    }
    if r.got > 0 {
        path.rx_batches += 1;
        path.rx_frames += r.got as u64;
        path.rx_batch_max = path.rx_batch_max.max(r.got as u64);
        path.rx_bytes += r.lens[..r.got].iter().sum::<usize>() as u64;
    }
    r
}

/// Sends the replies `(slot, len)` out of `io` in batches and counts them on `path`;
/// returns how many could not be sent. The caller frees the slots afterwards.
pub fn send(
    io: &mut (dyn FrameIo + Send),
    slab: &SlabHandle,
    replies: &[(u32, usize)],
    path: &mut PathStats,
) -> u64 {
    let mut failed = 0;
    for chunk in replies.chunks(BATCH) {
        let mut frames = [FrameBuf {
            ptr: std::ptr::null_mut(),
            len: 0,
        }; BATCH];
        let mut bytes = 0;
        for (i, (slot, len)) in chunk.iter().enumerate() {
            frames[i] = FrameBuf {
                ptr: slab.frame_ptr(*slot as usize),
                len: *len,
            };
            bytes += *len as u64;
        }
        let n = chunk.len();
        // SAFETY: each frame is a slot owned by the calling worker holding a built reply of
        // `len` bytes; it is freed only after this call.
        match unsafe { io.send_batch(&frames[..n]) } {
            Ok(sent) => {
                path.tx_frames += sent as u64;
                if sent == n {
                    path.tx_bytes += bytes;
                } else {
                    tracing::debug!(
                        port = io.name(),
                        failed = n - sent,
                        "some replies could not be sent"
                    );
                }
                failed += (n - sent) as u64;
            }
            Err(e) => {
                tracing::warn!(port = io.name(), error = %e, "send failed");
                failed += n as u64;
            }
        }
    }
    path.tx_errors += failed;
    failed
}
