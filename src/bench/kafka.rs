//! `weir bench nexmark-kafka`: Nexmark bids produced as JSON into a fresh 3-partition
//! topic, then read by an in-process engine through a Kafka source and the bids view
//! until `FLUSH` returns; events per second of wall time and per core of CPU time.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::bench::bids::{self, BID_COLUMNS, BID_VIEW};
use crate::bench::drive::sql;
use crate::bench::json::counted;
use crate::bench::measure::{Span, cpu_time_of, mib, rate, thousands};
use crate::connector::kafka;
use crate::engine::Engine;
use crate::error::{Result, WeirError};

/// Partitions of the benchmark's topic.
const PARTITIONS: i32 = 3;

/// A topic name no earlier run used.
pub fn fresh_topic(prefix: &str) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{prefix}-{ms}")
}

pub async fn run(brokers: &str, events: u64, broker_pid: Option<u32>) -> Result<()> {
    let n = usize::try_from(events)
        .map_err(|_| WeirError::InvalidParameter("--events is too large".into()))?;
    let topic = fresh_topic("weir-bench-bids");
    println!(
        "nexmark-kafka: {} JSON bids in topic '{topic}' ({PARTITIONS} partitions) on {brokers}, \
         TUMBLE 10 s per auction (count, max price)",
        thousands(events)
    );
    println!("  machine: {}", crate::bench::measure::machine());
    println!("  view: {BID_VIEW}");

    let t = Instant::now();
    let payloads = bids::generate(n);
    let bytes = payloads.bytes();
    let records: Vec<(Option<i32>, Vec<u8>)> = (0..payloads.len())
        .map(|i| (Some(i as i32 % PARTITIONS), payloads.get(i).to_vec()))
        .collect();
    drop(payloads);
    kafka::create_topic(brokers, &topic, PARTITIONS).await?;
    kafka::produce(brokers, &topic, records).await?;
    println!(
        "  produced {} bids ({}) round-robin over the partitions in {:.1} s (not timed)",
        thousands(events),
        mib(bytes as u64),
        t.elapsed().as_secs_f64()
    );

    let engine = Engine::new().await?;
    sql(
        &engine,
        &format!(
            "CREATE SOURCE bids ({BID_COLUMNS}) WITH (connector = 'kafka', topic = '{topic}', \
             'properties.bootstrap.servers' = '{brokers}', 'scan.startup.mode' = 'earliest', \
             format = 'json')"
        ),
    )
    .await?;
    let broker_before = broker_pid.map(cpu_time_of);
    let span = Span::start();
    sql(
        &engine,
        &format!("CREATE MATERIALIZED VIEW q AS {BID_VIEW}"),
    )
    .await?;
    sql(&engine, "FLUSH").await?;
    let measured = span.stop();
    let broker = broker_pid
        .zip(broker_before)
        .map(|(pid, before)| (pid, cpu_time_of(pid) - before));

    let view = engine
        .catalog()
        .views()
        .into_iter()
        .next()
        .ok_or_else(|| WeirError::Internal("the view is gone".into()))?;
    let (counted, rows) = counted(&view.rows_now()?)?;
    let late = view.stats.late_rows.load(Ordering::Relaxed);
    let read = view.stats.rows_in.load(Ordering::Relaxed);
    let errors = view.stats.decode_errors.load(Ordering::Relaxed);
    println!(
        "  read {} records ({} decode errors); sum(bids) = {} over {} (auction, window) rows, \
         {} late rows dropped",
        thousands(read),
        thousands(errors),
        thousands(counted),
        thousands(rows),
        thousands(late)
    );
    println!(
        "  CREATE MATERIALIZED VIEW … FLUSH: {} events/s wall, {} events/s per core; {}",
        rate(measured.per_second(events)),
        rate(measured.per_core(events)),
        measured.describe()
    );
    if let Some((pid, cpu)) = broker {
        println!(
            "  broker (pid {pid}) meanwhile: cpu {:.2} s ({:.2} cores)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / measured.wall.as_secs_f64().max(1e-9)
        );
    }
    let _ = sql(&engine, "DROP MATERIALIZED VIEW q").await;
    if read != events || counted + late != events {
        return Err(WeirError::Internal(format!(
            "read {read} and counted {counted} (+{late} late) of {events} bids"
        )));
    }
    println!(
        "RESULT nexmark-kafka events={events} partitions={PARTITIONS} events_per_sec_wall={:.0} \
         events_per_core={:.0} wall_s={:.2} cpu_s={:.2}",
        measured.per_second(events),
        measured.per_core(events),
        measured.wall.as_secs_f64(),
        measured.cpu.as_secs_f64()
    );
    Ok(())
}
