//! `weir bench memory`: the state one open (window, key) group costs, with count, sum
//! and max, as the aggregation reports it (`WindowedAggregate::state_bytes`) and as the
//! process's resident memory grows.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::compute::cast;

use crate::bench::drive::{Processor, compile_view, sql};
use crate::bench::measure::{mib, rss_bytes, thousands};
use crate::engine::Engine;
use crate::error::{Result, WeirError};

const VIEW: &str = "SELECT auction, window_start, window_end, count(*) AS n, \
     sum(price) AS total, max(price) AS top FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND) \
     GROUP BY auction, window_start, window_end";

/// Rows per batch fed to the aggregation.
const BATCH: usize = 8192;

/// 2026-01-01 00:00:00 UTC in nanoseconds: every row falls in the window starting here.
const WINDOW_START_NS: i64 = 1_767_225_600_000_000_000;

pub async fn run(groups: u64) -> Result<()> {
    let n = usize::try_from(groups)
        .map_err(|_| WeirError::InvalidParameter("--groups is too large".into()))?;
    println!(
        "memory: {} groups (distinct auction keys) in one 10 s window, aggregates count, sum, max",
        thousands(groups)
    );
    println!("  machine: {}", crate::bench::measure::machine());
    println!("  view: {VIEW}");
    let engine = Engine::new().await?;
    sql(
        &engine,
        "CREATE SOURCE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP, \
         WATERMARK FOR date_time AS date_time) \
         WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid')",
    )
    .await?;
    let view = compile_view(&engine, "m", VIEW).await?;
    let schema = view.plan.stream.source.schema.clone();
    let mut driver = Processor::new(Arc::clone(&view), &[0]);

    let rss_before = rss_bytes();
    let t = Instant::now();
    let mut next = 0usize;
    while next < n {
        let len = BATCH.min(n - next);
        let keys: Int64Array = (next..next + len).map(|k| k as i64).collect();
        let prices: Int64Array = (next..next + len).map(|k| (k % 10_000) as i64).collect();
        let times = TimestampNanosecondArray::from(
            (next..next + len)
                .map(|k| WINDOW_START_NS + (k % 10_000) as i64 * 1_000_000)
                .collect::<Vec<_>>(),
        );
        let times = cast(&times, schema.field(2).data_type())?;
        let columns: Vec<ArrayRef> = vec![Arc::new(keys), Arc::new(prices), times];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        view.with_state(|state| driver.ingest(state, 0, batch, i64::MIN, Instant::now()))?;
        next += len;
    }
    let elapsed = t.elapsed();
    let rss_after = rss_bytes();
    let (open, windows, state) = view.with_state(|s| {
        (
            s.operator.groups(),
            s.operator.windows(),
            s.operator.state_bytes(),
        )
    });
    if open != n || windows != 1 {
        return Err(WeirError::Internal(format!(
            "expected {n} groups in one window, found {open} in {windows}"
        )));
    }
    let growth = rss_after.saturating_sub(rss_before);
    println!(
        "  opened {} groups in {} window in {:.2} s",
        thousands(open as u64),
        windows,
        elapsed.as_secs_f64()
    );
    println!(
        "  state_bytes(): {} = {:.1} bytes per group",
        mib(state as u64),
        state as f64 / open as f64
    );
    println!(
        "  resident memory: {} before, {} after, growth {} = {:.1} bytes per group",
        mib(rss_before),
        mib(rss_after),
        mib(growth),
        growth as f64 / open as f64
    );
    println!(
        "RESULT memory groups={open} state_bytes_per_group={:.1} rss_bytes_per_group={:.1}",
        state as f64 / open as f64,
        growth as f64 / open as f64
    );
    Ok(())
}
