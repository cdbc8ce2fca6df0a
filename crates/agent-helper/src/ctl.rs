//! `agent-helper ctl`: one request to the running helper, or its event stream.
//!
//! The answer is printed as JSON on stdout. Errors are printed as
//! `{"error":{"code":…,"message":…}}` with a non-zero exit; besides the
//! helper's own codes, ctl has `helper-not-running` (exit 3),
//! `connection-lost` (exit 3), `timeout` (exit 1) and `invalid-json` (exit 2).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use agent_helper_client::{Client, ClientError};
use agent_helper_protocol::Profile;
use serde_json::{Value, json};

use agent_helper::runner::{EXIT_CONFIG, EXIT_FAILURE, EXIT_UNAVAILABLE};

fn fail(code: &str, message: impl std::fmt::Display, exit: u8) -> ExitCode {
    println!("{}", json!({ "error": { "code": code, "message": message.to_string() } }));
    ExitCode::from(exit)
}

pub fn run(profile_dir: Option<&Path>, method: &str, params: Option<&str>, timeout_secs: u64) -> ExitCode {
    let profile = match Profile::resolve(profile_dir) {
        Ok(p) => p,
        Err(e) => return fail("invalid-params", e, EXIT_CONFIG),
    };
    let params = match params.map(serde_json::from_str::<Value>) {
        None => json!({}),
        Some(Ok(v @ Value::Object(_))) => v,
        Some(Ok(_)) => return fail("invalid-json", "JSON_PARAMS must be a JSON object", EXIT_CONFIG),
        Some(Err(e)) => return fail("invalid-json", format!("JSON_PARAMS: {e}"), EXIT_CONFIG),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail("internal", e, EXIT_FAILURE),
    };
    runtime.block_on(async {
        let mut client = match Client::connect(&profile.socket).await {
            Ok(c) => c,
            Err(e) => return fail("helper-not-running", e, EXIT_UNAVAILABLE),
        };
        if method == "events" {
            return print_events(&mut client).await;
        }
        match tokio::time::timeout(Duration::from_secs(timeout_secs), client.request(method, params)).await {
            Err(_) => fail("timeout", format!("no answer within {timeout_secs} s"), EXIT_FAILURE),
            Ok(Err(e)) => fail("connection-lost", e, EXIT_UNAVAILABLE),
            Ok(Ok(Ok(result))) => {
                println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(Ok(Err(error))) => {
                println!("{}", json!({ "error": error }));
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}

async fn print_events(client: &mut Client) -> ExitCode {
    let mut out = std::io::stdout();
    loop {
        match client.next_event().await {
            Ok(event) => {
                let line = serde_json::to_string(&event).unwrap_or_default();
                // A closed stdout (`| head`) ends the stream quietly.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            Err(ClientError::Closed) => return fail("connection-lost", "the helper stopped", EXIT_UNAVAILABLE),
            Err(e) => return fail("connection-lost", e, EXIT_UNAVAILABLE),
        }
    }
}
