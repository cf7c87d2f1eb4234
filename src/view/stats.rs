//! A running view's counters, read without locking by the system tables and metrics:
//! records read, late rows, windows closed, the watermark, decode errors and samples,
//! and the reader's progress and outage per partition of its source.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Instant;

use crate::locks::Unpoisoned;

/// Counters of a running view, read without locking.
#[derive(Debug, Default)]
pub struct ViewStats {
    /// Records read from the source.
    pub rows_in: AtomicU64,
    /// (row, window) pairs dropped because the window had already closed.
    pub late_rows: AtomicU64,
    /// Windows closed so far.
    pub windows_closed: AtomicU64,
    /// Current watermark in the time column's unit (`i64::MIN` before the first).
    pub watermark: AtomicI64,
    /// Records the source could not decode.
    pub decode_errors: AtomicU64,
    /// The last few of them (joined partition numbers for joins).
    pub decode_samples: Mutex<Vec<crate::connector::DecodeSample>>,
    /// When rows were last folded in, in microseconds since the Unix epoch (0: never).
    pub last_update: AtomicI64,
    /// How far the view's reader is in each partition of its source.
    pub partitions: Mutex<BTreeMap<i32, PartitionProgress>>,
    /// The reader's outage while its source cannot be reached and it retries.
    pub outage: Mutex<Option<crate::connector::Outage>>,
}

/// A view's reader in one partition of its source.
#[derive(Debug, Clone, Default)]
pub struct PartitionProgress {
    /// The next offset to read.
    pub next_offset: i64,
    /// Records read from the partition.
    pub rows: u64,
    /// Records per second over the last second or so.
    pub rows_per_second: f64,
    /// The start of the current rate interval and the rows read then.
    interval: Option<(Instant, u64)>,
}

impl ViewStats {
    /// The reader's outage now (`None`: it reads).
    pub fn outage(&self) -> Option<crate::connector::Outage> {
        self.outage.locked().clone()
    }

    /// The reader's progress per partition, as it is now.
    pub fn progress_now(&self) -> BTreeMap<i32, PartitionProgress> {
        self.partitions.locked().clone()
    }

    /// Record the reader's positions, the rows just read per partition, at `now`.
    pub fn progress(
        &self,
        positions: &crate::connector::Positions,
        read: &[(i32, usize)],
        now: Instant,
    ) {
        let mut partitions = self.partitions.locked();
        for (&p, &next) in positions {
            partitions.entry(p).or_default().next_offset = next;
        }
        for &(p, n) in read {
            partitions.entry(p).or_default().rows += n as u64;
        }
        for progress in partitions.values_mut() {
            match progress.interval {
                None => progress.interval = Some((now, progress.rows)),
                Some((start, rows)) => {
                    let elapsed = now.duration_since(start).as_secs_f64();
                    if elapsed >= 1.0 {
                        progress.rows_per_second = (progress.rows - rows) as f64 / elapsed;
                        progress.interval = Some((now, progress.rows));
                    }
                }
            }
        }
    }
}
