//! The shelf's LUN book: which LUNs exist, on which disks, online or not, with which label,
//! and the hot spares. The YAML file declares the initial LUNs; once the console changes
//! anything the book is written to `state_dir/luns.json` and wins over the YAML's `luns:`
//! and `spares:` at every later start (`ethershelf ctl export-config` prints the result).

use super::persist::{store_json, PersistError};
use ethershelf_config::{Backend, Config, FileSpec, Lun, Raid10Spec, WriteCache, DEFAULT_CHUNK};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the book inside `state_dir`.
pub const BOOK_FILE: &str = "luns.json";

/// What a LUN is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LunKind {
    /// A file or block device given by path (YAML `file:`).
    File,
    /// One shelf disk exported whole (console `make N jbod D`).
    Jbod,
    /// RAID-10 over shelf disks.
    Raid10,
    /// RAID-1: RAID-10 over exactly two disks.
    Raid1,
}

impl LunKind {
    /// Name as the console prints it.
    pub fn name(&self) -> &'static str {
        match self {
            LunKind::File => "file",
            LunKind::Jbod => "jbod",
            LunKind::Raid10 => "raid10",
            LunKind::Raid1 => "raid1",
        }
    }
}

/// One LUN of the book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LunRecord {
    /// Slot (AoE minor).
    pub slot: u8,
    /// What it is made of.
    pub kind: LunKind,
    /// File LUNs: the path.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// File LUNs: byte offset and length inside the file.
    #[serde(default)]
    pub offset: u64,
    /// File LUNs: length (None = to the end).
    #[serde(default)]
    pub length: Option<u64>,
    /// File LUNs: O_DIRECT.
    #[serde(default = "yes")]
    pub direct: bool,
    /// Shelf disks used (jbod: one; RAID: current members in role order).
    #[serde(default)]
    pub disks: Vec<usize>,
    /// RAID chunk in bytes.
    #[serde(default = "default_chunk")]
    pub chunk: u64,
    /// Writes refused.
    #[serde(default)]
    pub read_only: bool,
    /// Writes acknowledged before they are stable.
    #[serde(default)]
    pub writeback: bool,
    /// Answering on the network.
    pub online: bool,
    /// Free-text label (console `label`).
    #[serde(default)]
    pub label: String,
}

fn yes() -> bool {
    true
}

fn default_chunk() -> u64 {
    DEFAULT_CHUNK
}

/// The whole book.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    /// Format version.
    pub version: u32,
    /// LUNs by slot order of creation.
    pub luns: Vec<LunRecord>,
    /// Hot spares (shelf disk indices).
    pub spares: Vec<usize>,
}

impl LunRecord {
    /// The record of a LUN declared in the YAML (online from the start).
    pub fn from_config(lun: &Lun) -> LunRecord {
        let (kind, file, offset, length, direct, disks, chunk) = match &lun.backend {
            Backend::File(f) => (
                LunKind::File,
                Some(f.path.clone()),
                f.offset,
                f.length,
                f.direct,
                vec![],
                DEFAULT_CHUNK,
            ),
            Backend::Raid10(r) => (
                LunKind::Raid10,
                None,
                0,
                None,
                true,
                r.disks.clone(),
                r.chunk,
            ),
        };
        LunRecord {
            slot: lun.slot,
            kind,
            file,
            offset,
            length,
            direct,
            disks,
            chunk,
            read_only: lun.read_only,
            writeback: lun.write_cache == WriteCache::Writeback,
            online: true,
            label: String::new(),
        }
    }

    /// The LUN as the configuration types describe it (`disks` resolves jbod disk numbers).
    pub fn to_config(&self, disks: &[PathBuf]) -> Result<Lun, String> {
        let backend = match self.kind {
            LunKind::File => Backend::File(FileSpec {
                path: self
                    .file
                    .clone()
                    .ok_or_else(|| format!("LUN {}: file LUN without a path", self.slot))?,
                offset: self.offset,
                length: self.length,
                direct: self.direct,
                create: false,
            }),
            LunKind::Jbod => {
                let d = *self
                    .disks
                    .first()
                    .ok_or_else(|| format!("LUN {}: jbod without a disk", self.slot))?;
                Backend::File(FileSpec {
                    path: disks
                        .get(d)
                        .cloned()
                        .ok_or_else(|| format!("LUN {}: disk {d} is not in disks:", self.slot))?,
                    offset: 0,
                    length: None,
                    direct: self.direct,
                    create: false,
                })
            }
            LunKind::Raid10 | LunKind::Raid1 => {
                if let Some(d) = self.disks.iter().find(|d| **d >= disks.len()) {
                    return Err(format!("LUN {}: disk {d} is not in disks:", self.slot));
                }
                Backend::Raid10(Raid10Spec {
                    disks: self.disks.clone(),
                    chunk: self.chunk,
                    clean: false,
                    // A start is degraded on its own only where the array already was (the
                    // superblocks say which roles were out); a disk that vanished while the
                    // shelf was down stops the array instead of being silently left out.
                    degraded_start: false,
                })
            }
        };
        Ok(Lun {
            slot: self.slot,
            backend,
            read_only: self.read_only,
            write_cache: if self.writeback {
                WriteCache::Writeback
            } else {
                WriteCache::Writethrough
            },
            mask: vec![],
            access: Default::default(),
        })
    }
}

impl Book {
    /// Where the book of `config` lives.
    pub fn path(config: &Config) -> PathBuf {
        config.state_dir.join(BOOK_FILE)
    }

    /// The YAML's LUNs and spares, all online.
    pub fn from_config(config: &Config) -> Book {
        Book {
            version: 1,
            luns: config.luns.iter().map(LunRecord::from_config).collect(),
            spares: config.spares.clone(),
        }
    }

    /// Reads the book at `path`; `Ok(None)` when the console never changed anything.
    pub fn load(path: &Path) -> Result<Option<Book>, PersistError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| PersistError::Corrupt {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PersistError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the book atomically.
    pub fn store(&self, path: &Path) -> Result<(), PersistError> {
        store_json(self, path)
    }

    /// The configuration with this book's LUNs and spares (YAML masks of LUNs it keeps are
    /// kept too; masks live in each LUN's state file anyway).
    pub fn apply(&self, config: &Config) -> Result<Config, String> {
        let mut out = config.clone();
        out.luns = self
            .luns
            .iter()
            .map(|r| {
                let mut lun = r.to_config(&config.disks)?;
                if let Some(old) = config.luns.iter().find(|l| l.slot == r.slot) {
                    lun.mask = old.mask.clone();
                    lun.access = old.access.clone();
                }
                Ok(lun)
            })
            .collect::<Result<_, String>>()?;
        out.spares = self.spares.clone();
        if let Some(d) = out.spares.iter().find(|d| **d >= config.disks.len()) {
            return Err(format!("spare disk {d} is not in disks:"));
        }
        Ok(out)
    }

    /// The shelf as a YAML document: the base file's ports and settings with this book's
    /// LUNs (labels and offline state as comments, which the YAML does not carry).
    pub fn export_yaml(&self, config: &Config, access: &super::AccessBook) -> String {
        use std::fmt::Write as _;
        let mut y = String::new();
        let _ = writeln!(
            y,
            "# ethershelf configuration exported from the running shelf"
        );
        let _ = writeln!(y, "shelf: {}", config.shelf);
        let _ = writeln!(
            y,
            "state_dir: {}",
            quote(&config.state_dir.display().to_string())
        );
        let _ = writeln!(y, "buffer_count: {}", config.buffer_count);
        let _ = writeln!(
            y,
            "admin: {{ socket: {} }}",
            quote(&config.admin_socket.display().to_string())
        );
        match config.metrics {
            ethershelf_config::MetricsListen::Default => {}
            ethershelf_config::MetricsListen::Off => {
                let _ = writeln!(y, "metrics: {{ listen: off }}");
            }
            ethershelf_config::MetricsListen::At(a) => {
                let _ = writeln!(y, "metrics: {{ listen: \"{a}\" }}");
            }
        }
        if !config.cpus.is_empty() {
            let _ = writeln!(y, "cpus: {:?}", config.cpus);
        }
        if let Some(w) = config.workers {
            let _ = writeln!(y, "workers: {w}");
        }
        if config.sqpoll {
            let _ = writeln!(y, "sqpoll: true");
        }
        let _ = writeln!(
            y,
            "rebuild: {{ min_rate: {}, max_rate: {} }}",
            config.rebuild.min, config.rebuild.max
        );
        let _ = writeln!(y, "ports:");
        for p in &config.ports {
            let _ = write!(
                y,
                "  - {{ interface: {}, mode: {}",
                quote(&p.interface),
                p.mode
            );
            if let Some(m) = p.max_sectors {
                let _ = write!(y, ", max_sectors: {m}");
            }
            let _ = writeln!(y, " }}");
        }
        if !config.disks.is_empty() {
            let _ = writeln!(y, "disks:");
            for (i, d) in config.disks.iter().enumerate() {
                let _ = writeln!(
                    y,
                    "  - {}   # {}.{i}",
                    quote(&d.display().to_string()),
                    config.shelf
                );
            }
        }
        if !self.spares.is_empty() {
            let _ = writeln!(y, "spares: {:?}", self.spares);
        }
        y.push_str(&access.export_shelf_yaml());
        let _ = writeln!(y, "luns:");
        for r in &self.luns {
            let mut notes = Vec::new();
            if !r.online {
                notes.push("offline".to_string());
            }
            if !r.label.is_empty() {
                notes.push(format!("label {:?}", r.label));
            }
            if r.kind != LunKind::File && r.kind != LunKind::Raid10 {
                notes.push(format!("made as {}", r.kind.name()));
            }
            let note = if notes.is_empty() {
                String::new()
            } else {
                format!("   # {}", notes.join(", "))
            };
            let _ = writeln!(y, "  - slot: {}{note}", r.slot);
            match r.kind {
                LunKind::File | LunKind::Jbod => {
                    let path = match r.kind {
                        LunKind::Jbod => r
                            .disks
                            .first()
                            .and_then(|d| config.disks.get(*d))
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        _ => r
                            .file
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                    };
                    let _ = writeln!(y, "    file: {}", quote(&path));
                    if r.offset != 0 {
                        let _ = writeln!(y, "    offset: {}", r.offset);
                    }
                    if let Some(l) = r.length {
                        let _ = writeln!(y, "    length: {l}");
                    }
                    if !r.direct {
                        let _ = writeln!(y, "    direct: false");
                    }
                }
                LunKind::Raid10 | LunKind::Raid1 => {
                    let _ = writeln!(
                        y,
                        "    raid10: {{ disks: {:?}, chunk: {} }}",
                        r.disks, r.chunk
                    );
                }
            }
            if r.read_only {
                let _ = writeln!(y, "    read_only: true");
            }
            y.push_str(&access.export_lun_yaml(r.slot));
            let _ = writeln!(
                y,
                "    write_cache: {}",
                if r.writeback {
                    "writeback"
                } else {
                    "writethrough"
                }
            );
        }
        y
    }
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}
