//! Frames: a 4-byte little-endian payload length, then the payload (UTF-8 JSON).
//!
//! This is the framing Chrome and Firefox use for native messaging, so the bridge
//! relays frames between the browser and the helper's socket unchanged.
//! A declared length above [`MAX_FRAME_LEN`] is never allocated: the payload is
//! read and thrown away in small chunks, which keeps the stream in step so the
//! reader can answer with an error and go on serving the same connection.

use std::io::{self, Read, Write};

/// Largest payload accepted or sent, in bytes (1 MiB, Chrome's own limit for
/// messages from a native host).
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// One frame read from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A payload of at most [`MAX_FRAME_LEN`] bytes.
    Payload(Vec<u8>),
    /// The peer declared a payload larger than [`MAX_FRAME_LEN`]; it was discarded.
    Oversize { declared: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Local side: we were about to send more than the cap allows.
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge { len: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn header(len: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    // Cannot truncate: len <= MAX_FRAME_LEN < u32::MAX.
    Ok((len as u32).to_le_bytes())
}

/// Encodes one frame into a fresh buffer.
pub fn encode(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header(payload.len())?);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Writes one frame and flushes.
pub fn write_frame<W: Write>(w: &mut W, payload: &[u8]) -> Result<(), FrameError> {
    w.write_all(&encode(payload)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames;
/// an end of stream inside a frame is an `UnexpectedEof` error.
pub fn read_frame<R: Read>(r: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let declared = u32::from_le_bytes(head);
    if declared as usize > MAX_FRAME_LEN {
        let skipped = io::copy(&mut r.take(u64::from(declared)), &mut io::sink())?;
        if skipped < u64::from(declared) {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        return Ok(Some(Frame::Oversize { declared }));
    }
    let mut payload = vec![0u8; declared as usize];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame::Payload(payload)))
}

#[cfg(feature = "tokio")]
mod async_io {
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// Async twin of [`write_frame`](super::write_frame).
    pub async fn write_frame_async<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> Result<(), FrameError> {
        w.write_all(&encode(payload)?).await?;
        w.flush().await?;
        Ok(())
    }

    /// Async twin of [`read_frame`](super::read_frame). Not cancel-safe: give
    /// each connection a reader task of its own rather than racing it in `select!`.
    pub async fn read_frame_async<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, FrameError> {
        let mut head = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match r.read(&mut head[got..]).await? {
                0 if got == 0 => return Ok(None),
                0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                n => got += n,
            }
        }
        let declared = u32::from_le_bytes(head);
        if declared as usize > MAX_FRAME_LEN {
            let mut rest = u64::from(declared);
            let mut chunk = [0u8; 16 * 1024];
            while rest > 0 {
                let want = chunk.len().min(usize::try_from(rest).unwrap_or(chunk.len()));
                match r.read(&mut chunk[..want]).await? {
                    0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                    n => rest -= n as u64,
                }
            }
            return Ok(Some(Frame::Oversize { declared }));
        }
        let mut payload = vec![0u8; declared as usize];
        r.read_exact(&mut payload).await?;
        Ok(Some(Frame::Payload(payload)))
    }
}

#[cfg(feature = "tokio")]
pub use async_io::{read_frame_async, write_frame_async};

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn round_trips_a_payload() {
        let bytes = encode(br#"{"id":1}"#).unwrap();
        assert_eq!(&bytes[..4], &8u32.to_le_bytes());
        let mut r = Cursor::new(bytes);
        assert_eq!(read_frame(&mut r).unwrap(), Some(Frame::Payload(br#"{"id":1}"#.to_vec())));
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn oversize_frame_is_skipped_and_the_next_frame_still_reads() {
        let declared = MAX_FRAME_LEN as u32 + 1;
        let mut bytes = declared.to_le_bytes().to_vec();
        bytes.resize(4 + declared as usize, b'x');
        bytes.extend(encode(b"{}").unwrap());
        let mut r = Cursor::new(bytes);
        assert_eq!(read_frame(&mut r).unwrap(), Some(Frame::Oversize { declared }));
        assert_eq!(read_frame(&mut r).unwrap(), Some(Frame::Payload(b"{}".to_vec())));
    }

    #[test]
    fn huge_declared_length_with_short_body_is_an_eof_error_not_an_allocation() {
        let mut r = Cursor::new(u32::MAX.to_le_bytes().to_vec());
        assert!(matches!(read_frame(&mut r), Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof));
    }

    #[test]
    fn eof_inside_header_or_payload_is_an_error() {
        assert!(read_frame(&mut Cursor::new(vec![5u8, 0])).is_err());
        assert!(read_frame(&mut Cursor::new(vec![5u8, 0, 0, 0, b'{'])).is_err());
    }

    #[test]
    fn refuses_to_send_more_than_the_cap() {
        let big = vec![b' '; MAX_FRAME_LEN + 1];
        assert!(matches!(encode(&big), Err(FrameError::TooLarge { .. })));
        assert!(encode(&big[..MAX_FRAME_LEN]).is_ok());
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn async_reader_matches_the_blocking_one() {
        let declared = MAX_FRAME_LEN as u32 + 10;
        let mut bytes = declared.to_le_bytes().to_vec();
        bytes.resize(4 + declared as usize, b'x');
        bytes.extend(encode(b"[1]").unwrap());
        let mut r = &bytes[..];
        assert_eq!(read_frame_async(&mut r).await.unwrap(), Some(Frame::Oversize { declared }));
        assert_eq!(read_frame_async(&mut r).await.unwrap(), Some(Frame::Payload(b"[1]".to_vec())));
        assert_eq!(read_frame_async(&mut r).await.unwrap(), None);
    }
}
