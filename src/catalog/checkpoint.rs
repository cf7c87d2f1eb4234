//! Checkpoint orchestration: every view that reads sources hands over its state between
//! two polls, every sink prepares what it staged, the checkpoint is written
//! (`crate::checkpoint` owns the files), then the sinks commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Catalog;
use crate::checkpoint::{Checkpoints, SinkMeta, Taken};
use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;
use crate::sink::Sink;
use crate::sink::runner::SinkCommand;
use crate::view::pipeline::ViewCommand;
use crate::view::state::View;

/// How long a checkpoint waits for a view's pipeline to hand over its state.
const ANSWER: Duration = Duration::from_secs(60);
/// How long a checkpoint waits for a sink to finish its open files.
const SINK_ANSWER: Duration = Duration::from_secs(30);

impl Catalog {
    /// `CHECKPOINT`: write a checkpoint now; returns once it is on disk.
    pub async fn checkpoint(&self) -> Result<Taken> {
        let checkpoints = self.checkpoints.get().ok_or_else(|| {
            WeirError::NotSupported(
                "checkpoints need a server with a data directory (weir serve --data-dir)".into(),
            )
        })?;
        self.take(checkpoints).await
    }

    /// Take a checkpoint of every view that reads sources now, and write it.
    async fn take(&self, checkpoints: &Checkpoints) -> Result<Taken> {
        let _one = checkpoints.one_at_a_time().await;
        let started = Instant::now();
        let mut waits = Vec::new();
        for view in self.views() {
            if !checkpointed(&view) {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            if view.commands.send(ViewCommand::Checkpoint(tx)).is_err() {
                continue;
            }
            waits.push((view, rx));
        }
        let mut snapshots = Vec::with_capacity(waits.len());
        for (view, rx) in waits {
            match tokio::time::timeout(ANSWER, rx).await {
                Ok(Ok(Ok(s))) => snapshots.push(s),
                Ok(Ok(Err(e))) => {
                    return Err(WeirError::Internal(format!(
                        "checkpoint: materialized view \"{}\" could not hand over its state: {e}",
                        view.name
                    )));
                }
                // Dropped while the checkpoint waited: nothing to keep.
                Ok(Err(_)) => {}
                Err(_) => {
                    return Err(WeirError::Internal(format!(
                        "checkpoint: materialized view \"{}\" did not hand over its state within {}s",
                        view.name,
                        ANSWER.as_secs()
                    )));
                }
            }
        }
        let sinks = self.prepare_sinks().await;
        let metas: Vec<SinkMeta> = sinks.iter().map(|(_, m)| m.clone()).collect();
        let taken = checkpoints.write_next(snapshots, metas, started).await?;
        // Durable: what the sinks staged becomes visible, before the checkpoint is said
        // to be taken (so that the files are in place when FLUSH or CHECKPOINT returns).
        let mut commits = Vec::new();
        for (sink, meta) in sinks {
            if let Some(sink) = sink
                && !meta.staged.is_empty()
            {
                let (done, rx) = oneshot::channel();
                if sink
                    .commands
                    .send(SinkCommand::Commit(meta.staged, done))
                    .is_ok()
                {
                    commits.push((sink, rx));
                }
            }
        }
        for (sink, rx) in commits {
            if tokio::time::timeout(SINK_ANSWER, rx).await.is_err() {
                warn!(
                    "checkpoint: sink {} did not commit its files within {}s",
                    sink.name,
                    SINK_ANSWER.as_secs()
                );
            }
        }
        Ok(taken)
    }

    /// Every sink's meta for a checkpoint (a sink that cannot answer keeps its last one),
    /// with the sinks that answered.
    async fn prepare_sinks(&self) -> Vec<(Option<Arc<Sink>>, SinkMeta)> {
        let mut waits = Vec::new();
        for sink in self.all_sinks() {
            let (tx, rx) = oneshot::channel();
            if sink.commands.send(SinkCommand::Prepare(tx)).is_ok() {
                waits.push((sink, rx));
            }
        }
        let mut answers = Vec::new();
        for (sink, rx) in waits {
            let answer = match tokio::time::timeout(SINK_ANSWER, rx).await {
                Ok(Ok(Ok(meta))) => Ok(meta),
                Ok(Ok(Err(e))) => Err(e.to_string()),
                Ok(Err(_)) => Err("it stopped".into()),
                Err(_) => Err(format!("no answer within {}s", SINK_ANSWER.as_secs())),
            };
            answers.push((sink, answer));
        }
        let mut out = Vec::new();
        let mut last = self.last_sinks.locked();
        for (sink, answer) in answers {
            match answer {
                Ok(meta) => {
                    last.insert(meta.name.clone(), meta.clone());
                    out.push((Some(sink), meta));
                }
                Err(why) => match last
                    .get(&sink.name)
                    .filter(|m| m.definition == sink.definition)
                {
                    Some(meta) => {
                        warn!(
                            "checkpoint: sink {} keeps its previous position ({why})",
                            sink.name
                        );
                        out.push((None, meta.clone()));
                    }
                    None => warn!("checkpoint: sink {} is left out ({why})", sink.name),
                },
            }
        }
        let names: std::collections::BTreeSet<String> =
            self.all_sinks().iter().map(|s| s.name.clone()).collect();
        last.retain(|name, _| names.contains(name));
        out
    }
}

/// Views whose state a checkpoint keeps: those reading sources that can be read again
/// from positions.
pub fn checkpointed(view: &View) -> bool {
    view.sources().iter().all(|s| s.replayable())
}

/// Take a checkpoint every `interval` until `shutdown` (the server takes the last one).
pub async fn run_checkpoints(
    catalog: Arc<Catalog>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        failing = match catalog.checkpoint().await {
            Ok(t) => {
                // After failures, say that they are over.
                if failing {
                    info!("{}", t.describe());
                } else {
                    tracing::debug!("{}", t.describe());
                }
                false
            }
            Err(e) => {
                warn!("checkpoint failed (the last complete one stays): {e}");
                true
            }
        };
    }
}
