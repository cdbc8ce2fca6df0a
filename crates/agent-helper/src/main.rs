//! `agent-helper`: runs the helper, or talks to a running one.
//!
//! ```text
//! agent-helper [--profile DIR]                  the desktop app when there is one, else headless
//! agent-helper --headless [--profile DIR]       the engine with no window (CI, VDI, servers)
//! agent-helper ctl [--profile DIR] METHOD [JSON_PARAMS]
//! agent-helper ctl [--profile DIR] events       every event, one JSON line each
//! agent-helper check-config [--profile DIR]     validate config.toml and the policy file
//! agent-helper install-browser-hosts [--system] [--browser NAME]… [--dir DIR]
//! agent-helper uninstall-browser-hosts [--system] [--browser NAME]… [--dir DIR]
//! ```
//! Exit codes: 0 success, 1 failure (an error answer from the helper), 2 bad
//! configuration or usage, 3 no helper to talk to (ctl) or one already runs (headless).

mod browser_hosts;
mod ctl;
mod headless;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "agent-helper",
    version,
    about = "Agent Helper: softphone and desktop companion of the web Agent Desktop"
)]
struct Cli {
    /// Keep every per-instance file (config, socket, logs, recordings, state) under DIR.
    #[arg(long, global = true, env = "AGENT_HELPER_PROFILE", value_name = "DIR")]
    profile: Option<PathBuf>,
    /// Run the engine without any window; no display needed.
    #[arg(long)]
    headless: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Send one request to the running helper and print the JSON answer,
    /// or print every event (METHOD = events).
    Ctl {
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// A method such as getStatus, or `events`.
        method: String,
        /// Parameters as a JSON object, e.g. '{"level":"debug"}'.
        params: Option<String>,
    },
    /// Check config.toml and the administrator's policy file, print the effective configuration.
    CheckConfig,
    /// Register agent-helper-bridge as the native-messaging host of the
    /// Agent Helper extension (Chrome, Chromium, Edge, Brave, Vivaldi, Firefox).
    InstallBrowserHosts(browser_hosts::Args),
    /// Remove what install-browser-hosts wrote.
    UninstallBrowserHosts(browser_hosts::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Ctl { timeout, method, params }) => {
            ctl::run(cli.profile.as_deref(), &method, params.as_deref(), timeout)
        }
        Some(Command::CheckConfig) => headless::check_config(cli.profile.as_deref()),
        Some(Command::InstallBrowserHosts(args)) => browser_hosts::run(args, true),
        Some(Command::UninstallBrowserHosts(args)) => browser_hosts::run(args, false),
        None => {
            if !cli.headless {
                headless::exec_desktop_if_available();
            }
            headless::run(cli.profile.as_deref())
        }
    }
}
