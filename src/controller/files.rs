//! The manifests directory: every `*.yaml`, `*.yml` and `*.json` below it, read into an
//! [`Index`], and watched so edits apply live.
//!
//! Nothing a user had working is dropped because of a typo: a file that no longer parses
//! keeps its last good objects in force (and is a Problem) until it parses again; an object
//! whose document turns invalid keeps its last good version. Hidden entries (`.git`,
//! the `..data` links of a mounted ConfigMap) are skipped, so a ConfigMap volume works.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::index::{Index, Key, Kind, Object};
use super::manifest;
use crate::model::{ObjectRef, Problem, Reason};

/// Quiet time after the last change before reloading: editors write in several steps.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest a steady stream of changes can hold a reload back.
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);
/// Rescan period when the platform gives no change notifications.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Directory links are followed, but not forever (a link loop).
const MAX_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("manifests directory {path} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
}

/// The state of one file between reloads.
struct FileState {
    bytes: Vec<u8>,
    /// Objects in force from this file (the last good ones where the file is broken).
    objects: Vec<Object>,
    problems: Vec<Problem>,
}

/// A manifests directory and what was last read from it.
pub struct ManifestDir {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
}

impl ManifestDir {
    /// Checks that `root` is a readable directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, FilesError> {
        let root = root.into();
        let meta = std::fs::metadata(&root).map_err(|source| FilesError::Unreadable {
            path: root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(FilesError::NotADirectory { path: root });
        }
        Ok(Self {
            root,
            files: BTreeMap::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads the directory again and returns the whole index. Files whose bytes did not
    /// change are not parsed again.
    pub fn load(&mut self) -> Index {
        let mut paths = Vec::new();
        let mut problems = Vec::new();
        if let Err(e) = collect(&self.root, 0, &mut paths) {
            problems.push(Problem::new(
                ObjectRef::new("File", None, &self.root.display().to_string()),
                Reason::InvalidManifest,
                format!("cannot read the manifests directory: {e}; keeping what was loaded"),
            ));
            // Keep everything as it was: a vanished mount must not empty the table.
            paths = self.files.keys().cloned().collect();
        }
        paths.sort();

        let mut next = BTreeMap::new();
        for path in paths {
            let previous = self.files.remove(&path);
            let state = self.read(&path, previous);
            next.insert(path, state);
        }
        self.files = next;

        // Merge the files; the first file (in path order) defining an object wins.
        let mut seen: HashMap<(Kind, Key), PathBuf> = HashMap::new();
        let mut index = Index::new();
        for (path, state) in &self.files {
            problems.extend(state.problems.iter().cloned());
            for object in &state.objects {
                let id = (object.kind(), object.key());
                if let Some(first) = seen.get(&id) {
                    problems.push(Problem::new(
                        object_ref(&id),
                        Reason::DuplicateObject,
                        format!(
                            "defined in {} and again in {}; the one in {} is used",
                            self.display(first),
                            self.display(path),
                            self.display(first)
                        ),
                    ));
                    continue;
                }
                seen.insert(id, path.clone());
                index.apply(object.clone());
            }
        }
        index.source_problems = problems;
        index
    }

    fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn read(&self, path: &Path, previous: Option<FileState>) -> FileState {
        let origin = self.display(path);
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                let (bytes, objects) = previous.map(|p| (p.bytes, p.objects)).unwrap_or_default();
                return FileState {
                    problems: vec![file_problem(
                        &origin,
                        format!("cannot be read: {e}"),
                        objects.len(),
                    )],
                    bytes,
                    objects,
                };
            }
        };
        // Unchanged: the previous state itself, so that an edit of one file leaves nothing
        // newly allocated for the others (the bytes just read are dropped at once).
        let previous = match previous {
            Some(previous) if previous.bytes == bytes => return previous,
            previous => previous,
        };
        let last_good = previous.map(|p| p.objects).unwrap_or_default();
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return FileState {
                problems: vec![file_problem(
                    &origin,
                    "is not UTF-8 text".into(),
                    last_good.len(),
                )],
                bytes,
                objects: last_good,
            };
        };
        let json = path.extension().is_some_and(|e| e == "json");
        let parsed = manifest::parse(&origin, text, json);
        let mut problems = parsed.problems;
        if parsed.unreadable {
            if !last_good.is_empty() {
                problems.push(file_problem(
                    &origin,
                    "does not parse".into(),
                    last_good.len(),
                ));
            }
            return FileState {
                bytes,
                objects: last_good,
                problems,
            };
        }
        // Invalid documents keep their last good object, if there was one.
        let mut objects = parsed.objects;
        for id in &parsed.invalid {
            if let Some(old) = last_good.iter().find(|o| (o.kind(), o.key()) == *id) {
                problems.push(Problem::new(
                    object_ref(id),
                    Reason::InvalidManifest,
                    format!("in {origin}: keeping the last valid version until this is fixed"),
                ));
                objects.push(old.clone());
            }
        }
        debug!(file = %origin, objects = objects.len(), problems = problems.len(), "manifest read");
        FileState {
            bytes,
            objects,
            problems,
        }
    }
}

fn file_problem(origin: &str, what: String, kept: usize) -> Problem {
    let message = if kept > 0 {
        format!("{what}; keeping the {kept} object(s) it last defined until it parses again")
    } else {
        what
    };
    Problem::new(
        ObjectRef::new("File", None, origin),
        Reason::InvalidManifest,
        message,
    )
}

fn object_ref((kind, key): &(Kind, Key)) -> ObjectRef {
    ObjectRef::new(
        kind.as_str(),
        kind.is_namespaced().then_some(key.namespace.as_str()),
        &key.name,
    )
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

/// Manifest files below `dir`, following links, skipping hidden entries.
fn collect(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // `metadata` follows links: a linked file or directory counts as what it points to.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // a dangling link
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                // A subdirectory that cannot be read is skipped, not fatal.
                if let Err(e) = collect(&path, depth + 1, out) {
                    warn!(dir = %path.display(), error = %e, "skipping unreadable directory");
                }
            }
        } else if meta.is_file() && is_manifest(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Change notifications for a directory tree. Dropping it stops watching.
pub struct DirWatch {
    rx: mpsc::Receiver<()>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl DirWatch {
    /// Watches `root` recursively; falls back to polling when the platform cannot notify.
    pub fn new(root: &Path) -> Self {
        // One pending signal is enough: a reload reads everything.
        let (tx, rx) = mpsc::channel(1);
        let watcher_tx = tx.clone();
        let watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
                Ok(_) => {
                    let _ = watcher_tx.try_send(());
                }
                Err(e) => {
                    warn!(error = %e, "manifests watch error; reloading");
                    let _ = watcher_tx.try_send(());
                }
            })
            .and_then(|mut w| w.watch(root, RecursiveMode::Recursive).map(|()| w));
        match watcher {
            Ok(w) => Self {
                rx,
                _watcher: Some(w),
            },
            Err(e) => {
                warn!(dir = %root.display(), error = %e, interval = ?POLL_INTERVAL,
                    "cannot watch the manifests directory; polling instead");
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(POLL_INTERVAL);
                    loop {
                        tick.tick().await;
                        if tx.send(()).await.is_err() {
                            return;
                        }
                    }
                });
                Self { rx, _watcher: None }
            }
        }
    }

    /// Waits for a change, then for the directory to be quiet for [`DEBOUNCE`].
    /// Returns `false` when no more changes can come.
    pub async fn changed(&mut self) -> bool {
        if self.rx.recv().await.is_none() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
        loop {
            let quiet = tokio::time::sleep(DEBOUNCE);
            tokio::select! {
                more = self.rx.recv() => {
                    if more.is_none() || tokio::time::Instant::now() >= deadline {
                        return true;
                    }
                }
                () = quiet => return true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: 80}]}\n";

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn loads_nested_files_of_the_three_extensions_and_skips_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "a.yaml", SERVICE);
        write(tmp.path(), "sub/b.yml", &SERVICE.replace("web", "b"));
        write(
            tmp.path(),
            "sub/deeper/c.json",
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"c"}}"#,
        );
        write(tmp.path(), "notes.txt", "not a manifest");
        write(tmp.path(), ".hidden/d.yaml", &SERVICE.replace("web", "d"));
        let mut dir = ManifestDir::open(tmp.path()).unwrap();
        let index = dir.load();
        let names: Vec<&str> = index.services.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, vec!["b", "c", "web"]);
        assert!(
            index.source_problems.is_empty(),
            "{:?}",
            index.source_problems
        );
    }

    #[test]
    fn a_file_that_stops_parsing_keeps_its_last_good_objects() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "svc.yaml", SERVICE);
        let mut dir = ManifestDir::open(tmp.path()).unwrap();
        assert_eq!(dir.load().services.len(), 1);

        write(
            tmp.path(),
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: [broken\n",
        );
        let index = dir.load();
        assert_eq!(index.services.len(), 1, "last good object kept");
        assert!(index
            .source_problems
            .iter()
            .any(|p| p.message.contains("keeping the 1 object")));

        write(tmp.path(), "svc.yaml", &SERVICE.replace("web", "fixed"));
        let index = dir.load();
        let names: Vec<&str> = index.services.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, vec!["fixed"]);
        assert!(index.source_problems.is_empty());
    }

    #[test]
    fn an_object_that_turns_invalid_keeps_its_last_version_while_its_siblings_update() {
        let tmp = tempfile::tempdir().unwrap();
        let two = format!("{SERVICE}---\n{}", SERVICE.replace("web", "api"));
        write(tmp.path(), "svc.yaml", &two);
        let mut dir = ManifestDir::open(tmp.path()).unwrap();
        assert_eq!(dir.load().services.len(), 2);

        let broken = format!(
            "{}---\n{}",
            SERVICE.replace("port: 80", "port: eighty"),
            SERVICE
                .replace("web", "api")
                .replace("port: 80", "port: 81")
        );
        write(tmp.path(), "svc.yaml", &broken);
        let index = dir.load();
        let web = &index.services[&Key::new("default", "web")];
        assert_eq!(
            web.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
            80
        );
        let api = &index.services[&Key::new("default", "api")];
        assert_eq!(
            api.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
            81
        );
        assert_eq!(
            index.source_problems.len(),
            2,
            "{:?}",
            index.source_problems
        );
    }

    #[test]
    fn a_removed_file_removes_its_objects() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "svc.yaml", SERVICE);
        let mut dir = ManifestDir::open(tmp.path()).unwrap();
        assert_eq!(dir.load().services.len(), 1);
        std::fs::remove_file(tmp.path().join("svc.yaml")).unwrap();
        assert!(dir.load().services.is_empty());
    }

    #[test]
    fn the_same_object_in_two_files_is_a_problem_and_the_first_file_wins() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "a.yaml", SERVICE);
        write(
            tmp.path(),
            "b.yaml",
            &SERVICE.replace("port: 80", "port: 81"),
        );
        let mut dir = ManifestDir::open(tmp.path()).unwrap();
        let index = dir.load();
        let web = &index.services[&Key::new("default", "web")];
        assert_eq!(
            web.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
            80
        );
        assert_eq!(index.source_problems[0].reason, Reason::DuplicateObject);
        assert!(index.source_problems[0]
            .message
            .contains("a.yaml and again in b.yaml"));
    }

    #[test]
    fn a_configmap_style_mount_is_read_once() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "..2026_11_21/svc.yaml", SERVICE);
        std::os::unix::fs::symlink("..2026_11_21", tmp.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/svc.yaml", tmp.path().join("svc.yaml")).unwrap();
        let mut dir = ManifestDir::open(tmp.path()).unwrap();
        let index = dir.load();
        assert_eq!(index.services.len(), 1);
        assert!(
            index.source_problems.is_empty(),
            "{:?}",
            index.source_problems
        );
    }

    #[test]
    fn opening_a_missing_directory_says_so() {
        let err = ManifestDir::open("/no/such/dir").err().unwrap();
        assert!(err.to_string().contains("/no/such/dir"));
    }

    #[tokio::test]
    async fn a_burst_of_writes_is_noticed_as_a_change() {
        let tmp = tempfile::tempdir().unwrap();
        let mut watch = DirWatch::new(tmp.path());
        for i in 0..5 {
            write(
                tmp.path(),
                "a.yaml",
                &SERVICE.replace("80", &format!("8{i}")),
            );
        }
        let noticed = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
        assert_eq!(noticed.ok(), Some(true));
    }
}
