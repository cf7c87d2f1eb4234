//! The `weir` command: `serve` runs the server, `check` validates a folder of `.sql`
//! files without starting anything, `gen` and `produce` write into Kafka, `bench`
//! measures. Errors become a message and a non-zero exit here.

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
#[allow(clippy::large_enum_variant)]
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
    /// Run a benchmark (build with --release); see BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        bench: weir::bench::Bench,
    },
    /// Write generated events into Kafka topics as JSON: the ShopNow+ topics, the
    /// transactions topic, or Nexmark's person, auction and bid.
    Gen {
        /// Kafka bootstrap servers, HOST:PORT[,…]
        #[arg(long, required_unless_present = "out", conflicts_with = "out")]
        brokers: Option<String>,
        /// Write one JSON-lines file per topic into this folder instead (needs --count)
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        #[arg(long, value_enum, default_value = "shop")]
        profile: weir::gen_topics::GenProfile,
        /// Events per second per topic, or 'unlimited'
        #[arg(long, default_value = "1000", value_parser = weir::gen_topics::parse_rate)]
        rate: weir::gen_topics::Rate,
        /// Same seed, same events
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop after N events per topic [default: run until interrupted]
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Partitions of the topics it creates
        #[arg(long, value_name = "N", default_value_t = 3)]
        partitions: i32,
        /// Event time of the first event, e.g. '2026-01-01 00:00:00' [default: now]
        #[arg(long, value_parser = weir::gen_topics::parse_start)]
        start: Option<i64>,
    },
    /// Produce stdin to a Kafka topic, one record per line; `@P payload` goes to partition P.
    Produce {
        /// Kafka bootstrap servers, HOST:PORT[,…]
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        /// Create the topic with N partitions first, when it does not exist
        #[arg(long, value_name = "N")]
        partitions: Option<i32>,
        /// Partition of lines without `@P` [default: the partitioner's choice]
        #[arg(long, value_name = "P")]
        partition: Option<i32>,
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
        // Planning and running recurse once per level of an expression: room for the
        // deepest a statement may nest (sql::depth::MAX_DEPTH) in a debug build too.
        .thread_stack_size(16 << 20)
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
            Command::Bench { bench } => weir::bench::run(bench).await,
            Command::Gen {
                brokers,
                out,
                profile,
                rate,
                seed,
                count,
                partitions,
                start,
            } => {
                let options = weir::gen_topics::GenOptions {
                    brokers: brokers.unwrap_or_default(),
                    profile,
                    rate: rate.0,
                    seed,
                    count,
                    partitions,
                    start_micros: start,
                };
                match out {
                    Some(dir) => weir::gen_topics::write_files(&options, &dir),
                    None => weir::gen_topics::run(options).await,
                }
            }
            Command::Produce {
                brokers,
                topic,
                partitions,
                partition,
            } => produce(&brokers, &topic, partitions, partition).await,
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
    engine.catalog().set_checking();
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

async fn produce(
    brokers: &str,
    topic: &str,
    partitions: Option<i32>,
    partition: Option<i32>,
) -> weir::Result<()> {
    use weir::connector::kafka;
    let input = std::io::read_to_string(std::io::stdin())?;
    let records = kafka::records_from_lines(&input, partition)?;
    if let Some(n) = partitions {
        kafka::create_topic(brokers, topic, n).await?;
    }
    let count = records.len();
    kafka::produce(brokers, topic, records).await?;
    println!("produced {count} records to {topic}");
    Ok(())
}
