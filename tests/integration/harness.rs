//! Starting and stopping a real `weir serve`, a tansu Kafka broker, a throw-away
//! PostgreSQL server and an S3-compatible server (moto), on free loopback ports.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running server; killed on drop if the test did not stop it.
pub struct Server {
    child: Option<Child>,
    pub pg_port: u16,
    pub flight_port: u16,
    pub http_port: u16,
    /// The data directory, when the server made its own.
    _data: Option<tempfile::TempDir>,
    /// The ready file and the server's stderr.
    run: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test whose outside program is missing says so and skips, except under CI (`CI`
/// set), where it fails: CI must run every test.
pub fn skip_unless_ci(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}; CI runs every test"
    );
    eprintln!("skipped: {why}");
}

pub fn weir_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weir")
}

/// GET a path from the HTTP listener; `None` while nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// One value from the server's `/metrics` page, e.g. `metric(port, "weir_queries_total")`.
pub fn metric(http_port: u16, name: &str) -> f64 {
    let (status, page) = http_get(http_port, "/metrics").expect("metrics page");
    assert_eq!(status, 200);
    page.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{page}"))
}

/// Wait until the server has answered more statements than `before` (a statement
/// counts as answered once its rows start streaming).
pub async fn wait_for_statements(http_port: u16, before: f64) {
    while metric(http_port, "weir_queries_total") <= before {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The first column of the first row of a simple-protocol answer.
pub fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

/// A connected client whose connection task runs in the background.
/// Every row of `sql`, in the order the server sent them, as its values joined by `|`
/// (`NULL` for a null).
pub async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

pub async fn connect(server: &Server) -> tokio_postgres::Client {
    let (client, conn) = server
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

impl Server {
    /// Start on `sql_dir` (relative to the package root) and wait for `/healthz`.
    pub fn start(sql_dir: &str) -> Server {
        Self::start_with(sql_dir, &[])
    }

    /// [`Server::start`] with extra `weir serve` flags.
    pub fn start_with(sql_dir: &str, extra: &[&str]) -> Server {
        Self::start_on_host("127.0.0.1", sql_dir, extra)
    }

    /// [`Server::start_with`], the PostgreSQL listener on `host` (clients still reach it
    /// on 127.0.0.1); Flight SQL stays on loopback (beyond it, it needs TLS).
    pub fn start_on_host(host: &str, sql_dir: &str, extra: &[&str]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().to_path_buf();
        Self::launch(host, sql_dir, &path, Some(data), extra, &[])
    }

    /// [`Server::start`] with environment variables (the `${NAME}` of `.sql` files).
    pub fn start_with_env(sql_dir: &str, env: &[(&str, &str)]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().to_path_buf();
        Self::launch("127.0.0.1", sql_dir, &path, Some(data), &[], env)
    }

    /// Start on `sql_dir` with the data directory `data`, which outlives the server (for
    /// restarts on it).
    pub fn start_on(sql_dir: &Path, data: &Path, extra: &[&str]) -> Server {
        Self::start_on_with_env(sql_dir, data, extra, &[])
    }

    /// [`Server::start_on`] with environment variables.
    pub fn start_on_with_env(
        sql_dir: &Path,
        data: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Self::launch(
            "127.0.0.1",
            sql_dir.to_str().unwrap(),
            data,
            None,
            extra,
            env,
        )
    }

    fn launch(
        host: &str,
        sql_dir: &str,
        data_dir: &Path,
        data: Option<tempfile::TempDir>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        // The server binds port 0 and says which ports it got: no other test can take
        // them between a probe and the bind.
        let run = tempfile::tempdir().unwrap();
        let ready = run.path().join("ready.json");
        let log_path = run.path().join("weir.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        // The tests read the repository's fixtures and data and write into temporary
        // folders and moto's bucket; a test that names its own allowed locations keeps them.
        let allowed = format!(
            "{},{},s3://weir-test/",
            root.display(),
            std::env::temp_dir().display()
        );
        let allowed: &[&str] = if extra.contains(&"--storage-allowed-locations") {
            &[]
        } else {
            &["--storage-allowed-locations", &allowed]
        };
        let mut child = Command::new(weir_bin())
            .current_dir(root)
            .args(["serve", "--sql-dir", sql_dir])
            .args(["--pg-listen", &format!("{host}:0")])
            .args(["--flight-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--ready-file")
            .arg(&ready)
            .args(allowed)
            .args(extra)
            .env("WEIR_LOG", "error")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn weir");
        let output = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        let bound: serde_json::Value = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break serde_json::from_str(&text).unwrap();
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("weir exited before it was ready: {status}\n{}", output());
            }
            assert!(
                Instant::now() < deadline,
                "weir not ready after 60 s\n{}",
                output()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let port = |key: &str| -> u16 {
            let addr: std::net::SocketAddr = bound[key].as_str().unwrap().parse().unwrap();
            addr.port()
        };
        Server {
            child: Some(child),
            pg_port: port("pg"),
            flight_port: port("flight"),
            http_port: port("http"),
            _data: data,
            run,
        }
    }

    /// What the server has written to stderr so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.run.path().join("weir.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash: no shutdown, no last checkpoint.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.pg_port)
            .user("weir_test")
            .dbname("weir");
        c
    }

    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGTERM, then wait for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        if !status.success() {
            eprintln!("weir exited with {status}:\n{}", self.output());
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running tansu broker (Kafka protocol) on a free loopback port, storing in SQLite in a
/// temporary folder: its in-memory engine answers ListOffsets(latest) with the last
/// batch's base offset + 1 instead of the high watermark. Killed on drop; `kill` and
/// `restart` make an outage (the same port and storage after the restart).
pub struct Broker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// The tansu binary: `WEIR_TANSU`, else `tansu` on PATH, else the one scripts/setup.sh
/// builds into the weir cache folder.
fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_TANSU").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return p;
    }
    let cache = std::env::var_os("WEIR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")));
    if let Some(p) = cache.map(|c| c.join("tansu-0.6.0/bin/tansu"))
        && p.is_file()
    {
        return p;
    }
    panic!("Kafka tests need tansu: run scripts/setup.sh");
}

impl Broker {
    /// Start tansu and wait until it answers a metadata request.
    pub fn start() -> Broker {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Self::spawn(port, dir.path());
        let mut broker = Broker { child, port, dir };
        broker.wait_ready();
        broker
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let bin = tansu_bin();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tansu.log"))
            .unwrap();
        Command::new(&bin)
            .current_dir(dir)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()))
    }

    fn wait_ready(&mut self) {
        let log_path = self.dir.path().join("tansu.log");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.answers_metadata() {
                return;
            }
            let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("tansu exited before it was ready: {status}\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "tansu not ready after 30 s\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL the broker and wait until it is gone: clients see their connections drop
    /// and nothing answers on the port until `restart`.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Start the broker again on the same port and storage (after `kill`), and wait until it
    /// answers a metadata request.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port, self.dir.path());
        self.wait_ready();
    }

    fn answers_metadata(&self) -> bool {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = match rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .create()
        {
            Ok(c) => c,
            Err(_) => return false,
        };
        consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok_and(|m| !m.brokers().is_empty())
    }

    /// `127.0.0.1:PORT`, for `properties.bootstrap.servers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        weir::connector::kafka::create_topic(&self.addr(), name, partitions)
            .await
            .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
    }

    /// Produce `payloads` to one partition and wait for their delivery.
    pub async fn produce<P: AsRef<[u8]>>(&self, topic: &str, partition: i32, payloads: &[P]) {
        let records = payloads
            .iter()
            .map(|p| (Some(partition), p.as_ref().to_vec()))
            .collect();
        weir::connector::kafka::produce(&self.addr(), topic, records)
            .await
            .unwrap_or_else(|e| panic!("produce to {topic}/{partition}: {e}"));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throw-away PostgreSQL server on a free loopback port, its cluster in a temporary
/// folder (initdb with trust authentication, no fsync). When the tests run as root (CI),
/// initdb and postgres run as the `postgres` user, which owns the folder. Stopped on drop;
/// `stop` and `start_again` make an outage (the same port and data).
pub struct Postgres {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// The user and group the server runs as, when the tests run as root.
    as_user: Option<(u32, u32)>,
    /// TLS on, with a self-signed certificate in the folder.
    tls: bool,
}

/// The folder of initdb and postgres: `WEIR_POSTGRES_BIN`, else the newest
/// /usr/lib/postgresql/*/bin (Debian's `postgresql` package; scripts/setup.sh installs it).
pub fn postgres_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEIR_POSTGRES_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.join("initdb").is_file() && p.join("postgres").is_file(),
            "WEIR_POSTGRES_BIN={} holds no initdb and postgres",
            p.display()
        );
        return Some(p);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Output of a command, which must succeed.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Postgres {
    /// Start a server, or `None` (after saying so) when PostgreSQL is not installed and
    /// `WEIR_POSTGRES_BIN` is not set: the caller skips its test.
    pub fn start() -> Option<Postgres> {
        Self::launch(false)
    }

    /// [`Postgres::start`] with TLS on (`ssl = on`, a self-signed certificate).
    pub fn start_tls() -> Option<Postgres> {
        Self::launch(true)
    }

    fn launch(tls: bool) -> Option<Postgres> {
        let Some(bin) = postgres_bin() else {
            skip_unless_ci(
                "no PostgreSQL server binaries (install Debian's postgresql package \
                 with scripts/setup.sh, or set WEIR_POSTGRES_BIN to the folder of initdb)",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = run(Command::new("id").arg("-u")) == "0";
        let as_user = root.then(|| {
            let uid = run(Command::new("id").args(["-u", "postgres"]))
                .parse()
                .unwrap();
            let gid = run(Command::new("id").args(["-g", "postgres"]))
                .parse()
                .unwrap();
            run(Command::new("chown").arg("postgres:").arg(dir.path()));
            (uid, gid)
        });
        let mut pg = Postgres {
            child: None,
            port: free_port(),
            bin,
            dir,
            as_user,
            tls,
        };
        let mut initdb = pg.command("initdb");
        initdb
            .arg("-D")
            .arg(pg.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale=C"]);
        run(&mut initdb);
        if tls {
            use std::os::unix::fs::PermissionsExt;
            let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
            let (cert, key) = (
                pg.dir.path().join("server.crt"),
                pg.dir.path().join("server.key"),
            );
            std::fs::write(&cert, made.cert.pem()).unwrap();
            std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
            // The server refuses a key others can read.
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            if pg.as_user.is_some() {
                run(Command::new("chown").arg("postgres:").arg(&cert).arg(&key));
            }
        }
        pg.start_again();
        Some(pg)
    }

    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.as_user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Start the server (again, after `stop`) on its port and data, and wait until it
    /// takes connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "PostgreSQL is running");
        let log_path = self.dir.path().join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let before = self.log().matches("ready to accept connections").count();
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "synchronous_commit=off"])
            .args(if self.tls {
                vec![
                    "-c".to_string(),
                    "ssl=on".to_string(),
                    "-c".to_string(),
                    format!(
                        "ssl_cert_file={}",
                        self.dir.path().join("server.crt").display()
                    ),
                    "-c".to_string(),
                    format!(
                        "ssl_key_file={}",
                        self.dir.path().join("server.key").display()
                    ),
                ]
            } else {
                Vec::new()
            })
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn postgres: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches("ready to accept connections").count() <= before {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "postgres exited before it was ready: {status}\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready after 30 s\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// Fast shutdown (SIGINT: open connections are cut) and wait until it is gone.
    pub fn stop(&mut self) {
        self.signal("-INT");
    }

    fn signal(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            child.wait().unwrap();
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`, for a sink's `url`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A connected client whose connection task runs in the background.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()));
        tokio::spawn(conn);
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate shutdown: the cluster is thrown away.
        self.signal("-QUIT");
    }
}

/// An S3-compatible server (moto's `moto_server`, from PyPI) holding one empty bucket,
/// for the `s3://` tests. Killed on drop.
pub struct S3 {
    child: Child,
    port: u16,
}

impl S3 {
    /// Start `WEIR_MOTO_SERVER` (scripts/test.sh points it at .venv/bin/moto_server) and
    /// create `bucket`; `None` (after saying so) when the variable is not set.
    pub fn start(bucket: &str) -> Option<S3> {
        let Some(bin) = std::env::var_os("WEIR_MOTO_SERVER").filter(|p| !p.is_empty()) else {
            skip_unless_ci(
                "WEIR_MOTO_SERVER is not set (scripts/setup.sh installs moto_server \
                 into .venv/bin, and scripts/test.sh sets it)",
            );
            return None;
        };
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.to_string_lossy()));
        let s3 = S3 { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        // Creating the bucket is the readiness check: a plain path-style PUT, which moto
        // accepts unsigned.
        loop {
            match s3.request(&format!("PUT /{bucket} HTTP/1.1")) {
                Some(200) => return Some(s3),
                Some(status) => panic!("creating bucket {bucket}: HTTP {status}"),
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                None => panic!("moto_server did not answer on port {port} within 60 s"),
            }
        }
    }

    /// The status of one request without a body, or `None` when the server is not up yet.
    fn request(&self, line: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let request = format!(
            "{line}\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split(' ').nth(1)?.parse().ok()
    }

    /// The environment that points a weir server's `s3://` locations at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_ACCESS_KEY_ID", "weir".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "weir".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
