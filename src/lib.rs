//! Weir: a SQL-first streaming analytics server. A tour of the tree, in the order a
//! statement and its results travel:
//!
//! - [`config`]: the one configuration struct (`weir.toml`, `WEIR_*`, flags).
//! - [`connector`]: where records come from (Kafka, the built-in `datagen` events, Nexmark).
//! - [`decode`]: message payloads (JSON, CSV) into Arrow record batches.
//! - [`window`]: event time — window assignment, watermarks, incremental aggregation.
//! - [`view`]: materialized views and sources — compiling a view's query, the pipeline
//!   that runs it, and the state readers see.
//! - [`sql`]: statement text — splitting scripts, telling Weir's statements from plain
//!   SQL, and the `.sql` folder loader with its dependency order.
//! - [`engine`]: the catalog and the single execution path every front uses.
//! - [`storage`]: object stores (`file://`, `hdfs://`) behind bounded tables.
//! - [`server`]: the listeners — PostgreSQL wire ([`server::pgwire`]), Arrow Flight SQL
//!   ([`server::flight`]), HTTP health and metrics — and graceful shutdown.
//! - [`sink`]: where rows go — Parquet files, PostgreSQL upserts, Kafka records.
//! - [`error`]: the one error type and its SQLSTATE mapping.
//! - [`bench`]: `weir bench`, the throughput, latency and memory benchmarks.

pub mod bench;
pub mod catalog;
pub mod checkpoint;
pub mod config;
pub mod connector;
pub mod decode;
pub mod engine;
pub mod error;
pub mod gen_topics;
pub mod server;
pub mod sink;
pub mod sql;
pub mod storage;
pub mod view;
pub mod window;

pub use error::{Result, WeirError};
