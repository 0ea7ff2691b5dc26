//! Building replies in place, in the buffer the request arrived in.
//!
//! Every function gets the frame (request bytes on entry) and returns the reply length,
//! already padded to the Ethernet minimum, or `None` when the answer is silence.

use super::target::{firmware_version, Target};
use crate::ata::{AtaOutcome, SmartCommand};
use crate::lun::{ConfigOutcome, MaskOutcome, ReserveOutcome};
use crate::wire::*;

/// Pads `len` to 60 bytes, zeroing the padding.
pub fn padded(frame: &mut [u8], len: usize) -> usize {
    if len < MIN_FRAME_LEN {
        frame[len..MIN_FRAME_LEN].fill(0);
        MIN_FRAME_LEN
    } else {
        len
    }
}

/// Writes the reply header for `req` from `port_mac`, naming `(shelf, slot)`.
pub fn header(
    frame: &mut [u8],
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    shelf: u16,
    slot: u8,
    error: Option<u8>,
) {
    let mut h = req.reply(port_mac, shelf, slot);
    h.error = error;
    // The frame is at least AOE_HEADER_LEN long (the slot is far larger), so emit cannot fail.
    let _ = h.emit(&mut AoeFrame::new_unchecked(&mut frame[..]));
}

/// An AoE-level error reply: the header only, with E set and `code`.
pub fn aoe_error(
    frame: &mut [u8],
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    shelf: u16,
    slot: u8,
    code: u8,
) -> usize {
    header(frame, req, port_mac, shelf, slot, Some(code));
    padded(frame, AOE_HEADER_LEN)
}

/// An AoE-level error reply naming `target`.
fn target_error(
    frame: &mut [u8],
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    target: &Target,
    code: u8,
) -> usize {
    aoe_error(frame, req, port_mac, target.shelf, target.slot, code)
}

/// Logs a state change that could not be made durable; the request stays unanswered so the
/// initiator retries.
fn persist_failed(
    target: &Target,
    what: &str,
    error: &crate::lun::PersistError,
) -> Result<Option<usize>, &'static str> {
    tracing::error!(lun = %format!("{}.{}", target.shelf, target.slot), what, %error, "could not persist the state change; not answering so the initiator retries");
    Ok(None)
}

/// An ATA reply with `outcome` and `data_len` bytes of data already in place at offset 36.
pub fn ata(
    frame: &mut [u8],
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    target: &Target,
    outcome: AtaOutcome,
    data_len: usize,
) -> usize {
    header(frame, req, port_mac, target.shelf, target.slot, None);
    let mut ata = AtaPacket::new_unchecked(&mut frame[AOE_HEADER_LEN..]);
    ata.set_err_feature(outcome.error);
    ata.set_sector_count(outcome.sector_count);
    ata.set_cmd_status(outcome.status);
    // AFlags and LBA are echoed from the request; the reserved bytes are cleared.
    frame[34] = 0;
    frame[35] = 0;
    padded(frame, ATA_DATA_OFFSET + data_len)
}

/// The answer to IDENTIFY, CHECK POWER MODE or SMART, which need no disk I/O.
pub fn ata_immediate_identify(
    frame: &mut [u8],
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    target: &Target,
) -> usize {
    frame[ATA_DATA_OFFSET..ATA_DATA_OFFSET + 512].copy_from_slice(&target.identify);
    ata(frame, req, port_mac, target, AtaOutcome::OK, 512)
}

/// CHECK POWER MODE: active or idle (count 0xFF).
pub fn ata_check_power(
    frame: &mut [u8],
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    target: &Target,
) -> usize {
    ata(
        frame,
        req,
        port_mac,
        target,
        AtaOutcome {
            sector_count: 0xFF,
            ..AtaOutcome::OK
        },
        0,
    )
}

/// SMART subcommands: status (0x4F/0xC2 left in place when healthy, 0xF4/0x2C "threshold
/// exceeded" while a RAID LUN is degraded or failed), the data page, or accept.
/// Every SMART reply carries one 512-byte block (zeros when the command moves no data):
/// Debian's `aoeping` ignores SMART replies shorter than 548 bytes.
pub fn ata_smart(
    frame: &mut [u8],
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    target: &Target,
    cmd: SmartCommand,
) -> usize {
    let data = &mut frame[ATA_DATA_OFFSET..ATA_DATA_OFFSET + 512];
    match cmd {
        SmartCommand::ReadData => data.copy_from_slice(&crate::ata::smart_read_data_page()),
        SmartCommand::ReturnStatus | SmartCommand::Accept => data.fill(0),
    }
    let n = ata(frame, req, port_mac, target, AtaOutcome::OK, 512);
    if cmd == SmartCommand::ReturnStatus
        && target.degraded.load(std::sync::atomic::Ordering::Relaxed)
    {
        // LBA mid/high of the ATA header (bytes 5 and 6 after the AoE header).
        frame[AOE_HEADER_LEN + 5] = crate::ata::SMART_THRESHOLD_LBA_MID;
        frame[AOE_HEADER_LEN + 6] = crate::ata::SMART_THRESHOLD_LBA_HIGH;
    }
    n
}

/// A Query Config reply carrying `string`, sized for a port advertising `sectors`.
pub fn config_frame(
    frame: &mut [u8],
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    target: &Target,
    sectors: u8,
    ccmd: ConfigCommand,
    string: &[u8],
) -> usize {
    header(frame, req, port_mac, target.shelf, target.slot, None);
    let repr = ConfigRepr {
        buffer_count: target.buffer_count,
        firmware: firmware_version(),
        sector_count: sectors,
        aoe_version: AOE_VERSION,
        command: ccmd,
        string,
    };
    // The slot holds far more than 24 + 8 + 1024 bytes.
    let _ = repr.emit(&mut frame[AOE_HEADER_LEN..]);
    padded(frame, AOE_HEADER_LEN + repr.buffer_len())
}

/// Runs a Query Config command and builds its reply.
pub fn config(
    frame: &mut [u8],
    len: usize,
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    target: &Target,
    sectors: u8,
    visible: bool,
) -> Result<Option<usize>, &'static str> {
    let packet = ConfigPacket::new_checked(&frame[AOE_HEADER_LEN..len])
        .map_err(|_| "config argument truncated")?;
    let ccmd = packet.command();
    let outcome = match ConfigRepr::parse(&packet) {
        Ok(repr) => target.state.config(ccmd, repr.string, visible, req.src),
        // A read needs no string: answer it even if the length field is nonsense.
        Err(_) if ccmd == ConfigCommand::Read => target.state.config(ccmd, &[], visible, req.src),
        // Test and prefix stay silent on a mismatch, and a bad string matches nothing.
        Err(_) if matches!(ccmd, ConfigCommand::Test | ConfigCommand::Prefix) => {
            return Err("config string length past the frame or above 1024")
        }
        Err(_) => {
            return Ok(Some(target_error(
                frame,
                req,
                port_mac,
                target,
                AoeErrorCode::BadArgument as u8,
            )))
        }
    };
    match outcome {
        Ok(ConfigOutcome::Reply(string)) => Ok(Some(config_frame(
            frame, req, port_mac, target, sectors, ccmd, &string,
        ))),
        Ok(ConfigOutcome::Silent) => Ok(None),
        Ok(ConfigOutcome::Error(code)) => {
            Ok(Some(target_error(frame, req, port_mac, target, code)))
        }
        Err(e) => persist_failed(target, "config string", &e),
    }
}

/// Runs a MAC Mask List command and builds its reply (the list is cut to fit `max_frame`).
pub fn mask(
    frame: &mut [u8],
    len: usize,
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    target: &Target,
    max_frame: usize,
) -> Result<Option<usize>, &'static str> {
    let packet = MaskPacket::new_checked(&frame[AOE_HEADER_LEN..len])
        .map_err(|_| "mask argument truncated")?;
    let mcmd = packet.command();
    let outcome = {
        let repr = MaskRepr::parse(&packet).map_err(|_| "mask directives past the frame")?;
        target
            .state
            .mask(mcmd, repr.directives().map(|d| (d.command, d.mac)), req.src)
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return persist_failed(target, "mask list", &e),
    };
    header(frame, req, port_mac, target.shelf, target.slot, None);
    let arg = &mut frame[AOE_HEADER_LEN..];
    arg[0] = 0;
    arg[1] = mcmd.into();
    match outcome {
        MaskOutcome::BadArgument => Ok(Some(target_error(
            frame,
            req,
            port_mac,
            target,
            AoeErrorCode::BadArgument as u8,
        ))),
        MaskOutcome::EditFailed { error, index } => {
            arg[2] = error as u8;
            arg[3] = index;
            Ok(Some(padded(frame, AOE_HEADER_LEN + MASK_HEADER_LEN)))
        }
        MaskOutcome::List(list) => {
            let fit =
                (max_frame.saturating_sub(AOE_HEADER_LEN + MASK_HEADER_LEN)) / MASK_DIRECTIVE_LEN;
            let n = list.len().min(fit).min(255);
            arg[2] = 0;
            arg[3] = n as u8;
            for (i, mac) in list.iter().take(n).enumerate() {
                let at = MASK_HEADER_LEN + i * MASK_DIRECTIVE_LEN;
                let _ = MaskDirective {
                    command: DirectiveCommand::NoOp,
                    mac: *mac,
                }
                .emit(&mut arg[at..]);
            }
            Ok(Some(padded(
                frame,
                AOE_HEADER_LEN + MASK_HEADER_LEN + n * MASK_DIRECTIVE_LEN,
            )))
        }
    }
}

/// Runs a Reserve/Release command and builds its reply.
pub fn reserve(
    frame: &mut [u8],
    len: usize,
    req: &AoeHeaderRepr,
    port_mac: MacAddr,
    target: &Target,
    max_frame: usize,
) -> Result<Option<usize>, &'static str> {
    let packet = ReservePacket::new_checked(&frame[AOE_HEADER_LEN..len])
        .map_err(|_| "reserve argument truncated")?;
    let rcmd = packet.command();
    let outcome = match ReserveRepr::parse(&packet) {
        Ok(repr) => target.state.reserve(rcmd, req.src, repr.macs()),
        Err(_) if rcmd == ReserveCommand::Read => {
            target.state.reserve(rcmd, req.src, std::iter::empty())
        }
        Err(_) => {
            return Ok(Some(target_error(
                frame,
                req,
                port_mac,
                target,
                AoeErrorCode::BadArgument as u8,
            )))
        }
    };
    match outcome {
        Ok(ReserveOutcome::Error(code)) => {
            Ok(Some(target_error(frame, req, port_mac, target, code)))
        }
        Ok(ReserveOutcome::List(list)) => {
            header(frame, req, port_mac, target.shelf, target.slot, None);
            let arg = &mut frame[AOE_HEADER_LEN..];
            let fit = max_frame.saturating_sub(AOE_HEADER_LEN + RESERVE_HEADER_LEN) / 6;
            let n = list.len().min(fit).min(255);
            arg[0] = rcmd.into();
            arg[1] = n as u8;
            for (i, mac) in list.iter().take(n).enumerate() {
                arg[RESERVE_HEADER_LEN + i * 6..RESERVE_HEADER_LEN + i * 6 + 6]
                    .copy_from_slice(&mac.0);
            }
            Ok(Some(padded(
                frame,
                AOE_HEADER_LEN + RESERVE_HEADER_LEN + n * 6,
            )))
        }
        Err(e) => persist_failed(target, "reservation", &e),
    }
}
