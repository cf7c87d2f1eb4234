//! Limits on sessions: how many authenticated ones may be open on both ports (a client
//! past the limit gets PostgreSQL's `53300` error), when an idle one is closed, and each session's activity
//! (statements running, the end of the last one) that the idle timeout reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::locks::Unpoisoned;
use bytes::BytesMut;
use pgwire::error::ErrorInfo;
use pgwire::messages::Message;
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::startup::{GssEncRequest, SslRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The metadata key where a session keeps its `statement_timeout` in milliseconds (the
/// one `SET statement_timeout` writes and `SHOW statement_timeout` reads).
pub const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

/// One connection's activity.
pub struct Activity {
    running: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            running: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }
}

/// A statement running on a connection; its end is the connection's last activity.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last.locked() = Instant::now();
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.running.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// Returns once nothing has run on the connection for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let since = self.last.locked().elapsed();
            let running = self.running.load(Ordering::SeqCst) > 0;
            if !running && since >= timeout {
                return;
            }
            let wait = if running { timeout } else { timeout - since };
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
        }
    }
}

/// How many connections are open, against `max_connections`.
#[derive(Default)]
pub struct Sessions {
    open: AtomicUsize,
}

/// An authenticated connection (PostgreSQL) or Flight SQL client connection; it stops
/// counting when dropped.
pub struct Open {
    sessions: Arc<Sessions>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.sessions.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Sessions {
    /// Admit a connection, unless `max` are open already.
    pub fn admit(self: &Arc<Self>, max: usize) -> Option<Open> {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Open {
            sessions: Arc::clone(self),
        })
    }

    /// Connections counted now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

async fn read_packet<S: AsyncRead + Unpin>(socket: &mut S) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    socket.read_exact(&mut len).await.ok()?;
    let len = i32::from_be_bytes(len);
    if !(8..=10_000).contains(&len) {
        return None;
    }
    let mut body = vec![0u8; len as usize - 4];
    socket.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// Answer a connection's start-up with a FATAL error and close it (declining SSL first,
/// so that clients that ask for it read the error). Generic over the stream so that the
/// fuzz target `fuzz/fuzz_targets/refuse.rs` can feed it bytes from memory.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S, code: &str, message: &str) {
    // pgwire keeps its CancelRequest code private.
    const CANCEL_REQUEST: i32 = 80877102;
    let code_of = |body: &[u8]| i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut body = read_packet(&mut socket).await?;
        while matches!(
            code_of(&body),
            SslRequest::BODY_MAGIC_NUMBER | GssEncRequest::BODY_MAGIC_NUMBER
        ) {
            socket.write_all(b"N").await.ok()?;
            body = read_packet(&mut socket).await?;
        }
        if code_of(&body) == CANCEL_REQUEST {
            return Some(());
        }
        let mut error = ErrorInfo::new("FATAL".into(), code.into(), message.into());
        error.severity_nonlocalized = Some("FATAL".into());
        let mut out = BytesMut::new();
        ErrorResponse::from(error).encode(&mut out).ok()?;
        socket.write_all(&out).await.ok()?;
        socket.shutdown().await.ok()
    })
    .await;
}

/// The `statement_timeout` a session's metadata holds, if any.
pub fn statement_timeout(metadata: &HashMap<String, String>) -> Option<Duration> {
    metadata
        .get(STATEMENT_TIMEOUT_KEY)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The FATAL answer is byte for byte PostgreSQL's: fields S, V, C, M, after an SSL
    /// request declined with `N`.
    #[tokio::test]
    async fn refuse_declines_ssl_then_sends_one_fatal_error() {
        let mut input = Vec::new();
        input.extend_from_slice(&8i32.to_be_bytes());
        input.extend_from_slice(&80877103i32.to_be_bytes());
        input.extend_from_slice(&9i32.to_be_bytes());
        input.extend_from_slice(&196608i32.to_be_bytes());
        input.push(0);
        let mut out = Vec::new();
        refuse(tokio::io::join(&input[..], &mut out), "53300", "too many").await;
        let mut expected = b"NE".to_vec();
        let fields = b"SFATAL\0VFATAL\0C53300\0Mtoo many\0\0";
        expected.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
        expected.extend_from_slice(fields);
        assert_eq!(out, expected);
    }
}
