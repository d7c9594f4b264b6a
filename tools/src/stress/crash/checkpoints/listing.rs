//! Reads the checkpoints of the run's local-directory object store straight from the
//! file system (the parent needs no engine for it, and no injected faults), and
//! damages them for `--sabotage`.
//!
//! Layout (see `docs/ARCHITECTURE.md`): `checkpoints/<id:020>-<db lineage:016x>/`
//! holds `shard-NNNN.ckpt` objects and, once committed, `CHECKPOINT`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::super::child::Sabotage;

/// The commit object of a checkpoint.
const COMMIT: &str = "CHECKPOINT";

/// The directories of checkpoint `id` (one per database lineage that used the id;
/// the run's ids are unique, so at most one).
fn dirs_of(store: &Path, id: u64) -> Vec<PathBuf> {
    let prefix = format!("{id:020}-");
    std::fs::read_dir(store.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Ids of the committed checkpoints in the store: directories holding `CHECKPOINT`.
pub fn committed(store: &Path) -> std::io::Result<BTreeSet<u64>> {
    let mut ids = BTreeSet::new();
    let entries = match std::fs::read_dir(store.join("checkpoints")) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.split('-').next().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if e.path().join(COMMIT).exists() {
            ids.insert(id);
        }
    }
    Ok(ids)
}

/// Damages checkpoint `id` behind the engine's back; says what it did.
pub fn sabotage(store: &Path, id: u64, how: Sabotage) -> std::io::Result<String> {
    let name = match how {
        Sabotage::DropCheckpoint => COMMIT,
        Sabotage::DropCheckpointPart => "shard-0000.ckpt",
        Sabotage::LoseDurable | Sabotage::ForgeValue => return Ok(String::new()),
    };
    let dirs = dirs_of(store, id);
    let Some(dir) = dirs.first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no directory of checkpoint {id} in {}", store.display()),
        ));
    };
    let path = dir.join(name);
    std::fs::remove_file(&path)?;
    Ok(format!(
        "deleted {} of checkpoint {id} behind the engine's back",
        path.display()
    ))
}
