//! The ethershelf configuration: one YAML file describing the shelf, its ports and its LUNs.
//!
//! Parsing uses `serde-saphyr` (serde_yaml is archived). Unknown keys are errors, and every
//! error names the file, line and column and says what would be right.

pub mod access;
pub mod disks;
mod error;
mod schema;
mod size;
mod validate;
mod validate_access;

pub use error::ConfigError;
pub use schema::{
    Backend, CecConfig, Config, FileSpec, Lun, Management, ManagementAddress, MetricsListen, Port,
    PortMode, Raid10Spec, RebuildRates, WriteCache, DEFAULT_ADMIN_SOCKET, DEFAULT_BUFFER_COUNT,
    DEFAULT_CEC_SESSIONS, DEFAULT_CHUNK, DEFAULT_METRICS_LISTEN, DEFAULT_STATE_DIR,
    MAX_CEC_SESSIONS,
};
pub use size::ByteSize;

use std::path::Path;

/// Reads and validates the YAML file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates YAML `text`; `origin` names the file in error messages. `disks: auto`
/// looks at this machine's disks.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    parse_with_disks(text, origin, &disks::DiskProbe::system)
}

/// [`parse`], with `disks: auto` answered by `probe` (tests, or another root).
pub fn parse_with_disks(
    text: &str,
    origin: &str,
    probe: &dyn Fn() -> disks::DiskProbe,
) -> Result<Config, ConfigError> {
    let raw: schema::RawConfig =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::from_yaml(e, origin))?;
    validate::validate(raw, origin, probe)
}

#[cfg(test)]
mod tests;
