//! The PostgreSQL wire front: accepting connections, start-up (parameters that make
//! clients treat Weir as PostgreSQL 16), cancellation, and handing each connection to
//! pgwire with Weir's query handlers ([`query`]). Planning and execution stay in the engine.

pub mod binary;
pub mod cancel;
pub mod pgtext;
pub mod query;
pub mod session;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{
    ClientInfo, ConnectionHandle, ConnectionManager, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::SessionLimits;
use crate::engine::Engine;
use crate::engine::functions::server_version;
use crate::server::metrics::Metrics;
use cancel::Cancels;
use query::QueryHandler;
use session::Sessions;

/// Start-up without authentication (loopback only), reporting PostgreSQL 16 parameters.
pub struct Startup {
    parameters: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
    connections: Arc<ConnectionManager>,
    cancels: Arc<Cancels>,
    sessions: Arc<Sessions>,
    limits: SessionLimits,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let (pid, secret) = self.pids.generate(client);
            client.set_pid_and_secret_key(pid, secret.clone());
            // Registered so that a CancelRequest carrying this key reaches the running query.
            let (handle, guard) = self.connections.register(pid, secret.clone());
            client
                .session_extensions()
                .insert::<Arc<ConnectionHandle>>(handle);
            client.session_extensions().insert(guard);
            let (flag, registration) = self.cancels.register(pid, &secret);
            client.session_extensions().insert(flag);
            client.session_extensions().insert(registration);
            if let Some(activity) = self.sessions.activity(&client.socket_addr()) {
                client.session_extensions().insert(activity);
            }
            if let Some(timeout) = self.limits.statement_timeout {
                client.metadata_mut().insert(
                    session::STATEMENT_TIMEOUT_KEY.to_string(),
                    timeout.as_millis().to_string(),
                );
            }
            finish_authentication(client, &self.parameters).await?;
        }
        Ok(())
    }
}

/// Everything pgwire needs to serve one connection; shared by all connections.
pub struct Handlers {
    query: Arc<QueryHandler>,
    startup: Arc<Startup>,
    cancel: Arc<Cancels>,
    sessions: Arc<Sessions>,
    limits: SessionLimits,
}

impl Handlers {
    pub fn new(
        engine: Arc<Engine>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        limits: SessionLimits,
    ) -> Self {
        let sessions = Arc::new(Sessions::default());
        let connections = Arc::new(ConnectionManager::new());
        let cancels = Cancels::new(connections.clone());
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = server_version();
        parameters.search_path = "public".to_string();
        Handlers {
            query: Arc::new(QueryHandler::new(engine, metrics, shutdown)),
            startup: Arc::new(Startup {
                parameters,
                pids: RandomPidSecretKeyGenerator::default(),
                connections,
                cancels: cancels.clone(),
                sessions: sessions.clone(),
                limits,
            }),
            cancel: cancels,
            sessions,
            limits,
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Accept connections until `shutdown` fires. Each connection runs on `tracker`; a
/// malformed or hostile stream ends that connection only.
pub async fn serve(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    // A panic inside one connection (the message decoder tripping on hostile bytes)
    // ends that connection's task only; log it as one line, not a backtrace per frame.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("tokio"))
        {
            warn!("closed a connection after a malformed message: {info}");
        } else {
            default_hook(info);
        }
    }));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, addr)) => {
                let _ = socket.set_nodelay(true);
                let limits = handlers.limits;
                let Some(open) = handlers.sessions.admit(addr, limits.max_connections) else {
                    warn!(
                        %addr,
                        "refused a connection: {} are open (max_connections)",
                        limits.max_connections
                    );
                    tokio::spawn(session::refuse(
                        socket,
                        "53300",
                        "sorry, too many clients already",
                    ));
                    continue;
                };
                let handlers = handlers.clone();
                let metrics = metrics.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    let _open = metrics.connection_opened();
                    let idle = async {
                        match limits.idle_timeout {
                            Some(t) => open.activity.idle_for(t).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        result = pgwire::tokio::process_socket(socket, None, handlers) => {
                            if let Err(e) = result {
                                debug!(%addr, "connection closed with error: {e}");
                            }
                        }
                        _ = idle => {
                            info!(%addr, "closed a session idle for {:?} (idle_session_timeout_secs)",
                                limits.idle_timeout.unwrap_or_default());
                        }
                        // Idle connections close at shutdown; running queries get the grace period.
                        _ = async {
                            shutdown.cancelled().await;
                            metrics.wait_idle().await;
                            // The last statement's final messages are queued when its
                            // stream ends; give the connection a moment to flush them.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        } => {}
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
