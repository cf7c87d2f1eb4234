//! The two sources of a view that joins two streams, read as one: polled in turn, with
//! the right source's partitions numbered from `RIGHT`, so positions, `FLUSH` targets and
//! progress keep one shape.

use async_trait::async_trait;

use crate::connector::{DecodeSample, Outage, PartitionBatch, Poll, Positions, SourceReader};
use crate::error::Result;

/// Partition numbers from here on are the right source's.
pub const RIGHT: i32 = 1 << 20;

/// The side (0 left, 1 right) of a joined partition number, and the partition's own number.
pub fn side_of(partition: i32) -> (usize, i32) {
    if partition >= RIGHT {
        (1, partition - RIGHT)
    } else {
        (0, partition)
    }
}

/// The joined partition numbers of `side`, as they are (not renumbered).
pub fn of_side(partitions: impl IntoIterator<Item = i32>, side: usize) -> Vec<i32> {
    partitions
        .into_iter()
        .filter(|p| side_of(*p).0 == side)
        .collect()
}

/// The positions of `side` among joined `positions`, renumbered as that side numbers
/// its partitions.
pub fn split(positions: &Positions, side: usize) -> Positions {
    positions
        .iter()
        .map(|(p, offset)| (side_of(*p), *offset))
        .filter(|((s, _), _)| *s == side)
        .map(|((_, p), offset)| (p, offset))
        .collect()
}

pub struct JoinedReader {
    sides: [Box<dyn SourceReader>; 2],
    ended: [bool; 2],
    /// The side polled first next time.
    next: usize,
    positions: Positions,
}

impl JoinedReader {
    pub fn new(left: Box<dyn SourceReader>, right: Box<dyn SourceReader>) -> Self {
        let mut reader = JoinedReader {
            sides: [left, right],
            ended: [false; 2],
            next: 0,
            positions: Positions::new(),
        };
        reader.update_positions();
        reader
    }

    fn update_positions(&mut self) {
        self.positions = merged(self.sides[0].positions(), self.sides[1].positions());
    }
}

fn merged(left: &Positions, right: &Positions) -> Positions {
    left.iter()
        .map(|(p, o)| (*p, *o))
        .chain(right.iter().map(|(p, o)| (p + RIGHT, *o)))
        .collect()
}

#[async_trait]
impl SourceReader for JoinedReader {
    async fn poll(&mut self) -> Result<Poll> {
        let first = self.next;
        self.next = 1 - self.next;
        for side in [first, 1 - first] {
            if self.ended[side] {
                continue;
            }
            match self.sides[side].poll().await? {
                Poll::Records(batches) => {
                    self.update_positions();
                    let shift = if side == 1 { RIGHT } else { 0 };
                    return Ok(Poll::Records(
                        batches
                            .into_iter()
                            .map(|b| PartitionBatch {
                                partition: b.partition + shift,
                                batch: b.batch,
                            })
                            .collect(),
                    ));
                }
                Poll::Idle => {}
                Poll::End => self.ended[side] = true,
            }
        }
        self.update_positions();
        Ok(if self.ended == [true, true] {
            Poll::End
        } else {
            Poll::Idle
        })
    }

    async fn end_positions(&mut self) -> Result<Positions> {
        let left = self.sides[0].end_positions().await?;
        let right = self.sides[1].end_positions().await?;
        Ok(merged(&left, &right))
    }

    fn positions(&self) -> &Positions {
        &self.positions
    }

    fn partitions(&self) -> Vec<i32> {
        self.sides[0]
            .partitions()
            .into_iter()
            .chain(self.sides[1].partitions().into_iter().map(|p| p + RIGHT))
            .collect()
    }

    fn decode_errors(&self) -> u64 {
        self.sides[0].decode_errors() + self.sides[1].decode_errors()
    }

    fn outage(&self) -> Option<Outage> {
        self.sides[0].outage().or_else(|| self.sides[1].outage())
    }

    fn decode_samples(&self) -> Vec<DecodeSample> {
        let right = self.sides[1]
            .decode_samples()
            .into_iter()
            .map(|s| DecodeSample {
                partition: s.partition + RIGHT,
                ..s
            });
        self.sides[0]
            .decode_samples()
            .into_iter()
            .chain(right)
            .collect()
    }
}
