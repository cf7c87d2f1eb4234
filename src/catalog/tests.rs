//! The catalog without a server: checkpoints numbered after the one on disk, and an
//! engine whose view resumes from the checkpoint it took, or is rebuilt once its
//! definition changed.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Catalog;
use crate::checkpoint::tests::{data_dir, folders, snapshot};
use crate::checkpoint::{Checkpoints, write};

#[tokio::test]
async fn take_continues_the_sequence_of_the_checkpoint_on_disk() {
    let (dir, root) = data_dir();
    write(&root, 3, vec![snapshot("v", 5)], Vec::new(), Instant::now()).unwrap();
    let (checkpoints, restored) = Checkpoints::open(dir.path()).unwrap();
    assert_eq!(restored.unwrap().sequence, 3);
    // No views nor sinks: an empty checkpoint, numbered after the one on disk.
    let catalog = Catalog::default();
    catalog.set_checkpoints(checkpoints, None);
    let taken = catalog.checkpoint().await.unwrap();
    assert_eq!((taken.sequence, taken.views, taken.sinks), (4, 0, 0));
    let taken = catalog.checkpoint().await.unwrap();
    assert_eq!(taken.sequence, 5);
    let (_, restored) = Checkpoints::open(dir.path()).unwrap();
    let restored = restored.unwrap();
    assert_eq!(restored.sequence, 5);
    assert_eq!(restored.views().count(), 0);
    assert_eq!(folders(&root), ["MANIFEST.json", "ckpt-0000000005"]);
}

/// The statements of the engine tests: a bounded source and a view of running totals.
const BIDS: &str = "CREATE SOURCE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP, \
     WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) \
     WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.event.num' = '2000')";
const TOTALS: &str = "CREATE MATERIALIZED VIEW totals AS \
     SELECT auction, count(*) AS n, sum(price) AS total FROM bids GROUP BY auction";

/// An engine taking checkpoints into `dir`, from the one there if any, with `statements`
/// applied.
async fn engine_on(dir: &Path, statements: &[&str]) -> crate::engine::Engine {
    use crate::bench::drive::sql;
    let engine = crate::engine::Engine::new().await.unwrap();
    let (checkpoints, restored) = Checkpoints::open(dir).unwrap();
    engine.catalog().set_checkpoints(checkpoints, restored);
    for s in statements {
        sql(&engine, s).await.unwrap();
    }
    engine
}

async fn totals(engine: &crate::engine::Engine, columns: &str) -> Vec<String> {
    let batches = crate::bench::drive::sql(
        engine,
        &format!("SELECT {columns} FROM totals ORDER BY auction"),
    )
    .await
    .unwrap();
    crate::view::pipeline::tests::rows(&batches)
}

#[tokio::test]
async fn a_view_resumes_from_the_checkpoint_the_engine_took_and_a_changed_one_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let first = engine_on(dir.path(), &[BIDS, TOTALS, "FLUSH"]).await;
    assert!(first.catalog().restored(), "no checkpoint yet: one is due");
    let taken = first.catalog().checkpoint().await.unwrap();
    assert_eq!((taken.sequence, taken.views), (1, 1));
    let before = totals(&first, "auction, n, total").await;
    assert!(!before.is_empty());
    let read = first.catalog().view("totals").unwrap().counters().rows_in;
    assert_eq!(read, 2000);
    drop(first);

    // The same statements: the view starts from the checkpoint, where its reader stood.
    let second = engine_on(dir.path(), &[BIDS, TOTALS]).await;
    assert!(!second.catalog().restored(), "every view resumed");
    let view = second.catalog().view("totals").unwrap();
    assert!(view.resumed.load(Ordering::Relaxed));
    assert_eq!(totals(&second, "auction, n, total").await, before);
    crate::bench::drive::sql(&second, "FLUSH").await.unwrap();
    assert_eq!(view.counters().rows_in, 2000, "nothing read twice");
    assert_eq!(totals(&second, "auction, n, total").await, before);
    drop((view, second));

    // Another definition: read again from where the view began, into an empty state.
    let changed = TOTALS.replace(
        "sum(price) AS total",
        "sum(price) AS total, max(price) AS top",
    );
    let third = engine_on(dir.path(), &[BIDS, &changed, "FLUSH"]).await;
    assert!(
        third.catalog().restored(),
        "a view was rebuilt: a checkpoint is due"
    );
    let view = third.catalog().view("totals").unwrap();
    assert!(!view.resumed.load(Ordering::Relaxed));
    assert_eq!(view.counters().rows_in, 2000);
    assert_eq!(totals(&third, "auction, n, total").await, before);
}
