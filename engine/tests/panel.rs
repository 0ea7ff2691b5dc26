//! The front panel in a real browser: headless Chromium loads the page of a shelf whose
//! RAID-10 LUN just lost a member; the DOM must show that slot failed, the spare's slot
//! recovering and the LUN's rebuild progressing. A screenshot is kept.

mod common;
use common::raid::*;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the screenshot is kept (under the workspace's target directory).
fn screenshot_path() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("front-panel.png")
}

/// Runs headless Chromium in the shelf's namespace on `url` with `args`.
fn chromium(lab: &Lab, args: &[&str], url: &str) -> std::process::Output {
    require("chromium", "chromium");
    let profile = lab.dir.join("chromium-profile");
    Command::new("ip")
        .args(["netns", "exec", &lab.shelf_ns, "timeout", "90", "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=8000",
            "--window-size=1280,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .env("HOME", &lab.dir)
        .output()
        .expect("chromium")
}

/// The value of `attr` in the first element whose opening tag contains `marker`.
fn attr_of(dom: &str, marker: &str, attr: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

#[test]
fn the_front_panel_shows_a_failed_slot_and_the_rebuild_in_a_browser() {
    let mut lab = Lab::new(1, 1500);
    let (cfg, _disks) = raid_lab_with(
        &lab,
        4,
        1,
        96 * MIB,
        ", clean: true",
        "min_rate: 1MiB, max_rate: 1MiB",
    );
    lab.start(&["serve", "-c", cfg.to_str().unwrap()]);
    let io = lab.verified_io(0, "1.0", 4, "randrw");
    verified_clean(io, "I/O before the failure");
    ctl(&lab, "fail 0.1");
    // The spare (disk 4) takes role 1 and the rebuild starts, throttled to 1 MiB/s.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lun_state(&lab).contains("recovering") {
        assert!(
            Instant::now() < deadline,
            "no rebuild started:\n{}",
            ctl(&lab, "status")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));

    let url = "http://127.0.0.1:9478/";
    let out = chromium(&lab, &["--dump-dom"], url);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("data-polls"),
        "chromium did not render the page: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    let polls: u32 = attr_of(&dom, "id=\"updated\"", "data-polls")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert!(polls >= 1, "the page never got its document:\n{dom}");
    assert_eq!(
        attr_of(&dom, "data-slot=\"1\"", "data-state").as_deref(),
        Some("failed"),
        "slot 1 should show failed:\n{dom}"
    );
    assert_eq!(
        attr_of(&dom, "data-slot=\"4\"", "data-state").as_deref(),
        Some("recovering"),
        "the spare's slot should show recovering:\n{dom}"
    );
    for n in [0, 2, 3] {
        assert_eq!(
            attr_of(&dom, &format!("data-slot=\"{n}\""), "data-state").as_deref(),
            Some("up"),
            "slot {n}:\n{dom}"
        );
    }
    assert_eq!(
        attr_of(&dom, "data-lun=\"0\"", "data-sync").as_deref(),
        Some("rebuild"),
        "{dom}"
    );
    let percent: f64 = attr_of(&dom, "data-lun=\"0\"", "data-percent")
        .and_then(|p| p.parse().ok())
        .expect("the LUN's rebuild percent");
    assert!(percent > 0.0 && percent < 100.0, "rebuild at {percent} %");
    let state = attr_of(&dom, "data-lun=\"0\"", "data-state").unwrap_or_default();
    assert!(state.contains("recovering"), "LUN state {state}");

    // The screenshot is taken while a host reads and writes (live graphs), during the
    // rebuild; the host's data still verifies.
    let io = lab.verified_io(0, "1.0", 20, "randrw");
    std::thread::sleep(Duration::from_secs(3));
    let shot = screenshot_path();
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&lab, &[&format!("--screenshot={}", shot.display())], url);
    verified_clean(io, "I/O during the rebuild");
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}): {}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot too small"
    );
    println!(
        "front panel: {polls} polls, slot 1 failed, slot 4 recovering, rebuild {percent} %; screenshot {} ({} bytes)",
        shot.display(),
        png.len()
    );
    lab.stop();
}
