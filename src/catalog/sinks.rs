//! The catalog's sinks: `CREATE SINK` over a source or a view, its runner started on a
//! thread of its own, `DROP SINK`, and the sinks' part of `FLUSH`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::prelude::SessionContext;
use tokio::sync::mpsc;
use tracing::info;

use super::{Catalog, threads};
use crate::error::{Result, WeirError};
use crate::locks::UnpoisonedRw;
use crate::sink::runner::{self, SinkCommand, SinkStart};
use crate::sink::{Sink, SinkInput, SinkStats, Upstream, delivery_of, sink_connector};
use crate::sql::streaming::CreateSink;
use crate::view::one_line;

impl Catalog {
    /// `CREATE SINK`: validate its options against its input, then start its runner
    /// (not under `weir check`). `false` when it existed and `IF NOT EXISTS` was given.
    pub async fn create_sink(
        &self,
        ctx: &SessionContext,
        create: &CreateSink,
        text: &str,
    ) -> Result<bool> {
        if self.sink(&create.name).is_some() {
            if create.if_not_exists {
                return Ok(false);
            }
            return Err(WeirError::DuplicateObject(format!(
                "sink \"{}\" already exists",
                create.name
            )));
        }
        let from = match (self.view(&create.from), self.source(&create.from)) {
            (Some(v), _) => Upstream::View(v),
            (None, Some(s)) => Upstream::Source(s),
            (None, None) => {
                return Err(WeirError::UndefinedTable(format!(
                    "{} (a sink reads a source or a materialized view)",
                    create.from
                )));
            }
        };
        let input = SinkInput {
            sink: create.name.clone(),
            from: from.name().to_string(),
            schema: match &from {
                Upstream::Source(s) => s.schema.clone(),
                Upstream::View(v) => v.schema(),
            },
            delivery: delivery_of(&from),
        };
        let connector = sink_connector(ctx, &from, &input, &create.options)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Arc::new(Sink {
            name: create.name.clone(),
            definition: one_line(text),
            from,
            connector,
            input,
            stats: SinkStats::default(),
            commands: tx,
        });
        if !self.checking() {
            let begin = self.sink_begin(&sink);
            let checkpointing = self.checkpointing();
            let run = Arc::clone(&sink);
            threads::start(format!("sink-{}", sink.name), move |ready| {
                runner::run(run, rx, begin, checkpointing, ready)
            })
            .await?;
        }
        self.sinks.write_locked().insert(sink.name.clone(), sink);
        Ok(true)
    }

    /// How the runner of `sink` begins: from the checkpoint read at start when it holds
    /// the sink as it is now, reading the same input (a view's from that checkpoint too).
    fn sink_begin(&self, sink: &Sink) -> SinkStart {
        let Some(restored) = self.restored_checkpoint() else {
            return SinkStart::Fresh;
        };
        let Some(meta) = restored.sink(&sink.name) else {
            return SinkStart::Fresh;
        };
        let view_fresh =
            matches!(&sink.from, Upstream::View(v) if !v.resumed.load(Ordering::Relaxed));
        if meta.definition != sink.definition || meta.input != sink.from.definition() || view_fresh
        {
            info!(
                target: "weir::sink",
                "sink {} or what it reads changed since checkpoint {}: it starts afresh",
                sink.name,
                restored.sequence
            );
            return SinkStart::Fresh;
        }
        SinkStart::Restore(meta.clone())
    }

    /// Hold `sink` without starting it (the runner's tests drive it themselves).
    #[cfg(test)]
    pub(crate) fn add_sink(&self, sink: Arc<Sink>) {
        self.sinks.write_locked().insert(sink.name.clone(), sink);
    }

    /// The sink `name`.
    pub fn sink(&self, name: &str) -> Option<Arc<Sink>> {
        self.sinks.read_locked().get(name).cloned()
    }

    pub fn all_sinks(&self) -> Vec<Arc<Sink>> {
        self.sinks.read_locked().values().cloned().collect()
    }

    /// The sinks that read `name`.
    pub fn sinks_reading(&self, name: &str) -> Vec<String> {
        self.all_sinks()
            .iter()
            .filter(|s| s.from.name() == name)
            .map(|s| s.name.clone())
            .collect()
    }

    /// `DROP SINK`; `false` when it did not exist and `IF EXISTS` was given. What it
    /// committed stays; what it staged since the last checkpoint goes with it.
    pub fn drop_sink(&self, name: &str, if_exists: bool) -> Result<bool> {
        match self.sinks.write_locked().remove(name) {
            Some(sink) => {
                let _ = sink.commands.send(SinkCommand::Stop);
                Ok(true)
            }
            None if if_exists => Ok(false),
            None => Err(WeirError::UndefinedObject(format!(
                "sink \"{name}\" does not exist"
            ))),
        }
    }

    /// `ALTER SINK name RESTART`: a failed sink starts again from its last checkpointed
    /// position (with a fresh count of automatic restarts); a running one is left as it is.
    pub async fn restart_sink(&self, name: &str) -> Result<()> {
        let sink = self
            .sink(name)
            .ok_or_else(|| WeirError::UndefinedObject(format!("sink \"{name}\" does not exist")))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        sink.commands
            .send(SinkCommand::Restart(tx))
            .map_err(|_| WeirError::Stopped(format!("sink \"{name}\" is not running")))?;
        rx.await
            .map_err(|_| WeirError::Stopped(format!("sink \"{name}\" stopped while restarting")))?
    }

    /// `FLUSH`, after the views: every sink has handed its input's rows to its
    /// destination; then a checkpoint commits the files sinks staged.
    pub async fn flush_sinks(&self) -> Vec<String> {
        let sinks = self.all_sinks();
        let waits = sinks.iter().map(|s| async move {
            s.flush()
                .await
                .map_err(|e| format!("sink \"{}\": {e}", s.name))
        });
        let mut errors: Vec<String> = futures::future::join_all(waits)
            .await
            .into_iter()
            .filter_map(|r| r.err())
            .collect();
        if sinks.iter().any(|s| s.connector.two_phase())
            && self.checkpointing()
            && let Err(e) = self.checkpoint().await
        {
            errors.push(format!("committing the sinks' files: {e}"));
        }
        errors
    }
}
