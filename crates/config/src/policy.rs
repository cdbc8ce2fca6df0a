//! Where the administrator's policy file lives.

use std::path::PathBuf;

/// Points at a policy file for development and tests. It is ignored whenever the
/// system policy file exists, so a user cannot escape the administrator's policy.
pub const POLICY_ENV: &str = "AGENT_HELPER_POLICY";

/// The system-wide policy file of this OS (writable by administrators only).
pub fn system_policy_file() -> PathBuf {
    if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/Agent Helper/policy.toml")
    } else if cfg!(windows) {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
        PathBuf::from(base).join("Agent Helper").join("policy.toml")
    } else {
        PathBuf::from("/etc/agent-helper/policy.toml")
    }
}

/// The policy file in force, if any, and a warning when `AGENT_HELPER_POLICY`
/// was set but overruled by the system file.
pub fn policy_file() -> (Option<PathBuf>, Option<String>) {
    let system = system_policy_file();
    let from_env = std::env::var_os(POLICY_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
    if system.exists() {
        let warning = from_env.map(|p| {
            format!("{POLICY_ENV}={} ignored: the system policy {} is in force", p.display(), system.display())
        });
        return (Some(system), warning);
    }
    (from_env, None)
}
