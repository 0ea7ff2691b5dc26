//! Jobs, fio-style: what to run, from command-line flags or a YAML file of several jobs.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The I/O pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rw {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    /// Random reads.
    Randread,
    /// Random writes.
    Randwrite,
    /// Random mixed (rwmixread % reads).
    Randrw,
}

impl Rw {
    /// Does the job read?
    pub fn reads(self) -> bool {
        matches!(self, Rw::Read | Rw::Randread | Rw::Randrw)
    }
    /// Does the job write?
    pub fn writes(self) -> bool {
        matches!(self, Rw::Write | Rw::Randwrite | Rw::Randrw)
    }
    /// Random offsets?
    pub fn random(self) -> bool {
        matches!(self, Rw::Randread | Rw::Randwrite | Rw::Randrw)
    }
}

impl std::str::FromStr for Rw {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "read" => Rw::Read,
            "write" => Rw::Write,
            "randread" => Rw::Randread,
            "randwrite" => Rw::Randwrite,
            "randrw" => Rw::Randrw,
            _ => {
                return Err(format!(
                    "unknown --rw '{s}': use read, write, randread, randwrite or randrw"
                ))
            }
        })
    }
}

/// One job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Name in reports.
    #[serde(default = "default_name")]
    pub name: String,
    /// Pattern.
    pub rw: Rw,
    /// Block size in bytes (multiple of 512), written like "4k" in files and flags.
    #[serde(deserialize_with = "de_size", default = "default_bs")]
    pub bs: u64,
    /// I/Os in flight per job.
    #[serde(default = "default_iodepth")]
    pub iodepth: usize,
    /// Parallel copies of the job, each on its own slice of the region.
    #[serde(default = "one")]
    pub numjobs: usize,
    /// Measured time, in seconds.
    #[serde(default = "default_runtime")]
    pub runtime: f64,
    /// Unmeasured warm-up before, in seconds.
    #[serde(default)]
    pub ramp: f64,
    /// Region size in bytes (default: min(LUN, 1 GiB)).
    #[serde(default, deserialize_with = "de_opt_size")]
    pub size: Option<u64>,
    /// Region start in bytes.
    #[serde(default, deserialize_with = "de_size_default")]
    pub offset: u64,
    /// Read share of randrw, percent.
    #[serde(default = "default_mix")]
    pub rwmixread: u8,
    /// "crc32c" to verify every block read.
    #[serde(default)]
    pub verify: Option<String>,
}

fn default_name() -> String {
    "job".into()
}
fn default_bs() -> u64 {
    4096
}
fn default_iodepth() -> usize {
    1
}
fn one() -> usize {
    1
}
fn default_runtime() -> f64 {
    10.0
}
fn default_mix() -> u8 {
    50
}

/// Parses "4k", "64KiB", "1g", "512".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 4k, 64k, 1g)"))?;
    let m = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => return Err(format!("unknown unit '{u}' in '{s}'")),
    };
    n.checked_mul(m)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// Parses "10s", "500ms", "2m", "10".
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (n, mult) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    n.parse::<f64>()
        .map(|v| v * mult)
        .map_err(|_| format!("'{s}' is not a duration (e.g. 10s, 500ms)"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeText {
    Num(u64),
    Text(String),
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match SizeText::deserialize(d)? {
        SizeText::Num(n) => Ok(n),
        SizeText::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}
fn de_opt_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_size(d).map(Some)
}
fn de_size_default<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    de_size(d)
}

/// A file of jobs: `jobs: [ {name, rw, bs, ...}, ... ]`, run one after the other.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// The jobs.
    pub jobs: Vec<Job>,
}

impl Job {
    /// Checks the job's values; a clear sentence for each mistake.
    pub fn validate(&self) -> Result<(), String> {
        if self.bs == 0 || self.bs % 512 != 0 {
            return Err(format!("bs {} must be a positive multiple of 512", self.bs));
        }
        if self.iodepth == 0 || self.iodepth > 4096 {
            return Err(format!("iodepth {} must be 1..4096", self.iodepth));
        }
        if self.numjobs == 0 || self.numjobs > 63 {
            return Err(format!("numjobs {} must be 1..63", self.numjobs));
        }
        if !(self.runtime > 0.0 && self.runtime <= 86400.0 && (0.0..=3600.0).contains(&self.ramp)) {
            return Err("runtime must be in (0, 86400] s and ramp in [0, 3600] s".into());
        }
        if self.rwmixread > 100 {
            return Err("rwmixread is a percentage, 0..100".into());
        }
        match self.verify.as_deref() {
            None | Some("crc32c") => Ok(()),
            Some(v) => Err(format!("verify '{v}' is not supported: use crc32c")),
        }
    }

    /// Measured duration.
    pub fn runtime(&self) -> Duration {
        Duration::from_secs_f64(self.runtime)
    }
    /// Warm-up duration.
    pub fn ramp(&self) -> Duration {
        Duration::from_secs_f64(self.ramp)
    }
}
