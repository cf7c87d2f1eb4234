//! Sources whose readers the benchmarks (and the core's tests) make themselves — JSON
//! held in memory, scripted polls — put in place of a source's connector with
//! `Catalog::supply`; not reachable from SQL.

use std::sync::Arc;

use async_trait::async_trait;

use crate::connector::{Positions, SourceConnector, SourceReader};
use crate::error::Result;

/// Makes a reader of the given columns.
pub type OpenReader = dyn Fn(&[usize]) -> Result<Box<dyn SourceReader>> + Send + Sync;

/// A source's readers as the embedding program makes them, and how many records it
/// holds.
#[derive(Clone)]
pub struct Supplied {
    pub open: Arc<OpenReader>,
    pub count: u64,
}

impl Supplied {
    pub fn connector(open: Arc<OpenReader>, count: u64) -> Arc<dyn SourceConnector> {
        Arc::new(Supplied { open, count })
    }
}

impl std::fmt::Debug for Supplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Supplied({} records)", self.count)
    }
}

#[async_trait]
impl SourceConnector for Supplied {
    fn name(&self) -> &'static str {
        "supplied"
    }

    async fn reader(
        &self,
        columns: &[usize],
        _resume: Option<&Positions>,
        _guard: Option<crate::decode::TimeGuard>,
    ) -> Result<Box<dyn SourceReader>> {
        (self.open)(columns)
    }

    async fn end_positions(&self, _partitions: Vec<i32>) -> Positions {
        Positions::from([(0, i64::try_from(self.count).unwrap_or(i64::MAX))])
    }

    /// Its readers start where the program says: a checkpoint keeps nothing of it.
    fn replayable(&self) -> bool {
        false
    }
}
