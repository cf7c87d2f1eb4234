//! The server's configuration: one typed struct with documented defaults, read from an
//! optional `weir.toml`, then `WEIR_*` environment variables, then command-line flags
//! (each later layer wins). Nothing else in the server reads the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, WeirError};

/// Everything `weir serve` can be told. Every key can be set in `weir.toml`, as
/// `WEIR_<KEY>` in the environment, or as `--<key>` (underscores become dashes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the PostgreSQL wire listener. Default `127.0.0.1:5433`.
    pub pg_listen: SocketAddr,
    /// Address of the Arrow Flight SQL (gRPC) listener. Default `127.0.0.1:50051`.
    pub flight_listen: SocketAddr,
    /// Address of the HTTP listener (`/healthz`, `/metrics`). Default `127.0.0.1:8080`.
    pub http_listen: SocketAddr,
    /// Folder of `.sql` files applied at start-up. Default `./sql`.
    pub sql_dir: PathBuf,
    /// Folder for checkpoints and state. Default `./weir-data`.
    pub data_dir: PathBuf,
    /// How often every view's state and offsets are checkpointed into `data_dir`, in
    /// milliseconds. Default 10000; 0: only on `CHECKPOINT` and at shutdown.
    pub checkpoint_interval_ms: u64,
    /// How long a shutdown waits for running queries before closing them, in seconds.
    /// Default 10.
    pub shutdown_grace_secs: u64,
    /// Log filter in `tracing`'s syntax (`info`, `weir=debug,info`…). Default `info`.
    pub log: String,
    /// Authenticated connections open at once, PostgreSQL and Flight SQL together; past it
    /// a client gets `53300 sorry, too many clients already`. Default 100.
    pub max_connections: usize,
    /// Connections that have not authenticated yet, both ports together; when full, a new
    /// one closes the oldest of the address holding the most. Default 32.
    pub max_unauthenticated_connections: usize,
    /// A connection that has not authenticated after this many milliseconds is closed.
    /// Default 10000.
    pub auth_timeout_ms: u64,
    /// The largest message a client may send once authenticated (a PostgreSQL frame, a
    /// Flight SQL gRPC message), in bytes; a larger one is refused with 54000. Before
    /// authentication frames are capped at 16 KiB. Default 67108864 (64 MiB).
    pub max_message_bytes: usize,
    /// Default `statement_timeout` of every session, in milliseconds (a session's `SET
    /// statement_timeout` overrides it); past it a statement ends with 57014. Default 0:
    /// none.
    pub statement_timeout_ms: u64,
    /// A session idle (no statement running) for this many seconds is closed. Default 0:
    /// never.
    pub idle_session_timeout_secs: u64,
    /// Memory all ad-hoc queries may hold at once for sorts, joins and aggregations, in
    /// MiB; a query that needs more fails alone with 53200. Default 2048; 0: no limit.
    pub query_memory_mb: u64,
    /// File of users who may connect on the PostgreSQL port, one `user:password` or
    /// `user:SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` a line. Setting it
    /// (or `auth_password`) turns on SCRAM-SHA-256 authentication. Default: none.
    pub auth_users_file: Option<PathBuf>,
    /// Password (or verifier) of every user name the users file does not list. Default:
    /// none.
    pub auth_password: Option<Secret>,
    /// PEM certificate chain; with `tls_key`, turns TLS on for the PostgreSQL and Flight SQL
    /// ports. Default: none.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. Default: none.
    pub tls_key: Option<PathBuf>,
    /// Refuse connections that do not use TLS (`28000`). Default false.
    pub tls_required: bool,
    /// Once every listener is open, the addresses they got are written to this file as
    /// JSON (`{"pg": "127.0.0.1:5433", "flight": …, "http": …}`): with port 0 in a listen
    /// address the system picks a free port, and this says which. Default: none.
    pub ready_file: Option<PathBuf>,
    /// Where SQL may read and write files (`[storage]` in `weir.toml`).
    pub storage: Storage,
    /// The file this configuration was read from, if any (never reachable from SQL).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[storage]`: the locations SQL may reach.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Folders and URL prefixes (`/srv/exports`, `s3://bucket/prefix`,
    /// `hdfs://namenode:8020/data`) that SQL may read and write besides the `.sql` folder
    /// and `data_dir/files`. Default: none.
    pub allowed_locations: Vec<String>,
}

/// A password given in the configuration: kept as given, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pg_listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            flight_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            sql_dir: PathBuf::from("sql"),
            data_dir: PathBuf::from("weir-data"),
            checkpoint_interval_ms: 10_000,
            shutdown_grace_secs: 10,
            log: "info".to_string(),
            max_connections: 100,
            max_unauthenticated_connections: 32,
            auth_timeout_ms: 10_000,
            max_message_bytes: 64 << 20,
            statement_timeout_ms: 0,
            idle_session_timeout_secs: 0,
            query_memory_mb: 2048,
            auth_users_file: None,
            auth_password: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            ready_file: None,
            storage: Storage::default(),
            source: None,
        }
    }
}

/// What the fronts enforce per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub max_connections: usize,
    pub max_unauthenticated: usize,
    pub auth_timeout: Duration,
    pub max_message_bytes: usize,
    pub statement_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Config::default().session_limits()
    }
}

/// Values given on the command line or in the environment; `None` keeps the lower layer.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// PostgreSQL wire listener address [default: 127.0.0.1:5433]
    #[arg(long, env = "WEIR_PG_LISTEN")]
    pub pg_listen: Option<SocketAddr>,
    /// Arrow Flight SQL listener address [default: 127.0.0.1:50051]
    #[arg(long, env = "WEIR_FLIGHT_LISTEN")]
    pub flight_listen: Option<SocketAddr>,
    /// HTTP listener address for /healthz and /metrics [default: 127.0.0.1:8080]
    #[arg(long, env = "WEIR_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Folder of .sql files applied at start-up [default: ./sql]
    #[arg(long, env = "WEIR_SQL_DIR")]
    pub sql_dir: Option<PathBuf>,
    /// Folder for checkpoints and state [default: ./weir-data]
    #[arg(long, env = "WEIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Milliseconds between checkpoints; 0: only on CHECKPOINT and at shutdown [default: 10000]
    #[arg(long, env = "WEIR_CHECKPOINT_INTERVAL_MS")]
    pub checkpoint_interval_ms: Option<u64>,
    /// Seconds a shutdown waits for running queries [default: 10]
    #[arg(long, env = "WEIR_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Log filter, e.g. `info` or `weir=debug,info` [default: info]
    #[arg(long, env = "WEIR_LOG")]
    pub log: Option<String>,
    /// Authenticated connections open at once, both ports [default: 100]
    #[arg(long, env = "WEIR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Connections not yet authenticated, both ports [default: 32]
    #[arg(long, env = "WEIR_MAX_UNAUTHENTICATED_CONNECTIONS")]
    pub max_unauthenticated_connections: Option<usize>,
    /// Close connections not authenticated after this many ms [default: 10000]
    #[arg(long, env = "WEIR_AUTH_TIMEOUT_MS")]
    pub auth_timeout_ms: Option<u64>,
    /// Largest message a client may send once authenticated, in bytes [default: 67108864]
    #[arg(long, env = "WEIR_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Default statement_timeout of sessions, in ms; 0: none [default: 0]
    #[arg(long, env = "WEIR_STATEMENT_TIMEOUT_MS")]
    pub statement_timeout_ms: Option<u64>,
    /// Close sessions idle for this many seconds; 0: never [default: 0]
    #[arg(long, env = "WEIR_IDLE_SESSION_TIMEOUT_SECS")]
    pub idle_session_timeout_secs: Option<u64>,
    /// Memory for all ad-hoc queries at once, in MiB; 0: no limit [default: 2048]
    #[arg(long, env = "WEIR_QUERY_MEMORY_MB")]
    pub query_memory_mb: Option<u64>,
    /// File of `user:password` or `user:SCRAM-SHA-256$…` lines; turns on authentication
    #[arg(long, env = "WEIR_AUTH_USERS_FILE")]
    pub auth_users_file: Option<PathBuf>,
    /// Password (or SCRAM verifier) of any user not in the users file; turns on authentication
    #[arg(long, env = "WEIR_AUTH_PASSWORD", hide_env_values = true)]
    pub auth_password: Option<Secret>,
    /// PEM certificate chain for TLS on the PostgreSQL and Flight SQL ports (with --tls-key)
    #[arg(long, env = "WEIR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS certificate
    #[arg(long, env = "WEIR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Refuse PostgreSQL connections without TLS [default: false]
    #[arg(long, env = "WEIR_TLS_REQUIRED", num_args = 0..=1, default_missing_value = "true")]
    pub tls_required: Option<bool>,
    /// Write the listeners' addresses to this file as JSON once they are open
    #[arg(long, env = "WEIR_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Folders and URL prefixes SQL may read and write besides the .sql folder and
    /// data_dir/files, comma-separated (storage.allowed_locations) [default: none]
    #[arg(long, env = "WEIR_STORAGE_ALLOWED_LOCATIONS", value_delimiter = ',')]
    pub storage_allowed_locations: Option<Vec<String>>,
}

impl Config {
    /// Read `file` (or `./weir.toml` when it exists and no file is named), then apply
    /// `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config> {
        let file = file.or_else(|| Some(Path::new("weir.toml")).filter(|p| p.exists()));
        let mut config = match file {
            Some(path) => Self {
                source: Some(path.to_path_buf()),
                ..Self::from_file(path)?
            },
            None => Config::default(),
        };
        config.apply(overrides);
        Ok(config)
    }

    /// Parse a `weir.toml`; unknown keys are an error that lists the valid ones.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| WeirError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| match e {
            WeirError::Config(msg) => WeirError::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Parse the text of a `weir.toml`.
    pub fn from_toml(text: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| WeirError::Config(e.message().to_string()))
    }

    fn apply(&mut self, o: &Overrides) {
        // Every key of `Overrides` (the pattern is exhaustive, so a key missing here does
        // not compile); `into` also wraps a value for the optional keys.
        macro_rules! apply {
            ($($key:ident),* $(,)?; $($nested:ident),*) => {
                let Overrides { $($key),*, $($nested),* } = o;
                $(if let Some(v) = $key {
                    self.$key = v.clone().into();
                })*
            };
        }
        apply!(
            pg_listen,
            flight_listen,
            http_listen,
            sql_dir,
            data_dir,
            checkpoint_interval_ms,
            shutdown_grace_secs,
            log,
            max_connections,
            max_unauthenticated_connections,
            auth_timeout_ms,
            max_message_bytes,
            statement_timeout_ms,
            idle_session_timeout_secs,
            query_memory_mb,
            auth_users_file,
            auth_password,
            tls_cert,
            tls_key,
            tls_required,
            ready_file;
            storage_allowed_locations
        );
        if let Some(v) = storage_allowed_locations {
            self.storage.allowed_locations = v.clone();
        }
    }

    /// The folder of files SQL may always reach: `data_dir/files`.
    pub fn files_dir(&self) -> PathBuf {
        self.data_dir.join("files")
    }

    /// The server's own files, which SQL never reaches whatever `storage.allowed_locations`
    /// says: checkpoints, the durable catalog, the users file, the TLS files, this file.
    pub fn private_files(&self) -> Vec<PathBuf> {
        let mut private = vec![
            self.data_dir.join("checkpoints"),
            self.data_dir.join("catalog"),
        ];
        private.extend(self.auth_users_file.iter().cloned());
        private.extend(self.tls_key.iter().cloned());
        private.extend(self.tls_cert.iter().cloned());
        private.extend(self.source.iter().cloned());
        private
    }

    /// The limits each PostgreSQL session runs under.
    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            max_connections: self.max_connections.max(1),
            max_unauthenticated: self.max_unauthenticated_connections.max(1),
            auth_timeout: Duration::from_millis(self.auth_timeout_ms.max(1)),
            max_message_bytes: self.max_message_bytes.max(frames_floor()),
            statement_timeout: (self.statement_timeout_ms > 0)
                .then(|| Duration::from_millis(self.statement_timeout_ms)),
            idle_timeout: (self.idle_session_timeout_secs > 0)
                .then(|| Duration::from_secs(self.idle_session_timeout_secs)),
        }
    }

    /// [`Config::query_memory_mb`] in bytes (`None`: no limit).
    pub fn query_memory(&self) -> Option<usize> {
        (self.query_memory_mb > 0).then_some((self.query_memory_mb as usize) << 20)
    }

    /// [`Config::checkpoint_interval_ms`] as a duration (`None`: no periodic checkpoints).
    pub fn checkpoint_interval(&self) -> Option<Duration> {
        (self.checkpoint_interval_ms > 0)
            .then(|| Duration::from_millis(self.checkpoint_interval_ms))
    }

    /// [`Config::shutdown_grace_secs`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// `max_message_bytes` is never below what a client may send before authenticating.
fn frames_floor() -> usize {
    16 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let mut c = Config::from_toml(
            "pg_listen = \"127.0.0.1:6000\"\nflight_listen = \"127.0.0.1:6001\"\nlog = \"debug\"",
        )
        .unwrap();
        assert_eq!(c.pg_listen.port(), 6000);
        assert_eq!(c.flight_listen.port(), 6001);
        assert_eq!(c.http_listen.port(), 8080);
        c.apply(&Overrides {
            pg_listen: Some("127.0.0.1:7000".parse().unwrap()),
            flight_listen: Some("127.0.0.1:7001".parse().unwrap()),
            ..Default::default()
        });
        assert_eq!(c.pg_listen.port(), 7000);
        assert_eq!(c.flight_listen.port(), 7001);
        assert_eq!(c.log, "debug");
        assert_eq!(Config::default().flight_listen.port(), 50051);
    }

    #[test]
    fn security_keys_layer_and_hide_the_password() {
        let mut c = Config::from_toml(
            "auth_users_file = \"users\"\nauth_password = \"hunter2\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"",
        )
        .unwrap();
        assert_eq!(c.auth_users_file, Some(PathBuf::from("users")));
        assert_eq!(c.auth_password.as_ref().unwrap().expose(), "hunter2");
        assert!(!c.tls_required);
        assert!(!format!("{c:?}").contains("hunter2"));
        c.apply(&Overrides {
            tls_required: Some(true),
            auth_password: Some("other".parse().unwrap()),
            ..Default::default()
        });
        assert!(c.tls_required);
        assert_eq!(c.auth_password.unwrap().expose(), "other");
    }

    #[test]
    fn unknown_key_names_it_and_lists_valid_ones() {
        let err = Config::from_toml("pg_port = 1").unwrap_err().to_string();
        assert!(err.contains("pg_port"), "{err}");
        assert!(err.contains("pg_listen"), "{err}");
    }
}
