//! Semantic checks on a parsed file: ranges, duplicates, formats.

use crate::error::ConfigError;
use crate::schema::{
    Backend, Config, FileSpec, Lun, MetricsListen, Port, Raid10Spec, RawConfig, RawDisks, RawLun,
    RawRaid10, RebuildRates, DEFAULT_ADMIN_SOCKET, DEFAULT_BUFFER_COUNT, DEFAULT_CHUNK,
    DEFAULT_STATE_DIR,
};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::path::PathBuf;

/// Most MACs a mask list holds (AoE's Dir Count is one byte).
pub const MASK_LIST_MAX: usize = 255;

/// Most worker threads a shelf runs.
const MAX_WORKERS: u32 = 256;

fn err<T>(origin: &str, s: &Spanned<T>, message: impl Into<String>) -> ConfigError {
    ConfigError::at(origin, s.referenced.line(), s.referenced.column(), message)
}

pub(crate) fn validate(
    raw: RawConfig,
    origin: &str,
    disk_probe: &dyn Fn() -> crate::disks::DiskProbe,
) -> Result<Config, ConfigError> {
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
    // `ports: []` with no LUNs is a shelf that serves nothing (the packaged default file).
    if raw.ports.value.is_empty() && !raw.luns.is_empty() {
        return Err(err(
            origin,
            &raw.ports,
            "at least one port is needed to serve LUNs: ports: [{ interface: eth1 }]",
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
    let mut disks = Vec::new();
    let mut seen_disks = HashMap::new();
    let mut disks_auto = false;
    let listed: &[Spanned<String>] = match &raw.disks {
        None => &[],
        Some(Spanned {
            value: RawDisks::List(list),
            ..
        }) => list,
        Some(auto) => {
            disks = crate::disks::auto_disks(&disk_probe()).map_err(|m| {
                ConfigError::at(origin, auto.referenced.line(), auto.referenced.column(), m)
            })?;
            disks_auto = true;
            &[]
        }
    };
    for d in listed {
        if d.value.is_empty() {
            return Err(err(origin, d, "disk path is empty"));
        }
        if let Some(line) = seen_disks.insert(d.value.clone(), d.referenced.line()) {
            return Err(err(
                origin,
                d,
                format!("disk '{}' is listed twice (first on line {line})", d.value),
            ));
        }
        disks.push(PathBuf::from(&d.value));
    }
    // Which LUN (or "spares") owns each disk: a disk serves one role only.
    let mut disk_owner: HashMap<usize, String> = HashMap::new();
    let mut spares = Vec::new();
    for s in &raw.spares {
        let i = disk_index(s, disks.len(), origin)?;
        if let Some(owner) = disk_owner.insert(i, "the spares".into()) {
            return Err(err(
                origin,
                s,
                format!("disk {i} is already used by {owner}"),
            ));
        }
        spares.push(i);
    }
    let mut rebuild = RebuildRates::default();
    if let Some(r) = &raw.rebuild {
        if let Some(m) = &r.min_rate {
            rebuild.min = m.value.0;
        }
        if let Some(m) = &r.max_rate {
            rebuild.max = m.value.0;
        }
        let at = r.min_rate.as_ref().or(r.max_rate.as_ref());
        if let Some(at) = at {
            if rebuild.min == 0 || rebuild.max < rebuild.min {
                return Err(err(
                    origin,
                    at,
                    format!(
                        "rebuild rates need 0 < min_rate <= max_rate (got min {} and max {} bytes/s)",
                        rebuild.min, rebuild.max
                    ),
                ));
            }
        }
    }
    let admin_socket = match &raw.admin {
        Some(a) if a.socket.value.is_empty() => {
            return Err(err(origin, &a.socket, "admin socket path is empty"))
        }
        Some(a) => PathBuf::from(&a.socket.value),
        None => PathBuf::from(DEFAULT_ADMIN_SOCKET),
    };
    let metrics = match &raw.metrics {
        None => MetricsListen::Default,
        Some(m) if m.listen.value == "off" => MetricsListen::Off,
        Some(m) => match m.listen.value.parse::<std::net::SocketAddr>() {
            Ok(a) => MetricsListen::At(a),
            Err(_) => {
                return Err(err(
                    origin,
                    &m.listen,
                    format!(
                        "metrics listen address '{}' is not IP:PORT (e.g. 127.0.0.1:9478 or [::]:9478) or 'off'",
                        m.listen.value
                    ),
                ))
            }
        },
    };
    let mut cpus = Vec::new();
    for c in &raw.cpus {
        if c.value >= 4096 {
            return Err(err(
                origin,
                c,
                format!(
                    "cpu {} is out of range: use the CPU numbers of this machine (0..4095)",
                    c.value
                ),
            ));
        }
        if cpus.contains(&(c.value as usize)) {
            return Err(err(origin, c, format!("cpu {} is listed twice", c.value)));
        }
        cpus.push(c.value as usize);
    }
    let workers = match &raw.workers {
        None => None,
        Some(w) if (1..=MAX_WORKERS).contains(&w.value) => Some(w.value as usize),
        Some(w) => {
            return Err(err(
                origin,
                w,
                format!(
                    "workers must be 1..{MAX_WORKERS} (leave it out for one per receive queue, up to the usable cores)"
                ),
            ))
        }
    };
    let shelf_access = crate::validate_access::shelf_access(raw.access, origin)?;
    let cec = crate::validate_access::cec(raw.cec, &shelf_access, origin)?;
    let management = match &raw.management {
        Some(m) => Some(management(m, &ports, origin)?),
        None => None,
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
        let backend = match (&l.file, &l.raid10) {
            (Some(_), Some(_)) => {
                return Err(err(
                    origin,
                    &l.slot,
                    format!("LUN {slot} has both 'file' and 'raid10': give one of them"),
                ))
            }
            (None, None) => {
                return Err(err(
                    origin,
                    &l.slot,
                    format!("LUN {slot} has no storage: give 'file: PATH' or 'raid10: {{ disks: [0, 1, 2, 3] }}'"),
                ))
            }
            (Some(file), None) => Backend::File(file_spec(file, &l, origin)?),
            (None, Some(r)) => {
                if let Some(o) = l.offset.as_ref().or(l.length.as_ref()) {
                    return Err(err(origin, o, "offset/length apply to 'file' LUNs only"));
                }
                Backend::Raid10(raid10_spec(r, slot, &disks, &mut disk_owner, origin)?)
            }
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
        let access = crate::validate_access::lun_access(l.access.as_ref(), &shelf_access, origin)?;
        luns.push(Lun {
            slot: slot as u8,
            backend,
            read_only: l.read_only,
            write_cache: l.write_cache,
            mask,
            access,
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
        disks,
        disks_auto,
        spares,
        rebuild,
        admin_socket,
        metrics,
        cpus,
        workers,
        sqpoll: raw.sqpoll,
        luns,
        access: shelf_access.access,
        cec,
        management,
        force_assemble: false,
    })
}

fn disk_index(s: &Spanned<u32>, count: usize, origin: &str) -> Result<usize, ConfigError> {
    let i = s.value as usize;
    if i >= count {
        return Err(err(
            origin,
            s,
            if count == 0 {
                format!("disk {i} does not exist: list the shelf's disks under 'disks:' first")
            } else {
                format!(
                    "disk {i} does not exist: 'disks:' lists {count} (use 0..{})",
                    count - 1
                )
            },
        ));
    }
    Ok(i)
}

fn file_spec(file: &Spanned<String>, l: &RawLun, origin: &str) -> Result<FileSpec, ConfigError> {
    if file.value.is_empty() {
        return Err(err(
            origin,
            file,
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
    if l.create && (length.is_none() || offset != 0) {
        return Err(err(
            origin,
            file,
            "create: true needs 'length:' (the size of the new file) and no offset",
        ));
    }
    Ok(FileSpec {
        path: PathBuf::from(&file.value),
        offset,
        length,
        direct: l.direct,
        create: l.create,
    })
}

fn raid10_spec(
    r: &RawRaid10,
    slot: u32,
    disks: &[PathBuf],
    owner: &mut HashMap<usize, String>,
    origin: &str,
) -> Result<Raid10Spec, ConfigError> {
    if r.disks.value.len() < 2 {
        return Err(err(
            origin,
            &r.disks,
            format!(
                "RAID-10 needs at least 2 disks (got {}): e.g. disks: [0, 1, 2, 3]",
                r.disks.value.len()
            ),
        ));
    }
    if r.disks.value.len() > 64 {
        return Err(err(origin, &r.disks, "RAID-10 takes at most 64 disks"));
    }
    let mut members = Vec::new();
    for d in &r.disks.value {
        let i = disk_index(d, disks.len(), origin)?;
        if let Some(other) = owner.insert(i, format!("LUN {slot}")) {
            return Err(err(
                origin,
                d,
                format!("disk {i} is already used by {other}: a disk belongs to one array or to the spares"),
            ));
        }
        members.push(i);
    }
    let chunk = r.chunk.as_ref().map_or(DEFAULT_CHUNK, |c| c.value.0);
    if let Some(c) = &r.chunk {
        if c.value.0 < 4096 || !c.value.0.is_power_of_two() || c.value.0 > (16 << 20) {
            return Err(err(
                origin,
                c,
                format!(
                    "chunk {} must be a power of two from 4KiB to 16MiB (default 64KiB)",
                    c.value.0
                ),
            ));
        }
    }
    Ok(Raid10Spec {
        disks: members,
        chunk,
        clean: r.clean,
        degraded_start: r.degraded_start,
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

fn management(
    raw: &crate::schema::RawManagement,
    ports: &[Port],
    origin: &str,
) -> Result<crate::schema::Management, ConfigError> {
    use crate::schema::{Management, ManagementAddress};
    let name = &raw.interface.value;
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
        return Err(err(
            origin,
            &raw.interface,
            format!("management interface '{name}' is not an interface name"),
        ));
    }
    if ports.iter().any(|p| &p.interface == name) {
        return Err(err(
            origin,
            &raw.interface,
            format!("'{name}' is an AoE port: the management interface must be another NIC (AoE ports carry no IP)"),
        ));
    }
    let address = match raw.address.value.as_str() {
        "dhcp" => ManagementAddress::Dhcp,
        text => {
            let parsed = text.split_once('/').and_then(|(ip, len)| {
                let ip: std::net::IpAddr = ip.parse().ok()?;
                let len: u8 = len.parse().ok()?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                (len <= max).then_some((ip, len))
            });
            match parsed {
                Some((ip, len)) => ManagementAddress::Static(ip, len),
                None => {
                    return Err(err(
                        origin,
                        &raw.address,
                        format!("management address '{text}': write dhcp, or an address with its prefix length (192.0.2.10/24)"),
                    ))
                }
            }
        }
    };
    let ip = |s: &Spanned<String>, what: &str| -> Result<std::net::IpAddr, ConfigError> {
        s.value.parse().map_err(|_| {
            err(
                origin,
                s,
                format!("management {what} '{}' is not an IP address", s.value),
            )
        })
    };
    let gateway = raw.gateway.as_ref().map(|g| ip(g, "gateway")).transpose()?;
    let dns = raw
        .dns
        .iter()
        .map(|d| ip(d, "dns"))
        .collect::<Result<Vec<_>, _>>()?;
    if address == ManagementAddress::Dhcp {
        if let Some(g) = &raw.gateway {
            return Err(err(
                origin,
                g,
                "management gateway: only with a static address (DHCP supplies it)",
            ));
        }
    }
    Ok(Management {
        interface: name.clone(),
        address,
        gateway,
        dns,
    })
}
