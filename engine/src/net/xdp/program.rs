//! The XDP program that steers AoE frames to AF_XDP sockets, built and loaded here with the
//! `bpf(2)` system call (no clang, no libbpf): fifteen instructions that redirect frames of
//! EtherType 0x88A2 to the socket registered for their receive queue and pass everything
//! else (ARP, IP, ...) to the kernel untouched.
//!
//! The program is attached through a BPF link, so it goes away with the engine even if the
//! engine is killed: a crashed shelf never leaves an interface swallowing AoE frames.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_DELETE_ELEM: i32 = 3;
const BPF_PROG_LOAD: i32 = 5;
const BPF_LINK_CREATE: i32 = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// `BPF_F_XDP_HAS_FRAGS`: the program copes with multi-buffer (jumbo) frames.
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The program, with the XSKMAP's descriptor patched into its map load.
fn instructions(map_fd: RawFd) -> [Insn; 13] {
    // The AoE EtherType as a little-endian load of the two big-endian bytes 0x88 0xA2.
    let aoe_le = i32::from(u16::from_le_bytes(crate::wire::ETHERTYPE_AOE.to_be_bytes()));
    [
        insn(0x61, 2, 1, 0, 0),                      // r2 = ctx->data
        insn(0x61, 3, 1, 4, 0),                      // r3 = ctx->data_end
        insn(0xbf, 4, 2, 0, 0),                      // r4 = r2
        insn(0x07, 4, 0, 0, 14),                     // r4 += 14 (Ethernet header)
        insn(0x2d, 4, 3, 8, 0),                      // if r4 > r3 goto pass
        insn(0x69, 4, 2, 12, 0),                     // r4 = *(u16 *)(r2 + 12): EtherType
        insn(0x55, 4, 0, 6, aoe_le),                 // if r4 != AoE goto pass
        insn(0x61, 2, 1, 16, 0),                     // r2 = ctx->rx_queue_index
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // r1 = map (two slots)
        insn(0, 0, 0, 0, 0),
        insn(0xb7, 3, 0, 0, XDP_PASS), // r3 = XDP_PASS (action when no socket is there)
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // r0 = bpf_redirect_map(r1, r2, r3)
        insn(0x95, 0, 0, 0, 0),        // exit
    ]
}

/// The `pass:` tail appended after `instructions`.
const PASS_TAIL: [Insn; 2] = [
    insn(0xb7, 0, 0, 0, XDP_PASS), // r0 = XDP_PASS
    insn(0x95, 0, 0, 0, 0),        // exit
];

fn bpf(cmd: i32, attr: &mut [u64]) -> io::Result<i64> {
    // SAFETY: `attr` is a zero-initialised, 8-byte aligned buffer laid out as the kernel's
    // `union bpf_attr` for `cmd`; the kernel reads at most `size` bytes of it and any bytes it
    // does not know about are zero, which it checks.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fd_from(rc: i64) -> OwnedFd {
    // SAFETY: the bpf(2) commands that return a descriptor return a fresh one we now own.
    unsafe { OwnedFd::from_raw_fd(rc as RawFd) }
}

/// How the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP).
    Driver,
    /// In the generic network stack (works everywhere, slower).
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Driver => "native",
            AttachMode::Generic => "generic",
        })
    }
}

/// The loaded and attached program of one interface and its socket map.
pub struct SteeringProgram {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
    /// How it is attached.
    pub mode: AttachMode,
    /// Whether it accepts multi-buffer frames.
    pub frags: bool,
}

impl SteeringProgram {
    /// Creates the socket map (one entry per receive queue), loads the program and attaches
    /// it to interface `ifindex`, natively if the driver can, generically otherwise.
    pub fn attach(iface: &str, ifindex: u32, queues: u32) -> io::Result<SteeringProgram> {
        let with_name =
            |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{iface}: {what}: {e}"));
        let mut attr = [0u64; 16];
        attr[0] = u64::from(BPF_MAP_TYPE_XSKMAP) | (4u64 << 32); // map_type, key_size
        attr[1] = 4 | (u64::from(queues.max(1)) << 32); // value_size, max_entries
        let map = fd_from(bpf(BPF_MAP_CREATE, &mut attr).map_err(|e| {
            with_name(
                "cannot create the XDP socket map (needs root: CAP_BPF and CAP_NET_ADMIN)",
                e,
            )
        })?);
        let (prog, frags) = match load(map.as_raw_fd(), true) {
            Ok(p) => (p, true),
            // Kernels before 5.18 do not know the frags flag: load a single-buffer program.
            Err(_) => (
                load(map.as_raw_fd(), false)
                    .map_err(|e| with_name("the kernel refused the XDP program", e))?,
                false,
            ),
        };
        let link_native = link(prog.as_raw_fd(), ifindex, XDP_FLAGS_DRV_MODE);
        let (link, mode) = match link_native {
            Ok(l) => (l, AttachMode::Driver),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(with_name(
                    "another XDP program is attached to this interface (detach it with 'ip link set dev IFACE xdp off')",
                    e,
                ))
            }
            Err(native) => {
                let l = link(prog.as_raw_fd(), ifindex, XDP_FLAGS_SKB_MODE).map_err(|e| {
                    with_name(
                        &format!("cannot attach the XDP program (native: {native})"),
                        e,
                    )
                })?;
                (l, AttachMode::Generic)
            }
        };
        Ok(SteeringProgram {
            map,
            _prog: prog,
            _link: link,
            mode,
            frags,
        })
    }

    /// Steers AoE frames arriving on `queue` to socket `xsk`.
    pub fn register(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        let key = queue;
        let value = xsk as u32;
        let mut attr = [0u64; 4];
        attr[0] = self.map.as_raw_fd() as u64;
        attr[1] = &key as *const u32 as u64;
        attr[2] = &value as *const u32 as u64;
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }

    /// Stops steering `queue` (its frames pass to the kernel again).
    pub fn unregister(&self, queue: u32) {
        let key = queue;
        let mut attr = [0u64; 4];
        attr[0] = self.map.as_raw_fd() as u64;
        attr[1] = &key as *const u32 as u64;
        let _ = bpf(BPF_MAP_DELETE_ELEM, &mut attr);
    }
}

fn load(map_fd: RawFd, frags: bool) -> io::Result<OwnedFd> {
    let mut code = Vec::with_capacity(15);
    code.extend_from_slice(&instructions(map_fd));
    code.extend_from_slice(&PASS_TAIL);
    let license = c"Apache-2.0";
    let name = *b"ethershelf_aoe\0\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = [0u64; 16];
    attr[0] = u64::from(BPF_PROG_TYPE_XDP) | ((code.len() as u64) << 32);
    attr[1] = code.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    attr[3] = 1 | ((log.len() as u64) << 32); // log_level 1, log_size
    attr[4] = log.as_mut_ptr() as u64;
    attr[5] = u64::from(if frags { BPF_F_XDP_HAS_FRAGS } else { 0 }) << 32; // kern_version, prog_flags
    attr[6] = u64::from_le_bytes(name[..8].try_into().unwrap_or_default());
    attr[7] = u64::from_le_bytes(name[8..].try_into().unwrap_or_default());
    attr[8] = u64::from(BPF_XDP) << 32; // prog_ifindex, expected_attach_type
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd_from(fd)),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            Err(io::Error::new(
                e.kind(),
                format!("{e}; verifier: {}", text.trim()),
            ))
        }
    }
}

fn link(prog_fd: RawFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = [0u64; 8];
    attr[0] = prog_fd as u32 as u64 | (u64::from(ifindex) << 32);
    attr[1] = u64::from(BPF_XDP) | (u64::from(flags) << 32);
    bpf(BPF_LINK_CREATE, &mut attr).map(fd_from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_land_on_the_pass_tail() {
        let code = instructions(7);
        // Both conditional jumps must target the first instruction after `code`.
        for (at, i) in code.iter().enumerate() {
            if i.code == 0x2d || i.code == 0x55 {
                assert_eq!(at as i16 + 1 + i.off, code.len() as i16, "jump at {at}");
            }
        }
        assert_eq!(code[8].imm, 7, "map descriptor patched into the map load");
        assert_eq!(code[8].regs >> 4, BPF_PSEUDO_MAP_FD);
    }

    #[test]
    fn ethertype_constant_matches_a_little_endian_load() {
        let frame = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x88, 0xA2];
        let loaded = u16::from_le_bytes([frame[12], frame[13]]);
        let code = instructions(3);
        assert_eq!(code[6].imm, i32::from(loaded));
    }
}
