//! Runs every `tests/sqllogictest/*.slt` file over the wire, once with the simple query
//! protocol and once with the extended protocol, against one server on the fixtures; and
//! the `tests/sqllogictest/streaming/*.slt` files once, simple protocol, against their own
//! server and a tansu Kafka broker (`$BROKER`), with a folder of their own (`$TMP`).

use std::path::{Path, PathBuf};

use sqllogictest::{AsyncDB, Runner};
use sqllogictest_engines::postgres::{Extended, Postgres, Simple};

use crate::harness::{Broker, Server, weir_bin};

/// The `.slt` files of `tests/sqllogictest/<folder>` whose path below
/// `tests/sqllogictest` contains `WEIR_SLT` (e.g. `WEIR_SLT=streaming`, `WEIR_SLT=types`).
fn slt_files(folder: &str) -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sqllogictest");
    let filter = std::env::var("WEIR_SLT").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            let rel = p.strip_prefix(&root).unwrap_or(p).to_string_lossy();
            filter.as_ref().is_none_or(|f| rel.contains(f.as_str()))
        })
        .collect();
    files.sort();
    files
}

/// No files is a mistake unless `WEIR_SLT` chose none of them here; a `WEIR_SLT` that
/// matches no file in any folder is a mistake too.
fn check_found(files: &[PathBuf], folder: &str) -> bool {
    if !files.is_empty() {
        return true;
    }
    let Ok(filter) = std::env::var("WEIR_SLT") else {
        panic!("no .slt files found in tests/sqllogictest/{folder}");
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sqllogictest");
    let anywhere = ["", "streaming", "nexmark"]
        .iter()
        .filter_map(|f| std::fs::read_dir(root.join(f)).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .any(|e| {
            let path = e.path();
            let rel = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            path.extension().is_some_and(|x| x == "slt") && rel.contains(filter.as_str())
        });
    assert!(
        anywhere,
        "WEIR_SLT={filter} matches no .slt file below tests/sqllogictest"
    );
    false
}

async fn run_all<D, F, Fut>(
    name: &str,
    files: &[PathBuf],
    vars: &[(&str, &str)],
    connect: F,
) -> Vec<String>
where
    D: AsyncDB + Send + 'static,
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<D, D::Error>> + Send,
{
    let mut failures = Vec::new();
    for file in files {
        let mut runner = Runner::new(connect.clone());
        runner.set_var("WEIR".into(), weir_bin().into());
        for (k, v) in vars {
            runner.set_var(k.to_string(), v.to_string());
        }
        // `onlyif simple` / `skipif extended` for the few places where the protocols differ.
        runner.add_label(name);
        if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("[{name}] {}:\n{e}", display(file)));
        }
        runner.shutdown_async().await;
    }
    failures
}

fn display(file: &Path) -> String {
    file.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(file)
        .display()
        .to_string()
}

/// A PostgreSQL connection whose errors read `(SQLSTATE) message`, so a `statement error`
/// line can match the code, the server's message, or both.
struct Pg<D>(D);

#[derive(Debug)]
struct PgError(String);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgError {}

impl<D> Pg<D> {
    async fn connect<Fut>(connect: Fut) -> Result<Self, PgError>
    where
        Fut: Future<Output = Result<D, tokio_postgres::Error>>,
    {
        connect.await.map(Pg).map_err(pg_error)
    }
}

fn pg_error(e: tokio_postgres::Error) -> PgError {
    PgError(match e.as_db_error() {
        Some(db) => format!("({}) {}", db.code().code(), db.message()),
        None => e.to_string(),
    })
}

#[async_trait::async_trait]
impl<D> AsyncDB for Pg<D>
where
    D: AsyncDB<Error = tokio_postgres::Error> + Send,
{
    type Error = PgError;
    type ColumnType = D::ColumnType;

    async fn run(
        &mut self,
        sql: &str,
    ) -> Result<sqllogictest::DBOutput<Self::ColumnType>, PgError> {
        self.0.run(sql).await.map_err(pg_error)
    }

    async fn shutdown(&mut self) {
        self.0.shutdown().await
    }

    fn engine_name(&self) -> &str {
        self.0.engine_name()
    }

    async fn run_command(command: std::process::Command) -> std::io::Result<std::process::Output> {
        D::run_command(command).await
    }
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_over_the_wire() {
    let files = slt_files("");
    if !check_found(&files, "") {
        return;
    }
    let server = Server::start("tests/fixtures/sql");
    let config = server.pg_config();

    let c = config.clone();
    let mut failures = run_all("simple", &files, &[], move || {
        Postgres::<Simple>::connect(c.clone())
    })
    .await;
    let c = config.clone();
    failures.extend(
        run_all("extended", &files, &[], move || {
            Postgres::<Extended>::connect(c.clone())
        })
        .await,
    );

    assert_no_failures(&failures);
    assert!(
        server.stop().success(),
        "weir did not exit cleanly on SIGTERM"
    );
}

/// Streaming suites: Kafka sources and views over a real broker, simple protocol only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_sqllogictest() {
    let files = slt_files("streaming");
    if !check_found(&files, "streaming") {
        return;
    }
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path().to_str().unwrap();
    run_simple(
        &files,
        "tests/fixtures/sql",
        &[("BROKER", &broker.addr()), ("TMP", tmp)],
    )
    .await;
}

/// `files` over the simple protocol against a server on `sql_dir`, which must then stop
/// cleanly.
/// `$PGPORT` is the server's PostgreSQL port, for `system` records that run psql.
async fn run_simple(files: &[PathBuf], sql_dir: &str, vars: &[(&str, &str)]) {
    let server = Server::start(sql_dir);
    let config = server.pg_config();
    let port = server.pg_port.to_string();
    let mut vars = vars.to_vec();
    vars.push(("PGPORT", &port));
    let failures = run_all("simple", files, &vars, move || {
        Pg::connect(Postgres::<Simple>::connect(config.clone()))
    })
    .await;
    assert_no_failures(&failures);
    assert!(
        server.stop().success(),
        "weir did not exit cleanly on SIGTERM"
    );
}

/// Nexmark queries as shipped in examples/nexmark/, loaded by the server at start and
/// checked against batch recomputations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_sqllogictest() {
    let files = slt_files("nexmark");
    if !check_found(&files, "nexmark") {
        return;
    }
    run_simple(&files, "examples/nexmark", &[]).await;
}
