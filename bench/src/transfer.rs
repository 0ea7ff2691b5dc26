//! A blocking transfer of any number of sectors: split into frames, keep up to the target's
//! buffer count in flight over every path, retransmit lost frames with new tags. Used where a
//! caller wants one request at a time (the NBD bridge).

use crate::discover::Target;
use crate::socket::{wait_readable, AoeSocket, BATCH};
use ethershelf::wire::*;
use std::time::{Duration, Instant};

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The target answered with an ATA error status or an AoE error.
    #[error("target reported an error (ATA status {status:#04x}, AoE error {aoe:?}) at LBA {lba}")]
    Target {
        /// ATA status.
        status: u8,
        /// AoE error code.
        aoe: Option<u8>,
        /// LBA of the failing frame.
        lba: u64,
    },
    /// A frame went unanswered through every retry.
    #[error("no answer for LBA {0} after {1} tries")]
    Timeout(u64, u32),
    /// Socket failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// READ SECTORS EXT.
    Read,
    /// WRITE SECTORS EXT.
    Write,
    /// FLUSH CACHE EXT.
    Flush,
}

/// A blocking transfer session with its own tag space.
pub struct Transfer<'a> {
    socks: &'a [AoeSocket],
    target: &'a Target,
    tag_base: u32,
    next: u32,
    path: usize,
    rx: Vec<Vec<u8>>,
    /// Frames retransmitted so far.
    pub retransmits: u64,
}

struct Pending {
    lba: u64,
    count: u8,
    offset: usize,
    tag: u32,
    sent: Instant,
    tries: u32,
    done: bool,
}

impl Pending {
    fn new(lba: u64, count: u8, offset: usize) -> Pending {
        Pending {
            lba,
            count,
            offset,
            tag: 0,
            sent: Instant::now(),
            tries: 0,
            done: false,
        }
    }
}

impl<'a> Transfer<'a> {
    /// A session; `tag_base` bits 24..30 keep it apart from other users of the sockets.
    pub fn new(socks: &'a [AoeSocket], target: &'a Target, tag_base: u32) -> Transfer<'a> {
        Transfer {
            socks,
            target,
            tag_base: 0x8000_0000 | (tag_base & 0x7F00_0000),
            next: 0,
            path: 0,
            rx: vec![vec![0u8; 9216]; BATCH],
            retransmits: 0,
        }
    }

    fn send(&mut self, p: &mut Pending, op: Op, data: &[u8]) -> std::io::Result<()> {
        self.next = (self.next + 1) & 0x00FF_FFFF;
        p.tag = self.tag_base | self.next;
        let path = &self.target.paths[self.path % self.target.paths.len()];
        self.path += 1;
        let sock = &self.socks[path.sock];
        let data_len = if op == Op::Write {
            p.count as usize * 512
        } else {
            0
        };
        let mut f = vec![0u8; (ATA_DATA_OFFSET + data_len).max(MIN_FRAME_LEN)];
        let h = AoeHeaderRepr {
            dst: path.target_mac,
            src: sock.mac,
            version: 1,
            response: false,
            error: None,
            shelf: self.target.addr.shelf,
            slot: self.target.addr.slot,
            command: AoeCommand::Ata,
            tag: p.tag,
        };
        let _ = h.emit(&mut AoeFrame::new_unchecked(&mut f[..]));
        let b = p.lba.to_le_bytes();
        let (opcode, aflags) = match op {
            Op::Read => (0x24, AtaFlags::EXTENDED),
            Op::Write => (0x34, AtaFlags::EXTENDED | AtaFlags::WRITE),
            Op::Flush => (0xEA, AtaFlags::EXTENDED),
        };
        let repr = AtaRepr {
            aflags: AtaFlags(aflags),
            err_feature: 0,
            sector_count: p.count,
            cmd_status: opcode,
            lba: [b[0], b[1], b[2], b[3], b[4], b[5]],
        };
        let _ = repr.emit(&mut AtaPacket::new_unchecked(&mut f[AOE_HEADER_LEN..]));
        if data_len > 0 {
            f[ATA_DATA_OFFSET..ATA_DATA_OFFSET + data_len]
                .copy_from_slice(&data[p.offset..p.offset + data_len]);
        }
        p.sent = Instant::now();
        p.tries += 1;
        sock.send(&f)
    }

    /// Runs `op` over `sectors` sectors from `lba`; `data` is read into or written from.
    pub fn run(
        &mut self,
        op: Op,
        lba: u64,
        sectors: u64,
        data: &mut [u8],
    ) -> Result<(), TransferError> {
        let fs = self.target.frame_sectors.max(1) as u64;
        let mut frames: Vec<Pending> = Vec::new();
        if op == Op::Flush {
            frames.push(Pending::new(0, 0, 0));
        } else {
            let mut at = 0;
            while at < sectors {
                let count = (sectors - at).min(fs) as u8;
                frames.push(Pending::new(lba + at, count, at as usize * 512));
                at += count as u64;
            }
        }
        let window = (self.target.buffer_count as usize * self.target.paths.len()).max(1);
        let mut next_to_send = 0;
        let mut in_flight = 0;
        let mut remaining = frames.len();
        let rto = Duration::from_millis(200);
        while remaining > 0 {
            while in_flight < window && next_to_send < frames.len() {
                self.send(&mut frames[next_to_send], op, data)?;
                next_to_send += 1;
                in_flight += 1;
            }
            wait_readable(self.socks, 5);
            let mut lens = [0usize; BATCH];
            for s in 0..self.socks.len() {
                let n = self.socks[s].recv_batch(&mut self.rx, &mut lens)?;
                for (buf, len) in self.rx.iter().zip(lens).take(n) {
                    let f = &buf[..len];
                    let Ok(v) = AoeFrame::new_checked(f) else {
                        continue;
                    };
                    if !v.is_response() || v.tag() & 0xFF00_0000 != self.tag_base {
                        continue;
                    }
                    let Some(p) = frames[..next_to_send]
                        .iter_mut()
                        .find(|p| !p.done && p.tag == v.tag())
                    else {
                        continue;
                    };
                    let status = f.get(27).copied().unwrap_or(0xFF);
                    if v.is_error() || status & 0xA9 != 0 {
                        return Err(TransferError::Target {
                            status,
                            aoe: v.is_error().then(|| v.error()),
                            lba: p.lba,
                        });
                    }
                    if op == Op::Read {
                        let len = p.count as usize * 512;
                        let Some(d) = f.get(ATA_DATA_OFFSET..ATA_DATA_OFFSET + len) else {
                            return Err(TransferError::Target {
                                status,
                                aoe: None,
                                lba: p.lba,
                            });
                        };
                        data[p.offset..p.offset + len].copy_from_slice(d);
                    }
                    p.done = true;
                    in_flight -= 1;
                    remaining -= 1;
                }
            }
            let now = Instant::now();
            for p in frames[..next_to_send].iter_mut() {
                if !p.done && now.duration_since(p.sent) > rto * p.tries.min(10) {
                    if p.tries >= 20 {
                        return Err(TransferError::Timeout(p.lba, p.tries));
                    }
                    self.send(p, op, data)?;
                    self.retransmits += 1;
                }
            }
        }
        Ok(())
    }
}
