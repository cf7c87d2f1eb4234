//! The view pipeline driven without a server: a scripted in-memory reader feeds the
//! pipeline's own `Processor` (and `Pipeline` for checkpoints) one poll at a time, and the
//! view's rows are compared with DataFusion running the equivalent `GROUP BY` over the
//! same rows in memory. The helpers are shared with the other core tests.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;

use super::*;
use crate::bench::drive::{compile_statement, sql};
use crate::bench::supplied::{OpenReader, Supplied};
use crate::checkpoint::Checkpoints;
use crate::connector::PartitionBatch;
use crate::engine::Engine;
use crate::sql::streaming::Emit;

/// The source every test reads: bids with event time, one second of allowed lateness.
pub(crate) const SOURCE: &str = "CREATE SOURCE bids (auction BIGINT, price BIGINT, \
     date_time TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) \
     WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid')";

/// Bids, total and top price per auction per 10 seconds.
pub(crate) const TUMBLE_VIEW: &str = "SELECT auction, window_start, window_end, \
     count(*) AS bids, sum(price) AS total, max(price) AS top \
     FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND) \
     GROUP BY auction, window_start, window_end";

/// [`TUMBLE_VIEW`] as DataFusion computes it over a table `bids` of the same rows.
pub(crate) const TUMBLE_ORACLE: &str = "SELECT auction, \
     date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00') AS ws, \
     date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00') \
       + INTERVAL '10 seconds' AS we, \
     count(*), sum(price), max(price) FROM bids GROUP BY 1, 2, 3";

/// A bid: (auction, price, event time in milliseconds since the epoch).
pub(crate) type Bid = (i64, i64, i64);

/// An engine with the `bids` source.
pub(crate) async fn engine() -> Engine {
    let engine = Engine::new().await.unwrap();
    sql(&engine, SOURCE).await.unwrap();
    engine
}

/// `CREATE MATERIALIZED VIEW v AS {query}{suffix}` compiled as the engine does it, without
/// starting its pipeline (`query` may begin with `WITH (…) AS`).
pub(crate) async fn view(engine: &Engine, query: &str, suffix: &str) -> Arc<View> {
    let with = if query.starts_with("WITH") { "" } else { "AS " };
    compile_statement(
        engine,
        &format!("CREATE MATERIALIZED VIEW v {with}{query}{suffix}"),
    )
    .await
    .unwrap()
}

/// The rows of `bids` as a batch of the source's schema.
pub(crate) fn batch(schema: &SchemaRef, bids: &[Bid]) -> RecordBatch {
    let auction: Int64Array = bids.iter().map(|b| b.0).collect();
    let price: Int64Array = bids.iter().map(|b| b.1).collect();
    let times = TimestampMillisecondArray::from(bids.iter().map(|b| b.2).collect::<Vec<_>>());
    let times = cast(&times, schema.field(2).data_type()).unwrap();
    RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(auction), Arc::new(price), times],
    )
    .unwrap()
}

/// Every row of `batches` as `a|b|c` text, sorted: order-free comparison of results.
pub(crate) fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let row: Vec<String> = b
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, i).unwrap())
                .collect();
            out.push(row.join("|"));
        }
    }
    out.sort();
    out
}

/// `query` run by DataFusion over a table `bids` holding `bids`.
pub(crate) async fn oracle(schema: &SchemaRef, bids: &[Bid], query: &str) -> Vec<String> {
    let ctx = SessionContext::new();
    ctx.register_batch("bids", batch(schema, bids)).unwrap();
    rows(&ctx.sql(query).await.unwrap().collect().await.unwrap())
}

/// A reader over polls held in memory: each `poll` hands out the next one, then the
/// source ends (`end`) or stays idle. Positions count records per partition.
pub(crate) struct Scripted {
    polls: VecDeque<Vec<PartitionBatch>>,
    positions: Positions,
    ends: Positions,
    partitions: Vec<i32>,
    end: bool,
}

/// One poll: batches of their partitions.
pub(crate) type Script = Vec<Vec<(i32, RecordBatch)>>;

impl Scripted {
    pub(crate) fn new(script: Script, end: bool) -> Self {
        Self::resumed(script, end, &Positions::new())
    }

    /// Reading from `at` (records already read per partition are skipped).
    pub(crate) fn resumed(script: Script, end: bool, at: &Positions) -> Self {
        let mut ends = Positions::new();
        let mut polls = VecDeque::new();
        for poll in script {
            let mut kept = Vec::new();
            for (partition, batch) in poll {
                let seen = ends.entry(partition).or_default();
                let before = *seen;
                *seen += batch.num_rows() as i64;
                let skip = (at.get(&partition).copied().unwrap_or(0) - before)
                    .clamp(0, batch.num_rows() as i64) as usize;
                if skip < batch.num_rows() {
                    kept.push(PartitionBatch {
                        partition,
                        batch: batch.slice(skip, batch.num_rows() - skip),
                    });
                }
            }
            if !kept.is_empty() {
                polls.push_back(kept);
            }
        }
        let partitions: Vec<i32> = ends.keys().copied().collect();
        let positions = partitions
            .iter()
            .map(|p| (*p, at.get(p).copied().unwrap_or(0)))
            .collect();
        Scripted {
            polls,
            positions,
            ends,
            partitions,
            end,
        }
    }
}

#[async_trait]
impl SourceReader for Scripted {
    async fn poll(&mut self) -> Result<Poll> {
        match self.polls.pop_front() {
            Some(batches) => {
                for b in &batches {
                    *self.positions.entry(b.partition).or_default() += b.batch.num_rows() as i64;
                }
                Ok(Poll::Records(batches))
            }
            None if self.end => Ok(Poll::End),
            None => Ok(Poll::Idle),
        }
    }
    async fn end_positions(&mut self) -> Result<Positions> {
        Ok(self.ends.clone())
    }
    fn positions(&self) -> &Positions {
        &self.positions
    }
    fn partitions(&self) -> Vec<i32> {
        self.partitions.clone()
    }
    fn decode_errors(&self) -> u64 {
        0
    }
}

/// Polls of partition 0, one per slice of bids.
fn script(schema: &SchemaRef, polls: &[&[Bid]]) -> Script {
    polls
        .iter()
        .map(|bids| vec![(0, batch(schema, bids))])
        .collect()
}

fn source_schema(view: &View) -> SchemaRef {
    view.plan.stream.source.schema.clone()
}

/// Drive `view` over `reader` until its source ends.
async fn run_to_end(view: &Arc<View>, reader: &mut Scripted) -> Processor {
    let mut driver = Processor::new(Arc::clone(view), &reader.partitions());
    let mut polls = 0;
    while driver.step(reader).await.unwrap() {
        polls += 1;
        assert!(polls < 1000, "the scripted source never ended");
    }
    driver
}

fn counter(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Milliseconds → the source's time unit (TIMESTAMP: nanoseconds).
fn ms(v: i64) -> i64 {
    v * 1_000_000
}

#[tokio::test]
async fn rows_in_order_match_a_batch_group_by() {
    let engine = engine().await;
    let view = view(&engine, TUMBLE_VIEW, "").await;
    let schema = source_schema(&view);
    let polls: [&[Bid]; 3] = [
        &[(1, 10, 1_000), (2, 20, 2_000), (1, 30, 9_999)],
        &[(1, 5, 10_000), (2, 7, 15_500)],
        &[(3, 1, 20_000), (1, 2, 29_000), (3, 8, 31_000)],
    ];
    let all: Vec<Bid> = polls.concat();
    let mut reader = Scripted::new(script(&schema, &polls), true);
    run_to_end(&view, &mut reader).await;
    let got = rows(&view.rows_now().unwrap());
    assert_eq!(got, oracle(&schema, &all, TUMBLE_ORACLE).await);
    assert_eq!(
        got[0], "1|1970-01-01T00:00:00|1970-01-01T00:00:10|2|40|30",
        "auction 1 in the first window"
    );
    assert_eq!(counter(&view.stats.rows_in), 8);
    assert_eq!(counter(&view.stats.late_rows), 0);
    // Windows [0,10), [10,20), [20,30), [30,40): all closed once the source ended.
    assert_eq!(counter(&view.stats.windows_closed), 4);
    assert_eq!(view.with_state(|s| s.operator.windows()), 0);
    assert!(view.has_ended());
}

#[tokio::test]
async fn rows_out_of_order_within_the_delay_count_and_late_ones_are_dropped() {
    let engine = engine().await;
    let view = view(&engine, TUMBLE_VIEW, "").await;
    let schema = source_schema(&view);
    let mut driver = Processor::new(Arc::clone(&view), &[0]);
    let steps: [(&[Bid], i64, u64); 6] = [
        // (bids, watermark after the poll in ms, windows closed so far)
        (&[(1, 1, 9_000)], 8_000, 0),
        // Behind the watermark but its window is open: counted.
        (&[(1, 2, 2_000)], 8_000, 0),
        (&[(2, 3, 10_500)], 9_500, 0),
        (&[(1, 4, 9_900)], 9_500, 0),
        // The watermark reaches 10 s: [0, 10) closes.
        (&[(2, 5, 11_000)], 10_000, 1),
        // Late: its window has closed. The on-time row of the same poll stays.
        (&[(1, 100, 3_000), (2, 6, 12_000)], 11_000, 1),
    ];
    let mut reader = Scripted::new(
        script(&schema, &steps.iter().map(|s| s.0).collect::<Vec<_>>()),
        true,
    );
    for (i, (_, mark, closed)) in steps.iter().enumerate() {
        assert!(driver.step(&mut reader).await.unwrap());
        assert_eq!(
            view.stats.watermark.load(Ordering::Relaxed),
            ms(*mark),
            "watermark after poll {i}"
        );
        assert_eq!(
            counter(&view.stats.windows_closed),
            *closed,
            "after poll {i}"
        );
    }
    assert_eq!(counter(&view.stats.late_rows), 1);
    let before_end = rows(&view.rows_now().unwrap());
    assert!(
        before_end.contains(&"1|1970-01-01T00:00:00|1970-01-01T00:00:10|3|7|4".to_string()),
        "the closed window does not count the late bid: {before_end:?}"
    );
    assert!(!driver.step(&mut reader).await.unwrap());
    let accepted: Vec<Bid> = steps
        .iter()
        .flat_map(|s| s.0.iter().copied())
        .filter(|b| b.1 != 100)
        .collect();
    assert_eq!(
        rows(&view.rows_now().unwrap()),
        oracle(&schema, &accepted, TUMBLE_ORACLE).await
    );
    assert_eq!(counter(&view.stats.rows_in), 7);
}

#[tokio::test]
async fn a_watermark_jump_closes_every_window_behind_it_in_window_order() {
    let engine = engine().await;
    let view = view(&engine, TUMBLE_VIEW, " EMIT ON WINDOW CLOSE").await;
    let schema = source_schema(&view);
    let b = |bids: &[Bid]| batch(&schema, bids);
    let mut reader = Scripted::new(
        vec![
            // Partition 1 holds the watermark at 0.5 s while partition 0 fills 4 windows.
            vec![
                (1, b(&[(1, 1, 1_500)])),
                (
                    0,
                    b(&[
                        (1, 1, 31_000),
                        (1, 1, 1_000),
                        (1, 1, 21_000),
                        (1, 1, 11_000),
                    ]),
                ),
            ],
            // Both jump to 100 s.
            vec![(0, b(&[(9, 9, 100_000)])), (1, b(&[(9, 9, 100_000)]))],
            vec![(0, b(&[(1, 1, 25_000), (9, 1, 100_500)]))],
        ],
        false,
    );
    let mut driver = Processor::new(Arc::clone(&view), &reader.partitions());
    driver.step(&mut reader).await.unwrap();
    assert_eq!(view.stats.watermark.load(Ordering::Relaxed), ms(500));
    assert_eq!(view.with_state(|s| s.operator.windows()), 4);
    assert!(view.rows_now().unwrap().is_empty(), "nothing final yet");
    driver.step(&mut reader).await.unwrap();
    // 99 s: the four windows up to [30, 40) close at once, oldest first.
    assert_eq!(view.stats.watermark.load(Ordering::Relaxed), ms(99_000));
    assert_eq!(counter(&view.stats.windows_closed), 4);
    assert_eq!(view.with_state(|s| s.operator.windows()), 1);
    assert_eq!(view.with_state(|s| s.operator.groups()), 1);
    let starts: Vec<String> = view
        .rows_now()
        .unwrap()
        .iter()
        .map(|b| array_value_to_string(b.column(1), 0).unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "1970-01-01T00:00:00",
            "1970-01-01T00:00:10",
            "1970-01-01T00:00:20",
            "1970-01-01T00:00:30"
        ]
    );
    assert_eq!(
        rows(&view.rows_now().unwrap())[0],
        "1|1970-01-01T00:00:00|1970-01-01T00:00:10|2|2|1",
        "both partitions' bids of the first window"
    );
    driver.step(&mut reader).await.unwrap();
    assert_eq!(counter(&view.stats.late_rows), 1, "25 s is behind the jump");
    assert_eq!(view.closed_rows(), 4);
    assert_eq!(
        view.with_state(|s| s.operator.groups()),
        1,
        "the open window keeps one group"
    );
}

#[tokio::test]
async fn emit_on_update_shows_provisional_rows_and_on_window_close_only_final_ones() {
    let engine = engine().await;
    let updating = view(&engine, TUMBLE_VIEW, "").await;
    let closing = view(&engine, TUMBLE_VIEW, " EMIT ON WINDOW CLOSE").await;
    assert_eq!(updating.emit, Emit::OnUpdate);
    assert_eq!(closing.emit, Emit::OnWindowClose);
    let schema = source_schema(&updating);
    let polls: [&[Bid]; 3] = [
        &[(1, 10, 1_000), (1, 20, 2_000)],
        &[(1, 5, 3_000)],
        &[(2, 1, 12_000)],
    ];
    let mut readers = [
        Scripted::new(script(&schema, &polls), false),
        Scripted::new(script(&schema, &polls), false),
    ];
    let mut drivers = [
        Processor::new(Arc::clone(&updating), &[0]),
        Processor::new(Arc::clone(&closing), &[0]),
    ];
    let mut step = async || {
        for (d, r) in drivers.iter_mut().zip(readers.iter_mut()) {
            d.step(r).await.unwrap();
        }
    };
    step().await;
    assert_eq!(
        rows(&updating.rows_now().unwrap()),
        ["1|1970-01-01T00:00:00|1970-01-01T00:00:10|2|30|20"]
    );
    assert!(rows(&closing.rows_now().unwrap()).is_empty());
    step().await;
    assert_eq!(
        rows(&updating.rows_now().unwrap()),
        ["1|1970-01-01T00:00:00|1970-01-01T00:00:10|3|35|20"],
        "the provisional row is replaced, not added to"
    );
    assert!(rows(&closing.rows_now().unwrap()).is_empty());
    step().await;
    let closed = "1|1970-01-01T00:00:00|1970-01-01T00:00:10|3|35|20";
    assert_eq!(
        rows(&updating.rows_now().unwrap()),
        [closed, "2|1970-01-01T00:00:10|1970-01-01T00:00:20|1|1|1"]
    );
    assert_eq!(rows(&closing.rows_now().unwrap()), [closed]);
    assert_eq!(updating.emitted.load(Ordering::Relaxed), 1);
    assert_eq!(closing.emitted.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn hop_windows_match_a_batch_oracle() {
    let engine = engine().await;
    let query = "SELECT auction, window_start, count(*) AS bids, sum(price) AS total \
         FROM HOP(bids, date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND) \
         GROUP BY auction, window_start";
    let view = view(&engine, query, "").await;
    let schema = source_schema(&view);
    let polls: [&[Bid]; 3] = [
        &[(1, 1, 0), (1, 2, 4_999), (2, 3, 5_000)],
        &[(1, 4, 7_500), (2, 5, 12_000)],
        &[(1, 6, 14_999), (1, 7, 22_000)],
    ];
    let all: Vec<Bid> = polls.concat();
    let mut reader = Scripted::new(script(&schema, &polls), true);
    run_to_end(&view, &mut reader).await;
    let oracle_sql = "SELECT auction, ws, count(*), sum(price) FROM ( \
         SELECT auction, price, date_bin(INTERVAL '5 seconds', date_time, TIMESTAMP '1970-01-01') AS ws FROM bids \
         UNION ALL \
         SELECT auction, price, date_bin(INTERVAL '5 seconds', date_time, TIMESTAMP '1970-01-01') \
           - INTERVAL '5 seconds' AS ws FROM bids) GROUP BY 1, 2";
    let got = rows(&view.rows_now().unwrap());
    assert_eq!(got, oracle(&schema, &all, oracle_sql).await);
    // Every bid is in two windows.
    let total: i64 = got
        .iter()
        .map(|r| r.split('|').nth(2).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 2 * all.len() as i64);
    // Restored after the second poll, with rows in windows both closed and open.
    assert_eq!(
        restore_matches_uninterrupted(query, "", &polls, 2).await,
        got
    );
}

#[tokio::test]
async fn filters_and_having_match_a_batch_oracle() {
    let engine = engine().await;
    let query = "SELECT auction, window_end, count(*) AS bids, avg(price) AS mean \
         FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND) WHERE price >= 10 \
         GROUP BY auction, window_end HAVING count(*) > 1";
    let view = view(&engine, query, "").await;
    let schema = source_schema(&view);
    let polls: [&[Bid]; 2] = [
        &[
            (1, 10, 1_000),
            (1, 5, 2_000),
            (1, 30, 3_000),
            (2, 50, 4_000),
        ],
        &[
            (2, 9, 5_000),
            (3, 11, 11_000),
            (3, 12, 12_000),
            (2, 70, 13_000),
        ],
    ];
    let all: Vec<Bid> = polls.concat();
    let mut reader = Scripted::new(script(&schema, &polls), true);
    run_to_end(&view, &mut reader).await;
    let oracle_sql = "SELECT auction, \
         date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01') + INTERVAL '10 seconds', \
         count(*), avg(price) FROM bids WHERE price >= 10 GROUP BY 1, 2 HAVING count(*) > 1";
    let got = rows(&view.rows_now().unwrap());
    assert_eq!(got, oracle(&schema, &all, oracle_sql).await);
    assert_eq!(
        got,
        [
            "1|1970-01-01T00:00:10|2|20.0",
            "3|1970-01-01T00:00:20|2|11.5"
        ]
    );
}

#[tokio::test]
async fn running_totals_without_a_window_never_close_nor_drop_old_rows() {
    let engine = engine().await;
    let query = "SELECT auction, count(*) AS bids, sum(price) AS total FROM bids GROUP BY auction";
    let view = view(&engine, query, "").await;
    let schema = source_schema(&view);
    let polls: [&[Bid]; 3] = [
        &[(1, 10, 50_000), (2, 20, 60_000)],
        // Far behind the watermark: still counted, there is no window to be late for.
        &[(1, 1, 1_000)],
        &[(2, 2, 61_000), (3, 3, 2_000)],
    ];
    let all: Vec<Bid> = polls.concat();
    let mut reader = Scripted::new(script(&schema, &polls), false);
    let mut driver = Processor::new(Arc::clone(&view), &[0]);
    for _ in 0..polls.len() {
        driver.step(&mut reader).await.unwrap();
    }
    let oracle_sql = "SELECT auction, count(*), sum(price) FROM bids GROUP BY auction";
    assert_eq!(
        rows(&view.rows_now().unwrap()),
        oracle(&schema, &all, oracle_sql).await
    );
    assert_eq!(
        rows(&view.rows_now().unwrap()),
        ["1|2|11", "2|2|22", "3|1|3"]
    );
    assert_eq!(counter(&view.stats.late_rows), 0);
    assert_eq!(counter(&view.stats.windows_closed), 0);
    assert_eq!(view.closed_rows(), 0);
}

#[tokio::test]
async fn the_watermark_waits_for_the_slowest_partition() {
    let engine = engine().await;
    let view = view(&engine, TUMBLE_VIEW, " EMIT ON WINDOW CLOSE").await;
    let schema = source_schema(&view);
    let mut reader = Scripted::new(
        vec![
            vec![(0, batch(&schema, &[(1, 1, 31_000)]))],
            vec![(1, batch(&schema, &[(2, 2, 5_000)]))],
            vec![(1, batch(&schema, &[(2, 3, 25_000)]))],
        ],
        false,
    );
    assert_eq!(reader.partitions(), [0, 1]);
    let mut driver = Processor::new(Arc::clone(&view), &reader.partitions());
    driver.step(&mut reader).await.unwrap();
    // Partition 1 has sent nothing: no watermark yet.
    assert_eq!(view.stats.watermark.load(Ordering::Relaxed), i64::MIN);
    driver.step(&mut reader).await.unwrap();
    assert_eq!(view.stats.watermark.load(Ordering::Relaxed), ms(4_000));
    assert_eq!(counter(&view.stats.windows_closed), 0);
    driver.step(&mut reader).await.unwrap();
    assert_eq!(view.stats.watermark.load(Ordering::Relaxed), ms(24_000));
    // [0, 10) closes; [10, 20) held no bid, so there was nothing to close.
    assert_eq!(counter(&view.stats.windows_closed), 1);
    assert_eq!(
        rows(&view.rows_now().unwrap()),
        ["2|1970-01-01T00:00:00|1970-01-01T00:00:10|1|2|2"]
    );
}

/// Let the source `name` of `engine` read `bids` from memory, starting at the positions
/// `start` holds when a reader is opened.
fn supply(engine: &Engine, name: &str, bids: &[&[Bid]], start: Arc<Mutex<Positions>>) {
    let schema = engine.catalog().source(name).unwrap().schema.clone();
    let script = script(&schema, bids);
    let count = bids.iter().map(|b| b.len() as u64).sum();
    let open: Arc<OpenReader> = Arc::new(move |_columns: &[usize]| {
        let at = start.lock().unwrap().clone();
        Ok(Box::new(Scripted::resumed(script.clone(), true, &at)) as Box<dyn SourceReader>)
    });
    engine
        .catalog()
        .supply(engine.context(), name, Supplied::connector(open, count))
        .unwrap();
}

/// An engine whose `bids` source reads `bids` from memory (see [`supply`]).
async fn supplied_engine(bids: &[&[Bid]], start: Arc<Mutex<Positions>>) -> Engine {
    let engine = engine().await;
    supply(&engine, "bids", bids, start);
    engine
}

async fn run_pipeline(pipeline: &mut Pipeline) {
    let mut polls = 0;
    while !pipeline.processor.ended() {
        pipeline.step().await.unwrap();
        polls += 1;
        assert!(polls < 1000, "the scripted source never ended");
    }
}

/// Run `query` over `bids` uninterrupted, and again with a checkpoint written to disk
/// after `cut` polls and a new pipeline restored from it: both end with the same rows and
/// counters. Returns the rows.
async fn restore_matches_uninterrupted(
    query: &str,
    suffix: &str,
    bids: &[&[Bid]],
    cut: usize,
) -> Vec<String> {
    let start = Arc::new(Mutex::new(Positions::new()));
    let engine = supplied_engine(bids, Arc::clone(&start)).await;

    let whole = view(&engine, query, suffix).await;
    let mut pipeline = Pipeline::open(Arc::clone(&whole), ViewStart::Fresh)
        .await
        .unwrap();
    run_pipeline(&mut pipeline).await;
    let expected = rows(&whole.rows_now().unwrap());

    let first = view(&engine, query, suffix).await;
    let mut pipeline = Pipeline::open(Arc::clone(&first), ViewStart::Fresh)
        .await
        .unwrap();
    for _ in 0..cut {
        pipeline.step().await.unwrap();
    }
    let snapshot = pipeline.snapshot().unwrap();
    let read: i64 = bids[..cut].iter().map(|b| b.len() as i64).sum();
    assert_eq!(snapshot.meta.positions, Positions::from([(0, read)]));
    assert_eq!(snapshot.meta.origin, Positions::from([(0, 0)]));
    drop(pipeline);
    let dir = tempfile::tempdir().unwrap();
    Checkpoints::open(dir.path()).unwrap();
    crate::checkpoint::write(
        &dir.path().join("checkpoints"),
        1,
        vec![snapshot],
        Vec::new(),
        Instant::now(),
    )
    .unwrap();
    let (_, restored) = Checkpoints::open(dir.path()).unwrap();
    let restored = Arc::new(restored.expect("a checkpoint"));
    let meta = restored.view("v").unwrap().clone();
    *start.lock().unwrap() = meta.positions.clone();

    let resumed = view(&engine, query, suffix).await;
    let mut pipeline = Pipeline::open(Arc::clone(&resumed), ViewStart::Restore(restored, meta))
        .await
        .unwrap();
    assert_eq!(pipeline.origin, Positions::from([(0, 0)]));
    run_pipeline(&mut pipeline).await;
    let got = rows(&resumed.rows_now().unwrap());
    assert_eq!(got, expected);
    let (a, b) = (whole.counters(), resumed.counters());
    assert_eq!(
        (a.rows_in, a.late_rows, a.windows_closed, a.emitted),
        (b.rows_in, b.late_rows, b.windows_closed, b.emitted)
    );
    got
}

#[tokio::test]
async fn a_windowed_view_restored_from_a_checkpoint_ends_like_an_uninterrupted_run() {
    let bids: [&[Bid]; 7] = [
        &[(1, 10, 1_000), (2, 20, 1_500)],
        &[(1, 30, 4_000)],
        // Closes [0, 10).
        &[(2, 5, 12_000)],
        // Late.
        &[(1, 7, 3_000)],
        // Late too, right after the restore: the watermark came back with the state, and
        // the closed window is not opened again.
        &[(4, 4, 5_000)],
        &[(1, 1, 13_000), (3, 2, 15_000)],
        &[(3, 9, 21_000)],
    ];
    // Checkpointed with one window closed, one open, and a late row counted.
    let got = restore_matches_uninterrupted(TUMBLE_VIEW, "", &bids, 4).await;
    let engine = engine().await;
    let schema = engine.catalog().source("bids").unwrap().schema.clone();
    let accepted: Vec<Bid> = bids
        .concat()
        .into_iter()
        .filter(|b| b.1 != 7 && b.1 != 4)
        .collect();
    assert_eq!(got, oracle(&schema, &accepted, TUMBLE_ORACLE).await);
}

#[tokio::test]
async fn running_totals_and_distinct_counts_restored_from_a_checkpoint_continue() {
    let bids: [&[Bid]; 4] = [
        &[(1, 10, 1_000), (2, 20, 1_500), (1, 10, 2_000)],
        &[(1, 30, 4_000), (3, 3, 5_000)],
        &[(2, 5, 12_000), (1, 10, 13_000)],
        &[(3, 9, 21_000)],
    ];
    let query = "SELECT auction, count(*) AS bids, count(DISTINCT price) AS prices, \
         avg(price) AS mean, min(price) AS low FROM bids GROUP BY auction";
    let got = restore_matches_uninterrupted(query, "", &bids, 2).await;
    assert_eq!(got, ["1|4|2|15.0|10", "2|2|2|12.5|5", "3|2|2|6.0|3"]);
}

#[tokio::test]
async fn top_n_per_window_restored_from_a_checkpoint_matches_a_batch_oracle() {
    let query = "SELECT * FROM (SELECT window_start, auction, price, \
         ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY price DESC) AS rn \
         FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND)) WHERE rn <= 2";
    let bids: [&[Bid]; 4] = [
        &[(1, 5, 1_000), (2, 9, 2_000)],
        &[(3, 7, 3_000), (4, 1, 4_000), (5, 3, 11_000)],
        // Closes [0, 10); [10, 20) stays open across the checkpoint.
        &[(6, 8, 12_000)],
        &[(7, 6, 21_000)],
    ];
    let got = restore_matches_uninterrupted(query, "", &bids, 3).await;
    let engine = engine().await;
    let schema = engine.catalog().source("bids").unwrap().schema.clone();
    let oracle_sql = "SELECT * FROM (SELECT \
         date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01') AS window_start, \
         auction, price, ROW_NUMBER() OVER (PARTITION BY \
         date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01') ORDER BY price DESC) AS rn \
         FROM bids) WHERE rn <= 2";
    assert_eq!(got, oracle(&schema, &bids.concat(), oracle_sql).await);
    assert_eq!(
        got,
        [
            "1970-01-01T00:00:00|2|9|1",
            "1970-01-01T00:00:00|3|7|2",
            "1970-01-01T00:00:10|5|3|2",
            "1970-01-01T00:00:10|6|8|1",
            "1970-01-01T00:00:20|7|6|1"
        ]
    );
}

#[tokio::test]
async fn appended_rows_past_the_retention_go_and_the_log_restores() {
    let query = "WITH (retention = '15s') AS SELECT auction, price, date_time FROM bids \
         WHERE price > 3";
    let bids: [&[Bid]; 5] = [
        &[(1, 5, 1_000)],
        &[(2, 1, 2_000)],
        &[(3, 7, 10_000)],
        &[(4, 9, 20_000)],
        &[(5, 4, 30_000)],
    ];
    // The watermark ends at 29 s: rows before 14 s are past 15 s of retention.
    let got = restore_matches_uninterrupted(query, "", &bids, 3).await;
    assert_eq!(got, ["4|9|1970-01-01T00:00:20", "5|4|1970-01-01T00:00:30"]);
}

#[tokio::test]
async fn an_interval_join_restored_from_a_checkpoint_matches_a_batch_join() {
    let auctions: [&[Bid]; 3] = [
        // (id, seller, time)
        &[(1, 100, 1_000)],
        &[(2, 200, 5_000)],
        &[(3, 300, 30_000)],
    ];
    let bids: [&[Bid]; 3] = [
        &[(1, 10, 2_000), (2, 20, 3_000)],
        &[(1, 11, 9_000), (2, 21, 14_000)],
        &[(1, 12, 14_500), (3, 30, 31_000)],
    ];
    let engine = engine().await;
    sql(
        &engine,
        "CREATE SOURCE auctions (id BIGINT, seller BIGINT, date_time TIMESTAMP, \
         WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) \
         WITH (connector = 'nexmark', 'nexmark.table.type' = 'auction')",
    )
    .await
    .unwrap();
    let starts = [
        Arc::new(Mutex::new(Positions::new())),
        Arc::new(Mutex::new(Positions::new())),
    ];
    supply(&engine, "auctions", &auctions, Arc::clone(&starts[0]));
    supply(&engine, "bids", &bids, Arc::clone(&starts[1]));
    let query = "SELECT a.id, a.seller, b.price, b.date_time FROM auctions a JOIN bids b \
         ON a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '10' SECOND";

    let whole = view(&engine, query, "").await;
    assert!(matches!(whole.plan.operator, Operator::Join(_)));
    let mut pipeline = Pipeline::open(Arc::clone(&whole), ViewStart::Fresh)
        .await
        .unwrap();
    run_pipeline(&mut pipeline).await;
    let expected = rows(&whole.rows_now().unwrap());

    let first = view(&engine, query, "").await;
    let mut pipeline = Pipeline::open(Arc::clone(&first), ViewStart::Fresh)
        .await
        .unwrap();
    // Each side polled twice (the joined reader takes them in turn).
    for _ in 0..4 {
        pipeline.step().await.unwrap();
    }
    let snapshot = pipeline.snapshot().unwrap();
    assert_eq!(
        snapshot.meta.positions,
        Positions::from([(0, 2), (crate::connector::joined::RIGHT, 4)])
    );
    let sections: Vec<&str> = snapshot.sections.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(sections, ["closed", "join0", "join1", "out.log"]);
    drop(pipeline);
    let dir = tempfile::tempdir().unwrap();
    Checkpoints::open(dir.path()).unwrap();
    crate::checkpoint::write(
        &dir.path().join("checkpoints"),
        1,
        vec![snapshot],
        Vec::new(),
        Instant::now(),
    )
    .unwrap();
    let (_, restored) = Checkpoints::open(dir.path()).unwrap();
    let restored = Arc::new(restored.unwrap());
    let meta = restored.view("v").unwrap().clone();
    for (side, start) in starts.iter().enumerate() {
        *start.lock().unwrap() = split(&meta.positions, side);
    }
    let resumed = view(&engine, query, "").await;
    let mut pipeline = Pipeline::open(Arc::clone(&resumed), ViewStart::Restore(restored, meta))
        .await
        .unwrap();
    run_pipeline(&mut pipeline).await;
    let got = rows(&resumed.rows_now().unwrap());
    assert_eq!(got, expected);
    assert_eq!(
        resumed.counters().emitted,
        whole.counters().emitted,
        "no joined row emitted twice"
    );

    let ctx = SessionContext::new();
    let auction_schema = engine.catalog().source("auctions").unwrap().schema.clone();
    let bid_schema = engine.catalog().source("bids").unwrap().schema.clone();
    ctx.register_batch("auctions", batch(&auction_schema, &auctions.concat()))
        .unwrap();
    ctx.register_batch("bids", batch(&bid_schema, &bids.concat()))
        .unwrap();
    let oracle = rows(&ctx.sql(query).await.unwrap().collect().await.unwrap());
    assert_eq!(got, oracle);
    assert_eq!(
        got,
        [
            "1|100|10|1970-01-01T00:00:02",
            "1|100|11|1970-01-01T00:00:09",
            "2|200|21|1970-01-01T00:00:14",
            "3|300|30|1970-01-01T00:00:31"
        ]
    );
}

#[tokio::test]
async fn a_flush_is_answered_once_the_reader_has_reached_the_end_it_was_given() {
    let bids: [&[Bid]; 3] = [&[(1, 1, 1_000)], &[(1, 2, 2_000)], &[(2, 3, 12_000)]];
    let engine = supplied_engine(&bids, Arc::new(Mutex::new(Positions::new()))).await;
    let view = view(&engine, TUMBLE_VIEW, "").await;
    let mut pipeline = Pipeline::open(Arc::clone(&view), ViewStart::Fresh)
        .await
        .unwrap();
    pipeline.step().await.unwrap();
    let (reply, mut answer) = oneshot::channel();
    assert!(pipeline.command(ViewCommand::Flush(reply)).await);
    assert!(answer.try_recv().is_err(), "1 of 3 records read");
    pipeline.step().await.unwrap();
    assert!(answer.try_recv().is_err(), "2 of 3 records read");
    pipeline.step().await.unwrap();
    answer.try_recv().unwrap().unwrap();
    // What the FLUSH waited for is in the view when it returns.
    assert_eq!(counter(&view.stats.rows_in), 3);
    assert_eq!(
        rows(&view.rows_now().unwrap()),
        [
            "1|1970-01-01T00:00:00|1970-01-01T00:00:10|2|3|2",
            "2|1970-01-01T00:00:10|1970-01-01T00:00:20|1|3|3"
        ]
    );
    // Once the source has ended, a FLUSH is answered at once.
    pipeline.step().await.unwrap();
    assert!(pipeline.processor.ended());
    let (reply, mut answer) = oneshot::channel();
    assert!(pipeline.command(ViewCommand::Flush(reply)).await);
    answer.try_recv().unwrap().unwrap();
    assert!(!pipeline.command(ViewCommand::Stop).await);
}

/// A reader whose source fails at its first poll.
struct Failing;

#[async_trait]
impl SourceReader for Failing {
    async fn poll(&mut self) -> Result<Poll> {
        Err(WeirError::Internal("the source broke".into()))
    }
    async fn end_positions(&mut self) -> Result<Positions> {
        Ok(Positions::from([(0, 1)]))
    }
    fn positions(&self) -> &Positions {
        static AT: Positions = Positions::new();
        &AT
    }
    fn partitions(&self) -> Vec<i32> {
        vec![0]
    }
    fn decode_errors(&self) -> u64 {
        0
    }
}

#[tokio::test]
async fn a_view_whose_source_fails_is_restarted_then_stays_failed_and_says_why() {
    let engine = engine().await;
    let open: Arc<OpenReader> =
        Arc::new(|_columns: &[usize]| Ok(Box::new(Failing) as Box<dyn SourceReader>));
    engine
        .catalog()
        .supply(engine.context(), "bids", Supplied::connector(open, 1))
        .unwrap();
    let view = view(&engine, TUMBLE_VIEW, "").await;
    let pipeline = Pipeline::open(Arc::clone(&view), ViewStart::Fresh)
        .await
        .unwrap();
    let (commands, rx) = mpsc::unbounded_channel();
    let test = async {
        let (reply, answer) = oneshot::channel();
        commands.send(ViewCommand::Flush(reply)).unwrap();
        // The FLUSH waits through the restarts, then fails naming the view.
        let e = answer.await.unwrap().unwrap_err().to_string();
        assert!(
            e.contains("materialized view \"v\" failed: ")
                && e.contains("the source broke")
                && e.contains("gave up after 5 restarts"),
            "{e}"
        );
        assert!(view.failure().unwrap().contains("the source broke"));
        let e = view.rows_now().unwrap_err().to_string();
        assert!(e.contains("materialized view \"v\" failed"), "{e}");
        // Without a checkpoint, a failed view is left out of one.
        let (reply, answer) = oneshot::channel();
        commands.send(ViewCommand::Checkpoint(reply)).unwrap();
        assert!(answer.await.is_err());
        // ALTER … RESTART tries again (and fails again here).
        let (reply, answer) = oneshot::channel();
        commands.send(ViewCommand::Restart(reply)).unwrap();
        let (reply2, answer2) = oneshot::channel();
        commands.send(ViewCommand::Flush(reply2)).unwrap();
        assert!(
            answer.await.unwrap().is_ok(),
            "the restart opened the reader"
        );
        let e = answer2.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("the source broke"), "{e}");
        commands.send(ViewCommand::Stop).unwrap();
    };
    // The pipeline on this task, next to the test: it ends at the Stop.
    tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            Supervisor::new(Arc::clone(&view), None).run(pipeline, rx),
            test
        )
    })
    .await
    .expect("the pipeline stopped");
}

#[tokio::test]
async fn queries_read_the_published_rows_while_the_pipeline_holds_the_state() {
    let engine = engine().await;
    let view = view(
        &engine,
        "SELECT auction, count(*) AS n FROM bids GROUP BY auction",
        "",
    )
    .await;
    let schema = source_schema(&view);
    let mut reader = Scripted::new(script(&schema, &[&[(1, 10, 1_000), (2, 20, 2_000)]]), false);
    let mut driver = Processor::new(Arc::clone(&view), &reader.partitions());
    driver.step(&mut reader).await.unwrap();
    // Nothing published yet: queries see the rows as last published (none).
    assert!(view.published_rows().unwrap().is_empty());
    view.publish().unwrap();
    assert_eq!(rows(&view.published_rows().unwrap()), ["1|1", "2|1"]);

    // While the pipeline holds the state (for two seconds), a query still answers at
    // once, with the published rows.
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = {
        let (view, released) = (Arc::clone(&view), Arc::clone(&released));
        std::thread::spawn(move || {
            view.with_state(|_| {
                held_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_secs(2));
            });
            released.store(true, Ordering::SeqCst);
        })
    };
    held_rx.recv().unwrap();
    assert_eq!(rows(&view.published_rows().unwrap()), ["1|1", "2|1"]);
    assert!(
        !released.load(Ordering::SeqCst),
        "the query waited for the pipeline's lock"
    );
    holder.join().unwrap();

    // New rows reach queries at the next publication, not before.
    let mut reader = Scripted::new(script(&schema, &[&[(1, 30, 3_000)]]), false);
    driver.step(&mut reader).await.unwrap();
    assert_eq!(rows(&view.published_rows().unwrap()), ["1|1", "2|1"]);
    assert_eq!(rows(&view.rows_now().unwrap()), ["1|2", "2|1"]);
    assert_eq!(rows(&view.published_rows().unwrap()), ["1|2", "2|1"]);
}

#[tokio::test]
async fn a_reading_view_that_falls_behind_holds_rows_back_in_order_and_loses_none() {
    let engine = engine().await;
    let view = view(&engine, "SELECT auction, price FROM bids", "").await;
    let schema = source_schema(&view);
    let (kept, before, mut rx) = view.subscribe(true);
    assert!(kept.is_empty() && before == 0);
    // Three times the channel's room, one batch per poll, without the reader taking any.
    let polls: Vec<Vec<Bid>> = (0..3 * crate::view::state::DOWNSTREAM_CAPACITY as i64)
        .map(|i| vec![(i, i, 1_000 + i)])
        .collect();
    let polls: Vec<&[Bid]> = polls.iter().map(|p| p.as_slice()).collect();
    let mut reader = Scripted::new(script(&schema, &polls), true);
    run_to_end(&view, &mut reader).await;
    assert!(
        view.backlogged(),
        "rows beyond the channel's room wait in the view"
    );
    // Taken in order as the reader makes room; the end comes last.
    let deliver = {
        let view = Arc::clone(&view);
        tokio::spawn(async move { view.deliver().await })
    };
    let mut auctions = Vec::new();
    while let Some(crate::view::state::Emitted::Rows(b)) = rx.recv().await {
        let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        auctions.extend(a.iter().flatten());
    }
    deliver.await.unwrap();
    assert_eq!(auctions, (0..polls.len() as i64).collect::<Vec<_>>());
    assert!(!view.backlogged());
}

/// A reader whose poll panics.
struct PanicReader;

#[async_trait]
impl SourceReader for PanicReader {
    async fn poll(&mut self) -> Result<Poll> {
        panic!("a bug in the reader");
    }
    async fn end_positions(&mut self) -> Result<Positions> {
        Ok(Positions::from([(0, 2)]))
    }
    fn positions(&self) -> &Positions {
        static AT: Positions = Positions::new();
        &AT
    }
    fn partitions(&self) -> Vec<i32> {
        vec![0]
    }
    fn decode_errors(&self) -> u64 {
        0
    }
}

#[tokio::test]
async fn a_panic_on_a_views_thread_fails_it_and_a_restart_recovers_it() {
    let engine = engine().await;
    let schema = engine.catalog().source("bids").unwrap().schema.clone();
    let script = script(&schema, &[&[(1, 10, 1_000), (2, 20, 2_000)]]);
    // The first reader panics; the one the restart opens reads the bids.
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let open: Arc<OpenReader> = {
        let opened = Arc::clone(&opened);
        Arc::new(move |_columns: &[usize]| {
            if opened.fetch_add(1, Ordering::SeqCst) == 0 {
                Ok(Box::new(PanicReader) as Box<dyn SourceReader>)
            } else {
                Ok(Box::new(Scripted::new(script.clone(), true)) as Box<dyn SourceReader>)
            }
        })
    };
    engine
        .catalog()
        .supply(engine.context(), "bids", Supplied::connector(open, 2))
        .unwrap();
    let view = view(
        &engine,
        "SELECT auction, count(*) AS n FROM bids GROUP BY auction",
        "",
    )
    .await;
    let pipeline = Pipeline::open(Arc::clone(&view), ViewStart::Fresh)
        .await
        .unwrap();
    let (commands, rx) = mpsc::unbounded_channel();
    let test = async {
        // It panicked at its first poll (before this runs): failed, with the reason.
        let why = view.failure().unwrap();
        assert!(
            why.contains("panicked: a bug in the reader") && why.contains("restart 1 of 5"),
            "{why}"
        );
        assert!(view.rows_now().is_err());
        // A FLUSH waits for the restart, which reads the source afresh (no checkpoint).
        let (reply, answer) = oneshot::channel();
        commands.send(ViewCommand::Flush(reply)).unwrap();
        answer.await.unwrap().unwrap();
        assert_eq!(view.failure(), None);
        assert_eq!(rows(&view.rows_now().unwrap()), ["1|1", "2|1"]);
        commands.send(ViewCommand::Stop).unwrap();
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(
            Supervisor::new(Arc::clone(&view), None).run(pipeline, rx),
            test
        )
    })
    .await
    .expect("the pipeline stopped");
    assert_eq!(opened.load(Ordering::SeqCst), 2);
}
