//! Entry points for fuzzers and robustness tests of the metadata decoders: manifest
//! records and files, version edits, `TERRACE-META`, and the checkpoint objects
//! (`CHECKPOINT` and a shard's `.ckpt`), callable on arbitrary bytes.
//! Each returns the parse error or a summary; a decode that succeeds must also
//! round-trip (re-encoding and decoding again gives the same value), and a panic
//! anywhere is a bug. Not a stable API. The SST decoders are in
//! [`crate::sst::fuzzing`].

use std::path::Path;

use crate::checkpoint::format::{CheckpointHead, CheckpointMeta, ShardCheckpoint};
use crate::meta::DbMeta;
use crate::version::manifest::replay;
use crate::version::VersionEdit;

/// Decodes `data` as one version edit (a manifest record's payload). Returns the
/// number of files it adds and deletes.
pub fn decode_version_edit(data: &[u8]) -> Result<usize, String> {
    let edit = VersionEdit::decode(data).map_err(|m| m.0)?;
    let again = VersionEdit::decode(&edit.encode()).map_err(|m| m.0)?;
    assert_eq!(edit, again, "a decoded edit must re-encode to itself");
    Ok(edit.added.len() + edit.deleted.len())
}

/// Replays `data` as a whole manifest file (header, then framed, checksummed
/// records). Returns the number of live files.
pub fn replay_manifest(data: &[u8]) -> Result<usize, String> {
    let state = replay(Path::new("fuzz/MANIFEST"), data).map_err(|e| e.to_string())?;
    // Replay checks the level invariants on every apply in debug builds (fuzzing
    // builds have debug assertions on).
    if cfg!(debug_assertions) {
        if let Err(e) = state.check_invariants() {
            panic!("replay accepted a state that breaks the invariants: {e}");
        }
    }
    Ok(state.files.len())
}

/// Decodes `data` as a `TERRACE-META` file. Returns the number of tables.
pub fn decode_meta(data: &[u8]) -> Result<usize, String> {
    let meta = DbMeta::decode(Path::new("fuzz/TERRACE-META"), data).map_err(|e| e.to_string())?;
    let again = DbMeta::decode(Path::new("fuzz/TERRACE-META"), &meta.encode())
        .map_err(|e| e.to_string())?;
    assert_eq!(meta, again, "decoded metadata must re-encode to itself");
    Ok(meta.tables.len())
}

/// Decodes `data` as a checkpoint's top-level `CHECKPOINT` object. Returns the
/// number of shard objects it names.
pub fn decode_checkpoint(data: &[u8]) -> Result<usize, String> {
    let meta = CheckpointMeta::decode("fuzz/CHECKPOINT", data).map_err(|e| e.to_string())?;
    let again =
        CheckpointMeta::decode("fuzz/CHECKPOINT", &meta.encode()).map_err(|e| e.to_string())?;
    assert_eq!(meta, again, "a decoded checkpoint must re-encode to itself");
    Ok(meta.shard_objects.len())
}

/// Decodes `data` as a `checkpoints/LATEST` object, and the commit object and
/// shard objects it carries. Returns the number of shard objects it carries.
pub fn decode_checkpoint_head(data: &[u8]) -> Result<usize, String> {
    let head = CheckpointHead::decode("fuzz/LATEST", data).map_err(|e| e.to_string())?;
    let again = CheckpointHead::decode("fuzz/LATEST", &head.encode()).map_err(|e| e.to_string())?;
    assert_eq!(
        head, again,
        "a decoded LATEST object must re-encode to itself"
    );
    let _ = decode_checkpoint(&head.checkpoint);
    for (_, shard) in &head.shards {
        let _ = decode_shard_checkpoint(shard);
    }
    Ok(head.shards.len())
}

/// Decodes `data` as a shard's checkpoint object. Returns the number of files it
/// names.
pub fn decode_shard_checkpoint(data: &[u8]) -> Result<usize, String> {
    let shard = ShardCheckpoint::decode("fuzz/shard-0000.ckpt", data).map_err(|e| e.to_string())?;
    let again = ShardCheckpoint::decode("fuzz/shard-0000.ckpt", &shard.encode())
        .map_err(|e| e.to_string())?;
    assert_eq!(
        shard, again,
        "a decoded shard checkpoint must re-encode to itself"
    );
    Ok(shard.files.len())
}
