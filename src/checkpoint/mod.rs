//! Checkpoints: every view's state and the offsets its reader had reached, taken between
//! two polls of each view and written together into the data directory (Arrow IPC files,
//! then a manifest renamed into place), and read back at start so that each view resumes
//! exactly where its checkpoint left it: no event lost, none counted twice. Sinks take
//! part in two phases: they stage files before the manifest is written and make them
//! visible once it is.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::connector::{Positions, now_micros};
use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;
use crate::sink::runner::Command as SinkCommand;
use crate::sink::{Sink, Staged};
use crate::view::Streams;
use crate::view::pipeline::Command;
use crate::view::state::{Section, View};

/// The manifest's name in the checkpoint folder; the checkpoint it names is the last
/// complete one.
const MANIFEST: &str = "MANIFEST.json";
/// Format of the manifest and files.
const VERSION: u32 = 1;
/// How long a checkpoint waits for a view's pipeline to hand over its state.
const ANSWER: Duration = Duration::from_secs(60);
/// How long a checkpoint waits for a sink to finish its open files.
const SINK_ANSWER: Duration = Duration::from_secs(30);

/// One view in a checkpoint: what it was, where its reader stood, and its counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewMeta {
    pub name: String,
    /// The `CREATE MATERIALIZED VIEW` text; another text means another view.
    pub definition: String,
    /// The sources it reads, as (name, `CREATE SOURCE` text).
    pub sources: Vec<(String, String)>,
    /// The next offset to read per partition (joins: the right source's from `RIGHT`).
    pub positions: Positions,
    /// Where the view began reading; a changed view is rebuilt from there.
    pub origin: Positions,
    /// Per stream read: the watermark and each partition's largest event time.
    pub marks: Vec<MarkState>,
    pub last_watermark: i64,
    pub counters: Counters,
    /// Groups or rows the state holds.
    pub rows: u64,
    /// Section name → file in the checkpoint's folder.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// A stream's watermark in a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MarkState {
    pub current: i64,
    pub partitions: Vec<(i32, Option<i64>)>,
}

/// A view's counters in a checkpoint, so they go on counting after a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counters {
    pub rows_in: u64,
    pub late_rows: u64,
    pub windows_closed: u64,
    pub decode_errors: u64,
    pub emitted: u64,
}

/// One sink in a checkpoint: where its reader stood and what it had staged (made
/// visible once the checkpoint is durable, or at the next start).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkMeta {
    pub name: String,
    /// The `CREATE SINK` text; another text means another sink.
    pub definition: String,
    /// The `CREATE` text of the source or view it reads.
    pub input: String,
    /// The next offset to read per partition (a view's: rows it emitted).
    pub positions: Positions,
    pub staged: Vec<Staged>,
    pub rows_written: u64,
    pub commits: u64,
}

/// What a view's pipeline hands over for a checkpoint.
pub struct ViewSnapshot {
    pub meta: ViewMeta,
    pub sections: Vec<Section>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    sequence: u64,
    /// Microseconds since the Unix epoch.
    taken_at: i64,
    /// The folder, next to the manifest, holding the state files.
    folder: String,
    views: Vec<ViewMeta>,
    #[serde(default)]
    sinks: Vec<SinkMeta>,
}

/// A checkpoint that was written.
#[derive(Debug)]
pub struct Taken {
    pub sequence: u64,
    pub views: usize,
    pub sinks: usize,
    pub rows: u64,
    pub bytes: u64,
    pub took: Duration,
}

impl Taken {
    /// One line for the log.
    pub fn describe(&self) -> String {
        format!(
            "checkpoint {} written: {} views, {} sinks, {} rows of state, {} bytes in {:.0?}",
            self.sequence, self.views, self.sinks, self.rows, self.bytes, self.took
        )
    }
}

/// The checkpoints of one data directory.
pub struct Checkpoints {
    root: PathBuf,
    sequence: AtomicU64,
    /// One checkpoint at a time.
    writing: tokio::sync::Mutex<()>,
    /// Each sink's last meta, kept for a checkpoint the sink cannot answer (it is
    /// retrying a write): it then resumes from there.
    sinks: std::sync::Mutex<BTreeMap<String, SinkMeta>>,
}

/// The last complete checkpoint, read at start.
pub struct Restored {
    folder: PathBuf,
    pub sequence: u64,
    /// Microseconds since the Unix epoch.
    pub taken_at: i64,
    views: BTreeMap<String, ViewMeta>,
    sinks: BTreeMap<String, SinkMeta>,
}

pub(crate) fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> WeirError {
    WeirError::Io(std::io::Error::other(format!(
        "{what} {}: {e}",
        path.display()
    )))
}

/// Seconds since `micros`, for the log.
pub fn age_secs(micros: i64) -> f64 {
    (now_micros() - micros).max(0) as f64 / 1e6
}

impl Checkpoints {
    /// The checkpoints under `data_dir/checkpoints`, and the last complete one if any.
    pub fn open(data_dir: &Path) -> Result<(Arc<Checkpoints>, Option<Restored>)> {
        let root = data_dir.join("checkpoints");
        std::fs::create_dir_all(&root).map_err(|e| io("cannot create", &root, e))?;
        let manifest = root.join(MANIFEST);
        let restored = match std::fs::read(&manifest) {
            Ok(bytes) => {
                let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                    WeirError::Config(format!(
                        "checkpoint manifest {} is not readable: {e}; move it away to start \
                         without the checkpoint",
                        manifest.display()
                    ))
                })?;
                if m.version != VERSION {
                    return Err(WeirError::Config(format!(
                        "checkpoint manifest {} has format {}, this server reads {VERSION}",
                        manifest.display(),
                        m.version
                    )));
                }
                Some(Restored {
                    folder: root.join(&m.folder),
                    sequence: m.sequence,
                    taken_at: m.taken_at,
                    views: m.views.into_iter().map(|v| (v.name.clone(), v)).collect(),
                    sinks: m.sinks.into_iter().map(|s| (s.name.clone(), s)).collect(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("cannot read", &manifest, e)),
        };
        let sequence = restored.as_ref().map_or(0, |r| r.sequence);
        // Folders of checkpoints that never got their manifest.
        let current = restored.as_ref().map(|r| r.folder.clone());
        remove_others(&root, current.as_deref());
        Ok((
            Arc::new(Checkpoints {
                root,
                sequence: AtomicU64::new(sequence),
                writing: tokio::sync::Mutex::new(()),
                sinks: std::sync::Mutex::new(
                    restored
                        .as_ref()
                        .map(|r| r.sinks.clone())
                        .unwrap_or_default(),
                ),
            }),
            restored,
        ))
    }

    /// Take a checkpoint of every view that reads sources now, and write it.
    pub async fn take(&self, streams: &Streams) -> Result<Taken> {
        let _one = self.writing.lock().await;
        let started = Instant::now();
        let mut waits = Vec::new();
        for view in streams.views() {
            if !checkpointed(&view) {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            if view.commands.send(Command::Checkpoint(tx)).is_err() {
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
        let sinks = self.prepare_sinks(streams).await;
        let sequence = self.sequence.load(Ordering::SeqCst) + 1;
        let root = self.root.clone();
        let metas: Vec<SinkMeta> = sinks.iter().map(|(_, m)| m.clone()).collect();
        let taken =
            tokio::task::spawn_blocking(move || write(&root, sequence, snapshots, metas, started))
                .await
                .map_err(|e| WeirError::Internal(format!("checkpoint writer: {e}")))??;
        self.sequence.store(sequence, Ordering::SeqCst);
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
    async fn prepare_sinks(&self, streams: &Streams) -> Vec<(Option<Arc<Sink>>, SinkMeta)> {
        let mut waits = Vec::new();
        for sink in streams.all_sinks() {
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
        let mut last = self.sinks.locked();
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
            streams.all_sinks().iter().map(|s| s.name.clone()).collect();
        last.retain(|name, _| names.contains(name));
        out
    }
}

/// Views whose state a checkpoint keeps: those reading sources. A view that reads a view
/// starts again from the rows that view keeps (restored with it).
pub fn checkpointed(view: &View) -> bool {
    view.sources().iter().all(|s| {
        matches!(
            s.connector,
            crate::view::source::ConnectorSpec::Kafka(_)
                | crate::view::source::ConnectorSpec::Datagen(_)
                | crate::view::source::ConnectorSpec::Nexmark(_)
        )
    })
}

/// Write `snapshots` as checkpoint `sequence`: the state files into a new folder, each
/// synced, then the manifest naming it, synced and renamed over the last one; then the
/// older folders go.
/// `started`: when the checkpoint began (views handing over their state included).
pub(crate) fn write(
    root: &Path,
    sequence: u64,
    snapshots: Vec<ViewSnapshot>,
    sinks: Vec<SinkMeta>,
    started: Instant,
) -> Result<Taken> {
    let name = format!("ckpt-{sequence:010}");
    let folder = root.join(&name);
    if folder.exists() {
        std::fs::remove_dir_all(&folder).map_err(|e| io("cannot clear", &folder, e))?;
    }
    std::fs::create_dir_all(&folder).map_err(|e| io("cannot create", &folder, e))?;
    let mut views = Vec::with_capacity(snapshots.len());
    let mut bytes = 0u64;
    let mut rows = 0u64;
    for (i, snapshot) in snapshots.into_iter().enumerate() {
        let mut meta = snapshot.meta;
        for (section, batches) in snapshot.sections {
            let Some(first) = batches.first() else {
                continue;
            };
            let file_name = format!("v{i}-{}.arrow", section.replace('.', "-"));
            let path = folder.join(&file_name);
            let file = File::create(&path).map_err(|e| io("cannot create", &path, e))?;
            let mut writer = FileWriter::try_new(file, &first.schema())?;
            for b in &batches {
                writer.write(b)?;
            }
            writer.finish()?;
            let file = writer.into_inner()?;
            file.sync_all().map_err(|e| io("cannot sync", &path, e))?;
            bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
            meta.files.insert(section, file_name);
        }
        rows += meta.rows;
        views.push(meta);
    }
    sync_dir(&folder)?;
    let manifest = Manifest {
        version: VERSION,
        sequence,
        taken_at: now_micros(),
        folder: name,
        views,
        sinks,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| WeirError::Internal(format!("checkpoint manifest: {e}")))?;
    write_atomically(&root.join(MANIFEST), &text, false)?;
    remove_others(root, Some(&folder));
    Ok(Taken {
        sequence,
        views: manifest.views.len(),
        sinks: manifest.sinks.len(),
        rows,
        bytes,
        took: started.elapsed(),
    })
}

/// `bytes` into `path` whole or not at all: a temporary file beside it, synced, renamed
/// over it, and the folder synced. `private`: readable by the server's user only (mode
/// 0600 on Unix), for files that can hold credentials.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| io("cannot create", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| io("cannot write", &tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io("cannot rename", &tmp, e))?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot sync", dir, e))
}

/// Remove the checkpoint folders under `root` other than `keep`.
fn remove_others(root: &Path, keep: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_checkpoint = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ckpt-"));
        if is_checkpoint
            && path.is_dir()
            && Some(path.as_path()) != keep
            && let Err(e) = std::fs::remove_dir_all(&path)
        {
            warn!(
                "could not remove the old checkpoint {}: {e}",
                path.display()
            );
        }
    }
}

impl Restored {
    /// The checkpointed view `name`.
    pub fn view(&self, name: &str) -> Option<&ViewMeta> {
        self.views.get(name)
    }

    pub fn views(&self) -> impl Iterator<Item = &ViewMeta> {
        self.views.values()
    }

    /// The checkpointed sink `name`.
    pub fn sink(&self, name: &str) -> Option<&SinkMeta> {
        self.sinks.get(name)
    }

    /// The state of `meta`, by section.
    pub fn sections(&self, meta: &ViewMeta) -> Result<BTreeMap<String, Vec<RecordBatch>>> {
        let mut out = BTreeMap::new();
        for (section, file) in &meta.files {
            let path = self.folder.join(file);
            let f = File::open(&path).map_err(|e| io("cannot open", &path, e))?;
            let reader = FileReader::try_new(f, None)?;
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
            out.insert(section.clone(), batches);
        }
        Ok(out)
    }
}

/// Take a checkpoint every `interval` until `shutdown` (the server takes the last one).
pub async fn run(
    checkpoints: Arc<Checkpoints>,
    streams: Arc<Streams>,
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
        failing = match checkpoints.take(&streams).await {
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

#[cfg(test)]
mod tests;
