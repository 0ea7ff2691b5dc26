//! Semantic checks on a parsed file: ranges, duplicates, formats.

use crate::error::ConfigError;
use crate::schema::{
    Config, Lun, Port, PortMode, RawConfig, DEFAULT_BUFFER_COUNT, DEFAULT_STATE_DIR,
};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::path::PathBuf;

/// Most MACs a mask list holds (AoE's Dir Count is one byte).
pub const MASK_LIST_MAX: usize = 255;

fn err<T>(origin: &str, s: &Spanned<T>, message: impl Into<String>) -> ConfigError {
    ConfigError::at(origin, s.referenced.line(), s.referenced.column(), message)
}

pub(crate) fn validate(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
    let shelf = raw.shelf.value;
    if shelf >= 0xFFFF {
        return Err(err(
            origin,
            &raw.shelf,
            format!("shelf {shelf} is out of range: use 0..65534 (65535 is the broadcast shelf)"),
        ));
    }
    if shelf == 0xFFF {
        return Err(err(origin, &raw.shelf, "shelf 4095 is ignored by the Linux initiator (\"check shelf dip switches\"): pick another"));
    }
    if raw.ports.value.is_empty() {
        return Err(err(
            origin,
            &raw.ports,
            "at least one port is needed: ports: [{ interface: eth1 }]",
        ));
    }
    let mut ports = Vec::new();
    let mut seen_ifaces = HashMap::new();
    for p in raw.ports.value {
        let name = p.interface.value.clone();
        if name.is_empty()
            || name.len() > 15
            || name.contains('/')
            || name.contains(char::is_whitespace)
        {
            return Err(err(
                origin,
                &p.interface,
                format!(
                    "'{name}' is not a valid interface name (1-15 characters, no '/' or spaces)"
                ),
            ));
        }
        if let Some(line) = seen_ifaces.insert(name.clone(), p.interface.referenced.line()) {
            return Err(err(
                origin,
                &p.interface,
                format!("interface '{name}' is listed twice (first on line {line})"),
            ));
        }
        let mode = p.mode.as_ref().map(|m| m.value).unwrap_or_default();
        if let Some(m) = p.mode.as_ref().filter(|m| m.value == PortMode::Xdp) {
            return Err(err(origin, m, "mode 'xdp' is not available in this version yet: use 'packet' or 'auto' (auto uses AF_PACKET)"));
        }
        let max_sectors = match p.max_sectors {
            None => None,
            Some(ms) if (1..=255).contains(&ms.value) => Some(ms.value as u8),
            Some(ms) => return Err(err(origin, &ms, format!("max_sectors {} is out of range: use 1..255 (the MTU caps it further: 2 at 1500, 17 at 9000)", ms.value))),
        };
        ports.push(Port {
            interface: name,
            mode,
            max_sectors,
        });
    }
    let buffer_count = match raw.buffer_count {
        None => DEFAULT_BUFFER_COUNT,
        Some(bc) if (2..=4096).contains(&bc.value) => bc.value as u16,
        Some(bc) => return Err(err(origin, &bc, format!("buffer_count {} is out of range: use 2..4096 (below 2 the Linux initiator never sends I/O)", bc.value))),
    };
    let mut luns = Vec::new();
    let mut seen_slots = HashMap::new();
    for l in raw.luns {
        let slot = l.slot.value;
        if slot >= 255 {
            return Err(err(
                origin,
                &l.slot,
                format!("slot {slot} is out of range: use 0..254 (255 is the broadcast slot)"),
            ));
        }
        if let Some(line) = seen_slots.insert(slot, l.slot.referenced.line()) {
            return Err(err(
                origin,
                &l.slot,
                format!("slot {slot} is used twice (first on line {line})"),
            ));
        }
        if l.file.value.is_empty() {
            return Err(err(
                origin,
                &l.file,
                "file is empty: give the path of a file or block device",
            ));
        }
        let offset = l.offset.as_ref().map(|o| o.value.0).unwrap_or(0);
        if let Some(o) = &l.offset {
            if o.value.0 % 512 != 0 {
                return Err(err(
                    origin,
                    o,
                    format!("offset {} is not a multiple of 512 bytes", o.value.0),
                ));
            }
        }
        let length = match &l.length {
            None => None,
            Some(len) if len.value.0 == 0 || len.value.0 % 512 != 0 => {
                return Err(err(
                    origin,
                    len,
                    format!(
                        "length {} must be a positive multiple of 512 bytes",
                        len.value.0
                    ),
                ))
            }
            Some(len) => Some(len.value.0),
        };
        if l.mask.len() > MASK_LIST_MAX {
            return Err(err(
                origin,
                &l.slot,
                format!(
                    "mask has {} entries; at most {MASK_LIST_MAX} fit AoE's list",
                    l.mask.len()
                ),
            ));
        }
        let mut mask = Vec::new();
        for m in &l.mask {
            let mac = parse_mac(&m.value).ok_or_else(|| {
                err(
                    origin,
                    m,
                    format!(
                        "'{}' is not a MAC address (write e.g. 52:54:00:ae:00:01)",
                        m.value
                    ),
                )
            })?;
            if !mask.contains(&mac) {
                mask.push(mac);
            }
        }
        luns.push(Lun {
            slot: slot as u8,
            file: PathBuf::from(&l.file.value),
            offset,
            length,
            read_only: l.read_only,
            write_cache: l.write_cache,
            direct: l.direct,
            mask,
        });
    }
    Ok(Config {
        shelf: shelf as u16,
        ports,
        state_dir: PathBuf::from(
            raw.state_dir
                .unwrap_or_else(|| DEFAULT_STATE_DIR.to_string()),
        ),
        buffer_count,
        luns,
    })
}

/// Parses a MAC written with colons, dashes or no separators.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b':' && *b != b'-').collect();
    if hex.len() != 12 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, pair) in hex.chunks(2).enumerate() {
        mac[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(mac)
}
