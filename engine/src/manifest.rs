//! The per-shard manifest: a checksummed log of version edits.
//!
//! Layout of `MANIFEST-<n>`:
//!
//! ```text
//! header : magic "TRCMANIF" (8 bytes) | format version u32 LE | crc32 of the previous 12 bytes u32 LE
//! record : payload length u32 LE | crc32(payload) u32 LE | payload (an encoded VersionEdit)
//! ```
//!
//! Format version 2 added the "uploaded" field (tag 6): a file's upload to the object
//! store completed. Version 1 manifests replay with no file uploaded, so every file
//! is queued for upload again.
//!
//! `CURRENT` names the live manifest; it is replaced atomically (temp file, fsync,
//! rename, fsync of the directory). Every open writes a fresh manifest whose first
//! record is a snapshot of the recovered state, so the log never grows without bound
//! across restarts. Each append is followed by fsync before the edit is applied in
//! memory: what the manifest says is what a restart sees.
//!
//! Recovery tolerates a torn final record (a crash in the middle of an append) and
//! reports any other damage as Corruption naming the file and offset.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::codec::{crc32, verify_crc32};
use crate::error::{Error, ErrorDetail, Result};
use crate::version::{FileDesc, VersionEdit};

const MAGIC: &[u8; 8] = b"TRCMANIF";
/// Manifest format version written by this build.
pub(crate) const MANIFEST_FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 8;
/// Largest record accepted on replay; a larger length field means damage.
const MAX_RECORD_BYTES: u32 = 256 << 20;

/// The state a manifest replays to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ManifestState {
    /// Live files by id, with their level.
    pub(crate) files: BTreeMap<u64, (u32, FileDesc)>,
    pub(crate) last_seqno: u64,
    pub(crate) next_file_number: u64,
    pub(crate) compact_pointers: BTreeMap<u32, Vec<u8>>,
    /// Live files whose upload to the object store completed.
    pub(crate) uploaded: BTreeSet<u64>,
}

impl ManifestState {
    pub(crate) fn apply(&mut self, edit: &VersionEdit) {
        if let Some(s) = edit.last_seqno {
            self.last_seqno = self.last_seqno.max(s);
        }
        if let Some(n) = edit.next_file_number {
            self.next_file_number = self.next_file_number.max(n);
        }
        for (_, id) in &edit.deleted {
            self.files.remove(id);
            self.uploaded.remove(id);
        }
        for (level, f) in &edit.added {
            self.files.insert(f.id, (*level, f.clone()));
        }
        // An upload may finish after its file was compacted away: only live files count.
        for id in &edit.uploaded {
            if self.files.contains_key(id) {
                self.uploaded.insert(*id);
            }
        }
        for (level, k) in &edit.compact_pointers {
            self.compact_pointers.insert(*level, k.clone());
        }
    }

    /// One edit that recreates this state from nothing.
    pub(crate) fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            last_seqno: Some(self.last_seqno),
            next_file_number: Some(self.next_file_number),
            added: self
                .files
                .values()
                .map(|(level, f)| (*level, f.clone()))
                .collect(),
            deleted: Vec::new(),
            compact_pointers: self
                .compact_pointers
                .iter()
                .map(|(l, k)| (*l, k.clone()))
                .collect(),
            uploaded: self.uploaded.iter().copied().collect(),
        }
    }
}

/// An open manifest, appended to as versions change.
pub(crate) struct Manifest {
    path: PathBuf,
    file: File,
}

fn manifest_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

impl Manifest {
    /// Replays the manifest `CURRENT` names; `None` when the directory has no CURRENT.
    pub(crate) fn recover(dir: &Path) -> Result<Option<(ManifestState, u64)>> {
        let current = dir.join("CURRENT");
        let name = match fs::read_to_string(&current) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &current, e)),
        };
        let name = name.trim_end_matches('\n');
        let number = name
            .strip_prefix("MANIFEST-")
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                Error::corrupt(&current, 0, format!("names {name:?}, not a manifest"))
            })?;
        let path = dir.join(name);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| Error::io("read", &path, e))?;
        let state = replay(&path, &bytes)?;
        Ok(Some((state, number)))
    }

    /// Writes a new manifest holding `state`, points CURRENT at it and removes the
    /// previous one.
    pub(crate) fn create(dir: &Path, state: &ManifestState, number: u64) -> Result<Manifest> {
        let path = dir.join(manifest_name(number));
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
        let crc = crc32(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        file.write_all(&header)
            .map_err(|e| Error::io("write", &path, e))?;
        let mut m = Manifest { path, file };
        m.append(&state.snapshot_edit())?;
        set_current(dir, &manifest_name(number))?;
        if number > 0 {
            let old = dir.join(manifest_name(number - 1));
            match fs::remove_file(&old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &old, e)),
            }
        }
        Ok(m)
    }

    /// Appends an edit and syncs it to disk.
    pub(crate) fn append(&mut self, edit: &VersionEdit) -> Result<()> {
        let payload = edit.encode();
        let mut rec = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32(&payload).to_le_bytes());
        rec.extend_from_slice(&payload);
        self.file
            .write_all(&rec)
            .map_err(|e| Error::io("append to", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("fsync", &self.path, e))
    }
}

/// Replays manifest bytes into a state.
pub(crate) fn replay(path: &Path, bytes: &[u8]) -> Result<ManifestState> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(Error::corrupt(path, 0, "missing manifest magic"));
    }
    let stored = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    verify_crc32(path, 0, stored, &bytes[..12])?;
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version > MANIFEST_FORMAT_VERSION {
        return Err(ErrorDetail::UnsupportedVersion {
            file: path.to_path_buf(),
            found: version,
            supported: MANIFEST_FORMAT_VERSION,
        }
        .into());
    }
    let mut state = ManifestState::default();
    let mut pos = HEADER_LEN;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < RECORD_HEADER_LEN {
            tracing::warn!(file = %path.display(), offset = pos, "ignoring torn manifest tail");
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD_BYTES {
            return Err(Error::corrupt(
                path,
                pos as u64,
                format!("record length {len}"),
            ));
        }
        let end = RECORD_HEADER_LEN + len as usize;
        if rest.len() < end {
            tracing::warn!(file = %path.display(), offset = pos, "ignoring torn manifest tail");
            break;
        }
        let payload = &rest[RECORD_HEADER_LEN..end];
        if let Err(e) = verify_crc32(path, pos as u64, stored, payload) {
            if pos + end == bytes.len() {
                // The last record, cut or half-written by a crash during its append.
                tracing::warn!(file = %path.display(), offset = pos, "ignoring torn manifest tail");
                break;
            }
            return Err(e);
        }
        let edit =
            VersionEdit::decode(payload).map_err(|what| Error::corrupt(path, pos as u64, what))?;
        state.apply(&edit);
        pos += end;
    }
    Ok(state)
}

/// Atomically points `CURRENT` at `name`.
fn set_current(dir: &Path, name: &str) -> Result<()> {
    replace_file(dir, "CURRENT", format!("{name}\n").as_bytes())
}

/// Replaces `dir/name` with `bytes` atomically and durably: temp file, fsync,
/// rename, fsync of the directory.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    {
        let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write", &tmp, e))?;
    }
    fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    sync_dir(dir)
}

/// fsyncs a directory so renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(id: u64) -> FileDesc {
        FileDesc {
            id,
            size_bytes: 100,
            smallest: vec![0; 12],
            largest: vec![1; 12],
            entries: 1,
            deletions: 0,
            min_seqno: 1,
            max_seqno: 1,
        }
    }

    #[test]
    fn reopen_replays_edits_and_tolerates_only_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Manifest::recover(dir.path()).unwrap().is_none());
        let mut state = ManifestState::default();
        let mut m = Manifest::create(dir.path(), &state, 1).unwrap();
        let e1 = VersionEdit {
            added: vec![(0, desc(1)), (0, desc(2))],
            last_seqno: Some(10),
            next_file_number: Some(3),
            ..Default::default()
        };
        let e2 = VersionEdit {
            added: vec![(1, desc(3))],
            deleted: vec![(0, 1), (0, 2)],
            next_file_number: Some(4),
            // File 2 is already gone: its late upload must not resurrect it.
            uploaded: vec![2, 3],
            ..Default::default()
        };
        for e in [&e1, &e2] {
            m.append(e).unwrap();
            state.apply(e);
        }
        let (got, n) = Manifest::recover(dir.path()).unwrap().unwrap();
        assert_eq!((got.clone(), n), (state.clone(), 1));
        assert_eq!(got.files.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(got.uploaded.iter().copied().collect::<Vec<_>>(), vec![3]);

        // A torn final record is ignored; the earlier edits survive.
        let path = dir.path().join("MANIFEST-000001");
        let full = fs::read(&path).unwrap();
        let torn = &full[..full.len() - 3];
        let replayed = replay(&path, torn).unwrap();
        assert_eq!(replayed.files.len(), 2, "state after e1 only");

        // Damage in the middle is corruption, named with file and offset.
        let mut bad = full.clone();
        bad[HEADER_LEN + 10] ^= 0xff;
        let err = replay(&path, &bad).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corruption);
        assert!(err.to_string().contains("MANIFEST-000001"), "{err}");

        // A new manifest snapshots the state and replaces the old one.
        let _m2 = Manifest::create(dir.path(), &state, 2).unwrap();
        assert!(dir.path().join("MANIFEST-000002").exists());
        assert!(!path.exists());
        let (again, _) = Manifest::recover(dir.path()).unwrap().unwrap();
        assert_eq!(again, state);
    }

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/manifest")
            .join(name)
    }

    /// Compares `bytes` with a checked-in fixture (`TERRACE_REGEN_FIXTURES=1` rewrites it).
    fn golden(name: &str, bytes: &[u8]) {
        let path = fixture(name);
        if std::env::var_os("TERRACE_REGEN_FIXTURES").is_some_and(|v| v == "1") {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
        }
        let want = fs::read(&path).expect("fixture missing; run with TERRACE_REGEN_FIXTURES=1");
        assert!(
            want == bytes,
            "{} changed: the manifest format moved; bump MANIFEST_FORMAT_VERSION and \
             regenerate with TERRACE_REGEN_FIXTURES=1 if intended",
            path.display()
        );
    }

    fn golden_edits(with_uploads: bool) -> Vec<VersionEdit> {
        vec![
            VersionEdit {
                added: vec![(0, desc(1)), (0, desc(2))],
                last_seqno: Some(10),
                next_file_number: Some(3),
                ..Default::default()
            },
            VersionEdit {
                added: vec![(1, desc(3))],
                deleted: vec![(0, 1), (0, 2)],
                next_file_number: Some(4),
                compact_pointers: vec![(1, b"mid".to_vec())],
                uploaded: if with_uploads { vec![3] } else { Vec::new() },
                ..Default::default()
            },
        ]
    }

    fn written(edits: &[VersionEdit]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::create(dir.path(), &ManifestState::default(), 1).unwrap();
        for e in edits {
            m.append(e).unwrap();
        }
        fs::read(dir.path().join("MANIFEST-000001")).unwrap()
    }

    #[test]
    fn version_2_layout_matches_the_golden_file() {
        let bytes = written(&golden_edits(true));
        golden("v2-basic.manifest", &bytes);
        let state = replay(
            Path::new("v2"),
            &fs::read(fixture("v2-basic.manifest")).unwrap(),
        )
        .unwrap();
        assert_eq!(state.files.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(state.uploaded.iter().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(state.compact_pointers.get(&1), Some(&b"mid".to_vec()));
    }

    #[test]
    fn version_1_manifests_still_replay_with_nothing_uploaded() {
        // Version 1 wrote the same records without tag 6; only the header differs.
        let mut v1 = written(&golden_edits(false));
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32(&v1[..12]);
        v1[12..16].copy_from_slice(&crc.to_le_bytes());
        golden("v1-basic.manifest", &v1);
        let state = replay(
            Path::new("v1"),
            &fs::read(fixture("v1-basic.manifest")).unwrap(),
        )
        .unwrap();
        assert_eq!(state.files.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert!(state.uploaded.is_empty());
        assert_eq!(state.last_seqno, 10);

        // A version this build does not know is refused, not misread.
        let mut v3 = v1.clone();
        v3[8..12].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32(&v3[..12]);
        v3[12..16].copy_from_slice(&crc.to_le_bytes());
        let err = replay(Path::new("v3"), &v3).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corruption, "{err}");
    }
}
