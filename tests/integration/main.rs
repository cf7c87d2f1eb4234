//! End-to-end tests against a real `weir serve` process over TCP: the sqllogictest
//! suites (simple and extended protocol), hostile bytes on the PostgreSQL port, password
//! authentication and TLS, the `weir` command line, the Kafka source against a tansu
//! broker, the Parquet, PostgreSQL and Kafka sinks against real servers, the
//! pipelines of `examples/`, and the supervision of views whose threads fail. One
//! binary, so the server is built and linked once.

mod auth;
mod catalog;
mod durability;
mod examples;
mod harness;
mod hostile;
mod kafka;
mod kafka_outage;
mod limits;
mod object_store;
mod protocol;
mod security;
mod sinks;
mod slt;
mod supervision;
