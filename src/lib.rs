//! Weir: a SQL-first streaming analytics server. A tour of the tree, in the order a
//! statement and its results travel:
//!
//! - [`config`]: the one configuration struct (`weir.toml`, `WEIR_*`, flags).
//! - [`connector`]: where records come from (the built-in `datagen` events).
//! - [`sql`]: statement text — splitting scripts, telling Weir's statements from plain
//!   SQL, and the `.sql` folder loader with its dependency order.
//! - [`engine`]: the catalog and the single execution path every front uses.
//! - [`storage`]: object stores (`file://`, `hdfs://`) behind bounded tables.
//! - [`server`]: the listeners — PostgreSQL wire ([`server::pgwire`]), HTTP health and
//!   metrics — and graceful shutdown.
//! - [`error`]: the one error type and its SQLSTATE mapping.

pub mod config;
pub mod connector;
pub mod engine;
pub mod error;
pub mod server;
pub mod sql;
pub mod storage;

pub use error::{Result, WeirError};
