//! Configuration errors, each with file, line and column.

use std::fmt;

/// A configuration file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration: {message}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The YAML is malformed or does not fit the schema.
    #[error("{0}")]
    Invalid(Located),
}

/// A message pinned to a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file.
    pub origin: String,
    /// 1-based line (0 if unknown).
    pub line: u64,
    /// 1-based column (0 if unknown).
    pub column: u64,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.origin, self.line, self.column, self.message
        )
    }
}

impl ConfigError {
    /// Builds an error at a position.
    pub fn at(origin: &str, line: u64, column: u64, message: impl Into<String>) -> Self {
        ConfigError::Invalid(Located {
            origin: origin.to_string(),
            line,
            column,
            message: message.into(),
        })
    }

    /// Wraps a serde-saphyr error, keeping its location and its source excerpt.
    pub(crate) fn from_yaml(err: serde_saphyr::Error, origin: &str) -> Self {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        // The crate renders "error: line L column C: message" and a source excerpt naming
        // "<input>"; keep the message and the excerpt, and name the real file.
        let rendered = err.to_string().replace("<input>", origin);
        let message = rendered
            .strip_prefix("error: ")
            .and_then(|rest| rest.split_once(": "))
            .map(|(_, msg)| msg.to_string())
            .unwrap_or(rendered);
        ConfigError::at(origin, line, column, message)
    }

    /// The location, if the error has one.
    pub fn location(&self) -> Option<(u64, u64)> {
        match self {
            ConfigError::Invalid(l) => Some((l.line, l.column)),
            ConfigError::Read { .. } => None,
        }
    }
}
