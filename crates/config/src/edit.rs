//! Changing one key of config.toml through the API.

use std::io::Write;
use std::path::Path;

use toml_edit::DocumentMut;

use crate::error::{ConfigError, Problem};
use crate::layers::{LoadedConfig, read_text};
use crate::locate::line_of;
use crate::schema::KEYS;

/// Sets `key` (`section.key`) to `value` in config.toml, or removes it when
/// `value` is `null`, keeping the file's comments and layout. The whole new
/// configuration is checked before anything is written, and the file is
/// replaced atomically. Returns the configuration now in force.
pub fn set_key(loaded: &LoadedConfig, key: &str, value: &serde_json::Value) -> Result<LoadedConfig, ConfigError> {
    if !KEYS.contains(&key) {
        return Err(ConfigError::UnknownKey { key: key.to_owned() });
    }
    if loaded.is_locked(key) {
        let policy = loaded.policy_file.clone().unwrap_or_default();
        return Err(ConfigError::Locked { key: key.to_owned(), policy });
    }
    let invalid_value = |message: String| ConfigError::InvalidValue { key: key.to_owned(), message };
    let (section, name) = key.split_once('.').ok_or_else(|| ConfigError::UnknownKey { key: key.to_owned() })?;

    let file = &loaded.user_file;
    let text = read_text(file, true)?;
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        ConfigError::Invalid(Problem {
            file: file.clone(),
            line: e.span().map(|s| line_of(&text, s.start)),
            key: None,
            message: e.message().to_owned(),
        })
    })?;

    if value.is_null() {
        if let Some(t) = doc.get_mut(section).and_then(|s| s.as_table_like_mut()) {
            t.remove(name);
        }
    } else {
        let item = to_toml_item(value).map_err(invalid_value)?;
        let table = doc.entry(section).or_insert(toml_edit::table());
        let Some(table) = table.as_table_like_mut() else {
            return Err(invalid_value(format!("`{section}` in {} is not a table", file.display())));
        };
        table.insert(name, item);
    }

    let new_text = doc.to_string();
    let updated = loaded.rebuild(&new_text).map_err(|e| match e {
        ConfigError::Invalid(p) => invalid_value(p.message),
        other => other,
    })?;
    write_atomically(file, new_text.as_bytes()).map_err(|source| ConfigError::Write { file: file.clone(), source })?;
    Ok(updated)
}

/// JSON → a TOML item, tables written inline so `sip.custom_headers = {…}`
/// stays on the key's own line.
fn to_toml_item(value: &serde_json::Value) -> Result<toml_edit::Item, String> {
    let v = toml::Value::try_from(value).map_err(|e| format!("cannot be written as TOML: {e}"))?;
    let mut wrapper = toml::Table::new();
    wrapper.insert("v".into(), v);
    let snippet = toml::to_string(&wrapper).map_err(|e| e.to_string())?;
    let mut doc: DocumentMut = snippet.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
    let item = doc.remove("v").ok_or("empty value")?;
    match item.into_value() {
        Ok(v) => Ok(toml_edit::Item::Value(v)),
        Err(item) => Ok(item),
    }
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either the
/// old or the new file, never a truncated one: write a temp file in the same
/// directory, flush it to disk, rename it over the target, flush the directory.
/// The file is readable by its owner only.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
