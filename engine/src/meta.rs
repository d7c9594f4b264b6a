//! The database-level metadata file, `TERRACE-META`.
//!
//! It fixes what must not change for the life of the database: the number of key
//! groups, the key-group prefix, the shard count, and the state table catalog
//! (names to ids; the list may grow, ids never change).
//!
//! ```text
//! magic "TRCMETA\0" (8) | format version u32 | shards u32 | max_key_groups u16 |
//! key_group_prefix_bytes u32 (0 = whole key) | table count u16 |
//! per table: id u16, name (u32 length + bytes) |
//! database lineage u64 (format 2) | key group range first u16, last u16 (format 3) |
//! table kinds (format 4): count u16, per table: id u16, flags u8 (bit 0: values
//! carry TTL stamps), merge operator name (u32 length + bytes; empty: none) |
//! crc32 of everything before u32
//! ```
//! A table's kind is recorded the first time a writer of format 4 opens it, and
//! later opens must agree (`TableMismatch`): values of a TTL table carry a stamp that
//! a plain table's do not, and merge operands only make sense to their operator. A
//! table without a record (catalogs of older formats, databases restored from a
//! checkpoint, which does not carry kinds) takes the kind the options give it.
//! Written to a temp file, fsynced and renamed into place. The database lineage is a
//! random id chosen when the database is created (or restored); its checkpoints are
//! named by it, so databases sharing a store never mix theirs. Format 1 files have
//! none; the next writer's open gives them one. Files before format 3 own every key
//! group.

use std::fs;
use std::path::{Path, PathBuf};

use crate::encoding::{crc32, verify_crc32, Enc, Reader};
use crate::error::{Error, ErrorDetail, Result};
use crate::files::{replace_file, META_FILE};
use crate::key::KeyGroupRange;
use crate::options::Options;

const MAGIC: &[u8; 8] = b"TRCMETA\0";
const META_FORMAT_VERSION: u32 = 4;
/// Most tables a catalog holds: ids are u16 and the count is persisted as a u16.
pub(crate) const MAX_TABLES: usize = u16::MAX as usize;

/// What `TERRACE-META` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DbMeta {
    pub(crate) shards: u32,
    pub(crate) max_key_groups: u16,
    pub(crate) key_group_prefix_bytes: Option<u32>,
    /// (id, name), ids unique.
    pub(crate) tables: Vec<(u16, String)>,
    /// Names this database's checkpoints; 0 until assigned (format 1).
    pub(crate) lineage: u64,
    /// The key groups the database owns (every group before format 3).
    pub(crate) key_group_range: KeyGroupRange,
    /// What each table was opened as (format 4), by id; tables without a record
    /// have not been opened by a writer of format 4.
    pub(crate) kinds: Vec<(u16, TableKind)>,
}

/// What `TERRACE-META` records of a table's behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TableKind {
    /// Values carry TTL stamps.
    pub(crate) ttl: bool,
    /// Name of its merge operator.
    pub(crate) merge_operator: Option<String>,
}

impl TableKind {
    fn of(opts: &Options, name: &str) -> TableKind {
        let o = opts.table_options.get(name);
        TableKind {
            ttl: o.is_some_and(|o| o.ttl.is_some()),
            merge_operator: o
                .and_then(|o| o.merge_operator.as_ref())
                .map(|op| op.name().to_string()),
        }
    }
}

impl DbMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        debug_assert!(
            self.tables.len() <= MAX_TABLES,
            "reconcile bounds the catalog"
        );
        let mut e = Enc::default();
        e.buf.extend_from_slice(MAGIC);
        e.u32(META_FORMAT_VERSION)
            .u32(self.shards)
            .u16(self.max_key_groups)
            .u32(self.key_group_prefix_bytes.unwrap_or(0))
            .u16(u16::try_from(self.tables.len()).unwrap_or(u16::MAX));
        for (id, name) in &self.tables {
            e.u16(*id).bytes(name.as_bytes());
        }
        e.u64(self.lineage)
            .u16(self.key_group_range.first)
            .u16(self.key_group_range.last)
            .u16(u16::try_from(self.kinds.len()).unwrap_or(u16::MAX));
        for (id, k) in &self.kinds {
            e.u16(*id)
                .u8(u8::from(k.ttl))
                .bytes(k.merge_operator.as_deref().unwrap_or("").as_bytes());
        }
        let crc = crc32(&e.buf);
        e.u32(crc);
        e.buf
    }

    pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<DbMeta> {
        if bytes.len() < MAGIC.len() + 4 || &bytes[..8] != MAGIC {
            return Err(Error::corrupt(path, 0, "missing metadata magic"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        verify_crc32(path, 0, stored, body)?;
        let mut d = Reader::at(body, MAGIC.len());
        let bad = |m: crate::encoding::Malformed| m.at(path, 0);
        let version = d.u32_le("format version").map_err(bad)?;
        if version > META_FORMAT_VERSION {
            return Err(ErrorDetail::UnsupportedVersion {
                file: path.to_path_buf(),
                found: version,
                supported: META_FORMAT_VERSION,
            }
            .into());
        }
        let shards = d.u32_le("shard count").map_err(bad)?;
        let max_key_groups = d.u16_le("max key groups").map_err(bad)?;
        let prefix = d.u32_le("key group prefix").map_err(bad)?;
        let n = d.u16_le("table count").map_err(bad)?;
        let mut tables: Vec<(u16, String)> = Vec::with_capacity(usize::from(n));
        let mut seen_ids = std::collections::HashSet::new();
        let mut seen_names = std::collections::HashSet::new();
        for _ in 0..n {
            let id = d.u16_le("table id").map_err(bad)?;
            let name = String::from_utf8(d.u32_prefixed("table name").map_err(bad)?.to_vec())
                .map_err(|_| Error::corrupt(path, 0, "table name is not UTF-8"))?;
            if !seen_ids.insert(id) || !seen_names.insert(name.clone()) {
                return Err(Error::corrupt(
                    path,
                    0,
                    format!("table {name:?} (id {id}) appears twice in the catalog"),
                ));
            }
            tables.push((id, name));
        }
        let lineage = if version >= 2 {
            d.u64_le("database lineage").map_err(bad)?
        } else {
            0
        };
        let key_group_range = if version >= 3 {
            let first = d.u16_le("first key group").map_err(bad)?;
            let last = d.u16_le("last key group").map_err(bad)?;
            KeyGroupRange::new(first, last)
        } else {
            KeyGroupRange::all(max_key_groups)
        };
        let mut kinds = Vec::new();
        if version >= 4 {
            let n = d.u16_le("table kind count").map_err(bad)?;
            for _ in 0..n {
                let id = d.u16_le("table kind id").map_err(bad)?;
                let flags = d.u8("table kind flags").map_err(bad)?;
                let op = String::from_utf8(d.u32_prefixed("merge operator").map_err(bad)?.to_vec())
                    .map_err(|_| Error::corrupt(path, 0, "merge operator name is not UTF-8"))?;
                if flags > 1
                    || !tables.iter().any(|(t, _)| *t == id)
                    || kinds.iter().any(|(k, _)| *k == id)
                {
                    return Err(Error::corrupt(
                        path,
                        0,
                        format!(
                            "table kind of id {id} (flags {flags}) is not one per catalog table"
                        ),
                    ));
                }
                kinds.push((
                    id,
                    TableKind {
                        ttl: flags & 1 != 0,
                        merge_operator: (!op.is_empty()).then_some(op),
                    },
                ));
            }
        }
        if !d.is_empty() {
            return Err(Error::corrupt(path, 0, "bytes after the table catalog"));
        }
        if shards == 0 || u32::from(max_key_groups) < shards {
            return Err(Error::corrupt(
                path,
                0,
                format!("{shards} shards over {max_key_groups} key groups"),
            ));
        }
        let r = key_group_range;
        if r.first > r.last || r.last >= max_key_groups || r.len() < shards {
            return Err(Error::corrupt(
                path,
                0,
                format!("key group range {r} for {shards} shards of {max_key_groups} key groups"),
            ));
        }
        Ok(DbMeta {
            shards,
            max_key_groups,
            key_group_prefix_bytes: (prefix != 0).then_some(prefix),
            tables,
            lineage,
            key_group_range,
            kinds,
        })
    }

    /// Reads the metadata of the database at `dir`; `None` if there is none.
    pub(crate) fn load(dir: &Path) -> Result<Option<DbMeta>> {
        let path = dir.join(META_FILE);
        match fs::read(&path) {
            Ok(bytes) => DbMeta::decode(&path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// Writes the metadata atomically.
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        replace_file(dir, META_FILE, &self.encode())
    }

    /// Checks `opts` against the metadata on disk and adds newly declared tables.
    /// Returns whether the table list changed. A catalog that would outgrow the
    /// table ids is an InvalidArgument error and changes nothing.
    pub(crate) fn reconcile(&mut self, opts: &Options) -> Result<bool> {
        self.check(opts)?;
        let mut added = Vec::new();
        let mut next = self
            .tables
            .iter()
            .map(|(id, _)| u32::from(*id) + 1)
            .max()
            .unwrap_or(0);
        for name in std::iter::once("default").chain(opts.tables.iter().map(String::as_str)) {
            if self.tables.iter().any(|(_, n)| n == name) || added.iter().any(|(_, n)| n == name) {
                continue;
            }
            let id = u16::try_from(next)
                .ok()
                .filter(|_| self.tables.len() + added.len() < MAX_TABLES);
            let Some(id) = id else {
                return Err(Error::invalid_option(
                    "tables",
                    format!(
                        "the database at {} has {} tables and no table id left for {name:?} (at most {MAX_TABLES})",
                        opts.path.display(),
                        self.tables.len() + added.len()
                    ),
                ));
            };
            added.push((id, name.to_string()));
            next += 1;
        }
        let mut changed = !added.is_empty();
        // Checked before anything changes: a refused open leaves the catalog as it was.
        let mut kinds = self.kinds.clone();
        for (id, name) in self.tables.iter().chain(added.iter()) {
            let given = TableKind::of(opts, name);
            match kinds.iter_mut().find(|(k, _)| k == id) {
                None => {
                    kinds.push((*id, given));
                    changed = true;
                }
                Some((_, recorded)) => {
                    let mismatch = |what: &'static str, on_disk: String, given: String| -> Error {
                        ErrorDetail::TableMismatch {
                            path: opts.path.clone(),
                            table: name.clone(),
                            what,
                            on_disk,
                            given,
                        }
                        .into()
                    };
                    match (&recorded.merge_operator, &given.merge_operator) {
                        (Some(a), Some(b)) if a != b => {
                            return Err(mismatch("merge_operator", a.clone(), b.clone()))
                        }
                        (Some(a), None) => {
                            return Err(mismatch("merge_operator", a.clone(), "none".into()))
                        }
                        // No operand was ever written: the table may take one.
                        (None, Some(_)) => {
                            recorded.merge_operator = given.merge_operator.clone();
                            changed = true;
                        }
                        _ => {}
                    }
                    if recorded.ttl != given.ttl {
                        let say = |t: bool| if t { "a ttl" } else { "none" }.to_string();
                        return Err(mismatch("ttl", say(recorded.ttl), say(given.ttl)));
                    }
                }
            }
        }
        kinds.sort_by_key(|(id, _)| *id);
        self.tables.extend(added);
        self.kinds = kinds;
        Ok(changed)
    }

    /// Checks that `opts` agree with what the database was created with.
    pub(crate) fn check(&self, opts: &Options) -> Result<()> {
        let mismatch = |option: &'static str, on_disk: String, given: String| -> Error {
            ErrorDetail::OptionMismatch {
                path: PathBuf::from(&opts.path),
                option,
                on_disk,
                given,
            }
            .into()
        };
        if self.shards != opts.shards {
            return Err(mismatch(
                "shards",
                self.shards.to_string(),
                opts.shards.to_string(),
            ));
        }
        if self.max_key_groups != opts.max_key_groups {
            return Err(mismatch(
                "max_key_groups",
                self.max_key_groups.to_string(),
                opts.max_key_groups.to_string(),
            ));
        }
        if self.key_group_prefix_bytes != opts.key_group_prefix_bytes {
            return Err(mismatch(
                "key_group_prefix_bytes",
                format!("{:?}", self.key_group_prefix_bytes),
                format!("{:?}", opts.key_group_prefix_bytes),
            ));
        }
        if let Some(given) = opts.key_group_range {
            if given != self.key_group_range {
                return Err(mismatch(
                    "key_group_range",
                    self.key_group_range.to_string(),
                    given.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// Metadata of a new database created with `opts`.
    pub(crate) fn new_for(opts: &Options) -> DbMeta {
        DbMeta {
            shards: opts.shards,
            max_key_groups: opts.max_key_groups,
            key_group_prefix_bytes: opts.key_group_prefix_bytes,
            tables: Vec::new(),
            lineage: crate::shard::new_lineage(),
            key_group_range: opts.key_groups(),
            kinds: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_4_layout_matches_the_golden_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options::new(dir.path());
        opts.shards = 4;
        opts.max_key_groups = 128;
        opts.key_group_prefix_bytes = Some(8);
        opts.key_group_range = Some(KeyGroupRange::new(32, 95));
        opts.tables = vec!["counts".into(), "windows".into()];
        opts.table_options
            .insert("counts".into(), crate::TableOptions::counter());
        opts.table_options.insert(
            "windows".into(),
            crate::TableOptions::with_ttl(std::time::Duration::from_secs(60)),
        );
        let mut meta = DbMeta::new_for(&opts);
        meta.reconcile(&opts).unwrap();
        meta.lineage = 0xdb1ea9e;
        let bytes = meta.encode();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/meta/v4-kinds.meta");
        if std::env::var_os("TERRACE_REGEN_FIXTURES").is_some_and(|v| v == "1") {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &bytes).unwrap();
        }
        let golden = fs::read(&path).expect("fixture missing; run with TERRACE_REGEN_FIXTURES=1");
        assert!(
            golden == bytes,
            "TERRACE-META's layout changed: bump META_FORMAT_VERSION and regenerate with TERRACE_REGEN_FIXTURES=1 if intended"
        );
        let back = DbMeta::decode(&path, &golden).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.shards, 4);
        assert_eq!(back.key_group_prefix_bytes, Some(8));
        assert_eq!(
            back.tables,
            vec![
                (0, "default".into()),
                (1, "counts".into()),
                (2, "windows".into())
            ]
        );
        assert_eq!(back.lineage, 0xdb1ea9e);
        assert_eq!(back.key_group_range, KeyGroupRange::new(32, 95));
        let kind = |ttl, op: Option<&str>| TableKind {
            ttl,
            merge_operator: op.map(String::from),
        };
        assert_eq!(
            back.kinds,
            vec![
                (0, kind(false, None)),
                (1, kind(false, Some(crate::merge::U64_ADD))),
                (2, kind(true, None)),
            ]
        );

        // Format 3 (checked in): no kinds recorded.
        let v3path = path.with_file_name("v3-basic.meta");
        let v3 = DbMeta::decode(&v3path, &fs::read(&v3path).unwrap()).unwrap();
        assert_eq!(v3.tables, back.tables);
        assert_eq!(v3.key_group_range, KeyGroupRange::new(32, 95));
        assert!(v3.kinds.is_empty());

        // Formats 1 and 2 (checked in) own every key group; 1 had no lineage.
        let v1path = path.with_file_name("v1-basic.meta");
        let v1 = DbMeta::decode(&v1path, &fs::read(&v1path).unwrap()).unwrap();
        assert_eq!(v1.lineage, 0);
        assert_eq!(v1.tables, back.tables);
        assert_eq!(v1.key_group_range, KeyGroupRange::all(128));
        let v2path = path.with_file_name("v2-basic.meta");
        let v2 = DbMeta::decode(&v2path, &fs::read(&v2path).unwrap()).unwrap();
        assert_eq!(v2.lineage, 0xdb1ea9e);
        assert_eq!(v2.key_group_range, KeyGroupRange::all(128));
    }

    #[test]
    fn more_tables_than_ids_is_a_clear_error_that_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options::new(dir.path());
        opts.shards = 1;
        // A catalog one short of full, as many opens adding tables would leave it.
        let mut meta = DbMeta::new_for(&opts);
        meta.tables = (0..MAX_TABLES as u32 - 1)
            .map(|i| {
                (
                    i as u16,
                    if i == 0 {
                        "default".into()
                    } else {
                        format!("t{i}")
                    },
                )
            })
            .collect();
        opts.tables = vec!["t1".into(), "one-more".into()];
        assert!(meta.reconcile(&opts).unwrap(), "the last id is usable");
        assert_eq!(meta.tables.len(), MAX_TABLES);
        assert_eq!(
            meta.tables.last(),
            Some(&(u16::MAX - 1, "one-more".to_string()))
        );
        let full = meta.clone();
        let bytes = full.encode();
        assert_eq!(DbMeta::decode(Path::new("m"), &bytes).unwrap(), full);

        opts.tables = vec!["too-many".into()];
        let err = meta.reconcile(&opts).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains("too-many"), "{err}");
        assert_eq!(meta, full, "a refused reconcile changed the catalog");
    }

    #[test]
    fn another_merge_operator_or_ttl_setting_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options::new(dir.path());
        opts.shards = 1;
        opts.tables = vec!["c".into(), "t".into(), "p".into()];
        opts.table_options
            .insert("c".into(), crate::TableOptions::counter());
        opts.table_options.insert(
            "t".into(),
            crate::TableOptions::with_ttl(std::time::Duration::from_secs(1)),
        );
        let mut meta = DbMeta::new_for(&opts);
        assert!(meta.reconcile(&opts).unwrap());
        let before = meta.clone();
        assert!(
            !meta.reconcile(&opts).unwrap(),
            "the same options change nothing"
        );

        let refused = |o: &Options, meta: &mut DbMeta, table: &str| {
            let err = meta.reconcile(o).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{err}");
            assert!(err.to_string().contains(&format!("{table:?}")), "{err}");
            assert_eq!(*meta, before);
            err
        };
        let mut o = opts.clone();
        o.table_options
            .insert("c".into(), crate::TableOptions::list());
        let err = refused(&o, &mut meta, "c");
        assert!(err.to_string().contains(crate::merge::U64_ADD), "{err}");
        assert!(err.to_string().contains(crate::merge::APPEND), "{err}");
        let mut o = opts.clone();
        o.table_options.remove("c");
        refused(&o, &mut meta, "c");
        let mut o = opts.clone();
        o.table_options.remove("t");
        refused(&o, &mut meta, "t");
        let mut o = opts.clone();
        o.table_options.insert(
            "p".into(),
            crate::TableOptions::with_ttl(std::time::Duration::from_secs(1)),
        );
        refused(&o, &mut meta, "p");

        // A plain table may take a merge operator (it holds no operands), and the
        // TTL's length may change.
        let mut o = opts.clone();
        o.table_options
            .insert("p".into(), crate::TableOptions::list());
        o.table_options.insert(
            "t".into(),
            crate::TableOptions::with_ttl(std::time::Duration::from_secs(99)),
        );
        assert!(meta.reconcile(&o).unwrap());
    }

    #[test]
    fn the_highest_id_taken_leaves_no_next_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options::new(dir.path());
        opts.shards = 1;
        let mut meta = DbMeta::new_for(&opts);
        meta.tables = vec![(0, "default".into()), (u16::MAX, "last".into())];
        opts.tables = vec!["new".into()];
        let err = meta.reconcile(&opts).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{err}");
    }

    #[test]
    fn round_trips_detects_damage_and_keeps_table_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options::new(dir.path());
        opts.shards = 2;
        opts.tables = vec!["a".into(), "b".into()];
        let mut meta = DbMeta::new_for(&opts);
        assert!(meta.reconcile(&opts).unwrap());
        meta.store(dir.path()).unwrap();
        let mut back = DbMeta::load(dir.path()).unwrap().unwrap();
        assert_eq!(back, meta);
        let ids: Vec<_> = back.tables.iter().map(|(i, n)| (*i, n.as_str())).collect();
        assert_eq!(ids, vec![(0, "default"), (1, "a"), (2, "b")]);

        opts.tables = vec!["b".into(), "c".into()];
        assert!(back.reconcile(&opts).unwrap());
        assert!(back.tables.contains(&(2, "b".to_string())));
        assert!(back.tables.contains(&(3, "c".to_string())));

        opts.shards = 3;
        let err = back.reconcile(&opts).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);

        let path = dir.path().join(META_FILE);
        let mut bytes = fs::read(&path).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 0x40;
            assert!(
                DbMeta::decode(&path, &bytes).is_err(),
                "flip at {i} undetected"
            );
            bytes[i] ^= 0x40;
        }
    }
}
