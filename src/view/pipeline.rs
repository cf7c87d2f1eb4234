//! A view's pipeline: one thread per materialized view reads its source, tracks the
//! watermark, assigns windows, drops late rows, folds rows into the aggregation and
//! closes windows; it answers `FLUSH` once its reader has reached the flush's target, and
//! gives up on a `FLUSH` after `FLUSH_OUTAGE_WAIT` of its source being unreachable. A
//! pipeline that fails (an error or a panic) is restarted from the view's last
//! checkpointed state with back-off, a bounded number of times ([`Supervisor`]).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch, max};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::checkpoint::{Checkpoints, Counters, MarkState, Restored, ViewMeta, ViewSnapshot};
use crate::connector::joined::{JoinedReader, of_side, side_of, split};
use crate::connector::retry::Backoff;
use crate::connector::{Poll, Positions, SourceReader, reached};
use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;
use crate::view::join::JoinState;
use crate::view::plan::{Input, JoinBy, JoinSpec, Operator, Side, ViewPlan};
use crate::view::source::SourceDef;
use crate::view::state::{View, ViewState};
use crate::window::assign::{assign, nanos_per};
use crate::window::watermark::Watermarks;

/// How long a `FLUSH` waits for a source that cannot be reached (while its reader retries)
/// before it fails naming the source's error.
pub const FLUSH_OUTAGE_WAIT: Duration = Duration::from_secs(15);

/// What the catalog asks of a running pipeline.
pub enum ViewCommand {
    /// Answer once everything in the source now is reflected in the view.
    Flush(oneshot::Sender<Result<()>>),
    /// Hand over the view's state and reader positions, between two polls.
    Checkpoint(oneshot::Sender<Result<ViewSnapshot>>),
    /// `ALTER MATERIALIZED VIEW … RESTART`: a failed view starts again from its last
    /// checkpointed state (nothing to do for a running one).
    Restart(oneshot::Sender<Result<()>>),
    Stop,
}

/// How a pipeline begins (once per pipeline: its size does not matter).
#[allow(clippy::large_enum_variant)]
pub enum ViewStart {
    /// From the sources' startup mode, with an empty state.
    Fresh,
    /// From a checkpoint: its state, offsets and watermarks.
    Restore(Arc<Restored>, ViewMeta),
    /// An empty state, reading from these positions (a changed view rebuilt from where
    /// its earlier definition began).
    Rebuild(Positions),
    /// A failed view restarted from its last checkpointed state, read into memory.
    Snapshot(ViewSnapshot),
}

/// Run the pipeline of `view`: open its reader, report on `ready_tx` (the catalog runs
/// this on the view's own thread and returns from `CREATE MATERIALIZED VIEW` once it has
/// reported), then process until told to stop, restarting it when it fails.
/// `checkpoints`: where the view's last checkpointed state is (a view that checkpoints
/// keep, on a server with a data directory).
pub async fn run(
    view: Arc<View>,
    commands: mpsc::UnboundedReceiver<ViewCommand>,
    begin: ViewStart,
    ready_tx: oneshot::Sender<Result<()>>,
    checkpoints: Option<Arc<Checkpoints>>,
) {
    match Pipeline::open(Arc::clone(&view), begin).await {
        Ok(pipeline) => {
            let _ = ready_tx.send(Ok(()));
            Supervisor::new(view, checkpoints)
                .run(pipeline, commands)
                .await;
        }
        Err(e) => {
            let _ = ready_tx.send(Err(e));
        }
    }
}

/// How many times a failed view is restarted before it stays failed (until `ALTER
/// MATERIALIZED VIEW … RESTART` or a restart of the server).
pub const MAX_RESTARTS: u32 = 5;
/// The first and longest wait before restarting a failed view or sink.
pub const RESTART_FIRST_DELAY: Duration = Duration::from_millis(100);
pub const RESTART_MAX_DELAY: Duration = Duration::from_secs(30);
/// A pipeline that ran this long before failing starts its count of restarts afresh.
pub const RESTART_RESET_AFTER: Duration = Duration::from_secs(60);

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    format!("panicked: {text}")
}

/// How a pipeline's run ended.
enum Exit {
    /// Told to stop (or the view was dropped).
    Stop,
    /// It failed with this error.
    Failed(String),
}

/// Watches over a view's pipeline on its thread: a pipeline that fails (an error, or a
/// panic caught here) marks the view failed with the reason; while failed, the view
/// answers checkpoints with its last checkpointed state (so that none loses it), and is
/// restarted from that state after a back-off, up to [`MAX_RESTARTS`] times; a `FLUSH`
/// meanwhile waits for the restart, and fails naming the view once it gives up.
struct Supervisor {
    view: Arc<View>,
    checkpoints: Option<Arc<Checkpoints>>,
    backoff: Backoff,
    /// Restarts since the view last ran for `RESTART_RESET_AFTER`.
    attempts: u32,
}

impl Supervisor {
    fn new(view: Arc<View>, checkpoints: Option<Arc<Checkpoints>>) -> Self {
        Supervisor {
            view,
            checkpoints,
            backoff: Backoff::between(RESTART_FIRST_DELAY, RESTART_MAX_DELAY),
            attempts: 0,
        }
    }

    async fn run(
        mut self,
        mut pipeline: Pipeline,
        mut commands: mpsc::UnboundedReceiver<ViewCommand>,
    ) {
        loop {
            let started = Instant::now();
            let exit = AssertUnwindSafe(pipeline.run(&mut commands))
                .catch_unwind()
                .await;
            let message = match exit {
                Ok(Exit::Stop) => return,
                Ok(Exit::Failed(message)) => message,
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    warn!(target: "weir::view", "materialized view {} failed: {message}", self.view.name);
                    self.view.fail(message.clone());
                    message
                }
            };
            if started.elapsed() >= RESTART_RESET_AFTER {
                self.attempts = 0;
                self.backoff.reset();
            }
            // The FLUSHes it was answering wait for the restart.
            let waiting: Vec<_> = pipeline.pending.drain(..).map(|w| w.reply).collect();
            // The reader goes: a view reading another lets go of it.
            drop(pipeline);
            match self.failed(message, waiting, &mut commands).await {
                Some(next) => pipeline = next,
                None => return,
            }
        }
    }

    /// The view's last checkpointed state, if a checkpoint holds the view as it is now.
    fn kept(&self) -> Result<Option<ViewSnapshot>> {
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(None);
        };
        let view = &self.view;
        Ok(checkpoints.view_snapshot(&view.name)?.filter(|s| {
            s.meta.definition == view.definition && s.meta.sources == view.source_definitions()
        }))
    }

    /// While the view is failed: answer commands, restart it when due; the restarted
    /// pipeline, or `None` once told to stop.
    async fn failed(
        &mut self,
        mut message: String,
        mut waiting: Vec<oneshot::Sender<Result<()>>>,
        commands: &mut mpsc::UnboundedReceiver<ViewCommand>,
    ) -> Option<Pipeline> {
        let name = self.view.name.clone();
        let mut kept = self.kept();
        let mut due = self.schedule(&message, &mut waiting);
        loop {
            let restart = match due {
                Some(at) => {
                    tokio::select! {
                        command = commands.recv() => Some(command),
                        _ = tokio::time::sleep_until(at.into()) => None,
                    }
                }
                None => Some(commands.recv().await),
            };
            let reply = match restart {
                None => None,
                Some(None) | Some(Some(ViewCommand::Stop)) => return None,
                Some(Some(ViewCommand::Flush(reply))) => {
                    if due.is_some() {
                        waiting.push(reply);
                    } else {
                        let _ = reply.send(Err(self.failure_error()));
                    }
                    continue;
                }
                Some(Some(ViewCommand::Checkpoint(reply))) => {
                    // Nothing checkpointed yet: the view is left out (nothing to lose).
                    match &kept {
                        Ok(Some(snapshot)) => {
                            let _ = reply.send(Ok(snapshot.clone()));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = reply.send(Err(WeirError::Internal(format!(
                                "the last checkpointed state of failed materialized view \"{name}\" \
                                 cannot be read: {e}"
                            ))));
                        }
                    }
                    continue;
                }
                Some(Some(ViewCommand::Restart(reply))) => {
                    self.attempts = 0;
                    self.backoff.reset();
                    Some(reply)
                }
            };
            // Restart now.
            if kept.is_err() {
                kept = self.kept();
            }
            let begin = match &kept {
                Ok(Some(snapshot)) => Ok(ViewStart::Snapshot(snapshot.clone())),
                Ok(None) => Ok(ViewStart::Fresh),
                Err(e) => Err(WeirError::Internal(format!(
                    "its last checkpointed state cannot be read: {e}"
                ))),
            };
            self.attempts += 1;
            let opened = match begin {
                Ok(begin) => {
                    self.view.restarting();
                    AssertUnwindSafe(Pipeline::open(Arc::clone(&self.view), begin))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|p| Err(WeirError::Internal(panic_message(p.as_ref()))))
                }
                Err(e) => Err(e),
            };
            match opened {
                Ok(mut pipeline) => {
                    info!(
                        target: "weir::view",
                        "materialized view {name} restarted from {} (restart {} of {MAX_RESTARTS})",
                        match &kept {
                            Ok(Some(s)) => format!("its checkpointed state at {:?}", s.meta.positions),
                            _ => "its sources' start (no checkpoint holds it)".into(),
                        },
                        self.attempts
                    );
                    self.view.recovered();
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                    for reply in waiting {
                        pipeline.flush(reply).await;
                    }
                    return Some(pipeline);
                }
                Err(e) => {
                    message = format!("restarting failed: {e}");
                    warn!(target: "weir::view", "materialized view {name}: {message}");
                    due = self.schedule(&message, &mut waiting);
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(self.failure_error()));
                    }
                }
            }
        }
    }

    /// After a failure with `message`: when to restart (`None`: restarts are used up, the
    /// waiting `FLUSH`es fail); the view's failure says which.
    fn schedule(
        &mut self,
        message: &str,
        waiting: &mut Vec<oneshot::Sender<Result<()>>>,
    ) -> Option<Instant> {
        let name = &self.view.name;
        if self.attempts < MAX_RESTARTS {
            let delay = self.backoff.delay();
            self.view.fail(format!(
                "{message} (restarting from its last checkpoint in {delay:.1?}, restart {} of {MAX_RESTARTS})",
                self.attempts + 1
            ));
            return Some(Instant::now() + delay);
        }
        self.view.fail(format!(
            "{message} (gave up after {MAX_RESTARTS} restarts; ALTER MATERIALIZED VIEW {name} \
             RESTART tries again)"
        ));
        warn!(
            target: "weir::view",
            "materialized view {name} stays failed after {MAX_RESTARTS} restarts: {message}"
        );
        for reply in waiting.drain(..) {
            let _ = reply.send(Err(self.failure_error()));
        }
        None
    }

    fn failure_error(&self) -> WeirError {
        WeirError::Stopped(format!(
            "materialized view \"{}\" failed: {}",
            self.view.name,
            self.view.failure().unwrap_or_default()
        ))
    }
}

/// The view's reader: its source's, or both sources of a join read as one; at `resume`
/// when given (joins: the right source's partitions from `RIGHT`).
async fn open_reader(view: &View, resume: Option<&Positions>) -> Result<Box<dyn SourceReader>> {
    let mut readers = Vec::new();
    for (i, side) in view.plan.sides().into_iter().enumerate() {
        let own = resume.map(|r| split(r, i));
        readers.push(side.source.open(&side.columns, own.as_ref()).await?);
    }
    let left = readers.remove(0);
    Ok(match readers.pop() {
        Some(right) => Box::new(JoinedReader::new(left, right)),
        None => left,
    })
}

/// The time column's unit, for watermark arithmetic.
pub fn time_unit(view: &View) -> TimeUnit {
    plan_time_unit(&view.plan)
}

/// The time column's unit of a compiled view.
pub fn plan_time_unit(plan: &ViewPlan) -> TimeUnit {
    let source = &plan.stream.source;
    let column = match (&plan.stream.input, source.event_time) {
        (Input::Windowed { time, .. }, _) => Some(*time),
        (Input::Plain, Some(e)) => Some(e.column),
        (Input::Plain, None) => None,
    };
    match column.map(|c| source.schema.field(c).data_type()) {
        Some(DataType::Timestamp(unit, _)) => *unit,
        _ => TimeUnit::Microsecond,
    }
}

/// The stage timers' clock: the time since the last split, read only when the
/// `stage-timers` feature is on (`weir bench` reports them then); free otherwise.
#[derive(Clone, Copy)]
struct Lap {
    #[cfg(feature = "stage-timers")]
    at: Instant,
}

impl Lap {
    fn start() -> Lap {
        Lap {
            #[cfg(feature = "stage-timers")]
            at: Instant::now(),
        }
    }

    /// The time since the start or the last split, restarting from now.
    fn split(&mut self) -> Duration {
        #[cfg(feature = "stage-timers")]
        {
            let now = Instant::now();
            let d = now - self.at;
            self.at = now;
            d
        }
        #[cfg(not(feature = "stage-timers"))]
        Duration::ZERO
    }

    fn elapsed(mut self) -> Duration {
        self.split()
    }
}

/// Wall time spent in each part of the path, summed over the polls (with the
/// `stage-timers` feature; zero without).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stages {
    /// `SourceReader::poll` (fetching and decoding).
    pub poll: Duration,
    /// Event-time maximum, window assignment and late-row filter.
    pub window: Duration,
    /// The row-wise steps before the aggregation.
    pub pre: Duration,
    /// `WindowedAggregate::update`.
    pub aggregate: Duration,
    /// Watermarks and closing windows (their final rows).
    pub close: Duration,
}

impl Stages {
    pub fn describe(&self) -> String {
        if !cfg!(feature = "stage-timers") {
            return "not timed (build with --features stage-timers)".into();
        }
        let total = (self.poll + self.window + self.pre + self.aggregate + self.close)
            .as_secs_f64()
            .max(1e-9);
        [
            ("poll+decode", self.poll),
            ("window", self.window),
            ("pre", self.pre),
            ("aggregate", self.aggregate),
            ("close", self.close),
        ]
        .iter()
        .map(|(name, d)| {
            format!(
                "{name} {:.2} s ({:.0}%)",
                d.as_secs_f64(),
                100.0 * d.as_secs_f64() / total
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// The per-poll work of a view: poll the reader, track watermarks, assign windows, drop
/// late rows, fold rows into the aggregation and close windows. The pipeline thread runs
/// it between commands; a benchmark drives it on its own thread.
pub struct Processor {
    pub view: Arc<View>,
    /// The watermarks of each stream the view reads (two for a join of streams).
    marks: Vec<Watermarks>,
    unit: TimeUnit,
    /// Close windows and drop late rows (the view groups by a window).
    windowed: bool,
    ended: bool,
    /// The watermark before the source ended (retention counts from it).
    last_watermark: i64,
    /// Records a checkpoint counted as undecodable before this reader began.
    errors_before: u64,
    /// When subscribers were last told how the open windows changed.
    published: Instant,
    pub stages: Stages,
}

/// How often subscribers hear of changes to open windows (default emit mode) while
/// events arrive; `FLUSH` and closing windows tell them at once.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

impl Processor {
    pub fn new(view: Arc<View>, partitions: &[i32]) -> Self {
        let unit = time_unit(&view);
        let marks = view
            .plan
            .sides()
            .iter()
            .enumerate()
            .map(|(i, side)| {
                let s = &side.source;
                let delay = s.event_time.map_or(0, |e| e.delay / nanos_per(unit));
                let mut marks = Watermarks::new(delay, s.idle_timeout);
                marks.know(&of_side(partitions.iter().copied(), i), Instant::now());
                marks
            })
            .collect();
        let windowed = view.plan.operator.window().is_some();
        Processor {
            view,
            marks,
            unit,
            windowed,
            ended: false,
            last_watermark: i64::MIN,
            errors_before: 0,
            published: Instant::now(),
            stages: Stages::default(),
        }
    }

    /// Watermarks and counters as a checkpoint keeps them.
    fn export(&self) -> (Vec<MarkState>, i64, Counters) {
        let marks = self
            .marks
            .iter()
            .map(|m| {
                let (current, partitions) = m.export();
                MarkState {
                    current,
                    partitions,
                }
            })
            .collect();
        (marks, self.last_watermark, self.view.counters())
    }

    /// Bring back what [`Processor::export`] gave.
    fn import(&mut self, marks: &[MarkState], last_watermark: i64, counters: &Counters) {
        let now = Instant::now();
        for (m, s) in self.marks.iter_mut().zip(marks) {
            m.import(s.current, &s.partitions, now);
        }
        self.last_watermark = last_watermark;
        self.view.restore_counters(counters);
        let watermark = marks.iter().map(|m| m.current).min().unwrap_or(i64::MIN);
        self.view
            .stats
            .watermark
            .store(watermark, Ordering::Relaxed);
        self.errors_before = counters.decode_errors;
    }

    /// The source has ended (a bounded source read to its end).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Each stream's watermark now, in the time column's unit.
    fn side_watermarks(&mut self, now: Instant) -> Vec<i64> {
        let sides = self.view.plan.sides();
        self.marks
            .iter_mut()
            .zip(sides)
            .map(|(marks, side)| {
                if side.source.event_time.is_some() || self.ended {
                    marks.advance(now)
                } else {
                    wall_clock(self.unit)
                }
            })
            .collect()
    }

    /// The view's watermark now: the smallest of its streams'.
    fn watermark(&mut self, now: Instant) -> i64 {
        self.side_watermarks(now)
            .into_iter()
            .min()
            .unwrap_or(i64::MIN)
    }

    /// Poll `reader` once and fold what it returned in; `false` once the source has ended
    /// (every window is then closed).
    pub async fn step(&mut self, reader: &mut dyn SourceReader) -> Result<bool> {
        let mut lap = Lap::start();
        let polled = reader.poll().await?;
        self.stages.poll += lap.split();
        let now = Instant::now();
        let view = Arc::clone(&self.view);
        *view.stats.outage.locked() = reader.outage();
        let errors = self.errors_before + reader.decode_errors();
        if view.stats.decode_errors.swap(errors, Ordering::Relaxed) != errors {
            *view.stats.decode_samples.locked() = reader.decode_samples();
        }
        let mut read = Vec::new();
        match polled {
            Poll::Records(batches) => {
                read.extend(batches.iter().map(|b| (b.partition, b.batch.num_rows())));
                let watermark = self.watermark(now);
                view.with_state(|state| -> Result<()> {
                    for part in batches {
                        self.ingest(state, part.partition, part.batch, watermark, now)?;
                    }
                    Ok(())
                })?;
                view.stats
                    .last_update
                    .store(wall_clock(TimeUnit::Microsecond), Ordering::Relaxed);
            }
            Poll::Idle => {}
            Poll::End => {
                self.marks.iter_mut().for_each(Watermarks::finish);
                self.ended = true;
            }
        }
        view.stats.progress(reader.positions(), &read, now);
        let lap = Lap::start();
        let partitions = reader.partitions();
        for (i, marks) in self.marks.iter_mut().enumerate() {
            marks.know(&of_side(partitions.iter().copied(), i), now);
        }
        let marks = self.side_watermarks(now);
        let watermark = marks.iter().copied().min().unwrap_or(i64::MIN);
        view.stats.watermark.store(watermark, Ordering::Relaxed);
        if !self.ended {
            self.last_watermark = watermark;
        }
        view.with_state(|state| -> Result<()> {
            if let Some(join) = state.operator.as_any_mut().downcast_mut::<JoinState>() {
                join.evict([marks[0], marks[1]]);
            }
            view.close(state, watermark)?;
            view.expire(state, self.last_watermark)?;
            if self.ended || now.duration_since(self.published) >= PUBLISH_EVERY {
                view.publish_open(state)?;
                self.published = now;
            }
            if self.ended {
                view.end(state);
            }
            Ok(())
        })?;
        self.stages.close += lap.elapsed();
        Ok(!self.ended)
    }

    /// Fold one batch of partition `partition` in; rows of windows that ended at or
    /// before `watermark` are late (`i64::MIN`: none is).
    pub fn ingest(
        &mut self,
        state: &mut ViewState,
        partition: i32,
        batch: RecordBatch,
        watermark: i64,
        now: Instant,
    ) -> Result<()> {
        let view = &self.view;
        view.stats
            .rows_in
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        state.version += 1;
        if let Operator::Join(spec) = &view.plan.operator {
            let spec = Arc::clone(spec);
            return self.ingest_join(state, &spec, partition, batch, now);
        }
        let mut lap = Lap::start();
        let max_time = max_event_time(&view.plan.stream.source, &batch)?;
        let batch = windowed_input(view, batch, self.windowed, watermark)?;
        self.stages.window += lap.split();
        let pre = &view.plan.stream.pre;
        if state.operator.appends() {
            let n = batch.num_rows();
            let mut times: ArrayRef = match view.plan.stream.source.event_time {
                Some(e) => cast(batch.column(e.column), &DataType::Int64)?,
                None => Arc::new(Int64Array::from_value(wall_clock(self.unit), n)),
            };
            let rows = if pre.query.is_none() {
                pre.chain.apply_carrying(batch, Some(&mut times))?
            } else {
                let rows = pre.apply(batch)?;
                let t = max_time.unwrap_or_else(|| wall_clock(self.unit));
                times = Arc::new(Int64Array::from_value(t, rows.num_rows()));
                rows
            };
            self.stages.pre += lap.split();
            let rows = view.finish(rows)?;
            let times = times
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("Int64")
                .clone();
            view.append(state, rows, times)?;
            self.stages.aggregate += lap.split();
        } else {
            let batch = pre.apply(batch)?;
            self.stages.pre += lap.split();
            state.operator.process_batch(&batch)?;
            self.stages.aggregate += lap.split();
        }
        self.marks[0].observe(partition, max_time, now);
        Ok(())
    }

    /// A join of two streams: the new rows of one side joined with the rows the other
    /// side keeps, appended; then kept on their side. With a time bound, rows behind
    /// their side's watermark are late (their partners may be gone) and dropped.
    fn ingest_join(
        &mut self,
        state: &mut ViewState,
        spec: &JoinSpec,
        partition: i32,
        batch: RecordBatch,
        now: Instant,
    ) -> Result<()> {
        let view = Arc::clone(&self.view);
        let (side, _) = side_of(partition);
        let Side { source, pre, .. } = view.plan.sides()[side];
        let mut lap = Lap::start();
        let max_time = max_event_time(source, &batch)?;
        let marks = &mut self.marks[side];
        let mut times: ArrayRef = match source.event_time {
            Some(e) => cast(batch.column(e.column), &DataType::Int64)?,
            None => Arc::new(Int64Array::from_value(
                wall_clock(self.unit),
                batch.num_rows(),
            )),
        };
        let mut batch = batch;
        let watermark = marks.advance(now);
        if spec.bound.is_some() && source.event_time.is_some() && watermark != i64::MIN {
            let t = times.as_any().downcast_ref::<Int64Array>().expect("Int64");
            let keep: BooleanArray = t
                .iter()
                .map(|v| Some(v.is_some_and(|v| v >= watermark)))
                .collect();
            let late = batch.num_rows() - keep.true_count();
            if late > 0 {
                view.stats
                    .late_rows
                    .fetch_add(late as u64, Ordering::Relaxed);
                batch = filter_record_batch(&batch, &keep)?;
                times = datafusion::arrow::compute::filter(&times, &keep)?;
            }
        }
        let rows = pre.chain.apply_carrying(batch, Some(&mut times))?;
        self.stages.pre += lap.split();
        let join = state
            .operator
            .as_any_mut()
            .downcast_mut::<JoinState>()
            .ok_or_else(|| WeirError::Internal("a join view keeps join state".into()))?;
        let times = times
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("Int64")
            .clone();
        let other = &join.sides[1 - side];
        let (joined, keys) = match &spec.by {
            JoinBy::Keys(k) => {
                let keys = k.keys(side, &rows)?;
                (k.probe(side, &rows, &keys, other)?, Some(keys))
            }
            JoinBy::Query(query) => {
                let mut inputs = vec![other.batches()];
                inputs.insert(side, vec![rows.clone()]);
                (query.run_with(inputs)?, None)
            }
        };
        join.sides[side].push(rows, &times, keys.as_ref());
        let joined = spec.after.apply(joined)?;
        if join.out.appends() {
            let out = view.finish(joined)?;
            let at = max_time.unwrap_or_else(|| wall_clock(self.unit));
            let out_times = Int64Array::from_value(at, out.num_rows());
            view.append(state, out, out_times)?;
        } else {
            join.out.process_batch(&joined)?;
        }
        self.stages.aggregate += lap.split();
        self.marks[side].observe(partition, max_time, now);
        Ok(())
    }
}

/// A `FLUSH` waiting: for the source's end positions (`target` is `None` while they cannot
/// be looked up), then for the reader to reach them.
struct Waiting {
    since: Instant,
    target: Option<Positions>,
    reply: oneshot::Sender<Result<()>>,
}

/// A running view: its processor and reader, and the `FLUSH`es waiting for positions.
struct Pipeline {
    processor: Processor,
    reader: Box<dyn SourceReader>,
    pending: Vec<Waiting>,
    /// The last failed look-up of the end positions (the reader retries on its own
    /// back-off and answers at once while its source cannot be reached).
    lookup_error: Option<String>,
    /// Where the view began reading (kept across checkpoints).
    origin: Positions,
    rebuild: Option<Rebuild>,
    /// When the rows queries read were last published, and what publishing cost.
    published_at: Instant,
    publish_cost: Duration,
}

/// While queries read the view, its rows are published after a poll once this much of
/// the pipeline's time has passed per unit of the last publication's cost (publishing
/// takes at most a fifth of the pipeline's time, however large the view).
const PUBLISH_COST_RATIO: u32 = 4;
/// While no query reads the view, its rows are published this often at most.
const PUBLISH_IDLE: Duration = Duration::from_secs(1);

/// A view read again from its origin: how far it has to go, for the log.
struct Rebuild {
    /// Records to read again in all.
    total: i64,
    to: Positions,
    started: Instant,
    logged: Instant,
}

/// Records between `from` and `to`.
fn between(from: &Positions, to: &Positions) -> i64 {
    to.iter()
        .map(|(p, end)| (end - from.get(p).copied().unwrap_or(0)).max(0))
        .sum()
}

impl Pipeline {
    /// Open the view's reader and bring back its checkpoint, if it starts from one.
    async fn open(view: Arc<View>, begin: ViewStart) -> Result<Self> {
        let rebuilding = matches!(begin, ViewStart::Rebuild(_));
        let (restore, resume) = match begin {
            ViewStart::Fresh => (None, None),
            ViewStart::Restore(restored, meta) => {
                let sections = restored.sections(&meta)?;
                view.with_state(|s| s.import(sections))?;
                (Some(meta), None)
            }
            ViewStart::Rebuild(origin) => (None, Some(origin)),
            ViewStart::Snapshot(snapshot) => {
                let sections = snapshot.sections.into_iter().collect();
                view.with_state(|s| s.import(sections))?;
                (Some(snapshot.meta), None)
            }
        };
        let resume = restore.as_ref().map(|m| &m.positions).or(resume.as_ref());
        let mut reader = open_reader(&view, resume).await?;
        let mut processor = Processor::new(Arc::clone(&view), &reader.partitions());
        let origin = match &restore {
            Some(meta) => {
                processor.import(&meta.marks, meta.last_watermark, &meta.counters);
                view.stats.progress(reader.positions(), &[], Instant::now());
                meta.origin.clone()
            }
            None => reader.positions().clone(),
        };
        // A restored view's rows are there for queries at once.
        view.publish()?;
        let rebuild = if rebuilding {
            let to = reader.end_positions().await?;
            let now = Instant::now();
            let total = between(&origin, &to);
            info!(
                target: "weir::view",
                "rebuilding materialized view {} from its sources: {total} records to read again",
                view.name,
            );
            Some(Rebuild {
                total: total.max(1),
                to,
                started: now,
                logged: now,
            })
        } else {
            None
        };
        Ok(Pipeline {
            processor,
            reader,
            pending: Vec::new(),
            lookup_error: None,
            origin,
            rebuild,
            published_at: Instant::now(),
            publish_cost: Duration::ZERO,
        })
    }

    /// The view's state and where its reader stands, for a checkpoint.
    fn snapshot(&mut self) -> Result<ViewSnapshot> {
        let view = Arc::clone(&self.processor.view);
        let (sections, rows) = view.with_state(|s| -> Result<_> {
            Ok((s.export()?, (s.operator.groups() + s.closed_rows()) as u64))
        })?;
        let (marks, last_watermark, counters) = self.processor.export();
        Ok(ViewSnapshot {
            meta: ViewMeta {
                name: view.name.clone(),
                definition: view.definition.clone(),
                sources: view.source_definitions(),
                positions: self.reader.positions().clone(),
                origin: self.origin.clone(),
                marks,
                last_watermark,
                counters,
                rows,
                files: Default::default(),
            },
            sections,
        })
    }

    /// Log how far a rebuild is, every few seconds, and when it is done.
    fn rebuild_progress(&mut self) {
        let Some(r) = &mut self.rebuild else {
            return;
        };
        let positions = self.reader.positions();
        let name = &self.processor.view.name;
        let total = r.total;
        let done = || total - between(positions, &r.to);
        if reached(positions, &r.to) || self.processor.ended() {
            info!(
                target: "weir::view",
                "materialized view {name} rebuilt: {} records read again in {:.1?}",
                done(),
                r.started.elapsed()
            );
            self.rebuild = None;
        } else if r.logged.elapsed() >= Duration::from_secs(2) {
            let done = done();
            r.logged = Instant::now();
            info!(
                target: "weir::view",
                "rebuilding materialized view {name}: {done} of {total} records ({:.0}%)",
                100.0 * done as f64 / total as f64
            );
        }
    }

    /// Process until told to stop, or until it fails (the view is then marked failed;
    /// the `FLUSH`es it was answering stay in `pending`).
    async fn run(&mut self, commands: &mut mpsc::UnboundedReceiver<ViewCommand>) -> Exit {
        let view = Arc::clone(&self.processor.view);
        info!(target: "weir::view", "materialized view {} started", view.name);
        loop {
            loop {
                match commands.try_recv() {
                    Ok(command) => {
                        if !self.command(command).await {
                            return Exit::Stop;
                        }
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => return Exit::Stop,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            // Rows wait for a view reading this one: hand them over before reading more
            // (back-pressure), still answering commands meanwhile.
            if view.backlogged() {
                tokio::select! {
                    command = commands.recv() => {
                        let Some(command) = command else {
                            return Exit::Stop;
                        };
                        if !self.command(command).await {
                            return Exit::Stop;
                        }
                    }
                    _ = view.deliver() => {}
                }
                continue;
            }
            if self.processor.ended() {
                let Some(command) = commands.recv().await else {
                    return Exit::Stop;
                };
                if !self.command(command).await {
                    return Exit::Stop;
                }
                continue;
            }
            if let Err(e) = self.step().await {
                let message = e.to_string();
                warn!(target: "weir::view", "materialized view {} failed: {message}", view.name);
                view.fail(message.clone());
                return Exit::Failed(message);
            }
        }
    }

    /// Carry out a command; `false` once the pipeline is to stop.
    async fn command(&mut self, command: ViewCommand) -> bool {
        match command {
            ViewCommand::Flush(reply) => self.flush(reply).await,
            ViewCommand::Checkpoint(reply) => {
                let _ = reply.send(self.snapshot());
            }
            // Running: nothing to restart.
            ViewCommand::Restart(reply) => {
                let _ = reply.send(Ok(()));
            }
            ViewCommand::Stop => return false,
        }
        true
    }

    async fn flush(&mut self, reply: oneshot::Sender<Result<()>>) {
        let view = &self.processor.view;
        if let Some(f) = view.failure() {
            let _ = reply.send(Err(WeirError::Stopped(format!(
                "materialized view \"{}\" failed: {f}",
                view.name
            ))));
            return;
        }
        if self.processor.ended() {
            let _ = reply.send(Ok(()));
            return;
        }
        self.pending.push(Waiting {
            since: Instant::now(),
            target: None,
            reply,
        });
        self.answer().await;
    }

    /// One poll, then publish the rows queries read when due, and answer the `FLUSH`es
    /// whose positions were reached.
    async fn step(&mut self) -> Result<()> {
        self.processor.step(self.reader.as_mut()).await?;
        self.rebuild_progress();
        self.publish_if_due()?;
        self.answer().await;
        Ok(())
    }

    /// Publish the rows queries read: after a poll while queries read the view, as often
    /// as its cost allows; once a second at most while none does; at once when the
    /// source ends.
    fn publish_if_due(&mut self) -> Result<()> {
        let view = &self.processor.view;
        let since = self.published_at.elapsed();
        let due = self.processor.ended()
            || (since >= self.publish_cost * PUBLISH_COST_RATIO
                && (since >= PUBLISH_IDLE || view.take_wanted()));
        if due {
            let t = Instant::now();
            view.publish()?;
            self.publish_cost = t.elapsed();
            self.published_at = Instant::now();
        }
        Ok(())
    }

    /// Looks up the end positions the waiting `FLUSH`es lack (retried with back-off while
    /// the source cannot be reached), answers those whose positions were reached, and
    /// fails those that waited `FLUSH_OUTAGE_WAIT` on a source that cannot be reached.
    async fn answer(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        if self.pending.iter().any(|w| w.target.is_none()) {
            match self.reader.end_positions().await {
                Ok(target) => {
                    self.lookup_error = None;
                    for w in self.pending.iter_mut().filter(|w| w.target.is_none()) {
                        w.target = Some(target.clone());
                    }
                }
                Err(e) if e.is_transient() => {
                    self.lookup_error = Some(e.to_string());
                }
                Err(e) => {
                    let message = e.to_string();
                    for w in std::mem::take(&mut self.pending) {
                        let _ = w.reply.send(Err(WeirError::Stopped(message.clone())));
                    }
                    return;
                }
            }
        }
        let positions = self.reader.positions().clone();
        let ended = self.processor.ended();
        let outage = self.reader.outage();
        let view = Arc::clone(&self.processor.view);
        let reached_by =
            |w: &Waiting| ended || w.target.as_ref().is_some_and(|t| reached(&positions, t));
        // What a FLUSH waited for reaches queries and subscribers before it returns.
        if self.pending.iter().any(reached_by) {
            if let Err(e) = view.with_state(|s| view.publish_open(s)) {
                warn!(target: "weir::view", "materialized view {}: telling subscribers failed: {e}", view.name);
            }
            if let Err(e) = view.publish() {
                warn!(target: "weir::view", "materialized view {}: publishing its rows failed: {e}", view.name);
            }
            self.published_at = Instant::now();
        }
        for w in std::mem::take(&mut self.pending) {
            let done = reached_by(&w);
            if done {
                let _ = w.reply.send(Ok(()));
                continue;
            }
            // How long this FLUSH has waited on a source that cannot be reached.
            let blocked = match (&outage, &w.target) {
                (Some(o), _) => now.saturating_duration_since(o.began.max(w.since)),
                (None, None) => now.saturating_duration_since(w.since),
                (None, Some(_)) => Duration::ZERO,
            };
            if blocked < FLUSH_OUTAGE_WAIT {
                self.pending.push(w);
                continue;
            }
            let cause = match (&outage, &self.lookup_error) {
                (Some(o), _) => o.describe(),
                (None, Some(e)) => e.clone(),
                (None, None) => "its end positions could not be looked up".into(),
            };
            let _ = w.reply.send(Err(WeirError::Stopped(format!(
                "FLUSH gave up on materialized view \"{}\" after {} s: {cause}",
                view.name,
                FLUSH_OUTAGE_WAIT.as_secs()
            ))));
        }
    }
}

/// The wall clock in `unit` since the Unix epoch (the watermark of processing time).
fn wall_clock(unit: TimeUnit) -> i64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    wall / nanos_per(unit)
}

/// The largest event time in `batch`, in the time column's unit (`None` without event time).
fn max_event_time(source: &SourceDef, batch: &RecordBatch) -> Result<Option<i64>> {
    match source.event_time {
        Some(e) => {
            let t = cast(batch.column(e.column), &DataType::Int64)?;
            let t = t.as_any().downcast_ref::<Int64Array>().expect("Int64");
            Ok(max::<Int64Type>(t))
        }
        None => Ok(None),
    }
}

/// The rows of `batch` as the view's aggregation input: assigned to their windows, and,
/// when the view closes windows (`windowed`), without the rows of windows that ended at
/// or before `watermark` (counted as late).
fn windowed_input(
    view: &View,
    batch: RecordBatch,
    windowed: bool,
    watermark: i64,
) -> Result<RecordBatch> {
    let Input::Windowed { time, spec, schema } = &view.plan.stream.input else {
        return Ok(batch);
    };
    let batch = assign(&batch, *time, spec, schema)?;
    if !windowed || watermark == i64::MIN {
        return Ok(batch);
    }
    let ends = cast(batch.column(batch.num_columns() - 1), &DataType::Int64)?;
    let ends = ends.as_any().downcast_ref::<Int64Array>().expect("Int64");
    let keep: BooleanArray = ends
        .iter()
        .map(|e| Some(e.is_some_and(|e| e > watermark)))
        .collect();
    let late = batch.num_rows() - keep.true_count();
    if late == 0 {
        return Ok(batch);
    }
    view.stats
        .late_rows
        .fetch_add(late as u64, Ordering::Relaxed);
    Ok(filter_record_batch(&batch, &keep)?)
}

#[cfg(test)]
pub(crate) mod tests;
