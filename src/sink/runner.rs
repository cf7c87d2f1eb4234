//! A sink's runner: one thread per sink reads its input (a source's records, a view's
//! final rows, or a view's changes), hands every batch to the connector's writer —
//! retrying with back-off while the destination fails — and answers `FLUSH` and the two
//! phases of a checkpoint between reads.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{Delivery, Sink, SinkWriter, Staged, Upstream};
use crate::checkpoint::SinkMeta;
use crate::connector::retry::Backoff;
use crate::connector::{Poll, Positions, SourceReader, now_micros, reached};
use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;
use crate::view::pipeline::{
    FLUSH_OUTAGE_WAIT, MAX_RESTARTS, RESTART_FIRST_DELAY, RESTART_MAX_DELAY, RESTART_RESET_AFTER,
    panic_message,
};
use crate::view::upstream::ViewReader;

/// What the catalog asks of a running sink.
pub enum SinkCommand {
    /// Answer once everything its input holds now was handed to the destination.
    Flush(oneshot::Sender<Result<()>>),
    /// A checkpoint's first phase: finish what is open, and say where the sink stands.
    Prepare(oneshot::Sender<Result<SinkMeta>>),
    /// The checkpoint holding these is durable: make them visible, then answer (a
    /// failed commit is retried at the next checkpoint or restart).
    Commit(Vec<Staged>, oneshot::Sender<()>),
    /// `ALTER SINK … RESTART`: a failed sink starts again from its last checkpointed
    /// position (nothing to do for a running one).
    Restart(oneshot::Sender<Result<()>>),
    Stop,
}

/// How a sink begins.
pub enum SinkStart {
    /// From its input's start (a source's startup mode, the rows a view keeps, or a
    /// view's rows now followed by its changes).
    Fresh,
    /// From a checkpoint: what it had staged is committed, what it staged after is
    /// removed, and reading resumes where the checkpoint says.
    Restore(SinkMeta),
}

/// First and longest wait between two tries of a failing write.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Without checkpoints, how often files are finished and made visible.
const COMMIT_EVERY: Duration = Duration::from_secs(10);
/// How often writers whose rows are visible once flushed (upserts, Kafka records) flush.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Run the sink: open its input, report on `ready_tx` (the catalog runs this on the
/// sink's own thread and returns from `CREATE SINK` once it has reported), then write
/// until told to stop. `checkpointing`: staged files wait for a checkpoint's commit
/// (else they are made visible at once, every `COMMIT_EVERY` and at `FLUSH`).
pub async fn run(
    sink: Arc<Sink>,
    commands: mpsc::UnboundedReceiver<SinkCommand>,
    begin: SinkStart,
    checkpointing: bool,
    ready_tx: oneshot::Sender<Result<()>>,
) {
    let mut ready = Some(ready_tx);
    let mut commands = commands;
    let Some((writer, deferred)) = connect(&sink, &mut commands, &mut ready).await else {
        return;
    };
    match Runner::open(Arc::clone(&sink), writer, begin, checkpointing).await {
        Ok(mut runner) => {
            runner.deferred = deferred;
            if let Some(tx) = ready.take() {
                let _ = tx.send(Ok(()));
            }
            runner.run(commands).await;
        }
        Err(e) => match ready.take() {
            Some(tx) => {
                let _ = tx.send(Err(e));
            }
            None => {
                warn!(target: "weir::sink", "sink {} stopped: {e}", sink.name);
                *sink.stats.failed.locked() = Some(e.to_string());
                for (_, reply) in deferred {
                    let _ = reply.send(Err(e_stopped(&sink.name, &sink.stats)));
                }
            }
        },
    }
}

/// `FLUSH`es waiting for a sink, with when they came.
type Deferred = Vec<(Instant, oneshot::Sender<Result<()>>)>;

/// Open the sink's writer, retrying with back-off while its destination cannot be
/// reached: `CREATE SINK` returns after the first failure (`ready`), the sink shows
/// `retrying`, a `FLUSH` waits up to `FLUSH_OUTAGE_WAIT`. `None` once told to stop.
async fn connect(
    sink: &Arc<Sink>,
    commands: &mut mpsc::UnboundedReceiver<SinkCommand>,
    ready: &mut Option<oneshot::Sender<Result<()>>>,
) -> Option<(Box<dyn SinkWriter>, Deferred)> {
    let mut backoff = Backoff::between(FIRST_BACKOFF, MAX_BACKOFF);
    let mut deferred: Deferred = Vec::new();
    let mut logged: Option<Instant> = None;
    loop {
        let message = match sink.connector.open(&sink.input).await {
            Ok(writer) => {
                *sink.stats.retrying.locked() = None;
                return Some((writer, deferred));
            }
            Err(e) => e.to_string(),
        };
        if let Some(tx) = ready.take() {
            let _ = tx.send(Ok(()));
        }
        sink.stats.errors.fetch_add(1, Ordering::Relaxed);
        if logged.is_none_or(|l| l.elapsed() >= MAX_BACKOFF) {
            warn!(target: "weir::sink", "sink {}: cannot open its destination, retrying: {message}", sink.name);
            logged = Some(Instant::now());
        }
        *sink.stats.retrying.locked() = Some(message.clone());
        tokio::time::sleep(backoff.delay()).await;
        loop {
            let command = match commands.try_recv() {
                Ok(command) => command,
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => break,
            };
            let why = || {
                format!(
                    "sink \"{}\" cannot open its destination: {message}",
                    sink.name
                )
            };
            match meanwhile(command, &mut deferred, why) {
                Meanwhile::Stop => return None,
                // Committed at start once the destination is reached.
                Meanwhile::Commit(..) | Meanwhile::Done => {}
            }
        }
        give_up_late(&mut deferred, &sink.name, &message);
    }
}

/// What a command that comes while the destination cannot be written leaves to do.
enum Meanwhile {
    Done,
    /// A checkpoint's commit, for the caller.
    Commit(Vec<Staged>, oneshot::Sender<()>),
    Stop,
}

/// A command while the destination cannot be written: a `FLUSH` waits (failed after
/// `FLUSH_OUTAGE_WAIT`, see [`give_up_late`]), a checkpoint's prepare is refused with
/// `why`, a commit and a stop go back to the caller.
fn meanwhile(command: SinkCommand, deferred: &mut Deferred, why: impl Fn() -> String) -> Meanwhile {
    match command {
        SinkCommand::Stop => Meanwhile::Stop,
        SinkCommand::Flush(reply) => {
            deferred.push((Instant::now(), reply));
            Meanwhile::Done
        }
        SinkCommand::Prepare(reply) => {
            let _ = reply.send(Err(WeirError::Stopped(why())));
            Meanwhile::Done
        }
        SinkCommand::Commit(staged, done) => Meanwhile::Commit(staged, done),
        SinkCommand::Restart(reply) => {
            let _ = reply.send(Ok(()));
            Meanwhile::Done
        }
    }
}

/// Fail the `FLUSH`es that waited `FLUSH_OUTAGE_WAIT` on a failing destination.
fn give_up_late(deferred: &mut Deferred, name: &str, message: &str) {
    let now = Instant::now();
    let (late, waiting): (Vec<_>, Vec<_>) = std::mem::take(deferred)
        .into_iter()
        .partition(|(since, _)| now.duration_since(*since) >= FLUSH_OUTAGE_WAIT);
    *deferred = waiting;
    for (_, reply) in late {
        let _ = reply.send(Err(WeirError::Stopped(format!(
            "FLUSH gave up on sink \"{name}\" after {} s: {message}",
            FLUSH_OUTAGE_WAIT.as_secs()
        ))));
    }
}

/// Where a sink's rows come from.
enum Reading {
    /// Append-only rows, with positions; `skip` rows a view's reader gives again after a
    /// restart (written before it) are left out.
    Reader {
        reader: Box<dyn SourceReader>,
        skip: u64,
    },
    /// A view's changes.
    Changes(BoxStream<'static, Result<RecordBatch>>),
}

struct Runner {
    sink: Arc<Sink>,
    writer: Box<dyn SinkWriter>,
    input: Reading,
    ended: bool,
    checkpointing: bool,
    /// Without checkpoints: when files were last made visible.
    committed: Instant,
    /// Files staged and not yet committed: every checkpoint lists them again (its
    /// `prepare` may have been cancelled, its commit may have failed) until a commit
    /// of them succeeds, so a restart commits them instead of discarding them.
    uncommitted: Vec<Staged>,
    /// When the writer was last flushed by the timer.
    flushed: Instant,
    /// `FLUSH`es that came while a write was failing, or while the sink waits to restart.
    deferred: Deferred,
    /// Where the sink last stood at a checkpoint (prepared, or restored at start): what
    /// a failed sink restarts from.
    last_good: Option<SinkMeta>,
    /// Automatic restarts since the sink last ran for `RESTART_RESET_AFTER`, their
    /// back-off, and when the next is due (`None`: none is).
    restarts: u32,
    backoff: Backoff,
    restart_at: Option<Instant>,
    started: Instant,
}

/// Open a change stream of `view`: its rows now, then its changes (not the rows that
/// pass its retention: what was written stays).
fn changes(view: &crate::view::state::View) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    Ok(view.subscribe_changes(true, false)?.stream)
}

impl Runner {
    async fn open(
        sink: Arc<Sink>,
        mut writer: Box<dyn SinkWriter>,
        begin: SinkStart,
        checkpointing: bool,
    ) -> Result<Self> {
        let last_good = match &begin {
            SinkStart::Restore(meta) => Some(meta.clone()),
            SinkStart::Fresh => None,
        };
        let resume = match &begin {
            SinkStart::Restore(meta) => {
                sink.stats
                    .rows_written
                    .store(meta.rows_written, Ordering::Relaxed);
                // The checkpoint's files are committed now, or were before the restart:
                // either way they count.
                sink.stats
                    .commits
                    .store(meta.commits + meta.staged.len() as u64, Ordering::Relaxed);
                writer.commit(&meta.staged).await?;
                Some(meta.positions.clone())
            }
            SinkStart::Fresh => None,
        };
        writer.discard_uncommitted().await?;
        let input = match (&sink.from, sink.input.delivery) {
            (Upstream::View(v), Delivery::Changes) => Reading::Changes(changes(v)?),
            (Upstream::Source(s), _) => {
                let columns: Vec<usize> = (0..s.schema.fields().len()).collect();
                Reading::Reader {
                    reader: s.open(&columns, resume.as_ref()).await?,
                    skip: 0,
                }
            }
            (Upstream::View(v), Delivery::Append) => {
                // Read as a view reads a view, but never holding the view back: a sink
                // may retry its destination for long.
                v.as_source()?;
                let reader: Box<dyn SourceReader> =
                    Box::new(ViewReader::open(Arc::clone(v), false));
                let from = reader.positions().get(&0).copied().unwrap_or(0);
                let at = resume.as_ref().and_then(|r| r.get(&0)).copied();
                let skip = match at {
                    Some(at) if at < from => {
                        warn!(
                            target: "weir::sink",
                            "sink {}: materialized view {} let {} rows go (retention) before \
                             the sink wrote them",
                            sink.name,
                            v.name,
                            from - at
                        );
                        0
                    }
                    Some(at) => (at - from) as u64,
                    None => 0,
                };
                Reading::Reader { reader, skip }
            }
        };
        info!(
            target: "weir::sink",
            "sink {} started: {} of {} to {}{}",
            sink.name,
            sink.delivery_text(),
            sink.from.name(),
            sink.connector.name(),
            match &resume {
                Some(p) => format!(", resuming at {p:?}"),
                None => String::new(),
            }
        );
        Ok(Runner {
            sink,
            writer,
            input,
            ended: false,
            checkpointing,
            committed: Instant::now(),
            uncommitted: Vec::new(),
            flushed: Instant::now(),
            deferred: Vec::new(),
            last_good,
            restarts: 0,
            backoff: Backoff::between(RESTART_FIRST_DELAY, RESTART_MAX_DELAY),
            restart_at: None,
            started: Instant::now(),
        })
    }

    fn is_failed(&self) -> bool {
        self.sink.stats.failed.locked().is_some()
    }

    /// Start the failed sink again from its last checkpointed position: a new writer
    /// (what it staged then is committed, what it staged after is removed) and input.
    async fn restart(&mut self) -> Result<()> {
        let begin = match &self.last_good {
            Some(meta) => SinkStart::Restore(meta.clone()),
            None => SinkStart::Fresh,
        };
        let sink = Arc::clone(&self.sink);
        let opened = AssertUnwindSafe(async {
            let writer = sink.connector.open(&sink.input).await?;
            Runner::open(Arc::clone(&sink), writer, begin, self.checkpointing).await
        })
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(WeirError::Internal(panic_message(p.as_ref()))))?;
        let mut fresh = opened;
        fresh.deferred = std::mem::take(&mut self.deferred);
        fresh.last_good = self.last_good.take();
        fresh.restarts = self.restarts;
        fresh.backoff = self.backoff.clone();
        *self = fresh;
        *self.sink.stats.failed.locked() = None;
        info!(
            target: "weir::sink",
            "sink {} restarted from {} (restart {} of {MAX_RESTARTS})",
            self.sink.name,
            match &self.last_good {
                Some(m) => format!("its checkpointed position {:?}", m.positions),
                None => "its input's start (no checkpoint holds it)".into(),
            },
            self.restarts
        );
        Ok(())
    }

    /// An automatic restart is due: try it; when it fails, the next is scheduled.
    async fn restart_due(&mut self) {
        self.restarts += 1;
        if let Err(e) = self.restart().await {
            self.fail(WeirError::Stopped(format!("restarting failed: {e}")));
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<SinkCommand>) {
        loop {
            loop {
                match commands.try_recv() {
                    Ok(command) => {
                        if !self.command(command).await {
                            return;
                        }
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            for (_, reply) in std::mem::take(&mut self.deferred) {
                self.flush(reply).await;
            }
            if self.ended || self.is_failed() {
                let command = match (self.is_failed(), self.restart_at) {
                    (true, Some(at)) => {
                        tokio::select! {
                            command = commands.recv() => command,
                            _ = tokio::time::sleep_until(at.into()) => {
                                self.restart_due().await;
                                continue;
                            }
                        }
                    }
                    _ => commands.recv().await,
                };
                let Some(command) = command else {
                    return;
                };
                if !self.command(command).await {
                    return;
                }
                continue;
            }
            // A panic in the sink's work fails the sink like an error does.
            let step = AssertUnwindSafe(async {
                self.step(&mut commands).await?;
                self.auto_commit(false).await
            })
            .catch_unwind()
            .await
            .unwrap_or_else(|p| Err(WeirError::Internal(panic_message(p.as_ref()))));
            if let Err(e) = step {
                self.fail(e);
            } else if let Err(e) = self.timed_flush().await {
                // The rows stay with the writer: the next flush tries them again.
                let stats = &self.sink.stats;
                stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(target: "weir::sink", "sink {}: flushing failed, retrying: {e}", self.sink.name);
                *stats.retrying.locked() = Some(e.to_string());
            }
        }
    }

    /// The sink failed with `e`: it restarts from its last checkpointed position after
    /// a back-off, up to `MAX_RESTARTS` times (the `FLUSH`es meanwhile wait for it), then
    /// stays failed until `ALTER SINK … RESTART`.
    fn fail(&mut self, e: WeirError) {
        let message = e.to_string();
        warn!(target: "weir::sink", "sink {} failed: {message}", self.sink.name);
        if self.started.elapsed() >= RESTART_RESET_AFTER {
            self.restarts = 0;
            self.backoff.reset();
        }
        if self.restarts < MAX_RESTARTS {
            let delay = self.backoff.delay();
            self.restart_at = Some(Instant::now() + delay);
            *self.sink.stats.failed.locked() = Some(format!(
                "{message} (restarting from its last checkpoint in {delay:.1?}, restart {} of {MAX_RESTARTS})",
                self.restarts + 1
            ));
            return;
        }
        self.restart_at = None;
        *self.sink.stats.failed.locked() = Some(format!(
            "{message} (gave up after {MAX_RESTARTS} restarts; ALTER SINK {} RESTART tries again)",
            self.sink.name
        ));
        for (_, reply) in self.deferred.drain(..) {
            let _ = reply.send(Err(e_stopped(&self.sink.name, &self.sink.stats)));
        }
    }

    /// Carry out a command; `false` once the runner is to stop.
    async fn command(&mut self, command: SinkCommand) -> bool {
        match command {
            SinkCommand::Flush(reply) => self.flush(reply).await,
            // A failed sink's position may be past rows it did not write: the checkpoint
            // keeps its last one.
            SinkCommand::Prepare(reply) if self.is_failed() => {
                let _ = reply.send(Err(e_stopped(&self.sink.name, &self.sink.stats)));
            }
            SinkCommand::Prepare(reply) => {
                let prepared = self.prepare().await;
                if let Ok(meta) = &prepared {
                    self.last_good = Some(meta.clone());
                }
                let _ = reply.send(prepared);
            }
            SinkCommand::Commit(staged, done) => self.commit_checkpointed(&staged, done).await,
            SinkCommand::Restart(reply) => {
                if self.is_failed() {
                    self.restarts = 0;
                    self.backoff.reset();
                    let restarted = self.restart().await;
                    if let Err(e) = &restarted {
                        self.fail(WeirError::Stopped(format!("restarting failed: {e}")));
                    }
                    let _ = reply
                        .send(restarted.map_err(|_| e_stopped(&self.sink.name, &self.sink.stats)));
                } else {
                    let _ = reply.send(Ok(()));
                }
            }
            SinkCommand::Stop => {
                info!(target: "weir::sink", "sink {} stopped", self.sink.name);
                return false;
            }
        }
        true
    }

    /// One read of the input, written out.
    async fn step(&mut self, commands: &mut mpsc::UnboundedReceiver<SinkCommand>) -> Result<()> {
        for batch in self.read().await? {
            self.write(batch, commands).await?;
        }
        Ok(())
    }

    /// What the input has now (waiting up to about 100 ms).
    async fn read(&mut self) -> Result<Vec<RecordBatch>> {
        match &mut self.input {
            Reading::Reader { reader, skip } => match reader.poll().await? {
                Poll::Records(batches) => Ok(batches
                    .into_iter()
                    .filter_map(|b| {
                        let batch = b.batch;
                        let cut = (*skip).min(batch.num_rows() as u64) as usize;
                        *skip -= cut as u64;
                        (cut < batch.num_rows()).then(|| batch.slice(cut, batch.num_rows() - cut))
                    })
                    .collect()),
                Poll::Idle => Ok(Vec::new()),
                Poll::End => {
                    self.ended = true;
                    Ok(Vec::new())
                }
            },
            Reading::Changes(stream) => {
                match tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
                    Err(_) => Ok(Vec::new()),
                    Ok(next) => self.change(next),
                }
            }
        }
    }

    /// One item of a change stream.
    fn change(&mut self, next: Option<Result<RecordBatch>>) -> Result<Vec<RecordBatch>> {
        match next {
            Some(Ok(batch)) => Ok(vec![batch]),
            None => {
                self.ended = true;
                Ok(Vec::new())
            }
            Some(Err(e)) => {
                // Behind the view: its rows now again (upserts make that harmless).
                let Upstream::View(view) = &self.sink.from else {
                    return Err(e);
                };
                if view.failure().is_some() || !matches!(e, WeirError::Lagged { .. }) {
                    return Err(e);
                }
                warn!(target: "weir::sink", "sink {}: {e}; reading the view's rows again", self.sink.name);
                self.input = Reading::Changes(changes(view)?);
                Ok(Vec::new())
            }
        }
    }

    /// Hand `batch` to the writer, retrying with back-off while it fails; commands that
    /// come meanwhile are answered (a `FLUSH` waits up to `FLUSH_OUTAGE_WAIT`).
    async fn write(
        &mut self,
        batch: RecordBatch,
        commands: &mut mpsc::UnboundedReceiver<SinkCommand>,
    ) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = batch.num_rows() as u64;
        let mut backoff = Backoff::between(FIRST_BACKOFF, MAX_BACKOFF);
        let mut logged: Option<Instant> = None;
        loop {
            match self.writer.write(batch.clone()).await {
                Ok(()) => {
                    self.sink
                        .stats
                        .rows_written
                        .fetch_add(rows, Ordering::Relaxed);
                    if logged.is_some() {
                        info!(target: "weir::sink", "sink {} writes again", self.sink.name);
                    }
                    *self.sink.stats.retrying.locked() = None;
                    return Ok(());
                }
                Err(e) => {
                    let stats = &self.sink.stats;
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    let message = e.to_string();
                    if logged.is_none_or(|l| l.elapsed() >= MAX_BACKOFF) {
                        warn!(target: "weir::sink", "sink {}: writing failed, retrying: {message}", self.sink.name);
                        logged = Some(Instant::now());
                    }
                    *stats.retrying.locked() = Some(message.clone());
                    tokio::time::sleep(backoff.delay()).await;
                    while let Ok(command) = commands.try_recv() {
                        let why = || {
                            format!("sink \"{}\" is retrying a write: {message}", self.sink.name)
                        };
                        match meanwhile(command, &mut self.deferred, why) {
                            Meanwhile::Stop => {
                                return Err(WeirError::Stopped("stopped while retrying".into()));
                            }
                            Meanwhile::Commit(staged, done) => {
                                self.commit_checkpointed(&staged, done).await;
                            }
                            Meanwhile::Done => {}
                        }
                    }
                    give_up_late(&mut self.deferred, &self.sink.name, &message);
                }
            }
        }
    }

    /// `FLUSH`: read the input up to what it holds now, write it, and flush the writer
    /// (and, without checkpoints, make staged files visible).
    async fn flush(&mut self, reply: oneshot::Sender<Result<()>>) {
        if self.is_failed() {
            // A restart is due: the FLUSH waits for it.
            if self.restart_at.is_some() {
                self.deferred.push((Instant::now(), reply));
                return;
            }
            let _ = reply.send(Err(e_stopped(&self.sink.name, &self.sink.stats)));
            return;
        }
        let outcome = self.catch_up().await;
        let outcome = match outcome {
            Ok(()) => self.writer.flush().await.and(self.auto_commit(true).await),
            Err(e) => Err(e),
        };
        let _ = reply.send(outcome);
    }

    /// Read and write until the input's positions reach what it held when this began.
    async fn catch_up(&mut self) -> Result<()> {
        let (_, mut commands) = mpsc::unbounded_channel();
        match &mut self.input {
            Reading::Reader { reader, .. } => {
                let target: Positions = reader.end_positions().await?;
                let started = Instant::now();
                loop {
                    let Reading::Reader { reader, .. } = &self.input else {
                        unreachable!()
                    };
                    if self.ended || reached(reader.positions(), &target) {
                        return Ok(());
                    }
                    if let Some(outage) = reader.outage()
                        && started.elapsed() >= FLUSH_OUTAGE_WAIT
                    {
                        return Err(WeirError::Stopped(format!(
                            "FLUSH gave up on sink \"{}\" after {} s: {}",
                            self.sink.name,
                            FLUSH_OUTAGE_WAIT.as_secs(),
                            outage.describe()
                        )));
                    }
                    self.step(&mut commands).await?;
                }
            }
            Reading::Changes(stream) => {
                let mut ready = Vec::new();
                while let Some(next) = stream.next().now_or_never() {
                    let done = next.is_none();
                    ready.push(next);
                    if done {
                        break;
                    }
                }
                for next in ready {
                    for batch in self.change(next)? {
                        self.write(batch, &mut commands).await?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Every `FLUSH_EVERY`, flush a writer whose rows are visible once flushed, so that
    /// the destination follows the view within about a second.
    async fn timed_flush(&mut self) -> Result<()> {
        if self.sink.connector.two_phase() || self.flushed.elapsed() < FLUSH_EVERY {
            return Ok(());
        }
        self.flushed = Instant::now();
        self.writer.flush().await?;
        let stats = &self.sink.stats;
        stats.last_commit.store(now_micros(), Ordering::Relaxed);
        *stats.retrying.locked() = None;
        Ok(())
    }

    /// Without checkpoints, finish and publish staged files now (`now`) or every
    /// `COMMIT_EVERY`.
    async fn auto_commit(&mut self, now: bool) -> Result<()> {
        if self.checkpointing
            || !self.sink.connector.two_phase()
            || (!now && self.committed.elapsed() < COMMIT_EVERY)
        {
            return Ok(());
        }
        self.committed = Instant::now();
        let staged = self.writer.prepare().await?;
        self.uncommitted.extend(staged);
        let all = self.uncommitted.clone();
        self.commit(&all).await
    }

    /// Make `staged` visible (idempotent: a file committed before counts as committed).
    async fn commit(&mut self, staged: &[Staged]) -> Result<()> {
        self.writer.commit(staged).await?;
        self.uncommitted.retain(|s| !staged.contains(s));
        let stats = &self.sink.stats;
        if !staged.is_empty() || !self.sink.connector.two_phase() {
            stats
                .commits
                .fetch_add(staged.len() as u64, Ordering::Relaxed);
            stats.last_commit.store(now_micros(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// A checkpoint's second phase: commit what it recorded, then say so.
    async fn commit_checkpointed(&mut self, staged: &[Staged], done: oneshot::Sender<()>) {
        if let Err(e) = self.commit(staged).await {
            warn!(
                target: "weir::sink",
                "sink {}: committing {} files failed (retried at the next checkpoint or \
                 restart): {e}",
                self.sink.name,
                staged.len()
            );
        }
        let _ = done.send(());
    }

    /// A checkpoint's first phase.
    async fn prepare(&mut self) -> Result<SinkMeta> {
        let staged = self.writer.prepare().await?;
        self.uncommitted.extend(staged);
        let staged = self.uncommitted.clone();
        if !self.sink.connector.two_phase() {
            self.sink
                .stats
                .last_commit
                .store(now_micros(), Ordering::Relaxed);
        }
        let stats = &self.sink.stats;
        Ok(SinkMeta {
            name: self.sink.name.clone(),
            definition: self.sink.definition.clone(),
            input: self.sink.from.definition().to_string(),
            positions: match &self.input {
                Reading::Reader { reader, .. } => reader.positions().clone(),
                Reading::Changes(_) => Positions::new(),
            },
            staged,
            rows_written: stats.rows_written.load(Ordering::Relaxed),
            commits: stats.commits.load(Ordering::Relaxed),
        })
    }
}

fn e_stopped(name: &str, stats: &super::SinkStats) -> WeirError {
    let why = stats
        .failed
        .locked()
        .clone()
        .unwrap_or_else(|| "stopped".into());
    WeirError::Stopped(format!("sink \"{name}\" failed: {why}"))
}

#[cfg(test)]
mod tests;
