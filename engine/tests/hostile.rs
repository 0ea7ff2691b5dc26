//! A careless or hostile LAN: state changes are answered only once durable and never make
//! another host's I/O wait; a flood of state changes and broadcasts (from one MAC and from
//! forged ones) is rate-limited while a well-behaved host's verified I/O goes on.

mod common;
use common::raw::{aoe_error, config_string, RawInitiator};
use common::*;
use ethershelf::wire::*;
use std::time::{Duration, Instant};

const SHELF: u16 = 5;

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
    b.send(&b.config_frame(None, SHELF, 1, 77, ConfigCommand::Set, b"owner-b"));
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
        b.send(&b.config_frame(
            src,
            SHELF,
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
    b.send(&b.config_frame(None, SHELF, 1, 1_000_001, ConfigCommand::ForceSet, b"calm"));
    let r = b
        .recv_tag(1_000_001, Duration::from_secs(3))
        .expect("served after the flood");
    assert_eq!(aoe_error(&r), None);
    b.send(&b.config_frame(None, SHELF, 1, 1_000_002, ConfigCommand::Read, b""));
    let r = b.recv_tag(1_000_002, Duration::from_secs(3)).expect("read");
    assert_eq!(config_string(&r), b"calm");
    let state = lab.dir.join("state").join(format!("lun-{SHELF}.1.json"));
    assert_eq!(config_on_disk(&state), b"calm");
    assert!(lab.stop().success());
}

/// One random AoE request from `src`: any command, valid or not, to LUN 0, LUN 1 or the
/// wildcards, sometimes truncated, sometimes a retransmission of an earlier tag.
fn random_request(ini: &RawInitiator, src: MacAddr, r: &mut impl FnMut() -> u64) -> Vec<u8> {
    let shelf = match r() % 8 {
        0 => 0xFFFF,
        1 => SHELF + 1,
        _ => SHELF,
    };
    let slot = match r() % 6 {
        0 => 0xFF,
        1 => 7,
        n => (n % 2) as u8,
    };
    let tag = (r() % 64) as u32; // a small tag space: plenty of retransmissions
    let command = match r() % 5 {
        0 => AoeCommand::Ata,
        1 => AoeCommand::QueryConfig,
        2 => AoeCommand::MacMask,
        3 => AoeCommand::Reserve,
        _ => AoeCommand::Other((r() % 256) as u8),
    };
    let mut f = ini.header(Some(src), MacAddr::BROADCAST, shelf, slot, command, tag);
    match command {
        AoeCommand::Ata => {
            let ops = [
                0x20u8,
                0x24,
                0x30,
                0x34,
                0xEC,
                0xE7,
                0xEA,
                0xB0,
                0xE5,
                (r() % 256) as u8,
            ];
            let op = ops[(r() % ops.len() as u64) as usize];
            let count = (r() % 20) as u8;
            let lba = r() % 5000;
            let data = if matches!(op, 0x30 | 0x34) {
                vec![(r() % 256) as u8; 512 * (r() % 3) as usize]
            } else {
                vec![]
            };
            let ext = r() % 2 == 0;
            f = ini.ata(Some(src), shelf, slot, tag, op, ext, lba, count, &data);
        }
        AoeCommand::QueryConfig => {
            let len = (r() % 1100) as usize;
            let ccmd = (r() % 8) as u8;
            f.extend_from_slice(&[0, 0, 0, 0, 0x10 | ccmd]);
            f.extend_from_slice(&(len as u16).to_be_bytes());
            f.extend((0..len.min(1000)).map(|i| b'a' + (i % 26) as u8));
        }
        AoeCommand::MacMask => {
            let n = (r() % 6) as u8;
            f.extend_from_slice(&[0, (r() % 3) as u8, 0, n]);
            for _ in 0..n {
                f.extend_from_slice(&[0, (r() % 4) as u8, 2, 0x77, 0, 0, 0, (r() % 8) as u8]);
            }
        }
        AoeCommand::Reserve => {
            let n = (r() % 4) as u8;
            f.extend_from_slice(&[(r() % 4) as u8, n]);
            for _ in 0..n {
                f.extend_from_slice(&[2, 0x77, 0, 0, 0, (r() % 8) as u8]);
            }
        }
        AoeCommand::Other(_) => f.extend((0..(r() % 40)).map(|_| r() as u8)),
    }
    if r() % 10 == 0 && f.len() > 16 {
        let cut = 14 + (r() as usize % (f.len() - 14));
        f.truncate(cut);
    }
    if r() % 20 == 0 && f.len() > 14 {
        f[14] |= 0x08; // a response: must be ignored
    }
    f.resize(f.len().max(60), 0);
    f
}

#[test]
fn random_hostile_sequences_from_several_hosts_never_disturb_a_good_host() {
    let mut lab = Lab::new(2, 9000);
    let d0 = lab.disk("d0.img", 4 << 20);
    let d1 = lab.disk("d1.img", 4 << 20);
    // LUN 0 belongs to the good host: the wire may not edit its mask or reservations. LUN 1
    // is open to everything the protocol allows.
    let cfg = lab.config(SHELF, &[(0, &d0), (1, &d1)], "");
    let yaml = std::fs::read_to_string(&cfg).unwrap().replacen(
        &format!("    file: {}\n", d0.display()),
        &format!(
            "    file: {}\n    access: {{ wire_admin: refuse }}\n",
            d0.display()
        ),
        1,
    );
    std::fs::write(&cfg, yaml).unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let good = lab.raw(0);
    let bad = lab.raw(1);
    let hostile: Vec<MacAddr> = (1..=6).map(|i| MacAddr([0x02, 0x77, 0, 0, 0, i])).collect();
    let mut seed = 0x5eed_1234_u64;
    let mut r = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let rss_before = lab.shelf_rss_kib();
    let start = Instant::now();
    let mut checks = 0u32;
    for round in 0..1500u32 {
        if start.elapsed() > Duration::from_secs(40) {
            break;
        }
        for _ in 0..100 {
            let src = hostile[(r() % hostile.len() as u64) as usize];
            bad.send(&random_request(&bad, src, &mut r));
        }
        // The good host writes a block and reads it back: every answer must be right.
        let lba = u64::from(round % 64) * 8;
        let data: Vec<u8> = (0..1024u32).map(|i| (i as u8) ^ (round as u8)).collect();
        let tag = 0x4000_0000 | (round << 4);
        let mut reply = None;
        for attempt in 0..3 {
            good.send(&good.ata(None, SHELF, 0, tag + attempt, 0x34, true, lba, 2, &data));
            reply = good.recv_tag(tag + attempt, Duration::from_secs(2));
            if reply.is_some() {
                break;
            }
        }
        let w =
            reply.unwrap_or_else(|| panic!("round {round}: the good host's write got no answer"));
        assert_eq!(common::raw::ata_regs(&w), (0x40, 0), "round {round}: write");
        good.send(&good.ata(None, SHELF, 0, tag + 8, 0x24, true, lba, 2, &[]));
        let rd = good
            .recv_tag(tag + 8, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("round {round}: the good host's read got no answer"));
        assert_eq!(common::raw::ata_regs(&rd), (0x40, 0), "round {round}: read");
        assert_eq!(
            &rd[36..36 + 1024],
            &data[..],
            "round {round}: read back what was written"
        );
        checks += 1;
    }
    assert!(checks >= 200, "only {checks} rounds in 40 s");
    // Bounded memory, valid state files, and a clean stop.
    let rss_after = lab.shelf_rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
    for slot in 0..2 {
        let path = lab
            .dir
            .join("state")
            .join(format!("lun-{SHELF}.{slot}.json"));
        if path.exists() {
            let state = ethershelf::lun::StateFile::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .unwrap();
            assert!(state.mask.len() <= 255 && state.reserve.len() <= 255);
            if slot == 0 {
                assert!(
                    state.mask.is_empty() && state.reserve.is_empty(),
                    "LUN 0 refuses wire edits"
                );
            }
        }
    }
    assert!(!lab.log_text().contains("panicked"), "{}", lab.log_text());
    assert!(lab.stop().success());
}

/// The sector count in a Query Config reply or announcement.
fn sectors_of(reply: &[u8]) -> u8 {
    ConfigPacket::new_checked(&reply[AOE_HEADER_LEN..])
        .unwrap()
        .sector_count()
}

/// The announcements (unsolicited Query Config replies, tag 0) among `frames`, as sector counts.
fn announcements(frames: &[Vec<u8>]) -> Vec<u8> {
    frames
        .iter()
        .filter(|f| {
            AoeFrame::new_checked(&f[..])
                .is_ok_and(|a| a.command() == AoeCommand::QueryConfig && a.tag() == 0)
        })
        .map(|f| sectors_of(f))
        .collect()
}

#[test]
fn mtu_and_link_changes_are_followed_at_run_time() {
    let mut lab = Lab::new(1, 9000);
    let d0 = lab.disk("d0.img", 4 << 20);
    let cfg = lab.config(SHELF, &[(0, &d0)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let host = lab.raw(0);
    let r = host.query_config(SHELF, 0, 1).expect("config");
    assert_eq!(sectors_of(&r), 17, "jumbo frames: 17 sectors");
    let r = host.ata_io(SHELF, 0, 2, 0x24, true, 0, 17, &[]);
    assert_eq!(common::raw::ata_regs(&r), (0x40, 0));
    // The MTU drops to 1500 on both ends.
    let (s, h) = (lab.shelf_if(0).to_string(), lab.host_if(0).to_string());
    run(&["ip", "-n", &lab.shelf_ns, "link", "set", &s, "mtu", "1500"]);
    run(&["ip", "-n", &lab.hosts[0], "link", "set", &h, "mtu", "1500"]);
    let heard = announcements(&host.recv_all(Duration::from_secs(2)));
    assert!(
        heard.contains(&2),
        "an announcement with the new count: {heard:?}"
    );
    let r = host.query_config(SHELF, 0, 3).expect("config");
    assert_eq!(sectors_of(&r), 2);
    // A request sized for the old MTU is refused, never answered with a frame too big.
    let r = host.ata_io(SHELF, 0, 4, 0x24, true, 0, 17, &[]);
    assert_eq!(common::raw::ata_regs(&r), (0x41, 0x04), "ABRT");
    let r = host.ata_io(SHELF, 0, 5, 0x24, true, 0, 2, &[]);
    assert_eq!(common::raw::ata_regs(&r), (0x40, 0));
    // The link goes down and comes back: the shelf announces itself again.
    run(&["ip", "-n", &lab.shelf_ns, "link", "set", &s, "down"]);
    std::thread::sleep(Duration::from_millis(800));
    run(&["ip", "-n", &lab.shelf_ns, "link", "set", &s, "up"]);
    let heard = announcements(&host.recv_all(Duration::from_secs(3)));
    assert!(!heard.is_empty(), "announced after the link came back");
    let r = host.ata_io(SHELF, 0, 6, 0x24, true, 0, 2, &[]);
    assert_eq!(common::raw::ata_regs(&r), (0x40, 0));
    assert!(lab.log_text().contains("port MTU changed"));
    assert!(lab.stop().success());
}

#[test]
fn a_hanging_member_stalls_only_its_own_lun() {
    use common::raid::{ctl, raid_lab, MIB};
    let mut lab = Lab::new(2, 1500);
    let (cfg, _) = raid_lab(&lab, 2, 0, 16 * MIB, ", clean: true");
    let file = lab.disk("file.img", 16 * MIB);
    let mut yaml = std::fs::read_to_string(&cfg).unwrap();
    yaml += &format!("  - slot: 1\n    file: {}\n", file.display());
    std::fs::write(&cfg, yaml).unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    // Role 1 of the array stops answering (a disk stuck in its 30 s timeouts).
    ctl(&lab, "inject 0.1 hang");
    let b = lab.raw(1);
    let data = vec![0x5au8; 1024];
    b.send(&b.ata(None, 1, 0, 42, 0x34, true, 64, 2, &data));
    assert!(
        b.recv_tag(42, Duration::from_millis(1500)).is_none(),
        "the array's write waits for its hung member"
    );
    // The file LUN next to it keeps serving host A, verified.
    let job = verified_clean(
        lab.verified_io(0, "1.1", 4, "randrw"),
        "LUN 1 beside a hung array",
    );
    assert!(job["verified_blocks"].as_u64().unwrap() > 100, "{job}");
    // The member comes back: the held write completes and is answered.
    ctl(&lab, "inject 0.1 off");
    let r = b
        .recv_tag(42, Duration::from_secs(5))
        .expect("answered once the member is back");
    assert_eq!(common::raw::ata_regs(&r), (0x40, 0));
    assert!(lab.stop().success());
}

#[test]
fn a_member_whose_writes_crawl_stalls_only_its_own_array() {
    use common::raid::{raid_lab, MIB};
    let mut lab = Lab::new(2, 1500);
    let (cfg, disks) = raid_lab(&lab, 2, 0, 24 * MIB, ", clean: true");
    // Role 0 lives on the fault filesystem; a file LUN sits beside the array.
    let backing = lab.dir.join("fuse-backing");
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::rename(&disks[0], backing.join("d0.img")).unwrap();
    let fuse = FaultFs::mount(&backing, &lab.dir.join("fuse"));
    let on_fuse = fuse.mount.join("d0.img");
    let file = lab.disk("file.img", 16 * MIB);
    let mut yaml = std::fs::read_to_string(&cfg).unwrap().replace(
        &disks[0].display().to_string(),
        &on_fuse.display().to_string(),
    );
    yaml += &format!("  - slot: 1\n    file: {}\n", file.display());
    std::fs::write(&cfg, yaml).unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    // From now on every write and fsync on role 0 takes 4 s (a disk in its timeouts).
    std::fs::write(backing.join("d0.img.slow"), b"4000").unwrap();
    let b = lab.raw(1);
    let data = vec![0xa5u8; 1024];
    // A write into a fresh region: its bitmap mark must reach both members first.
    let lba = 12 * MIB / 512;
    b.send(&b.ata(None, 1, 0, 77, 0x34, true, lba, 2, &data));
    assert!(
        b.recv_tag(77, Duration::from_millis(1500)).is_none(),
        "the array's write waits for its mark"
    );
    // Meanwhile the file LUN serves host A at full speed: the worker never waits for the
    // crawling member's bitmap write.
    let job = verified_clean(
        lab.verified_io(0, "1.1", 4, "randrw"),
        "LUN 1 beside a crawling member",
    );
    assert!(job["verified_blocks"].as_u64().unwrap() > 500, "{job}");
    std::fs::remove_file(backing.join("d0.img.slow")).unwrap();
    let r = b
        .recv_tag(77, Duration::from_secs(20))
        .expect("the write is answered once its mark and data are down");
    assert_eq!(common::raw::ata_regs(&r), (0x40, 0));
    b.send(&b.ata(None, 1, 0, 78, 0x24, true, lba, 2, &[]));
    let r = b.recv_tag(78, Duration::from_secs(5)).expect("read back");
    assert_eq!(&r[36..36 + 1024], &data[..]);
    assert!(lab.stop().success());
    drop(fuse);
}
