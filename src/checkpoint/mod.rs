//! Checkpoint files: every view's state and the offsets its reader had reached, and every
//! sink's staged files, written together into the data directory (Arrow IPC files, then a
//! manifest renamed into place) and read back at start, so that each view resumes exactly
//! where its checkpoint left it. The catalog (`crate::catalog`) decides when and gathers
//! what goes in.

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
use tracing::warn;

use crate::connector::{Positions, now_micros};
use crate::error::{Result, WeirError};

/// The manifest's name in the checkpoint folder; the checkpoint it names is the last
/// complete one.
const MANIFEST: &str = "MANIFEST.json";
/// Format of the manifest and files.
const VERSION: u32 = 1;

/// A part of a view's state in a checkpoint: its name and batches whose first column is
/// a tag (a window end, or an event time per row).
pub type Section = (String, Vec<RecordBatch>);

/// Something a writer finished that becomes visible once the checkpoint recording it is
/// durable (a Parquet file written under a staging name, to be renamed into place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// Where it was written (an object-store path).
    pub staged: String,
    /// Where it goes.
    pub target: String,
}

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
#[derive(Clone)]
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
    /// The last sequence number handed out (numbers are never handed out twice).
    sequence: AtomicU64,
    /// One checkpoint at a time.
    writing: tokio::sync::Mutex<()>,
    /// One writer of files at a time: held by the blocking writer itself, so that a
    /// checkpoint whose caller was cancelled still finishes before the next one begins.
    files: Arc<std::sync::Mutex<()>>,
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
                files: Arc::default(),
            }),
            restored,
        ))
    }

    /// The view `name` as the current manifest holds it, its state read into memory
    /// (`None` when no checkpoint holds it): what a failed view keeps answering to
    /// checkpoints, and restarts from. Read while no checkpoint writes.
    pub fn view_snapshot(&self, name: &str) -> Result<Option<ViewSnapshot>> {
        let _one = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.root.join(MANIFEST);
        let m: Manifest = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io("cannot read", &path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read", &path, e)),
        };
        let folder = self.root.join(&m.folder);
        let Some(meta) = m.views.into_iter().find(|v| v.name == name) else {
            return Ok(None);
        };
        let restored = Restored {
            folder,
            sequence: m.sequence,
            taken_at: m.taken_at,
            views: BTreeMap::new(),
            sinks: BTreeMap::new(),
        };
        let sections = restored.sections(&meta)?.into_iter().collect();
        Ok(Some(ViewSnapshot { meta, sections }))
    }

    /// One checkpoint at a time: held from asking the views for their state until the
    /// checkpoint is written.
    pub async fn one_at_a_time(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writing.lock().await
    }

    /// Write `snapshots` and `sinks` as the next checkpoint (off the async workers);
    /// `started`: when it began (views handing over their state included). Its number is
    /// taken before anything is written, so that a caller cancelled part way (a cancelled
    /// `FLUSH` or `CHECKPOINT`) never leaves a number to be used again.
    pub async fn write_next(
        &self,
        snapshots: Vec<ViewSnapshot>,
        sinks: Vec<SinkMeta>,
        started: Instant,
    ) -> Result<Taken> {
        let sequence = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        let root = self.root.clone();
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || {
            let _one = files.lock().unwrap_or_else(|e| e.into_inner());
            write(&root, sequence, snapshots, sinks, started)
        })
        .await
        .map_err(|e| WeirError::Internal(format!("checkpoint writer: {e}")))?
    }
}

/// Write `snapshots` as checkpoint `sequence`: the state files into a new folder, each
/// synced, then the manifest naming it, synced and renamed over the last one; then the
/// older folders go. The folder the current manifest names is never touched: a
/// `sequence` at or below the current manifest's is refused (a newer checkpoint
/// superseded it).
/// `started`: when the checkpoint began (views handing over their state included).
pub(crate) fn write(
    root: &Path,
    sequence: u64,
    snapshots: Vec<ViewSnapshot>,
    sinks: Vec<SinkMeta>,
    started: Instant,
) -> Result<Taken> {
    if let Some(current) = current_sequence(root)?
        && current >= sequence
    {
        return Err(WeirError::Internal(format!(
            "checkpoint {sequence} not written: the manifest already names checkpoint {current}"
        )));
    }
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
    write_atomically(&root.join(MANIFEST), &text, true)?;
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

/// The sequence of the checkpoint the manifest under `root` names, if there is one.
fn current_sequence(root: &Path) -> Result<Option<u64>> {
    let path = root.join(MANIFEST);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Manifest>(&bytes)
            .map(|m| Some(m.sequence))
            .map_err(|e| io("cannot read", &path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("cannot read", &path, e)),
    }
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

    /// The checkpointed sinks by name.
    pub fn sinks(&self) -> &BTreeMap<String, SinkMeta> {
        &self.sinks
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

#[cfg(test)]
pub(crate) mod tests;
