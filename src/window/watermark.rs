//! Watermarks: per partition, the largest event time seen minus the declared delay; the
//! source's watermark is the minimum over partitions that are not idle, never moves
//! back, and is what closes windows and marks rows as late.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Default `'watermark.idle_timeout'`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Partition {
    /// Largest event time seen; `None` until the partition's first record.
    max: Option<i64>,
    last_seen: Instant,
}

/// Event-time progress of one reader of a source, in the time column's unit.
#[derive(Debug, Clone)]
pub struct Watermarks {
    delay: i64,
    idle_timeout: Duration,
    partitions: BTreeMap<i32, Partition>,
    current: i64,
}

impl Watermarks {
    pub fn new(delay: i64, idle_timeout: Duration) -> Self {
        Watermarks {
            delay,
            idle_timeout,
            partitions: BTreeMap::new(),
            current: i64::MIN,
        }
    }

    /// Partitions the reader reads: one that has sent nothing holds the watermark back
    /// until it has been idle for the timeout.
    pub fn know(&mut self, partitions: &[i32], now: Instant) {
        for p in partitions {
            self.partitions.entry(*p).or_insert(Partition {
                max: None,
                last_seen: now,
            });
        }
    }

    /// Records with event times up to `max_event_time` arrived on `partition`.
    pub fn observe(&mut self, partition: i32, max_event_time: Option<i64>, now: Instant) {
        let p = self.partitions.entry(partition).or_insert(Partition {
            max: None,
            last_seen: now,
        });
        p.last_seen = now;
        if let Some(t) = max_event_time {
            p.max = Some(p.max.map_or(t, |m| m.max(t)));
        }
    }

    /// Recompute the watermark at `now`; it never decreases.
    pub fn advance(&mut self, now: Instant) -> i64 {
        let mut active_min: Option<i64> = None;
        let mut any_max: Option<i64> = None;
        let mut blocked = false;
        for p in self.partitions.values() {
            let idle = now.duration_since(p.last_seen) >= self.idle_timeout;
            let mark = p.max.map(|m| m.saturating_sub(self.delay));
            if let Some(m) = mark {
                any_max = Some(any_max.map_or(m, |a| a.max(m)));
            }
            if !idle {
                match mark {
                    Some(m) => active_min = Some(active_min.map_or(m, |a| a.min(m))),
                    None => blocked = true,
                }
            }
        }
        let candidate = if blocked {
            None
        } else {
            // Every partition idle: let the newest event time through, so windows close.
            active_min.or(any_max)
        };
        if let Some(c) = candidate {
            self.current = self.current.max(c);
        }
        self.current
    }

    /// A bounded source ended: every window can close.
    pub fn finish(&mut self) {
        self.current = i64::MAX;
    }

    /// The watermark and each partition's largest event time, for a checkpoint.
    pub fn export(&self) -> (i64, Vec<(i32, Option<i64>)>) {
        (
            self.current,
            self.partitions.iter().map(|(p, s)| (*p, s.max)).collect(),
        )
    }

    /// Bring back what [`Watermarks::export`] gave; partitions count as just seen.
    pub fn import(&mut self, current: i64, partitions: &[(i32, Option<i64>)], now: Instant) {
        self.current = self.current.max(current);
        for &(p, max) in partitions {
            self.partitions.insert(
                p,
                Partition {
                    max,
                    last_seen: now,
                },
            );
        }
    }

    pub fn current(&self) -> i64 {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_active_partitions_and_idle_ones_skipped() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(5, Duration::from_secs(10));
        w.know(&[0, 1], t0);
        w.observe(0, Some(100), t0);
        // Partition 1 has sent nothing yet: held back.
        assert_eq!(w.advance(t0), i64::MIN);
        w.observe(1, Some(50), t0);
        assert_eq!(w.advance(t0), 45);
        w.observe(1, Some(40), t0);
        assert_eq!(w.advance(t0), 45, "never moves back");
        // Partition 1 goes idle; partition 0 keeps sending.
        let t1 = t0 + Duration::from_secs(11);
        w.observe(0, Some(120), t1);
        assert_eq!(w.advance(t1), 115);
        // Everything idle: the newest event time goes through.
        let t2 = t1 + Duration::from_secs(11);
        assert_eq!(w.advance(t2), 115);
        w.finish();
        assert_eq!(w.current(), i64::MAX);
    }

    #[test]
    fn unseen_partition_stops_holding_back_once_idle() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(0, Duration::from_secs(1));
        w.know(&[0, 1, 2], t0);
        w.observe(0, Some(10), t0);
        assert_eq!(w.advance(t0), i64::MIN);
        let t1 = t0 + Duration::from_millis(1500);
        w.observe(0, Some(20), t1);
        assert_eq!(w.advance(t1), 20);
    }
}
