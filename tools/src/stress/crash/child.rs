//! The process the crash run kills: opens the database, issues the workload from
//! operation `--start` on, one operation at a time, and reports on stdout (see
//! [`protocol`](super::protocol)) until it is killed.
//!
//! One operation at a time is what makes the prefix check sound: a shard's seqno
//! order is then the operation order. A monitor thread samples what the database is
//! doing (flush, compaction, upload, dropped local copies) so the parent can tell
//! which phase each kill interrupted, and pushes the local disk budget more often
//! than the engine's one-second tick does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use futures_lite::future::block_on;
use terrace::{Db, TableId};

use super::checkpoints::{self, driver::Driver};
use super::protocol::{ChildLine, Phase};
use super::workload::{key_name, value, CrashOp, Workload};
use crate::stress::small_db::{derive_seed, SmallDbFlags};

/// Operations reserved per `reserve` line.
const RESERVE_AHEAD: u64 = 64;
/// How often the monitor samples the database.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// The monitor enforces the local disk budget every this many samples.
const ENFORCE_BUDGET_EVERY: u32 = 10;
/// How far past the durable point sabotage looks for the key the workload leaves
/// alone the longest, so that a later operation is unlikely to explain the damage.
const SABOTAGE_LOOKAHEAD: u64 = 200_000;

/// Seed purposes (see [`derive_seed`]).
pub(crate) const SEED_CHILD_FAULTS: u64 = 1;
pub(crate) const SEED_PARENT_FAULTS: u64 = 2;
pub(crate) const SEED_KILL: u64 = 3;
pub(crate) const SEED_CHILD_CHECKPOINTS: u64 = 4;
pub(crate) const SEED_RESTORE: u64 = 5;

/// Deliberate damage, to prove the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Sabotage {
    /// After a durable flush, delete a key whose put is durable (outside the
    /// workload) and flush: a durable write is lost.
    LoseDurable,
    /// After a durable flush, write a value no operation of the workload wrote, and
    /// flush.
    ForgeValue,
    /// Checkpoint mode: after every checkpoint, delete its `CHECKPOINT` object (a
    /// release behind the engine's back).
    DropCheckpoint,
    /// Checkpoint mode: after every checkpoint, delete its shard 0 object, so it is
    /// committed but does not restore.
    DropCheckpointPart,
}

impl Sabotage {
    /// Damage done to checkpoints rather than to the database.
    pub fn is_checkpoint_sabotage(self) -> bool {
        matches!(
            self,
            Sabotage::DropCheckpoint | Sabotage::DropCheckpointPart
        )
    }
}

/// Flags of the hidden `crash-child` subcommand (the parent builds them).
#[derive(Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct ChildFlags {
    /// Database directory.
    #[arg(long)]
    pub db: PathBuf,
    /// Master seed of the run.
    #[arg(long)]
    pub seed: u64,
    /// Round (one per child), for the fault seed.
    #[arg(long)]
    pub round: u64,
    /// First operation index to issue.
    #[arg(long)]
    pub start: u64,
    /// Distinct keys.
    #[arg(long)]
    pub key_space: u32,
    /// Damage the database on purpose (checker self-test).
    #[arg(long, value_enum)]
    pub sabotage: Option<Sabotage>,
    /// Checkpoint mode: the directory of the object store (`file://`).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Checkpoint mode: the id of the first checkpoint.
    #[arg(long, default_value_t = 1)]
    pub first_checkpoint: u64,
    /// Checkpoint mode: `Options::gc_min_age` in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub gc_min_age_ms: u64,
    /// Database and store settings.
    #[command(flatten)]
    pub small_db: SmallDbFlags,
}

fn fail(what: &str, e: &terrace::Error) -> ! {
    ChildLine::Error {
        kind: e.kind().to_string(),
        message: format!("{what}: {e}"),
    }
    .send();
    eprintln!("crash-child: {what}: {e}");
    std::process::exit(2);
}

/// Runs the child until it is killed (or the database fails, exit code 2).
pub fn run(flags: &ChildFlags) -> ! {
    let workload = Workload {
        seed: flags.seed,
        key_space: flags.key_space,
        max_value_bytes: flags.small_db.max_value_bytes,
    };
    let faults = derive_seed(flags.seed, flags.round, SEED_CHILD_FAULTS);
    let opts = match &flags.store {
        Some(store) => checkpoints::options(
            &flags.small_db,
            &flags.db,
            store,
            faults,
            flags.gc_min_age_ms,
        ),
        None => flags.small_db.options(&flags.db, faults),
    };
    let l0_trigger = opts.l0_compaction_trigger;
    let db = block_on(Db::open(opts)).unwrap_or_else(|e| fail("open", &e));
    let table = db.table("default").unwrap_or_else(|e| fail("table", &e));
    ChildLine::Opened { start: flags.start }.send();

    let in_flush = Arc::new(AtomicBool::new(false));
    {
        let (db, in_flush) = (db.clone(), in_flush.clone());
        std::thread::spawn(move || monitor(&db, &in_flush, l0_trigger));
    }

    let mut driver = flags.store.as_ref().map(|store| {
        Driver::new(
            store,
            flags.first_checkpoint,
            flags.start,
            derive_seed(flags.seed, flags.round, SEED_CHILD_CHECKPOINTS),
            flags.sabotage,
        )
    });
    let mut reserved = flags.start;
    let mut sabotage = flags.sabotage.filter(|s| !s.is_checkpoint_sabotage());
    for i in flags.start.. {
        if i >= reserved {
            reserved = i + RESERVE_AHEAD;
            ChildLine::Reserve { end: reserved }.send();
        }
        if let Some(d) = &mut driver {
            if let Err((what, e)) = d.before_op(&db, i) {
                fail(&what, &e);
            }
        }
        let r = match workload.op(i) {
            CrashOp::Put { key, padding_bytes } => block_on(db.put(
                table,
                key_name(key).as_bytes(),
                &value(i, key, padding_bytes),
            )),
            CrashOp::Delete { key } => block_on(db.delete(table, key_name(key).as_bytes())),
            CrashOp::Flush => {
                in_flush.store(true, Ordering::Relaxed);
                let r = block_on(db.flush());
                in_flush.store(false, Ordering::Relaxed);
                if r.is_ok() {
                    ChildLine::Durable { op: i }.send();
                    if let Some(s) = sabotage {
                        if do_sabotage(&db, table, &workload, flags.start, i, s) {
                            sabotage = None;
                        }
                    }
                }
                r
            }
        };
        if let Err(e) = r {
            fail(&format!("operation #{i} ({:?})", workload.op(i)), &e);
        }
    }
    unreachable!("the operation index space is unbounded")
}

/// Samples what the database is doing and reports changes.
fn monitor(db: &Db, in_flush: &AtomicBool, l0_trigger: usize) {
    let mut last = None;
    let mut last_done = (0u64, 0u64);
    for tick in 0u32.. {
        std::thread::sleep(SAMPLE_EVERY);
        if tick % ENFORCE_BUDGET_EVERY == 0 {
            let _ = block_on(db.enforce_local_budget());
        }
        let Ok(stats) = block_on(db.stats()) else {
            continue;
        };
        let total = stats.total();
        let done = (total.compactions + total.trivial_moves, total.local_drops);
        let phase = Phase {
            flush: in_flush.load(Ordering::Relaxed)
                || stats.shards.iter().any(|s| s.immutable_memtables > 0),
            compaction: done.0 != last_done.0
                || stats
                    .shards
                    .iter()
                    .any(|s| s.levels.first().is_some_and(|l| l.files >= l0_trigger)),
            upload: stats.tier().pending_uploads > 0,
            drop: done.1 != last_done.1,
        };
        last_done = done;
        if last != Some(phase) {
            ChildLine::Phase(phase).send();
            last = Some(phase);
        }
    }
}

/// Damages the database right after flush operation `durable` returned. Returns
/// whether it found a key to damage: one whose durable state is a put.
fn do_sabotage(
    db: &Db,
    table: TableId,
    workload: &Workload,
    start: u64,
    durable: u64,
    how: Sabotage,
) -> bool {
    let mut last_put = vec![None; workload.key_space as usize];
    for i in start..durable {
        match workload.op(i) {
            CrashOp::Put { key, .. } => last_put[key as usize] = Some(i),
            CrashOp::Delete { key } => last_put[key as usize] = None,
            CrashOp::Flush => {}
        }
    }
    // Of the keys whose durable state is a put, take the one the workload leaves
    // alone the longest after `durable`: the last to be touched again.
    let mut left: Vec<bool> = last_put.iter().map(Option::is_some).collect();
    let mut count = left.iter().filter(|l| **l).count();
    if count == 0 {
        return false;
    }
    let mut quiet_until = durable + SABOTAGE_LOOKAHEAD;
    for i in durable + 1..durable + SABOTAGE_LOOKAHEAD {
        if count == 1 {
            quiet_until = i;
            break;
        }
        if let Some(k) = workload.op(i).key() {
            if left[k as usize] {
                left[k as usize] = false;
                count -= 1;
            }
        }
    }
    let Some(key) = left.iter().position(|l| *l) else {
        return false;
    };
    let (key, put) = (key as u32, last_put[key].unwrap_or_default());
    let name = key_name(key);
    let (r, what) = match how {
        // Done to checkpoints, by the checkpoint driver.
        Sabotage::DropCheckpoint | Sabotage::DropCheckpointPart => return false,
        Sabotage::LoseDurable => (
            block_on(db.delete(table, name.as_bytes())),
            format!(
                "deleted {name} behind the workload's back (its put #{put} is durable, \
                 no operation touches it before #{quiet_until})"
            ),
        ),
        Sabotage::ForgeValue => (
            // Claims to be written by the flush operation, which writes nothing.
            block_on(db.put(table, name.as_bytes(), &value(durable, key, 3))),
            format!(
                "wrote a value claiming operation #{durable} to {name} (durable put #{put}, \
                 no operation touches it before #{quiet_until})"
            ),
        ),
    };
    if let Err(e) = r.and_then(|()| block_on(db.flush())) {
        fail("sabotage", &e);
    }
    ChildLine::Sabotage { what }.send();
    true
}
