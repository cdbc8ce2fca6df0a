//! Configuration of the helper.
//!
//! Three layers, later ones win: built-in defaults, the user's `config.toml` in
//! the profile, and the administrator's policy file. Every key the policy file
//! sets is *locked*: the API refuses to change it and `getStatus` lists it.
//!
//! A file that cannot be read as a whole is an error naming the file, line and
//! key; the helper never starts on a half-read configuration. Unknown keys are
//! reported as warnings. Changes through the API go to `config.toml` with a
//! temp-file-and-rename write, so a crash leaves either the old or the new file.
//! The keys are documented in `docs/configuration.md`.

mod edit;
mod error;
mod layers;
mod locate;
mod policy;
mod schema;

pub use edit::{set_key, write_atomically};
pub use error::{ConfigError, Problem};
pub use layers::{LoadedConfig, load};
pub use policy::{POLICY_ENV, policy_file, system_policy_file};
pub use schema::{
    AudioConfig, AudioStreams, BrowserConfig, CallsConfig, Codec, CodecsConfig, Config, CustomerField, DesktopConfig,
    DeviceRate, DtmfConfig, DtmfMode, FailoverMode, KEYS, Language, LogConfig, MAX_CUSTOMER_FIELDS, MonitoringConfig,
    RecordingConfig, SipConfig, SipServer, SrtpMode, Transport, check_header,
};

/// Config files larger than this are refused rather than read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
