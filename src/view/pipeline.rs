//! A view's pipeline: one thread per materialized view reads its source, tracks the
//! watermark, assigns windows, drops late rows, folds rows into the aggregation and
//! closes windows; it answers `FLUSH` once its reader has reached the flush's target.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch, max};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::connector::{PartitionBatch, Poll, Positions, SourceReader, reached};
use crate::error::{Result, WeirError};
use crate::view::plan::Input;
use crate::view::state::{View, ViewState};
use crate::window::assign::{assign, nanos_per};
use crate::window::watermark::Watermarks;

/// What the catalog asks of a running pipeline.
pub enum Command {
    /// Answer once everything in the source now is reflected in the view.
    Flush(oneshot::Sender<Result<()>>),
    Stop,
}

/// Start the pipeline of `view` on its own thread; returns once the reader is open.
pub async fn start(view: Arc<View>, commands: mpsc::UnboundedReceiver<Command>) -> Result<()> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let name = view.name.clone();
    std::thread::Builder::new()
        .name(format!("view-{name}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(WeirError::Io(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let reader = match view.plan.source.open(&view.plan.columns).await {
                    Ok(r) => {
                        let _ = ready_tx.send(Ok(()));
                        r
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                Pipeline::new(view, reader).run(commands).await;
            });
        })
        .map_err(WeirError::Io)?;
    ready_rx
        .await
        .map_err(|_| WeirError::Internal(format!("pipeline of {name} ended while starting")))?
}

/// The time column's unit, for watermark arithmetic.
pub fn time_unit(view: &View) -> TimeUnit {
    let source = &view.plan.source;
    let column = match (&view.plan.input, source.event_time) {
        (Input::Windowed { time, .. }, _) => Some(*time),
        (Input::Plain, Some(e)) => Some(e.column),
        (Input::Plain, None) => None,
    };
    match column.map(|c| source.schema.field(c).data_type()) {
        Some(DataType::Timestamp(unit, _)) => *unit,
        _ => TimeUnit::Microsecond,
    }
}

struct Pipeline {
    view: Arc<View>,
    reader: Box<dyn SourceReader>,
    marks: Watermarks,
    unit: TimeUnit,
    /// Close windows and drop late rows (the view groups by a window).
    windowed: bool,
    pending: Vec<(Positions, oneshot::Sender<Result<()>>)>,
    ended: bool,
}

impl Pipeline {
    fn new(view: Arc<View>, reader: Box<dyn SourceReader>) -> Self {
        let unit = time_unit(&view);
        let source = &view.plan.source;
        let delay = source.event_time.map_or(0, |e| e.delay / nanos_per(unit));
        let mut marks = Watermarks::new(delay, source.idle_timeout);
        marks.know(&reader.partitions(), Instant::now());
        let windowed = view.plan.aggregate.window.is_some();
        Pipeline {
            view,
            reader,
            marks,
            unit,
            windowed,
            pending: Vec::new(),
            ended: false,
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        info!(target: "weir::view", "materialized view {} started", self.view.name);
        loop {
            loop {
                match commands.try_recv() {
                    Ok(Command::Flush(reply)) => self.flush(reply).await,
                    Ok(Command::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => return,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            if self.ended || self.view.failure().is_some() {
                match commands.recv().await {
                    Some(Command::Flush(reply)) => self.flush(reply).await,
                    Some(Command::Stop) | None => return,
                }
                continue;
            }
            if let Err(e) = self.step().await {
                let message = e.to_string();
                warn!(target: "weir::view", "materialized view {} stopped: {message}", self.view.name);
                self.view.fail(message.clone());
                for (_, reply) in self.pending.drain(..) {
                    let _ = reply.send(Err(WeirError::Stopped(format!(
                        "materialized view \"{}\" stopped: {message}",
                        self.view.name
                    ))));
                }
            }
        }
    }

    async fn flush(&mut self, reply: oneshot::Sender<Result<()>>) {
        if let Some(f) = self.view.failure() {
            let _ = reply.send(Err(WeirError::Stopped(format!(
                "materialized view \"{}\" stopped: {f}",
                self.view.name
            ))));
            return;
        }
        if self.ended {
            let _ = reply.send(Ok(()));
            return;
        }
        match self.reader.end_positions().await {
            Ok(target) if reached(self.reader.positions(), &target) => {
                let _ = reply.send(Ok(()));
            }
            Ok(target) => self.pending.push((target, reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Watermark now, in the time column's unit.
    fn watermark(&mut self, now: Instant) -> i64 {
        if self.view.plan.source.event_time.is_some() || self.ended {
            self.marks.advance(now)
        } else {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
            wall / nanos_per(self.unit)
        }
    }

    async fn step(&mut self) -> Result<()> {
        let polled = self.reader.poll().await?;
        let now = Instant::now();
        let view = Arc::clone(&self.view);
        view.stats
            .decode_errors
            .store(self.reader.decode_errors(), Ordering::Relaxed);
        match polled {
            Poll::Records(batches) => {
                let watermark = self.watermark(now);
                view.with_state(|state| -> Result<()> {
                    for batch in batches {
                        self.ingest(state, batch, watermark, now)?;
                    }
                    Ok(())
                })?;
            }
            Poll::Idle => {}
            Poll::End => {
                self.marks.finish();
                self.ended = true;
            }
        }
        self.marks.know(&self.reader.partitions(), now);
        let watermark = self.watermark(now);
        view.stats.watermark.store(watermark, Ordering::Relaxed);
        if self.windowed {
            view.with_state(|state| view.close(state, watermark))?;
        }
        let positions = self.reader.positions().clone();
        let ended = self.ended;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(target, _)| ended || reached(&positions, target));
        self.pending = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(()));
        }
        Ok(())
    }

    fn ingest(
        &mut self,
        state: &mut ViewState,
        part: PartitionBatch,
        watermark: i64,
        now: Instant,
    ) -> Result<()> {
        let view = &self.view;
        let plan = &view.plan;
        let batch = part.batch;
        view.stats
            .rows_in
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        let max_time = max_event_time(view, &batch)?;
        let batch = windowed_input(view, batch, self.windowed, watermark)?;
        let batch = plan.pre.apply(batch)?;
        state.aggregate.update(&batch)?;
        self.marks.observe(part.partition, max_time, now);
        Ok(())
    }
}

/// The largest event time in `batch`, in the time column's unit (`None` without event time).
pub fn max_event_time(view: &View, batch: &RecordBatch) -> Result<Option<i64>> {
    match view.plan.source.event_time {
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
pub fn windowed_input(
    view: &View,
    batch: RecordBatch,
    windowed: bool,
    watermark: i64,
) -> Result<RecordBatch> {
    let Input::Windowed { time, spec, schema } = &view.plan.input else {
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
