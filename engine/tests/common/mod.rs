//! Lab helpers for integration tests: network namespaces joined by veth pairs (created and
//! removed by each test), the shelf started inside them, and a raw AoE initiator whose socket
//! lives in a lab namespace. Nothing touches the root namespace's interfaces.
#![allow(dead_code)]

pub mod raid;
pub mod raw;
pub mod relay;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails loudly when a prerequisite is missing.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "'{tool}' is missing: install it with `apt-get install {package}` (README command 1 does)"
    );
    assert!(
        unsafe { libc::geteuid() } == 0,
        "lab tests need root (network namespaces, AF_PACKET)"
    );
}

pub fn run(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A workspace binary: cargo's path when the test belongs to its package, else the one built
/// beside the test executable (`cargo test --workspace` builds every binary).
fn workspace_bin(own: Option<&str>, name: &str) -> PathBuf {
    if let Some(p) = own {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run the suite with `cargo test --workspace`",
        p.display()
    );
    p
}

pub fn binary() -> PathBuf {
    workspace_bin(option_env!("CARGO_BIN_EXE_ethershelf"), "ethershelf")
}

pub fn aoebench() -> PathBuf {
    workspace_bin(option_env!("CARGO_BIN_EXE_aoebench"), "aoebench")
}

/// Deterministic pseudo-random bytes (xorshift) for data written and checked by tests.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn faultfs() -> PathBuf {
    workspace_bin(option_env!("CARGO_BIN_EXE_es-faultfs"), "es-faultfs")
}

/// A shelf namespace and one or more host namespaces, each joined to the shelf by a veth pair.
pub struct Lab {
    pub id: String,
    pub shelf_ns: String,
    pub hosts: Vec<String>,
    /// (shelf-side, host-side) interface names, one pair per host.
    pub links: Vec<(String, String)>,
    pub dir: PathBuf,
    shelf: Option<Child>,
    pub log: PathBuf,
    /// Port mode written into `config` ("packet", "xdp" or "auto").
    pub mode: &'static str,
    /// Further namespaces the lab made (relays), deleted with it.
    pub extra_ns: Vec<String>,
}

impl Lab {
    /// A lab with `hosts` host namespaces at `mtu`, one queue per link, AF_PACKET ports.
    pub fn new(hosts: usize, mtu: u32) -> Lab {
        Lab::with_queues(hosts, mtu, 1)
    }

    /// A lab whose veth links have `queues` receive/transmit queues each way.
    pub fn with_queues(hosts: usize, mtu: u32, queues: u32) -> Lab {
        require("ip", "iproute2");
        let id = format!(
            "{}{}",
            std::process::id() % 100000,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let shelf_ns = format!("es{id}s");
        run(&["ip", "netns", "add", &shelf_ns]);
        // Loopback up: the shelf's default metrics endpoint (127.0.0.1:9478) binds there.
        run(&["ip", "-n", &shelf_ns, "link", "set", "lo", "up"]);
        let dir = std::env::temp_dir().join(format!("es-lab-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            id: id.clone(),
            shelf_ns: shelf_ns.clone(),
            hosts: vec![],
            links: vec![],
            log: dir.join("shelf.log"),
            dir,
            shelf: None,
            mode: "packet",
            extra_ns: vec![],
        };
        for h in 0..hosts {
            let host_ns = format!("es{id}h{h}");
            run(&["ip", "netns", "add", &host_ns]);
            lab.hosts.push(host_ns.clone());
            let (s, hi) = (format!("e{id}s{h}"), format!("e{id}h{h}"));
            let q = queues.to_string();
            run(&[
                "ip",
                "link",
                "add",
                &s,
                "numrxqueues",
                &q,
                "numtxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                &hi,
                "numrxqueues",
                &q,
                "numtxqueues",
                &q,
            ]);
            run(&["ip", "link", "set", &s, "netns", &shelf_ns]);
            run(&["ip", "link", "set", &hi, "netns", &host_ns]);
            let mtu = mtu.to_string();
            run(&["ip", "-n", &shelf_ns, "link", "set", &s, "mtu", &mtu, "up"]);
            run(&[
                "ip", "-n", &host_ns, "link", "set", &hi, "mtu", &mtu, "promisc", "on", "up",
            ]);
            lab.links.push((s, hi));
        }
        lab
    }

    /// The shelf's Prometheus text (default endpoint, inside the shelf namespace).
    pub fn metrics(&self) -> String {
        require("curl", "curl");
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.shelf_ns,
                "curl",
                "-sf",
                "--max-time",
                "10",
            ])
            .arg("http://127.0.0.1:9478/metrics")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "metrics scrape failed: {o:?}\n{}",
            self.log_text()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn shelf_if(&self, i: usize) -> &str {
        &self.links[i].0
    }
    pub fn host_if(&self, i: usize) -> &str {
        &self.links[i].1
    }

    /// Moves every host link into host 0's namespace (one multipath initiator); returns the
    /// host interfaces comma-separated, as aoebench's `--if` takes them.
    pub fn gather_host_links(&self) -> String {
        for h in 1..self.hosts.len() {
            let link = self.host_if(h);
            run(&[
                "ip",
                "-n",
                &self.hosts[h],
                "link",
                "set",
                link,
                "netns",
                &self.hosts[0],
            ]);
            run(&["ip", "-n", &self.hosts[0], "link", "set", link, "up"]);
        }
        let ifs: Vec<&str> = (0..self.hosts.len()).map(|h| self.host_if(h)).collect();
        ifs.join(",")
    }

    /// Steers host 0's transmissions by CPU (XPS): CPU q sends on queue q of every link, so
    /// initiator threads pinned to different CPUs reach different shelf queues.
    pub fn steer_host_queues(&self, queues: u32) {
        for h in 0..self.hosts.len() {
            for q in 0..queues {
                let path = format!("/sys/class/net/{}/queues/tx-{q}/xps_cpus", self.host_if(h));
                run(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.hosts[0],
                    "sh",
                    "-c",
                    &format!("echo {:x} > {path}", 1u64 << q),
                ]);
            }
        }
    }

    /// A sparse backing file of `bytes`.
    pub fn disk(&self, name: &str, bytes: u64) -> PathBuf {
        let p = self.dir.join(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(bytes).unwrap();
        p
    }

    /// Writes a config file with one LUN per (slot, file) on every shelf port.
    pub fn config(&self, shelf: u16, luns: &[(u8, &Path)], extra_lun_yaml: &str) -> PathBuf {
        let mut y = format!(
            "shelf: {shelf}\nstate_dir: {}\nadmin: {{ socket: {} }}\nports:\n",
            self.dir.join("state").display(),
            self.dir.join("admin.sock").display()
        );
        for (s, _) in &self.links {
            y += &format!("  - {{ interface: {s}, mode: {} }}\n", self.mode);
        }
        y += "luns:\n";
        for (slot, file) in luns {
            y += &format!(
                "  - slot: {slot}\n    file: {}\n{extra_lun_yaml}",
                file.display()
            );
        }
        let p = self.dir.join("shelf.yaml");
        std::fs::write(&p, y).unwrap();
        p
    }

    /// Starts `ethershelf ARGS` in the shelf namespace and waits until it serves.
    pub fn start(&mut self, args: &[&str]) {
        assert!(self.shelf.is_none(), "shelf already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.shelf_ns])
            .arg(binary())
            .args(args)
            .env("ETHERSHELF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.shelf = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        let serving_count = self.log_text().matches(" serving ").count();
        loop {
            let text = self.log_text();
            if text.matches(" serving ").count() > serving_count {
                return;
            }
            if let Some(status) = self.shelf.as_mut().unwrap().try_wait().unwrap() {
                panic!("ethershelf exited early ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "ethershelf did not start serving in 15 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running shelf's PID.
    pub fn shelf_pid(&self) -> Option<u32> {
        self.shelf.as_ref().map(Child::id)
    }

    /// The running shelf's resident memory in KiB.
    pub fn shelf_rss_kib(&self) -> u64 {
        let pid = self.shelf_pid().expect("shelf running");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS of the shelf")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` to the shelf and waits for it to exit; returns its exit status.
    pub fn stop_with(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.shelf.take().expect("shelf not running");
        // `ip netns exec` execs the target, so the child PID is ethershelf itself.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                // What each thread of the stuck shelf is doing, before it is killed.
                let mut threads = String::new();
                if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", child.id())) {
                    for t in dir.flatten() {
                        let p = t.path();
                        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
                        let stat = read("stat");
                        let fields: Vec<&str> = stat.split_whitespace().collect();
                        threads += &format!(
                            "{} state={} utime={} wchan={}\n{}",
                            read("comm").trim(),
                            fields.get(2).unwrap_or(&"?"),
                            fields.get(13).unwrap_or(&"?"),
                            read("wchan"),
                            read("stack")
                        );
                    }
                }
                eprintln!("threads of the stuck shelf:\n{threads}");
                if let Ok(o) = Command::new("gdb")
                    .args([
                        "-p",
                        &child.id().to_string(),
                        "-batch",
                        "-ex",
                        "thread apply all bt 25",
                    ])
                    .output()
                {
                    eprintln!("gdb:\n{}", String::from_utf8_lossy(&o.stdout));
                }
                let _ = child.kill();
                let log = self.log_text();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "ethershelf did not stop within 20 s after signal {signal}; log tail:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Runs a command in host namespace `h` with a time limit.
    pub fn host_cmd(&self, h: usize, secs: u32, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[h],
                "timeout",
                &secs.to_string(),
            ])
            .args(cmd)
            .output()
            .unwrap()
    }

    /// Spawns a command in host namespace `h` (for captures).
    pub fn host_spawn(&self, h: usize, cmd: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[h]])
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Opens a raw initiator on host `h`'s interface.
    pub fn raw(&self, h: usize) -> raw::RawInitiator {
        raw::RawInitiator::open(&self.hosts[h], self.host_if(h))
    }

    /// Lines of the shelf log containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        BufReader::new(self.log_text().as_bytes())
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains(needle))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.shelf.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self
            .hosts
            .iter()
            .chain(&self.extra_ns)
            .chain(std::iter::once(&self.shelf_ns))
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A FUSE mount (es-faultfs) of `backing`, unmounted on drop.
pub struct FaultFs {
    child: Child,
    pub mount: PathBuf,
}

impl FaultFs {
    pub fn mount(backing: &Path, mount: &Path) -> FaultFs {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: load the fuse module (modprobe fuse)"
        );
        std::fs::create_dir_all(mount).unwrap();
        let child = Command::new(faultfs())
            .args(["--backing", backing.to_str().unwrap()])
            .args(["--mount", mount.to_str().unwrap(), "--duration", "300"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_dir(mount).map(|d| d.count()).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "es-faultfs did not mount");
            std::thread::sleep(Duration::from_millis(50));
        }
        FaultFs {
            child,
            mount: mount.to_path_buf(),
        }
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Cores this process may run on (what the shelf spreads its workers over).
pub fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Lab {
    /// Starts aoebench with crc32c verify against `target` (`SHELF.SLOT`) from host `h` for
    /// `secs` (16k blocks, QD4, 8 MiB; killed by `timeout` 60 s after its runtime at worst).
    pub fn verified_io(&self, h: usize, target: &str, secs: u32, rw: &str) -> Child {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[h],
                "timeout",
                &(secs + 60).to_string(),
            ])
            .arg(aoebench())
            .args(["run", "--target", target, "--if", self.host_if(h)])
            .args(["--rw", rw, "--bs", "16k", "--iodepth", "4", "--size", "8m"])
            .args(["--runtime", &format!("{secs}s"), "--verify", "crc32c"])
            .args(["--output-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Waits for an aoebench run of [`Lab::verified_io`] and asserts it saw no errors and no
/// verify failures; returns its job report.
pub fn verified_clean(child: Child, what: &str) -> serde_json::Value {
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{what}: aoebench failed: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let job = doc["jobs"][0].clone();
    assert_eq!(job["errors"], 0, "{what}: {job}");
    assert_eq!(
        job["verify_failures"].as_array().map(Vec::len),
        Some(0),
        "{what}: {job}"
    );
    assert!(
        job["verified_blocks"].as_u64().unwrap_or(0) > 50,
        "{what}: {job}"
    );
    job
}
