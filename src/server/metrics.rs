//! Server metrics in Prometheus text format: connections, queries, errors by SQLSTATE
//! and a query latency histogram. Also counts queries in flight, which graceful
//! shutdown waits on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::sync::Notify;

/// The server's counters, one registry for the `/metrics` page.
pub struct Metrics {
    registry: Registry,
    connections_total: IntCounter,
    connections_open: IntGauge,
    queries_total: IntCounter,
    query_errors_total: IntCounterVec,
    query_seconds: Histogram,
    in_flight: AtomicUsize,
    idle: Notify,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new_custom(Some("weir".into()), None).expect("valid prefix");
        let connections_total =
            IntCounter::new("pg_connections_total", "PostgreSQL connections accepted").unwrap();
        let connections_open =
            IntGauge::new("pg_connections_open", "PostgreSQL connections open now").unwrap();
        let queries_total = IntCounter::new("queries_total", "Statements executed").unwrap();
        let query_errors_total = IntCounterVec::new(
            Opts::new("query_errors_total", "Statements that failed, by SQLSTATE"),
            &["sqlstate"],
        )
        .unwrap();
        let query_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "query_duration_seconds",
                "Statement latency until the result starts streaming",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
        )
        .unwrap();
        for c in [
            Box::new(connections_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connections_open.clone()),
            Box::new(queries_total.clone()),
            Box::new(query_errors_total.clone()),
            Box::new(query_seconds.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Arc::new(Metrics {
            registry,
            connections_total,
            connections_open,
            queries_total,
            query_errors_total,
            query_seconds,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// Count a new connection; the returned guard counts it closed when dropped.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_total.inc();
        self.connections_open.inc();
        ConnectionGuard(self.clone())
    }

    /// Start timing a statement; call [`QueryTimer::finish`] when it is answered.
    pub fn query_started(self: &Arc<Self>) -> QueryTimer {
        QueryTimer {
            metrics: self.clone(),
            start: Instant::now(),
            done: false,
            _running: self.running(),
        }
    }

    /// Count a statement as running while the guard lives; result streams hold one
    /// until their last row is sent, so shutdown waits for them.
    pub fn running(self: &Arc<Self>) -> Running {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Running(self.clone())
    }

    /// Count a statement that failed before it ran (in Parse, say).
    pub fn failed(&self, sqlstate: &str) {
        self.queries_total.inc();
        self.query_errors_total.with_label_values(&[sqlstate]).inc();
    }

    /// Statements running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Resolves once no statement is running.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("Prometheus text is UTF-8")
    }
}

/// Counts a connection as open while alive.
pub struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

/// A running statement, for graceful shutdown.
pub struct Running(Arc<Metrics>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Times one statement until it is answered; dropped unfinished (cancelled,
/// connection gone) it is counted as cancelled.
pub struct QueryTimer {
    metrics: Arc<Metrics>,
    start: Instant,
    done: bool,
    _running: Running,
}

impl QueryTimer {
    /// Record the statement, with its SQLSTATE when it failed.
    pub fn finish(mut self, error: Option<&str>) {
        self.record(error);
    }

    fn record(&mut self, error: Option<&str>) {
        if self.done {
            return;
        }
        self.done = true;
        let m = &self.metrics;
        m.queries_total.inc();
        m.query_seconds.observe(self.start.elapsed().as_secs_f64());
        if let Some(code) = error {
            m.query_errors_total.with_label_values(&[code]).inc();
        }
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        self.record(Some("57014"));
    }
}
