//! Weir: a SQL-first streaming analytics server. The modules form layers, each importing
//! only those below it; a record travels up from the bottom:
//!
//! - [`server`]: the listeners — PostgreSQL wire ([`server::pgwire`]), Arrow Flight SQL
//!   ([`server::flight`]), HTTP health and metrics — start-up and graceful shutdown.
//! - [`engine`]: the DataFusion context holding every object, and the single execution
//!   path every front uses; `weir_catalog`, `pg_catalog` and `information_schema`.
//! - [`catalog`]: every source, view and sink by name — their DDL, dependencies,
//!   `FLUSH`, `DROP`, the threads that run them, checkpoint orchestration — and the
//!   durable catalog that brings objects created over the ports back at start.
//! - [`sink`]: where rows go — Parquet files, PostgreSQL upserts, Kafka records — each a
//!   [`sink::SinkConnector`], driven by a runner that commits with the checkpoints.
//! - [`view`]: materialized views and sources — compiling a view's query, the pipeline
//!   that runs it, the state readers see, and a view read by another as a stream.
//! - [`checkpoint`]: the checkpoint files — every view's state and offsets and every
//!   sink's staged files — written together and read back at start.
//! - [`connector`]: where records come from (Kafka, the built-in `datagen` events,
//!   Nexmark), each a [`connector::SourceConnector`] whose readers return Arrow batches
//!   per partition with their offsets.
//! - [`window`]: event time — window assignment, watermarks, incremental aggregation;
//!   [`decode`]: message payloads (JSON, CSV) into Arrow record batches;
//!   [`storage`]: object stores (`file://`, `hdfs://`, `s3://`) behind bounded tables;
//!   [`sql`]: statement text — splitting scripts, Weir's own statements, the `.sql`
//!   folder loader with its dependency order.
//! - [`config`]: the one configuration struct (`weir.toml`, `WEIR_*`, flags);
//!   [`error`]: the one error type and its SQLSTATE mapping; [`locks`]: the one policy
//!   for poisoned locks.
//!
//! Beside them, the tools: [`bench`] (`weir bench`, the throughput, latency and memory
//! benchmarks) and [`gen_topics`] (`weir gen`, generated events written into Kafka).

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
