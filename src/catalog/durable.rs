//! The durable catalog: the objects created over the PostgreSQL and Flight SQL ports
//! (sources, materialized views, sinks, tables, views), kept in the data directory so
//! that they come back at restart, and the rows of plain tables saved with each change.
//! Objects that a `.sql` file defines belong to that file and are never kept here.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{io, write_atomically};
use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;

/// The folder, in the data directory, that holds the catalog.
const FOLDER: &str = "catalog";
/// The list of objects, in the order they were created.
const OBJECTS: &str = "objects.json";
/// Format of the objects file.
const VERSION: u32 = 1;

/// What kind of object an entry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Source,
    MaterializedView,
    Sink,
    /// `CREATE EXTERNAL TABLE`: its definition is run again.
    ExternalTable,
    /// `CREATE TABLE`: its rows are saved with every change and read back.
    Table,
    /// A plain `CREATE VIEW`.
    View,
}

/// One object created over a port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The object's name, as the catalog holds it.
    pub name: String,
    pub kind: Kind,
    /// The statement that created it, as the client sent it.
    pub text: String,
    /// The server's working folder when it was created: relative locations resolve here.
    pub base: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Objects {
    version: u32,
    objects: Vec<Entry>,
}

/// The durable catalog of one data directory.
pub struct Durable {
    dir: PathBuf,
    entries: Mutex<Vec<Entry>>,
    /// Names the `.sql` folder defines: never kept here.
    from_files: Mutex<HashSet<String>>,
    /// Held while a table's rows are read and written, so the last save wins.
    saving: tokio::sync::Mutex<()>,
}

impl Durable {
    /// The catalog kept in `data_dir/catalog/`, read when it exists.
    pub fn open(data_dir: &Path) -> Result<Arc<Durable>> {
        let dir = data_dir.join(FOLDER);
        std::fs::create_dir_all(dir.join("tables"))
            .map_err(|e| io("cannot create the catalog folder", &dir, e))?;
        restrict(&dir)?;
        let path = dir.join(OBJECTS);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => {
                let objects: Objects = serde_json::from_slice(&bytes)
                    .map_err(|e| io("cannot read the catalog", &path, e))?;
                if objects.version != VERSION {
                    return Err(io(
                        "cannot read the catalog",
                        &path,
                        format!(
                            "format version {} (this server reads {VERSION})",
                            objects.version
                        ),
                    ));
                }
                objects.objects
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("cannot read the catalog", &path, e)),
        };
        Ok(Arc::new(Durable {
            dir,
            entries: Mutex::new(entries),
            from_files: Mutex::new(HashSet::new()),
            saving: tokio::sync::Mutex::new(()),
        }))
    }

    /// The objects kept, in the order they were created.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// The entry for `name`, if one is kept.
    pub fn entry(&self, name: &str) -> Option<Entry> {
        self.lock().iter().find(|e| e.name == name).cloned()
    }

    /// Where the list of objects is written.
    pub fn path(&self) -> PathBuf {
        self.dir.join(OBJECTS)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.locked()
    }

    /// Say which names the `.sql` folder defines; kept entries of those names are dropped
    /// (the file's definition wins) and returned.
    pub fn set_file_names(&self, names: impl IntoIterator<Item = String>) -> Result<Vec<Entry>> {
        let names: HashSet<String> = names.into_iter().collect();
        let mut entries = self.lock();
        let (shadowed, kept): (Vec<Entry>, Vec<Entry>) =
            entries.drain(..).partition(|e| names.contains(&e.name));
        *entries = kept;
        if !shadowed.is_empty() {
            self.write(&entries)?;
            for e in &shadowed {
                if e.kind == Kind::Table {
                    let _ = std::fs::remove_file(self.table_path(&e.name));
                }
            }
        }
        *self.from_files.locked() = names;
        Ok(shadowed)
    }

    /// Whether `name` is defined by a `.sql` file.
    pub fn from_files(&self, name: &str) -> bool {
        self.from_files.locked().contains(name)
    }

    /// Keep `entry`: a new name goes last, an existing one is replaced where it stands.
    /// Names a `.sql` file defines are not kept.
    pub fn created(&self, entry: Entry) -> Result<()> {
        if self.from_files(&entry.name) {
            return Ok(());
        }
        let mut entries = self.lock();
        match entries.iter_mut().find(|e| e.name == entry.name) {
            Some(existing) => *existing = entry,
            None => entries.push(entry),
        }
        self.write(&entries)
    }

    /// After a `DROP`: forget every entry whose object `exists` no longer finds (the
    /// dropped object and what `CASCADE` dropped with it).
    pub fn dropped(&self, exists: impl Fn(&Entry) -> bool) -> Result<()> {
        let mut entries = self.lock();
        let before = entries.len();
        let mut gone = Vec::new();
        entries.retain(|e| {
            let keep = exists(e);
            if !keep {
                gone.push(e.clone());
            }
            keep
        });
        if entries.len() == before {
            return Ok(());
        }
        self.write(&entries)?;
        drop(entries);
        for e in gone.iter().filter(|e| e.kind == Kind::Table) {
            let _ = std::fs::remove_file(self.table_path(&e.name));
        }
        Ok(())
    }

    /// Write the list of objects: a temporary file, synced, renamed into place; readable
    /// by the server's user only, since definitions can hold credentials.
    fn write(&self, entries: &[Entry]) -> Result<()> {
        let objects = Objects {
            version: VERSION,
            objects: entries.to_vec(),
        };
        let bytes = serde_json::to_vec_pretty(&objects)
            .map_err(|e| WeirError::Internal(format!("catalog: {e}")))?;
        write_atomically(&self.path(), &bytes, true)
    }

    fn table_path(&self, name: &str) -> PathBuf {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join("tables").join(format!("{hex}.arrow"))
    }

    /// Save the rows of table `name`, which `read` returns when called: the last of
    /// several concurrent saves reads last and so writes the newest rows.
    pub async fn save_table<F, Fut>(&self, name: &str, read: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(SchemaRef, Vec<RecordBatch>)>>,
    {
        let _saving = self.saving.lock().await;
        let (schema, batches) = read().await?;
        let mut bytes = Vec::new();
        {
            let mut writer = FileWriter::try_new(&mut bytes, &schema)?;
            for batch in &batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        write_atomically(&self.table_path(name), &bytes, true)
    }

    /// The saved rows of table `name`.
    pub fn load_table(&self, name: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let path = self.table_path(name);
        let file =
            File::open(&path).map_err(|e| io("cannot open the rows of a table", &path, e))?;
        let reader =
            FileReader::try_new(file, None).map_err(|e| io("cannot read a table", &path, e))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| io("cannot read a table", &path, e))?;
        Ok((schema, batches))
    }
}

/// The catalog folder readable by the server's user only.
fn restrict(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("cannot restrict", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringViewArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn entry(name: &str, kind: Kind) -> Entry {
        Entry {
            name: name.into(),
            kind,
            text: format!("CREATE … {name}"),
            base: None,
        }
    }

    #[test]
    fn entries_survive_reopening_in_creation_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = Durable::open(dir.path()).unwrap();
        d.created(entry("s", Kind::Source)).unwrap();
        d.created(entry("v", Kind::MaterializedView)).unwrap();
        let mut again = entry("s", Kind::Source);
        again.text = "other".into();
        d.created(again).unwrap();
        let reopened = Durable::open(dir.path()).unwrap();
        let names: Vec<_> = reopened
            .entries()
            .into_iter()
            .map(|e| (e.name, e.text))
            .collect();
        assert_eq!(
            names,
            vec![
                ("s".into(), "other".into()),
                ("v".into(), "CREATE … v".into())
            ]
        );
    }

    #[test]
    fn drops_forget_what_no_longer_exists_and_files_win() {
        let dir = tempfile::tempdir().unwrap();
        let d = Durable::open(dir.path()).unwrap();
        for n in ["a", "b", "c"] {
            d.created(entry(n, Kind::View)).unwrap();
        }
        d.dropped(|e| e.name != "b").unwrap();
        let shadowed = d.set_file_names(["c".to_string()]).unwrap();
        assert_eq!(shadowed.len(), 1);
        d.created(entry("c", Kind::View)).unwrap();
        let names: Vec<_> = Durable::open(dir.path())
            .unwrap()
            .entries()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["a".to_string()]);
    }

    #[tokio::test]
    async fn table_rows_round_trip_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let d = Durable::open(dir.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8View, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringViewArray::from(vec![
                    Some("a"),
                    None,
                    Some("a string longer than twelve bytes"),
                ])),
            ],
        )
        .unwrap();
        let rows = (Arc::clone(&schema), vec![batch.clone()]);
        d.save_table("My \"T\"", || async { Ok(rows) })
            .await
            .unwrap();
        let (read_schema, read) = d.load_table("My \"T\"").unwrap();
        assert_eq!(read_schema, schema);
        assert_eq!(read, vec![batch]);
        d.created(entry("x", Kind::Table)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "catalog file mode {mode:o}");
        }
    }
}
