//! The collect-diagnostics bundle: one zip an agent can send to support.
//!
//! ```text
//! agent-helper-diagnostics-20261121-053012.zip
//!   logs/BPClient.log, logs/BPClient.log.1 …   (redacted again on the way in)
//!   config/config.toml, config/policy.toml     (redacted)
//!   versions.json, system.json, status.json …  (entries given by the caller)
//! ```
//! The zip is written to a temp file and renamed into place, and only the
//! newest [`KEEP_BUNDLES`] bundles are kept in the folder.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;

use crate::logging::LOG_FILE_NAME;
use crate::redact::redact;

/// Older bundles beyond this many are deleted.
pub const KEEP_BUNDLES: usize = 5;
const PREFIX: &str = "agent-helper-diagnostics-";
/// A single log or config file larger than this is truncated to its last part.
const MAX_ENTRY_BYTES: u64 = 64 * 1024 * 1024;

/// A file the caller adds to the bundle as is (already free of secrets).
pub struct BundleEntry {
    pub name: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct BundleInfo {
    pub path: PathBuf,
    pub bytes: u64,
    pub files: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot write the diagnostics bundle in {}: {source}", dir.display())]
    Write { dir: PathBuf, source: io::Error },
}

/// Writes a bundle into `out_dir` with the log files of `log_dir`, the given
/// config files (redacted) and the caller's entries.
pub fn collect(
    out_dir: &Path,
    log_dir: &Path,
    config_files: &[(&str, &Path)],
    entries: Vec<BundleEntry>,
) -> Result<BundleInfo, BundleError> {
    let fail = |source| BundleError::Write { dir: out_dir.to_owned(), source };
    std::fs::create_dir_all(out_dir).map_err(fail)?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let mut path = out_dir.join(format!("{PREFIX}{stamp}.zip"));
    for n in 2.. {
        if !path.exists() {
            break;
        }
        path = out_dir.join(format!("{PREFIX}{stamp}-{n}.zip"));
    }

    let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(out_dir).map_err(fail)?;
    let mut zip = zip::ZipWriter::new(tmp);
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut files = Vec::new();
    let mut add = |zip: &mut zip::ZipWriter<_>, name: String, bytes: &[u8]| -> io::Result<()> {
        zip.start_file(name.as_str(), opts).map_err(io::Error::other)?;
        zip.write_all(bytes)?;
        files.push(name);
        Ok(())
    };

    for log in log_files(log_dir).map_err(fail)? {
        let text = read_tail(&log).map_err(fail)?;
        let name = log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        add(&mut zip, format!("logs/{name}"), redact(&text).as_bytes()).map_err(fail)?;
    }
    for (name, file) in config_files {
        match read_tail(file) {
            Ok(text) => add(&mut zip, format!("config/{name}"), redact(&text).as_bytes()).map_err(fail)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
    }
    for e in entries {
        add(&mut zip, e.name, redact(&String::from_utf8_lossy(&e.bytes)).as_bytes()).map_err(fail)?;
    }

    let tmp = zip.finish().map_err(|e| fail(io::Error::other(e)))?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(&path).map_err(|e| fail(e.error))?;
    prune(out_dir, &path);
    let bytes = std::fs::metadata(&path).map_err(fail)?.len();
    Ok(BundleInfo { path, bytes, files })
}

/// BPClient.log and its rotated files, newest first.
fn log_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rank = if name == LOG_FILE_NAME {
            0
        } else if let Some(n) = name.strip_prefix(LOG_FILE_NAME).and_then(|s| s.strip_prefix('.')) {
            match n.parse::<u32>() {
                Ok(n) => n,
                Err(_) => continue,
            }
        } else {
            continue;
        };
        found.push((rank, entry.path()));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The file as text, or its last [`MAX_ENTRY_BYTES`] when it is larger.
fn read_tail(path: &Path) -> io::Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len > MAX_ENTRY_BYTES {
        f.seek(SeekFrom::Start(len - MAX_ENTRY_BYTES))?;
    }
    let mut bytes = Vec::new();
    f.take(MAX_ENTRY_BYTES).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Deletes all but the newest [`KEEP_BUNDLES`] bundles, never `just_written`. Best effort.
fn prune(dir: &Path, just_written: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut bundles: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(PREFIX) && n.ends_with(".zip") && e.path() != just_written
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    bundles.sort();
    let excess = (bundles.len() + 1).saturating_sub(KEEP_BUNDLES);
    for (_, old) in &bundles[..excess] {
        let _ = std::fs::remove_file(old);
    }
}
