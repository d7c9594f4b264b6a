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
//! is queued for upload again. Version 3 names each file's object by lineage and
//! number (tag 7 replaces tag 3) and records the shard's lineage (tag 8); files of
//! older manifests keep their objects named by shard and id. Version 4 adds each
//! file reference's key-group clip range and home prefix (tag 9 replaces tag 7).
//!
//! `CURRENT` names the live manifest; it is replaced atomically (temp file, fsync,
//! rename, fsync of the directory). A new manifest starts with one record holding a
//! snapshot of the state; one is written at every open and whenever the log grows
//! past `Options::manifest_roll_bytes`. Each append is followed by fdatasync before
//! the edit is applied in memory: what the manifest says is what a restart sees.
//! No record is larger than [`MAX_RECORD_BYTES`], on write as on replay.
//!
//! Recovery tolerates a torn final record (a crash in the middle of an append) and
//! reports any other damage as Corruption naming the file and offset.
//!
//! Everything here is blocking file I/O: the [`VersionSet`](super::VersionSet) runs
//! it off the shard thread.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{ManifestState, VersionEdit};
use crate::encoding::{crc32, verify_crc32};
use crate::error::{Error, ErrorDetail, Result};
use crate::files::{manifest_name, parse_manifest_name, replace_file, sync_dir, CURRENT_FILE};

const MAGIC: &[u8; 8] = b"TRCMANIF";
/// Manifest format version written by this build.
pub(crate) const MANIFEST_FORMAT_VERSION: u32 = 5;
const HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 8;
/// Largest record payload, written or replayed. A larger edit is refused before
/// anything is written; a larger length field on replay means damage.
pub(crate) const MAX_RECORD_BYTES: usize = 256 << 20;
/// How often a reader retries when the manifest CURRENT named was replaced while it
/// looked (a writer rolled its log).
const CURRENT_RACE_RETRIES: usize = 20;

/// What recovery found in a shard directory.
pub(crate) struct Recovered {
    pub(crate) state: ManifestState,
    /// Number of the manifest CURRENT names.
    pub(crate) number: u64,
}

/// Replays the manifest `CURRENT` names; `None` when the directory has no CURRENT.
/// A manifest replaced between reading CURRENT and opening it (a live writer rolled
/// its log) is retried with the new CURRENT.
pub(crate) fn recover(dir: &Path) -> Result<Option<Recovered>> {
    let current = dir.join(CURRENT_FILE);
    let mut attempt = 0;
    loop {
        let name = match fs::read_to_string(&current) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &current, e)),
        };
        let name = name.trim_end_matches('\n');
        let number = parse_manifest_name(name).ok_or_else(|| {
            Error::corrupt(&current, 0, format!("names {name:?}, not a manifest"))
        })?;
        let path = dir.join(name);
        let mut bytes = Vec::new();
        match File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && attempt < CURRENT_RACE_RETRIES =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        }
        let state = replay(&path, &bytes)?;
        return Ok(Some(Recovered { state, number }));
    }
}

/// Frames an encoded edit as a record, refusing payloads over [`MAX_RECORD_BYTES`].
pub(crate) fn encode_record(payload: &[u8]) -> Result<Vec<u8>> {
    if payload.len() > MAX_RECORD_BYTES {
        return Err(Error::internal(format!(
            "manifest record of {} bytes exceeds the limit of {MAX_RECORD_BYTES} bytes",
            payload.len()
        )));
    }
    let mut rec = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32(payload).to_le_bytes());
    rec.extend_from_slice(payload);
    Ok(rec)
}

/// A failure injected into a manifest append (tests of the poisoning rule).
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) enum InjectedFailure {
    /// Write this many bytes of the record, then fail (a torn record on disk).
    TornWrite(usize),
    /// Write the whole record, then fail the fdatasync.
    Fsync,
}

/// The open manifest a writer appends to.
pub(crate) struct ManifestLog {
    dir: PathBuf,
    path: PathBuf,
    number: u64,
    file: File,
    len_bytes: u64,
    /// Fails the append after this many more succeed.
    #[cfg(test)]
    pub(crate) inject: Option<(u32, InjectedFailure)>,
}

impl ManifestLog {
    /// Writes `MANIFEST-<number>` holding one record (`snapshot`, an encoded snapshot
    /// edit), syncs it, points CURRENT at it and removes every other manifest.
    pub(crate) fn create(dir: &Path, number: u64, snapshot: &[u8]) -> Result<ManifestLog> {
        let path = dir.join(manifest_name(number));
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + RECORD_HEADER_LEN + snapshot.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
        let crc = crc32(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&encode_record(snapshot)?);
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("write", &path, e))?;
        replace_file(
            dir,
            CURRENT_FILE,
            format!("{}\n", manifest_name(number)).as_bytes(),
        )?;
        remove_other_manifests(dir, number)?;
        Ok(ManifestLog {
            dir: dir.to_path_buf(),
            path,
            number,
            file,
            len_bytes: bytes.len() as u64,
            #[cfg(test)]
            inject: None,
        })
    }

    /// Appends a framed record and syncs it. After an error the log must not be
    /// appended to again: the record may be half on disk.
    pub(crate) fn append(&mut self, record: &[u8]) -> Result<()> {
        #[cfg(test)]
        if let Some((left, failure)) = self.inject {
            if left == 0 {
                return self.fail_injected(record, failure);
            }
            self.inject = Some((left - 1, failure));
        }
        self.file
            .write_all(record)
            .map_err(|e| Error::io("append to", &self.path, e))?;
        self.len_bytes += record.len() as u64;
        self.file
            .sync_data()
            .map_err(|e| Error::io("fsync", &self.path, e))
    }

    #[cfg(test)]
    fn fail_injected(&mut self, record: &[u8], failure: InjectedFailure) -> Result<()> {
        let injected = std::io::Error::other("injected failure");
        match failure {
            InjectedFailure::TornWrite(n) => {
                let n = n.min(record.len());
                self.file
                    .write_all(&record[..n])
                    .map_err(|e| Error::io("append to", &self.path, e))?;
                Err(Error::io("append to", &self.path, injected))
            }
            InjectedFailure::Fsync => {
                self.file
                    .write_all(record)
                    .map_err(|e| Error::io("append to", &self.path, e))?;
                Err(Error::io("fsync", &self.path, injected))
            }
        }
    }

    /// Bytes in the log so far.
    pub(crate) fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Replaces this log with `MANIFEST-<number + 1>` starting from `snapshot`.
    pub(crate) fn roll(&self, snapshot: &[u8]) -> Result<ManifestLog> {
        ManifestLog::create(&self.dir, self.number + 1, snapshot)
    }
}

/// Removes manifests other than `keep` (older logs, or a roll that crashed before
/// CURRENT named it).
fn remove_other_manifests(dir: &Path, keep: u64) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(parse_manifest_name) else {
            continue;
        };
        if n != keep {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", entry.path(), e)),
            }
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Replays manifest bytes into a state, with the same [`ManifestState::apply`] live
/// edits use.
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
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD_BYTES {
            return Err(Error::corrupt(
                path,
                pos as u64,
                format!("record length {len} exceeds {MAX_RECORD_BYTES}"),
            ));
        }
        let end = RECORD_HEADER_LEN + len;
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
        let edit = VersionEdit::decode(payload).map_err(|m| m.at(path, pos as u64))?;
        state
            .apply(&edit)
            .map_err(|what| Error::corrupt(path, pos as u64, what))?;
        pos += end;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::FileDesc;

    fn log(dir: &Path, state: &ManifestState, n: u64) -> ManifestLog {
        ManifestLog::create(dir, n, &state.snapshot_edit().encode()).unwrap()
    }

    fn append(m: &mut ManifestLog, e: &VersionEdit) {
        m.append(&encode_record(&e.encode()).unwrap()).unwrap();
    }

    const LINEAGE: u64 = 0x1ea9e;

    fn desc(id: u64) -> FileDesc {
        FileDesc {
            id,
            object: crate::version::ObjectId {
                lineage: LINEAGE,
                number: id,
            },
            size_bytes: 100,
            smallest: vec![0; 12],
            largest: vec![1; 12],
            entries: 1,
            deletions: 0,
            min_seqno: 1,
            max_seqno: 1,
            clip: None,
            home: String::new(),
            meta_bytes: 0,
        }
    }

    #[test]
    fn a_record_over_the_limit_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = log(dir.path(), &ManifestState::default(), 1);
        let len = m.len_bytes();
        let big = vec![0u8; MAX_RECORD_BYTES + 1];
        let err = encode_record(&big).unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        assert!(encode_record(&big[..MAX_RECORD_BYTES]).is_ok());
        assert_eq!(m.len_bytes(), len);
        append(&mut m, &VersionEdit::default());
    }

    #[test]
    fn reopen_replays_edits_and_tolerates_only_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        assert!(recover(dir.path()).unwrap().is_none());
        let mut state = ManifestState::default();
        let mut m = log(dir.path(), &state, 1);
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
            append(&mut m, e);
            state.apply(e).unwrap();
        }
        let r = recover(dir.path()).unwrap().unwrap();
        let got = r.state;
        assert_eq!((got.clone(), r.number), (state.clone(), 1));
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
        let _m2 = m.roll(&state.snapshot_edit().encode()).unwrap();
        assert!(dir.path().join("MANIFEST-000002").exists());
        assert!(!path.exists());
        let again = recover(dir.path()).unwrap().unwrap();
        assert_eq!((again.state, again.number), (state, 2));
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

    fn golden_edits() -> Vec<VersionEdit> {
        vec![
            VersionEdit {
                added: vec![(0, desc(1)), (0, desc(2))],
                last_seqno: Some(10),
                next_file_number: Some(3),
                lineage: Some(LINEAGE),
                ..Default::default()
            },
            VersionEdit {
                added: vec![(1, desc(3))],
                deleted: vec![(0, 1), (0, 2)],
                next_file_number: Some(4),
                compact_pointers: vec![(1, b"mid".to_vec())],
                uploaded: vec![3],
                ..Default::default()
            },
        ]
    }

    fn written(edits: &[VersionEdit]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut m = log(dir.path(), &ManifestState::default(), 1);
        for e in edits {
            append(&mut m, e);
        }
        fs::read(dir.path().join("MANIFEST-000001")).unwrap()
    }

    /// Format 4's golden edits: format 3's, plus a clipped file referenced from
    /// another database's prefix.
    fn golden_edits_v4() -> Vec<VersionEdit> {
        let mut edits = golden_edits();
        let mut clipped = desc(4);
        clipped.smallest = vec![0, 1, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];
        clipped.largest = vec![0, 9, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];
        clipped.clip = Some(crate::key::KeyGroupRange::new(2, 5));
        clipped.home = "db-a".into();
        edits.push(VersionEdit {
            added: vec![(2, clipped)],
            uploaded: vec![4],
            ..Default::default()
        });
        edits
    }

    /// Format 5's golden edits: format 4's, with the files' metadata sizes.
    fn golden_edits_v5() -> Vec<VersionEdit> {
        let mut edits = golden_edits_v4();
        for e in &mut edits {
            for (_, f) in &mut e.added {
                f.meta_bytes = 40 + f.id;
            }
        }
        edits
    }

    #[test]
    fn version_5_layout_matches_the_golden_file() {
        let bytes = written(&golden_edits_v5());
        golden("v5-meta.manifest", &bytes);
        let state = replay(
            Path::new("v5"),
            &fs::read(fixture("v5-meta.manifest")).unwrap(),
        )
        .unwrap();
        assert_eq!(state.files.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(state.files[&3].1.meta_bytes, 43);
        let (level, clipped) = &state.files[&4];
        assert_eq!((*level, clipped.meta_bytes), (2, 44));
        assert_eq!(clipped.clip, Some(crate::key::KeyGroupRange::new(2, 5)));
        assert_eq!(clipped.home, "db-a");
        assert_eq!(state.lineage, LINEAGE);
    }

    #[test]
    fn version_4_manifests_still_replay_without_metadata_sizes() {
        let state = replay(
            Path::new("v4"),
            &fs::read(fixture("v4-clip.manifest")).unwrap(),
        )
        .unwrap();
        assert!(state.files.values().all(|(_, f)| f.meta_bytes == 0));
        assert_eq!(state.files.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(state.files[&3].1.object, desc(3).object);
        let (level, clipped) = &state.files[&4];
        assert_eq!(*level, 2);
        assert_eq!(clipped.clip, Some(crate::key::KeyGroupRange::new(2, 5)));
        assert_eq!(clipped.home, "db-a");
        assert_eq!(
            clipped.key_groups(),
            Some(crate::key::KeyGroupRange::new(2, 5))
        );
        assert_eq!(state.lineage, LINEAGE);
        assert_eq!(
            state.uploaded.iter().copied().collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(state.compact_pointers.get(&1), Some(&b"mid".to_vec()));
    }

    #[test]
    fn older_manifests_still_replay_with_objects_named_by_id() {
        // Format 3 (checked in): objects by lineage and number, no clips.
        let state = replay(
            Path::new("v3"),
            &fs::read(fixture("v3-basic.manifest")).unwrap(),
        )
        .unwrap();
        assert_eq!(state.files.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(state.files[&3].1, desc(3));
        assert_eq!(state.lineage, LINEAGE);
        assert_eq!(state.uploaded.iter().copied().collect::<Vec<_>>(), vec![3]);
        // Written by format 2 and 1 (checked in); version 1 had no uploaded field.
        for (name, uploaded) in [
            ("v2-basic.manifest", vec![3u64]),
            ("v1-basic.manifest", vec![]),
        ] {
            let bytes = fs::read(fixture(name)).unwrap();
            let state = replay(Path::new(name), &bytes).unwrap();
            assert_eq!(
                state.files.keys().copied().collect::<Vec<_>>(),
                vec![3],
                "{name}"
            );
            assert_eq!(
                state.files[&3].1.object,
                crate::version::ObjectId::legacy(3),
                "{name}"
            );
            assert_eq!(state.lineage, 0, "{name}");
            assert_eq!(state.uploaded.iter().copied().collect::<Vec<_>>(), uploaded);
            assert_eq!(state.last_seqno, 10);
        }

        // A version this build does not know is refused, not misread.
        let mut v6 = fs::read(fixture("v5-meta.manifest")).unwrap();
        v6[8..12].copy_from_slice(&6u32.to_le_bytes());
        let crc = crc32(&v6[..12]);
        v6[12..16].copy_from_slice(&crc.to_le_bytes());
        let err = replay(Path::new("v6"), &v6).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corruption, "{err}");
    }
}
