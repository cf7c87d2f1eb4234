//! A materialized view's state and what readers see: the final rows of closed windows,
//! the current rows of open ones (default emit mode), appended rows (views without
//! aggregation), and the counters behind the system tables. Final rows also go to the
//! views that read this one, over bounded channels. `ViewTable` is the view's name in
//! SQL: a query reads the rows the pipeline last published, without taking the state's
//! lock, so readers and the pipeline never wait on each other.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;

use crate::checkpoint::Counters;
use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;
use crate::sql::streaming::Emit;
use crate::view::changes::{ChangeFeed, ChangeStream};
use crate::view::pipeline::ViewCommand;
use crate::view::plan::{Operator, Tag, ViewPlan};
use crate::view::source::{ConnectorSpec, EventTime, SourceDef};
use crate::window::operator::{OperatorState, Sections, tagged, untag};

/// What a view sends the views that read it.
#[derive(Debug, Clone)]
pub enum Emitted {
    /// Final rows: a closed window's, or appended ones.
    Rows(RecordBatch),
    /// The view's source ended; no more rows will come.
    End,
}

/// Batches a view reading this one may have in flight; beyond them the rows wait in
/// the sending view, whose pipeline stops reading its source until they are taken.
pub const DOWNSTREAM_CAPACITY: usize = 16;

/// A reader of this view's final rows: its channel, and what waits for room in it.
struct Downstream {
    tx: DownstreamTx,
    waiting: VecDeque<Emitted>,
}

/// A view reading this one gets a bounded channel (back-pressure); a sink, which may
/// retry its destination for long, an unbounded one (the view is never held back by it).
enum DownstreamTx {
    Bounded(mpsc::Sender<Emitted>),
    Unbounded(mpsc::UnboundedSender<Emitted>),
}

/// The receiving end of [`View::subscribe`].
pub enum Emissions {
    Bounded(mpsc::Receiver<Emitted>),
    Unbounded(mpsc::UnboundedReceiver<Emitted>),
}

impl Emissions {
    /// The next emission; `None` once the view is gone.
    pub async fn recv(&mut self) -> Option<Emitted> {
        match self {
            Emissions::Bounded(rx) => rx.recv().await,
            Emissions::Unbounded(rx) => rx.recv().await,
        }
    }

    /// The next emission if one is there.
    pub fn try_recv(&mut self) -> std::result::Result<Emitted, mpsc::error::TryRecvError> {
        match self {
            Emissions::Bounded(rx) => rx.try_recv(),
            Emissions::Unbounded(rx) => rx.try_recv(),
        }
    }
}

impl Downstream {
    /// Send `e`, or keep it while the channel is full; `false` once the reader is gone.
    fn offer(&mut self, e: Emitted) -> bool {
        if !self.waiting.is_empty() {
            self.waiting.push_back(e);
            return true;
        }
        match &self.tx {
            DownstreamTx::Unbounded(tx) => tx.send(e).is_ok(),
            DownstreamTx::Bounded(tx) => match tx.try_send(e) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(e)) => {
                    self.waiting.push_back(e);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        }
    }

    /// The bounded channel of a view that has rows waiting for room in it.
    fn backlog(&self) -> Option<&mpsc::Sender<Emitted>> {
        match &self.tx {
            DownstreamTx::Bounded(tx) if !self.waiting.is_empty() => Some(tx),
            _ => None,
        }
    }
}

/// The rows queries read: what the pipeline last published, and the state version it
/// reflects.
#[derive(Default)]
pub struct Published {
    pub version: u64,
    pub rows: Vec<RecordBatch>,
}

/// The mutable part, behind the lock of the pipeline (readers of the state's rows take
/// [`Published`] instead).
pub struct ViewState {
    pub operator: Box<dyn OperatorState>,
    /// Final rows of closed windows with their window end, in closing order.
    closed: VecDeque<(i64, RecordBatch)>,
    /// Current rows of open windows, by window end.
    open: BTreeMap<i64, RecordBatch>,
    /// Views reading this one.
    readers: Vec<Downstream>,
    /// Bumped by every change to the rows (what was published tells which it shows).
    pub version: u64,
    /// Clients following the view's changes.
    feed: ChangeFeed,
    ended: bool,
}

pub use crate::checkpoint::Section;
pub use crate::view::stats::{PartitionProgress, ViewStats};
pub use crate::view::table::ViewTable;

impl ViewState {
    /// Rows of closed windows kept for readers.
    pub fn closed_rows(&self) -> usize {
        self.closed.iter().map(|(_, b)| b.num_rows()).sum()
    }

    /// Everything the view keeps, for a checkpoint; nothing changes.
    pub fn export(&mut self) -> Result<Vec<Section>> {
        let closed = self
            .closed
            .iter()
            .map(|(end, rows)| tagged(Int64Array::from_value(*end, rows.num_rows()), rows))
            .collect::<Result<Vec<_>>>()?;
        let mut sections = vec![("closed".to_string(), closed)];
        self.operator.snapshot("", &mut sections)?;
        Ok(sections)
    }

    /// Bring back what [`ViewState::export`] wrote, into the empty state.
    pub fn import(&mut self, mut sections: Sections) -> Result<()> {
        for batch in sections.remove("closed").unwrap_or_default() {
            let (ends, rows) = untag(&batch)?;
            if rows.num_rows() > 0 {
                self.closed.push_back((ends.value(0), rows));
            }
        }
        self.operator.restore("", &mut sections)?;
        self.open.clear();
        self.version += 1;
        Ok(())
    }
}

/// A materialized view: definition, state, and the handle of its pipeline.
pub struct View {
    pub name: String,
    pub definition: String,
    pub emit: Emit,
    pub plan: ViewPlan,
    /// How long rows stay after the watermark passes their time (appended rows) or
    /// their window's end (closed windows), in the time column's unit.
    pub retention: Option<i64>,
    pub stats: ViewStats,
    /// Final rows sent to reading views so far.
    pub emitted: AtomicU64,
    /// Whether it started from the checkpoint read at start.
    pub resumed: std::sync::atomic::AtomicBool,
    state: Mutex<ViewState>,
    /// The rows queries read, as the pipeline last published them.
    published: ArcSwap<Published>,
    /// A query read the published rows since the pipeline last published.
    wanted: AtomicBool,
    failure: Mutex<Option<String>>,
    pub(crate) commands: mpsc::UnboundedSender<ViewCommand>,
}

impl View {
    pub fn new(
        name: String,
        definition: String,
        emit: Emit,
        plan: ViewPlan,
        retention: Option<i64>,
        commands: mpsc::UnboundedSender<ViewCommand>,
    ) -> Self {
        let operator = plan.operator.state();
        let stats = ViewStats::default();
        stats.watermark.store(i64::MIN, Ordering::Relaxed);
        let feed = ChangeFeed::new(plan.schema.clone());
        View {
            name,
            definition,
            emit,
            plan,
            retention,
            stats,
            emitted: AtomicU64::new(0),
            resumed: Default::default(),
            state: Mutex::new(ViewState {
                operator,
                closed: VecDeque::new(),
                open: BTreeMap::new(),
                readers: Vec::new(),
                version: 0,
                feed,
                ended: false,
            }),
            published: ArcSwap::from_pointee(Published::default()),
            wanted: AtomicBool::new(false),
            failure: Mutex::new(None),
            commands,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.plan.schema.clone()
    }

    /// Run `f` on the state under its lock.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut ViewState) -> T) -> T {
        let mut state = self.state.locked();
        f(&mut state)
    }

    /// Rows of the stage before the operator → the view's rows with its schema.
    pub fn finish(&self, rows: RecordBatch) -> Result<RecordBatch> {
        let out = match self.plan.operator {
            Operator::Append => rows,
            _ => self.plan.post.apply(rows)?,
        };
        Ok(RecordBatch::try_new(
            self.plan.schema.clone(),
            out.columns().to_vec(),
        )?)
    }

    /// Send final rows to the views reading this one.
    fn emit_rows(&self, state: &mut ViewState, rows: &RecordBatch) {
        self.emitted
            .fetch_add(rows.num_rows() as u64, Ordering::Relaxed);
        state
            .readers
            .retain_mut(|r| r.offer(Emitted::Rows(rows.clone())));
    }

    /// Append the view's rows (a view without aggregation), with their event times.
    pub fn append(
        &self,
        state: &mut ViewState,
        rows: RecordBatch,
        times: Int64Array,
    ) -> Result<()> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        self.emit_rows(state, &rows);
        state.feed.publish(&[], std::slice::from_ref(&rows))?;
        if let Some(log) = state.operator.appended() {
            log.push(rows, times);
        }
        Ok(())
    }

    /// Close every window that ended at or before `watermark`.
    pub fn close(&self, state: &mut ViewState, watermark: i64) -> Result<()> {
        let closed = state.operator.on_watermark(watermark)?;
        if !closed.is_empty() {
            state.version += 1;
        }
        for (end, rows) in closed {
            let shown = state.open.remove(&end);
            let out = self.finish(rows)?;
            state.feed.publish_diff(shown.as_ref(), Some(&out))?;
            if out.num_rows() > 0 {
                self.emit_rows(state, &out);
                state.closed.push_back((end, out));
            }
            self.stats.windows_closed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Drop what is older than the retention behind `watermark` (the last one of the
    /// events, not the end of a bounded source, which closes every window).
    pub fn expire(&self, state: &mut ViewState, watermark: i64) -> Result<()> {
        if let Some(retention) = self.retention
            && watermark != i64::MIN
        {
            let cutoff = watermark.saturating_sub(retention);
            let mut gone = Vec::new();
            while state.closed.front().is_some_and(|(end, _)| *end <= cutoff) {
                gone.extend(state.closed.pop_front().map(|(_, rows)| rows));
            }
            if let Some(log) = state.operator.appended() {
                gone.extend(log.evict(cutoff)?);
            }
            if !gone.is_empty() {
                state.version += 1;
            }
            state.feed.publish_expired(&gone)?;
        }
        Ok(())
    }

    /// Whether the view's source has ended (a bounded source read to its end).
    pub fn has_ended(&self) -> bool {
        self.with_state(|state| state.ended)
    }

    /// The source has ended: tell the views reading this one.
    pub fn end(&self, state: &mut ViewState) {
        state.ended = true;
        state.version += 1;
        state.readers.retain_mut(|r| r.offer(Emitted::End));
        state.feed.end();
    }

    /// Start reading this view's final rows: those kept so far, then each new one; also
    /// the count of rows emitted before the kept ones (those retention dropped).
    /// `bounded`: a view reading this one, held to [`DOWNSTREAM_CAPACITY`] batches in
    /// flight; else a sink, never holding this view back.
    pub fn subscribe(&self, bounded: bool) -> (Vec<RecordBatch>, u64, Emissions) {
        let (tx, rx) = if bounded {
            let (tx, rx) = mpsc::channel(DOWNSTREAM_CAPACITY);
            (DownstreamTx::Bounded(tx), Emissions::Bounded(rx))
        } else {
            let (tx, rx) = mpsc::unbounded_channel();
            (DownstreamTx::Unbounded(tx), Emissions::Unbounded(rx))
        };
        self.with_state(|state| {
            let kept = match state.operator.appended_rows() {
                Some(rows) => rows,
                None => state.closed.iter().map(|(_, b)| b.clone()).collect(),
            };
            let mut reader = Downstream {
                tx,
                waiting: VecDeque::new(),
            };
            if state.ended {
                reader.offer(Emitted::End);
            } else {
                state.readers.push(reader);
            }
            let kept_rows: u64 = kept.iter().map(|b| b.num_rows() as u64).sum();
            let before = self
                .emitted
                .load(Ordering::Relaxed)
                .saturating_sub(kept_rows);
            (kept, before, rx)
        })
    }

    /// An error once the view stopped on one.
    fn check_running(&self) -> Result<()> {
        match self.failure() {
            Some(f) => Err(WeirError::Stopped(format!(
                "materialized view \"{}\" failed: {f}",
                self.name
            ))),
            None => Ok(()),
        }
    }

    /// The rows a query reads: those the pipeline last published (when read often, as of
    /// its last poll; else as of a second ago at most; `FLUSH` publishes before it
    /// returns). Neither waits for the pipeline nor makes it wait.
    pub fn published_rows(&self) -> Result<Vec<RecordBatch>> {
        self.check_running()?;
        self.wanted.store(true, Ordering::Relaxed);
        Ok(self.published.load().rows.clone())
    }

    /// Whether a query read the published rows since they were last published; clears it.
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }

    /// Publish the rows queries read, if the state changed since they were last
    /// published (computing the open windows' current rows under the state's lock).
    pub fn publish(&self) -> Result<()> {
        let seen = self.published.load().version;
        let fresh = self.with_state(|state| -> Result<Option<Published>> {
            if state.version == seen {
                return Ok(None);
            }
            Ok(Some(Published {
                version: state.version,
                rows: self.current_rows(state)?,
            }))
        })?;
        if let Some(p) = fresh {
            self.published.store(Arc::new(p));
        }
        Ok(())
    }

    /// The rows a query sees now: published at once (a view driven on the caller's
    /// thread, in benchmarks and tests).
    pub fn rows_now(&self) -> Result<Vec<RecordBatch>> {
        self.check_running()?;
        self.publish()?;
        Ok(self.published.load().rows.clone())
    }

    /// Whether rows wait for room in the channel of a view reading this one.
    pub fn backlogged(&self) -> bool {
        self.with_state(|s| s.readers.iter().any(|r| r.backlog().is_some()))
    }

    /// Hand the rows waiting for views reading this one over, as their channels make room
    /// (cancel-safe: nothing is lost when the wait is dropped).
    pub async fn deliver(&self) {
        loop {
            let Some(tx) = self.with_state(|s| s.readers.iter().find_map(|r| r.backlog().cloned()))
            else {
                return;
            };
            let same = |r: &Downstream| r.backlog().is_some_and(|t| t.same_channel(&tx));
            match tx.reserve().await {
                Ok(permit) => self.with_state(|s| {
                    if let Some(e) = s
                        .readers
                        .iter_mut()
                        .find(|r| same(r))
                        .and_then(|r| r.waiting.pop_front())
                    {
                        permit.send(e);
                    }
                }),
                Err(_) => self.with_state(|s| s.readers.retain(|r| !same(r))),
            }
        }
    }

    /// The rows a query sees now, under the state's lock.
    fn current_rows(&self, state: &mut ViewState) -> Result<Vec<RecordBatch>> {
        if let Some(rows) = state.operator.appended_rows() {
            return Ok(rows);
        }
        let mut out: Vec<RecordBatch> = state.closed.iter().map(|(_, b)| b.clone()).collect();
        if self.emit == Emit::OnUpdate {
            self.refresh_open(state)?;
            out.extend(state.open.values().filter(|b| b.num_rows() > 0).cloned());
        }
        Ok(out)
    }

    /// Bring the current rows of the open windows up to date, and tell subscribers
    /// what changed in them (default emit mode).
    fn refresh_open(&self, state: &mut ViewState) -> Result<()> {
        for (end, rows) in state.operator.refresh()? {
            let rows = self.finish(rows)?;
            let shown = state.open.insert(end, rows);
            state
                .feed
                .publish_diff(shown.as_ref(), state.open.get(&end))?;
        }
        Ok(())
    }

    /// Tell subscribers how the open windows changed since they were last told (the
    /// default emit mode; other views change only as rows are appended or windows close).
    pub fn publish_open(&self, state: &mut ViewState) -> Result<()> {
        if self.emit == Emit::OnUpdate && state.feed.active() {
            self.refresh_open(state)?;
        }
        Ok(())
    }

    /// Follow the view's changes: its rows now as inserts (`snapshot`), then every
    /// change as it happens, until the view's source ends. `expired`: rows that pass the
    /// view's retention come as deletes (subscribers mirror the view; sinks keep them).
    pub fn subscribe_changes(&self, snapshot: bool, expired: bool) -> Result<ChangeStream> {
        self.check_running()?;
        self.with_state(|state| {
            // Brought up to date either way: later changes are told against it.
            let rows = self.current_rows(state)?;
            let current = snapshot.then_some(rows);
            let ended = state.ended;
            state.feed.subscribe(&self.name, current, ended, expired)
        })
    }

    /// The view stopped on an error (`message`): queries and subscribers are told.
    pub fn fail(&self, message: String) {
        self.with_state(|state| {
            state.feed.stop(format!(
                "materialized view \"{}\" failed: {message}",
                self.name
            ))
        });
        *self.failure.locked() = Some(message);
    }

    /// A failed view's pipeline restarts: the state goes back to empty (the restarted
    /// pipeline brings back the last checkpointed state), and the views and sinks that
    /// read this one are let go, to start again over it.
    pub fn restarting(&self) {
        self.with_state(|state| {
            state.operator = self.plan.operator.state();
            state.closed.clear();
            state.open.clear();
            state.readers.clear();
            state.ended = false;
            state.version += 1;
        });
        self.restore_counters(&Counters::default());
        self.stats.watermark.store(i64::MIN, Ordering::Relaxed);
    }

    /// A failed view's pipeline runs again.
    pub fn recovered(&self) {
        *self.failure.locked() = None;
    }

    /// The view was dropped: subscribers are told.
    pub fn dropped(&self) {
        self.with_state(|state| {
            state
                .feed
                .stop(format!("materialized view \"{}\" was dropped", self.name))
        });
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.locked().clone()
    }

    /// The streams the view reads: its source, and the right one of a join.
    pub fn sources(&self) -> Vec<&Arc<SourceDef>> {
        self.plan.sides().into_iter().map(|s| &s.source).collect()
    }

    /// The sources it reads, as (name, `CREATE SOURCE` text): what a checkpoint of the
    /// view was taken over.
    pub fn source_definitions(&self) -> Vec<(String, String)> {
        self.sources()
            .iter()
            .map(|s| (s.name.clone(), s.definition.clone()))
            .collect()
    }

    /// Its counters, for a checkpoint.
    pub fn counters(&self) -> Counters {
        let stats = &self.stats;
        Counters {
            rows_in: stats.rows_in.load(Ordering::Relaxed),
            late_rows: stats.late_rows.load(Ordering::Relaxed),
            windows_closed: stats.windows_closed.load(Ordering::Relaxed),
            decode_errors: stats.decode_errors.load(Ordering::Relaxed),
            emitted: self.emitted.load(Ordering::Relaxed),
        }
    }

    /// Bring back what [`View::counters`] gave.
    pub fn restore_counters(&self, c: &Counters) {
        let stats = &self.stats;
        stats.rows_in.store(c.rows_in, Ordering::Relaxed);
        stats.late_rows.store(c.late_rows, Ordering::Relaxed);
        stats
            .windows_closed
            .store(c.windows_closed, Ordering::Relaxed);
        stats
            .decode_errors
            .store(c.decode_errors, Ordering::Relaxed);
        self.emitted.store(c.emitted, Ordering::Relaxed);
    }

    /// Whether the view reads the source or view `name`.
    pub fn reads(&self, name: &str) -> bool {
        self.sources().iter().any(|s| s.name == name)
    }

    /// Rows of closed windows kept for readers.
    pub fn closed_rows(&self) -> usize {
        self.with_state(|s| s.closed_rows())
    }

    /// This view as a stream other views read: its final rows, with the window end (or
    /// start, or event time) it carries as event time.
    pub fn as_source(self: &Arc<Self>) -> Result<Arc<SourceDef>> {
        let running = match &self.plan.operator {
            Operator::Aggregate(spec) => spec.window.is_none(),
            Operator::Join(j) => j.then.is_some(),
            _ => false,
        };
        if running {
            return Err(WeirError::NotSupported(format!(
                "materialized view \"{}\" keeps running totals that change as events arrive; \
                 a view can read a view with windows (its rows once each window closes) or \
                 without aggregation",
                self.name
            )));
        }
        let tags = &self.plan.tags;
        let time = [Tag::Start, Tag::End, Tag::Time]
            .iter()
            .find_map(|t| tags.iter().position(|x| *x == Some(*t)));
        let delay = |s: &SourceDef| s.event_time.map_or(0, |e| e.delay);
        let delay = match &self.plan.operator {
            Operator::Append => delay(&self.plan.stream.source),
            Operator::Join(j) => delay(&self.plan.stream.source).max(delay(&j.right.source)),
            _ => 0,
        };
        Ok(Arc::new(SourceDef {
            name: self.name.clone(),
            schema: self.schema(),
            event_time: time.map(|column| EventTime {
                column,
                delay,
                max_future: None,
            }),
            idle_timeout: self.plan.stream.source.idle_timeout,
            connector: ConnectorSpec::View(Arc::clone(self)),
            options: Default::default(),
            definition: self.definition.clone(),
        }))
    }
}
