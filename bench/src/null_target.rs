//! `aoebench null-target`: answers Query Config and IDENTIFY, reads with zeros, and discards
//! writes, with no storage behind it: the lab's network ceiling. Runs for a bounded time.

use crate::socket::{wait_readable, AoeSocket, BATCH};
use ethershelf::wire::*;
use std::time::{Duration, Instant};

/// How long the null target keeps polling without sleeping after the last frame.
const BUSY_POLL: Duration = Duration::from_micros(200);

/// Serves `shelf.slot` of `sectors` on `sock` for `duration`; returns frames answered.
pub fn serve(
    sock: &AoeSocket,
    shelf: u16,
    slot: u8,
    sectors: u64,
    duration: Duration,
) -> std::io::Result<u64> {
    let max_sectors = max_sectors_for_mtu(sock.mtu);
    let mut page = [0u8; 512];
    let put =
        |p: &mut [u8; 512], w: usize, v: u16| p[2 * w..2 * w + 2].copy_from_slice(&v.to_le_bytes());
    put(&mut page, 49, 0x0200);
    put(&mut page, 83, 0x4400);
    put(&mut page, 86, 0x0400);
    for i in 0..4 {
        put(&mut page, 100 + i, (sectors >> (16 * i)) as u16);
    }
    let model = b"eanlu lrtegat"; // "null target" byte-swapped per ATA word
    page[54..54 + model.len()].copy_from_slice(model);
    let mut rx = vec![vec![0u8; 9216]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut tx = vec![vec![0u8; 9216]; BATCH];
    let mut tx_lens = [0usize; BATCH];
    let end = Instant::now() + duration;
    let mut answered = 0u64;
    let mut last_frame = Instant::now();
    while Instant::now() < end {
        let n = sock.recv_batch(&mut rx, &mut lens)?;
        if n == 0 {
            // Busy-poll while traffic flows (a ceiling must not pay for sleeping and waking
            // up); sleep in poll(2) once the link has been quiet for a while.
            if last_frame.elapsed() > BUSY_POLL {
                wait_readable(std::slice::from_ref(sock), 50);
            }
            continue;
        }
        last_frame = Instant::now();
        let mut out = 0;
        for k in 0..n {
            let f = &rx[k][..lens[k]];
            let Ok(v) = AoeFrame::new_checked(f) else {
                continue;
            };
            let Ok(h) = AoeHeaderRepr::parse(&v) else {
                continue;
            };
            if h.response
                || (h.shelf != shelf && h.shelf != 0xFFFF)
                || (h.slot != slot && h.slot != 0xFF)
            {
                continue;
            }
            let r = &mut tx[out];
            let _ = h
                .reply(sock.mac, shelf, slot)
                .emit(&mut AoeFrame::new_unchecked(&mut r[..]));
            let len = match h.command {
                AoeCommand::QueryConfig => {
                    let repr = ConfigRepr {
                        buffer_count: 256,
                        firmware: 1,
                        sector_count: max_sectors,
                        aoe_version: 1,
                        command: ConfigCommand::Read,
                        string: b"",
                    };
                    let _ = repr.emit(&mut r[AOE_HEADER_LEN..]);
                    AOE_HEADER_LEN + repr.buffer_len()
                }
                AoeCommand::Ata if f.len() >= ATA_DATA_OFFSET => {
                    r[AOE_HEADER_LEN..ATA_DATA_OFFSET]
                        .copy_from_slice(&f[AOE_HEADER_LEN..ATA_DATA_OFFSET]);
                    let (cmd, count) = (f[27], f[26]);
                    r[25] = 0;
                    r[26] = 0;
                    r[27] = 0x40;
                    match cmd {
                        0xEC => {
                            r[ATA_DATA_OFFSET..ATA_DATA_OFFSET + 512].copy_from_slice(&page);
                            ATA_DATA_OFFSET + 512
                        }
                        0x20 | 0x24 if count <= max_sectors => {
                            let l = count as usize * 512;
                            r[ATA_DATA_OFFSET..ATA_DATA_OFFSET + l].fill(0);
                            ATA_DATA_OFFSET + l
                        }
                        0x30 | 0x34 => ATA_DATA_OFFSET,
                        _ => {
                            r[25] = 0x04;
                            r[27] = 0x41;
                            ATA_DATA_OFFSET
                        }
                    }
                }
                _ => continue,
            };
            if len < MIN_FRAME_LEN {
                r[len..MIN_FRAME_LEN].fill(0);
            }
            let len = len.max(MIN_FRAME_LEN);
            tx_lens[out] = len;
            out += 1;
        }
        let frames: Vec<&[u8]> = (0..out).map(|i| &tx[i][..tx_lens[i]]).collect();
        let mut sent = 0;
        let mut tries = 0;
        while sent < frames.len() && tries < 1000 {
            let k = sock.send_batch(&frames[sent..])?;
            sent += k;
            tries += (k == 0) as u32;
        }
        answered += sent as u64;
    }
    Ok(answered)
}
