//! `weir bench reads`: queries on a materialized view with many open groups while its
//! pipeline ingests as fast as it can — the latency of a query over the whole view
//! (p50/p99) with 1 and with many concurrent readers, the queries answered per second,
//! how far the rows a query saw were behind the pipeline, and the view's ingest rate
//! alone and while it is being read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::bench::drive::sql;
use crate::bench::measure::{ms, percentile, rate, thousands};
use crate::engine::Engine;
use crate::error::{Result, WeirError};
use crate::view::state::View;

/// The query each reader repeats: it reads every row of the view.
const QUERY: &str = "SELECT count(*) AS groups, sum(n) AS rows_in FROM totals";

pub async fn run(groups: u64, readers: &[usize], seconds: u64) -> Result<()> {
    let window = Duration::from_secs(seconds.max(1));
    println!(
        "reads: view of running totals over {} keys (price % {groups}) fed by the Nexmark \
         generator as fast as it goes; readers repeat `{QUERY}` for {} s each",
        thousands(groups),
        window.as_secs()
    );
    println!("  machine: {}", crate::bench::measure::machine());
    let engine = Arc::new(Engine::new().await?);
    sql(
        &engine,
        "CREATE SOURCE bids (price BIGINT, date_time TIMESTAMP) \
         WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid')",
    )
    .await?;
    sql(
        &engine,
        &format!(
            "CREATE MATERIALIZED VIEW totals AS SELECT price % {groups} AS k, count(*) AS n, \
             sum(price) AS total FROM bids GROUP BY price % {groups}"
        ),
    )
    .await?;
    let view = engine
        .catalog()
        .view("totals")
        .ok_or_else(|| WeirError::Internal("the view was not created".into()))?;

    // Fill the view until nearly every key has a group.
    let started = Instant::now();
    let target = groups * 9 / 10;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let open = open_groups(&engine).await?;
        if open >= target || started.elapsed() > Duration::from_secs(300) {
            println!(
                "  filled: {} groups after {:.1} s, {} records read",
                thousands(open),
                started.elapsed().as_secs_f64(),
                thousands(view.stats.rows_in.load(Ordering::Relaxed))
            );
            break;
        }
    }

    let alone = ingest_rate(&view, window).await;
    println!("  ingest, no readers: {} records/s", rate(alone));
    println!("RESULT reads readers=0 ingest_per_s={alone:.0}");
    for &n in readers {
        let (latencies, mut behind, ingest) =
            read_while_ingesting(&engine, &view, n, window).await?;
        behind.sort_unstable();
        let behind_ms = |q: f64| {
            let rank = ((q * behind.len() as f64).ceil() as usize).clamp(1, behind.len().max(1));
            behind
                .get(rank - 1)
                .map_or(0.0, |r| *r as f64 / ingest.max(1.0) * 1e3)
        };
        println!(
            "  {n} readers: rows a query saw were behind the pipeline by p50 {:.0} ms, p99 {:.0} ms of its input",
            behind_ms(0.50),
            behind_ms(0.99)
        );
        let count = latencies.len();
        let p50 = percentile(&latencies, 0.50);
        let p99 = percentile(&latencies, 0.99);
        let qps = count as f64 / window.as_secs_f64();
        println!(
            "  {n} readers: {count} queries, p50 {}, p99 {}, max {}, {:.1} queries/s; ingest {} records/s ({:.0}% of alone)",
            ms(p50),
            ms(p99),
            ms(latencies.last().copied().unwrap_or_default()),
            qps,
            rate(ingest),
            100.0 * ingest / alone.max(1.0)
        );
        println!(
            "RESULT reads readers={n} queries={count} p50_ms={:.2} p99_ms={:.2} queries_per_s={qps:.1} ingest_per_s={ingest:.0} behind_p50_ms={:.0} behind_p99_ms={:.0}",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            behind_ms(0.50),
            behind_ms(0.99),
        );
    }
    Ok(())
}

/// Groups the view holds now, by a query.
async fn open_groups(engine: &Engine) -> Result<u64> {
    let batches = sql(engine, "SELECT count(*) FROM totals").await?;
    let count = batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Records per second the view reads over `window`.
async fn ingest_rate(view: &View, window: Duration) -> f64 {
    let before = view.stats.rows_in.load(Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let read = view.stats.rows_in.load(Ordering::Relaxed) - before;
    read as f64 / t.elapsed().as_secs_f64()
}

/// `n` readers repeating the query for `window`: every query's latency, sorted; how many
/// records the pipeline had read that the rows each query saw did not count yet; and
/// the view's ingest rate meanwhile.
async fn read_while_ingesting(
    engine: &Arc<Engine>,
    view: &Arc<View>,
    n: usize,
    window: Duration,
) -> Result<(Vec<Duration>, Vec<u64>, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (engine, view, stop) = (Arc::clone(engine), Arc::clone(view), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut behind = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let batches = sql(&engine, QUERY).await?;
                latencies.push(t.elapsed());
                let read = view.stats.rows_in.load(Ordering::Relaxed);
                behind.push(read.saturating_sub(counted(&batches)));
            }
            Ok::<_, WeirError>((latencies, behind))
        }));
    }
    let ingest = ingest_rate(view, window).await;
    stop.store(true, Ordering::Relaxed);
    let (mut all, mut lags) = (Vec::new(), Vec::new());
    for task in tasks {
        let (latencies, behind) = task
            .await
            .map_err(|e| WeirError::Internal(format!("reader: {e}")))??;
        all.extend(latencies);
        lags.extend(behind);
    }
    all.sort();
    Ok((all, lags, ingest))
}

/// The records the query's answer counts (its `rows_in` column).
fn counted(batches: &[datafusion::arrow::array::RecordBatch]) -> u64 {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    batches
        .first()
        .filter(|b| b.num_columns() == 2 && b.num_rows() == 1 && !b.column(1).is_null(0))
        .and_then(|b| {
            b.column(1)
                .as_primitive_opt::<Int64Type>()
                .map(|a| a.value(0))
        })
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}
