//! Compares a local-directory object store (the embedded `<db>/objects`, see
//! `terrace::EMBEDDED_STORE_DIR`, or the `file://` store of checkpoint mode) with the
//! live files of a database, after a read-back closed it.
//!
//! A live file the manifest records as uploaded must exist in the store with its
//! size: otherwise the database silently lost its only durable copy once the local
//! copy goes. Objects no live file names (files compaction retired, whose objects
//! the garbage collector deletes once no checkpoint names them; uploads of kills
//! that never got their manifest record) and half-written temporary objects are
//! only counted.

use std::path::Path;

use terrace::LiveFile;

use super::crash::verify::{Problem, Wrong};

/// What the store holds next to what the database uses.
#[derive(Clone, Debug, Default)]
pub struct StoreAudit {
    /// SST objects in the store.
    pub objects: u64,
    /// Of those, objects no live file names.
    pub orphans: u64,
    /// Bytes of the orphans.
    pub orphan_bytes: u64,
    /// Files in the store's temporary directory.
    pub temporary: u64,
    /// Uploaded live files whose object is missing or of the wrong size.
    pub problems: Vec<Problem>,
}

fn count_files(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

impl std::fmt::Display for StoreAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the object store holds {} SSTs, {} of them not live ({} bytes; left to the \
             garbage collector), and {} temporary files",
            self.objects, self.orphans, self.orphan_bytes, self.temporary
        )
    }
}

/// Every file under `dir`, with its path relative to `root` and its size.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(root, &e.path(), out),
            Ok(_) => {
                if let Ok(rel) = e.path().strip_prefix(root) {
                    let size = e.metadata().map_or(0, |m| m.len());
                    out.push((rel.to_string_lossy().into_owned(), size));
                }
            }
            Err(_) => {}
        }
    }
}

/// Audits the store in directory `store` against `files` (their `object_key`s name
/// their objects).
pub fn audit(store: &Path, files: &[LiveFile]) -> StoreAudit {
    let mut a = StoreAudit {
        temporary: count_files(&store.join(".tmp")),
        ..StoreAudit::default()
    };
    let mut objects = Vec::new();
    walk(store, store, &mut objects);
    for (key, size) in objects
        .iter()
        .filter(|(k, _)| k.ends_with(".sst") && !k.starts_with(".tmp"))
    {
        a.objects += 1;
        if !files.iter().any(|f| &f.object_key == key) {
            a.orphans += 1;
            a.orphan_bytes += size;
        }
    }
    for f in files.iter().filter(|f| f.uploaded) {
        let path = store.join(&f.object_key);
        let found = match std::fs::metadata(&path) {
            Ok(m) if m.len() == f.size_bytes => continue,
            Ok(m) => format!("an object of {} bytes", m.len()),
            Err(e) => format!("no object ({e})"),
        };
        a.problems.push(Problem {
            wrong: Wrong::Lost,
            key: None,
            shard: f.shard,
            expected: format!(
                "{} ({} bytes, L{}, recorded as uploaded) in the object store",
                path.display(),
                f.size_bytes,
                f.level
            ),
            found,
        });
    }
    a
}
