//! `weir bench`: throughput, latency and memory benchmarks of the streaming path, each
//! printing its parameters and a `RESULT` line. Run them from a release build; the
//! figures measured on the project's machine are in BENCHMARKS.md.

pub mod bids;
pub mod drive;
pub mod json;
pub mod kafka;
pub mod latency;
pub mod measure;
pub mod memory;
pub mod nexmark;
pub mod reads;
pub mod serve;
pub mod supplied;

use clap::Subcommand;

use crate::error::Result;

/// The benchmarks.
#[derive(Debug, Clone, Subcommand)]
pub enum Bench {
    /// Nexmark bids decoded from in-memory JSON and aggregated per auction in 10 s
    /// tumbling windows: events per second per CPU core, next to arrow-json alone.
    NexmarkJson {
        /// Bids to generate and process
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Times each measurement is taken (the median is reported)
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The same view over a Kafka source: produce the bids to a fresh 3-partition topic,
    /// then time CREATE MATERIALIZED VIEW through FLUSH.
    NexmarkKafka {
        /// Kafka bootstrap servers, HOST:PORT[,…]
        #[arg(long)]
        brokers: String,
        /// Bids to produce and process
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Also report the CPU time of this process (the broker, when it runs here)
        #[arg(long, value_name = "PID")]
        broker_pid: Option<u32>,
    },
    /// Latency from producing an event to a PostgreSQL query seeing it in a view, at a
    /// steady rate.
    Latency {
        /// Kafka bootstrap servers, HOST:PORT[,…]
        #[arg(long)]
        brokers: String,
        /// Events per second
        #[arg(long, default_value_t = 50_000.0)]
        rate: f64,
        /// How long to produce
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Events of the first SECONDS are not counted
        #[arg(long, value_name = "SECONDS", default_value_t = 5)]
        warmup: u64,
        /// The producer's linger.ms
        #[arg(long, default_value_t = 1)]
        linger_ms: u64,
        /// A librdkafka property of the source, as its 'properties.KEY' option (repeatable)
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = key_value)]
        properties: Vec<(String, String)>,
        /// Also report the CPU time of this process (the broker, when it runs here)
        #[arg(long, value_name = "PID")]
        broker_pid: Option<u32>,
    },
    /// The Nexmark queries of examples/nexmark/ over the in-process generator (or a
    /// JSON-lines file of bids): events per second per CPU core, per query. The joins
    /// (q3, q4, q6, q8) read the persons and auctions of the same event stream.
    Nexmark {
        /// Queries to run (default: all of them)
        #[arg(long = "query", value_name = "qN")]
        queries: Vec<String>,
        /// Bids to generate (the persons and auctions are in proportion: 1 and 3 of every
        /// 50 events)
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Times each query runs (the median is reported)
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Read the bids from this JSON-lines file instead (loaded before timing)
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
    /// Reading a Parquet table and a materialized view whole over Arrow Flight SQL and
    /// over the PostgreSQL port (binary and text rows): rows/s and MB/s in one run.
    Serve {
        /// Rows of the Parquet table
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Rows of the materialized view
        #[arg(long, default_value_t = 2_000_000)]
        view_rows: u64,
    },
    /// Queries over a whole view of many open groups while its pipeline ingests as fast
    /// as it can: latency p50/p99 with each number of concurrent readers, and the ingest
    /// rate alone and while read.
    Reads {
        /// Keys of the view (its open groups)
        #[arg(long, default_value_t = 1_000_000)]
        groups: u64,
        /// Concurrent readers, one measurement each (repeatable)
        #[arg(long = "readers", default_values_t = [1, 50])]
        readers: Vec<usize>,
        /// Seconds each measurement lasts
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// State per open (window, key) group with count, sum and max.
    Memory {
        /// Groups to open in one window
        #[arg(long, default_value_t = 1_000_000)]
        groups: u64,
    },
}

fn key_value(text: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got '{text}'"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// Run one benchmark; warnings are logged (`WEIR_LOG` sets the filter).
pub async fn run(bench: Bench) -> Result<()> {
    let filter = std::env::var("WEIR_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_target(false)
        .try_init();
    if cfg!(debug_assertions) {
        println!("warning: a debug build; benchmark figures need `cargo build --release`");
    }
    match bench {
        Bench::NexmarkJson { events, runs } => json::run(events, runs).await,
        Bench::NexmarkKafka {
            brokers,
            events,
            broker_pid,
        } => kafka::run(&brokers, events, broker_pid).await,
        Bench::Latency {
            brokers,
            rate,
            seconds,
            warmup,
            linger_ms,
            properties,
            broker_pid,
        } => {
            latency::run(latency::Settings {
                brokers,
                rate,
                seconds,
                warmup,
                linger_ms,
                properties,
                broker_pid,
            })
            .await
        }
        Bench::Memory { groups } => memory::run(groups).await,
        Bench::Reads {
            groups,
            readers,
            seconds,
        } => reads::run(groups, &readers, seconds).await,
        Bench::Serve { rows, view_rows } => serve::run(rows, view_rows).await,
        Bench::Nexmark {
            queries,
            events,
            runs,
            json,
        } => nexmark::run(&queries, events, runs, json.as_deref()).await,
    }
}
