//! A desktop program on the local API: greets the helper, prints its state,
//! then prints every event as it comes (a CRM connector would act on
//! `call-incoming` here).
//!
//! ```text
//! cargo run -p agent-helper-client --example watch -- [PROFILE_DIR] [--once]
//! ```

use agent_helper_client::Client;
use agent_helper_protocol::Profile;
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let dir = args.iter().find(|a| !a.starts_with("--")).map(std::path::PathBuf::from);
    let profile = Profile::resolve(dir.as_deref())?;
    let mut client = Client::connect(&profile.socket).await?;
    let hello = client.request("hello", json!({"client": "watch example", "minHelperVersion": "0.1.0"})).await??;
    println!("helper {} (protocol {})", hello["helperVersion"], hello["protocolVersion"]);
    println!("registration: {}", hello["status"]["registration"]["state"]);
    println!("calls: {}", hello["status"]["calls"]);
    if once {
        // Show one event round trip: our own log-level change comes back to us.
        client.request("setLogLevel", json!({"level": "info"})).await??;
    }
    loop {
        let event = client.next_event().await?;
        println!("{} {}", event.event, event.data);
        if once {
            return Ok(());
        }
    }
}
