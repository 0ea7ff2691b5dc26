//! A raw AoE initiator for tests: an AF_PACKET socket opened inside a lab namespace (the
//! calling thread enters the namespace only while the socket is created).

use ethershelf::net::{FrameIo, PacketPort};
use ethershelf::wire::*;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub struct RawInitiator {
    port: PacketPort,
    pub mac: MacAddr,
}

fn enter_netns(path: &str) -> std::fs::File {
    let original = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
    let target = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) },
        0,
        "setns {path}"
    );
    original
}

impl RawInitiator {
    /// Opens a socket on `iface` inside `netns`; the thread returns to its own namespace.
    pub fn open(netns: &str, iface: &str) -> RawInitiator {
        let original = enter_netns(&format!("/run/netns/{netns}"));
        let port = PacketPort::open(iface, 8 << 20);
        assert_eq!(
            unsafe { libc::setns(original.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns back"
        );
        let port = port.unwrap_or_else(|e| panic!("raw socket on {iface} in {netns}: {e}"));
        RawInitiator {
            mac: port.mac(),
            port,
        }
    }

    fn fd(&self) -> i32 {
        self.port.poll_fd()
    }

    pub fn send(&self, frame: &[u8]) {
        let n = unsafe {
            libc::send(
                self.fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        assert_eq!(
            n as usize,
            frame.len(),
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Receives the responses to every tag of `tags`, in any order (a reply that arrives
    /// before its turn is kept, not dropped). Tags without an answer by `timeout` are missing
    /// from the result.
    pub fn recv_tags(&self, tags: &[u32], timeout: Duration) -> Vec<(u32, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<(u32, Vec<u8>)> = Vec::new();
        while got.len() < tags.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(frame) = self.recv_any(left) else {
                continue;
            };
            if let Ok(f) = AoeFrame::new_checked(&frame[..]) {
                let tag = f.tag();
                if f.is_response() && tags.contains(&tag) && !got.iter().any(|(t, _)| *t == tag) {
                    got.push((tag, frame.clone()));
                }
            }
        }
        got
    }

    /// Every AoE response received within `timeout` (announcements included).
    pub fn recv_all(&self, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return got;
            }
            if let Some(frame) = self.recv_any(left) {
                if AoeFrame::new_checked(&frame[..]).is_ok_and(|f| f.is_response()) {
                    got.push(frame);
                }
            }
        }
    }

    /// The next frame received within `timeout`.
    fn recv_any(&self, timeout: Duration) -> Option<Vec<u8>> {
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().max(1) as i32) } <= 0 {
            return None;
        }
        let mut buf = vec![0u8; 10000];
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe {
            libc::recv(
                self.fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n <= 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }

    /// Receives the next response frame matching `tag` (any source), or None after `timeout`.
    pub fn recv_tag(&self, tag: u32, timeout: Duration) -> Option<Vec<u8>> {
        self.recv_tags(&[tag], timeout)
            .pop()
            .map(|(_, frame)| frame)
    }

    /// A request header from `src` (default: our MAC) to `dst`.
    pub fn header(
        &self,
        src: Option<MacAddr>,
        dst: MacAddr,
        shelf: u16,
        slot: u8,
        cmd: AoeCommand,
        tag: u32,
    ) -> Vec<u8> {
        let mut f = vec![0u8; AOE_HEADER_LEN];
        AoeHeaderRepr {
            dst,
            src: src.unwrap_or(self.mac),
            version: 1,
            response: false,
            error: None,
            shelf,
            slot,
            command: cmd,
            tag,
        }
        .emit(&mut AoeFrame::new_unchecked(&mut f[..]))
        .unwrap();
        f
    }

    /// An ATA request frame.
    #[allow(clippy::too_many_arguments)]
    pub fn ata(
        &self,
        src: Option<MacAddr>,
        shelf: u16,
        slot: u8,
        tag: u32,
        opcode: u8,
        ext: bool,
        lba: u64,
        count: u8,
        data: &[u8],
    ) -> Vec<u8> {
        let mut f = self.header(src, MacAddr::BROADCAST, shelf, slot, AoeCommand::Ata, tag);
        let mut a = [0u8; ATA_HEADER_LEN];
        let lba_bytes = lba.to_le_bytes();
        let mut l = [
            lba_bytes[0],
            lba_bytes[1],
            lba_bytes[2],
            lba_bytes[3],
            lba_bytes[4],
            lba_bytes[5],
        ];
        if !ext {
            l[3] = (l[3] & 0x0F) | 0xE0;
            l[4] = 0;
            l[5] = 0;
        }
        let aflags = if ext { AtaFlags::EXTENDED } else { 0 }
            | if data.is_empty() { 0 } else { AtaFlags::WRITE };
        AtaRepr {
            aflags: AtaFlags(aflags),
            err_feature: 0,
            sector_count: count,
            cmd_status: opcode,
            lba: l,
        }
        .emit(&mut AtaPacket::new_unchecked(&mut a[..]))
        .unwrap();
        f.extend_from_slice(&a);
        f.extend_from_slice(data);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }

    /// Sends an ATA request and returns the reply (panics on timeout).
    #[allow(clippy::too_many_arguments)]
    pub fn ata_io(
        &self,
        shelf: u16,
        slot: u8,
        tag: u32,
        opcode: u8,
        ext: bool,
        lba: u64,
        count: u8,
        data: &[u8],
    ) -> Vec<u8> {
        self.send(&self.ata(None, shelf, slot, tag, opcode, ext, lba, count, data));
        self.recv_tag(tag, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no reply to ATA {opcode:#x} lba {lba} tag {tag:#x}"))
    }

    /// A MAC Mask List command (MCmd `mcmd`, directives `dirs`) from `src` (None: our MAC)
    /// to `shelf.slot`; the reply within 800 ms.
    #[allow(clippy::too_many_arguments)]
    pub fn mask_cmd(
        &self,
        src: Option<MacAddr>,
        shelf: u16,
        slot: u8,
        tag: u32,
        mcmd: u8,
        dirs: &[(DirectiveCommand, MacAddr)],
    ) -> Option<Vec<u8>> {
        let mut f = self.header(
            src,
            MacAddr::BROADCAST,
            shelf,
            slot,
            AoeCommand::MacMask,
            tag,
        );
        f.extend_from_slice(&[0, mcmd, 0, dirs.len() as u8]);
        for (c, m) in dirs {
            let mut d = [0u8; 8];
            MaskDirective {
                command: *c,
                mac: *m,
            }
            .emit(&mut d)
            .unwrap();
            f.extend_from_slice(&d);
        }
        f.resize(f.len().max(60), 0);
        self.send(&f);
        self.recv_tag(tag, Duration::from_millis(800))
    }

    /// A Reserve/Release command (RCmd `rcmd`, list `macs`) from `src` to `shelf.slot`; the
    /// reply within 800 ms.
    pub fn reserve_cmd(
        &self,
        src: Option<MacAddr>,
        shelf: u16,
        slot: u8,
        tag: u32,
        rcmd: u8,
        macs: &[MacAddr],
    ) -> Option<Vec<u8>> {
        let mut f = self.header(
            src,
            MacAddr::BROADCAST,
            shelf,
            slot,
            AoeCommand::Reserve,
            tag,
        );
        f.extend_from_slice(&[rcmd, macs.len() as u8]);
        for m in macs {
            f.extend_from_slice(&m.0);
        }
        f.resize(f.len().max(60), 0);
        self.send(&f);
        self.recv_tag(tag, Duration::from_millis(800))
    }

    /// A Query Config request (`ccmd`, string `s`) from `src` (None: our MAC) to `shelf.slot`.
    pub fn config_frame(
        &self,
        src: Option<MacAddr>,
        shelf: u16,
        slot: u8,
        tag: u32,
        ccmd: ConfigCommand,
        s: &[u8],
    ) -> Vec<u8> {
        let mut f = self.header(
            src,
            MacAddr::BROADCAST,
            shelf,
            slot,
            AoeCommand::QueryConfig,
            tag,
        );
        let repr = ConfigRepr {
            buffer_count: 0,
            firmware: 0,
            sector_count: 0,
            aoe_version: 1,
            command: ccmd,
            string: s,
        };
        let at = f.len();
        f.resize(at + repr.buffer_len(), 0);
        repr.emit(&mut f[at..]).unwrap();
        f.resize(f.len().max(60), 0);
        f
    }

    /// Query Config (read) to `shelf.slot`; returns the reply.
    pub fn query_config(&self, shelf: u16, slot: u8, tag: u32) -> Option<Vec<u8>> {
        let mut f = self.header(
            None,
            MacAddr::BROADCAST,
            shelf,
            slot,
            AoeCommand::QueryConfig,
            tag,
        );
        f.resize(60, 0);
        self.send(&f);
        self.recv_tag(tag, Duration::from_secs(2))
    }
}

/// ATA status and error registers of a reply.
pub fn ata_regs(reply: &[u8]) -> (u8, u8) {
    (reply[27], reply[25])
}

/// The AoE error code of a reply, if E is set.
pub fn aoe_error(reply: &[u8]) -> Option<u8> {
    let f = AoeFrame::new_checked(reply).unwrap();
    f.is_error().then(|| f.error())
}

/// The config string of a Query Config reply.
pub fn config_string(reply: &[u8]) -> Vec<u8> {
    let p = ConfigPacket::new_checked(&reply[AOE_HEADER_LEN..]).unwrap();
    ConfigRepr::parse(&p).unwrap().string.to_vec()
}
