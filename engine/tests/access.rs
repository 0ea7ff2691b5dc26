//! Access control seen from the LAN: per-operation rights with the protocol's answers (two
//! host namespaces, two MACs, plus a spoofed third), `/etc/ethers`-style names, wire-side
//! administration refused, a rogue reservation cleared from the console, live `acl` changes
//! under verified load, the audit trail and the refusal counters.

mod common;
use common::raid::ctl;
use common::raw::{aoe_error, ata_regs, config_string, RawInitiator};
use common::*;
use ethershelf::wire::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const READ_EXT: u8 = 0x24;
const WRITE_EXT: u8 = 0x34;
const IDENTIFY: u8 = 0xEC;
const SHELF: u16 = 3;

/// A config for `lab` with an `access:` section and LUNs given as (slot, file, LUN yaml).
fn acl_config(lab: &Lab, access: &str, luns: &[(u8, &Path, &str)]) -> PathBuf {
    let mut y = format!(
        "shelf: {SHELF}\nstate_dir: {}\nadmin: {{ socket: {} }}\nports:\n",
        lab.dir.join("state").display(),
        lab.dir.join("admin.sock").display()
    );
    for (s, _) in &lab.links {
        y += &format!("  - {{ interface: {s}, mode: packet }}\n");
    }
    y += access;
    y += "luns:\n";
    for (slot, file, extra) in luns {
        y += &format!("  - slot: {slot}\n    file: {}\n{extra}", file.display());
    }
    let p = lab.dir.join("shelf.yaml");
    std::fs::write(&p, y).unwrap();
    p
}

fn config_cmd(
    ini: &RawInitiator,
    src: Option<MacAddr>,
    slot: u8,
    tag: u32,
    ccmd: ConfigCommand,
    s: &[u8],
) -> Option<Vec<u8>> {
    ini.send(&ini.config_frame(src, SHELF, slot, tag, ccmd, s));
    ini.recv_tag(tag, Duration::from_millis(800))
}

fn mask_cmd(
    ini: &RawInitiator,
    slot: u8,
    tag: u32,
    mcmd: u8,
    dirs: &[(DirectiveCommand, MacAddr)],
) -> Option<Vec<u8>> {
    ini.mask_cmd(None, SHELF, slot, tag, mcmd, dirs)
}

fn reserve_cmd(
    ini: &RawInitiator,
    slot: u8,
    tag: u32,
    rcmd: u8,
    macs: &[MacAddr],
) -> Option<Vec<u8>> {
    ini.reserve_cmd(None, SHELF, slot, tag, rcmd, macs)
}

fn sector(seed: u8) -> Vec<u8> {
    (0..512u32).map(|i| (i as u8) ^ seed).collect()
}

/// ATA request from `src` (None: the socket's own MAC); the reply, if any within 800 ms.
#[allow(clippy::too_many_arguments)]
fn ata(
    ini: &RawInitiator,
    src: Option<MacAddr>,
    slot: u8,
    tag: u32,
    op: u8,
    lba: u64,
    count: u8,
    data: &[u8],
) -> Option<Vec<u8>> {
    ini.send(&ini.ata(src, SHELF, slot, tag, op, true, lba, count, data));
    ini.recv_tag(tag, Duration::from_millis(800))
}

/// The slots of the Query Config answers among `frames` that are addressed to `to` (the
/// lab's host interfaces are promiscuous: they also see unicasts meant for other hosts).
fn config_slots(frames: &[Vec<u8>], to: MacAddr) -> Vec<u8> {
    let mut slots: Vec<u8> = frames
        .iter()
        .filter_map(|f| AoeFrame::new_checked(&f[..]).ok())
        .filter(|a| a.dst() == to || a.dst() == MacAddr::BROADCAST)
        .filter(|a| a.command() == AoeCommand::QueryConfig)
        .map(|a| a.slot())
        .collect();
    slots.sort_unstable();
    slots.dedup();
    slots
}

/// The value of the refusal counter of LUN `SHELF.slot` for `right` and `reason`.
fn refused(metrics: &str, slot: u8, right: &str, reason: &str) -> u64 {
    let lun = format!("lun=\"{SHELF}.{slot}\"");
    let right = format!("right=\"{right}\"");
    let reason = format!("reason=\"{reason}\"");
    metrics
        .lines()
        .find(|l| {
            l.starts_with("ethershelf_lun_refused_total{")
                && l.contains(&lun)
                && l.contains(&right)
                && l.contains(&reason)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no refusal counter {lun} {right} {reason} in:\n{metrics}"))
}

#[test]
fn each_right_is_enforced_with_the_protocols_answer() {
    let mut lab = Lab::new(2, 1500);
    let a = lab.raw(0);
    let b = lab.raw(1);
    let c = MacAddr([0x02, 0, 0, 0, 0, 0xcc]);
    // Host A is known by name only, through the ethers file.
    let ethers = lab.dir.join("ethers");
    std::fs::write(&ethers, format!("# lab hosts\n{} hv-a\n", a.mac)).unwrap();
    let access = format!(
        "access:\n  ethers: {}\n  lists:\n    writers: [hv-a]\n    readers: [writers, \"{}\"]\n",
        ethers.display(),
        b.mac
    );
    let d0 = lab.disk("d0.img", 1 << 20);
    let d1 = lab.disk("d1.img", 1 << 20);
    let lun0 = "    access:\n      discover: [readers]\n      read: [readers]\n      write: [writers]\n      config_read: [writers]\n      config_set: [writers]\n      mask: [writers]\n      reserve: [writers]\n";
    let lun1 = "    access: { discover: [writers] }\n";
    let cfg = acl_config(&lab, &access, &[(0, &d0, lun0), (1, &d1, lun1)]);
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);

    // Announcements: each host hears only about the LUNs it may discover.
    assert_eq!(
        config_slots(&a.recv_all(Duration::from_millis(500)), a.mac),
        vec![0, 1]
    );
    assert_eq!(
        config_slots(&b.recv_all(Duration::from_millis(500)), b.mac),
        vec![0]
    );

    // config_set / config_read.
    let r = config_cmd(&a, None, 0, 1, ConfigCommand::Set, b"owner-a").expect("A sets");
    assert_eq!(aoe_error(&r), None);
    let r = config_cmd(&b, None, 0, 2, ConfigCommand::Set, b"owner-b").expect("B is answered");
    assert_eq!(aoe_error(&r), Some(6), "config set refused: AoE error 6");
    let r = config_cmd(&b, None, 0, 3, ConfigCommand::Read, b"").expect("B may discover");
    assert_eq!(config_string(&r), b"", "B may not read the string");
    let r = config_cmd(&a, None, 0, 4, ConfigCommand::Read, b"").expect("A reads");
    assert_eq!(config_string(&r), b"owner-a");

    // write / read.
    let r = ata(&a, None, 0, 10, WRITE_EXT, 8, 1, &sector(0xa5)).expect("A writes");
    assert_eq!(ata_regs(&r), (0x40, 0));
    let r = ata(&b, None, 0, 11, WRITE_EXT, 8, 1, &sector(0x5a)).expect("B is answered");
    assert_eq!(ata_regs(&r), (0x41, 0x04), "a refused write: ATA ABRT");
    let r = ata(&b, None, 0, 12, READ_EXT, 8, 1, &[]).expect("B reads");
    assert_eq!(ata_regs(&r), (0x40, 0));
    assert_eq!(
        &r[36..36 + 512],
        &sector(0xa5)[..],
        "B's write changed nothing"
    );

    // discover: a host on no list gets silence, whatever it sends.
    assert!(config_cmd(&b, Some(c), 0, 20, ConfigCommand::Read, b"").is_none());
    assert!(ata(&b, Some(c), 0, 21, IDENTIFY, 0, 1, &[]).is_none());
    assert!(ata(&b, Some(c), 0, 22, READ_EXT, 8, 1, &[]).is_none());
    assert!(
        ata(&b, None, 1, 23, IDENTIFY, 0, 1, &[]).is_none(),
        "B may not see LUN 1"
    );
    assert!(ata(&a, None, 1, 24, IDENTIFY, 0, 1, &[]).is_some());
    // Wildcard discovery answers only for visible LUNs.
    let mut f = b.header(
        None,
        MacAddr::BROADCAST,
        0xffff,
        0xff,
        AoeCommand::QueryConfig,
        25,
    );
    f.resize(60, 0);
    b.send(&f);
    assert_eq!(
        config_slots(&b.recv_all(Duration::from_millis(500)), b.mac),
        vec![0]
    );
    let mut f = a.header(
        None,
        MacAddr::BROADCAST,
        0xffff,
        0xff,
        AoeCommand::QueryConfig,
        26,
    );
    f.resize(60, 0);
    a.send(&f);
    assert_eq!(
        config_slots(&a.recv_all(Duration::from_millis(500)), a.mac),
        vec![0, 1]
    );

    // mask / reserve: reads are free, edits need the right.
    let r = mask_cmd(&b, 0, 30, 1, &[(DirectiveCommand::Add, b.mac)]).expect("answered");
    assert_eq!(aoe_error(&r), Some(6), "mask edit refused");
    let r = mask_cmd(&b, 0, 31, 0, &[]).expect("mask read");
    assert_eq!((aoe_error(&r), r[27]), (None, 0));
    let r = reserve_cmd(&b, 0, 32, 1, &[b.mac]).expect("answered");
    assert_eq!(aoe_error(&r), Some(6), "reserve refused");
    let r = reserve_cmd(&b, 0, 33, 0, &[]).expect("reserve read");
    assert_eq!((aoe_error(&r), r[25]), (None, 0));
    let r = reserve_cmd(&a, 0, 34, 1, &[a.mac]).expect("A reserves");
    assert_eq!((aoe_error(&r), r[25]), (None, 1));
    let r = ata(&b, None, 0, 35, READ_EXT, 8, 1, &[]).expect("answered");
    assert_eq!(aoe_error(&r), Some(6), "reserved against B");
    let r = reserve_cmd(&a, 0, 36, 1, &[]).expect("A releases");
    assert_eq!((aoe_error(&r), r[25]), (None, 0));
    let r = mask_cmd(&a, 0, 37, 1, &[(DirectiveCommand::Add, a.mac)]).expect("A edits");
    assert_eq!((aoe_error(&r), r[26], r[27]), (None, 0, 1));
    let r = ata(&b, None, 0, 38, READ_EXT, 8, 1, &[]);
    assert!(r.is_none(), "B is not on the AoE mask list now: silence");

    // Counted per LUN, right and reason.
    let m = lab.metrics();
    assert!(refused(&m, 0, "write", "acl") >= 1);
    assert!(refused(&m, 0, "config_set", "acl") >= 1);
    assert!(refused(&m, 0, "mask", "acl") >= 1);
    assert!(refused(&m, 0, "reserve", "acl") >= 1);
    assert!(refused(&m, 0, "discover", "acl") >= 3);
    assert!(refused(&m, 0, "discover", "mask") >= 1);
    assert!(refused(&m, 0, "read", "reserved") >= 1);
    assert!(refused(&m, 1, "discover", "acl") >= 2);
    assert_eq!(refused(&m, 0, "read", "acl"), 0);
    // The wire changes are in the audit trail with their source.
    let audit = ctl(&lab, "audit 50");
    for needle in [
        "config string set to \"owner-a\"",
        "reservation set to",
        "mask list set to",
    ] {
        assert!(audit.contains(needle), "{needle}: {audit}");
    }
    assert!(audit.contains(&format!("host {}", a.mac)), "{audit}");
    let mask = ctl(&lab, "mask 0");
    let hex: String = a.mac.0.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        mask.contains(&format!("{hex}  added by host {}", a.mac)),
        "{mask}"
    );
    lab.stop();
}

#[test]
fn wire_edits_refused_when_configured_and_a_rogue_reservation_is_cleared_at_the_console() {
    let mut lab = Lab::new(2, 1500);
    let a = lab.raw(0);
    let rogue = lab.raw(1);
    let d0 = lab.disk("d0.img", 16 << 20);
    let cfg = acl_config(&lab, "access: { wire_admin: refuse }\n", &[(0, &d0, "")]);
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let r = mask_cmd(&rogue, 0, 1, 1, &[(DirectiveCommand::Add, rogue.mac)]).expect("answered");
    assert_eq!(aoe_error(&r), Some(6), "wire mask edits refused");
    let r = reserve_cmd(&rogue, 0, 2, 2, &[rogue.mac]).expect("answered");
    assert_eq!(aoe_error(&r), Some(6), "wire reservations refused");
    let r = reserve_cmd(&rogue, 0, 3, 0, &[]).expect("reading is allowed");
    assert_eq!((aoe_error(&r), r[25]), (None, 0));
    let acl = ctl(&lab, "acl");
    assert!(acl.contains("wire_admin   refuse"), "{acl}");

    // The admin opens wire edits on this LUN; a rogue host grabs it.
    ctl(&lab, "acl wire 0 accept");
    let r = ata(&a, None, 0, 10, WRITE_EXT, 100, 1, &sector(7)).expect("A writes");
    assert_eq!(ata_regs(&r), (0x40, 0));
    let r = reserve_cmd(&rogue, 0, 11, 2, &[rogue.mac]).expect("force set");
    assert_eq!((aoe_error(&r), r[25]), (None, 1));
    let r = mask_cmd(&rogue, 0, 12, 1, &[(DirectiveCommand::Add, rogue.mac)]).expect("edit");
    assert_eq!(aoe_error(&r), None);
    assert!(
        ata(&a, None, 0, 13, READ_EXT, 100, 1, &[]).is_none(),
        "A is locked out"
    );

    // The console shows who did it, and takes the LUN back.
    let shown = ctl(&lab, "reserve 0");
    assert!(
        shown.contains(&format!("reserved by {}", rogue.mac)),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("set by host {}", rogue.mac)),
        "{shown}"
    );
    let cleared = ctl(&lab, "reserve 0 -c");
    assert!(cleared.contains("cleared"), "{cleared}");
    ctl(&lab, &format!("mask 0 -{}", rogue.mac));
    ctl(&lab, "acl wire 0 refuse");
    assert!(ctl(&lab, "reserve 0").contains("not reserved"));
    let r = ata(&a, None, 0, 14, READ_EXT, 100, 1, &[]).expect("A is back");
    assert_eq!(ata_regs(&r), (0x40, 0));
    assert_eq!(
        &r[36..548],
        &sector(7)[..],
        "A's data survived the lock-out"
    );
    let r = reserve_cmd(&rogue, 0, 15, 2, &[rogue.mac]).expect("answered");
    assert_eq!(aoe_error(&r), Some(6), "refused again");
    verified_clean(lab.verified_io(0, "3.0", 3, "randrw"), "A after the clear");

    // Every change, from the wire and the console, is in the audit trail.
    let audit = ctl(&lab, "audit");
    let console = audit.lines().filter(|l| l.contains("console root")).count();
    assert!(console >= 4, "acl wire x2, reserve -c, mask: {audit}");
    assert!(audit.contains(&format!("host {}", rogue.mac)));
    assert!(audit.contains("reservation forced to"), "{audit}");
    assert!(audit.contains("reservation cleared (was"), "{audit}");
    let file = std::fs::read_to_string(lab.dir.join("state").join("audit.log")).unwrap();
    assert!(file.lines().count() >= 6, "{file}");
    assert!(
        lab.log_text().contains("reservation cleared"),
        "journal copy"
    );

    // The console's access book outlives a restart.
    lab.stop();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let acl = ctl(&lab, "acl --json");
    let doc: serde_json::Value = serde_json::from_str(acl.trim()).unwrap();
    assert_eq!(doc["luns"][0]["wire_admin"], "refuse", "{doc}");
    let exported = ctl(&lab, "export-config");
    assert!(exported.contains("wire_admin: refuse"), "{exported}");
    lab.stop();
}

#[test]
fn live_acl_changes_under_verified_load_lose_nothing() {
    let mut lab = Lab::new(2, 1500);
    let a = lab.raw(0);
    let b = lab.raw(1);
    let access = format!(
        "access:\n  lists:\n    tenants: [\"{}\", \"{}\"]\n",
        a.mac, b.mac
    );
    let d0 = lab.disk("d0.img", 16 << 20);
    let lun = "    access: { discover: [tenants], read: [tenants], write: [tenants] }\n";
    let cfg = acl_config(&lab, &access, &[(0, &d0, lun)]);
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let host_a = a.mac;
    drop(a);
    let load = lab.verified_io(0, "3.0", 8, "randrw");
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut rounds = 0u32;
    // B's writes go to the second half, away from A's 8 MiB.
    let lba = 20_000;
    while Instant::now() < deadline && rounds < 40 {
        let tag = 1000 + rounds * 4;
        ctl(&lab, &format!("acl set 0 write {host_a}"));
        let r = ata(&b, None, 0, tag, WRITE_EXT, lba, 1, &sector(1)).expect("answered");
        assert_eq!(
            ata_regs(&r),
            (0x41, 0x04),
            "round {rounds}: B may not write"
        );
        ctl(
            &lab,
            &format!("acl list tenants {host_a} {} 02:00:00:00:00:99", b.mac),
        );
        ctl(&lab, "acl set 0 write tenants");
        let r = ata(&b, None, 0, tag + 1, WRITE_EXT, lba, 1, &sector(2)).expect("answered");
        assert_eq!(ata_regs(&r), (0x40, 0), "round {rounds}: B may write again");
        ctl(&lab, "acl set 0 config_set tenants");
        ctl(&lab, "acl open 0 config_set");
        rounds += 1;
    }
    assert!(rounds >= 3, "only {rounds} rounds of changes");
    let job = verified_clean(load, "A while its LUN's rights changed");
    assert!(job["verified_blocks"].as_u64().unwrap() > 100, "{job}");
    // A console edit that names nothing is refused and changes nothing.
    let o = std::process::Command::new(binary())
        .args(["ctl", "-s", lab.dir.join("admin.sock").to_str().unwrap()])
        .args(["acl", "set", "0", "write", "no-such-host"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && text.contains("no-such-host"),
        "{text}"
    );
    let audit = ctl(&lab, "audit 1000");
    assert!(
        audit.matches("write granted to").count() >= 2 * rounds as usize,
        "{audit}"
    );
    lab.stop();
}
