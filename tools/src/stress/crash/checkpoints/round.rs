//! The parent's round in checkpoint mode, after the kill: judge the committed
//! checkpoints against the [`Book`](super::book::Book), then restore the newest (or
//! reopen the old directory), and compare one older committed checkpoint too.

use std::ops::Bound;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use futures_lite::future::block_on;
use rand::Rng;
use terrace::{CheckpointReader, Db, ObjectStoreSpec, Options, RestoreInfo};
use terrace_tiering::clock::seeded_rng;

use super::book::{Known, RoundFacts};
use super::compare::{compare, from_scan};
use super::listing;
use crate::stress::crash::child::{SEED_PARENT_FAULTS, SEED_RESTORE};
use crate::stress::crash::read_back::{read_open, ReadBack};
use crate::stress::crash::verify::{Problem, Wrong};
use crate::stress::crash::{Killed, Parent, READ_BACK_ATTEMPTS};
use crate::stress::small_db::derive_seed;
use crate::stress::store_audit;
use crate::stress::watchdog::Watchdog;

/// One round in this many reopens the old directory instead of restoring.
const REOPEN_ONE_IN: u32 = 4;
/// One restore in this many names the checkpoint (`Some(id)`) instead of asking
/// for the newest.
const RESTORE_BY_ID_ONE_IN: u32 = 3;

/// What a round found wrong, counted and worded.
#[derive(Default)]
struct Findings {
    lost: u64,
    corrupt: u64,
    lines: Vec<String>,
}

impl Findings {
    fn problem(&mut self, p: &Problem) {
        match p.wrong {
            Wrong::Lost => self.lost += 1,
            Wrong::Corrupt => self.corrupt += 1,
        }
        self.lines.push(p.to_string());
    }

    fn lost(&mut self, line: String) {
        self.lost += 1;
        self.lines.push(line);
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Restores into `opts.path`, reads every key, closes.
fn restore_and_read(
    opts: Options,
    id: Option<u64>,
    key_space: u32,
) -> Result<(RestoreInfo, ReadBack), terrace::Error> {
    let (db, info) = block_on(Db::restore(opts, id))?;
    let read = read_open(&db, key_space);
    let closed = block_on(db.close());
    let read = read?;
    closed?;
    Ok((info, read))
}

/// A whole-table scan: (key, value) pairs.
type Scanned = Vec<(Vec<u8>, Vec<u8>)>;

/// Opens checkpoint `id` read-only and scans the default table.
fn scan_checkpoint(uri: &str, id: u64, base: Options) -> Result<Scanned, terrace::Error> {
    block_on(async {
        let r =
            CheckpointReader::open(ObjectStoreSpec::Uri(uri.to_string()), Some(id), base).await?;
        let t = r.table("default")?;
        let all = r
            .scan(t, Bound::Unbounded, Bound::Unbounded, usize::MAX)
            .await;
        let closed = r.close().await;
        let all = all?;
        closed?;
        Ok(all)
    })
}

impl Parent<'_> {
    /// The rest of round `round` in checkpoint mode. `Ok(Err(why))` is a failed round.
    pub(in crate::stress::crash) fn checkpoint_round(
        &mut self,
        round: u64,
        killed: &Killed,
    ) -> anyhow::Result<Result<(), String>> {
        let retained = self.options(&self.db, 0).retained_checkpoints;
        let Some(c) = self.ckpt.as_mut() else {
            anyhow::bail!("a checkpoint round outside checkpoint mode");
        };
        let facts = RoundFacts {
            generation: c.generation,
            model: &self.model,
            start: killed.ops.start,
            heard: &killed.heard,
            retained,
        };
        let expect = c.book.expect(&self.workload, &facts);
        let listed = listing::committed(&c.store)
            .with_context(|| format!("listing the checkpoints in {}", c.store.display()))?;
        let mut f = Findings::default();
        for p in c
            .book
            .settle(expect, &listed, &killed.heard.checkpoints_begun)
        {
            if p.is_lost() {
                f.lost += 1;
            } else {
                f.corrupt += 1;
            }
            f.lines.push(p.to_string());
        }
        let newest = c
            .book
            .committed
            .last_key_value()
            .map(|(id, k)| (*id, k.clone()));
        let older: Vec<(u64, Known)> = c
            .book
            .committed
            .iter()
            .filter(|(id, _)| Some(**id) != newest.as_ref().map(|n| n.0))
            .map(|(id, k)| (*id, k.clone()))
            .collect();
        if !f.is_empty() {
            return Ok(Err(self.failure(
                round,
                f.lost,
                f.corrupt,
                killed,
                f.lines.into_iter(),
            )));
        }

        let mut rng = seeded_rng(derive_seed(self.seed, round, SEED_RESTORE));
        let reopen = rng.gen_ratio(1, REOPEN_ONE_IN);
        let rescale = super::CheckpointRun::draw_rescale(
            &mut rng,
            self.flags.rescale_one_in,
            self.shards,
            self.flags.rescale_max_shards,
        );
        let from = self.shards;
        let into = |n: Option<u32>| match n {
            Some(n) => format!(" ({from} -> {n} shards)"),
            None => String::new(),
        };
        let how = match &newest {
            Some((id, known)) if !reopen => {
                let by_id = rng.gen_ratio(1, RESTORE_BY_ID_ONE_IN);
                self.restore_newest(round, *id, known, by_id, rescale, killed, &mut f)?;
                format!(
                    "restored checkpoint {id} ({}) into {}{}",
                    if by_id { "by id" } else { "the newest" },
                    self.db.display(),
                    into(rescale)
                )
            }
            _ => {
                let verdict = match self.reopen_and_check(round, killed, rescale) {
                    Ok(v) => v,
                    Err(why) => return Ok(Err(why)),
                };
                self.model = verdict.recovered;
                if let (Some(n), Some(c)) = (rescale, self.ckpt.as_mut()) {
                    c.rescales.resplits += 1;
                    c.rescales.counts.insert(n);
                }
                match &newest {
                    Some((id, known)) => {
                        self.check_with_reader(round, *id, known, killed, &mut f);
                        format!(
                            "reopened {}{}, read checkpoint {id}",
                            self.db.display(),
                            into(rescale)
                        )
                    }
                    None => format!(
                        "reopened {}{}; no checkpoint yet",
                        self.db.display(),
                        into(rescale)
                    ),
                }
            }
        };
        let mut checked = String::new();
        if !older.is_empty() {
            let (id, known) = &older[rng.gen_range(0..older.len())];
            self.check_with_reader(round, *id, known, killed, &mut f);
            checked = format!(", read older checkpoint {id} of {}", older.len());
        }
        if !f.is_empty() {
            return Ok(Err(self.failure(
                round,
                f.lost,
                f.corrupt,
                killed,
                f.lines.into_iter(),
            )));
        }
        self.next_op = killed.ops.end;
        self.progress(round, &format!("{}; {how}{checked}", killed.what));
        Ok(Ok(()))
    }

    /// Restores checkpoint `id`, the newest committed, into the next generation's
    /// directory — with `rescale`, into that many shards instead of the count that
    /// took it — compares it with `known` (exactly, whatever the count), and makes
    /// it the database the next child continues.
    #[allow(clippy::too_many_arguments)]
    fn restore_newest(
        &mut self,
        round: u64,
        id: u64,
        known: &Known,
        by_id: bool,
        rescale: Option<u32>,
        killed: &Killed,
        f: &mut Findings,
    ) -> anyhow::Result<()> {
        let Some(c) = self.ckpt.as_ref() else {
            anyhow::bail!("a restore outside checkpoint mode");
        };
        let dir = c.db_dir(c.generation + 1);
        let key_space = self.flags.key_space;
        let _guard = Watchdog::arm(
            Duration::from_secs(self.flags.verify_timeout_secs),
            format!(
                "restoring checkpoint {id} into {} after round {round} (seed {})",
                dir.display(),
                self.seed
            ),
        );
        let mut attempt = 0;
        let result = loop {
            remove_dir(&dir)?;
            let faults = derive_seed(self.seed, round, SEED_PARENT_FAULTS + 100 * attempt);
            let mut opts = self.options(&dir, faults);
            if let Some(n) = rescale {
                opts.shards = n;
            }
            match restore_and_read(opts, by_id.then_some(id), key_space) {
                Err(e)
                    if e.kind() != terrace::ErrorKind::Corruption
                        && attempt + 1 < u64::from(READ_BACK_ATTEMPTS) =>
                {
                    println!(
                        "  round {round}: restoring checkpoint {id} failed ({e}); trying again"
                    );
                    attempt += 1;
                }
                r => break r,
            }
        };
        let (info, read) = match result {
            Ok(r) => r,
            Err(e) => {
                f.lost(format!(
                    "LOST: checkpoint {id}: expected the newest committed checkpoint to restore; \
                     found {e}"
                ));
                return Ok(());
            }
        };
        if info.checkpoint != id {
            f.lost(format!(
                "LOST: checkpoint {id}: expected Db::restore of the newest to restore it, the \
                 newest committed; found it restored checkpoint {}",
                info.checkpoint
            ));
            return Ok(());
        }
        self.report.keys_verified += u64::from(key_space);
        for p in compare(
            &self.workload,
            id,
            known,
            &read.found,
            &read.shard_of,
            killed.ops.end,
        )
        .iter()
        .chain(&read.problems)
        {
            f.problem(p);
        }
        let store = self.store_dir();
        self.store = store_audit::audit(&store, &read.files);
        for p in self.store.problems.clone() {
            f.problem(&p);
        }
        if let Some(c) = self.ckpt.as_mut() {
            c.shard_of = read.shard_of;
            c.restores += 1;
            c.verified += 1;
            c.generation += 1;
            if f.is_empty() {
                // The old directory is never opened again: the next child continues
                // from the restore.
                let old = std::mem::replace(&mut self.db, dir);
                remove_dir(&old)?;
                self.model = known.state.to_vec();
                if let Some(n) = rescale {
                    c.rescales.restores += 1;
                    c.rescales.counts.insert(n);
                    self.shards = n;
                }
            }
        }
        Ok(())
    }

    /// Opens committed checkpoint `id` read-only and compares it with `known`.
    fn check_with_reader(
        &mut self,
        round: u64,
        id: u64,
        known: &Known,
        killed: &Killed,
        f: &mut Findings,
    ) {
        let Some(c) = self.ckpt.as_ref() else { return };
        let uri = c.uri();
        let _guard = Watchdog::arm(
            Duration::from_secs(self.flags.verify_timeout_secs),
            format!(
                "reading checkpoint {id} after round {round} (seed {})",
                self.seed
            ),
        );
        let mut attempt = 0;
        let result = loop {
            let faults = derive_seed(self.seed, round, SEED_PARENT_FAULTS + 100 * attempt + 1);
            let base = self.options(&self.db, faults);
            match scan_checkpoint(&uri, id, base) {
                Err(e)
                    if e.kind() != terrace::ErrorKind::Corruption
                        && attempt + 1 < u64::from(READ_BACK_ATTEMPTS) =>
                {
                    println!("  round {round}: reading checkpoint {id} failed ({e}); trying again");
                    attempt += 1;
                }
                r => break r,
            }
        };
        let scanned = match result {
            Ok(s) => s,
            Err(e) => {
                f.lost(format!(
                    "LOST: checkpoint {id}: expected a committed checkpoint to restore; found {e}"
                ));
                return;
            }
        };
        let key_space = self.flags.key_space;
        self.report.keys_verified += u64::from(key_space);
        let (found, mut problems) = from_scan(scanned, key_space, id);
        let shard_of = match self.ckpt.as_mut() {
            Some(c) => {
                c.verified += 1;
                if c.shard_of.len() == key_space as usize {
                    c.shard_of.clone()
                } else {
                    vec![0; key_space as usize]
                }
            }
            None => return,
        };
        problems.extend(compare(
            &self.workload,
            id,
            known,
            &found,
            &shard_of,
            killed.ops.end,
        ));
        for p in &problems {
            f.problem(p);
        }
    }
}

/// Removes a directory that may not exist.
fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}
