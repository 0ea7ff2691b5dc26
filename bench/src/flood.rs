//! A misbehaving host, on purpose: frames of one kind sent at a set rate (or as fast as the
//! socket takes them) for a bounded time, to measure what a flood does to the other hosts.
//! Every frame is broadcast on the one interface given; nothing is received.

use crate::socket::{AoeSocket, BATCH};
use ethershelf::wire::*;
use std::time::{Duration, Instant};

/// What the flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloodKind {
    /// Query Config force-set with a changing string (a state change per frame).
    ConfigFset,
    /// Query Config read of the target.
    ConfigRead,
    /// Wildcard discovery (shelf 65535, slot 255).
    Broadcast,
    /// MAC mask edits: a stranger's MAC added, then deleted (the --keep MACs stay listed).
    MaskEdit,
    /// Reservation force-sets alternating between two orders of the --keep MACs + ours.
    Reserve,
    /// ATA IDENTIFY DEVICE.
    Identify,
    /// ATA writes of one sector, always LBA 0.
    SameLbaWrite,
    /// Random bytes behind a valid Ethernet header with the AoE EtherType.
    Garbage,
}

/// How to flood.
pub struct FloodOptions {
    /// What to send.
    pub kind: FloodKind,
    /// Target shelf.
    pub shelf: u16,
    /// Target slot.
    pub slot: u8,
    /// Frames per second (`None`: as fast as the socket takes them).
    pub rate: Option<u64>,
    /// How long.
    pub duration: Duration,
    /// MACs kept on the mask list / reservation (the well-behaved hosts).
    pub keep: Vec<MacAddr>,
    /// Seed of the random parts.
    pub seed: u64,
}

/// What was sent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FloodReport {
    /// Frames the kernel took.
    pub sent: u64,
    /// Batches the socket refused (its buffer full).
    pub full: u64,
    /// Seconds it ran.
    pub seconds: f64,
    /// sent / seconds.
    pub frames_per_second: f64,
}

fn header(f: &mut [u8], src: MacAddr, shelf: u16, slot: u8, cmd: AoeCommand, tag: u32) {
    let _ = AoeHeaderRepr {
        dst: MacAddr::BROADCAST,
        src,
        version: AOE_VERSION,
        response: false,
        error: None,
        shelf,
        slot,
        command: cmd,
        tag,
    }
    .emit(&mut AoeFrame::new_unchecked(&mut f[..]));
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Builds frame number `n` of the flood into `f`; returns its length.
fn build(o: &FloodOptions, me: MacAddr, n: u64, seed: &mut u64, f: &mut [u8]) -> usize {
    let tag = n as u32;
    let (shelf, slot) = (o.shelf, o.slot);
    let a = AOE_HEADER_LEN;
    let len = match o.kind {
        FloodKind::ConfigFset | FloodKind::ConfigRead | FloodKind::Broadcast => {
            let text = format!("flood {n}");
            let (command, string, shelf, slot) = match o.kind {
                FloodKind::ConfigFset => (ConfigCommand::ForceSet, text.as_bytes(), shelf, slot),
                FloodKind::ConfigRead => (ConfigCommand::Read, &[][..], shelf, slot),
                _ => (ConfigCommand::Read, &[][..], 0xFFFF, 0xFF),
            };
            header(f, me, shelf, slot, AoeCommand::QueryConfig, tag);
            let repr = ConfigRepr {
                buffer_count: 0,
                firmware: 0,
                sector_count: 0,
                aoe_version: AOE_VERSION,
                command,
                string,
            };
            let _ = repr.emit(&mut f[a..]);
            a + repr.buffer_len()
        }
        FloodKind::MaskEdit => {
            header(f, me, shelf, slot, AoeCommand::MacMask, tag);
            let stranger = MacAddr([0x02, 0x5e, 0, 0, ((n / 2) >> 8) as u8, (n / 2) as u8]);
            let mut dirs: Vec<(DirectiveCommand, MacAddr)> = Vec::new();
            if n == 0 {
                dirs.extend(o.keep.iter().map(|m| (DirectiveCommand::Add, *m)));
                dirs.push((DirectiveCommand::Add, me));
            }
            dirs.push(if n % 2 == 0 {
                (DirectiveCommand::Add, stranger)
            } else {
                (DirectiveCommand::Delete, stranger)
            });
            f[a..a + 4].copy_from_slice(&[0, 1, 0, dirs.len() as u8]);
            for (i, (c, m)) in dirs.iter().enumerate() {
                let at = a + 4 + i * 8;
                let _ = MaskDirective {
                    command: *c,
                    mac: *m,
                }
                .emit(&mut f[at..at + 8]);
            }
            a + 4 + dirs.len() * 8
        }
        FloodKind::Reserve => {
            header(f, me, shelf, slot, AoeCommand::Reserve, tag);
            let mut macs: Vec<MacAddr> = o.keep.clone();
            macs.push(me);
            if n % 2 == 1 {
                macs.reverse();
            }
            f[a] = 2;
            f[a + 1] = macs.len() as u8;
            for (i, m) in macs.iter().enumerate() {
                f[a + 2 + i * 6..a + 8 + i * 6].copy_from_slice(&m.0);
            }
            a + 2 + macs.len() * 6
        }
        FloodKind::Identify | FloodKind::SameLbaWrite => {
            header(f, me, shelf, slot, AoeCommand::Ata, tag);
            let write = o.kind == FloodKind::SameLbaWrite;
            let _ = AtaRepr {
                aflags: AtaFlags(AtaFlags::EXTENDED | if write { AtaFlags::WRITE } else { 0 }),
                err_feature: 0,
                sector_count: 1,
                cmd_status: if write { 0x34 } else { 0xEC },
                lba: [0; 6],
            }
            .emit(&mut AtaPacket::new_unchecked(&mut f[a..a + ATA_HEADER_LEN]));
            if write {
                f[a + ATA_HEADER_LEN..a + ATA_HEADER_LEN + 512].fill(n as u8);
                a + ATA_HEADER_LEN + 512
            } else {
                a + ATA_HEADER_LEN
            }
        }
        FloodKind::Garbage => {
            header(f, me, shelf, slot, AoeCommand::Ata, tag);
            let len = 60 + (next(seed) % 1000) as usize;
            for b in f[14..len].iter_mut() {
                *b = next(seed) as u8;
            }
            len
        }
    };
    len.max(MIN_FRAME_LEN)
}

/// Floods `sock` as `o` says; bounded by `o.duration`.
pub fn flood(sock: &AoeSocket, o: &FloodOptions) -> std::io::Result<FloodReport> {
    let mut bufs = vec![vec![0u8; 1600]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut seed = o.seed | 1;
    let start = Instant::now();
    let (mut sent, mut full, mut n) = (0u64, 0u64, 0u64);
    while start.elapsed() < o.duration {
        // Paced: send what is due by now, in batches.
        let due = match o.rate {
            Some(r) => (start.elapsed().as_secs_f64() * r as f64) as u64,
            None => sent + BATCH as u64,
        };
        if sent >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let k = ((due - sent) as usize).min(BATCH);
        for i in 0..k {
            bufs[i].fill(0);
            lens[i] = build(o, sock.mac, n + i as u64, &mut seed, &mut bufs[i]);
        }
        let frames: Vec<&[u8]> = (0..k).map(|i| &bufs[i][..lens[i]]).collect();
        let took = sock.send_batch(&frames)?;
        if took < k {
            full += 1;
            if o.rate.is_none() {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        sent += took as u64;
        n += took as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(FloodReport {
        sent,
        full,
        seconds,
        frames_per_second: sent as f64 / seconds.max(1e-9),
    })
}
