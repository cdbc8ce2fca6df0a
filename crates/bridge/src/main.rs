//! `agent-helper-bridge`: the native-messaging host a browser starts for the
//! Agent Helper extension.
//!
//! It relays frames (4-byte length + JSON, the browsers' own framing) between
//! stdin/stdout and the helper's per-user socket and does nothing else: the
//! helper checks every request, the extension checks every page. It starts the
//! helper when none is running, caps frames at 1 MiB both ways, writes nothing
//! but frames to stdout (diagnostics go to stderr, which browsers log, and to
//! `bridge.log` beside BPClient.log) and exits when the browser closes stdin
//! or the helper closes the socket.
//!
//! The profile is the helper's default one, or `AGENT_HELPER_PROFILE` from the
//! browser's environment. Browsers pass the caller's origin (Chromium) or the
//! manifest path and extension id (Firefox) as arguments; they are only logged,
//! since the host manifest's allowed origins already decide who may start us.

mod diag;
mod relay;
mod start;

use diag::Diag;

use std::process::ExitCode;

use agent_helper_protocol::{ApiError, ErrorCode, Profile, Response, ServerMessage};

fn main() -> ExitCode {
    let caller: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent-helper-bridge: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let profile_dir = std::env::var_os("AGENT_HELPER_PROFILE").map(std::path::PathBuf::from);
        let profile = match Profile::resolve(profile_dir.as_deref()) {
            Ok(p) => p,
            Err(e) => return unavailable(&mut Diag::stderr_only(), format!("no helper profile: {e}")).await,
        };
        let mut diag = Diag::open(&profile);
        diag.say(&format!(
            "version {}, caller {caller:?}, socket {}",
            agent_helper_protocol::HELPER_VERSION,
            profile.socket
        ));
        let stream = match start::connect_or_start(&profile, &mut diag).await {
            Ok(s) => s,
            Err(e) => return unavailable(&mut diag, e).await,
        };
        let outcome = relay::run(tokio::io::stdin(), tokio::io::stdout(), stream).await;
        diag.say(&outcome.to_string());
        ExitCode::SUCCESS
    });
    // A read of stdin may still be blocked in tokio's stdin thread: do not
    // wait for it.
    runtime.shutdown_background();
    code
}

/// Tells the extension why there is no helper (one `helper-unavailable`
/// error frame), then exits.
async fn unavailable(diag: &mut Diag, message: String) -> ExitCode {
    diag.say(&message);
    let frame = ServerMessage::Response(Response::err(None, ApiError::new(ErrorCode::HelperUnavailable, message)));
    let mut out = tokio::io::stdout();
    let _ = agent_helper_protocol::frame::write_frame_async(&mut out, &frame.to_json()).await;
    ExitCode::FAILURE
}
