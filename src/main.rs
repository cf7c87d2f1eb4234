//! The `weir` command: `serve` runs the server, `check` validates a folder of `.sql`
//! files without starting anything. Errors become a message and a non-zero exit here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use weir::config::{Config, Overrides};
use weir::engine::Engine;

#[derive(Parser)]
#[command(name = "weir", version, about = "SQL-first streaming analytics server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the .sql folder and serve PostgreSQL wire and HTTP.
    Serve {
        /// Configuration file [default: ./weir.toml when it exists]
        #[arg(long, env = "WEIR_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Parse and plan every .sql file of DIR; exit non-zero on the first problem.
    Check {
        /// Folder of .sql files
        dir: PathBuf,
    },
}

fn init_logs(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config, overrides } => {
                let config = Config::load(config.as_deref(), &overrides)?;
                init_logs(&config.log);
                weir::server::run(config).await
            }
            Command::Check { dir } => check(&dir).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn check(dir: &std::path::Path) -> weir::Result<()> {
    let engine = Engine::new().await?;
    let defs = engine.load_dir(dir).await?;
    for def in &defs {
        let what = def
            .creates
            .as_deref()
            .map(|n| format!("creates {n}"))
            .unwrap_or_else(|| "runs".into());
        println!("{}: {what}", def.location());
    }
    println!("ok: {} statements in {}", defs.len(), dir.display());
    Ok(())
}
