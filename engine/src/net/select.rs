//! Opening a configured port in its mode: `xdp` (one AF_XDP socket per receive queue),
//! `packet` (one AF_PACKET socket) or `auto` (AF_XDP when it works here, else AF_PACKET, and
//! the log says why).

use super::xdp::{SteeringProgram, XdpPort};
use super::{FrameIo, Interface, PacketPort};
use ethershelf_config::PortMode;
use std::io;
use std::sync::Arc;

/// One opened socket of a port.
pub struct OpenedPort {
    /// Its frame I/O.
    pub io: Box<dyn FrameIo + Send>,
    /// The receive queue it serves (0 for AF_PACKET, which sees every queue).
    pub queue: u32,
    /// "xdp" or "packet".
    pub mode: &'static str,
    /// How it is bound, for the log ("zero-copy, native", "copy, native", "recvmmsg").
    pub detail: String,
}

/// Opens `iface` in `mode`; returns its sockets and why this mode was chosen.
pub fn open_port(
    iface: &str,
    mode: PortMode,
    packet_buffer_bytes: usize,
) -> io::Result<(Vec<OpenedPort>, String)> {
    match mode {
        PortMode::Packet => Ok((
            vec![open_packet(iface, packet_buffer_bytes)?],
            "configured".into(),
        )),
        PortMode::Xdp => Ok((open_xdp(iface)?, "configured".into())),
        PortMode::Auto => match open_xdp(iface) {
            Ok(sockets) => Ok((sockets, "auto: AF_XDP works on this port".into())),
            Err(e) => Ok((
                vec![open_packet(iface, packet_buffer_bytes)?],
                format!("auto: AF_XDP unavailable ({e}); AF_PACKET chosen"),
            )),
        },
    }
}

fn open_packet(iface: &str, buffer_bytes: usize) -> io::Result<OpenedPort> {
    Ok(OpenedPort {
        io: Box::new(PacketPort::open(iface, buffer_bytes)?),
        queue: 0,
        mode: "packet",
        detail: "AF_PACKET, recvmmsg/sendmmsg".into(),
    })
}

fn open_xdp(name: &str) -> io::Result<Vec<OpenedPort>> {
    let iface = Interface::lookup(name)?;
    let program = Arc::new(SteeringProgram::attach(name, iface.index, iface.rx_queues)?);
    let mut sockets = Vec::with_capacity(iface.rx_queues as usize);
    for queue in 0..iface.rx_queues {
        let port = XdpPort::open(&iface, queue, program.clone(), false)?;
        let detail = format!(
            "AF_XDP {} mode, {} XDP{}, {}",
            port.bind_mode,
            program.mode,
            if program.frags { ", multi-buffer" } else { "" },
            port.tx_path()
        );
        sockets.push(OpenedPort {
            io: Box::new(port),
            queue,
            mode: "xdp",
            detail,
        });
    }
    Ok(sockets)
}
