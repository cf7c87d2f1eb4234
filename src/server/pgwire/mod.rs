//! The PostgreSQL wire front: accepting connections, start-up (parameters that make
//! clients treat Weir as PostgreSQL 16), cancellation, and handing each connection to
//! pgwire with Weir's query handlers ([`query`]). Planning and execution stay in the engine.

pub mod auth;
pub mod binary;
pub mod cancel;
pub mod connection;
pub mod pgtext;
pub mod query;
pub mod session;
pub mod tls;

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionHandle, ConnectionManager, METADATA_USER, PgWireConnectionState,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{Config, SessionLimits};
use crate::engine::Engine;
use crate::engine::functions::server_version;
use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;
use crate::server::Admission;
use crate::server::guard::LoginGuard;
use crate::server::metrics::Metrics;
use crate::sql::access::Role;
use auth::{Exchange, Refusal, SCRAM_SHA_256, Users};
use cancel::Cancels;
use query::QueryHandler;
use session::{Activity, Sessions};

/// Who may connect and how: the users (none: any user, no password), the TLS acceptors
/// (PostgreSQL's and Flight SQL's, one certificate), and whether plain-text PostgreSQL
/// connections are refused.
#[derive(Default)]
pub struct Security {
    pub users: Option<Arc<Users>>,
    pub tls: Option<TlsAcceptor>,
    pub flight_tls: Option<TlsAcceptor>,
    pub tls_required: bool,
}

impl Security {
    /// Read the users file and the TLS files the configuration names; every mistake is a
    /// configuration error before anything listens.
    pub fn from_config(config: &Config) -> Result<Security> {
        let users = Users::load(
            config.auth_users_file.as_deref(),
            config.auth_password.as_ref().map(|p| p.expose()),
        )?
        .map(Arc::new);
        let (tls, flight_tls) = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => (
                Some(tls::acceptor(cert, key)?),
                Some(tls::flight_acceptor(cert, key)?),
            ),
            (None, None) => (None, None),
            _ => {
                return Err(WeirError::Config(
                    "tls_cert and tls_key go together: set both to turn TLS on".into(),
                ));
            }
        };
        if config.tls_required && tls.is_none() {
            return Err(WeirError::Config(
                "tls_required needs TLS: set tls_cert and tls_key".into(),
            ));
        }
        Ok(Security {
            users,
            tls,
            flight_tls,
            tls_required: config.tls_required,
        })
    }
}

/// What every connection's start-up shares: PostgreSQL 16 parameters, the
/// cancellation registry, the default `statement_timeout` and the users.
struct StartupShared {
    parameters: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
    connections: Arc<ConnectionManager>,
    cancels: Arc<Cancels>,
    statement_timeout: Option<Duration>,
    users: Option<Arc<Users>>,
    tls_required: bool,
    /// Authenticated connections of both ports, against `max_connections`.
    sessions: Arc<Sessions>,
    max_connections: usize,
    logins: Arc<LoginGuard>,
}

/// Where one connection's start-up stands.
enum Step {
    /// Waiting for the start-up packet.
    Start,
    /// The SASL mechanisms were offered; waiting for the client-first message.
    Offered,
    /// The server-first message was sent; waiting for the client's proof.
    Sent(Exchange),
    /// An error ended the start-up; the connection is closing.
    Refused,
}

/// One connection's start-up: TLS policy, SCRAM-SHA-256 when users are configured (its
/// exchange kept here, per connection), then registration for cancellation, session
/// limits and the parameters that make clients treat Weir as PostgreSQL 16.
pub struct Startup {
    shared: Arc<StartupShared>,
    /// This connection's activity, which the idle timeout reads.
    activity: Arc<Activity>,
    step: Mutex<Step>,
    /// Cancelled when the start-up was refused, to close the connection at once.
    closed: CancellationToken,
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
        let step = std::mem::replace(&mut *self.step.locked(), Step::Refused);
        match (step, message) {
            (Step::Start, PgWireFrontendMessage::Startup(ref startup)) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let user = user_of(client);
                if self.shared.tls_required && !client.is_secure() {
                    warn!(peer = %client.socket_addr(), user, "refused a connection without TLS (tls_required)");
                    return self
                        .refuse(
                            client,
                            "28000",
                            "SSL/TLS is required: connect with sslmode=require".into(),
                        )
                        .await;
                }
                if self.shared.users.is_none() {
                    return self.admit(client).await;
                }
                if user.is_empty() {
                    return self
                        .refuse(
                            client,
                            "28000",
                            "no PostgreSQL user name specified in startup packet".into(),
                        )
                        .await;
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                *self.step.locked() = Step::Offered;
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![SCRAM_SHA_256.to_string()],
                    )))
                    .await?;
                Ok(())
            }
            (Step::Offered, PgWireFrontendMessage::PasswordMessageFamily(msg)) => {
                let users = self.shared.users.as_ref().expect("offered only with users");
                let Ok(initial) = msg.into_sasl_initial_response() else {
                    let reason = "expected a SASL initial response";
                    return self.refused(client, Refusal::Protocol(reason.into())).await;
                };
                if initial.auth_method != SCRAM_SHA_256 {
                    let reason = "client selected an invalid SASL authentication mechanism";
                    return self.refused(client, Refusal::Protocol(reason.into())).await;
                }
                let data = initial.data.unwrap_or_default();
                // An address whose logins keep failing waits longer before each check.
                self.shared.logins.wait(client.socket_addr().ip()).await;
                match Exchange::start(users, &user_of(client), &data) {
                    Ok((server_first, exchange)) => {
                        *self.step.locked() = Step::Sent(exchange);
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(server_first.into()),
                            ))
                            .await?;
                        Ok(())
                    }
                    Err(refusal) => self.refused(client, refusal).await,
                }
            }
            (Step::Sent(exchange), PgWireFrontendMessage::PasswordMessageFamily(msg)) => {
                let Ok(response) = msg.into_sasl_response() else {
                    let reason = "expected a SASL response";
                    return self.refused(client, Refusal::Protocol(reason.into())).await;
                };
                match exchange.finish(&response.data) {
                    Ok(server_final) => {
                        let user = user_of(client);
                        debug!(peer = %client.socket_addr(), user, "authenticated");
                        self.shared.logins.succeeded(client.socket_addr().ip());
                        client
                            .feed(PgWireBackendMessage::Authentication(
                                Authentication::SASLFinal(server_final.into()),
                            ))
                            .await?;
                        self.admit(client).await
                    }
                    Err(refusal) => self.refused(client, refusal).await,
                }
            }
            // After a refusal the connection is closing: whatever else comes is dropped.
            (Step::Refused, _) => Ok(()),
            (_, other) => {
                let reason = format!(
                    "unexpected message during authentication: {:?}",
                    std::mem::discriminant(&other)
                );
                self.refused(client, Refusal::Protocol(reason)).await
            }
        }
    }
}

/// The user name of the start-up packet.
fn user_of<C: ClientInfo>(client: &C) -> String {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

impl Startup {
    fn new(
        shared: Arc<StartupShared>,
        activity: Arc<Activity>,
        closed: CancellationToken,
    ) -> Startup {
        Startup {
            shared,
            activity,
            step: Mutex::new(Step::Start),
            closed,
        }
    }

    /// Let the client in: register it for cancellation and session limits, then send
    /// AuthenticationOk, the parameters, BackendKeyData and ReadyForQuery.
    async fn admit<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let shared = &self.shared;
        // A slot of max_connections is taken only now, once the client has authenticated.
        let Some(open) = shared.sessions.admit(shared.max_connections) else {
            warn!(
                peer = %client.socket_addr(),
                "refused a connection: {} are open (max_connections)",
                shared.max_connections
            );
            return self
                .refuse(client, "53300", "sorry, too many clients already".into())
                .await;
        };
        client.session_extensions().insert(open);
        let (pid, secret) = shared.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret.clone());
        // Registered so that a CancelRequest carrying this key reaches the running query.
        let (handle, guard) = shared.connections.register(pid, secret.clone());
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert(guard);
        let (flag, registration) = shared.cancels.register(pid, &secret);
        client.session_extensions().insert(flag);
        client.session_extensions().insert(registration);
        client
            .session_extensions()
            .insert(Arc::clone(&self.activity));
        // What this session may run: the users file's role, admin without authentication.
        let role = match &shared.users {
            Some(users) => users.role(&user_of(client)),
            None => Role::Admin,
        };
        client.session_extensions().insert(role);
        if let Some(timeout) = shared.statement_timeout {
            client.metadata_mut().insert(
                session::STATEMENT_TIMEOUT_KEY.to_string(),
                timeout.as_millis().to_string(),
            );
        }
        finish_authentication(client, &shared.parameters).await
    }

    /// Log a failed authentication (never the password) and refuse the connection.
    async fn refused<C>(&self, client: &mut C, refusal: Refusal) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let peer = client.socket_addr();
        let user = user_of(client);
        match refusal {
            Refusal::Failed => {
                // Logged once per burst of failures from the address, not per attempt.
                debug!(%peer, user, "password authentication failed");
                self.shared.logins.failed(peer.ip(), "PostgreSQL", &user);
                let message = format!("password authentication failed for user \"{user}\"");
                self.refuse(client, "28P01", message).await
            }
            Refusal::Protocol(reason) => {
                warn!(%peer, user, "authentication failed: {reason}");
                self.refuse(client, "08P01", reason).await
            }
        }
    }

    /// Send a FATAL error and close the connection. The connection stays in its
    /// authentication state, so nothing the client sends afterwards reaches a query;
    /// [`StartupHandler::on_startup`] has left the step at [`Step::Refused`].
    async fn refuse<C>(&self, client: &mut C, code: &str, message: String) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.set_state(PgWireConnectionState::AuthenticationInProgress);
        let error = ErrorInfo::new("FATAL".to_string(), code.to_string(), message);
        let sent = client
            .send(PgWireBackendMessage::ErrorResponse(error.into()))
            .await
            .map_err(PgWireError::from);
        let _ = client.close().await.map_err(PgWireError::from);
        self.closed.cancel();
        sent
    }
}

/// Everything connections share: the query handlers, the cancellation registry, the
/// count of open connections, the limits and the security settings.
pub struct Handlers {
    query: Arc<QueryHandler>,
    startup: Arc<StartupShared>,
    cancel: Arc<Cancels>,
    admission: Admission,
    limits: SessionLimits,
    tls: Option<TlsAcceptor>,
}

impl Handlers {
    pub fn new(
        engine: Arc<Engine>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        limits: SessionLimits,
        security: Security,
        admission: Admission,
    ) -> Self {
        let connections = Arc::new(ConnectionManager::new());
        let cancels = Cancels::new(connections.clone());
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = server_version();
        parameters.search_path = "public".to_string();
        Handlers {
            query: Arc::new(QueryHandler::new(engine, metrics, shutdown)),
            startup: Arc::new(StartupShared {
                parameters,
                pids: RandomPidSecretKeyGenerator::default(),
                connections,
                cancels: cancels.clone(),
                statement_timeout: limits.statement_timeout,
                users: security.users,
                tls_required: security.tls_required,
                sessions: admission.sessions.clone(),
                max_connections: limits.max_connections,
                logins: admission.logins.clone(),
            }),
            cancel: cancels,
            admission,
            limits,
            tls: security.tls,
        }
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
                // Until it authenticates, the connection holds a place in the small
                // unauthenticated pool, not a max_connections slot.
                let waiting = handlers.admission.pending.join(addr.ip());
                let closed = CancellationToken::new();
                let activity = Arc::new(Activity::default());
                let tls = handlers.tls.clone();
                let connection = connection::Handlers {
                    startup: Arc::new(Startup::new(
                        handlers.startup.clone(),
                        activity.clone(),
                        closed.clone(),
                    )),
                    query: handlers.query.clone(),
                    cancel: handlers.cancel.clone(),
                };
                let metrics = metrics.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    let _open = metrics.connection_opened();
                    let idle = async {
                        match limits.idle_timeout {
                            Some(t) => activity.idle_for(t).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        result = connection::process(socket, tls, connection, limits, waiting) => {
                            if let Err(e) = result {
                                debug!(%addr, "connection closed with error: {e}");
                            }
                        }
                        _ = closed.cancelled() => {
                            debug!(%addr, "closed after a refused start-up");
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
