//! Checkpoints written into a temporary data directory and read back: the manifest, the
//! state sections, positions, watermarks, counters and the sinks' staged files; a newer
//! checkpoint replacing an older one; a checkpoint that never got its manifest ignored.

use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::*;

fn rows(tag: i64, names: &[&str]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("tag", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![tag; names.len()])),
            Arc::new(StringArray::from(names.to_vec())),
        ],
    )
    .unwrap()
}

fn meta(name: &str, read: i64) -> ViewMeta {
    ViewMeta {
        name: name.into(),
        definition: format!("SELECT * FROM {name}_source"),
        sources: vec![("bids".into(), "CREATE SOURCE bids …".into())],
        positions: Positions::from([(0, read), (1, read + 2)]),
        origin: Positions::from([(0, 0), (1, 1)]),
        marks: vec![MarkState {
            current: 42_000,
            partitions: vec![(0, Some(43_000)), (1, None)],
        }],
        last_watermark: 41_000,
        counters: Counters {
            rows_in: 12,
            late_rows: 1,
            windows_closed: 3,
            decode_errors: 2,
            emitted: 4,
        },
        rows: 3,
        files: BTreeMap::new(),
    }
}

pub(crate) fn snapshot(name: &str, read: i64) -> ViewSnapshot {
    ViewSnapshot {
        meta: meta(name, read),
        sections: vec![
            (
                "closed".into(),
                vec![rows(10, &["a", "b"]), rows(20, &["c"])],
            ),
            ("out.aggregate".into(), vec![rows(30, &["d"])]),
            // Nothing to keep: no file.
            ("log".into(), Vec::new()),
        ],
    }
}

fn sink() -> SinkMeta {
    SinkMeta {
        name: "files".into(),
        definition: "CREATE SINK files FROM v WITH (…)".into(),
        input: "CREATE MATERIALIZED VIEW v …".into(),
        positions: Positions::from([(0, 9)]),
        staged: vec![
            Staged {
                staged: "out/_staging/part-files-1.parquet.inprogress".into(),
                target: "out/part-files-1.parquet".into(),
            },
            Staged {
                staged: "out/_staging/part-files-2.parquet.inprogress".into(),
                target: "out/dt=2026-01-01/part-files-2.parquet".into(),
            },
        ],
        rows_written: 9,
        commits: 1,
    }
}

/// A data directory with its checkpoint folder, and that folder.
pub(crate) fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    Checkpoints::open(dir.path()).unwrap();
    let root = dir.path().join("checkpoints");
    (dir, root)
}

pub(crate) fn folders(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_checkpoint_reads_back_as_it_was_written() {
    let (dir, root) = data_dir();
    let taken = write(
        &root,
        1,
        vec![snapshot("v", 5)],
        vec![sink()],
        Instant::now(),
    )
    .unwrap();
    assert_eq!(
        (taken.sequence, taken.views, taken.sinks, taken.rows),
        (1, 1, 1, 3)
    );
    assert!(taken.bytes > 0);
    assert_eq!(folders(&root), ["MANIFEST.json", "ckpt-0000000001"]);

    let (checkpoints, restored) = Checkpoints::open(dir.path()).unwrap();
    let restored = restored.expect("the checkpoint");
    assert_eq!(restored.sequence, 1);
    assert_eq!(checkpoints.sequence.load(Ordering::SeqCst), 1);
    assert!(age_secs(restored.taken_at) < 60.0);
    assert_eq!(restored.views().count(), 1);
    let v = restored.view("v").expect("view v");
    let written = meta("v", 5);
    assert_eq!(v.definition, written.definition);
    assert_eq!(v.sources, written.sources);
    assert_eq!(v.positions, Positions::from([(0, 5), (1, 7)]));
    assert_eq!(v.origin, written.origin);
    assert_eq!(v.marks.len(), 1);
    assert_eq!(v.marks[0].current, 42_000);
    assert_eq!(v.marks[0].partitions, [(0, Some(43_000)), (1, None)]);
    assert_eq!(v.last_watermark, 41_000);
    let c = &v.counters;
    assert_eq!(
        (
            c.rows_in,
            c.late_rows,
            c.windows_closed,
            c.decode_errors,
            c.emitted
        ),
        (12, 1, 3, 2, 4)
    );
    assert_eq!(v.rows, 3);
    assert_eq!(
        v.files,
        BTreeMap::from([
            ("closed".to_string(), "v0-closed.arrow".to_string()),
            (
                "out.aggregate".to_string(),
                "v0-out-aggregate.arrow".to_string()
            ),
        ])
    );
    let sections = restored.sections(v).unwrap();
    assert_eq!(sections.len(), 2);
    assert_eq!(
        sections["closed"],
        vec![rows(10, &["a", "b"]), rows(20, &["c"])]
    );
    assert_eq!(sections["out.aggregate"], vec![rows(30, &["d"])]);

    let s = restored.sink("files").expect("sink files");
    let w = sink();
    assert_eq!(s.staged, w.staged);
    assert_eq!(s.positions, w.positions);
    assert_eq!((s.rows_written, s.commits), (9, 1));
    assert_eq!(
        (s.definition.as_str(), s.input.as_str()),
        (w.definition.as_str(), w.input.as_str())
    );
    assert!(restored.sink("other").is_none());
    assert!(restored.view("other").is_none());
}

#[test]
fn a_second_checkpoint_replaces_the_first() {
    let (dir, root) = data_dir();
    write(
        &root,
        1,
        vec![snapshot("v", 5)],
        vec![sink()],
        Instant::now(),
    )
    .unwrap();
    let mut second = snapshot("w", 8);
    second.sections = vec![("closed".into(), vec![rows(99, &["z"])])];
    write(&root, 2, vec![second], Vec::new(), Instant::now()).unwrap();
    assert_eq!(folders(&root), ["MANIFEST.json", "ckpt-0000000002"]);

    let (checkpoints, restored) = Checkpoints::open(dir.path()).unwrap();
    let restored = restored.unwrap();
    assert_eq!(restored.sequence, 2);
    assert_eq!(checkpoints.sequence.load(Ordering::SeqCst), 2);
    assert!(restored.view("v").is_none());
    assert!(
        restored.sink("files").is_none(),
        "the second one holds no sink"
    );
    let w = restored.view("w").unwrap();
    assert_eq!(w.positions, Positions::from([(0, 8), (1, 10)]));
    assert_eq!(
        restored.sections(w).unwrap()["closed"],
        vec![rows(99, &["z"])]
    );
}

#[test]
fn a_checkpoint_that_never_got_its_manifest_is_ignored_and_removed() {
    let (dir, root) = data_dir();
    write(&root, 1, vec![snapshot("v", 5)], Vec::new(), Instant::now()).unwrap();
    // A crash while writing checkpoint 2: its folder and a manifest never renamed.
    let half = root.join("ckpt-0000000002");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("v0-closed.arrow"), b"half an arrow file").unwrap();
    std::fs::write(root.join("MANIFEST.json.tmp"), b"{\"version\": 1, \"seq").unwrap();

    let (checkpoints, restored) = Checkpoints::open(dir.path()).unwrap();
    let restored = restored.unwrap();
    assert_eq!(restored.sequence, 1);
    assert_eq!(checkpoints.sequence.load(Ordering::SeqCst), 1);
    let v = restored.view("v").unwrap();
    assert_eq!(restored.sections(v).unwrap()["closed"].len(), 2);
    assert!(!half.exists(), "the half-written folder is removed at open");
    assert!(root.join("ckpt-0000000001").exists());

    // Without any manifest: nothing to restore, and the stray folder goes too.
    let (dir, root) = data_dir();
    std::fs::create_dir_all(root.join("ckpt-0000000007")).unwrap();
    let (checkpoints, restored) = Checkpoints::open(dir.path()).unwrap();
    assert!(restored.is_none());
    assert_eq!(checkpoints.sequence.load(Ordering::SeqCst), 0);
    assert_eq!(folders(&root), Vec::<String>::new());
}

#[test]
fn an_unreadable_or_newer_manifest_is_refused_with_its_path() {
    let (dir, root) = data_dir();
    std::fs::write(root.join(MANIFEST), b"not json").unwrap();
    let e = Checkpoints::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("MANIFEST.json is not readable"), "{e}");
    assert!(e.contains("move it away"), "{e}");

    let newer = serde_json::json!({
        "version": VERSION + 1, "sequence": 1, "taken_at": 0, "folder": "ckpt-0000000001",
        "views": []
    });
    std::fs::write(root.join(MANIFEST), newer.to_string()).unwrap();
    let e = Checkpoints::open(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains(&format!(
            "has format {}, this server reads {VERSION}",
            VERSION + 1
        )),
        "{e}"
    );
}

#[test]
fn a_missing_state_file_fails_naming_it() {
    let (dir, root) = data_dir();
    write(&root, 1, vec![snapshot("v", 5)], Vec::new(), Instant::now()).unwrap();
    std::fs::remove_file(root.join("ckpt-0000000001").join("v0-closed.arrow")).unwrap();
    let (_, restored) = Checkpoints::open(dir.path()).unwrap();
    let restored = restored.unwrap();
    let e = restored
        .sections(restored.view("v").unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cannot open") && e.contains("v0-closed.arrow"),
        "{e}"
    );
}

#[test]
fn a_stale_sequence_never_touches_the_folder_the_manifest_names() {
    let (_dir, root) = data_dir();
    write(&root, 2, vec![snapshot("v", 5)], Vec::new(), Instant::now()).unwrap();
    // The same number again (a cancelled checkpoint that left its number unsaved) and
    // an older one: both refused, the manifest's folder kept whole.
    for stale in [2, 1] {
        let e = write(
            &root,
            stale,
            vec![snapshot("w", 9)],
            Vec::new(),
            Instant::now(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("already names checkpoint 2"), "{e}");
        assert_eq!(folders(&root), ["MANIFEST.json", "ckpt-0000000002"]);
    }
    let (_, restored) = Checkpoints::open(root.parent().unwrap()).unwrap();
    let restored = restored.unwrap();
    assert_eq!(restored.sequence, 2);
    let v = restored.view("v").unwrap();
    assert_eq!(restored.sections(v).unwrap()["closed"].len(), 2);
}

#[tokio::test]
async fn a_cancelled_checkpoint_does_not_leave_its_number_to_be_used_again() {
    let (dir, root) = data_dir();
    let (checkpoints, _) = Checkpoints::open(dir.path()).unwrap();
    checkpoints
        .write_next(vec![snapshot("v", 5)], Vec::new(), Instant::now())
        .await
        .unwrap();
    // The caller goes away right after the writer started (its first poll).
    let _ = tokio::time::timeout(
        Duration::ZERO,
        checkpoints.write_next(vec![snapshot("v", 6)], Vec::new(), Instant::now()),
    )
    .await;
    // The next checkpoint waits for the orphaned writer, takes a number of its own and
    // keeps its folder; the manifest names it.
    let taken = checkpoints
        .write_next(vec![snapshot("v", 7)], Vec::new(), Instant::now())
        .await
        .unwrap();
    assert_eq!(taken.sequence, 3);
    assert_eq!(folders(&root), ["MANIFEST.json", "ckpt-0000000003"]);
    let (_, restored) = Checkpoints::open(dir.path()).unwrap();
    let restored = restored.unwrap();
    assert_eq!(restored.sequence, 3);
    assert_eq!(
        restored.view("v").unwrap().positions,
        Positions::from([(0, 7), (1, 9)])
    );
    assert!(restored.sections(restored.view("v").unwrap()).is_ok());
}

#[test]
fn a_view_snapshot_reads_one_view_of_the_current_checkpoint() {
    let (dir, root) = data_dir();
    let (checkpoints, _) = Checkpoints::open(dir.path()).unwrap();
    assert!(checkpoints.view_snapshot("v").unwrap().is_none());
    write(&root, 1, vec![snapshot("v", 5)], Vec::new(), Instant::now()).unwrap();
    let kept = checkpoints.view_snapshot("v").unwrap().unwrap();
    assert_eq!(kept.meta.positions, Positions::from([(0, 5), (1, 7)]));
    let sections: BTreeMap<String, Vec<RecordBatch>> = kept.sections.into_iter().collect();
    assert_eq!(sections["closed"].len(), 2);
    assert_eq!(sections["out.aggregate"], vec![rows(30, &["d"])]);
    assert!(checkpoints.view_snapshot("w").unwrap().is_none());
}
