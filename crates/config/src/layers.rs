//! Reading the user file and the policy file, and merging them over the defaults.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::MAX_CONFIG_BYTES;
use crate::error::{ConfigError, Problem};
use crate::locate::{line_of, line_of_key};
use crate::schema::{Config, KEYS};

/// A configuration read from disk, with what the API needs to edit and explain it.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// Defaults, then config.toml, then the policy file.
    pub effective: Config,
    pub user_file: PathBuf,
    pub policy_file: Option<PathBuf>,
    /// Keys set by the policy file, sorted.
    pub locked: BTreeSet<String>,
    /// Unknown keys and other things that did not stop loading.
    pub warnings: Vec<String>,
    /// The policy layer as checked at load, re-applied after an edit of config.toml.
    policy_table: toml::Table,
    policy_warnings: Vec<String>,
}

impl LoadedConfig {
    pub fn is_locked(&self, key: &str) -> bool {
        self.locked.contains(key)
    }
}

/// Reads `user_file` (missing = empty) and the policy file (when given, it must
/// exist) and merges them. All or nothing: any problem is an error.
pub fn load(user_file: &Path, policy_file: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    let user_text = read_text(user_file, true)?;
    let policy = match policy_file {
        Some(p) => Some((p, read_text(p, false)?)),
        None => None,
    };
    let mut warnings = Vec::new();
    let policy_table = match &policy {
        Some((path, text)) => parse_layer(path, text, &mut warnings)?,
        None => toml::Table::new(),
    };
    build(user_file, &user_text, policy_file, policy.as_ref().map(|(_, t)| t.as_str()), policy_table, warnings)
}

/// Builds the effective configuration from config.toml's text and an already
/// checked policy layer. Used by [`load`] and when the API edits config.toml.
pub(crate) fn build(
    user_file: &Path,
    user_text: &str,
    policy_file: Option<&Path>,
    policy_text: Option<&str>,
    policy_table: toml::Table,
    policy_warnings: Vec<String>,
) -> Result<LoadedConfig, ConfigError> {
    let mut warnings = policy_warnings.clone();
    let user_table = parse_layer(user_file, user_text, &mut warnings)?;
    let locked = leaf_keys(&policy_table);
    for key in &locked {
        if user_has(&user_table, key) {
            warnings.push(format!(
                "{}: key `{key}` is locked by the administrator's policy; its value here is not used",
                user_file.display()
            ));
        }
    }
    let mut merged = user_table;
    for (section, keys) in &policy_table {
        match (merged.get_mut(section), keys) {
            (Some(toml::Value::Table(into)), toml::Value::Table(from)) => {
                for (k, v) in from {
                    into.insert(k.clone(), v.clone());
                }
            }
            _ => {
                merged.insert(section.clone(), keys.clone());
            }
        }
    }
    // Both layers passed on their own; what can still fail are rules across keys
    // (reconnect_min vs reconnect_max) when the two files disagree.
    let effective = deserialize(&merged, &mut |_| {}).map_err(|(key, message)| {
        ConfigError::Invalid(Problem { file: user_file.to_owned(), line: None, key, message })
    })?;
    if let Some((key, message)) = effective.problems().into_iter().next() {
        let (file, text) = match policy_text {
            Some(t) if line_of_key(t, &key).is_some() => (policy_file.unwrap_or(user_file), t),
            _ => (user_file, user_text),
        };
        return Err(ConfigError::Invalid(Problem {
            file: file.to_owned(),
            line: line_of_key(text, &key),
            key: Some(key),
            message,
        }));
    }
    Ok(LoadedConfig {
        effective,
        user_file: user_file.to_owned(),
        policy_file: policy_file.map(Path::to_owned),
        locked,
        warnings,
        policy_table,
        policy_warnings,
    })
}

impl LoadedConfig {
    /// Re-merges after config.toml changed; the policy layer is reused as checked at start.
    pub(crate) fn rebuild(&self, user_text: &str) -> Result<LoadedConfig, ConfigError> {
        let policy_text = match &self.policy_file {
            Some(p) => Some(read_text(p, false)?),
            None => None,
        };
        build(
            &self.user_file,
            user_text,
            self.policy_file.as_deref(),
            policy_text.as_deref(),
            self.policy_table.clone(),
            self.policy_warnings.clone(),
        )
    }
}

pub(crate) fn read_text(path: &Path, missing_is_empty: bool) -> Result<String, ConfigError> {
    let fail = |message: String| ConfigError::Read { file: path.to_owned(), message };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing_is_empty => return Ok(String::new()),
        Err(e) => return Err(fail(e.to_string())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes).map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(fail(format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    String::from_utf8(bytes).map_err(|e| fail(format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to())))
}

/// Parses one file and checks it on its own: syntax, types, ranges.
/// Unknown keys become warnings that name file and line.
fn parse_layer(path: &Path, text: &str, warnings: &mut Vec<String>) -> Result<toml::Table, ConfigError> {
    let invalid = |line, key, message| ConfigError::Invalid(Problem { file: path.to_owned(), line, key, message });
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        invalid(line, None, e.message().trim().to_owned())
    })?;
    let mut unknown = Vec::new();
    let config = deserialize(&table, &mut |path| unknown.push(path)).map_err(|(key, message)| {
        let line = key.as_deref().and_then(|k| line_of_key(text, k));
        invalid(line, key, message)
    })?;
    let mut unknown: Vec<_> = unknown.into_iter().map(|key| (line_of_key(text, &key), key)).collect();
    unknown.sort();
    for (line, key) in unknown {
        let at = line.map(|l| format!(":{l}")).unwrap_or_default();
        warnings.push(format!("{}{at}: unknown key `{key}` ignored", path.display()));
    }
    if let Some((key, message)) = config.problems().into_iter().next() {
        return Err(invalid(line_of_key(text, &key), Some(key), message));
    }
    Ok(table)
}

/// Deserializes a table into [`Config`], reporting unknown keys through
/// `on_unknown` and errors as (dotted key, message).
fn deserialize(table: &toml::Table, on_unknown: &mut dyn FnMut(String)) -> Result<Config, (Option<String>, String)> {
    let mut track = serde_path_to_error::Track::new();
    let value = toml::Value::Table(table.clone());
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    let result = serde_ignored::deserialize(de, |path| on_unknown(path.to_string()));
    result.map_err(|e: toml::de::Error| {
        let path = track.path().to_string();
        let key = (path != ".").then_some(path);
        (key, e.message().trim().to_owned())
    })
}

/// The `section.key` pairs a policy table sets. Sections that are not tables
/// are not keys of ours and were already reported as unknown.
fn leaf_keys(table: &toml::Table) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (section, v) in table {
        if let toml::Value::Table(t) = v {
            for k in t.keys() {
                let key = format!("{section}.{k}");
                if KEYS.contains(&key.as_str()) {
                    out.insert(key);
                }
            }
        }
    }
    out
}

fn user_has(table: &toml::Table, key: &str) -> bool {
    let Some((section, k)) = key.split_once('.') else { return false };
    table.get(section).and_then(|s| s.as_table()).is_some_and(|t| t.contains_key(k))
}
