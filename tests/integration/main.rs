//! End-to-end tests against a real `weir serve` process over TCP: the sqllogictest
//! suites (simple and extended protocol), hostile bytes on the PostgreSQL port, password
//! authentication and TLS, the `weir` command line, and the Kafka source against a tansu
//! broker, and the PostgreSQL and Kafka sinks against real servers. One binary, so the server is built and linked once.

mod auth;
mod durability;
mod harness;
mod hostile;
mod kafka;
mod kafka_outage;
mod limits;
mod object_store;
mod protocol;
mod sinks;
mod slt;
