//! A project's files: a folder on disk, or a project embedded in the binary (the demo). Every path a
//! script names is relative to the project root and may not leave it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Where a project's files come from.
#[derive(Clone, Debug)]
pub enum ProjectFiles {
    /// A folder (`switchboard serve DIR`).
    Dir(PathBuf),
    /// Files compiled into the program, by relative path.
    Embedded(Arc<BTreeMap<String, String>>),
}

impl ProjectFiles {
    /// A project embedded as `(relative path, contents)` pairs.
    pub fn embedded(files: &[(&str, &str)]) -> Self {
        Self::Embedded(Arc::new(files.iter().map(|(path, text)| ((*path).to_owned(), (*text).to_owned())).collect()))
    }

    /// The contents of `path` (relative, `/`-separated).
    pub fn read(&self, path: &str) -> std::io::Result<String> {
        match self {
            Self::Dir(root) => std::fs::read_to_string(root.join(path)),
            Self::Embedded(files) => files.get(path).cloned().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{path}: no such file in the project"))
            }),
        }
    }

    /// Whether `path` is a file of the project.
    pub fn exists(&self, path: &str) -> bool {
        match self {
            Self::Dir(root) => root.join(path).is_file(),
            Self::Embedded(files) => files.contains_key(path),
        }
    }

    /// Every file whose name ends with `suffix`, as sorted relative paths. Hidden folders and
    /// `node_modules` are skipped.
    pub fn find(&self, suffix: &str) -> Vec<String> {
        let mut found = match self {
            Self::Dir(root) => {
                let mut found = Vec::new();
                walk(root, root, suffix, &mut found);
                found
            }
            Self::Embedded(files) => files.keys().filter(|p| p.ends_with(suffix)).cloned().collect(),
        };
        found.sort();
        found
    }

    /// How to name `path` in a message: the full path on disk, or the embedded path.
    pub fn describe(&self, path: &str) -> String {
        match self {
            Self::Dir(root) => root.join(path).display().to_string(),
            Self::Embedded(_) => format!("(built-in) {path}"),
        }
    }

    /// The folder, for a project on disk.
    pub fn root(&self) -> Option<&Path> {
        match self {
            Self::Dir(root) => Some(root),
            Self::Embedded(_) => None,
        }
    }
}

/// Every file a runtime has read, with a hash of what it read: a reload restarts the runtime when one
/// of them changed (the handler, or any module it imports).
#[derive(Clone, Default, Debug)]
pub(crate) struct ReadLog(Arc<std::sync::Mutex<BTreeMap<String, u64>>>);

impl ReadLog {
    /// Reads `path` from `files` and records it.
    pub(crate) fn read(&self, files: &ProjectFiles, path: &str) -> std::io::Result<String> {
        let text = files.read(path)?;
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_owned(), digest(&text));
        Ok(text)
    }

    /// Whether any recorded file now reads differently (or not at all).
    pub(crate) fn changed(&self, files: &ProjectFiles) -> bool {
        let recorded = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        recorded.iter().any(|(path, hash)| files.read(path).map(|text| digest(&text)).ok() != Some(*hash))
    }
}

fn digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

fn walk(root: &Path, dir: &Path, suffix: &str, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk(root, &path, suffix, found),
            Ok(kind) if kind.is_file() && name.ends_with(suffix) => {
                if let Ok(relative) = path.strip_prefix(root) {
                    let parts: Vec<String> =
                        relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                    found.push(parts.join("/"));
                }
            }
            _ => {}
        }
    }
}

/// Joins `name` to the folder `base_dir` (both relative to the project root) and normalises the
/// result. `None` if it would leave the root or is absolute.
pub(crate) fn join(base_dir: &str, name: &str) -> Option<String> {
    if name.starts_with('/') || name.contains('\\') || Path::new(name).is_absolute() {
        return None;
    }
    let mut parts: Vec<&str> = base_dir.split('/').filter(|p| !p.is_empty()).collect();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The folder part of a relative path (`a/b/c.js` -> `a/b`).
pub(crate) fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// A module name as a file path: `.js` is added unless it is there.
pub(crate) fn with_js(path: String) -> String {
    if path.ends_with(".js") || path.ends_with(".mjs") {
        path
    } else {
        path + ".js"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_project() {
        assert_eq!(join("", "my-project/ws-handler").as_deref(), Some("my-project/ws-handler"));
        assert_eq!(join("a/b", "../c").as_deref(), Some("a/c"));
        assert_eq!(join("a", "./x/./y").as_deref(), Some("a/x/y"));
        assert_eq!(join("", "../etc/passwd"), None);
        assert_eq!(join("a", "../../x"), None);
        assert_eq!(join("", "/etc/passwd"), None);
        assert_eq!(join("", "a\\b"), None);
        assert_eq!(dir_of("a/b/c.js"), "a/b");
        assert_eq!(dir_of("c.js"), "");
        assert_eq!(with_js("x".into()), "x.js");
        assert_eq!(with_js("x.js".into()), "x.js");
    }

    #[test]
    fn embedded_projects_list_and_read() {
        let files = ProjectFiles::embedded(&[("b.websocket", "{}"), ("a/x.websocket", "{}"), ("a/h.js", "1")]);
        assert_eq!(files.find(".websocket"), ["a/x.websocket", "b.websocket"]);
        assert_eq!(files.read("a/h.js").unwrap(), "1");
        assert!(files.read("nope.js").is_err());
    }
}
