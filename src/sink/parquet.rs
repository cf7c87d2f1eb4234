//! Parquet sink: append-only rows written as Parquet files into a folder of any object
//! store (`file://`, `hdfs://`, a local path), in Hive-style partitions (`dt=2026-11-21/`)
//! when asked. A file is finished at `rollover.size` and at every checkpoint, written
//! into the folder's `_inprogress/` (which readers of the folder skip, as they skip any
//! sub-folder that is not a partition) and renamed into place once the checkpoint that
//! covers its rows is durable.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, GzipLevel, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use super::{Delivery, SinkInput, SinkWriter, Staged};
use crate::connector::{check_options, now_micros, required};
use crate::error::{Result, WeirError};
use crate::sql::streaming::Options;

const CONNECTOR: &str = "parquet";
const OPTIONS: &[&str] = &["path", "partition.by", "rollover.size", "compression"];
/// A file is finished once it holds about this many bytes.
const DEFAULT_ROLLOVER: usize = 128 * 1024 * 1024;
/// The sub-folder of files not yet committed: readers of the folder skip it (DataFusion
/// lists only partition sub-folders; Spark and Hive skip names beginning with `_`).
const STAGING_FOLDER: &str = "_inprogress";
/// The suffix of a file not yet committed, so that no `*.parquet` pattern matches it.
const STAGING_SUFFIX: &str = ".inprogress";
/// The partition of rows whose partition value is NULL (as Hive names it).
const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// How rows are split into folders.
#[derive(Debug, Clone)]
enum PartitionBy {
    /// By a column's value (the column is left out of the files: the folder holds it).
    Column { index: usize, name: String },
    /// `dt`: the UTC date of the event time column.
    EventDate { index: usize },
}

/// A Parquet sink's validated options.
#[derive(Debug)]
pub struct ParquetSinkSpec {
    /// The folder, as written.
    location: String,
    /// A local folder (`file://`): staged files are synced to disk before they count.
    local: bool,
    store: Arc<dyn ObjectStore>,
    folder: StorePath,
    partition: Option<PartitionBy>,
    rollover: usize,
    compression: Compression,
}

impl ParquetSinkSpec {
    /// Validate `options` for `input`; `event_time`: the input's event time column (what
    /// `'partition.by' = 'dt'` partitions by when there is no `dt` column).
    pub fn parse(
        ctx: &SessionContext,
        input: &SinkInput,
        options: &Options,
        event_time: Option<usize>,
    ) -> Result<Self> {
        check_options(CONNECTOR, options, OPTIONS, &[])?;
        if input.delivery == Delivery::Changes {
            return Err(WeirError::InvalidParameter(format!(
                "sink \"{}\": materialized view \"{}\" shows rows that change as events \
                 arrive, and Parquet files only grow; write a source, a view without \
                 aggregation, or a view with EMIT ON WINDOW CLOSE (its final rows)",
                input.sink, input.from
            )));
        }
        let location = required(CONNECTOR, options, "path")?.to_string();
        let url = folder_url(&location)?;
        let local = url.scheme() == "file";
        let base = ObjectStoreUrl::parse(&url[..url::Position::BeforePath])?;
        let store = ctx.runtime_env().object_store(&base)?;
        let folder = StorePath::from_url_path(url.path())
            .map_err(|e| WeirError::InvalidParameter(format!("sink path '{location}': {e}")))?;
        let schema = &input.schema;
        let partition = match options.get("partition.by") {
            None => None,
            Some(name) => Some(match schema.index_of(name) {
                Ok(index) => {
                    if schema.fields().len() == 1 {
                        return Err(WeirError::InvalidParameter(format!(
                            "sink \"{}\": partitioning by its only column \"{name}\" would \
                             leave the files without columns",
                            input.sink
                        )));
                    }
                    PartitionBy::Column {
                        index,
                        name: name.to_string(),
                    }
                }
                Err(_) if name == "dt" => match event_time {
                    Some(index) => PartitionBy::EventDate { index },
                    None => {
                        return Err(WeirError::InvalidParameter(format!(
                            "sink \"{}\": 'partition.by' = 'dt' partitions by the date of \
                             the event time, and \"{}\" declares none (WATERMARK FOR …); \
                             or name one of its columns: {}",
                            input.sink,
                            input.from,
                            column_names(schema)
                        )));
                    }
                },
                Err(_) => {
                    return Err(WeirError::InvalidParameter(format!(
                        "sink \"{}\": 'partition.by' names \"{name}\", which \"{}\" does not \
                         have; its columns: {} (or 'dt', the event date)",
                        input.sink,
                        input.from,
                        column_names(schema)
                    )));
                }
            }),
        };
        let rollover = match options.get("rollover.size") {
            None => DEFAULT_ROLLOVER,
            Some(v) => parse_size(v).ok_or_else(|| {
                WeirError::InvalidParameter(format!(
                    "option 'rollover.size' of connector 'parquet' must be a size such as \
                     '64MB' or '1048576', got '{v}'"
                ))
            })?,
        };
        let compression = match options
            .get("compression")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("snappy") => Compression::SNAPPY,
            Some("zstd") => Compression::ZSTD(ZstdLevel::default()),
            Some("gzip") => Compression::GZIP(GzipLevel::default()),
            Some("lz4") => Compression::LZ4_RAW,
            Some("none") | Some("uncompressed") => Compression::UNCOMPRESSED,
            Some(other) => {
                return Err(WeirError::InvalidParameter(format!(
                    "option 'compression' of connector 'parquet' is one of snappy, zstd, \
                     gzip, lz4, none; got '{other}'"
                )));
            }
        };
        Ok(ParquetSinkSpec {
            location,
            local,
            store,
            folder,
            partition,
            rollover,
            compression,
        })
    }

    /// A writer of `input`'s rows.
    fn writer(&self, input: &SinkInput) -> Result<Box<dyn SinkWriter>> {
        let schema = &input.schema;
        let file_schema = match &self.partition {
            Some(PartitionBy::Column { index, .. }) => Arc::new(Schema::new_with_metadata(
                schema
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i != index)
                    .map(|(_, f)| Arc::clone(f))
                    .collect::<Vec<_>>(),
                schema.metadata().clone(),
            )),
            _ => Arc::clone(schema),
        };
        Ok(Box::new(ParquetWriter {
            store: Arc::clone(&self.store),
            folder: self.folder.clone(),
            location: self.location.clone(),
            local: self.local,
            partition: self.partition.clone(),
            rollover: self.rollover,
            properties: WriterProperties::builder()
                .set_compression(self.compression)
                .build(),
            file_schema,
            sink: input.sink.clone(),
            prefix: format!("part-{}-{:x}", input.sink, now_micros()),
            files: 0,
            open: BTreeMap::new(),
            finished: Vec::new(),
        }))
    }
}

/// `path` as a folder URL: URLs stay (with a trailing slash), a local path becomes `file://`.
fn folder_url(location: &str) -> Result<Url> {
    let resolved = crate::storage::resolve_location(location, None)?;
    let mut url = if resolved.contains("://") {
        Url::parse(&resolved)
            .map_err(|e| WeirError::InvalidParameter(format!("sink path '{location}': {e}")))?
    } else {
        let path = std::path::absolute(&resolved).map_err(WeirError::Io)?;
        Url::from_directory_path(&path).map_err(|_| {
            WeirError::InvalidParameter(format!("sink path '{location}' is not a folder path"))
        })?
    };
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn column_names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `64MB`, `1 GiB`, `1048576`.
fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: usize = t[..digits].parse().ok()?;
    let unit = match t[digits..].trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit).filter(|n| *n > 0)
}

/// A folder name's value, escaped as Hive does (`/`, `=`, `%` and controls as `%XX`).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() || "/\\=%:#?*\"'<>|{}[]^".contains(c) {
            for b in c.to_string().bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One file being written.
struct OpenFile {
    writer: ArrowWriter<Vec<u8>>,
}

struct ParquetWriter {
    store: Arc<dyn ObjectStore>,
    folder: StorePath,
    location: String,
    local: bool,
    partition: Option<PartitionBy>,
    rollover: usize,
    properties: WriterProperties,
    file_schema: SchemaRef,
    sink: String,
    /// File names begin with this: the sink's name and when this writer opened.
    prefix: String,
    files: u64,
    /// Open files by partition folder (`""` without partitions).
    open: BTreeMap<String, OpenFile>,
    /// Files finished and staged since the last `prepare`.
    finished: Vec<Staged>,
}

impl ParquetWriter {
    /// `batch`'s rows by partition folder (`dt=…/`), without the partition column.
    fn split(&self, batch: RecordBatch) -> Result<Vec<(String, RecordBatch)>> {
        let (values, drop) = match &self.partition {
            None => return Ok(vec![(String::new(), batch)]),
            Some(PartitionBy::Column { index, name }) => (
                partition_values(batch.column(*index))?,
                Some((*index, name.clone())),
            ),
            Some(PartitionBy::EventDate { index }) => {
                let dates = cast(batch.column(*index), &DataType::Date32)?;
                (partition_values(&dates)?, None)
            }
        };
        let key = match &drop {
            Some((_, name)) => name.clone(),
            None => "dt".to_string(),
        };
        let batch = match drop {
            Some((index, _)) => {
                let mut b = batch;
                b.remove_column(index);
                b
            }
            None => batch,
        };
        let mut rows: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (i, v) in values.iter().enumerate() {
            let value = match v {
                Some(v) => escape(v),
                None => NULL_PARTITION.to_string(),
            };
            rows.entry(value).or_default().push(i as u32);
        }
        if rows.len() == 1 {
            let (value, _) = rows.into_iter().next().expect("one partition");
            return Ok(vec![(format!("{key}={value}/"), batch)]);
        }
        rows.into_iter()
            .map(|(value, indices)| {
                let part = take_record_batch(&batch, &UInt32Array::from(indices))?;
                Ok((format!("{key}={value}/"), part))
            })
            .collect()
    }

    /// Finish the open file of `dir` and stage it.
    async fn finish(&mut self, dir: &str) -> Result<()> {
        let Some(file) = self.open.remove(dir) else {
            return Ok(());
        };
        let bytes = file.writer.into_inner()?;
        self.files += 1;
        let name = format!("{}-{:05}.parquet", self.prefix, self.files);
        let target = StorePath::parse(format!("{}/{dir}{name}", self.folder))
            .map_err(|e| WeirError::Internal(format!("sink file name: {e}")))?;
        let staged = StorePath::parse(format!(
            "{}/{STAGING_FOLDER}/{dir}{name}{STAGING_SUFFIX}",
            self.folder
        ))
        .map_err(|e| WeirError::Internal(format!("sink file name: {e}")))?;
        self.store
            .put(&staged, PutPayload::from(bytes))
            .await
            .map_err(|e| self.io("writing", &staged, e))?;
        self.sync_local(&staged)?;
        self.finished.push(Staged {
            staged: staged.to_string(),
            target: target.to_string(),
        });
        Ok(())
    }

    /// A staged file in a local folder reaches the disk (its bytes and its name) before
    /// it counts as prepared; object stores acknowledge a put once it is durable.
    fn sync_local(&self, path: &StorePath) -> Result<()> {
        if !self.local {
            return Ok(());
        }
        let file = Path::new("/").join(path.as_ref());
        let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
        sync(&file)
            .and_then(|()| file.parent().map_or(Ok(()), sync))
            .map_err(|e| {
                WeirError::Io(std::io::Error::new(
                    e.kind(),
                    format!("syncing {}: {e}", file.display()),
                ))
            })
    }

    fn io(&self, what: &str, path: &StorePath, e: object_store::Error) -> WeirError {
        WeirError::Io(std::io::Error::other(format!(
            "{what} {path} in {}: {e}",
            self.location
        )))
    }
}

/// A partition column's values as text (dates as `2026-11-21`).
fn partition_values(column: &ArrayRef) -> Result<Vec<Option<String>>> {
    let text = cast(column, &DataType::Utf8)?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| WeirError::Internal("partition values as text".into()))?;
    Ok((0..text.len())
        .map(|i| (!text.is_null(i)).then(|| text.value(i).to_string()))
        .collect())
}

#[async_trait]
impl SinkWriter for ParquetWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        for (dir, rows) in self.split(batch)? {
            let file = match self.open.get_mut(&dir) {
                Some(f) => f,
                None => {
                    let writer = ArrowWriter::try_new(
                        Vec::new(),
                        Arc::clone(&self.file_schema),
                        Some(self.properties.clone()),
                    )?;
                    self.open.entry(dir.clone()).or_insert(OpenFile { writer })
                }
            };
            file.writer.write(&rows)?;
            let size = file.writer.bytes_written() + file.writer.in_progress_size();
            if size >= self.rollover {
                self.finish(&dir).await?;
            }
        }
        Ok(())
    }

    /// Rows stay in the open files until `prepare` (a checkpoint) finishes them.
    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    async fn prepare(&mut self) -> Result<Vec<Staged>> {
        let dirs: Vec<String> = self.open.keys().cloned().collect();
        for dir in dirs {
            self.finish(&dir).await?;
        }
        Ok(std::mem::take(&mut self.finished))
    }

    async fn commit(&mut self, staged: &[Staged]) -> Result<()> {
        for s in staged {
            let from = StorePath::from(s.staged.as_str());
            let to = StorePath::from(s.target.as_str());
            match self.store.rename(&from, &to).await {
                Ok(()) => {}
                // Committed before (a restart after the rename).
                Err(object_store::Error::NotFound { .. }) if self.store.head(&to).await.is_ok() => {
                }
                Err(e) => return Err(self.io("committing", &from, e)),
            }
        }
        Ok(())
    }

    async fn discard_uncommitted(&mut self) -> Result<()> {
        let ours = regex::Regex::new(&format!(
            r"^part-{}-[0-9a-f]+-[0-9]+\.parquet{}$",
            regex::escape(&self.sink),
            regex::escape(STAGING_SUFFIX)
        ))
        .map_err(|e| WeirError::Internal(e.to_string()))?;
        let staging = self.folder.clone().join(STAGING_FOLDER);
        let listed: Vec<_> = match self.store.list(Some(&staging)).try_collect().await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(self.io("listing", &staging, e)),
        };
        for meta in listed {
            let name = meta.location.filename().unwrap_or_default();
            if ours.is_match(name) {
                self.store
                    .delete(&meta.location)
                    .await
                    .map_err(|e| self.io("removing", &meta.location, e))?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl super::SinkConnector for ParquetSinkSpec {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn two_phase(&self) -> bool {
        true
    }

    async fn open(&self, input: &SinkInput) -> Result<Box<dyn SinkWriter>> {
        self.writer(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_escapes() {
        assert_eq!(parse_size("64MB"), Some(64 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(escape("2026-11-21"), "2026-11-21");
        assert_eq!(escape("a/b=c"), "a%2Fb%3Dc");
    }

    #[test]
    fn folders_are_urls_with_a_trailing_slash() {
        assert_eq!(
            folder_url("hdfs://nn:8020/shop/raw").unwrap().as_str(),
            "hdfs://nn:8020/shop/raw/"
        );
        assert_eq!(
            folder_url("/tmp/weir/raw").unwrap().as_str(),
            "file:///tmp/weir/raw/"
        );
        assert!(folder_url("gopher://x/").is_err());
    }
}
