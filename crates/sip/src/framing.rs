//! Cutting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3) with hard
//! bounds: the head must end within [`MAX_HEAD`] bytes and the declared
//! Content-Length may not exceed [`MAX_BODY`], so a peer can never make us
//! buffer more than that, whatever it declares. CRLF keep-alives (RFC 5626
//! §3.5.1) between messages are skipped and reported.

pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_BODY: usize = 64 * 1024;
/// Largest UDP datagram we accept as one message.
pub const MAX_DATAGRAM: usize = MAX_HEAD + MAX_BODY;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("SIP head longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    #[error("Content-Length {0} over the {MAX_BODY}-byte limit")]
    BodyTooLong(usize),
    #[error("stream message without a valid Content-Length")]
    MissingContentLength,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    Message(Vec<u8>),
    /// A CRLF (or double CRLF) keep-alive; a "ping" deserves a CRLF "pong".
    KeepAlive {
        ping: bool,
    },
}

#[derive(Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
}

impl StreamFramer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed. After
    /// an error the stream cannot be resynchronised: close the connection.
    pub fn poll(&mut self) -> Result<Option<Framed>, FramingError> {
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.drain(..4);
            return Ok(Some(Framed::KeepAlive { ping: true }));
        }
        // A lone CRLF is the server's "pong" (RFC 5626 §4.4.1): report it at
        // once, as the client waits for it. (A server's ping split after its
        // first CRLF reads as two pongs; clients ping, servers do not.)
        if self.buf.starts_with(b"\r\n") && self.buf.get(2) != Some(&b'\r') {
            self.buf.drain(..2);
            return Ok(Some(Framed::KeepAlive { ping: false }));
        }
        let crlfs = self.buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
        if crlfs > 0 {
            if crlfs == self.buf.len() {
                // Could still become a double-CRLF ping: wait for more.
                return Ok(None);
            }
            self.buf.drain(..crlfs);
            return Ok(Some(Framed::KeepAlive { ping: false }));
        }
        let Some(head_end) = find(&self.buf, b"\r\n\r\n") else {
            return if self.buf.len() > MAX_HEAD { Err(FramingError::HeadTooLong) } else { Ok(None) };
        };
        if head_end > MAX_HEAD {
            return Err(FramingError::HeadTooLong);
        }
        let head = String::from_utf8_lossy(&self.buf[..head_end]);
        let len = content_length(&head).ok_or(FramingError::MissingContentLength)?;
        if len > MAX_BODY {
            return Err(FramingError::BodyTooLong(len));
        }
        let total = head_end + 4 + len;
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg: Vec<u8> = self.buf.drain(..total).collect();
        Ok(Some(Framed::Message(msg)))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `Content-Length` (or its compact form `l`) from a message head.
fn content_length(head: &str) -> Option<usize> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
            .then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\nCall-ID: x\r\n\r\nhello";

    #[test]
    fn splits_messages_across_arbitrary_chunks_and_keepalives() {
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(MSG);
        for chunk in [1, 3, 7, stream.len()] {
            let mut f = StreamFramer::default();
            let mut got = vec![];
            for piece in stream.chunks(chunk) {
                f.push(piece);
                while let Some(m) = f.poll().unwrap() {
                    got.push(m);
                }
            }
            let messages: Vec<_> = got.iter().filter(|m| matches!(m, Framed::Message(_))).collect();
            assert_eq!(messages, [&Framed::Message(MSG.to_vec()), &Framed::Message(MSG.to_vec())], "chunk {chunk}");
            assert!(got.iter().any(|m| matches!(m, Framed::KeepAlive { .. })), "chunk {chunk}: {got:?}");
        }
        let mut f = StreamFramer::default();
        f.push(b"\r\n\r\n");
        assert_eq!(f.poll(), Ok(Some(Framed::KeepAlive { ping: true })));
    }

    #[test]
    fn a_lone_crlf_pong_is_reported_at_once() {
        let mut f = StreamFramer::default();
        f.push(b"\r\n");
        assert_eq!(f.poll(), Ok(Some(Framed::KeepAlive { ping: false })));
        assert_eq!(f.poll(), Ok(None));
    }

    #[test]
    fn hostile_lengths_are_refused_before_buffering() {
        let mut f = StreamFramer::default();
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n");
        assert!(matches!(f.poll(), Err(FramingError::BodyTooLong(_) | FramingError::MissingContentLength)));
        let mut f = StreamFramer::default();
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 70000\r\n\r\n");
        assert_eq!(f.poll(), Err(FramingError::BodyTooLong(70000)));
        let mut f = StreamFramer::default();
        f.push(&vec![b'a'; MAX_HEAD + 1]);
        assert_eq!(f.poll(), Err(FramingError::HeadTooLong));
        let mut f = StreamFramer::default();
        f.push(b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n");
        assert_eq!(f.poll(), Err(FramingError::MissingContentLength));
    }
}
