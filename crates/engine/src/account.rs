//! The agent's account and the small state file that remembers it.
//!
//! `state.json` holds the username of a remembered account, never a password:
//! `{"account":{"username":"alice","remembered":true}}`.

use std::path::Path;

use agent_helper_protocol::Password;
use agent_helper_protocol::methods::AccountStatus;
use serde::{Deserialize, Serialize};

const MAX_STATE_BYTES: u64 = 64 * 1024;
pub(crate) const MAX_USERNAME_LEN: usize = 256;
pub(crate) const MAX_PASSWORD_LEN: usize = 1024;

pub(crate) struct Account {
    pub username: String,
    /// `None` while a remembered password is still being read from the keyring,
    /// or when the keyring no longer has it.
    pub password: Option<Password>,
    pub remembered: bool,
}

impl Account {
    pub fn status(&self) -> AccountStatus {
        AccountStatus {
            username: self.username.clone(),
            remembered: self.remembered,
            password_available: self.password.is_some(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct StateFile {
    #[serde(default)]
    pub account: Option<RememberedAccount>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RememberedAccount {
    pub username: String,
    pub remembered: bool,
}

impl StateFile {
    /// A missing, oversized or unreadable state file is an empty state: it only
    /// saves the agent from typing a username again.
    pub fn read(path: &Path) -> (StateFile, Option<String>) {
        use std::io::Read;
        let Ok(file) = std::fs::File::open(path) else { return (StateFile::default(), None) };
        let mut text = String::new();
        if file.take(MAX_STATE_BYTES).read_to_string(&mut text).is_err() {
            return (StateFile::default(), Some(format!("{}: not UTF-8, ignored", path.display())));
        }
        match serde_json::from_str::<StateFile>(&text) {
            Ok(s) if s.account.as_ref().is_none_or(|a| valid_username(&a.username).is_ok()) => (s, None),
            Ok(_) => (StateFile::default(), Some(format!("{}: invalid username, ignored", path.display()))),
            Err(e) => (StateFile::default(), Some(format!("{}: {e}, ignored", path.display()))),
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        agent_helper_config::write_atomically(path, &bytes)
    }
}

pub(crate) fn valid_username(username: &str) -> Result<(), String> {
    if username.is_empty() || username.chars().count() > MAX_USERNAME_LEN {
        return Err(format!("username must be 1–{MAX_USERNAME_LEN} characters"));
    }
    if username.chars().any(|c| c.is_control()) {
        return Err("username must not contain control characters".into());
    }
    Ok(())
}

pub(crate) fn valid_password(password: &Password) -> Result<(), String> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(format!("password must be 1–{MAX_PASSWORD_LEN} bytes"));
    }
    Ok(())
}
