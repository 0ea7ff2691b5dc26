//! The command line: help, config checking with located errors, refusals of bad arguments.

mod common;
use std::process::Command;

fn es(args: &[&str]) -> (bool, String) {
    let o = Command::new(common::binary()).args(args).output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn every_command_explains_itself() {
    for cmd in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["check", "--help"],
        vec!["export", "--help"],
    ] {
        let (ok, text) = es(&cmd);
        assert!(ok && text.contains("Usage:"), "{cmd:?}: {text}");
    }
    let (_, text) = es(&["export", "--help"]);
    assert!(
        text.contains("SHELF")
            && text.contains("SLOT")
            && text.contains("IFACE")
            && text.contains("FILE"),
        "{text}"
    );
}

#[test]
fn check_reports_file_line_column() {
    let dir = std::env::temp_dir().join(format!("es-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "shelf: 1\nports:\n  - interface: sh0\n    mtu: 9000\n",
    )
    .unwrap();
    let (ok, text) = es(&["check", "-c", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.contains(&format!("{}:4:5: unknown field `mtu`", bad.display())),
        "{text}"
    );

    let missing = dir.join("missing.yaml");
    std::fs::write(&missing, format!("shelf: 1\nports: [{{ interface: sh0 }}]\nluns:\n  - {{ slot: 0, file: {}/nope.img }}\n", dir.display())).unwrap();
    let (ok, text) = es(&["check", "-c", missing.to_str().unwrap()]);
    assert!(
        !ok && text.contains("LUN 1.0")
            && text.contains("nope.img")
            && text.contains("No such file"),
        "{text}"
    );

    let img = dir.join("lun.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, format!("shelf: 1\nstate_dir: {}/state\nports: [{{ interface: sh0 }}]\nluns:\n  - {{ slot: 0, file: {} }}\n", dir.display(), img.display())).unwrap();
    let (ok, text) = es(&["check", "-c", good.to_str().unwrap()]);
    assert!(
        ok && text.contains("OK: shelf 1, 1 port(s), 1 LUN(s)"),
        "{text}"
    );

    let tiny = dir.join("tiny.img");
    std::fs::write(&tiny, b"x").unwrap();
    let (ok, text) = es(&["export", "1", "0", "lo", tiny.to_str().unwrap()]);
    assert!(
        !ok && text.contains("smaller than one 512-byte sector"),
        "{text}"
    );
    let (ok, text) = es(&["export", "1", "255", "lo", img.to_str().unwrap()]);
    assert!(!ok && text.contains("broadcast slot"), "{text}");
    let (ok, text) = es(&["export", "65535", "0", "lo", img.to_str().unwrap()]);
    assert!(!ok && text.contains("pick 0..65534"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The packaged default file (no ports, no LUNs) passes `check`, and `serve` starts on it,
/// says it serves nothing, stays up (for systemd) and stops cleanly on SIGTERM.
#[test]
fn the_packaged_default_file_serves_nothing_and_stays_up() {
    let dir = std::env::temp_dir().join(format!("es-cli-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let packaged =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/debian/shelf.yaml");
    let text = std::fs::read_to_string(packaged).unwrap();
    assert!(text.contains("state_dir: /var/lib/ethershelf"));
    // This machine's /var/lib and /run stay untouched, and no port 9478 is taken.
    let text = text.replace(
        "state_dir: /var/lib/ethershelf",
        &format!(
            "state_dir: {0}/state\nadmin: {{ socket: {0}/admin.sock }}\nmetrics: {{ listen: \"off\" }}",
            dir.display()
        ),
    );
    let file = dir.join("shelf.yaml");
    std::fs::write(&file, text).unwrap();
    let (ok, out) = es(&["check", "-c", file.to_str().unwrap()]);
    assert!(
        ok && out.contains("OK: shelf 1, 0 port(s), 0 LUN(s)")
            && out.contains("no LUNs configured: serving nothing"),
        "{out}"
    );
    let mut shelf = Command::new(common::binary())
        .args(["serve", "-c", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let up = std::time::Instant::now();
    while up.elapsed() < std::time::Duration::from_secs(2) {
        assert!(
            shelf.try_wait().unwrap().is_none(),
            "serve exited on a file with no LUNs"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    unsafe { libc::kill(shelf.id() as i32, libc::SIGTERM) };
    let stopping = std::time::Instant::now();
    let status = loop {
        if let Some(s) = shelf.try_wait().unwrap() {
            break s;
        }
        if stopping.elapsed() > std::time::Duration::from_secs(20) {
            let _ = shelf.kill();
            panic!("serve did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut log = String::new();
    use std::io::Read;
    shelf
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "no LUNs configured: serving nothing; edit {}",
            file.display()
        )) && log.contains("no ports configured"),
        "{log}"
    );
}

/// `write-docs DIR` (hidden) writes a man page per visible command and completions, none of
/// which mention it.
#[test]
fn write_docs_makes_man_pages_and_completions() {
    let dir = std::env::temp_dir().join(format!("es-cli-docs-{}", std::process::id()));
    let (ok, out) = es(&["write-docs", dir.to_str().unwrap()]);
    assert!(ok, "{out}");
    for f in [
        "ethershelf.8",
        "ethershelf-serve.8",
        "ethershelf-check.8",
        "ethershelf-ctl.8",
        "ethershelf-console.8",
        "ethershelf-export.8",
        "ethershelf",
        "_ethershelf",
        "ethershelf.fish",
    ] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!text.contains("write-docs"), "{f} mentions write-docs");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (_, help) = es(&["--help"]);
    assert!(!help.contains("write-docs"), "{help}");
}
