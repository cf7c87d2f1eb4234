//! One PostgreSQL connection from accept to close: TLS negotiation and authentication
//! within `auth_timeout_ms` (and while the unauthenticated pool keeps it), frames capped
//! small before authentication and at `max_message_bytes` after, then pgwire's message loop.

use std::io;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use std::sync::Arc;

use pgwire::api::{ClientInfo, NoopHandler, PgWireConnectionState};
use pgwire::error::ErrorInfo;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{
    MaybeTls, PgWireMessageServerCodec, negotiate_tls, process_error, process_message,
};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};
use tracing::{debug, info};

use super::Startup;
use super::cancel::Cancels;
use super::query::{PgStatement, QueryHandler};
use crate::config::SessionLimits;
use crate::server::frames::{self, Limit, Limited};
use crate::server::pending::Waiting;

type Socket = Framed<Limited<MaybeTls>, PgWireMessageServerCodec<PgStatement>>;

/// The handlers one connection runs with.
pub struct Handlers {
    pub startup: Arc<Startup>,
    pub query: Arc<QueryHandler>,
    pub cancel: Arc<Cancels>,
}

/// Serve one accepted socket with `handlers` until it closes. `waiting` is its place in
/// the unauthenticated pool, given up once the client has authenticated.
pub async fn process(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: Handlers,
    limits: SessionLimits,
    waiting: Waiting,
) -> io::Result<()> {
    let peer = tcp.peer_addr()?;
    let deadline = tokio::time::sleep(limits.auth_timeout);
    tokio::pin!(deadline);
    let evicted = waiting.evicted.clone();
    let negotiated = tokio::select! {
        _ = &mut deadline => {
            debug!(%peer, "closed a connection that did not start up within auth_timeout_ms");
            return Ok(());
        }
        _ = evicted.cancelled() => return Ok(()),
        negotiated = negotiate_tls::<PgStatement>(tcp, tls) => negotiated?,
    };
    // A direct TLS hello without TLS configured: nothing to answer.
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    let limit = Limit::new(frames::BEFORE_AUTHENTICATION);
    let old = negotiated.into_parts();
    let io = Limited::new(old.io, limit.clone(), &old.read_buf);
    let mut parts = FramedParts::new(io, old.codec);
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let mut socket: Socket = Framed::from_parts(parts);

    let Handlers {
        startup,
        query,
        cancel,
    } = handlers;
    let copy = Arc::new(NoopHandler);
    let mut waiting = Some(waiting);
    loop {
        let authenticating = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        if !authenticating && waiting.is_some() {
            // Authenticated: out of the unauthenticated pool, frames up to max_message_bytes.
            waiting = None;
            limit.set(limits.max_message_bytes);
        }
        let message = if authenticating {
            tokio::select! {
                _ = &mut deadline => {
                    info!(%peer, "closed a connection that did not authenticate within {:?} (auth_timeout_ms)", limits.auth_timeout);
                    fatal(&mut socket, "08P01", "authentication timed out (auth_timeout_ms)".into()).await;
                    return Ok(());
                }
                _ = evicted.cancelled() => {
                    fatal(&mut socket, "53300", "too many connections are waiting to authenticate (max_unauthenticated_connections)".into()).await;
                    return Ok(());
                }
                message = socket.next() => message,
            }
        } else {
            socket.next().await
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                if let Some(len) = limit.refused() {
                    let max = limit.max();
                    let when = if waiting.is_some() {
                        " before authentication"
                    } else {
                        " (max_message_bytes)"
                    };
                    info!(%peer, "refused a message of {len} bytes, over the limit of {max}{when}");
                    fatal(
                        &mut socket,
                        "54000",
                        format!("message of {len} bytes exceeds the limit of {max} bytes{when}"),
                    )
                    .await;
                    return Ok(());
                }
                debug!(%peer, "connection closed with error: {e}");
                return Ok(());
            }
            None => return Ok(()),
        };
        // A Terminate: the client is leaving; close at once (asyncpg waits for it).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        if let Err(e) = process_message(
            message,
            &mut socket,
            startup.clone(),
            query.clone(),
            query.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            process_error(&mut socket, e, extended_query).await?;
        }
    }
}

/// Send a FATAL error (best effort, briefly) and flush it; the caller closes.
async fn fatal(socket: &mut Socket, code: &str, message: String) {
    let mut info = ErrorInfo::new("FATAL".into(), code.into(), message);
    info.severity_nonlocalized = Some("FATAL".into());
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.send(PgWireBackendMessage::ErrorResponse(info.into())),
    )
    .await;
}
