//! Where the agent's SIP password is kept.
//!
//! `login{remember:true}` puts it in the OS keyring (Secret Service on Linux,
//! Keychain on macOS, Credential Manager on Windows) under the profile's service
//! name and the username; `remember:false` keeps it in the helper's memory only.
//! No file of ours ever holds it. Keyring calls can block (D-Bus, an unlock
//! prompt): call them off the engine's event loop.

use agent_helper_protocol::Password;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The OS keyring could not be reached or refused (locked, no Secret Service …).
    #[error("the OS keyring is not available: {0}")]
    Unavailable(String),
    /// The keyring holds something that is not a UTF-8 password.
    #[error("the keyring entry is unreadable: {0}")]
    BadEntry(String),
}

/// A store of passwords by username. The helper uses [`KeyringStore`]; tests of
/// the engine logic may use [`MemoryStore`].
pub trait SecretStore: Send + Sync {
    fn save(&self, username: &str, password: &Password) -> Result<(), CredentialError>;
    /// `Ok(None)` when nothing is stored for this user.
    fn load(&self, username: &str) -> Result<Option<Password>, CredentialError>;
    /// Removing a missing entry is not an error.
    fn delete(&self, username: &str) -> Result<(), CredentialError>;
}

/// The OS keyring, through the `keyring` crate.
pub struct KeyringStore {
    service: String,
}

impl KeyringStore {
    /// `service` names this helper profile's entries (see `Profile::keyring_service`).
    pub fn new(service: impl Into<String>) -> Self {
        Self { service: service.into() }
    }

    fn entry(&self, username: &str) -> Result<keyring::Entry, CredentialError> {
        keyring::Entry::new(&self.service, username).map_err(unavailable)
    }
}

fn unavailable(e: keyring::Error) -> CredentialError {
    match e {
        keyring::Error::BadEncoding(_) => CredentialError::BadEntry(e.to_string()),
        other => CredentialError::Unavailable(other.to_string()),
    }
}

impl SecretStore for KeyringStore {
    fn save(&self, username: &str, password: &Password) -> Result<(), CredentialError> {
        self.entry(username)?.set_password(password.expose()).map_err(unavailable)
    }

    fn load(&self, username: &str) -> Result<Option<Password>, CredentialError> {
        match self.entry(username)?.get_password() {
            Ok(p) => Ok(Some(Password::new(p))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn delete(&self, username: &str) -> Result<(), CredentialError> {
        match self.entry(username)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// Passwords in a map in memory: for tests of logic above the store.
#[derive(Default)]
pub struct MemoryStore {
    entries: std::sync::Mutex<std::collections::HashMap<String, Password>>,
}

impl SecretStore for MemoryStore {
    fn save(&self, username: &str, password: &Password) -> Result<(), CredentialError> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).insert(username.to_owned(), password.clone());
        Ok(())
    }

    fn load(&self, username: &str) -> Result<Option<Password>, CredentialError> {
        Ok(self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(username).cloned())
    }

    fn delete(&self, username: &str) -> Result<(), CredentialError> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(username);
        Ok(())
    }
}
