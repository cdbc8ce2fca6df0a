//! `install-browser-hosts` / `uninstall-browser-hosts`: prints what was
//! written or removed as JSON; errors as `{"error":{code,message}}`, exit 2.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_helper_browser_hosts::{Browser, Request, Scope};
use serde_json::json;

use agent_helper::runner::EXIT_CONFIG;

#[derive(clap::Args)]
pub struct Args {
    /// For every user of this computer (needs administrator rights).
    #[arg(long)]
    system: bool,
    /// Only this browser (chrome, chromium, edge, brave, vivaldi, firefox); repeatable. Default: all.
    #[arg(long = "browser", value_name = "NAME")]
    browsers: Vec<String>,
    /// Write the manifest into DIR instead (a test browser profile); needs one --browser.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The bridge executable. Default: agent-helper-bridge beside this program.
    #[arg(long, value_name = "PATH")]
    bridge: Option<PathBuf>,
    /// Also allow this Chromium extension id (an organisation's own build); repeatable.
    #[arg(long = "chromium-extension-id", value_name = "ID")]
    chromium_ids: Vec<String>,
    /// Also allow this Firefox add-on id; repeatable.
    #[arg(long = "firefox-extension-id", value_name = "ID")]
    firefox_ids: Vec<String>,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    println!("{}", json!({ "error": { "code": "invalid-params", "message": message.to_string() } }));
    ExitCode::from(EXIT_CONFIG)
}

pub fn run(args: Args, install: bool) -> ExitCode {
    let browsers = match args.browsers.iter().map(|b| Browser::parse(b)).collect::<Result<Vec<_>, _>>() {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let bridge = match args.bridge {
        Some(p) => std::path::absolute(&p).unwrap_or(p),
        None => {
            let name = if cfg!(windows) { "agent-helper-bridge.exe" } else { "agent-helper-bridge" };
            match std::env::current_exe() {
                Ok(me) => me.with_file_name(name),
                Err(e) => return fail(format!("cannot find this program's path: {e}")),
            }
        }
    };
    let request = Request {
        browsers,
        scope: if args.system { Scope::System } else { Scope::User },
        dir: args.dir.map(|d| std::path::absolute(&d).unwrap_or(d)),
        bridge,
        extra_chromium_ids: args.chromium_ids,
        extra_firefox_ids: args.firefox_ids,
    };
    let result = if install {
        agent_helper_browser_hosts::install(&request)
    } else {
        agent_helper_browser_hosts::uninstall(&request)
    };
    match result {
        Ok(done) => {
            let key = if install { "installed" } else { "removed" };
            println!("{}", serde_json::to_string_pretty(&json!({ key: done })).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
