//! The Flight SQL port's connections: accepted here (TLS when configured, within
//! `auth_timeout_ms`), each in the unauthenticated pool until its first authenticated
//! call moves it into `max_connections`, where it stays until it closes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::server::TlsStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{debug, warn};

use crate::config::SessionLimits;
use crate::locks::Unpoisoned;
use crate::server::Admission;
use crate::server::pending::Waiting;
use crate::server::pgwire::session::Open;

/// What a call knows of its connection (a request extension).
#[derive(Clone)]
pub struct ConnInfo {
    pub state: Arc<ConnState>,
}

/// One connection: its peer, its place in the unauthenticated pool until it has
/// authenticated, then its `max_connections` slot.
pub struct ConnState {
    pub peer: SocketAddr,
    waiting: Mutex<Option<Waiting>>,
    slot: Mutex<Option<Open>>,
    /// Closes the connection (evicted from the pool, or not authenticated in time).
    close: CancellationToken,
}

impl ConnState {
    /// The first authenticated call: the connection leaves the pool for a
    /// `max_connections` slot; `false` when none is free.
    pub fn authenticated(&self, admission: &Admission, max: usize) -> bool {
        let mut slot = self.slot.locked();
        if slot.is_some() {
            return true;
        }
        match admission.sessions.admit(max) {
            Some(open) => {
                *slot = Some(open);
                self.waiting.locked().take();
                true
            }
            None => false,
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection, as tonic serves it.
pub struct Conn {
    io: Io,
    info: ConnInfo,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.info.state.waiting.locked().take();
        self.info.state.slot.locked().take();
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed before authenticating",
            )));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accept connections until `shutdown`, handing each (after TLS) to `out`.
pub async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    admission: Admission,
    limits: SessionLimits,
    out: mpsc::Sender<io::Result<Conn>>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!("Flight SQL accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let waiting = admission.pending.join(peer.ip());
        let close = waiting.evicted.clone();
        let state = Arc::new(ConnState {
            peer,
            waiting: Mutex::new(Some(waiting)),
            slot: Mutex::new(None),
            close: close.clone(),
        });
        // Not authenticated within auth_timeout_ms: closed.
        let timer = Arc::clone(&state);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(limits.auth_timeout) => {
                    if timer.waiting.locked().is_some() {
                        debug!(peer = %timer.peer, "closed a Flight SQL connection that did not authenticate within auth_timeout_ms");
                        timer.close.cancel();
                    }
                }
                _ = timer.close.cancelled() => {}
            }
        });
        let tls = tls.clone();
        let out = out.clone();
        tokio::spawn(async move {
            let io = match tls {
                None => Io::Plain(tcp),
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        h = acceptor.accept(tcp) => h,
                        _ = close.cancelled() => return,
                    };
                    match handshake {
                        Ok(s) => Io::Tls(Box::new(s)),
                        Err(e) => {
                            debug!(%peer, "Flight SQL TLS handshake failed: {e}");
                            return;
                        }
                    }
                }
            };
            let conn = Conn {
                io,
                info: ConnInfo { state },
                closed: Box::pin(close.cancelled_owned()),
            };
            let _ = out.send(Ok(conn)).await;
        });
    }
}
