//! Running the server: build the engine, apply the `.sql` folder, open the listeners,
//! and stop gracefully. Shutdown is one mechanism everywhere: a cancellation token
//! that every listener watches, and a task tracker that waits for open connections.

pub mod flight;
pub mod frames;
pub mod guard;
pub mod http;
pub mod metrics;
pub mod pending;
pub mod pgwire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::catalog::{self, Durable};
use crate::checkpoint::{self, Checkpoints};
use crate::config::Config;
use crate::config::SessionLimits;
use crate::engine::Engine;
use crate::error::{Result, WeirError};
use crate::storage::locations::Locations;
use guard::LoginGuard;
use metrics::Metrics;
use pending::Pending;
use pgwire::session::Sessions;

/// What both ports share about admitting clients: the pool of connections that have not
/// authenticated yet, the count of authenticated ones (`max_connections`), and the
/// failed logins per address.
#[derive(Clone)]
pub struct Admission {
    pub pending: Arc<Pending>,
    pub sessions: Arc<Sessions>,
    pub logins: Arc<LoginGuard>,
}

impl Admission {
    pub fn new(limits: &SessionLimits) -> Admission {
        Admission {
            pending: Pending::new(limits.max_unauthenticated),
            sessions: Arc::default(),
            logins: Arc::default(),
        }
    }
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(&SessionLimits::default())
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| WeirError::Config(format!("cannot listen for {what} on {addr}: {e}")))
}

/// The addresses the listeners got (port 0 in the configuration: one the system chose).
#[derive(serde::Serialize)]
struct Bound {
    pg: SocketAddr,
    flight: SocketAddr,
    http: SocketAddr,
}

impl Bound {
    /// Write them to `path` as JSON, whole or not at all (a reader polls for the file).
    fn write(&self, path: &std::path::Path) -> Result<()> {
        let text = serde_json::to_vec(self).map_err(|e| WeirError::Internal(e.to_string()))?;
        checkpoint::write_atomically(path, &text, false)
            .map_err(|e| WeirError::Config(format!("ready_file: {e}")))
    }
}

/// Start the server and run until SIGINT or SIGTERM; then stop accepting, give running
/// statements `shutdown_grace_secs` to finish, and return.
pub async fn run(config: Config) -> Result<()> {
    let security = pgwire::Security::from_config(&config)?;
    refuse_open_listeners(&config, &security)?;
    if let Some(users) = &security.users {
        info!(
            "PostgreSQL clients authenticate with SCRAM-SHA-256, Flight SQL clients with a password or a bearer token ({} users in the users file{})",
            users.len(),
            if config.auth_password.is_some() {
                ", auth_password for any other"
            } else {
                ""
            }
        );
    }
    if security.tls.is_some() {
        info!(
            "TLS on the PostgreSQL port{} and the Flight SQL port",
            if security.tls_required {
                " (required)"
            } else {
                ""
            }
        );
    } else if !config.pg_listen.ip().is_loopback() {
        warn!(
            "listening on {} without TLS: passwords are not sent, but queries and results travel in plain text",
            config.pg_listen
        );
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        WeirError::Config(format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        ))
    })?;

    let files = config.files_dir();
    std::fs::create_dir_all(&files)
        .map_err(|e| WeirError::Config(format!("cannot create {}: {e}", files.display())))?;
    Locations::new(
        &[config.sql_dir.clone(), files],
        &config.storage.allowed_locations,
        &config.private_files(),
    )?
    .install()?;
    let engine = Arc::new(Engine::with_query_memory(config.query_memory()).await?);
    let (checkpoints, restored) = Checkpoints::open(&config.data_dir)?;
    if let Some(r) = &restored {
        info!(
            "restoring from checkpoint {} of {} ({:.1} s ago): {} materialized views",
            r.sequence,
            crate::engine::micros_text(Some(r.taken_at)).unwrap_or_default(),
            checkpoint::age_secs(r.taken_at),
            r.views().count()
        );
    }
    engine
        .catalog()
        .set_checkpoints(Arc::clone(&checkpoints), restored);
    let mut from_files = Vec::new();
    if config.sql_dir.is_dir() {
        let defs = engine.load_dir(&config.sql_dir).await?;
        info!(
            "applied {} statements from {}",
            defs.len(),
            config.sql_dir.display()
        );
        from_files.extend(defs.into_iter().filter_map(|d| d.creates));
    } else {
        warn!(
            "no SQL folder at {}; starting with an empty catalog",
            config.sql_dir.display()
        );
    }
    // Objects created over the ports come back after the files, from the data directory.
    engine.set_durable(Durable::open(&config.data_dir)?);
    engine.restore_catalog(from_files).await?;
    // Where each view begins is on disk before it reads far, unless the checkpoint just
    // restored says it already.
    if engine.catalog().restored()
        && let Err(e) = engine.catalog().checkpoint().await
    {
        warn!("the first checkpoint failed: {e}");
    }

    let pg_listener = bind(config.pg_listen, "PostgreSQL").await?;
    let flight_listener = bind(config.flight_listen, "Flight SQL").await?;
    let http_listener = bind(config.http_listen, "HTTP").await?;
    let bound = Bound {
        pg: pg_listener.local_addr()?,
        flight: flight_listener.local_addr()?,
        http: http_listener.local_addr()?,
    };
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let checkpointing = config.checkpoint_interval().map(|interval| {
        tokio::spawn(catalog::run_checkpoints(
            Arc::clone(engine.catalog()),
            interval,
            shutdown.clone(),
        ))
    });
    let metrics = Metrics::new();

    let limits = config.session_limits();
    let admission = Admission::new(&limits);
    let flight_auth = security
        .users
        .clone()
        .map(|users| Arc::new(flight::auth::Auth::new(users)));
    let flight = flight::FlightSql::new(engine.clone(), metrics.clone(), flight_auth)
        .with_admission(admission.clone(), limits, config.idle_session_timeout_secs);
    let flight_tls = security.flight_tls.clone();
    let handlers = Arc::new(pgwire::Handlers::new(
        engine.clone(),
        metrics.clone(),
        shutdown.clone(),
        limits,
        security,
        admission,
    ));
    let shutdown_flight = shutdown.clone();
    let pg = tokio::spawn(pgwire::serve(
        pg_listener,
        handlers,
        metrics.clone(),
        shutdown.clone(),
        tracker.clone(),
    ));
    // The Flight server drains its own calls on shutdown; the tracker bounds the wait.
    tracker.spawn(async move {
        if let Err(e) = flight::serve(flight_listener, flight, shutdown_flight, flight_tls).await {
            warn!("{e}");
        }
    });
    let http = tokio::spawn(http::serve(
        http_listener,
        metrics.clone(),
        shutdown.clone(),
    ));
    if let Some(path) = &config.ready_file {
        bound.write(path)?;
    }
    info!(
        "weir {} ready: PostgreSQL on {}, Flight SQL on {}, HTTP on {}",
        env!("CARGO_PKG_VERSION"),
        bound.pg,
        bound.flight,
        bound.http
    );

    wait_for_signal().await;
    info!(
        "shutting down: no new connections; waiting up to {}s for running statements",
        config.shutdown_grace_secs
    );
    shutdown.cancel();
    let _ = pg.await;
    tracker.close();
    if tokio::time::timeout(config.shutdown_grace(), tracker.wait())
        .await
        .is_err()
    {
        warn!(
            "{} statements still running after the grace period; closing their connections",
            metrics.in_flight()
        );
    }
    let _ = http.await;
    if let Some(task) = checkpointing {
        let _ = task.await;
    }
    if let Err(e) = engine.save_tables().await {
        warn!("saving the rows of tables failed: {e}");
    }
    match engine.catalog().checkpoint().await {
        Ok(t) => info!("{}", t.describe()),
        Err(e) => warn!("the last checkpoint failed: {e}"),
    }
    info!("stopped");
    Ok(())
}

/// A listener beyond loopback is refused without what protects it there: authentication
/// on the PostgreSQL port (SCRAM never sends the password), authentication and TLS on the
/// Flight SQL port (Basic credentials and tokens travel in each call), and authentication
/// configured for the HTTP port (which serves only /healthz and /metrics, to anyone).
fn refuse_open_listeners(config: &Config, security: &pgwire::Security) -> Result<()> {
    let authenticated = security.users.is_some();
    let refuse = |addr: SocketAddr, what: &str, needs: &str| {
        Err(WeirError::Config(format!(
            "refusing to listen on {addr} without {needs}, or listen on a loopback address ({what} port)"
        )))
    };
    const AUTH: &str = "authentication; set auth_users_file or auth_password";
    if !config.pg_listen.ip().is_loopback() && !authenticated {
        return refuse(config.pg_listen, "PostgreSQL", AUTH);
    }
    if !config.flight_listen.ip().is_loopback() {
        if !authenticated {
            return refuse(config.flight_listen, "Flight SQL", AUTH);
        }
        if security.flight_tls.is_none() {
            return refuse(
                config.flight_listen,
                "Flight SQL",
                "TLS; set tls_cert and tls_key (its passwords and tokens would travel in plain text)",
            );
        }
    }
    if !config.http_listen.ip().is_loopback() && !authenticated {
        return refuse(config.http_listen, "HTTP", AUTH);
    }
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
