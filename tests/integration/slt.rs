//! Runs every `tests/sqllogictest/*.slt` file over the wire, once with the simple query
//! protocol and once with the extended protocol, against one server on the fixtures.

use std::path::PathBuf;

use sqllogictest::{AsyncDB, Runner};
use sqllogictest_engines::postgres::{Extended, Postgres, Simple};

use crate::harness::{Server, weir_bin};

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sqllogictest");
    let filter = std::env::var("WEIR_SLT").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            filter
                .as_ref()
                .is_none_or(|f| p.to_string_lossy().contains(f.as_str()))
        })
        .collect();
    files.sort();
    files
}

async fn run_all<D, F, Fut>(name: &str, files: &[PathBuf], connect: F) -> Vec<String>
where
    D: AsyncDB + Send + 'static,
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<D, D::Error>> + Send,
{
    let mut failures = Vec::new();
    for file in files {
        let mut runner = Runner::new(connect.clone());
        runner.set_var("WEIR".into(), weir_bin().into());
        // `onlyif simple` / `skipif extended` for the few places where the protocols differ.
        runner.add_label(name);
        if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("[{name}] {}:\n{e}", file.display()));
        }
        runner.shutdown_async().await;
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_over_the_wire() {
    let server = Server::start("tests/fixtures/sql");
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files found");
    let config = server.pg_config();

    let c = config.clone();
    let mut failures = run_all("simple", &files, move || {
        Postgres::<Simple>::connect(c.clone())
    })
    .await;
    let c = config.clone();
    failures.extend(
        run_all("extended", &files, move || {
            Postgres::<Extended>::connect(c.clone())
        })
        .await,
    );

    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        server.stop().success(),
        "weir did not exit cleanly on SIGTERM"
    );
}
