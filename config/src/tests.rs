use super::*;

const GOOD: &str = "\
shelf: 1
ports:
  - { interface: sh0, mode: packet }
  - interface: sh1
    max_sectors: 16
state_dir: /tmp/es-state
luns:
  - slot: 0
    file: /srv/lun0.img
    mask: [\"52:54:00:ae:00:01\", 525400ae0002]
  - slot: 1
    file: /srv/vm17.img
    read_only: true
    write_cache: writeback
    offset: 1MiB
    length: 1 GiB
";

#[test]
fn parses_a_full_file() {
    let c = parse(GOOD, "good.yaml").unwrap();
    assert_eq!(c.shelf, 1);
    assert_eq!(c.ports.len(), 2);
    assert_eq!(c.ports[0].mode, PortMode::Packet);
    assert_eq!(c.ports[1].mode, PortMode::Auto);
    assert_eq!(c.ports[1].max_sectors, Some(16));
    assert_eq!(c.buffer_count, DEFAULT_BUFFER_COUNT);
    assert_eq!(
        c.luns[0].mask,
        vec![[0x52, 0x54, 0, 0xae, 0, 1], [0x52, 0x54, 0, 0xae, 0, 2]]
    );
    let Backend::File(f0) = &c.luns[0].backend else {
        panic!("file LUN expected")
    };
    assert!(f0.direct);
    assert_eq!(c.luns[0].write_cache, WriteCache::Writethrough);
    assert!(c.luns[1].read_only);
    assert_eq!(c.luns[1].write_cache, WriteCache::Writeback);
    let Backend::File(f1) = &c.luns[1].backend else {
        panic!("file LUN expected")
    };
    assert_eq!(f1.offset, 1 << 20);
    assert_eq!(f1.length, Some(1 << 30));
    assert_eq!(
        c.admin_socket,
        std::path::PathBuf::from(DEFAULT_ADMIN_SOCKET)
    );
}

const RAID: &str = "\
shelf: 1
ports: [{ interface: sh0 }]
disks: [/d/0, /d/1, /d/2, /d/3, /d/4]
spares: [4]
rebuild: { min_rate: 5MiB, max_rate: 1GiB }
admin: { socket: /tmp/a.sock }
luns:
  - slot: 0
    raid10: { disks: [0, 1, 2, 3], chunk: 128KiB, degraded_start: true }
";

#[test]
fn parses_raid10_luns_disks_and_spares() {
    let c = parse(RAID, "raid.yaml").unwrap();
    assert_eq!(c.disks.len(), 5);
    assert_eq!(c.spares, vec![4]);
    assert_eq!(c.rebuild.min, 5 << 20);
    assert_eq!(c.rebuild.max, 1 << 30);
    assert_eq!(c.admin_socket, std::path::PathBuf::from("/tmp/a.sock"));
    let Backend::Raid10(r) = &c.luns[0].backend else {
        panic!("raid10 LUN expected")
    };
    assert_eq!(r.disks, vec![0, 1, 2, 3]);
    assert_eq!(r.chunk, 128 << 10);
    assert!(r.degraded_start && !r.clean);
    let c = parse(&RAID.replace(", chunk: 128KiB", ""), "raid.yaml").unwrap();
    let Backend::Raid10(r) = &c.luns[0].backend else {
        panic!("raid10 LUN expected")
    };
    assert_eq!(r.chunk, DEFAULT_CHUNK);
}

#[test]
fn raid10_mistakes_are_located_and_explained() {
    let cases = [
        ("disks: [0, 1, 2, 3]", "disks: [0]", "at least 2 disks"),
        (
            "disks: [0, 1, 2, 3]",
            "disks: [0, 1, 9]",
            "disk 9 does not exist",
        ),
        (
            "disks: [0, 1, 2, 3]",
            "disks: [0, 1, 4]",
            "already used by the spares",
        ),
        (
            "disks: [0, 1, 2, 3]",
            "disks: [0, 1, 1]",
            "already used by LUN 0",
        ),
        ("chunk: 128KiB", "chunk: 3000", "power of two"),
        ("chunk: 128KiB", "chunk: 2KiB", "power of two"),
        ("min_rate: 5MiB", "min_rate: 2GiB", "min_rate <= max_rate"),
        ("spares: [4]", "spares: [7]", "disk 7 does not exist"),
    ];
    for (from, to, want) in cases {
        let (line, col, text) = error_of(&RAID.replace(from, to));
        assert!(text.contains(want), "{to}: {text}");
        assert!(line > 0 && col > 0, "{to}: located");
    }
    let (_, _, text) = error_of(&RAID.replace(
        "raid10: { disks: [0, 1, 2, 3], chunk: 128KiB, degraded_start: true }",
        "file: /x\n    raid10: { disks: [0, 1] }",
    ));
    assert!(text.contains("both 'file' and 'raid10'"), "{text}");
    let (_, _, text) = error_of("shelf: 1\nports: [{ interface: a }]\nluns:\n  - slot: 0\n");
    assert!(text.contains("no storage"), "{text}");
}

fn error_of(yaml: &str) -> (u64, u64, String) {
    let e = parse(yaml, "bad.yaml").unwrap_err();
    let (line, col) = e.location().unwrap();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("bad.yaml:{line}:{col}: ")),
        "{text}"
    );
    (line, col, text)
}

#[test]
fn unknown_key_is_located_and_lists_the_right_ones() {
    let (line, col, text) = error_of("shelf: 1\nports:\n  - { interface: a, mtuu: 3 }\n");
    assert_eq!((line, col), (3, 21));
    assert!(
        text.contains("unknown field `mtuu`") && text.contains("max_sectors"),
        "{text}"
    );
}

#[test]
fn out_of_range_values_say_what_is_right() {
    let (line, _, text) = error_of("shelf: 65535\nports: [{ interface: a }]\n");
    assert_eq!(line, 1);
    assert!(text.contains("use 0..65534"), "{text}");
    let (line, _, text) =
        error_of("shelf: 1\nports: [{ interface: a }]\nluns:\n  - slot: 255\n    file: /x\n");
    assert_eq!(line, 4);
    assert!(text.contains("use 0..254"), "{text}");
    let (_, _, text) = error_of("shelf: 1\nports: [{ interface: a, max_sectors: 0 }]\n");
    assert!(text.contains("max_sectors 0"), "{text}");
    let (_, _, text) = error_of("shelf: 1\nbuffer_count: 1\nports: [{ interface: a }]\n");
    assert!(text.contains("buffer_count 1"), "{text}");
    let (line, col, text) = error_of("shelf: 1\nports: [{ interface: a }]\nworkers: 0\n");
    assert_eq!((line, col), (3, 10));
    assert!(text.contains("workers must be 1..256"), "{text}");
    let c = parse(
        "shelf: 1\nports: [{ interface: a }]\nworkers: 2\n",
        "w.yaml",
    )
    .unwrap();
    assert_eq!(c.workers, Some(2));
    assert_eq!(parse(GOOD, "good.yaml").unwrap().workers, None);
}

#[test]
fn duplicates_are_refused_with_both_lines() {
    let (line, _, text) = error_of("shelf: 1\nports: [{ interface: a }]\nluns:\n  - { slot: 0, file: /a }\n  - { slot: 0, file: /b }\n");
    assert_eq!(line, 5);
    assert!(text.contains("first on line 4"), "{text}");
    let (line, _, _) = error_of("shelf: 1\nports:\n  - { interface: a }\n  - { interface: a }\n");
    assert_eq!(line, 4);
}

#[test]
fn bad_mac_sizes_and_enums_are_located() {
    let (line, col, text) = error_of(
        "shelf: 1\nports: [{ interface: a }]\nluns:\n  - slot: 0\n    file: /a\n    mask: [nope]\n",
    );
    assert_eq!((line, col), (6, 12));
    assert!(text.contains("'nope' is not a MAC"), "{text}");
    let (line, _, text) = error_of(
        "shelf: 1\nports: [{ interface: a }]\nluns:\n  - { slot: 0, file: /a, offset: 100 }\n",
    );
    assert_eq!(line, 4);
    assert!(text.contains("multiple of 512"), "{text}");
    let (line, _, text) = error_of("shelf: 1\nports: [{ interface: a }]\nluns:\n  - { slot: 0, file: /a, length: 3 furlongs }\n");
    assert_eq!(line, 4);
    assert!(text.contains("furlongs"), "{text}");
    let (line, _, text) = error_of("shelf: 1\nports: [{ interface: a, mode: turbo }]\n");
    assert_eq!(line, 2);
    assert!(text.contains("turbo"), "{text}");
}

#[test]
fn missing_and_empty_sections_are_explained() {
    let (_, _, text) = error_of("shelf: 1\n");
    assert!(text.contains("ports"), "{text}");
    // No ports and no LUNs: a shelf that serves nothing, valid.
    let c = parse("shelf: 1\nports: []\n", "empty.yaml").unwrap();
    assert!(c.ports.is_empty() && c.luns.is_empty());
    let (line, _, text) = error_of("shelf: 1\nports: []\nluns:\n  - { slot: 0, file: /x }\n");
    assert_eq!(line, 2);
    assert!(text.contains("at least one port"), "{text}");
    let (_, _, text) = error_of("shelf: 1\nports: [\n");
    assert!(text.contains("bracket"), "{text}");
}

#[test]
fn sizes_parse_with_units() {
    assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
    assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(65536)));
    assert_eq!(ByteSize::parse("2 g"), Ok(ByteSize(2 << 30)));
    assert!(ByteSize::parse("KiB").is_err());
    assert!(ByteSize::parse("99999999999999TiB").is_err());
}

#[test]
fn example_files_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        load(&path).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    assert!(n >= 1);
}

#[test]
fn the_packaged_default_file_serves_nothing() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/debian/shelf.yaml");
    let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.ports.is_empty(), "the default file must open no port");
    assert!(c.luns.is_empty() && c.disks.is_empty() && c.spares.is_empty());
}

fn access_yaml(ethers: &std::path::Path, lists: &str, lun: &str) -> String {
    format!(
        "shelf: 1\nports: [{{ interface: sh0 }}]\naccess:\n  ethers: {}\n  wire_admin: refuse\n  lists:\n{lists}luns:\n  - slot: 0\n    file: /srv/a.img\n    access:\n{lun}",
        ethers.display()
    )
}

#[test]
fn access_lists_and_rights_parse() {
    use crate::access::{Right, WireAdmin};
    let dir = std::env::temp_dir().join(format!("es-cfg-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ethers = dir.join("ethers");
    std::fs::write(&ethers, "52:54:00:00:00:09 backup-host\n").unwrap();
    let text = access_yaml(
        &ethers,
        "    hv: [\"52:54:00:00:00:01\", \"52:54:00:00:00:02\"]\n    all: [hv, backup-host]\n",
        "      discover: [all]\n      read: [all]\n      write: [hv]\n      config_set: []\n      wire_admin: accept\n",
    );
    let c = parse(&text, "acl.yaml").unwrap();
    assert_eq!(c.access.wire_admin, WireAdmin::Refuse);
    assert_eq!(c.access.lists["all"], vec!["hv", "backup-host"]);
    let a = &c.luns[0].access;
    assert_eq!(a.wire_admin, Some(WireAdmin::Accept));
    assert_eq!(a.rights[&Right::Write], vec!["hv"]);
    assert!(a.rights[&Right::ConfigSet].is_empty());
    assert!(
        !a.rights.contains_key(&Right::Mask),
        "unmentioned rights stay open"
    );
    // No access section at all: everything open, wire edits accepted.
    let c = parse(GOOD, "good.yaml").unwrap();
    assert_eq!(c.access.wire_admin, WireAdmin::Accept);
    assert!(c.luns[0].access.rights.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn access_mistakes_are_located_at_the_entry() {
    let dir = std::env::temp_dir().join(format!("es-cfg-access-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ethers = dir.join("ethers");
    std::fs::write(&ethers, "52:54:00:00:00:09 backup-host\n").unwrap();
    let cases = [
        // An unknown list (or host) named by a LUN.
        (
            "    hv: [\"52:54:00:00:00:01\"]\n",
            "      write: [hv, nosuch]\n",
            12,
            "'nosuch' is neither an access list nor a host",
        ),
        // A cycle between lists, reported at the entry closing it.
        (
            "    a: [b]\n    b: [\"52:54:00:00:00:01\", a]\n",
            "      read: [a]\n",
            8,
            "cycle: a -> b -> a",
        ),
        // A bad MAC inside a list.
        (
            "    hv: [\"52:54:00:00:00:zz\"]\n",
            "      read: [hv]\n",
            7,
            "is not a MAC address",
        ),
        // A bad MAC in a LUN's right.
        (
            "    hv: []\n",
            "      read: [\"52:54:00:00:01\"]\n",
            12,
            "is not a MAC address",
        ),
        // An unknown right.
        ("    hv: []\n", "      delete: [hv]\n", 12, "delete"),
    ];
    for (lists, lun, line, want) in cases {
        let (l, col, text) = error_of(&access_yaml(&ethers, lists, lun));
        assert!(text.contains(want), "{lists}{lun}: {text}");
        assert_eq!(l, line, "{lists}{lun}: {text}");
        assert!(col > 0);
    }
    let (_, _, text) = error_of(
        &access_yaml(&ethers, "    hv: []\n", "      read: [hv]\n")
            .replace("wire_admin: refuse", "wire_admin: maybe"),
    );
    assert!(text.contains("not accept or refuse"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_console_over_ethernet_is_off_by_default_and_checked_when_on() {
    let c = parse(GOOD, "good.yaml").unwrap();
    assert_eq!(c.cec, CecConfig::default());
    assert!(!c.cec.enabled);
    let on = format!(
        "{GOOD}access:\n  lists:\n    admins: [\"52:54:00:ae:00:07\"]\n\
         cec: {{ enabled: true, password: s3cret, allow: [admins, \"52:54:00:ae:00:08\"], sessions: 2, name: rack 3 }}\n"
    );
    let c = parse(&on, "on.yaml").unwrap();
    assert!(c.cec.enabled);
    assert_eq!(c.cec.password.as_deref(), Some("s3cret"));
    assert_eq!(c.cec.sessions, 2);
    assert_eq!(c.cec.name.as_deref(), Some("rack 3"));
    let allow = c.cec.allow.unwrap();
    assert!(
        allow.contains(&[0x52, 0x54, 0, 0xae, 0, 7])
            && allow.contains(&[0x52, 0x54, 0, 0xae, 0, 8])
    );
    let everyone = parse(
        &format!("{GOOD}cec: {{ enabled: true, allow: [\"*\"] }}\n"),
        "x",
    )
    .unwrap();
    assert_eq!(everyone.cec.allow, None);

    let third_line = GOOD.lines().count() as u64 + 3;
    let (line, _, m) = error_of(&format!("{GOOD}cec:\n  enabled: true\n  sessions: 50\n"));
    assert_eq!(line, third_line);
    assert!(m.contains("cec sessions must be 1..20"), "{m}");
    let (line, _, m) = error_of(&format!(
        "{GOOD}cec:\n  enabled: true\n  allow: [nobody-known]\n"
    ));
    assert_eq!(line, third_line);
    assert!(m.contains("nobody-known"), "{m}");
    let (_, _, m) = error_of(&format!("{GOOD}cec: {{ enabled: true, password: \"\" }}\n"));
    assert!(m.contains("cec password"), "{m}");
    let (_, _, m) = error_of(&format!("{GOOD}cec: {{ enabled: true, pasword: x }}\n"));
    assert!(m.contains("pasword"), "{m}");
}

#[test]
fn disks_auto_takes_what_the_probe_finds_and_says_when_nothing() {
    let none = || crate::disks::DiskProbe {
        sys_block: "/nonexistent/sys/block".into(),
        by_path: "/nonexistent/by-path".into(),
        mountinfo: String::new(),
        swaps: String::new(),
    };
    let yaml = "shelf: 1\nports: []\ndisks: auto\n";
    let e = parse_with_disks(yaml, "auto.yaml", &none)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("auto.yaml:3:8: disks: auto found no disk"),
        "{e}"
    );
    let e = parse_with_disks("shelf: 1\nports: []\ndisks: some\n", "x.yaml", &none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither a list of paths nor 'auto'"), "{e}");
    let listed = parse_with_disks(
        "shelf: 1\nports: []\ndisks: [/dev/vdb, /dev/vdc]\n",
        "x",
        &none,
    )
    .unwrap();
    assert_eq!(listed.disks.len(), 2);
    assert!(!listed.disks_auto);
    let (line, _, m) = error_of("shelf: 1\nports: []\ndisks: [/dev/vdb, /dev/vdb]\n");
    assert_eq!(line, 3);
    assert!(m.contains("listed twice"), "{m}");
}

#[test]
fn a_file_lun_may_be_created_at_start_with_its_length() {
    let ok = parse(
        "shelf: 1\nports: [ { interface: sh0 } ]\nluns:\n  - { slot: 1, file: /var/lib/ethershelf/lun1.img, length: 64MiB, create: true }\n",
        "c.yaml",
    )
    .unwrap();
    let Backend::File(f) = &ok.luns[0].backend else {
        panic!("file LUN")
    };
    assert!(f.create);
    assert_eq!(f.length, Some(64 << 20));
    let (line, _, m) =
        error_of("shelf: 1\nports: [ { interface: sh0 } ]\nluns:\n  - slot: 1\n    file: /x.img\n    create: true\n");
    assert_eq!(line, 5);
    assert!(m.contains("create: true needs 'length:'"), "{m}");
}
