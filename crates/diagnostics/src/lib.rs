//! Diagnostics an administrator or support engineer can ask an agent for.
//!
//! - [`logging`]: `BPClient.log`, the client log named as in the product it
//!   replaces, rotated by size under a fixed active name, written off the
//!   caller's thread, level changeable at run time.
//! - [`redact`]: passwords, `Authorization` values and tokens never reach a log
//!   line, a diagnostics bundle or panic output.
//! - [`bundle`]: the collect-diagnostics zip.

pub mod bundle;
pub mod logging;
pub mod redact;

pub use bundle::{BundleEntry, BundleError, BundleInfo, collect};
pub use logging::{LOG_FILE_NAME, LogError, LogSettings, Logging, init};
