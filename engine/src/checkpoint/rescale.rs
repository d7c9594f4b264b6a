//! Rescaling: restoring N checkpoints (one per old database, any shard counts) into
//! a database owning a key-group range with M shards, by metadata alone.
//!
//! [`Db::restore_from`] reads each source's checkpoint (commit object and shard
//! objects) and checks that every object they name exists; then
//! [`plan`] — a pure function — builds each new shard's manifest state: the old
//! files whose key groups overlap the shard's range, at their levels, each with a
//! clip range (the groups it holds of the file) when the file also holds other
//! groups, and the sources' memtable snapshots in L0. Files entirely outside the
//! shard's range are not referenced. Nothing is downloaded or rewritten: the
//! database serves at once; reads skip keys outside a reference's clip, and
//! compaction trims clipped files in the background (`policy/compaction.rs`).
//!
//! Why levels stay sorted: the key group leads the internal key, so the files of
//! different old shards (disjoint key-group ranges) never overlap once clipped;
//! [`plan`] still checks every level and refuses (Corruption) a plan that would
//! break the invariant. Seqnos: the new shards start above every source's last
//! seqno; sources hold disjoint key groups, so their seqno spaces never meet on one
//! key.
//!
//! Stores: the databases of one job keep their prefixes side by side under a job
//! root (`file:///x/job-17/db-a`, `file:///x/job-17/db-b`). The new database's
//! `Options::object_store` must be a prefix of the same root (or be a source's own
//! prefix); its file references name their objects' prefix relative to the root
//! (`FileDesc::home`), which the database opens as views of the root
//! (`remote.rs`). Lineages make object names unique across the job.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use terrace_tiering::store::uri::StoreUri;

use super::format::{CheckpointMeta, ShardCheckpoint};
use super::listing::pick_checkpoint_and_shards;
use super::restore::{check_empty, open_checked, PendingCheck, RestoreInfo, RestoreUndo};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::files::shard_dir;
use crate::key::{shard_key_groups, state_key_group, state_key_of, KeyGroupRange};
use crate::lock::DbLock;
use crate::meta::DbMeta;
use crate::options::{ObjectStoreSpec, Options};
use crate::remote::{split_job, store_err};
use crate::shard::new_lineage;
use crate::version::manifest::ManifestLog;
use crate::version::{FileDesc, ManifestState};

/// One old database to restore from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreSource {
    /// The source database's store prefix, as a URI (`file:///x/job-17/db-a`,
    /// `s3://bucket/job-17/db-a`). It must be the new database's own
    /// `Options::object_store` or a sibling prefix under the same job root.
    pub uri: String,
    /// Its checkpoint to restore; `None` for the newest.
    pub checkpoint: Option<u64>,
}

/// A source's checkpoint as read, with its prefix relative to the job root.
pub(crate) struct Source {
    /// Where the source's own objects live, relative to the job root; empty when
    /// it is the new database's own prefix.
    pub(crate) home: String,
    pub(crate) meta: CheckpointMeta,
    pub(crate) shards: Vec<ShardCheckpoint>,
}

/// What [`plan`] decided: the new database's catalog and its shards' states.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) range: KeyGroupRange,
    pub(crate) tables: Vec<(u16, String)>,
    pub(crate) shards: Vec<ManifestState>,
    /// Per new shard: where each new local file id came from (source index, the
    /// source's shard index, the file's id there).
    pub(crate) origins: Vec<BTreeMap<u64, (usize, usize, u64)>>,
    pub(crate) clipped_files: usize,
}

impl Db {
    /// Opens a new database in `opts.path` (missing or empty) from several
    /// checkpoints — one per old database, each with any shard count — owning
    /// `opts.key_group_range` (default: the union of the sources' ranges) with
    /// `opts.shards` shards. The sources' key-group ranges must not overlap and
    /// must cover the new range; their key-group counts and prefixes must agree,
    /// and so must their table catalogs.
    ///
    /// The new database writes to `opts.object_store` (a URI), a prefix under the
    /// same job root (parent prefix) as every source, or a source's own prefix; it
    /// reads the sources' files where they are. Nothing but metadata is read
    /// before it serves; compaction trims the files it shares with other shards
    /// in the background (`DbStats::clipped_files` counts what is left).
    ///
    /// Bad input (no source, a source twice, sources in another root, overlapping
    /// ranges, a range not covered, catalogs that disagree) is an InvalidArgument
    /// error; a missing checkpoint or object is an error naming it. In every such
    /// case nothing is written.
    ///
    /// The sources' objects are protected by their checkpoints: take a checkpoint
    /// of the new database before the sources release theirs.
    pub async fn restore_from(
        opts: Options,
        sources: &[RestoreSource],
    ) -> Result<(Db, RestoreInfo)> {
        let clock = opts.clock.clone();
        let start = clock.now();
        let w = write_rescaled(opts, sources).await?;
        let mut info = w.info;
        let db = match open_checked(w.opts, w.checks).await {
            Ok(db) => db,
            Err(e) => {
                w.undo.run();
                return Err(e);
            }
        };
        info.duration = clock.now().saturating_duration_since(start);
        Ok((db, info))
    }
}

/// The job root and the prefix name of each source, relative to the new
/// database's prefix `own`.
fn source_homes(own: &str, sources: &[RestoreSource]) -> Result<Vec<String>> {
    let parse = |uri: &str| StoreUri::parse(uri).map_err(store_err);
    let own_uri = parse(own)?;
    let (root, _) = split_job(&own_uri).ok_or_else(|| {
        Error::invalid_option(
            "object_store",
            format!("{own} has no parent prefix to be a job root: rescaling needs one"),
        )
    })?;
    let mut homes: Vec<String> = Vec::with_capacity(sources.len());
    for s in sources {
        let uri = parse(&s.uri)?;
        let home = if uri == own_uri {
            String::new()
        } else {
            match split_job(&uri) {
                Some((r, name)) if r == root => name,
                _ => {
                    return Err(Error::invalid_option(
                        "sources",
                        format!(
                            "source {} is not under the job root {root} of the new database's store {own}",
                            s.uri
                        ),
                    ))
                }
            }
        };
        if homes.contains(&home) {
            return Err(Error::invalid_option(
                "sources",
                format!("source {} is named twice", s.uri),
            ));
        }
        homes.push(home);
    }
    Ok(homes)
}

/// Reads one source's checkpoint through its own store; the check of its objects
/// is returned to run while the new database opens.
async fn load_source(
    opts: &Options,
    source: &RestoreSource,
    home: String,
) -> Result<(Source, u64, PendingCheck)> {
    let mut o = opts.clone();
    o.object_store = ObjectStoreSpec::Uri(source.uri.clone());
    let (runtime, remote) = crate::remote::open(&o)
        .await?
        .ok_or_else(|| Error::internal("a source without a store"))?;
    // On an error the runtime ends when dropped.
    let picked = pick_checkpoint_and_shards(&remote, source.checkpoint).await?;
    let check = PendingCheck::new(runtime, remote, &picked);
    let bytes = picked.metadata_bytes;
    let (meta, shards) = (picked.meta, picked.shards);
    Ok((Source { home, meta, shards }, bytes, check))
}

/// Reads every source, plans the new database and writes its local metadata
/// (nothing in any store). Returns the options to open it with, the checks of the
/// sources' objects still to run, and how to undo what it wrote.
async fn write_rescaled(mut opts: Options, sources: &[RestoreSource]) -> Result<Rescaled> {
    opts.validate()?;
    if opts.read_only {
        return Err(Error::invalid_option(
            "read_only",
            "a restore creates a database; open it read-only afterwards",
        ));
    }
    let own = match &opts.object_store {
        ObjectStoreSpec::Uri(u) => u.clone(),
        _ => {
            return Err(Error::invalid_option(
                "object_store",
                "a rescale writes to a prefix of the job's store: give its URI (file:///... or s3://...)",
            ))
        }
    };
    if sources.is_empty() {
        return Err(Error::invalid_option(
            "sources",
            "no source to restore from",
        ));
    }
    let clock = opts.clock.clone();
    let start = clock.now();
    check_empty(&opts.path)?;
    let mut undo = RestoreUndo::before(&opts.path);
    let homes = source_homes(&own, sources)?;
    let own_name = StoreUri::parse(&own)
        .ok()
        .and_then(|u| split_job(&u))
        .map(|(_, n)| n)
        .unwrap_or_default();

    // Sources load in parallel: each is a few sequential round trips to its store.
    let loads = sources
        .iter()
        .zip(homes)
        .map(|(s, home)| load_source(&opts, s, home));
    let mut loaded = Vec::with_capacity(sources.len());
    let mut checks = Vec::with_capacity(sources.len());
    let mut metadata_bytes = 0;
    for (source, bytes, check) in futures_util::future::try_join_all(loads).await? {
        metadata_bytes += bytes;
        loaded.push(source);
        checks.push(check);
    }
    let first = &loaded[0].meta;
    opts.max_key_groups = first.max_key_groups;
    opts.key_group_prefix_bytes = first.key_group_prefix_bytes;
    let plan = plan(opts.key_group_range, opts.shards, &own_name, &loaded)?;
    opts.key_group_range = Some(plan.range);

    // A local store prefix is a directory the new database's store opens: make it.
    if let Ok(StoreUri::Local(dir)) = StoreUri::parse(&own) {
        if !dir.exists() {
            undo.made_prefix = Some(dir.clone());
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
    }
    if let Err(e) = write_database(&opts, &plan) {
        undo.run();
        return Err(e);
    }

    let mut objects = HashSet::new();
    let state_bytes = plan
        .shards
        .iter()
        .flat_map(|s| s.files.values())
        .filter(|(_, f)| objects.insert((f.home.clone(), f.object)))
        .map(|(_, f)| f.size_bytes)
        .sum();
    let info = RestoreInfo {
        checkpoint: first.id,
        source_db_lineage: first.db_lineage,
        sources: loaded
            .iter()
            .map(|s| (s.meta.id, s.meta.db_lineage))
            .collect(),
        clipped_files: plan.clipped_files,
        files: plan.shards.iter().map(|s| s.files.len()).sum(),
        state_bytes,
        metadata_bytes,
        duration: clock.now().saturating_duration_since(start),
    };
    Ok(Rescaled {
        opts,
        info,
        checks,
        undo,
    })
}

/// A rescaled database written, not yet opened.
struct Rescaled {
    /// Options to open it with.
    opts: Options,
    info: RestoreInfo,
    /// The existence checks of the sources' objects, to run while it opens.
    checks: Vec<PendingCheck>,
    /// What it wrote, to remove if the open fails.
    undo: RestoreUndo,
}

/// Writes the new database's metadata: a manifest per shard, then `TERRACE-META`.
fn write_database(opts: &Options, plan: &Plan) -> Result<()> {
    let path = &opts.path;
    std::fs::create_dir_all(path).map_err(|e| Error::io("create directory", path, e))?;
    let _lock = DbLock::acquire(path)?;
    for (i, state) in plan.shards.iter().enumerate() {
        let dir = shard_dir(path, i as u32);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        ManifestLog::create(&dir, 1, &state.snapshot_edit().encode())?;
    }
    let mut meta = DbMeta {
        shards: opts.shards,
        max_key_groups: opts.max_key_groups,
        key_group_prefix_bytes: opts.key_group_prefix_bytes,
        tables: plan.tables.clone(),
        lineage: new_lineage(),
        key_group_range: plan.range,
        // Checkpoints do not carry table kinds: the options give them.
        kinds: Vec::new(),
    };
    meta.reconcile(opts)?;
    meta.store(path)
}

fn source_name(s: &Source) -> String {
    format!(
        "checkpoint {} of database {:016x}{}",
        s.meta.id,
        s.meta.db_lineage,
        if s.home.is_empty() {
            String::new()
        } else {
            format!(" (prefix {})", s.home)
        }
    )
}

/// Plans the rescale of `sources` into `range` (default: their union) with
/// `shards` shards; `own_name` is the new database's prefix name in the job root.
/// Pure: reads nothing, writes nothing.
pub(crate) fn plan(
    range: Option<KeyGroupRange>,
    shards: u32,
    own_name: &str,
    sources: &[Source],
) -> Result<Plan> {
    let bad = |why: String| Err(Error::invalid_option("sources", why));
    let Some(first) = sources.first() else {
        return bad("no source to restore from".into());
    };
    for s in sources {
        if s.meta.max_key_groups != first.meta.max_key_groups
            || s.meta.key_group_prefix_bytes != first.meta.key_group_prefix_bytes
        {
            return bad(format!(
                "{} has {} key groups (prefix {:?}), {} has {} (prefix {:?}): not one job",
                source_name(s),
                s.meta.max_key_groups,
                s.meta.key_group_prefix_bytes,
                source_name(first),
                first.meta.max_key_groups,
                first.meta.key_group_prefix_bytes
            ));
        }
    }
    // Disjoint ranges, sorted.
    let mut by_range: Vec<(KeyGroupRange, &Source)> = sources
        .iter()
        .map(|s| {
            (
                KeyGroupRange::new(s.meta.key_groups.0, s.meta.key_groups.1),
                s,
            )
        })
        .collect();
    by_range.sort_by_key(|(r, _)| r.first);
    for w in by_range.windows(2) {
        if w[0].0.last >= w[1].0.first {
            return bad(format!(
                "{} holds key groups {} and {} holds {}: source ranges overlap",
                source_name(w[0].1),
                w[0].0,
                source_name(w[1].1),
                w[1].0
            ));
        }
    }
    let range = match range {
        Some(r) => r,
        None => {
            let (lo, hi) = (by_range[0].0.first, by_range[by_range.len() - 1].0.last);
            KeyGroupRange::new(lo, hi)
        }
    };
    // Every group of the range in some source.
    let mut next = u32::from(range.first);
    for (r, _) in &by_range {
        if u32::from(r.last) < next {
            continue;
        }
        if u32::from(r.first) > next {
            break;
        }
        next = u32::from(r.last) + 1;
    }
    if next <= u32::from(range.last) {
        return Err(Error::invalid_option(
            "key_group_range",
            format!(
                "key group {next} of {range} is in no source (sources hold {})",
                by_range
                    .iter()
                    .map(|(r, _)| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let tables = merge_tables(sources)?;
    if shards == 0 || u64::from(shards) > u64::from(range.len()) {
        return Err(Error::invalid_option(
            "shards",
            format!(
                "{shards} shards cannot split the {} key groups of {range}",
                range.len()
            ),
        ));
    }

    let last_seqno = sources.iter().map(|s| s.meta.last_seqno).max().unwrap_or(0);
    let mut states = Vec::with_capacity(shards as usize);
    let mut origins = Vec::with_capacity(shards as usize);
    let mut clipped_files = 0;
    for j in 0..shards {
        let mine = shard_key_groups(j, shards, range);
        let mut state = ManifestState {
            last_seqno,
            lineage: new_lineage(),
            ..Default::default()
        };
        let mut number = 0u64;
        let mut origin = BTreeMap::new();
        for (si, s) in sources.iter().enumerate() {
            for (ci, sc) in s.shards.iter().enumerate() {
                let (lo, hi) = sc.key_groups;
                if hi < mine.first || lo > mine.last {
                    continue;
                }
                let adopted = sc
                    .files
                    .iter()
                    .map(|(l, f)| (*l, f))
                    .chain(sc.snapshots.iter().map(|f| (0, f)));
                for (level, f) in adopted {
                    let Some(desc) = adopt(f, mine, &s.home, own_name) else {
                        continue;
                    };
                    number += 1;
                    let id = (u64::from(j) << 48) | number;
                    clipped_files += usize::from(desc.clip.is_some());
                    origin.insert(id, (si, ci, f.id));
                    state.files.insert(id, (level, FileDesc { id, ..desc }));
                    state.uploaded.insert(id);
                }
            }
        }
        state.next_file_number = number + 1;
        if let Err(why) = state.check_invariants() {
            return Err(Error::corrupt(
                std::path::Path::new(&source_name(first)),
                0,
                format!("rescaled shard {j} ({mine}) would break its levels: {why}"),
            ));
        }
        states.push(state);
        origins.push(origin);
    }
    Ok(Plan {
        range,
        tables,
        shards: states,
        origins,
        clipped_files,
    })
}

/// The reference a new shard owning `mine` takes to file `f` of a source whose
/// own prefix is `source_home`; `None` when the file holds none of its groups.
fn adopt(f: &FileDesc, mine: KeyGroupRange, source_home: &str, own_name: &str) -> Option<FileDesc> {
    let held = f.key_groups()?;
    let first = held.first.max(mine.first);
    let last = held.last.min(mine.last);
    if first > last {
        return None;
    }
    let real = (
        state_key_group(state_key_of(&f.smallest)),
        state_key_group(state_key_of(&f.largest)),
    );
    let clip = ((first, last) != real).then_some(KeyGroupRange::new(first, last));
    let home = if f.home.is_empty() {
        source_home
    } else {
        f.home.as_str()
    };
    let home = if home == own_name { "" } else { home };
    Some(FileDesc {
        clip,
        home: home.to_owned(),
        ..f.clone()
    })
}

/// The union of the sources' table catalogs; an id or a name that means two
/// different things is an error.
fn merge_tables(sources: &[Source]) -> Result<Vec<(u16, String)>> {
    let mut by_id: BTreeMap<u16, &str> = BTreeMap::new();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for s in sources {
        for (id, name) in &s.meta.tables {
            match by_id.get(id) {
                Some(n) if *n == name.as_str() => {}
                Some(n) => {
                    return Err(Error::invalid_option(
                        "sources",
                        format!(
                            "table id {id} is {n:?} in one source and {name:?} in {}",
                            source_name(s)
                        ),
                    ))
                }
                None => {
                    if !names.insert(name.as_str()) {
                        return Err(Error::invalid_option(
                            "sources",
                            format!("table {name:?} has different ids in the sources"),
                        ));
                    }
                    by_id.insert(*id, name.as_str());
                }
            }
        }
    }
    Ok(by_id
        .into_iter()
        .map(|(id, n)| (id, n.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::ObjectId;

    /// A file whose keys span key groups `lo..=hi`.
    fn file(number: u64, lo: u16, hi: u16) -> FileDesc {
        let key = |g: u16| {
            let mut k = g.to_be_bytes().to_vec();
            k.extend_from_slice(&[0, 0, b'k']);
            k.extend_from_slice(&[0; 8]);
            k
        };
        FileDesc {
            smallest: key(lo),
            largest: key(hi),
            ..FileDesc::empty(
                number,
                ObjectId {
                    lineage: 0xa,
                    number,
                },
            )
        }
    }

    fn source(home: &str, range: (u16, u16), files: Vec<(u32, FileDesc)>, seqno: u64) -> Source {
        Source {
            home: home.into(),
            meta: CheckpointMeta {
                id: 1,
                db_lineage: 0xdb,
                created_unix_ms: 0,
                shards: 1,
                max_key_groups: 64,
                key_group_prefix_bytes: None,
                key_groups: range,
                last_seqno: seqno,
                tables: vec![(0, "default".into())],
                shard_objects: Vec::new(),
                state_bytes: 0,
                memtable_bytes: 0,
                uploaded_bytes: 0,
            },
            shards: vec![ShardCheckpoint {
                checkpoint: 1,
                shard: 0,
                lineage: 0xa,
                key_groups: range,
                last_seqno: seqno,
                files,
                snapshots: vec![file(99, range.0, range.1)],
                compact_pointers: Vec::new(),
            }],
        }
    }

    #[test]
    fn references_are_clipped_to_the_new_shard_and_name_their_home() {
        let f = file(1, 1, 9);
        let c = adopt(&f, KeyGroupRange::new(3, 5), "db-a", "db-c").unwrap();
        assert_eq!(c.clip, Some(KeyGroupRange::new(3, 5)));
        assert_eq!(c.home, "db-a");
        // Wholly inside: no clip. Wholly outside: not referenced.
        assert_eq!(
            adopt(&f, KeyGroupRange::new(0, 20), "", "db-c")
                .unwrap()
                .clip,
            None
        );
        assert!(adopt(&f, KeyGroupRange::new(10, 20), "", "db-c").is_none());
        // An old clip narrows what a reference may take.
        let mut clipped = f.clone();
        clipped.clip = Some(KeyGroupRange::new(1, 4));
        clipped.home = "db-c".into();
        let c = adopt(&clipped, KeyGroupRange::new(0, 63), "db-b", "db-c").unwrap();
        assert_eq!(c.clip, Some(KeyGroupRange::new(1, 4)));
        assert_eq!(c.home, "", "its own prefix is the empty home");
        assert!(adopt(&clipped, KeyGroupRange::new(5, 9), "db-b", "db-c").is_none());
    }

    #[test]
    fn a_plan_splits_files_by_shard_and_starts_above_every_seqno() {
        let a = source(
            "db-a",
            (0, 31),
            vec![(1, file(1, 0, 20)), (1, file(2, 21, 31))],
            500,
        );
        let b = source("db-b", (32, 63), vec![(2, file(3, 32, 63))], 900);
        let p = plan(None, 3, "db-c", &[a, b]).unwrap();
        assert_eq!(p.range, KeyGroupRange::new(0, 63));
        assert_eq!(p.shards.len(), 3);
        for (j, s) in p.shards.iter().enumerate() {
            let mine = shard_key_groups(j as u32, 3, p.range);
            assert_eq!(s.last_seqno, 900);
            for (_, f) in s.files.values() {
                let held = f.key_groups().unwrap();
                assert!(mine.first <= held.first && held.last <= mine.last, "{f:?}");
                assert!(s.uploaded.contains(&f.id));
            }
        }
        assert!(p.clipped_files > 0);
    }

    #[test]
    fn bad_plans_are_refused() {
        let a = || source("db-a", (0, 31), vec![(1, file(1, 0, 31))], 1);
        let err = plan(None, 2, "c", &[a(), source("db-b", (20, 63), vec![], 1)]).unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");
        let err = plan(Some(KeyGroupRange::new(0, 63)), 2, "c", &[a()]).unwrap_err();
        assert!(err.to_string().contains("key group 32"), "{err}");
        let mut b = source("db-b", (32, 63), vec![], 1);
        b.meta.tables = vec![(0, "other".into())];
        let err = plan(None, 2, "c", &[a(), b]).unwrap_err();
        assert!(err.to_string().contains("table id 0"), "{err}");
        // A source file outside its shard's range would overlap another's in a level.
        let bad = source("db-b", (32, 63), vec![(1, file(2, 20, 40))], 1);
        let err = plan(None, 1, "c", &[a(), bad]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corruption, "{err}");
    }
}
