//! Weir: a SQL-first streaming analytics server. A tour of the tree, in the order a
//! record travels from a topic to a client, then the layers around it:
//!
//! - [`connector`]: where records come from (Kafka, the built-in `datagen` events,
//!   Nexmark), as Arrow batches per partition with their offsets.
//! - [`decode`]: message payloads (JSON, CSV) into Arrow record batches.
//! - [`window`]: event time — window assignment, watermarks, incremental aggregation.
//! - [`view`]: materialized views and sources — compiling a view's query, the pipeline
//!   that runs it on its own thread, and the state readers see.
//! - [`sink`]: where rows go — Parquet files, PostgreSQL upserts, Kafka records — with the
//!   runner that commits them together with checkpoints.
//! - [`checkpoint`]: every view's state and offsets, and every sink's staged files,
//!   written together into the data directory and read back at start.
//! - [`catalog`]: the durable catalog — objects created over the ports, kept in the data
//!   directory and brought back at start.
//! - [`sql`]: statement text — splitting scripts, telling Weir's statements from plain
//!   SQL, and the `.sql` folder loader with its dependency order.
//! - [`engine`]: the DataFusion context holding every object, and the single execution
//!   path every front uses.
//! - [`storage`]: object stores (`file://`, `hdfs://`, `s3://`) behind bounded tables.
//! - [`server`]: the listeners — PostgreSQL wire ([`server::pgwire`]), Arrow Flight SQL
//!   ([`server::flight`]), HTTP health and metrics — and graceful shutdown.
//! - [`config`]: the one configuration struct (`weir.toml`, `WEIR_*`, flags).
//! - [`error`]: the one error type and its SQLSTATE mapping; [`locks`]: the one policy
//!   for poisoned locks.
//! - [`bench`]: `weir bench`, the throughput, latency and memory benchmarks;
//!   [`gen_topics`]: `weir gen`, generated events written into Kafka.

pub mod bench;
pub mod catalog;
pub mod checkpoint;
pub mod config;
pub mod connector;
pub mod decode;
pub mod engine;
pub mod error;
pub mod gen_topics;
pub mod locks;
pub mod server;
pub mod sink;
pub mod sql;
pub mod storage;
pub mod view;
pub mod window;

pub use error::{Result, WeirError};
