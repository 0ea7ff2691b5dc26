//! A careless or hostile LAN: state changes are answered only once durable and never make
//! another host's I/O wait; a flood of state changes and broadcasts (from one MAC and from
//! forged ones) is rate-limited while a well-behaved host's verified I/O goes on.

mod common;
use common::raw::{aoe_error, RawInitiator};
use common::*;
use ethershelf::wire::*;
use std::time::{Duration, Instant};

const SHELF: u16 = 5;

fn config_frame(
    ini: &RawInitiator,
    src: Option<MacAddr>,
    slot: u8,
    tag: u32,
    ccmd: ConfigCommand,
    s: &[u8],
) -> Vec<u8> {
    let mut f = ini.header(
        src,
        MacAddr::BROADCAST,
        SHELF,
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

fn config_string(reply: &[u8]) -> Vec<u8> {
    let p = ConfigPacket::new_checked(&reply[AOE_HEADER_LEN..]).unwrap();
    ConfigRepr::parse(&p).unwrap().string.to_vec()
}

/// The config string in a LUN's state file.
fn config_on_disk(path: &std::path::Path) -> Vec<u8> {
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    file["config_string"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect()
}

fn drops(metrics: &str, reason: &str) -> u64 {
    let needle = format!("reason=\"{reason}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("ethershelf_path_drops_total{") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_state_change_is_answered_only_once_durable_and_never_stalls_io() {
    let mut lab = Lab::new(2, 1500);
    let d0 = lab.disk("d0.img", 16 << 20);
    let d1 = lab.disk("d1.img", 1 << 20);
    let cfg = lab.config(SHELF, &[(0, &d0), (1, &d1)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    // LUN 1's state cannot be written: a directory stands where its file goes.
    let state = lab.dir.join("state").join(format!("lun-{SHELF}.1.json"));
    std::fs::create_dir_all(state.join("blocker")).unwrap();
    let b = lab.raw(1);
    let load = lab.verified_io(0, &format!("{SHELF}.0"), 5, "randrw");
    std::thread::sleep(Duration::from_millis(500));
    b.send(&config_frame(
        &b,
        None,
        1,
        77,
        ConfigCommand::Set,
        b"owner-b",
    ));
    assert!(
        b.recv_tag(77, Duration::from_millis(2500)).is_none(),
        "no reply while the change is not on disk"
    );
    // The disk recovers: the persister's retry writes it, and only then the reply goes out.
    std::fs::remove_dir_all(&state).unwrap();
    let r = b
        .recv_tag(77, Duration::from_secs(5))
        .expect("reply once durable");
    assert_eq!(aoe_error(&r), None);
    assert_eq!(config_string(&r), b"owner-b");
    assert_eq!(config_on_disk(&state), b"owner-b");
    // Host A's I/O on LUN 0 went on all along.
    let job = verified_clean(load, "A while LUN 1's state could not be written");
    assert!(job["verified_blocks"].as_u64().unwrap() > 100, "{job}");
    assert!(lab
        .log_text()
        .contains("LUN state could not be written; retrying"));
    lab.stop();
}

#[test]
fn a_flood_of_state_changes_and_broadcasts_is_limited_and_others_keep_working() {
    let mut lab = Lab::new(2, 1500);
    let d0 = lab.disk("d0.img", 16 << 20);
    let d1 = lab.disk("d1.img", 1 << 20);
    let cfg = lab.config(SHELF, &[(0, &d0), (1, &d1)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let b = lab.raw(1);
    let load = lab.verified_io(0, &format!("{SHELF}.0"), 6, "randrw");
    std::thread::sleep(Duration::from_millis(800));
    // Host B: config force-sets with a changing string (from its own MAC and from forged
    // ones) and broadcast discoveries, as fast as it can, bounded in count and time.
    let start = Instant::now();
    let mut sent = 0u32;
    while sent < 60_000 && start.elapsed() < Duration::from_secs(4) {
        let forged = MacAddr([
            0x02,
            0x66,
            0,
            (sent >> 16) as u8,
            (sent >> 8) as u8,
            sent as u8,
        ]);
        let src = if sent % 2 == 0 { None } else { Some(forged) };
        let text = format!("flood {sent}");
        b.send(&config_frame(
            &b,
            src,
            1,
            sent,
            ConfigCommand::ForceSet,
            text.as_bytes(),
        ));
        if sent % 8 == 0 {
            let mut f = b.header(
                src,
                MacAddr::BROADCAST,
                0xffff,
                0xff,
                AoeCommand::QueryConfig,
                sent,
            );
            f.resize(60, 0);
            b.send(&f);
        }
        sent += 1;
    }
    let job = verified_clean(load, "A under B's flood");
    assert!(job["verified_blocks"].as_u64().unwrap() > 100, "{job}");
    let m = lab.metrics();
    assert!(drops(&m, "rate_limited") > 0, "the flood was limited:\n{m}");
    // B, back to good behaviour, is served again, and what it is told is what is on disk.
    std::thread::sleep(Duration::from_secs(3));
    b.send(&config_frame(
        &b,
        None,
        1,
        1_000_001,
        ConfigCommand::ForceSet,
        b"calm",
    ));
    let r = b
        .recv_tag(1_000_001, Duration::from_secs(3))
        .expect("served after the flood");
    assert_eq!(aoe_error(&r), None);
    b.send(&config_frame(
        &b,
        None,
        1,
        1_000_002,
        ConfigCommand::Read,
        b"",
    ));
    let r = b.recv_tag(1_000_002, Duration::from_secs(3)).expect("read");
    assert_eq!(config_string(&r), b"calm");
    let state = lab.dir.join("state").join(format!("lun-{SHELF}.1.json"));
    assert_eq!(config_on_disk(&state), b"calm");
    assert!(lab.stop().success());
}
