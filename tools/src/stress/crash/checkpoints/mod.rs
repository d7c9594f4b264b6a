//! Checkpoint mode of the crash run (`terrace-stress crash --checkpoints`): durable
//! means "in a committed checkpoint", and the object store, not the directory, is
//! what survives.
//!
//! ```text
//! parent                                   child (one per round)
//!   spawn --store --first_checkpoint=N ──►  Db::open(db-G), operations from start on;
//!                                           between them checkpoint(N), N+1, ...,
//!                                           release_checkpoint(older), gc()
//!                          ◄── stdout ───  checkpoint-begin N OP / checkpoint N released=..
//!   SIGKILL  ──╳                           release-begin / released, gc-begin / gc
//!   list committed checkpoints in store/   (book.rs: must / may / released)
//!   3 in 4: Db::restore(newest) into db-G+1, read every key, require the newest
//!           checkpoint's exact state (compare.rs); the next child continues there
//!           (one in --rescale_one_in restores into another shard count: N -> M)
//!   1 in 4: reopen db-G and check flushed writes as the plain crash run does
//!           (one in --rescale_one_in re-splits it into another shard count);
//!           the newest checkpoint is read through a CheckpointReader
//!   one older committed checkpoint: CheckpointReader, exact state
//! ```
//!
//! A checkpoint whose call the kill interrupted may or may not have committed; the
//! listing decides, and the newest committed one is what "restore the newest" must
//! give. Every restored state is compared in full with the state the checkpoint
//! covers, so a GC that deleted an object a retained checkpoint names shows up as a
//! restore that fails (the restore checks every object) or as wrong keys. Each
//! restore starts a new database *generation* (new lineages) that reads the older
//! generations' files from the shared store, so collections see foreign lineages.

pub mod book;
pub mod compare;
pub mod driver;
pub mod listing;
mod round;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use terrace::{ObjectStoreSpec, Options};

use self::book::Book;
use crate::stress::small_db::SmallDbFlags;

/// Options of a checkpoint-mode database in `dir` with its store in `store`.
pub fn options(
    small_db: &SmallDbFlags,
    dir: &Path,
    store: &Path,
    fault_seed: u64,
    gc_min_age_ms: u64,
) -> Options {
    let mut o = small_db.options(dir, fault_seed);
    o.object_store = ObjectStoreSpec::Uri(format!("file://{}", store.display()));
    o.gc_min_age = Duration::from_millis(gc_min_age_ms);
    // The child collects when its schedule says so, not on a timer.
    o.gc_interval = None;
    o
}

/// The parent's state in checkpoint mode.
pub struct CheckpointRun {
    /// The run's directory.
    pub root: PathBuf,
    /// The object store's directory.
    pub store: PathBuf,
    /// Committed checkpoints and their states.
    pub book: Book,
    /// The generation of the database the next child opens.
    pub generation: u64,
    /// Per key, its shard (learnt at the first read-back), for messages.
    pub shard_of: Vec<u32>,
    /// Restores into a fresh directory.
    pub restores: u64,
    /// Checkpoints compared in full.
    pub verified: u64,
    /// Restores and reopens into another shard count.
    pub rescales: Rescales,
}

/// Restores and reopens that changed the shard count: the line
/// `terrace-stress crash: rescaled restores R, re-split reopens P, shard counts
/// 1,2,3` after the report (a line of its own, so the report line keeps its
/// format).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rescales {
    /// Restores of the newest checkpoint into another shard count than the
    /// database that took it.
    pub restores: u64,
    /// Reopens of a killed child's directory with another shard count.
    pub resplits: u64,
    /// Every shard count a database of the run had.
    pub counts: std::collections::BTreeSet<u32>,
}

impl std::fmt::Display for Rescales {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts: Vec<String> = self.counts.iter().map(u32::to_string).collect();
        write!(
            f,
            "rescaled restores {}, re-split reopens {}, shard counts {}",
            self.restores,
            self.resplits,
            counts.join(",")
        )
    }
}

impl Rescales {
    /// Parses the line [`Display`](std::fmt::Display) writes, in a program's
    /// output.
    pub fn find(output: &str) -> Option<Rescales> {
        output.lines().find_map(|line| {
            let rest = line
                .trim()
                .strip_prefix("terrace-stress crash: rescaled restores ")?;
            let (restores, rest) = rest.split_once(", re-split reopens ")?;
            let (resplits, counts) = rest.split_once(", shard counts ")?;
            Some(Rescales {
                restores: restores.parse().ok()?,
                resplits: resplits.parse().ok()?,
                counts: counts
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
            })
        })
    }
}

impl CheckpointRun {
    /// Creates the store directory under `root`.
    pub fn new(root: &Path) -> anyhow::Result<CheckpointRun> {
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let store = root.join("store");
        std::fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
        Ok(CheckpointRun {
            root,
            store,
            book: Book::new(),
            generation: 0,
            shard_of: Vec::new(),
            restores: 0,
            verified: 0,
            rescales: Rescales::default(),
        })
    }

    /// The directory of database generation `generation`.
    pub fn db_dir(&self, generation: u64) -> PathBuf {
        self.root.join(format!("db-{generation:04}"))
    }

    /// A shard count other than `current` in `1..=max` (`None` if there is
    /// none), drawn with chance `1 / one_in` (never when `one_in` is 0).
    pub fn draw_rescale(
        rng: &mut impl rand::Rng,
        one_in: u32,
        current: u32,
        max: u32,
    ) -> Option<u32> {
        if one_in == 0 || max < 2 || !rng.gen_ratio(1, one_in) {
            return None;
        }
        // `1..=max` without `current`.
        let n = rng.gen_range(1..max);
        Some(if n >= current { n + 1 } else { n })
    }

    /// The store's URI.
    pub fn uri(&self) -> String {
        format!("file://{}", self.store.display())
    }
}
