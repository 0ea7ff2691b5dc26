//! The perf lab: one shelf namespace and one host namespace joined by a veth pair, created
//! here and removed on drop; processes started pinned to a CPU and stopped by PID.
//! Shared by every perf binary; each uses part of it.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Namespace and interface names (fixed, so a crashed run's leftovers are found and removed).
pub const SHELF_NS: &str = "esperf-s";
/// Host namespace.
pub const HOST_NS: &str = "esperf-h";
/// Shelf-side interface.
pub const SHELF_IF: &str = "esp-s0";
/// Host-side interface.
pub const HOST_IF: &str = "esp-h0";
/// A second host (the flooding one), on its own link to a second shelf port.
pub const HOST2_NS: &str = "esperf-h2";
/// The shelf's second port.
pub const SHELF_IF2: &str = "esp-s1";
/// The second host's interface.
pub const HOST2_IF: &str = "esp-h1";

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Runs a command to completion; its stdout, or an error with everything it printed.
pub fn sh(cmd: &mut Command) -> Result<String, String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A binary built beside this one (ethershelf, aoebench).
pub fn bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| std::path::PathBuf::from(name))
}

/// Runs one aoebench job against e1.0 from the host namespace on CPU 0 (1 s ramp, JSON out);
/// returns the job's JSON, or an error if it saw I/O errors.
pub fn aoebench_job(
    rw: &str,
    bs: &str,
    iodepth: u32,
    runtime: f64,
) -> Result<serde_json::Value, String> {
    let out = sh(Command::new("ip")
        .args(["netns", "exec", HOST_NS, "taskset", "-c", "0"])
        .arg(bin("aoebench"))
        .args([
            "run", "--target", "1.0", "--if", HOST_IF, "--rw", rw, "--bs", bs,
        ])
        .args([
            "--iodepth",
            &iodepth.to_string(),
            "--runtime",
            &format!("{runtime}s"),
        ])
        .args([
            "--ramp",
            "1s",
            "--discover-wait",
            "0.5s",
            "--output-format",
            "json",
        ]))?;
    let doc: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("aoebench output: {e}"))?;
    let job = doc["jobs"][0].clone();
    if job["errors"].as_u64().unwrap_or(1) != 0 {
        return Err(format!("aoebench saw I/O errors: {job}"));
    }
    Ok(job)
}

/// The lab; dropping it deletes both namespaces.
pub struct Lab;

impl Lab {
    /// Creates the namespaces and the veth pair at `mtu`.
    pub fn new(mtu: u32) -> Result<Lab, String> {
        Self::remove();
        ip(&["netns", "add", SHELF_NS])?;
        ip(&["netns", "add", HOST_NS])?;
        let lab = Lab;
        ip(&[
            "link", "add", SHELF_IF, "type", "veth", "peer", "name", HOST_IF,
        ])?;
        ip(&["link", "set", SHELF_IF, "netns", SHELF_NS])?;
        ip(&["link", "set", HOST_IF, "netns", HOST_NS])?;
        let m = mtu.to_string();
        ip(&["-n", SHELF_NS, "link", "set", SHELF_IF, "mtu", &m, "up"])?;
        ip(&["-n", HOST_NS, "link", "set", HOST_IF, "mtu", &m, "up"])?;
        Ok(lab)
    }

    /// Adds a second host namespace on its own link to a second shelf port.
    pub fn add_second_host(&self, mtu: u32) -> Result<(), String> {
        ip(&["netns", "add", HOST2_NS])?;
        ip(&[
            "link", "add", SHELF_IF2, "type", "veth", "peer", "name", HOST2_IF,
        ])?;
        ip(&["link", "set", SHELF_IF2, "netns", SHELF_NS])?;
        ip(&["link", "set", HOST2_IF, "netns", HOST2_NS])?;
        let m = mtu.to_string();
        ip(&["-n", SHELF_NS, "link", "set", SHELF_IF2, "mtu", &m, "up"])?;
        ip(&["-n", HOST2_NS, "link", "set", HOST2_IF, "mtu", &m, "up"])?;
        Ok(())
    }

    fn remove() {
        for ns in [SHELF_NS, HOST_NS, HOST2_NS] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        Self::remove();
    }
}

/// A process running in a namespace, pinned to a CPU.
pub struct Pinned {
    child: Child,
    /// Where its stderr goes.
    pub log: std::path::PathBuf,
}

impl Pinned {
    /// Starts `cmd` in `ns` on `cpu` (ip and taskset exec it: the child PID is the program).
    pub fn start(
        ns: &str,
        cpu: u32,
        cmd: &[String],
        log: std::path::PathBuf,
    ) -> Result<Pinned, String> {
        let f = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "taskset", "-c", &cpu.to_string()])
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .map_err(|e| format!("{}: {e}", cmd[0]))?;
        Ok(Pinned { child, log })
    }

    /// Waits until the log contains `needle` (or just `settle` when None).
    pub fn wait_ready(&mut self, needle: Option<&str>, settle: Duration) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        if let Some(n) = needle {
            while !std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .contains(n)
            {
                if let Ok(Some(st)) = self.child.try_wait() {
                    return Err(format!(
                        "target exited early ({st}): {}",
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    ));
                }
                if Instant::now() > deadline {
                    return Err(format!("target not ready in 15 s: {}", self.log.display()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        std::thread::sleep(settle);
        Ok(())
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        (ticks(14) + ticks(15)) / hz
    }

    /// Stops the process (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(mut self) {
        // SAFETY: signals our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The middle value (sorts `v`); 0 when empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The run's UTC time stamp (`20261203T132809Z`) and the short git revision.
pub fn stamp_and_git() -> Result<(String, String), String> {
    let stamp = sh(Command::new("date").args(["-u", "+%Y%m%dT%H%M%SZ"]))?
        .trim()
        .to_string();
    let git = sh(Command::new("git").args(["rev-parse", "--short", "HEAD"]))
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok((stamp, git))
}

/// Writes `doc` (with `schema`, `date`, `git` and `notes` added) and the Markdown table `md`
/// with `notes` as `out/PREFIX-STAMP.{json,md}`; returns the path without extension.
pub fn write_results(
    out: &std::path::Path,
    prefix: &str,
    mut doc: serde_json::Value,
    md: &str,
    notes: &str,
) -> Result<std::path::PathBuf, String> {
    let (stamp, git) = stamp_and_git()?;
    if let Some(map) = doc.as_object_mut() {
        map.insert("schema".into(), 1.into());
        map.insert("date".into(), stamp.clone().into());
        map.insert("git".into(), git.into());
        map.insert("notes".into(), notes.into());
    }
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let base = out.join(format!("{prefix}-{stamp}"));
    let json = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(base.with_extension("json"), json).map_err(|e| e.to_string())?;
    std::fs::write(base.with_extension("md"), format!("{md}\n{notes}\n"))
        .map_err(|e| e.to_string())?;
    eprintln!("results: {}.{{json,md}}", base.display());
    Ok(base)
}
