//! The sink runner's commit protocol with an in-memory writer that stages rows at
//! `prepare` and makes them visible at `commit` (as the Parquet writer does with its
//! files): rows are staged before a checkpoint, committed after it, never twice, and a
//! failing writer or input is reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;

use super::*;
use crate::bench::supplied::{OpenReader, Supplied};
use crate::catalog::Catalog;
use crate::checkpoint::Checkpoints;
use crate::sink::{SinkInput, SinkStats, parquet::ParquetSinkSpec};
use crate::sql::streaming::Options;
use crate::view::pipeline::tests::{Script, Scripted};
use crate::view::source::{ConnectorSpec, SourceDef};

/// What the in-memory destination holds.
#[derive(Default)]
struct Destination {
    /// Rows taken, not yet staged.
    buffered: Vec<i64>,
    /// Staged files (by staging name) and their rows.
    staged: BTreeMap<String, Vec<i64>>,
    /// Visible files (by target) and their rows.
    committed: BTreeMap<String, Vec<i64>>,
    /// Staged files committed when their target already held rows.
    twice: usize,
    /// `commit` calls, with what each was given.
    commits: Vec<Vec<Staged>>,
    /// Files staged so far (names files).
    files: usize,
    /// Staged files removed by `discard_uncommitted`.
    discarded: Vec<String>,
    /// Writes to fail before the next one succeeds.
    fail_writes: usize,
    fail_prepare: bool,
    /// Commits to fail.
    fail_commits: usize,
    /// When set: the manifest at that path, read at each commit.
    manifest: Option<PathBuf>,
    /// What the manifest said at each commit.
    manifest_at_commit: Vec<String>,
}

impl Destination {
    fn visible(&self) -> Vec<i64> {
        let mut rows: Vec<i64> = self.committed.values().flatten().copied().collect();
        rows.sort_unstable();
        rows
    }
}

struct Writer(Arc<Mutex<Destination>>);

fn fail(what: &str) -> WeirError {
    WeirError::Io(std::io::Error::other(format!("destination down: {what}")))
}

#[async_trait]
impl SinkWriter for Writer {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let mut d = self.0.lock().unwrap();
        if d.fail_writes > 0 {
            d.fail_writes -= 1;
            return Err(fail("write"));
        }
        let values = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        d.buffered.extend(values.values().iter().copied());
        Ok(())
    }
    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    async fn prepare(&mut self) -> Result<Vec<Staged>> {
        let mut d = self.0.lock().unwrap();
        if d.fail_prepare {
            return Err(fail("prepare"));
        }
        if d.buffered.is_empty() {
            return Ok(Vec::new());
        }
        d.files += 1;
        let name = format!("part-{}", d.files);
        let rows = std::mem::take(&mut d.buffered);
        d.staged.insert(format!("_staging/{name}"), rows);
        Ok(vec![Staged {
            staged: format!("_staging/{name}"),
            target: name,
        }])
    }
    async fn commit(&mut self, staged: &[Staged]) -> Result<()> {
        let mut d = self.0.lock().unwrap();
        d.commits.push(staged.to_vec());
        if let Some(path) = d.manifest.clone() {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            d.manifest_at_commit.push(text);
        }
        if d.fail_commits > 0 {
            d.fail_commits -= 1;
            return Err(fail("commit"));
        }
        for s in staged {
            match d.staged.remove(&s.staged) {
                Some(rows) => {
                    if d.committed.insert(s.target.clone(), rows).is_some() {
                        d.twice += 1;
                    }
                }
                // Committed before (a restart after the rename): nothing to do.
                None if d.committed.contains_key(&s.target) => {}
                None => panic!("commit of {s:?}, which was never staged"),
            }
        }
        Ok(())
    }
    async fn discard_uncommitted(&mut self) -> Result<()> {
        let mut d = self.0.lock().unwrap();
        let gone: Vec<String> = d.staged.keys().cloned().collect();
        d.staged.clear();
        d.discarded.extend(gone);
        Ok(())
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]))
}

/// Polls of ids.
fn script(polls: &[&[i64]]) -> Script {
    polls
        .iter()
        .map(|ids| {
            let batch =
                RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(ids.to_vec()))])
                    .unwrap();
            vec![(0, batch)]
        })
        .collect()
}

/// A sink to a two-phase (Parquet) connector reading a source of ids from memory; its
/// reader starts at the positions `start` holds when it is opened.
fn sink(
    polls: &[&[i64]],
    start: Arc<Mutex<Positions>>,
) -> (
    Arc<Sink>,
    mpsc::UnboundedReceiver<SinkCommand>,
    tempfile::TempDir,
) {
    let script = script(polls);
    let open: Arc<OpenReader> = Arc::new(move |_columns: &[usize]| {
        let at = start.lock().unwrap().clone();
        Ok(Box::new(Scripted::resumed(script.clone(), true, &at)) as Box<dyn SourceReader>)
    });
    let source = Arc::new(SourceDef {
        name: "ids".into(),
        schema: schema(),
        event_time: None,
        idle_timeout: Duration::from_secs(10),
        connector: ConnectorSpec::Connector(Supplied::connector(
            open,
            polls.iter().map(|p| p.len() as u64).sum(),
        )),
        options: Options::default(),
        definition: "CREATE SOURCE ids (id BIGINT) WITH (…)".into(),
    });
    let input = SinkInput {
        sink: "out".into(),
        from: "ids".into(),
        schema: schema(),
        delivery: Delivery::Append,
    };
    let dir = tempfile::tempdir().unwrap();
    let options = Options(BTreeMap::from([(
        "path".to_string(),
        dir.path().display().to_string(),
    )]));
    let spec = ParquetSinkSpec::parse(&SessionContext::new(), &input, &options, None).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let sink = Arc::new(Sink {
        name: "out".into(),
        definition: "CREATE SINK out FROM ids WITH (connector = 'parquet', …)".into(),
        from: crate::sink::Upstream::Source(source),
        connector: Arc::new(spec),
        input,
        stats: SinkStats::default(),
        commands: tx,
    });
    assert!(sink.connector.two_phase());
    (sink, rx, dir)
}

fn no_start() -> Arc<Mutex<Positions>> {
    Arc::new(Mutex::new(Positions::new()))
}

async fn runner(sink: &Arc<Sink>, dest: &Arc<Mutex<Destination>>, begin: SinkStart) -> Runner {
    Runner::open(
        Arc::clone(sink),
        Box::new(Writer(Arc::clone(dest))),
        begin,
        true,
    )
    .await
    .unwrap()
}

/// Read one poll of the input and write it.
async fn step(runner: &mut Runner) {
    let (_tx, mut commands) = mpsc::unbounded_channel();
    runner.step(&mut commands).await.unwrap();
}

/// A checkpoint's two phases on `runner`: prepare, then commit what it staged.
async fn checkpoint(runner: &mut Runner) -> SinkMeta {
    let meta = runner.prepare().await.unwrap();
    let (done, rx) = oneshot::channel();
    runner.commit_checkpointed(&meta.staged, done).await;
    rx.await.unwrap();
    meta
}

#[tokio::test]
async fn rows_are_staged_at_prepare_and_visible_only_after_the_commit() {
    let (sink, _rx, _dir) = sink(&[&[1, 2], &[3], &[4, 5]], no_start());
    let dest = Arc::new(Mutex::new(Destination::default()));
    let mut runner = runner(&sink, &dest, SinkStart::Fresh).await;
    step(&mut runner).await;
    step(&mut runner).await;
    {
        let d = dest.lock().unwrap();
        assert_eq!(d.buffered, [1, 2, 3]);
        assert!(d.staged.is_empty() && d.committed.is_empty());
    }
    assert_eq!(sink.stats.rows_written.load(Ordering::Relaxed), 3);

    let meta = runner.prepare().await.unwrap();
    assert_eq!(
        meta.staged,
        [Staged {
            staged: "_staging/part-1".into(),
            target: "part-1".into()
        }]
    );
    assert_eq!(meta.positions, Positions::from([(0, 3)]));
    assert_eq!((meta.rows_written, meta.commits), (3, 0));
    assert_eq!(meta.name, "out");
    assert_eq!(meta.input, sink.from.definition());
    {
        let d = dest.lock().unwrap();
        assert_eq!(d.staged["_staging/part-1"], [1, 2, 3]);
        assert!(
            d.committed.is_empty(),
            "nothing visible before the checkpoint is durable"
        );
    }
    let (done, rx) = oneshot::channel();
    runner.commit_checkpointed(&meta.staged, done).await;
    rx.await.unwrap();
    assert_eq!(dest.lock().unwrap().visible(), [1, 2, 3]);
    assert_eq!(sink.stats.commits.load(Ordering::Relaxed), 1);
    assert!(sink.stats.last_commit.load(Ordering::Relaxed) > 0);

    // The next checkpoint stages and commits only what came since.
    step(&mut runner).await;
    let meta = checkpoint(&mut runner).await;
    assert_eq!(meta.staged.len(), 1);
    assert_eq!(meta.staged[0].target, "part-2");
    assert_eq!(meta.positions, Positions::from([(0, 5)]));
    {
        let d = dest.lock().unwrap();
        assert_eq!(d.committed["part-2"], [4, 5]);
        assert_eq!(d.visible(), [1, 2, 3, 4, 5]);
        assert_eq!(d.twice, 0);
    }
    assert_eq!(sink.stats.commits.load(Ordering::Relaxed), 2);

    // A checkpoint with nothing new stages nothing and commits nothing.
    let meta = checkpoint(&mut runner).await;
    assert!(meta.staged.is_empty());
    assert_eq!(sink.stats.commits.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_restart_commits_the_checkpointed_files_once_and_rewrites_what_came_after() {
    let polls: [&[i64]; 3] = [&[1, 2], &[3], &[4, 5]];
    let start = no_start();
    let (sink, _rx, _dir) = sink(&polls, Arc::clone(&start));
    let dest = Arc::new(Mutex::new(Destination::default()));
    let mut before = runner(&sink, &dest, SinkStart::Fresh).await;
    step(&mut before).await;
    step(&mut before).await;
    // The checkpoint is written, then the server stops before the commit; rows 4 and 5
    // were staged after it.
    let meta = before.prepare().await.unwrap();
    step(&mut before).await;
    before.prepare().await.unwrap();
    drop(before);
    assert_eq!(dest.lock().unwrap().staged.len(), 2);
    assert!(dest.lock().unwrap().committed.is_empty());

    for restart in 0..2 {
        *start.lock().unwrap() = meta.positions.clone();
        let (sink, _rx, _dir) = self::sink(&polls, Arc::clone(&start));
        let mut after = runner(&sink, &dest, SinkStart::Restore(meta.clone())).await;
        {
            let d = dest.lock().unwrap();
            assert_eq!(d.committed["part-1"], [1, 2, 3], "restart {restart}");
            assert!(
                d.staged.is_empty(),
                "what came after the checkpoint is gone"
            );
            assert_eq!(d.twice, 0);
        }
        assert_eq!(sink.stats.rows_written.load(Ordering::Relaxed), 3);
        if restart == 0 {
            assert_eq!(dest.lock().unwrap().discarded, ["_staging/part-2"]);
            // Stops again before its own checkpoint: a second restart from the same
            // checkpoint commits part-1 again, which is already in place.
            continue;
        }
        step(&mut after).await;
        let next = checkpoint(&mut after).await;
        assert_eq!(next.positions, Positions::from([(0, 5)]));
        assert_eq!(next.rows_written, 5);
    }
    let d = dest.lock().unwrap();
    assert_eq!(d.visible(), [1, 2, 3, 4, 5], "every row once");
    assert_eq!(d.twice, 0);
}

#[tokio::test]
async fn without_checkpoints_a_flush_reads_to_the_end_and_commits_at_once() {
    let (sink, _rx, _dir) = sink(&[&[1], &[2, 3], &[4]], no_start());
    let dest = Arc::new(Mutex::new(Destination::default()));
    let mut runner = Runner::open(
        Arc::clone(&sink),
        Box::new(Writer(Arc::clone(&dest))),
        SinkStart::Fresh,
        false,
    )
    .await
    .unwrap();
    let (reply, rx) = oneshot::channel();
    runner.flush(reply).await;
    rx.await.unwrap().unwrap();
    let d = dest.lock().unwrap();
    assert_eq!(d.visible(), [1, 2, 3, 4]);
    assert_eq!(d.commits.len(), 1);
    assert_eq!(sink.stats.commits.load(Ordering::Relaxed), 1);
    assert_eq!(sink.stats.rows_written.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn a_failing_write_is_retried_counted_and_cleared_once_it_succeeds() {
    let (sink, _rx, _dir) = sink(&[&[7, 8]], no_start());
    let dest = Arc::new(Mutex::new(Destination {
        fail_writes: 1,
        ..Default::default()
    }));
    let mut runner = runner(&sink, &dest, SinkStart::Fresh).await;
    // One failure: the runner waits its first back-off (200 ms) and writes again.
    step(&mut runner).await;
    assert_eq!(sink.stats.errors.load(Ordering::Relaxed), 1);
    assert_eq!(sink.stats.status(), ("running", None));
    assert_eq!(dest.lock().unwrap().buffered, [7, 8], "written once");
    assert_eq!(sink.stats.rows_written.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_stop_while_a_write_fails_ends_the_retries_with_an_error() {
    let (sink, _rx, _dir) = sink(&[&[7, 8]], no_start());
    let dest = Arc::new(Mutex::new(Destination {
        fail_writes: usize::MAX,
        ..Default::default()
    }));
    let mut runner = runner(&sink, &dest, SinkStart::Fresh).await;
    let (tx, mut commands) = mpsc::unbounded_channel();
    let (prepare, prepared) = oneshot::channel();
    tx.send(SinkCommand::Prepare(prepare)).unwrap();
    tx.send(SinkCommand::Stop).unwrap();
    let e = runner.step(&mut commands).await.unwrap_err().to_string();
    assert!(e.contains("stopped while retrying"), "{e}");
    // A checkpoint asking meanwhile hears why the sink cannot answer.
    let e = prepared.await.unwrap().unwrap_err().to_string();
    assert!(
        e.contains("sink \"out\" is retrying a write: ") && e.contains("destination down: write"),
        "{e}"
    );
    let (status, why) = sink.stats.status();
    assert_eq!(status, "retrying");
    assert!(why.unwrap().contains("destination down: write"));
    assert!(dest.lock().unwrap().buffered.is_empty());
    assert_eq!(sink.stats.rows_written.load(Ordering::Relaxed), 0);
}

/// A reader whose source fails.
struct Broken;

#[async_trait]
impl SourceReader for Broken {
    async fn poll(&mut self) -> Result<Poll> {
        Err(WeirError::Internal("the source broke".into()))
    }
    async fn end_positions(&mut self) -> Result<Positions> {
        Ok(Positions::new())
    }
    fn positions(&self) -> &Positions {
        static NONE: Positions = Positions::new();
        &NONE
    }
    fn partitions(&self) -> Vec<i32> {
        vec![0]
    }
    fn decode_errors(&self) -> u64 {
        0
    }
}

#[tokio::test]
async fn a_sink_whose_input_fails_restarts_from_its_input_and_a_flush_waits_for_it() {
    let (sink, rx, _dir) = sink(&[], no_start());
    let dest = Arc::new(Mutex::new(Destination::default()));
    let mut runner = runner(&sink, &dest, SinkStart::Fresh).await;
    runner.input = Reading::Reader {
        reader: Box::new(Broken),
        skip: 0,
    };
    let test = async {
        // The input fails at the first read; the sink restarts with its input opened
        // again (it works), and the FLUSH that came meanwhile is answered then.
        let (reply, answer) = oneshot::channel();
        sink.commands.send(SinkCommand::Flush(reply)).unwrap();
        tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("an answer")
            .unwrap()
            .unwrap();
        assert_eq!(sink.stats.status(), ("running", None));
        // On a running sink, ALTER SINK … RESTART does nothing.
        let (reply, answer) = oneshot::channel();
        sink.commands.send(SinkCommand::Restart(reply)).unwrap();
        answer.await.unwrap().unwrap();
        sink.commands.send(SinkCommand::Stop).unwrap();
    };
    // The runner on this task, next to the test: it ends at the Stop.
    tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(runner.run(rx), test)
    })
    .await
    .expect("the runner stopped");
}

/// A catalog holding `sink`, taking checkpoints into `dir`.
fn checkpointed(sink: &Arc<Sink>, dir: &Path) -> Catalog {
    let catalog = Catalog::default();
    catalog.add_sink(Arc::clone(sink));
    let (checkpoints, _) = Checkpoints::open(dir).unwrap();
    catalog.set_checkpoints(checkpoints, None);
    catalog
}

/// Run `test` next to the runner of `sink` (on this task); the runner is stopped after.
async fn beside(
    sink: &Arc<Sink>,
    runner: Runner,
    rx: mpsc::UnboundedReceiver<SinkCommand>,
    test: impl std::future::Future<Output = ()>,
) {
    let test = async {
        test.await;
        sink.commands.send(SinkCommand::Stop).unwrap();
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(runner.run(rx), test)
    })
    .await
    .expect("the runner stopped");
}

#[tokio::test]
async fn a_checkpoint_commits_the_staged_files_after_its_manifest_is_on_disk() {
    let (sink, rx, _out) = sink(&[&[1, 2], &[3]], no_start());
    let data = tempfile::tempdir().unwrap();
    let dest = Arc::new(Mutex::new(Destination {
        manifest: Some(data.path().join("checkpoints/MANIFEST.json")),
        ..Default::default()
    }));
    let catalog = checkpointed(&sink, data.path());
    let runner = runner(&sink, &dest, SinkStart::Fresh).await;
    beside(&sink, runner, rx, async {
        sink.flush().await.unwrap();
        assert!(dest.lock().unwrap().committed.is_empty());
        let taken = catalog.checkpoint().await.unwrap();
        assert_eq!((taken.sequence, taken.sinks), (1, 1));
    })
    .await;
    let d = dest.lock().unwrap();
    assert_eq!(d.visible(), [1, 2, 3]);
    assert_eq!(d.manifest_at_commit.len(), 1);
    assert!(
        d.manifest_at_commit[0].contains("\"staged\": \"_staging/part-1\""),
        "the manifest naming the file was in place before the commit: {}",
        d.manifest_at_commit[0]
    );
    let (_, restored) = Checkpoints::open(data.path()).unwrap();
    let restored = restored.unwrap();
    let meta = restored.sink("out").unwrap();
    assert_eq!(meta.positions, Positions::from([(0, 3)]));
    assert_eq!(meta.rows_written, 3);
    assert_eq!(meta.staged.len(), 1);
}

#[tokio::test]
async fn a_sink_that_cannot_prepare_keeps_its_last_checkpointed_position() {
    let (sink, rx, _out) = sink(&[&[1, 2]], no_start());
    let data = tempfile::tempdir().unwrap();
    let dest = Arc::new(Mutex::new(Destination::default()));
    let catalog = checkpointed(&sink, data.path());
    let runner = runner(&sink, &dest, SinkStart::Fresh).await;
    beside(&sink, runner, rx, async {
        // No answer and no earlier checkpoint of it: left out.
        dest.lock().unwrap().fail_prepare = true;
        let taken = catalog.checkpoint().await.unwrap();
        assert_eq!(taken.sinks, 0);
        dest.lock().unwrap().fail_prepare = false;
        sink.flush().await.unwrap();
        let taken = catalog.checkpoint().await.unwrap();
        assert_eq!(taken.sinks, 1);
        // Failing again: the checkpoint keeps the sink where the last one had it.
        dest.lock().unwrap().fail_prepare = true;
        let taken = catalog.checkpoint().await.unwrap();
        assert_eq!((taken.sequence, taken.sinks), (3, 1));
    })
    .await;
    let (_, restored) = Checkpoints::open(data.path()).unwrap();
    let meta = restored.unwrap().sink("out").unwrap().clone();
    assert_eq!(meta.positions, Positions::from([(0, 2)]));
    assert_eq!(dest.lock().unwrap().visible(), [1, 2]);
    assert_eq!(dest.lock().unwrap().twice, 0);
}

#[tokio::test]
async fn a_failed_commit_is_retried_at_the_next_checkpoint() {
    let (sink, _rx, _dir) = sink(&[&[1, 2], &[3]], no_start());
    let dest = Arc::new(Mutex::new(Destination {
        fail_commits: 1,
        ..Default::default()
    }));
    let mut runner = runner(&sink, &dest, SinkStart::Fresh).await;
    step(&mut runner).await;
    let first = checkpoint(&mut runner).await;
    assert_eq!(first.staged.len(), 1);
    assert!(
        dest.lock().unwrap().committed.is_empty(),
        "the commit failed"
    );
    step(&mut runner).await;
    let second = checkpoint(&mut runner).await;
    // The next checkpoint must carry part-1 again (or commit it): else a restart from it
    // commits only part-2 and discards part-1, whose rows the reader has passed.
    let carried = second.staged.iter().any(|s| s.target == "part-1");
    assert!(
        carried || dest.lock().unwrap().committed.contains_key("part-1"),
        "part-1 neither committed nor in the next checkpoint: {:?}",
        second.staged
    );
}

#[tokio::test]
async fn a_cancelled_checkpoint_leaves_its_files_to_the_next() {
    let (sink, _rx, _dir) = sink(&[&[1, 2], &[3]], no_start());
    let dest = Arc::new(Mutex::new(Destination::default()));
    let mut runner = runner(&sink, &dest, SinkStart::Fresh).await;
    step(&mut runner).await;
    // A CHECKPOINT or FLUSH cancelled after the prepare: its answer is dropped.
    let dropped = runner.prepare().await.unwrap();
    assert_eq!(dropped.staged.len(), 1);
    step(&mut runner).await;
    let next = checkpoint(&mut runner).await;
    assert_eq!(next.staged.len(), 2, "{:?}", next.staged);
    assert_eq!(dest.lock().unwrap().visible(), [1, 2, 3]);
    // Committed files are not listed again.
    assert!(checkpoint(&mut runner).await.staged.is_empty());
}

#[tokio::test]
async fn the_commit_counter_does_not_go_back_at_a_restart() {
    let start = no_start();
    let (sink, _rx, _dir) = sink(&[&[1, 2]], Arc::clone(&start));
    let dest = Arc::new(Mutex::new(Destination::default()));
    let mut before = runner(&sink, &dest, SinkStart::Fresh).await;
    step(&mut before).await;
    let meta = checkpoint(&mut before).await;
    assert_eq!(sink.stats.commits.load(Ordering::Relaxed), 1);
    drop(before);
    *start.lock().unwrap() = meta.positions.clone();
    let (again, _rx, _dir) = self::sink(&[&[1, 2]], Arc::clone(&start));
    let _after = runner(&again, &dest, SinkStart::Restore(meta)).await;
    assert_eq!(dest.lock().unwrap().visible(), [1, 2]);
    assert_eq!(
        again.stats.commits.load(Ordering::Relaxed),
        1,
        "part-1 was committed before the restart"
    );
}

/// A reader whose poll panics.
struct Panicking;

#[async_trait]
impl SourceReader for Panicking {
    async fn poll(&mut self) -> Result<Poll> {
        panic!("a bug in the reader");
    }
    async fn end_positions(&mut self) -> Result<Positions> {
        Ok(Positions::new())
    }
    fn positions(&self) -> &Positions {
        static NONE: Positions = Positions::new();
        &NONE
    }
    fn partitions(&self) -> Vec<i32> {
        vec![0]
    }
    fn decode_errors(&self) -> u64 {
        0
    }
}

#[tokio::test]
async fn a_panic_on_a_sinks_thread_fails_it_and_it_restarts() {
    let (sink, rx, _dir) = sink(&[], no_start());
    let dest = Arc::new(Mutex::new(Destination::default()));
    let mut runner = runner(&sink, &dest, SinkStart::Fresh).await;
    runner.input = Reading::Reader {
        reader: Box::new(Panicking),
        skip: 0,
    };
    let test = async {
        // The runner panicked at its first read (before this runs) and is failed,
        // waiting to restart: the reason says so, a checkpoint keeps its last position.
        let (status, why) = sink.stats.status();
        assert_eq!(status, "failed");
        let why = why.unwrap();
        assert!(
            why.contains("panicked: a bug in the reader") && why.contains("restart 1 of 5"),
            "{why}"
        );
        let (reply, answer) = oneshot::channel();
        sink.commands.send(SinkCommand::Prepare(reply)).unwrap();
        assert!(answer.await.unwrap().is_err());
        // A FLUSH waits for the restart (its input opened again).
        let (reply, answer) = oneshot::channel();
        sink.commands.send(SinkCommand::Flush(reply)).unwrap();
        tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("an answer")
            .unwrap()
            .unwrap();
        assert_eq!(sink.stats.status(), ("running", None));
        sink.commands.send(SinkCommand::Stop).unwrap();
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(runner.run(rx), test)
    })
    .await
    .expect("the runner stopped");
}
