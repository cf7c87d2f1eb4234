//! Which locations SQL may read and write: the `.sql` folder, the server's own
//! `data_dir/files`, and the prefixes of `storage.allowed_locations`; never the server's
//! private files (checkpoints, durable catalog, users file, TLS key, config file).
//! The server installs the rule once at start; without it (tools, unit tests) every location is admitted.

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use url::Url;

use crate::error::{Result, WeirError};

/// The setting that lists further allowed locations, as errors name it.
pub const SETTING: &str = "storage.allowed_locations";

/// How many entries a folder location may hold before the symlink check gives up (refusing).
const MAX_ENTRIES_CHECKED: usize = 100_000;

/// The rule of one server.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    /// Local folders, canonical where they exist.
    folders: Vec<PathBuf>,
    /// `hdfs://`, `viewfs://` and `s3://` prefixes.
    urls: Vec<Url>,
    /// Files and folders SQL never reaches, whatever the allowed list says.
    private: Vec<PathBuf>,
}

static RULE: OnceLock<Locations> = OnceLock::new();

impl Locations {
    /// `folders` (the `.sql` folder, `data_dir/files`) plus `allowed` (paths or URL prefixes),
    /// minus `private`.
    pub fn new(folders: &[PathBuf], allowed: &[String], private: &[PathBuf]) -> Result<Locations> {
        let mut rule = Locations::default();
        for folder in folders {
            rule.folders.push(canonical(&absolute(folder)?));
        }
        for entry in allowed {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            match url_of(entry) {
                Some(url) if url.scheme() == "file" => {
                    let path = url.to_file_path().map_err(|_| {
                        WeirError::Config(format!(
                            "{SETTING}: \"{entry}\" is not a local file URL (file:///path)"
                        ))
                    })?;
                    rule.folders.push(canonical(&path));
                }
                Some(url) if matches!(url.scheme(), "hdfs" | "viewfs" | "s3") => {
                    if url.host_str().is_none_or(str::is_empty) {
                        return Err(WeirError::Config(format!(
                            "{SETTING}: \"{entry}\" names no host or bucket"
                        )));
                    }
                    rule.urls.push(url);
                }
                Some(url) => {
                    return Err(WeirError::Config(format!(
                        "{SETTING}: unsupported scheme \"{}\" in \"{entry}\"; use a path, file://, hdfs:// or s3://",
                        url.scheme()
                    )));
                }
                None => rule.folders.push(canonical(&absolute(Path::new(entry))?)),
            }
        }
        for path in private {
            rule.private.push(canonical(&absolute(path)?));
        }
        Ok(rule)
    }

    /// Make this the rule of the process. A second call is refused.
    pub fn install(self) -> Result<()> {
        RULE.set(self)
            .map_err(|_| WeirError::Internal("the allowed locations are set already".into()))
    }

    /// May SQL read or write `location` (a path, absolute or relative to the working
    /// folder, or a URL)? `Err` with 42501 naming the location and the setting.
    pub fn admit(&self, location: &str) -> Result<()> {
        match url_of(location) {
            Some(url) if url.scheme() == "file" => {
                let path = url.to_file_path().map_err(|_| {
                    refused(
                        location,
                        "a file:// URL names a local path (file:///path or file://localhost/path)",
                    )
                })?;
                self.admit_path(location, &path)
            }
            Some(url) => self.admit_url(location, &url),
            None => self.admit_path(location, Path::new(location)),
        }
    }

    fn admit_url(&self, location: &str, url: &Url) -> Result<()> {
        let decoded = percent_decoded(url.path());
        if decoded.split('/').any(|s| s == ".." || s == ".") {
            return Err(refused(
                location,
                "\"..\" and \".\" are not allowed in a URL path",
            ));
        }
        let admitted = self.urls.iter().any(|prefix| {
            prefix.scheme() == url.scheme()
                && prefix.host_str().map(str::to_ascii_lowercase)
                    == url.host_str().map(str::to_ascii_lowercase)
                && prefix.port_or_known_default() == url.port_or_known_default()
                && under_url_path(prefix.path(), url.path())
        });
        if admitted {
            Ok(())
        } else {
            Err(outside(location))
        }
    }

    fn admit_path(&self, location: &str, path: &Path) -> Result<()> {
        // A glob (`/data/*.parquet`) is checked by the folder before its first pattern
        // character, and may not climb out of it.
        let text = path.to_string_lossy();
        let (fixed, pattern) = match text.find(['*', '?', '[', '{']) {
            Some(i) => {
                let cut = text[..i].rfind('/').map_or(0, |s| s + 1);
                (PathBuf::from(&text[..cut]), Some(text[cut..].to_string()))
            }
            None => (path.to_path_buf(), None),
        };
        if pattern.is_some_and(|p| p.split('/').any(|s| s == "..")) {
            return Err(refused(location, "a pattern may not contain \"..\""));
        }
        let resolved = canonical(&absolute(&fixed)?);
        if self
            .private
            .iter()
            .any(|p| is_under(&resolved, p) || is_under(p, &resolved))
        {
            return Err(refused(
                location,
                "the server's own files (checkpoints, catalog, users file, TLS key, configuration) are never reachable from SQL",
            ));
        }
        if !self.folders.iter().any(|f| is_under(&resolved, f)) {
            return Err(outside(location));
        }
        if resolved.is_dir() {
            self.check_links(location, &resolved)?;
        }
        Ok(())
    }

    /// A folder is read with everything beneath it: no symbolic link in it may lead out of
    /// the allowed folders or into a private one.
    fn check_links(&self, location: &str, folder: &Path) -> Result<()> {
        let mut seen = 0usize;
        for entry in walkdir::WalkDir::new(folder).follow_links(false) {
            seen += 1;
            if seen > MAX_ENTRIES_CHECKED {
                return Err(refused(
                    location,
                    &format!("a folder location may hold at most {MAX_ENTRIES_CHECKED} entries"),
                ));
            }
            let Ok(entry) = entry else { continue };
            if !entry.path_is_symlink() {
                continue;
            }
            let target = canonical(entry.path());
            let escapes = !self.folders.iter().any(|f| is_under(&target, f))
                || self
                    .private
                    .iter()
                    .any(|p| is_under(&target, p) || is_under(p, &target));
            if escapes {
                return Err(refused(
                    location,
                    &format!(
                        "the symbolic link {} leads out of the allowed locations",
                        entry.path().display()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Check `location` against the process's rule (every location when none is installed).
pub fn admit(location: &str) -> Result<()> {
    match RULE.get() {
        Some(rule) => rule.admit(location),
        None => Ok(()),
    }
}

/// A URL with a scheme of two letters or more (so `C:\…` stays a path); `file:/etc/x`
/// and `FILE:///etc/x` are URLs too.
pub(crate) fn url_of(location: &str) -> Option<Url> {
    let url = Url::parse(location).ok()?;
    (url.scheme().len() > 1).then_some(url)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(WeirError::Io)?;
    // `..` is resolved against the names, as the path is written, before links are followed.
    let mut normal = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    Ok(normal)
}

/// `path` with its symbolic links resolved as far as it exists; the rest appended.
fn canonical(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

fn is_under(path: &Path, folder: &Path) -> bool {
    path.starts_with(folder)
}

fn under_url_path(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
}

fn percent_decoded(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

fn outside(location: &str) -> WeirError {
    WeirError::InsufficientPrivilege(format!(
        "location \"{location}\" is outside the allowed locations: SQL may reach the .sql folder, \
         the data folder's files/ and the prefixes of {SETTING}"
    ))
}

fn refused(location: &str, why: &str) -> WeirError {
    WeirError::InsufficientPrivilege(format!(
        "location \"{location}\" is refused: {why} ({SETTING})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(dir: &Path) -> Locations {
        std::fs::create_dir_all(dir.join("sql/data")).unwrap();
        std::fs::create_dir_all(dir.join("weir-data/files")).unwrap();
        std::fs::create_dir_all(dir.join("weir-data/checkpoints")).unwrap();
        std::fs::create_dir_all(dir.join("elsewhere")).unwrap();
        std::fs::write(dir.join("elsewhere/secret.csv"), "a\n1\n").unwrap();
        Locations::new(
            &[dir.join("sql"), dir.join("weir-data/files")],
            &[
                "s3://weir-test/archive/".into(),
                "hdfs://nn:8020/shop".into(),
            ],
            &[dir.join("weir-data/checkpoints"), dir.join("sql/users")],
        )
        .unwrap()
    }

    fn code(r: Result<()>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(e) => e.sqlstate(),
        }
    }

    #[test]
    fn only_allowed_folders_and_prefixes_are_admitted() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let r = rule(d);
        let p = |s: &str| format!("{}/{s}", d.display());
        assert_eq!(code(r.admit(&p("sql/data/x.parquet"))), "ok");
        assert_eq!(code(r.admit(&p("sql/data/"))), "ok");
        assert_eq!(code(r.admit(&p("sql/data/*.csv"))), "ok");
        assert_eq!(code(r.admit(&p("weir-data/files/new/out/"))), "ok");
        assert_eq!(code(r.admit(&format!("file://{}", p("sql/data/x")))), "ok");
        assert_eq!(code(r.admit("s3://weir-test/archive/x/y.parquet")), "ok");
        assert_eq!(code(r.admit("hdfs://NN:8020/shop/orders/")), "ok");
        for bad in [
            "/etc/passwd".to_string(),
            "file:///etc/passwd".into(),
            "FILE:///etc/passwd".into(),
            "file:/etc/passwd".into(),
            "file://localhost/etc/passwd".into(),
            "file://evil/etc/passwd".into(),
            p("sql/../elsewhere/secret.csv"),
            p("sql/data/../../elsewhere/"),
            format!("file://{}", p("sql/%2e%2e/elsewhere/secret.csv")),
            p("sql/data/*/../../../elsewhere/*.csv"),
            p("weir-data/checkpoints/MANIFEST.json"),
            p("weir-data/"),
            p("sql/users"),
            "s3://other-bucket/archive/".into(),
            "s3://weir-test/archived/".into(),
            "s3://weir-test/archive/../../x".into(),
            "s3://weir-test/archive/%2e%2e/x".into(),
            "hdfs://evil:8020/shop/".into(),
            "hdfs://nn:9000/shop/".into(),
        ] {
            assert_eq!(code(r.admit(&bad)), "42501", "{bad}");
        }
        let e = r.admit("/etc/passwd").unwrap_err().to_string();
        assert!(e.contains("/etc/passwd") && e.contains(SETTING), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_out_of_an_allowed_folder_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let r = rule(d);
        std::os::unix::fs::symlink(d.join("elsewhere"), d.join("sql/data/escape")).unwrap();
        let link = format!("{}/sql/data/escape/secret.csv", d.display());
        assert_eq!(code(r.admit(&link)), "42501");
        // A folder holding such a link is refused as a whole.
        let folder = format!("{}/sql/data/", d.display());
        assert_eq!(code(r.admit(&folder)), "42501");
        std::fs::remove_file(d.join("sql/data/escape")).unwrap();
        std::os::unix::fs::symlink(d.join("sql/data"), d.join("sql/inside")).unwrap();
        assert_eq!(
            code(r.admit(&format!("{}/sql/inside/x", d.display()))),
            "ok"
        );
        assert_eq!(code(r.admit(&folder)), "ok");
    }

    #[test]
    fn bad_settings_are_configuration_errors() {
        for bad in ["gopher://x/", "s3:///nobucket", "file://host/x"] {
            let e = Locations::new(&[], &[bad.to_string()], &[]).unwrap_err();
            assert_eq!(e.sqlstate(), "F0000", "{bad}");
        }
    }
}
