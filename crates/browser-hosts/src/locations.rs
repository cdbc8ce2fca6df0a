//! Where each browser reads native-messaging manifests, per OS and scope.
//! A pure table, so every OS's answer is tested on any OS.

use std::path::{Path, PathBuf};

use crate::{Browser, Error, HOST_NAME};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Linux,
    MacOs,
    Windows,
}

impl Os {
    pub fn current() -> Os {
        if cfg!(target_os = "macos") {
            Os::MacOs
        } else if cfg!(windows) {
            Os::Windows
        } else {
            Os::Linux
        }
    }
}

/// The current user only, or every user of the machine (needs admin rights).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

/// A manifest folder, and on Windows the registry key (under HKCU or HKLM)
/// whose default value must name the manifest file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub dir: PathBuf,
    pub registry_key: Option<String>,
}

pub fn place(os: Os, browser: Browser, scope: Scope, home: &Path) -> Result<Place, Error> {
    use Browser::*;
    let dir = |p: &str| Place { dir: home.join(p), registry_key: None };
    let abs = |p: &str| Place { dir: PathBuf::from(p), registry_key: None };
    Ok(match (os, scope) {
        (Os::Linux, Scope::User) => dir(match browser {
            Chrome => ".config/google-chrome/NativeMessagingHosts",
            Chromium => ".config/chromium/NativeMessagingHosts",
            Edge => ".config/microsoft-edge/NativeMessagingHosts",
            Brave => ".config/BraveSoftware/Brave-Browser/NativeMessagingHosts",
            Vivaldi => ".config/vivaldi/NativeMessagingHosts",
            Firefox => ".mozilla/native-messaging-hosts",
        }),
        (Os::Linux, Scope::System) => abs(match browser {
            Chrome => "/etc/opt/chrome/native-messaging-hosts",
            Chromium => "/etc/chromium/native-messaging-hosts",
            Edge => "/etc/opt/edge/native-messaging-hosts",
            Brave => "/etc/opt/brave.com/brave/native-messaging-hosts",
            Vivaldi => "/etc/opt/vivaldi/native-messaging-hosts",
            Firefox => "/usr/lib/mozilla/native-messaging-hosts",
        }),
        (Os::MacOs, Scope::User) => dir(match browser {
            Chrome => "Library/Application Support/Google/Chrome/NativeMessagingHosts",
            Chromium => "Library/Application Support/Chromium/NativeMessagingHosts",
            Edge => "Library/Application Support/Microsoft Edge/NativeMessagingHosts",
            Brave => "Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts",
            Vivaldi => "Library/Application Support/Vivaldi/NativeMessagingHosts",
            Firefox => "Library/Application Support/Mozilla/NativeMessagingHosts",
        }),
        (Os::MacOs, Scope::System) => abs(match browser {
            Chrome => "/Library/Google/Chrome/NativeMessagingHosts",
            Chromium => "/Library/Application Support/Chromium/NativeMessagingHosts",
            Edge => "/Library/Microsoft/Edge/NativeMessagingHosts",
            Brave => "/Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts",
            Vivaldi => "/Library/Application Support/Vivaldi/NativeMessagingHosts",
            Firefox => "/Library/Application Support/Mozilla/NativeMessagingHosts",
        }),
        (Os::Windows, scope) => {
            let base = match scope {
                Scope::User => home.join(r"AppData\Local\Agent Helper\native-messaging"),
                Scope::System => PathBuf::from(r"C:\ProgramData\Agent Helper\native-messaging"),
            };
            let vendor = match browser {
                Chrome => r"Software\Google\Chrome",
                Chromium => r"Software\Chromium",
                Edge => r"Software\Microsoft\Edge",
                Brave => r"Software\BraveSoftware\Brave-Browser",
                Vivaldi => r"Software\Vivaldi",
                Firefox => r"Software\Mozilla",
            };
            Place {
                dir: base.join(browser.name()),
                registry_key: Some(format!(r"{vendor}\NativeMessagingHosts\{HOST_NAME}")),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_browser_has_a_distinct_place_on_every_os_and_scope() {
        let home = Path::new("/home/agent");
        for os in [Os::Linux, Os::MacOs, Os::Windows] {
            for scope in [Scope::User, Scope::System] {
                let mut seen = std::collections::HashSet::new();
                for b in Browser::ALL {
                    let p = place(os, b, scope, home).unwrap();
                    assert!(seen.insert(p.dir.clone()), "{os:?} {scope:?} {b:?} shares {:?}", p.dir);
                    assert_eq!(p.registry_key.is_some(), os == Os::Windows);
                    assert_eq!(p.dir.starts_with(home), scope == Scope::User, "{os:?} {scope:?} {b:?}");
                }
            }
        }
        assert_eq!(
            place(Os::Windows, Browser::Edge, Scope::User, home).unwrap().registry_key.unwrap(),
            r"Software\Microsoft\Edge\NativeMessagingHosts\org.agent_helper.bridge"
        );
    }
}
