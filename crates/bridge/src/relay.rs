//! Frames in both directions, unchanged, until either side closes.

use agent_helper_protocol::frame::{Frame, read_frame_async, write_frame_async};
use agent_helper_protocol::{ApiError, ErrorCode, MAX_FRAME_LEN, Response, ServerMessage};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;

/// Why the relay stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The browser closed stdin: the extension disconnected.
    BrowserClosed,
    /// The helper closed the socket (it stopped or restarted).
    HelperClosed,
    /// Reading or writing failed (a side died mid-frame).
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::BrowserClosed => f.write_str("the browser closed the connection"),
            Outcome::HelperClosed => f.write_str("the helper closed the connection"),
            Outcome::Failed(e) => write!(f, "relay failed: {e}"),
        }
    }
}

/// Relays until one side closes. Writes to `output` are whole frames under
/// one lock, so an error frame of ours never splits one of the helper's.
pub async fn run<I, O, S>(mut input: I, output: O, socket: S) -> Outcome
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite,
{
    let (mut from_helper, mut to_helper) = tokio::io::split(socket);
    let output = Mutex::new(output);
    let upstream = async {
        loop {
            match read_frame_async(&mut input).await {
                Ok(Some(Frame::Payload(p))) => {
                    if let Err(e) = write_frame_async(&mut to_helper, &p).await {
                        return Outcome::Failed(format!("to the helper: {e}"));
                    }
                }
                // Answered here: relaying it would need the 1 MiB we refuse to buffer.
                Ok(Some(Frame::Oversize { declared })) => {
                    eprintln!("agent-helper-bridge: discarded a {declared}-byte message from the browser");
                    let error = ApiError::new(
                        ErrorCode::FrameTooLarge,
                        format!("message of {declared} bytes exceeds the {MAX_FRAME_LEN}-byte limit and was discarded"),
                    );
                    let frame = ServerMessage::Response(Response::err(None, error)).to_json();
                    if let Err(e) = write_frame_async(&mut *output.lock().await, &frame).await {
                        return Outcome::Failed(format!("to the browser: {e}"));
                    }
                }
                Ok(None) => return Outcome::BrowserClosed,
                Err(e) => return Outcome::Failed(format!("from the browser: {e}")),
            }
        }
    };
    let downstream = async {
        loop {
            match read_frame_async(&mut from_helper).await {
                Ok(Some(Frame::Payload(p))) => {
                    if let Err(e) = write_frame_async(&mut *output.lock().await, &p).await {
                        return Outcome::Failed(format!("to the browser: {e}"));
                    }
                }
                // The helper caps its own frames; a bigger one would break the
                // browser's port, so it is dropped.
                Ok(Some(Frame::Oversize { declared })) => {
                    eprintln!("agent-helper-bridge: dropped a {declared}-byte message from the helper");
                }
                Ok(None) => return Outcome::HelperClosed,
                Err(e) => return Outcome::Failed(format!("from the helper: {e}")),
            }
        }
    };
    tokio::select! {
        outcome = upstream => outcome,
        outcome = downstream => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_helper_protocol::frame::encode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    async fn next_frame<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
        match read_frame_async(r).await.unwrap() {
            Some(Frame::Payload(p)) => p,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn relays_both_ways_and_answers_oversize_itself() {
        let (mut browser, bridge_io) = duplex(4 * MAX_FRAME_LEN);
        let (bridge_in, bridge_out) = tokio::io::split(bridge_io);
        let (mut helper, bridge_socket) = duplex(4 * MAX_FRAME_LEN);
        let relay = tokio::spawn(run(bridge_in, bridge_out, bridge_socket));

        browser.write_all(&encode(br#"{"id":1,"method":"getStatus"}"#).unwrap()).await.unwrap();
        assert_eq!(next_frame(&mut helper).await, br#"{"id":1,"method":"getStatus"}"#);
        helper.write_all(&encode(br#"{"id":1,"result":{}}"#).unwrap()).await.unwrap();
        assert_eq!(next_frame(&mut browser).await, br#"{"id":1,"result":{}}"#);

        let declared = MAX_FRAME_LEN as u32 + 1;
        let mut big = declared.to_le_bytes().to_vec();
        big.resize(4 + declared as usize, b' ');
        browser.write_all(&big).await.unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&next_frame(&mut browser).await).unwrap();
        assert_eq!(answer["error"]["code"], "frame-too-large");
        // Nothing of it reached the helper; the next request does.
        browser.write_all(&encode(b"{}").unwrap()).await.unwrap();
        assert_eq!(next_frame(&mut helper).await, b"{}");

        drop(browser);
        assert_eq!(relay.await.unwrap(), Outcome::BrowserClosed);
    }

    #[tokio::test]
    async fn ends_when_the_helper_closes_after_passing_on_what_it_sent() {
        let (mut browser, bridge_io) = duplex(1024);
        let (bridge_in, bridge_out) = tokio::io::split(bridge_io);
        let (mut helper, bridge_socket) = duplex(1024);
        let relay = tokio::spawn(run(bridge_in, bridge_out, bridge_socket));
        helper.write_all(&encode(br#"{"event":"x","data":{}}"#).unwrap()).await.unwrap();
        drop(helper);
        assert_eq!(relay.await.unwrap(), Outcome::HelperClosed);
        assert_eq!(next_frame(&mut browser).await, br#"{"event":"x","data":{}}"#);
        let mut rest = Vec::new();
        browser.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "only frames reach stdout");
    }

    #[tokio::test]
    async fn a_browser_dying_mid_frame_is_a_failure_not_a_hang() {
        let (mut browser, bridge_io) = duplex(1024);
        let (bridge_in, bridge_out) = tokio::io::split(bridge_io);
        let (_helper, bridge_socket) = duplex(1024);
        let relay = tokio::spawn(run(bridge_in, bridge_out, bridge_socket));
        browser.write_all(&[10, 0, 0, 0, b'{']).await.unwrap();
        drop(browser);
        assert!(matches!(relay.await.unwrap(), Outcome::Failed(_)));
    }
}
