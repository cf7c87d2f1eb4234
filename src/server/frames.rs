//! Frame size limits on the PostgreSQL port: a reader between the socket (after TLS) and
//! the protocol decoder that reads each frame's length as it passes and refuses a frame
//! larger than the connection's limit before any of its body is read or buffered.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest frame before authentication: the start-up packet (PostgreSQL allows 10,000
/// bytes) and SASL messages.
pub const BEFORE_AUTHENTICATION: usize = 16 * 1024;

/// A connection's frame limit, shared by its reader and its message loop (which raises
/// it to `max_message_bytes` once the client has authenticated), and the frame it refused.
#[derive(Debug)]
pub struct Limit {
    max: AtomicUsize,
    /// The length of the refused frame (0: none).
    refused: AtomicU64,
}

impl Limit {
    pub fn new(max: usize) -> Arc<Limit> {
        Arc::new(Limit {
            max: AtomicUsize::new(max),
            refused: AtomicU64::new(0),
        })
    }

    pub fn set(&self, max: usize) {
        self.max.store(max, Ordering::SeqCst);
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    /// The length the refused frame announced, if one was refused.
    pub fn refused(&self) -> Option<u64> {
        match self.refused.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }
}

/// Where the reader stands in the stream of frames.
#[derive(Debug)]
struct Framing {
    /// The next frame is the start-up packet, which has no type byte.
    untyped: bool,
    /// Header bytes of the frame being read so far (type byte and length).
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current frame still to pass.
    body: u64,
}

impl Framing {
    fn new() -> Framing {
        Framing {
            untyped: true,
            header: [0; 5],
            have: 0,
            body: 0,
        }
    }

    /// Follow `bytes` through the framing; `Err(length)` at the first frame longer than
    /// `max` (its length as announced, header included).
    fn advance(&mut self, mut bytes: &[u8], max: usize) -> Result<(), u64> {
        while !bytes.is_empty() {
            if self.body > 0 {
                let n = (self.body as usize).min(bytes.len());
                self.body -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let need = if self.untyped { 4 } else { 5 };
            let n = (need - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < need {
                continue;
            }
            let at = need - 4;
            let len = i32::from_be_bytes(self.header[at..at + 4].try_into().expect("4 bytes"));
            self.have = 0;
            self.untyped = false;
            // A length below 4 is the decoder's to refuse; it has no body to skip.
            let len = u64::try_from(len).unwrap_or(0);
            if len > max as u64 + 4 {
                return Err(len);
            }
            self.body = len.saturating_sub(4);
        }
        Ok(())
    }
}

/// A stream whose frames are checked against a [`Limit`].
pub struct Limited<S> {
    inner: S,
    limit: Arc<Limit>,
    framing: Framing,
}

impl<S> Limited<S> {
    /// `io` at the start of the start-up packet; `buffered`: bytes already read from it
    /// (a frame too large among them is refused at the first read).
    pub fn new(inner: S, limit: Arc<Limit>, buffered: &[u8]) -> Limited<S> {
        let mut framing = Framing::new();
        if let Err(len) = framing.advance(buffered, limit.max()) {
            limit.refused.store(len, Ordering::SeqCst);
        }
        Limited {
            inner,
            limit,
            framing,
        }
    }
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "frame larger than the connection's limit",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.limit.refused().is_some() {
            return Poll::Ready(Err(too_large()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let max = this.limit.max();
                if let Err(len) = this.framing.advance(&buf.filled()[before..], max) {
                    this.limit.refused.store(len, Ordering::SeqCst);
                    buf.set_filled(before);
                    return Poll::Ready(Err(too_large()));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_are_followed_across_reads_and_big_ones_refused() {
        let mut stream = 12i32.to_be_bytes().to_vec();
        stream.extend_from_slice(&196608i32.to_be_bytes());
        stream.extend_from_slice(b"ab\0\0");
        stream.extend(frame(b'p', &[7; 100]));
        stream.extend(frame(b'Q', b"SELECT 1\0"));
        // Byte by byte, and whole: the same verdict.
        let mut f = Framing::new();
        for b in &stream {
            f.advance(std::slice::from_ref(b), 200).unwrap();
        }
        Framing::new().advance(&stream, 200).unwrap();
        assert_eq!(Framing::new().advance(&stream, 50), Err(104));
        // A 100 MB header is refused from its five bytes alone.
        let mut f = Framing::new();
        f.advance(&stream, 200).unwrap();
        let mut big = vec![b'Q'];
        big.extend_from_slice(&100_000_004i32.to_be_bytes());
        assert_eq!(f.advance(&big, 64 << 20), Err(100_000_004));
        // Negative lengths pass to the decoder, which refuses them itself.
        let mut f = Framing::new();
        f.advance(&stream, 200).unwrap();
        f.advance(&[b'Q', 0xff, 0xff, 0xff, 0xff], 200).unwrap();
    }
}
