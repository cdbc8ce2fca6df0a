//! Finding the helper, and starting it when it is not running.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_helper_client::{ClientError, connect_stream};
use agent_helper_protocol::Profile;
use interprocess::local_socket::tokio::Stream;

/// How long a starting helper may take to open its socket. It is ready in
/// milliseconds; the margin is for a cold disk and a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between connection attempts while it starts (doubling up to the cap).
const FIRST_RETRY: Duration = Duration::from_millis(10);
const MAX_RETRY: Duration = Duration::from_millis(200);

/// Connects to the profile's helper, starting it first when nothing listens.
pub async fn connect_or_start(profile: &Profile, diag: &mut crate::Diag) -> Result<Stream, String> {
    match connect_stream(&profile.socket).await {
        Ok(s) => return Ok(s),
        // The socket is there but not ours (another user's helper, or a
        // profile folder we may not enter): starting a helper cannot help.
        Err(e @ ClientError::Connect { .. }) if is_permission_denied(&e) => {
            return Err(format!("{e}: the helper there belongs to another user"));
        }
        Err(ClientError::Connect { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    let program = helper_program()?;
    let mut command = Command::new(&program);
    if let Some(dir) = &profile.explicit_dir {
        command.arg("--profile").arg(dir);
    }
    // The browser reads our stdout: the helper must not inherit it.
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    detach(&mut command);
    let mut child = command.spawn().map_err(|e| format!("cannot start the helper {}: {e}", program.display()))?;
    diag.say(&format!("started {} (pid {})", program.display(), child.id()));

    let deadline = Instant::now() + START_TIMEOUT;
    let mut pause = FIRST_RETRY;
    loop {
        let last = match connect_stream(&profile.socket).await {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        // Exit 3 means another helper won the race to start: keep connecting.
        if let Ok(Some(status)) = child.try_wait()
            && status.code() != Some(3)
        {
            let why = match status.code() {
                Some(2) => "its configuration is invalid: run `agent-helper check-config`",
                _ => "see BPClient.log",
            };
            return Err(format!("the helper {} exited at start ({status}): {why}", program.display()));
        }
        if Instant::now() >= deadline {
            return Err(format!("the helper did not open its socket within {} s: {last}", START_TIMEOUT.as_secs()));
        }
        // Polling is the only signal a socket that does not exist yet can give.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY);
    }
}

fn is_permission_denied(e: &ClientError) -> bool {
    matches!(e, ClientError::Connect { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied)
}

/// `AGENT_HELPER_BIN`, else `agent-helper` beside this executable (how the
/// installers lay them out).
fn helper_program() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("AGENT_HELPER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot find the bridge's own path: {e}"))?;
    let name = if cfg!(windows) { "agent-helper.exe" } else { "agent-helper" };
    let program = me.with_file_name(name);
    if program.exists() {
        Ok(program)
    } else {
        Err(format!("the helper is not installed beside the bridge ({} is missing)", program.display()))
    }
}

/// The helper outlives the bridge: browsers end a host's whole process group
/// (Unix) or job (Windows) when the extension disconnects.
fn detach(command: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        const CREATE_BREAKAWAY_FROM_JOB: u32 = 0x0100_0000;
        command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_BREAKAWAY_FROM_JOB);
    }
}
