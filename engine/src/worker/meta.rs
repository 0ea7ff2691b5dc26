//! The RAID metadata writer: bitmap writes (a region's first write marks it dirty; idle
//! regions are cleared) run on this thread, so a member whose writes hang in the kernel
//! stalls only the requests that wait for its array's mark, never the worker. Jobs of one
//! array are sent one at a time by the worker; each is written only if newer than what the
//! members hold. Results come back through a channel, with a wake-up the worker polls.

use crate::store::raid10::{BitmapDone, BitmapJob};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender};

/// The worker's end of the metadata writer.
pub struct MetaWriter {
    jobs: Sender<(u16, [u8; 16], BitmapJob)>,
    done: Receiver<(u16, [u8; 16], BitmapDone)>,
    wake: UnixStream,
}

impl MetaWriter {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<MetaWriter> {
        let (jobs_tx, jobs_rx) = channel::<(u16, [u8; 16], BitmapJob)>();
        let (done_tx, done_rx) = channel();
        let (wake_rx, mut wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        std::thread::Builder::new()
            .name("es-raidmeta".into())
            .spawn(move || {
                while let Ok((t, uuid, job)) = jobs_rx.recv() {
                    let done = job.run();
                    if done_tx.send((t, uuid, done)).is_err() {
                        return;
                    }
                    let _ = wake_tx.write(&[1]);
                }
            })?;
        Ok(MetaWriter {
            jobs: jobs_tx,
            done: done_rx,
            wake: wake_rx,
        })
    }

    /// Queues a bitmap write for target `t`'s array `uuid`.
    pub fn send(&self, t: u16, uuid: [u8; 16], job: BitmapJob) {
        if self.jobs.send((t, uuid, job)).is_err() {
            tracing::error!("RAID metadata writer is gone: bitmap write lost");
        }
    }

    /// The descriptor to poll.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Empties the wake-up pipe and returns every finished job.
    pub fn finished(&self) -> Vec<(u16, [u8; 16], BitmapDone)> {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        self.done.try_iter().collect()
    }
}
