//! Compares the embedded object store (`<db>/objects`, see `terrace::EMBEDDED_STORE_DIR`)
//! with the live files of a database, after a read-back closed it.
//!
//! A live file the manifest records as uploaded must exist in the store with its
//! size: otherwise the database silently lost its only durable copy once the local
//! copy goes. Objects no live file names (orphans of kills: deleted files whose
//! objects were not yet removed, uploads that never got their manifest record) and
//! half-written temporary objects are only counted: collecting them is a known gap
//! of the engine, and the counts show how fast they pile up (clean closes leave
//! some too: a close drops the I/O runtime with object deletes still in flight).

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
            "the object store holds {} SSTs, {} of them orphaned ({} bytes; not collected \
             yet, a known gap), and {} temporary files",
            self.objects, self.orphans, self.orphan_bytes, self.temporary
        )
    }
}

/// Audits the embedded store of the database in `db` against `files`.
pub fn audit(db: &Path, shards: u32, files: &[LiveFile]) -> StoreAudit {
    let store = db.join(terrace::EMBEDDED_STORE_DIR);
    let mut a = StoreAudit {
        temporary: count_files(&store.join(".tmp")),
        ..StoreAudit::default()
    };
    for shard in 0..shards {
        let dir = store.join(format!("shard-{shard:04}"));
        let mine: Vec<&LiveFile> = files.iter().filter(|f| f.shard == shard).collect();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".sst"))
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            a.objects += 1;
            if !mine.iter().any(|f| f.id == id) {
                a.orphans += 1;
                a.orphan_bytes += entry.metadata().map_or(0, |m| m.len());
            }
        }
        for f in mine.iter().filter(|f| f.uploaded) {
            let path = dir.join(format!("{:016x}.sst", f.id));
            let found = match std::fs::metadata(&path) {
                Ok(m) if m.len() == f.size_bytes => continue,
                Ok(m) => format!("an object of {} bytes", m.len()),
                Err(e) => format!("no object ({e})"),
            };
            a.problems.push(Problem {
                wrong: Wrong::Lost,
                key: None,
                shard,
                expected: format!(
                    "{} ({} bytes, L{}, recorded as uploaded) in the object store",
                    path.display(),
                    f.size_bytes,
                    f.level
                ),
                found,
            });
        }
    }
    a
}
