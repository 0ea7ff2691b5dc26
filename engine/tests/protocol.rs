//! Protocol behaviour seen from a raw initiator in a lab namespace: I/O, LBA28/48, MTU-driven
//! sector counts, mask lists, reservations, hostile input, durability across SIGKILL.

mod common;
use common::raw::{aoe_error, ata_regs};
use common::*;
use ethershelf::wire::*;
use std::os::unix::fs::FileExt;
use std::time::Duration;

const READ: u8 = 0x20;
const READ_EXT: u8 = 0x24;
const WRITE: u8 = 0x30;
const WRITE_EXT: u8 = 0x34;

fn start_one(lab: &mut Lab, shelf: u16, slot: u8, size: u64, extra: &str) -> std::path::PathBuf {
    let disk = lab.disk("lun.img", size);
    let cfg = lab.config(shelf, &[(slot, &disk)], extra);
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    disk
}

#[test]
fn reads_and_writes_reach_the_file_lba28_and_lba48() {
    let mut lab = Lab::new(1, 9000);
    let disk = start_one(&mut lab, 1, 0, 32 << 20, "");
    let ini = lab.raw(0);
    let cfg = ini.query_config(1, 0, 0x100).expect("config reply");
    assert_eq!(cfg[28], 17, "sector count at MTU 9000");
    assert_eq!(u16::from_be_bytes([cfg[24], cfg[25]]), 64, "buffer count");
    let data = pattern(1, 17 * 512);
    let r = ini.ata_io(1, 0, 1, WRITE_EXT, true, 1000, 17, &data);
    assert_eq!(ata_regs(&r), (0x40, 0));
    assert!(r.len() >= 60);
    let file = std::fs::File::open(&disk).unwrap();
    let mut back = vec![0u8; data.len()];
    file.read_exact_at(&mut back, 1000 * 512).unwrap();
    assert_eq!(back, data, "write landed at LBA 1000");
    let r = ini.ata_io(1, 0, 2, READ_EXT, true, 1000, 17, &[]);
    assert_eq!(ata_regs(&r), (0x40, 0));
    assert_eq!(r.len(), 36 + 17 * 512);
    assert_eq!(&r[36..], &data[..]);
    // LBA28 with the device nibble 0xE0 in lba3 (as Linux sends it).
    let small = pattern(2, 1024);
    let r = ini.ata_io(1, 0, 3, WRITE, false, 0x0000_F203, 2, &small);
    assert_eq!(ata_regs(&r), (0x40, 0));
    let r = ini.ata_io(1, 0, 4, READ, false, 0x0000_F203, 2, &[]);
    assert_eq!(&r[36..36 + 1024], &small[..]);
    // A READ padded with trailing payload (Linux's path probe) is accepted.
    let mut probe = ini.ata(None, 1, 0, 5, READ_EXT, true, 0, 2, &[]);
    probe.resize(36 + 17 * 512, 0);
    ini.send(&probe);
    let r = ini
        .recv_tag(5, Duration::from_secs(3))
        .expect("probe reply");
    assert_eq!(ata_regs(&r), (0x40, 0));
    lab.stop();
}

#[test]
fn sector_count_follows_mtu_and_max_sectors() {
    let mut lab = Lab::new(2, 1500);
    let disk = lab.disk("lun.img", 8 << 20);
    // Port 1 is raised to 9000 with a cap of 16 sectors.
    common::run(&[
        "ip",
        "-n",
        &lab.shelf_ns,
        "link",
        "set",
        lab.shelf_if(1),
        "mtu",
        "9000",
    ]);
    common::run(&[
        "ip",
        "-n",
        &lab.hosts[1],
        "link",
        "set",
        lab.host_if(1),
        "mtu",
        "9000",
    ]);
    let y = format!(
        "shelf: 3\nstate_dir: {}\nadmin: {{ socket: {} }}\nports:\n  - {{ interface: {} }}\n  - {{ interface: {}, max_sectors: 16 }}\nluns:\n  - {{ slot: 1, file: {} }}\n",
        lab.dir.join("state").display(),
        lab.dir.join("admin.sock").display(),
        lab.shelf_if(0),
        lab.shelf_if(1),
        disk.display()
    );
    let cfg = lab.dir.join("mtu.yaml");
    std::fs::write(&cfg, y).unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let c0 = lab.raw(0).query_config(3, 1, 9).unwrap();
    let c1 = lab.raw(1).query_config(3, 1, 9).unwrap();
    assert_eq!((c0[28], c1[28]), (2, 16));
    // Replies leave by the port the request came in on (each port has its own MAC).
    assert_ne!(&c0[6..12], &c1[6..12]);
    // Count above the port's maximum: ATA ABRT, never a crash.
    let r = lab.raw(0).ata_io(3, 1, 10, READ_EXT, true, 0, 3, &[]);
    assert_eq!(ata_regs(&r), (0x41, 0x04));
    assert_eq!(r.len(), 60);
    lab.stop();
}

#[test]
fn errors_are_ata_status_errors_and_aoe_errors_where_due() {
    let mut lab = Lab::new(1, 1500);
    start_one(&mut lab, 1, 0, 1 << 20, "    read_only: false\n");
    let ini = lab.raw(0);
    let sectors = (1u64 << 20) / 512;
    let r = ini.ata_io(1, 0, 1, READ_EXT, true, sectors - 1, 2, &[]);
    assert_eq!(ata_regs(&r), (0x41, 0x10), "past the end: IDNF");
    let r = ini.ata_io(1, 0, 2, 0xC8, false, 0, 1, &[]);
    assert_eq!(ata_regs(&r), (0x41, 0x04), "unsupported opcode: ABRT");
    let r = ini.ata_io(1, 0, 3, WRITE_EXT, true, 0, 2, &[0u8; 700]);
    assert_eq!(ata_regs(&r), (0x41, 0x04), "short write payload: ABRT");
    let r = ini.ata_io(1, 0, 4, 0xE5, false, 0, 0, &[]);
    assert_eq!((r[27], r[26]), (0x40, 0xFF), "CHECK POWER MODE: active");
    let r = ini.ata_io(1, 0, 5, 0xEA, true, 0, 0, &[]);
    assert_eq!(ata_regs(&r), (0x40, 0), "FLUSH CACHE EXT succeeds");
    let r = ini.ata_io(1, 0, 6, 0xE7, false, 0, 0, &[]);
    assert_eq!(ata_regs(&r), (0x40, 0), "FLUSH CACHE succeeds");
    // Version 2: AoE error 5.
    let mut v2 = ini.ata(None, 1, 0, 7, 0xEC, false, 0, 1, &[]);
    v2[14] = 0x20;
    ini.send(&v2);
    let r = ini
        .recv_tag(7, Duration::from_secs(2))
        .expect("version error reply");
    assert_eq!(aoe_error(&r), Some(5));
    // Unknown command 9 (and vendor 0xF0): AoE error 1.
    for (tag, cmd) in [(8u32, 9u8), (9, 0xF0)] {
        let mut f = ini.header(None, MacAddr::BROADCAST, 1, 0, AoeCommand::Other(cmd), tag);
        f.resize(60, 0);
        ini.send(&f);
        let r = ini
            .recv_tag(tag, Duration::from_secs(2))
            .expect("bad command reply");
        assert_eq!(aoe_error(&r), Some(1));
        assert_eq!(r.len(), 60, "every frame is at least 60 bytes");
    }
    // A config set with a string longer than 1024 bytes: AoE error 2.
    let mut f = ini.header(None, MacAddr::BROADCAST, 1, 0, AoeCommand::QueryConfig, 12);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0x13, 0x04, 0x01]);
    f.resize(AOE_HEADER_LEN + 8 + 1025, b'x');
    ini.send(&f);
    let r = ini
        .recv_tag(12, Duration::from_secs(2))
        .expect("error reply to an over-long set");
    assert_eq!(aoe_error(&r), Some(2));
    // A frame addressed to another host's MAC (seen on a promiscuous port) gets silence.
    let mut foreign = ini.ata(None, 1, 0, 13, 0xEC, false, 0, 1, &[]);
    foreign[0..6].copy_from_slice(&[0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    ini.send(&foreign);
    assert!(
        ini.recv_tag(13, Duration::from_millis(300)).is_none(),
        "frames for other MACs are not served"
    );
    // Another shelf, another slot, and R-flagged frames get silence.
    let other = ini.ata(None, 2, 0, 10, 0xEC, false, 0, 1, &[]);
    ini.send(&other);
    assert!(ini.recv_tag(10, Duration::from_millis(300)).is_none());
    let mut resp = ini.ata(None, 1, 0, 11, 0xEC, false, 0, 1, &[]);
    resp[14] |= 0x08;
    ini.send(&resp);
    assert!(ini.recv_tag(11, Duration::from_millis(300)).is_none());
    lab.stop();
}

#[test]
fn read_only_lun_refuses_writes() {
    let mut lab = Lab::new(1, 1500);
    start_one(&mut lab, 1, 0, 1 << 20, "    read_only: true\n");
    let ini = lab.raw(0);
    let r = ini.ata_io(1, 0, 1, WRITE_EXT, true, 0, 2, &[7u8; 1024]);
    assert_eq!(ata_regs(&r), (0x41, 0x04));
    let r = ini.ata_io(1, 0, 2, READ_EXT, true, 0, 2, &[]);
    assert_eq!(ata_regs(&r), (0x40, 0));
    lab.stop();
}

fn mask_edit(
    ini: &common::raw::RawInitiator,
    src: MacAddr,
    tag: u32,
    dirs: &[(DirectiveCommand, MacAddr)],
) -> Option<Vec<u8>> {
    ini.mask_cmd(Some(src), 1, 0, tag, 1, dirs)
}

fn reserve(
    ini: &common::raw::RawInitiator,
    src: MacAddr,
    tag: u32,
    rcmd: u8,
    macs: &[MacAddr],
) -> Option<Vec<u8>> {
    ini.reserve_cmd(Some(src), 1, 0, tag, rcmd, macs)
}

#[test]
fn mask_list_and_reservations_are_enforced_and_persist() {
    let mut lab = Lab::new(1, 1500);
    let disk = lab.disk("lun.img", 1 << 20);
    let cfg = lab.config(1, &[(0, &disk)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let ini = lab.raw(0);
    let a = ini.mac;
    let b = MacAddr([0x02, 0, 0, 0, 0, 0xbb]);
    let ident = |src: MacAddr, tag: u32| {
        ini.send(&ini.ata(Some(src), 1, 0, tag, 0xEC, false, 0, 1, &[]));
        ini.recv_tag(tag, Duration::from_millis(800))
    };
    assert!(ident(b, 1).is_some(), "an empty mask admits everyone");
    // A fills the list with itself and 255 entries' worth of others: the list caps at 255.
    let r = mask_edit(&ini, a, 2, &[(DirectiveCommand::Add, a)]).expect("mask reply");
    assert_eq!((r[26], r[27]), (0, 1));
    assert_eq!(&r[30..36], &a.0);
    assert!(ident(b, 3).is_none(), "B is not on the list: silence");
    assert!(
        mask_edit(&ini, b, 4, &[(DirectiveCommand::Delete, a)]).is_none(),
        "B cannot edit the list"
    );
    assert!(ident(a, 5).is_some());
    let many: Vec<_> = (0..255u8)
        .map(|i| (DirectiveCommand::Add, MacAddr([2, 0, 0, 1, 0, i])))
        .collect();
    let r = mask_edit(&ini, a, 6, &many[..180]).expect("bulk add");
    assert_eq!(r[26], 0);
    let r = mask_edit(&ini, a, 7, &many[180..]).expect("overfull add");
    assert_eq!(r[26], 3, "MError 3: list full");
    // Reservations: A reserves; B (allowed by the mask again) gets error 6 for I/O but not
    // for IDENTIFY.
    let r = mask_edit(&ini, a, 8, &[(DirectiveCommand::Add, b)]);
    assert!(r.is_some());
    let clear: Vec<_> = many
        .iter()
        .map(|(_, m)| (DirectiveCommand::Delete, *m))
        .collect();
    assert!(mask_edit(&ini, a, 9, &clear[..180]).is_some());
    assert!(mask_edit(&ini, a, 10, &clear[180..]).is_some());
    let r = reserve(&ini, a, 11, 1, &[a]).expect("reserve reply");
    assert_eq!(aoe_error(&r), None);
    assert_eq!((r[24], r[25]), (1, 1));
    ini.send(&ini.ata(Some(b), 1, 0, 12, READ_EXT, true, 0, 1, &[]));
    let r = ini
        .recv_tag(12, Duration::from_millis(800))
        .expect("reserved reply");
    assert_eq!(aoe_error(&r), Some(6));
    assert!(
        ident(b, 13).is_some_and(|r| aoe_error(&r).is_none()),
        "IDENTIFY is allowed while reserved"
    );
    let r = reserve(&ini, b, 14, 1, &[b]).expect("reserve by B");
    assert_eq!(
        aoe_error(&r),
        Some(6),
        "B cannot take A's reservation with set"
    );
    ini.send(&ini.ata(Some(a), 1, 0, 15, READ_EXT, true, 0, 1, &[]));
    assert_eq!(
        ata_regs(&ini.recv_tag(15, Duration::from_secs(2)).unwrap()),
        (0x40, 0)
    );
    // Everything persists across a restart.
    lab.stop();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let ini = lab.raw(0);
    let r = reserve(&ini, a, 16, 0, &[]).expect("reserve read");
    assert_eq!(r[25], 1);
    let r = mask_edit(&ini, a, 17, &[]).expect("mask list");
    assert_eq!(r[27], 2);
    ini.send(&ini.ata(Some(b), 1, 0, 18, READ_EXT, true, 0, 1, &[]));
    assert_eq!(
        aoe_error(&ini.recv_tag(18, Duration::from_millis(800)).unwrap()),
        Some(6)
    );
    // Force set by B releases (empty list).
    let r = reserve(&ini, b, 19, 2, &[]).expect("force release");
    assert_eq!(r[25], 0);
    lab.stop();
}

#[test]
fn hostile_frames_never_take_the_shelf_down() {
    let mut lab = Lab::new(1, 9000);
    start_one(&mut lab, 4, 2, 4 << 20, "");
    let ini = lab.raw(0);
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let dst = MacAddr::BROADCAST;
    let started = std::time::Instant::now();
    for i in 0..100_000u32 {
        let r = next();
        let len = 14 + (r % 1600) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&ini.mac.0);
        f[12..14].copy_from_slice(&ETHERTYPE_AOE.to_be_bytes());
        if i % 2 == 0 && len >= 24 {
            // Half of them look plausible: version 1 request to our shelf/slot.
            f[14] = 0x10 | (f[14] & 0x03);
            f[16..18].copy_from_slice(&4u16.to_be_bytes());
            f[18] = 2;
            f[19] %= 5;
            f[20] = 0x7f;
        }
        ini.send(&f);
        if i % 512 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "flood took too long"
        );
    }
    // Still alive and correct.
    std::thread::sleep(Duration::from_millis(300));
    let r = ini.ata_io(4, 2, 0x0100_0001, 0xEC, false, 0, 1, &[]);
    assert_eq!(ata_regs(&r), (0x40, 0));
    assert_eq!(r.len(), 36 + 512);
    let status = lab.stop();
    assert!(status.success(), "clean exit after the flood: {status}");
    let stopped = lab.log_lines("stopped");
    let line = stopped.last().expect("stats line");
    let dropped: u64 = line
        .split("dropped=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("dropped count");
    assert!(dropped > 1000, "the shelf counts what it dropped: {line}");
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut lab = Lab::new(1, 9000);
    let disk = start_one(&mut lab, 1, 0, 16 << 20, "");
    let ini = lab.raw(0);
    let mut written = Vec::new();
    for i in 0..64u32 {
        let data = pattern(100 + i as u64, 17 * 512);
        let lba = i as u64 * 17;
        let r = ini.ata_io(1, 0, 0x200 + i, WRITE_EXT, true, lba, 17, &data);
        assert_eq!(ata_regs(&r), (0x40, 0));
        written.push((lba, data));
    }
    // Kill right after the last acknowledgement: no chance to flush anything.
    lab.stop_with(libc::SIGKILL);
    let file = std::fs::File::open(&disk).unwrap();
    for (lba, data) in written {
        let mut back = vec![0u8; data.len()];
        file.read_exact_at(&mut back, lba * 512).unwrap();
        assert!(
            back == data,
            "acknowledged write at LBA {lba} is missing after SIGKILL"
        );
    }
}

#[test]
fn wildcard_discovery_answers_for_every_lun() {
    let mut lab = Lab::new(1, 1500);
    let d0 = lab.disk("a.img", 1 << 20);
    let d1 = lab.disk("b.img", 2 << 20);
    let cfg = lab.config(9, &[(0, &d0), (1, &d1)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let ini = lab.raw(0);
    let mut f = ini.header(
        None,
        MacAddr::BROADCAST,
        0xFFFF,
        0xFF,
        AoeCommand::QueryConfig,
        0x42,
    );
    f.resize(60, 0);
    ini.send(&f);
    let mut seen = Vec::new();
    while let Some(r) = ini.recv_tag(0x42, Duration::from_millis(500)) {
        let h = AoeHeaderRepr::parse(&AoeFrame::new_checked(&r[..]).unwrap()).unwrap();
        seen.push((h.shelf, h.slot));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![(9, 0), (9, 1)],
        "each LUN answers with its own address"
    );
    // A set through the wildcard would change every LUN: refused when several are exported.
    let repr = ConfigRepr {
        buffer_count: 0,
        firmware: 0,
        sector_count: 0,
        aoe_version: 1,
        command: ConfigCommand::ForceSet,
        string: b"everyone",
    };
    let mut f = ini.header(
        None,
        MacAddr::BROADCAST,
        0xFFFF,
        0xFF,
        AoeCommand::QueryConfig,
        0x44,
    );
    f.resize(AOE_HEADER_LEN + repr.buffer_len(), 0);
    repr.emit(&mut f[AOE_HEADER_LEN..]).unwrap();
    f.resize(f.len().max(60), 0);
    ini.send(&f);
    assert!(
        ini.recv_tag(0x44, Duration::from_millis(300)).is_none(),
        "wildcard force-set must be refused"
    );
    let r = ini.query_config(9, 1, 0x45).unwrap();
    assert_eq!(
        u16::from_be_bytes([r[30], r[31]]),
        0,
        "the config string is untouched"
    );
    // ATA to the wildcard slot is refused when several LUNs could be meant.
    let w = ini.ata(None, 9, 0xFF, 0x43, 0xEC, false, 0, 1, &[]);
    ini.send(&w);
    assert!(ini.recv_tag(0x43, Duration::from_millis(300)).is_none());
    lab.stop();
}
