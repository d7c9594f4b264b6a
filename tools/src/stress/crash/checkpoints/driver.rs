//! The child's side of checkpoint mode: between operations, takes checkpoints with
//! increasing ids, collects garbage and releases an older checkpoint now and then,
//! each call framed by a begin line and an end line (see
//! [`protocol`](super::super::protocol)) so the parent knows what a kill interrupted.
//!
//! The schedule is drawn from the round's seed in operations, not in time: a
//! checkpoint every 100..=1500 operations (tens of milliseconds), a collection every
//! 300..=4000, and after one checkpoint in five the release of a random checkpoint
//! of this database other than its newest.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use futures_lite::future::block_on;
use rand::rngs::SmallRng;
use rand::Rng;
use terrace::Db;
use terrace_tiering::clock::seeded_rng;

use super::super::child::Sabotage;
use super::super::protocol::ChildLine;
use super::listing;

/// Operations between two checkpoints.
const CHECKPOINT_GAP_OPS: RangeInclusive<u64> = 100..=1500;
/// Operations between two collections.
const GC_GAP_OPS: RangeInclusive<u64> = 300..=4000;
/// One checkpoint in this many is followed by the release of an older one.
const RELEASE_ONE_IN: u32 = 5;

/// A failed call: what it was, and the engine's error.
pub type Failure = (String, terrace::Error);

/// Checkpoints, releases and collections of one child.
pub struct Driver {
    store: PathBuf,
    next_id: u64,
    rng: SmallRng,
    next_checkpoint_op: u64,
    next_gc_op: u64,
    sabotage: Option<Sabotage>,
}

impl Driver {
    /// A driver whose first checkpoint is `first_id`, for a child starting at
    /// operation `start`; `store` is the object store's directory.
    pub fn new(
        store: &Path,
        first_id: u64,
        start: u64,
        seed: u64,
        sabotage: Option<Sabotage>,
    ) -> Driver {
        let mut rng = seeded_rng(seed);
        let next_checkpoint_op = start + rng.gen_range(CHECKPOINT_GAP_OPS);
        let next_gc_op = start + rng.gen_range(GC_GAP_OPS);
        Driver {
            store: store.to_path_buf(),
            next_id: first_id,
            rng,
            next_checkpoint_op,
            next_gc_op,
            sabotage: sabotage.filter(|s| s.is_checkpoint_sabotage()),
        }
    }

    /// Runs what is due before operation `next` is issued (every operation below it
    /// has returned).
    pub fn before_op(&mut self, db: &Db, next: u64) -> Result<(), Failure> {
        if next >= self.next_checkpoint_op {
            self.next_checkpoint_op = next + self.rng.gen_range(CHECKPOINT_GAP_OPS);
            self.checkpoint(db, next)?;
            if self.rng.gen_ratio(1, RELEASE_ONE_IN) {
                self.release_one(db)?;
            }
        }
        if next >= self.next_gc_op {
            self.next_gc_op = next + self.rng.gen_range(GC_GAP_OPS);
            ChildLine::GcBegin.send();
            let report = block_on(db.gc()).map_err(|e| ("gc".to_string(), e))?;
            ChildLine::Gc {
                deleted: report.deleted,
            }
            .send();
        }
        Ok(())
    }

    fn checkpoint(&mut self, db: &Db, next: u64) -> Result<(), Failure> {
        let id = self.next_id;
        self.next_id += 1;
        ChildLine::CheckpointBegin { id, op: next }.send();
        let info = block_on(db.checkpoint(id)).map_err(|e| (format!("checkpoint {id}"), e))?;
        ChildLine::Checkpoint {
            id,
            released: info.released,
        }
        .send();
        if let Some(how) = self.sabotage {
            // Every checkpoint, since retention would soon release a single damaged
            // one and hide the damage.
            match listing::sabotage(&self.store, id, how) {
                Ok(what) => ChildLine::Sabotage { what }.send(),
                Err(e) => eprintln!("crash-child: sabotage of checkpoint {id} failed: {e}"),
            }
        }
        Ok(())
    }

    /// Releases a random checkpoint of this database other than its newest.
    fn release_one(&mut self, db: &Db) -> Result<(), Failure> {
        let all = block_on(db.checkpoints()).map_err(|e| ("listing checkpoints".to_string(), e))?;
        if all.len() < 2 {
            return Ok(());
        }
        let id = all[self.rng.gen_range(0..all.len() - 1)].id;
        ChildLine::ReleaseBegin { id }.send();
        block_on(db.release_checkpoint(id))
            .map_err(|e| (format!("releasing checkpoint {id}"), e))?;
        ChildLine::Released { id }.send();
        Ok(())
    }
}
