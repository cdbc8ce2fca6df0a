use std::path::PathBuf;

/// One thing wrong in a configuration file, located as precisely as we can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line, when the problem could be pinned to one.
    pub line: Option<usize>,
    /// Dotted key, e.g. `sip.register_expiry`.
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Configuration fault: the file is not a valid configuration.
    #[error("invalid configuration: {0}")]
    Invalid(Problem),
    /// The file exists but could not be read (permissions, too large …).
    #[error("cannot read {}: {message}", file.display())]
    Read { file: PathBuf, message: String },
    /// Local fault: the new config.toml could not be written; the old one is intact.
    #[error("cannot write {}: {source}", file.display())]
    Write { file: PathBuf, source: std::io::Error },
    /// API caller: the administrator's policy fixes this key.
    #[error("`{key}` is locked by the administrator's policy ({})", policy.display())]
    Locked { key: String, policy: PathBuf },
    /// API caller: no such key.
    #[error("unknown configuration key `{key}`")]
    UnknownKey { key: String },
    /// API caller: the value does not fit the key.
    #[error("invalid value for `{key}`: {message}")]
    InvalidValue { key: String, message: String },
}
