//! Reading another materialized view as a stream: its final rows (closed windows, or
//! appended rows of a view without aggregation) — those it kept so far first, then each
//! one as the view emits it. Positions count the view's emitted rows.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use tokio::sync::mpsc;

use crate::connector::{PartitionBatch, Poll, Positions, SourceReader};
use crate::error::{Result, WeirError};
use crate::view::state::{Emissions, Emitted, View};

pub struct ViewReader {
    upstream: Arc<View>,
    kept: VecDeque<RecordBatch>,
    rows: Emissions,
    positions: Positions,
    ended: bool,
}

impl ViewReader {
    /// A view reading `upstream` (`bounded`: over a bounded channel, holding `upstream`
    /// back when it falls behind; a sink reads over an unbounded one).
    pub fn open(upstream: Arc<View>, bounded: bool) -> Self {
        let (kept, before, rows) = upstream.subscribe(bounded);
        ViewReader {
            upstream,
            kept: kept.into(),
            rows,
            positions: Positions::from([(0, before as i64)]),
            ended: false,
        }
    }

    fn take(&mut self, batches: Vec<RecordBatch>) -> Poll {
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        *self.positions.entry(0).or_default() += n as i64;
        Poll::Records(
            batches
                .into_iter()
                .map(|batch| PartitionBatch {
                    partition: 0,
                    batch,
                })
                .collect(),
        )
    }
}

#[async_trait]
impl SourceReader for ViewReader {
    async fn poll(&mut self) -> Result<Poll> {
        if !self.kept.is_empty() {
            let kept: Vec<_> = self.kept.drain(..).collect();
            return Ok(self.take(kept));
        }
        if self.ended {
            return Ok(Poll::End);
        }
        let mut batches = Vec::new();
        let first = match tokio::time::timeout(Duration::from_millis(100), self.rows.recv()).await {
            Err(_) => return Ok(Poll::Idle),
            Ok(e) => e,
        };
        let mut next = first;
        loop {
            match next {
                Some(Emitted::Rows(b)) => batches.push(b),
                Some(Emitted::End) => {
                    self.ended = true;
                    break;
                }
                // Let go without its end: the upstream view restarted from its last
                // checkpoint (its rows since are emitted again), so this reader must
                // start again too.
                None if !self.upstream.has_ended() => {
                    if batches.is_empty() {
                        return Err(WeirError::Stopped(format!(
                            "materialized view \"{}\" it reads restarted from its last checkpoint",
                            self.upstream.name
                        )));
                    }
                    break;
                }
                None => {
                    self.ended = true;
                    break;
                }
            }
            match self.rows.try_recv() {
                Ok(e) => next = Some(e),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => next = None,
            }
        }
        if batches.is_empty() {
            return Ok(Poll::End);
        }
        Ok(self.take(batches))
    }

    async fn end_positions(&mut self) -> Result<Positions> {
        let emitted = self.upstream.emitted.load(Ordering::Relaxed) as i64;
        Ok(Positions::from([(0, emitted)]))
    }

    fn positions(&self) -> &Positions {
        &self.positions
    }

    fn partitions(&self) -> Vec<i32> {
        vec![0]
    }

    fn decode_errors(&self) -> u64 {
        0
    }
}
