//! The shelf console over Ethernet (CEC) in lab namespaces: `ethershelf cec` probes and
//! opens sessions; commands, confirmations, passwords, the MAC list, a lossy segment with
//! duplicates, sessions at once and hostile frames.

mod common;
use common::relay::relay_report;
use common::*;
use std::process::Output;
use std::time::{Duration, Instant};

const SHELF: u16 = 6;
const MIB: u64 = 1 << 20;

/// `ethershelf cec ARGS IFACE` on host `h`.
fn cec(lab: &Lab, h: usize, args: &[&str]) -> Output {
    let bin = binary();
    let mut cmd = vec![bin.to_str().unwrap(), "cec"];
    cmd.extend_from_slice(args);
    cmd.push(lab.host_if(h));
    lab.host_cmd(h, 120, &cmd)
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The MAC of interface `iface` in namespace `ns`.
fn mac_of(ns: &str, iface: &str) -> String {
    let o = run(&["ip", "-n", ns, "-br", "link", "show", iface]);
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(2)
        .expect("MAC in ip -br link")
        .to_string()
}

/// Sum of the samples of `name` whose labels contain `labels`.
fn metric(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A lab shelf with one LUN and one free disk, the console over Ethernet configured by
/// `cec_yaml`.
fn shelf_with_cec(lab: &mut Lab, cec_yaml: &str) {
    let lun = lab.disk("lun0", 32 * MIB);
    let disk = lab.disk("disk0", 64 * MIB);
    let cfg = lab.config(SHELF, &[(0, &lun)], "");
    let mut yaml = std::fs::read_to_string(&cfg).unwrap();
    yaml += &format!("disks: [{}]\ncec: {cec_yaml}\n", disk.display());
    std::fs::write(&cfg, yaml).unwrap();
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
}

#[test]
fn probe_commands_confirmation_and_sessions_at_once() {
    let mut lab = Lab::new(2, 1500);
    shelf_with_cec(&mut lab, "{ enabled: true, name: lab shelf }");
    let shelf_mac = mac_of(&lab.shelf_ns, lab.shelf_if(0));

    let probe = cec(&lab, 0, &["-p"]);
    assert!(probe.status.success(), "{}", text(&probe));
    let row = stdout(&probe)
        .lines()
        .find(|l| l.contains(&shelf_mac))
        .unwrap_or_else(|| panic!("the shelf is not in the probe:\n{}", text(&probe)))
        .to_string();
    assert!(
        row.starts_with(&SHELF.to_string()) && row.ends_with("lab shelf"),
        "{row}"
    );

    let list = cec(&lab, 0, &["--command", "list -l"]);
    assert!(list.status.success(), "{}", text(&list));
    assert!(
        stdout(&list).contains("  0 ") && stdout(&list).contains("online"),
        "{}",
        text(&list)
    );
    assert!(
        !stdout(&list).contains("ethershelf shelf"),
        "prompt left in the output:\n{}",
        text(&list)
    );

    // A destructive command asks; without a yes it does nothing.
    let refused = cec(&lab, 0, &["--command", &format!("make 3 jbod {SHELF}.0")]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(stdout(&refused).contains("cancelled"), "{}", text(&refused));
    assert!(!stdout(&cec(&lab, 0, &["--command", "list"])).contains("  3 "));
    let made = cec(
        &lab,
        0,
        &["--yes", "--command", &format!("make 3 jbod {SHELF}.0")],
    );
    assert!(made.status.success(), "{}", text(&made));
    let listed = stdout(&cec(&lab, 1, &["--command", "list -l"]));
    assert!(listed.contains("  3 "), "LUN 3 not made:\n{listed}");

    let when = cec(&lab, 1, &["--command", "when"]);
    assert!(when.status.success(), "{}", text(&when));
    let bad = cec(&lab, 1, &["--command", "frobnicate"]);
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(stdout(&bad).starts_with("error:"), "{}", text(&bad));

    // Two sessions at once (one per host), each running commands in a loop.
    let script = |h: usize| {
        let bin = binary();
        let line = format!(
            "for i in 1 2 3 4; do {} cec --command 'list -l' {} || exit 1; done",
            bin.display(),
            lab.host_if(h)
        );
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.hosts[h],
                "timeout",
                "120",
                "sh",
                "-c",
                &line,
            ])
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| script(0));
        let b = s.spawn(|| script(1));
        (a.join().unwrap(), b.join().unwrap())
    });
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", text(o));
        assert_eq!(
            stdout(o),
            listed.repeat(4),
            "a session's output was garbled"
        );
    }

    let m = lab.metrics();
    assert!(
        metric(&m, "ethershelf_cec_sessions_opened_total", "") >= 15.0,
        "{m}"
    );
    assert!(metric(&m, "ethershelf_cec_commands_total", "") >= 14.0);
    assert_eq!(
        metric(&m, "ethershelf_cec_frames_total", "outcome=\"malformed\""),
        0.0
    );
    assert!(lab
        .log_text()
        .contains("console over Ethernet: command 'list -l'"));
    lab.stop();
}

#[test]
fn password_and_host_list_are_enforced() {
    let mut lab = Lab::new(2, 1500);
    let allowed = mac_of(&lab.hosts[0], lab.host_if(0));
    shelf_with_cec(
        &mut lab,
        &format!("{{ enabled: true, password: s3cret, allow: [\"{allowed}\"] }}"),
    );

    // Host 1 is not on the list: no offer, no session.
    let probe = cec(&lab, 1, &["-p"]);
    assert!(
        !stdout(&probe)
            .lines()
            .any(|l| l.starts_with(&SHELF.to_string())),
        "{}",
        text(&probe)
    );
    let denied = cec(&lab, 1, &["--command", "list"]);
    assert!(!denied.status.success(), "{}", text(&denied));

    let no_password = cec(&lab, 0, &["--command", "list"]);
    assert!(!no_password.status.success());
    assert!(
        String::from_utf8_lossy(&no_password.stderr).contains("password"),
        "{}",
        text(&no_password)
    );
    let wrong = cec(&lab, 0, &["--password", "guess", "--command", "list"]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("refused the password"),
        "{}",
        text(&wrong)
    );
    assert!(!stdout(&wrong).contains("online"), "{}", text(&wrong));
    let right = cec(&lab, 0, &["--password", "s3cret", "--command", "list"]);
    assert!(right.status.success(), "{}", text(&right));
    assert!(stdout(&right).contains("online"), "{}", text(&right));

    let m = lab.metrics();
    assert!(
        metric(
            &m,
            "ethershelf_cec_frames_total",
            "outcome=\"refused_host\""
        ) >= 2.0,
        "{m}"
    );
    lab.stop();
}

#[test]
fn loss_duplicates_and_reordering_do_not_garble_a_session() {
    let mut lab = Lab::new(1, 1500);
    let relayed = lab.add_relayed_host(1500);
    shelf_with_cec(&mut lab, "{ enabled: true }");
    // The reference answers, over the clean link.
    let help = stdout(&cec(&lab, 0, &["--command", "help"]));
    let list = stdout(&cec(&lab, 0, &["--command", "list -l"]));
    assert!(help.len() > 1500, "help should take several frames: {help}");
    let relay = lab.start_relay(
        &relayed,
        90,
        &[
            "--loss",
            "5",
            "--duplicate",
            "5",
            "--reorder",
            "1ms",
            "--seed",
            "7",
        ],
    );
    let started = Instant::now();
    for (i, (command, expected)) in [
        ("help", &help),
        ("list -l", &list),
        ("help", &help),
        ("list -l", &list),
    ]
    .into_iter()
    .enumerate()
    {
        let o = cec(&lab, relayed.host, &["-w", "2", "--command", command]);
        assert!(
            o.status.success(),
            "command {i} over the lossy link: {}",
            text(&o)
        );
        assert_eq!(
            &stdout(&o),
            expected,
            "command {i} ({command}) garbled over the lossy link"
        );
    }
    let took = started.elapsed();
    let m = lab.metrics();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &relay.id().to_string()])
        .status();
    // The relay stops at its --duration; it prints its counts whether stopped or not.
    let report = relay_report(relay);
    let lost =
        report["a_to_b"]["lost"].as_u64().unwrap() + report["b_to_a"]["lost"].as_u64().unwrap();
    let dup = report["a_to_b"]["duplicated"].as_u64().unwrap()
        + report["b_to_a"]["duplicated"].as_u64().unwrap();
    println!(
        "4 commands over 5 % loss, 5 % duplicates, 1 ms reordering in {took:?}: relay {report}"
    );
    assert!(
        lost > 0 && dup > 0,
        "the relay did not impair anything: {report}"
    );
    assert!(
        metric(&m, "ethershelf_cec_resends_total", "") >= 1.0,
        "no resend seen:\n{m}"
    );
    lab.stop();
}

#[test]
fn hostile_console_frames_are_counted_and_bounded() {
    let mut lab = Lab::new(2, 1500);
    shelf_with_cec(&mut lab, "{ enabled: true, sessions: 2 }");
    let shelf_mac = ethershelf::wire::MacAddr::from_slice(
        &mac_of(&lab.shelf_ns, lab.shelf_if(1))
            .split(':')
            .map(|x| u8::from_str_radix(x, 16).unwrap())
            .collect::<Vec<u8>>(),
    );
    let raw = lab.raw(1);
    let io = lab.verified_io(0, &format!("{SHELF}.0"), 6, "randrw");
    let frame = |dst: [u8; 6], src: [u8; 6], kind: u8, tag: u8, seq: u8, len: u8, fill: u8| {
        let mut f = vec![fill; 60];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&[0xbc, 0xbc]);
        f[14] = kind;
        f[15] = tag;
        f[16] = seq;
        f[17] = len;
        f
    };
    let me = raw.mac.0;
    let mut seed = 0x1234_5678_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sent = 0u64;
    while Instant::now() < deadline && sent < 200_000 {
        let r = next();
        let f = match r % 6 {
            // Unknown types and lengths running past the frame.
            0 => frame(shelf_mac.0, me, 8 + (r >> 8) as u8 % 200, 1, 1, 0, 0),
            1 => frame(shelf_mac.0, me, 3, 2, 1, 255, 0x41),
            // Connects from many tags (more than the two sessions allowed), never finished.
            2 => frame(shelf_mac.0, me, 0, (r >> 16) as u8, 0, 0, 0),
            // Data, acks and resets for sessions that do not exist.
            3 => frame(
                shelf_mac.0,
                me,
                3 + (r >> 24) as u8 % 2,
                200,
                (r >> 32) as u8,
                1,
                b'x',
            ),
            // A multicast source, and a truncated frame.
            4 => frame(shelf_mac.0, [0x01, 0, 0x5e, 0, 0, 1], 0, 3, 0, 0, 0),
            _ => frame(shelf_mac.0, me, 3, 4, 1, 0, 0)[..16].to_vec(),
        };
        raw.send(&f);
        sent += 1;
        if sent % 64 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let report = verified_clean(io, "AoE I/O during the console flood");
    println!("hostile console frames sent: {sent}; host 0 I/O: {report}");
    let m = lab.metrics();
    assert!(
        metric(&m, "ethershelf_cec_frames_total", "outcome=\"malformed\"") > 0.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "ethershelf_cec_frames_total",
            "outcome=\"sessions_full\""
        ) > 0.0,
        "{m}"
    );
    assert!(
        metric(&m, "ethershelf_cec_frames_total", "outcome=\"no_session\"") > 0.0,
        "{m}"
    );
    assert!(metric(&m, "ethershelf_cec_sessions", "") <= 2.0, "{m}");
    // The half-open sessions the flood left are dropped after the handshake timeout, so
    // an admin gets a session afterwards.
    std::thread::sleep(Duration::from_secs(6));
    let after = cec(&lab, 0, &["--command", "list"]);
    assert!(after.status.success(), "{}", text(&after));
    assert!(stdout(&after).contains("online"));
    assert!(
        lab.shelf_rss_kib() < 200 * 1024,
        "shelf RSS {} KiB",
        lab.shelf_rss_kib()
    );
    lab.stop();
}

#[test]
fn a_person_at_a_terminal_types_commands_and_leaves_with_the_escape_key() {
    require("script", "bsdutils");
    let mut lab = Lab::new(1, 1500);
    shelf_with_cec(&mut lab, "{ enabled: true }");
    let line = format!("{} cec {}", binary().display(), lab.host_if(0));
    // `script` gives the client a terminal (raw mode) and passes our keystrokes through.
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0], "timeout", "60"])
        .args(["script", "-qfec", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    let typing = std::thread::spawn(move || {
        use std::io::Write;
        std::thread::sleep(Duration::from_secs(4));
        // A typo erased with Backspace, then Enter; later the escape key and q.
        for k in [&b"lisz"[..], b"\x7f", b"t -l\r"] {
            keys.write_all(k).unwrap();
            keys.flush().unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
        std::thread::sleep(Duration::from_secs(3));
        keys.write_all(b"\x1cq").unwrap();
        keys.flush().unwrap();
        std::thread::sleep(Duration::from_secs(2));
    });
    let out = child.wait_with_output().unwrap();
    typing.join().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{screen}", text(&out));
    assert!(
        screen.contains(&format!("ethershelf shelf {SHELF}> ")),
        "no prompt:\n{screen}"
    );
    assert!(
        screen.contains("lisz\x08 \x08t -l"),
        "the line was not edited on the shelf:\n{screen:?}"
    );
    assert!(screen.contains("online"), "no listing:\n{screen}");
    lab.stop();
}
