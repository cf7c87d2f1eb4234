//! The incremental windowed aggregation on its own: rows assigned to windows and folded
//! in, windows closed by the watermark, current rows of open windows, and the state's
//! export and import as a checkpoint does them. The aggregation is compiled from a view
//! by the real engine; results are checked against DataFusion over the same rows.

use datafusion::arrow::array::TimestampMillisecondArray;

use super::*;
use crate::view::pipeline::tests::{
    Bid, TUMBLE_ORACLE, TUMBLE_VIEW, batch, engine, oracle, rows, view,
};
use crate::view::plan::{Input, Operator};
use crate::view::state::View;
use crate::window::assign::assign;

/// Milliseconds → the source's time unit (TIMESTAMP: nanoseconds).
fn ms(v: i64) -> i64 {
    v * 1_000_000
}

/// The view compiled from `query`, and an empty aggregation of its spec.
async fn compiled(query: &str) -> (Arc<View>, WindowedAggregate) {
    let engine = engine().await;
    let view = view(&engine, query, "").await;
    let Operator::Aggregate(spec) = &view.plan.operator else {
        panic!("{query} does not aggregate")
    };
    let aggregate = WindowedAggregate::new(Arc::clone(spec));
    (view, aggregate)
}

/// `rows` of the source as the aggregation's input: windowed, through the stage before.
fn input_of(view: &View, rows: RecordBatch) -> RecordBatch {
    let stream = &view.plan.stream;
    let rows = match &stream.input {
        Input::Windowed { time, spec, schema } => assign(&rows, *time, spec, schema).unwrap(),
        Input::Plain => rows,
    };
    stream.pre.apply(rows).unwrap()
}

fn input(view: &View, bids: &[Bid]) -> RecordBatch {
    input_of(view, batch(&view.plan.stream.source.schema, bids))
}

fn ends(closed: &[(i64, RecordBatch)]) -> Vec<i64> {
    closed.iter().map(|(end, _)| *end / 1_000_000).collect()
}

fn batches(closed: Vec<(i64, RecordBatch)>) -> Vec<RecordBatch> {
    closed.into_iter().map(|(_, b)| b).collect()
}

#[tokio::test]
async fn close_until_gives_each_window_once_in_order_and_frees_it() {
    let (view, mut agg) = compiled(TUMBLE_VIEW).await;
    // One batch over three windows, out of order.
    agg.update(&input(
        &view,
        &[
            (1, 5, 25_000),
            (1, 10, 1_000),
            (2, 20, 12_000),
            (1, 30, 9_999),
        ],
    ))
    .unwrap();
    assert_eq!((agg.windows(), agg.groups()), (3, 3));
    assert!(agg.state_bytes() > 0);
    assert!(
        agg.close_until(ms(9_999)).unwrap().is_empty(),
        "[0, 10) ends at 10 s"
    );
    let first = agg.close_until(ms(15_000)).unwrap();
    assert_eq!(ends(&first), [10_000]);
    assert_eq!(
        rows(&batches(first)),
        ["1|1970-01-01T00:00:00|1970-01-01T00:00:10|2|40|30"]
    );
    let rest = agg.close_until(ms(30_000)).unwrap();
    assert_eq!(ends(&rest), [20_000, 30_000]);
    assert_eq!(
        rows(&batches(rest)),
        [
            "1|1970-01-01T00:00:20|1970-01-01T00:00:30|1|5|5",
            "2|1970-01-01T00:00:10|1970-01-01T00:00:20|1|20|20"
        ]
    );
    assert!(
        agg.close_until(ms(30_000)).unwrap().is_empty(),
        "closed once"
    );
    assert_eq!((agg.windows(), agg.groups(), agg.state_bytes()), (0, 0, 0));
    // A closed window's rows arriving again open it anew (the pipeline drops them first).
    agg.update(&input(&view, &[(1, 1, 2_000)])).unwrap();
    assert_eq!(agg.windows(), 1);
    assert_eq!(ends(&agg.close_until(i64::MAX).unwrap()), [10_000]);
}

#[tokio::test]
async fn refresh_gives_only_changed_windows_and_leaves_their_state_as_it_was() {
    let (view, mut agg) = compiled(TUMBLE_VIEW).await;
    agg.update(&input(&view, &[(1, 10, 1_000), (2, 20, 12_000)]))
        .unwrap();
    let current = agg.refresh().unwrap();
    assert_eq!(ends(&current), [10_000, 20_000]);
    assert!(agg.refresh().unwrap().is_empty(), "nothing changed since");
    agg.update(&input(&view, &[(2, 5, 13_000), (3, 1, 14_000)]))
        .unwrap();
    let current = agg.refresh().unwrap();
    assert_eq!(ends(&current), [20_000]);
    assert_eq!(
        rows(&batches(current)),
        [
            "2|1970-01-01T00:00:10|1970-01-01T00:00:20|2|25|20",
            "3|1970-01-01T00:00:10|1970-01-01T00:00:20|1|1|1"
        ]
    );
    // Reading the current rows took nothing away: the final rows count every bid once.
    agg.update(&input(&view, &[(2, 1, 19_000)])).unwrap();
    assert_eq!(agg.groups(), 3);
    assert_eq!(
        rows(&batches(agg.close_until(i64::MAX).unwrap())),
        [
            "1|1970-01-01T00:00:00|1970-01-01T00:00:10|1|10|10",
            "2|1970-01-01T00:00:10|1970-01-01T00:00:20|3|26|20",
            "3|1970-01-01T00:00:10|1970-01-01T00:00:20|1|1|1"
        ]
    );
}

#[tokio::test]
async fn exported_state_imported_into_a_new_aggregation_continues_like_the_original() {
    let query = "SELECT auction, window_start, count(*) AS bids, \
         count(DISTINCT price) AS prices, avg(price) AS mean, max(price) AS top, \
         sum(price) FILTER (WHERE price > 10) AS big \
         FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND) GROUP BY auction, window_start";
    let (view, mut original) = compiled(query).await;
    let first: &[Bid] = &[
        (1, 10, 1_000),
        (1, 10, 2_000),
        (2, 30, 3_000),
        (1, 40, 11_000),
    ];
    let second: &[Bid] = &[
        (1, 10, 4_000),
        (2, 5, 5_000),
        (1, 50, 12_000),
        (3, 1, 21_000),
    ];
    original.update(&input(&view, first)).unwrap();
    let exported = original.export().unwrap();
    assert_eq!(exported.len(), 2, "one batch per open window");
    let names: Vec<String> = exported[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names[..3], ["end", "k0", "k1"]);
    assert!(names[3..].iter().all(|n| n.starts_with('a')), "{names:?}");
    assert!(
        names.contains(&"a2_1".to_string()),
        "avg keeps a count and a sum: {names:?}"
    );
    // Through Arrow IPC, as a checkpoint keeps it.
    let mut file = Vec::new();
    {
        let mut w =
            datafusion::arrow::ipc::writer::FileWriter::try_new(&mut file, &exported[0].schema())
                .unwrap();
        for b in &exported {
            assert_eq!(b.schema(), exported[0].schema());
            w.write(b).unwrap();
        }
        w.finish().unwrap();
    }
    let read: Vec<RecordBatch> =
        datafusion::arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(file), None)
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
    let mut restored = WindowedAggregate::new(Arc::clone(original.spec()));
    restored.import(&read).unwrap();
    assert_eq!(
        (restored.windows(), restored.groups()),
        (original.windows(), original.groups())
    );
    for agg in [&mut original, &mut restored] {
        agg.update(&input(&view, second)).unwrap();
    }
    let a = rows(&batches(original.close_until(i64::MAX).unwrap()));
    let b = rows(&batches(restored.close_until(i64::MAX).unwrap()));
    assert_eq!(a, b);
    let all: Vec<Bid> = [first, second].concat();
    let expected = oracle(
        &view.plan.stream.source.schema,
        &all,
        "SELECT auction, date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01'), \
         count(*), count(DISTINCT price), avg(price), max(price), \
         sum(price) FILTER (WHERE price > 10) FROM bids GROUP BY 1, 2",
    )
    .await;
    assert_eq!(a, expected);
    assert!(
        a.contains(&"1|1970-01-01T00:00:00|3|1|10.0|10|".to_string()),
        "no price above 10: a NULL sum: {a:?}"
    );
}

#[tokio::test]
async fn an_aggregation_without_group_by_keeps_one_hidden_key_and_never_closes() {
    let (view, mut agg) = compiled("SELECT count(*) AS n, sum(price) AS total FROM bids").await;
    assert!(agg.spec().hidden_key);
    assert!(agg.spec().window.is_none());
    agg.update(&input(&view, &[(1, 10, 1_000), (2, 20, 99_000)]))
        .unwrap();
    agg.update(&input(&view, &[(3, 5, 0)])).unwrap();
    assert!(agg.close_until(i64::MAX).unwrap().is_empty());
    assert_eq!((agg.windows(), agg.groups()), (1, 1));
    let current = agg.refresh().unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].1.num_columns(), 2, "the key is not shown");
    assert_eq!(rows(&batches(current)), ["3|35"]);
    // An empty batch changes nothing.
    agg.update(&input(&view, &[])).unwrap();
    assert!(agg.refresh().unwrap().is_empty());
}

#[tokio::test]
async fn null_keys_group_together_and_null_event_times_join_no_window() {
    let (view, mut agg) = compiled(TUMBLE_VIEW).await;
    let schema = view.plan.stream.source.schema.clone();
    let source = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![None, Some(1), None, Some(1)])),
            Arc::new(Int64Array::from(vec![Some(3), Some(4), Some(5), None])),
            cast(
                &TimestampMillisecondArray::from(vec![Some(1_000), Some(2_000), Some(3_000), None]),
                schema.field(2).data_type(),
            )
            .unwrap(),
        ],
    )
    .unwrap();
    agg.update(&input_of(&view, source)).unwrap();
    assert_eq!(
        rows(&batches(agg.close_until(i64::MAX).unwrap())),
        [
            "1|1970-01-01T00:00:00|1970-01-01T00:00:10|1|4|4",
            "|1970-01-01T00:00:00|1970-01-01T00:00:10|2|8|5"
        ]
    );
}

#[tokio::test]
async fn a_window_start_key_closes_when_the_window_ends() {
    let (view, mut agg) = compiled(
        "SELECT window_start, count(*) AS n FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND) \
         GROUP BY window_start",
    )
    .await;
    let key = agg.spec().window.expect("windowed");
    assert!(key.is_start);
    assert_eq!(key.size, ms(10_000));
    agg.update(&input(&view, &[(1, 1, 10_000), (1, 1, 19_999)]))
        .unwrap();
    assert!(agg.close_until(ms(19_999)).unwrap().is_empty());
    let closed = agg.close_until(ms(20_000)).unwrap();
    assert_eq!(ends(&closed), [20_000]);
    assert_eq!(rows(&batches(closed)), ["1970-01-01T00:00:10|2"]);
}

#[tokio::test]
async fn the_aggregation_matches_a_batch_group_by_over_many_rows() {
    let (view, mut agg) = compiled(TUMBLE_VIEW).await;
    // 2000 bids over 20 auctions and 60 s, fed in batches of 128 in a scrambled order.
    let bids: Vec<Bid> = (0..2000i64)
        .map(|i| ((i * 7) % 20, (i * 13) % 101, (i * 7919) % 60_000))
        .collect();
    for chunk in bids.chunks(128) {
        agg.update(&input(&view, chunk)).unwrap();
    }
    assert_eq!(agg.windows(), 6);
    let got = rows(&batches(agg.close_until(i64::MAX).unwrap()));
    assert!(got.len() > 100, "{} groups", got.len());
    assert_eq!(
        got,
        oracle(&view.plan.stream.source.schema, &bids, TUMBLE_ORACLE).await
    );
}
