//! Interoperability with Coraid's own tools (`aoeping`, `aoecfg`) and Wireshark's dissector,
//! in lab namespaces created by each test.

mod common;
use common::*;
use std::time::Duration;

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn aoeping_identify_and_smart_with_clean_tshark_capture_packet() {
    aoeping_identify_and_smart_with_clean_tshark_capture("packet");
}

#[test]
fn aoeping_identify_and_smart_with_clean_tshark_capture_xdp() {
    aoeping_identify_and_smart_with_clean_tshark_capture("xdp");
}

fn aoeping_identify_and_smart_with_clean_tshark_capture(mode: &'static str) {
    require("aoeping", "aoetools");
    require("tshark", "tshark");
    let mut lab = Lab::new(1, 9000);
    lab.mode = mode;
    let disk = lab.disk("lun0.img", 64 << 20);
    let cfg = lab.config(7, &[(3, &disk)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let pcap = lab.dir.join("capture.pcap");
    let mut cap = lab.host_spawn(
        0,
        &[
            "tshark",
            "-q",
            "-i",
            lab.host_if(0),
            "-w",
            pcap.to_str().unwrap(),
            "-a",
            "duration:20",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));

    let o = lab.host_cmd(
        0,
        10,
        &["aoeping", "-I", "-s", "3", "7", "3", lab.host_if(0)],
    );
    let t = text(&o);
    assert!(o.status.success(), "aoeping -I failed: {t}");
    assert!(t.contains("model: ethershelf"), "{t}");
    assert!(t.contains("serial_number: 7.3:"), "{t}");
    assert!(
        t.contains(&format!("firmware_rev: {}", env!("CARGO_PKG_VERSION"))),
        "{t}"
    );

    let o = lab.host_cmd(
        0,
        10,
        &[
            "aoeping",
            "-S",
            "return_status",
            "-s",
            "3",
            "7",
            "3",
            lab.host_if(0),
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "aoeping -S return_status failed: {t}");
    assert!(
        t.contains("LBA Mid: 0x4f") && t.contains("LBA High: 0xc2") && t.contains("Status: 0x40"),
        "{t}"
    );

    let o = lab.host_cmd(
        0,
        10,
        &[
            "aoeping",
            "-S",
            "read_data",
            "-s",
            "3",
            "7",
            "3",
            lab.host_if(0),
        ],
    );
    assert!(
        o.status.success() && text(&o).contains("SMART data:"),
        "{}",
        text(&o)
    );

    // Config strings too, so the capture holds every command aoetools sends.
    let o = lab.host_cmd(
        0,
        5,
        &[
            "aoecfg",
            "-c",
            "fset",
            "-s",
            "captured",
            "-t",
            "1",
            "7",
            "3",
            lab.host_if(0),
        ],
    );
    assert!(text(&o).contains("captured"), "{}", text(&o));

    std::thread::sleep(Duration::from_millis(1000));
    unsafe { libc::kill(cap.id() as i32, libc::SIGINT) };
    let _ = cap.wait();
    let all = std::process::Command::new("tshark")
        .args(["-r", pcap.to_str().unwrap(), "-Y", "aoe"])
        .output()
        .unwrap();
    let frames = String::from_utf8_lossy(&all.stdout).lines().count();
    assert!(frames >= 8, "capture holds only {frames} AoE frames");
    let bad = std::process::Command::new("tshark")
        .args([
            "-r",
            pcap.to_str().unwrap(),
            "-Y",
            "_ws.malformed || _ws.expert.severity >= 8388608",
        ])
        .output()
        .unwrap();
    let bad_lines = String::from_utf8_lossy(&bad.stdout).to_string();
    assert!(
        bad_lines.trim().is_empty(),
        "malformed frames in the capture:\n{bad_lines}"
    );
    lab.stop();
}

#[test]
fn aoecfg_config_string_rules_survive_restart_packet() {
    aoecfg_config_string_rules_survive_restart("packet");
}

#[test]
fn aoecfg_config_string_rules_survive_restart_xdp() {
    aoecfg_config_string_rules_survive_restart("xdp");
}

fn aoecfg_config_string_rules_survive_restart(mode: &'static str) {
    require("aoecfg", "aoetools");
    let mut lab = Lab::new(1, 1500);
    lab.mode = mode;
    let disk = lab.disk("lun0.img", 8 << 20);
    let cfg = lab.config(1, &[(0, &disk)], "");
    let cfg = cfg.to_str().unwrap().to_string();
    lab.start(&["serve", "-c", &cfg]);
    let ifc = lab.host_if(0).to_string();
    fn cfg_on(lab: &Lab, ifc: &str, cmd: &str, s: &str) -> String {
        let mut args = vec!["aoecfg", "-c", cmd, "-t", "1"];
        if !s.is_empty() {
            args.extend(["-s", s]);
        }
        args.extend(["1", "0", ifc]);
        text(&lab.host_cmd(0, 5, &args))
    }
    macro_rules! cfgcmd {
        ($c:expr, $s:expr) => {
            cfg_on(&lab, &ifc, $c, $s)
        };
    }
    assert_eq!(
        cfgcmd!("read", "").trim(),
        "",
        "a new LUN has an empty string"
    );
    assert_eq!(
        cfgcmd!("set", "vm17@hostA").trim(),
        "vm17@hostA",
        "set on empty"
    );
    assert_eq!(
        cfgcmd!("set", "vm17@hostA").trim(),
        "vm17@hostA",
        "identical set is idempotent"
    );
    let different = cfgcmd!("set", "vm17@hostB");
    assert!(
        !different.contains("vm17@hostB"),
        "a different set must fail: {different}"
    );
    assert_eq!(
        cfgcmd!("test", "vm17@hostA").trim(),
        "vm17@hostA",
        "test match answers"
    );
    assert_eq!(
        cfgcmd!("test", "vm17@host").trim(),
        "",
        "test mismatch is silent"
    );
    assert_eq!(
        cfgcmd!("prefix", "vm17@").trim(),
        "vm17@hostA",
        "prefix match answers"
    );
    assert_eq!(
        cfgcmd!("prefix", "vm18").trim(),
        "",
        "prefix mismatch is silent"
    );
    assert_eq!(
        cfgcmd!("fset", "vm17@hostC").trim(),
        "vm17@hostC",
        "fset replaces"
    );
    lab.stop();
    lab.start(&["serve", "-c", &cfg]);
    assert_eq!(
        cfgcmd!("read", "").trim(),
        "vm17@hostC",
        "string survives a restart"
    );
    // Broadcast discovery (wildcard shelf and slot) answers with our own address.
    let all = text(&lab.host_cmd(0, 5, &["aoecfg", "-c", "read", "-t", "1", &ifc]));
    assert!(all.contains("1.0\tvm17@hostC"), "{all}");
    lab.stop();
}

#[test]
fn two_hosts_racing_set_exactly_one_wins_packet() {
    two_hosts_racing_set_exactly_one_wins("packet");
}

#[test]
fn two_hosts_racing_set_exactly_one_wins_xdp() {
    two_hosts_racing_set_exactly_one_wins("xdp");
}

fn two_hosts_racing_set_exactly_one_wins(mode: &'static str) {
    require("aoecfg", "aoetools");
    let mut lab = Lab::new(2, 1500);
    lab.mode = mode;
    let disk = lab.disk("lun0.img", 8 << 20);
    let cfg = lab.config(2, &[(5, &disk)], "");
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    for round in 0..5 {
        let (ia, ib) = (lab.host_if(0).to_string(), lab.host_if(1).to_string());
        let (sa, sb) = (format!("A{round}"), format!("B{round}"));
        let spawn = |h: usize, ifc: &str, s: &str| {
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.hosts[h],
                    "timeout",
                    "5",
                    "aoecfg",
                    "-c",
                    "set",
                    "-s",
                    s,
                    "-t",
                    "1",
                    "2",
                    "5",
                    ifc,
                ])
                .output()
        };
        let (ra, rb) = std::thread::scope(|sc| {
            let a = sc.spawn(|| spawn(0, &ia, &sa).unwrap());
            let b = sc.spawn(|| spawn(1, &ib, &sb).unwrap());
            (a.join().unwrap(), b.join().unwrap())
        });
        let (ta, tb) = (text(&ra), text(&rb));
        let a_won = ta.trim() == sa;
        let b_won = tb.trim() == sb;
        assert!(
            a_won ^ b_won,
            "round {round}: exactly one must win: A={ta:?} B={tb:?}"
        );
        let winner = if a_won { &sa } else { &sb };
        let now = text(&lab.host_cmd(0, 5, &["aoecfg", "-c", "read", "-t", "1", "2", "5", &ia]));
        assert_eq!(now.trim(), winner);
        // Clear for the next round.
        let cleared = text(&lab.host_cmd(
            0,
            5,
            &["aoecfg", "-c", "fset", "-s", "", "-t", "1", "2", "5", &ia],
        ));
        assert_eq!(cleared.trim(), "");
    }
    lab.stop();
}
