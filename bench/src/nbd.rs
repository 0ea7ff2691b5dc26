//! `aoebench nbd`: serves an AoE LUN as an NBD export on a Unix socket (fixed newstyle
//! handshake; READ, WRITE, FLUSH, DISC), so that real fio (`--ioengine=nbd`) can drive it.
//! One client at a time; requests are served in order, each as one blocking AoE transfer.

use crate::discover::Target;
use crate::socket::AoeSocket;
use crate::transfer::{Op, Transfer};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const TX_HAS_FLAGS: u16 = 1;
const TX_SEND_FLUSH: u16 = 1 << 2;
const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
const INFO_EXPORT: u16 = 0;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const EIO: u32 = 5;
const EINVAL: u32 = 22;
/// Largest request accepted (32 MiB).
const MAX_REQUEST: u32 = 32 << 20;

/// Reads one big-endian integer of `N` bytes.
fn read_be<const N: usize>(s: &mut UnixStream) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    s.read_exact(&mut b)?;
    Ok(b)
}
fn read_u16(s: &mut UnixStream) -> io::Result<u16> {
    read_be(s).map(u16::from_be_bytes)
}
fn read_u32(s: &mut UnixStream) -> io::Result<u32> {
    read_be(s).map(u32::from_be_bytes)
}
fn read_u64(s: &mut UnixStream) -> io::Result<u64> {
    read_be(s).map(u64::from_be_bytes)
}

fn opt_reply(s: &mut UnixStream, option: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    let mut m = Vec::with_capacity(20 + data.len());
    m.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    m.extend_from_slice(&option.to_be_bytes());
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    s.write_all(&m)
}

/// Runs the handshake; returns true when the client entered transmission.
fn handshake(s: &mut UnixStream, size: u64, flags: u16) -> io::Result<bool> {
    let mut hello = Vec::new();
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    let client_flags = read_u32(s)?;
    loop {
        if read_u64(s)? != IHAVEOPT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad option magic",
            ));
        }
        let option = read_u32(s)?;
        let len = read_u32(s)?;
        if len > 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "option too long",
            ));
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        match option {
            OPT_EXPORT_NAME => {
                let mut m = Vec::new();
                m.extend_from_slice(&size.to_be_bytes());
                m.extend_from_slice(&flags.to_be_bytes());
                if client_flags & FLAG_NO_ZEROES as u32 == 0 {
                    m.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&m)?;
                return Ok(true);
            }
            OPT_GO | OPT_INFO => {
                let mut info = Vec::new();
                info.extend_from_slice(&INFO_EXPORT.to_be_bytes());
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&flags.to_be_bytes());
                opt_reply(s, option, REP_INFO, &info)?;
                opt_reply(s, option, REP_ACK, &[])?;
                if option == OPT_GO {
                    return Ok(true);
                }
            }
            OPT_LIST => {
                opt_reply(s, option, REP_SERVER, &0u32.to_be_bytes())?;
                opt_reply(s, option, REP_ACK, &[])?;
            }
            OPT_ABORT => {
                let _ = opt_reply(s, option, REP_ACK, &[]);
                return Ok(false);
            }
            _ => opt_reply(s, option, REP_ERR_UNSUP, &[])?,
        }
    }
}

fn reply(s: &mut UnixStream, error: u32, handle: u64, data: &[u8]) -> io::Result<()> {
    let mut m = Vec::with_capacity(16 + data.len());
    m.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    m.extend_from_slice(&error.to_be_bytes());
    m.extend_from_slice(&handle.to_be_bytes());
    m.extend_from_slice(data);
    s.write_all(&m)
}

/// Serves one connected client until it disconnects.
fn serve_client(
    s: &mut UnixStream,
    socks: &[AoeSocket],
    target: &Target,
    stats: &mut NbdStats,
) -> io::Result<()> {
    let size = target.sectors * 512;
    if !handshake(s, size, TX_HAS_FLAGS | TX_SEND_FLUSH)? {
        return Ok(());
    }
    let mut t = Transfer::new(socks, target, 0x4E00_0000);
    let mut buf = Vec::new();
    loop {
        if read_u32(s)? != REQUEST_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad request magic",
            ));
        }
        let _flags = read_u16(s)?;
        let kind = read_u16(s)?;
        let handle = read_u64(s)?;
        let offset = read_u64(s)?;
        let length = read_u32(s)?;
        let aligned = offset % 512 == 0
            && length % 512 == 0
            && length <= MAX_REQUEST
            && offset.checked_add(length as u64).is_some_and(|e| e <= size);
        match kind {
            CMD_DISC => return Ok(()),
            CMD_WRITE => {
                buf.resize(length.min(MAX_REQUEST) as usize, 0);
                if length > MAX_REQUEST {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "write larger than 32 MiB",
                    ));
                }
                s.read_exact(&mut buf)?;
                let err = if !aligned {
                    EINVAL
                } else if t
                    .run(Op::Write, offset / 512, length as u64 / 512, &mut buf)
                    .is_ok()
                {
                    0
                } else {
                    EIO
                };
                stats.writes += 1;
                stats.errors += (err != 0) as u64;
                reply(s, err, handle, &[])?;
            }
            CMD_READ => {
                if !aligned {
                    stats.errors += 1;
                    reply(s, EINVAL, handle, &[])?;
                    continue;
                }
                buf.resize(length as usize, 0);
                match t.run(Op::Read, offset / 512, length as u64 / 512, &mut buf) {
                    Ok(()) => reply(s, 0, handle, &buf)?,
                    Err(_) => {
                        stats.errors += 1;
                        reply(s, EIO, handle, &[])?
                    }
                }
                stats.reads += 1;
            }
            CMD_FLUSH => {
                let err = if t.run(Op::Flush, 0, 0, &mut []).is_ok() {
                    0
                } else {
                    EIO
                };
                stats.flushes += 1;
                reply(s, err, handle, &[])?;
            }
            _ => reply(s, EINVAL, handle, &[])?,
        }
        stats.retransmits = t.retransmits;
    }
}

/// Counters of a bridge run.
#[derive(Debug, Default, Clone)]
pub struct NbdStats {
    /// Clients served.
    pub clients: u64,
    /// READ requests.
    pub reads: u64,
    /// WRITE requests.
    pub writes: u64,
    /// FLUSH requests.
    pub flushes: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// AoE frames retransmitted.
    pub retransmits: u64,
}

/// Listens on `path` and serves clients one after another until `duration` has passed.
pub fn serve(
    path: &std::path::Path,
    socks: &[AoeSocket],
    target: &Target,
    duration: Duration,
) -> io::Result<NbdStats> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    let end = Instant::now() + duration;
    let mut stats = NbdStats::default();
    while Instant::now() < end {
        match listener.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(
                    end.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                ))?;
                stats.clients += 1;
                if let Err(e) = serve_client(&mut s, socks, target, &mut stats) {
                    if e.kind() != io::ErrorKind::UnexpectedEof {
                        eprintln!("nbd: client ended: {e}");
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e),
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(stats)
}
