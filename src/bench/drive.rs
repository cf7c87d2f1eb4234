//! Running a view's streaming path on the calling thread: the view is compiled by a real
//! engine (`view::plan::compile`), and `Driver` does what the view's pipeline does per
//! poll (watermark, window assignment, late rows, pre-chain, aggregation, closing).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use tokio::sync::mpsc;

use crate::connector::{Poll, SourceReader};
use crate::engine::{Engine, Outcome};
use crate::error::{Result, WeirError};
use crate::sql::streaming::StreamingStatement;
use crate::sql::{Statement, classify, parse_postgres};
use crate::view::pipeline::{max_event_time, time_unit, windowed_input};
use crate::view::plan::compile;
use crate::view::state::{View, ViewState};
use crate::window::assign::nanos_per;
use crate::window::watermark::Watermarks;

/// Run one statement; the rows it returns, if any.
pub async fn sql(engine: &Engine, text: &str) -> Result<Vec<RecordBatch>> {
    match engine.execute(&classify(text)?, None).await? {
        Outcome::Rows(df) => Ok(df.collect().await?),
        Outcome::Done(_) => Ok(Vec::new()),
    }
}

/// `CREATE MATERIALIZED VIEW name AS query`, parsed and compiled as the engine does it,
/// without starting its pipeline (the caller drives it).
pub async fn compile_view(engine: &Engine, name: &str, query: &str) -> Result<Arc<View>> {
    let text = format!("CREATE MATERIALIZED VIEW {name} AS {query}");
    let Statement::Streaming(statement, _) = classify(&text)? else {
        return Err(WeirError::Internal(format!("not a view: {text}")));
    };
    let StreamingStatement::CreateMaterializedView(create) = *statement else {
        return Err(WeirError::Internal(format!("not a view: {text}")));
    };
    let state = engine.context().state();
    let plan = state
        .statement_to_plan(parse_postgres(&create.query)?)
        .await?;
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    let compiled = compile(&plan, &state)?;
    // Nobody sends commands to a driven view; the receiver is not needed.
    let (tx, _rx) = mpsc::unbounded_channel();
    Ok(Arc::new(View::new(
        create.name,
        create.query,
        create.emit,
        compiled,
        tx,
    )))
}

/// Wall time spent in each part of the path.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stages {
    /// `SourceReader::poll` (decoding, for a reader of payloads).
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

/// The per-poll work of `view::pipeline` for one view, minus its command loop.
pub struct Driver {
    pub view: Arc<View>,
    marks: Watermarks,
    windowed: bool,
    ended: bool,
    pub stages: Stages,
}

impl Driver {
    pub fn new(view: Arc<View>, partitions: &[i32]) -> Self {
        let source = &view.plan.source;
        let unit = time_unit(&view);
        let delay = source.event_time.map_or(0, |e| e.delay / nanos_per(unit));
        let mut marks = Watermarks::new(delay, source.idle_timeout);
        marks.know(partitions, Instant::now());
        let windowed = view.plan.aggregate.window.is_some();
        Driver {
            view,
            marks,
            windowed,
            ended: false,
            stages: Stages::default(),
        }
    }

    /// Poll `reader` and fold what it returned in; `false` once the source has ended and
    /// every window is closed.
    pub async fn step(&mut self, reader: &mut dyn SourceReader) -> Result<bool> {
        if self.view.plan.source.event_time.is_none() {
            return Err(WeirError::Internal(
                "a driven view needs a source with a WATERMARK".into(),
            ));
        }
        let t = Instant::now();
        let polled = reader.poll().await?;
        self.stages.poll += t.elapsed();
        let now = Instant::now();
        let view = Arc::clone(&self.view);
        match polled {
            Poll::Records(batches) => {
                let watermark = self.marks.advance(now);
                view.with_state(|state| -> Result<()> {
                    for part in batches {
                        self.ingest(state, part.partition, part.batch, watermark, now)?;
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
        let t = Instant::now();
        self.marks.know(&reader.partitions(), now);
        let watermark = self.marks.advance(now);
        view.stats.watermark.store(watermark, Ordering::Relaxed);
        if self.windowed {
            view.with_state(|state| view.close(state, watermark))?;
        }
        self.stages.close += t.elapsed();
        Ok(!self.ended)
    }

    /// Fold one batch of the source in, as the pipeline does; `watermark` is
    /// `i64::MIN` when nothing is late yet.
    pub fn ingest(
        &mut self,
        state: &mut ViewState,
        partition: i32,
        batch: RecordBatch,
        watermark: i64,
        now: Instant,
    ) -> Result<()> {
        let plan = &self.view.plan;
        self.view
            .stats
            .rows_in
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        let t = Instant::now();
        let max_time = max_event_time(&self.view, &batch)?;
        let batch = windowed_input(&self.view, batch, self.windowed, watermark)?;
        let t2 = Instant::now();
        self.stages.window += t2 - t;
        let batch = plan.pre.apply(batch)?;
        let t3 = Instant::now();
        self.stages.pre += t3 - t2;
        state.aggregate.update(&batch)?;
        self.stages.aggregate += t3.elapsed();
        self.marks.observe(partition, max_time, now);
        Ok(())
    }
}
