//! The database of a compaction run next to its model, and the checks that compare
//! them: the layout of its files, sampled or full reads, and reopens.

use std::collections::{HashSet, VecDeque};
use std::ops::Bound;

use anyhow::Context;
use futures_lite::future::block_on;
use rand::rngs::SmallRng;
use rand::Rng;
use terrace::{Db, Options, TableId};
use terrace_tiering::clock::seeded_rng;

use super::invariants::{check_layout, check_reopen, Layout};
use super::workload::Op;
use crate::stress::crash::workload::key_name;
use crate::stress::model::Model;

/// Recently deleted keys remembered for resurrection probes.
const RECENT_DELETES: usize = 256;

/// The database under test and what it should hold.
pub(super) struct Checker {
    /// The open database (`None` only while reopening).
    pub(super) db: Option<Db>,
    opts: Options,
    table: TableId,
    /// The shape its files must fit.
    pub(super) layout: Layout,
    /// What it should hold (one table).
    pub(super) model: Model,
    recent_deletes: VecDeque<u32>,
    key_space: u32,
    sample_keys: usize,
    rng: SmallRng,
    /// Every (shard, file id) seen live.
    pub(super) files_seen: HashSet<(u32, u64)>,
    /// The engine's count of trivial moves at the last check (since the open).
    moves_counted: u64,
    /// Moves noticed since the last reopen.
    pub(super) moves_seen: u64,
    /// Checks run.
    pub(super) checks: u64,
    /// Reopens done.
    pub(super) reopens: u64,
    /// Engine counters of the sessions closed so far (counters restart at open).
    pub(super) engine: EngineTotals,
    /// Found by the last reopen, reported by the next check.
    pub(super) reopen_violations: Vec<String>,
}

impl Checker {
    /// Wraps the freshly opened `db` (opened with `opts`); `seed` picks sampled keys.
    pub(super) fn new(
        db: Db,
        opts: Options,
        key_space: u32,
        sample_keys: usize,
        seed: u64,
    ) -> anyhow::Result<Checker> {
        Ok(Checker {
            table: db.table("default")?,
            db: Some(db),
            layout: Layout {
                shards: opts.shards,
                max_key_groups: opts.max_key_groups,
                num_levels: opts.num_levels,
            },
            opts,
            model: Model::new(1),
            recent_deletes: VecDeque::new(),
            key_space,
            sample_keys,
            rng: seeded_rng(seed ^ 0x5eed),
            files_seen: HashSet::new(),
            moves_counted: 0,
            moves_seen: 0,
            checks: 0,
            reopens: 0,
            engine: EngineTotals::default(),
            reopen_violations: Vec::new(),
        })
    }

    /// The open database.
    pub(super) fn db(&self) -> anyhow::Result<&Db> {
        self.db.as_ref().context("database is not open")
    }

    /// Applies `op` to the database and the model; returns whether a full check
    /// should follow.
    pub(super) fn apply(&mut self, op: &Op) -> anyhow::Result<bool> {
        let t = self.table;
        let db = self.db()?.clone();
        let mut full_check = false;
        match op {
            Op::Put(k, v) => {
                block_on(db.put(t, key_name(*k).as_bytes(), v))?;
                self.model.put(0, key_name(*k).as_bytes(), v);
            }
            Op::Delete(k) => {
                block_on(db.delete(t, key_name(*k).as_bytes()))?;
                self.deleted(*k);
            }
            Op::DeleteRun(first, len) => {
                for k in *first..(*first + len).min(self.key_space) {
                    block_on(db.delete(t, key_name(k).as_bytes()))?;
                    self.deleted(k);
                }
            }
            Op::Flush => block_on(db.flush())?,
            Op::CompactRange(lo, hi) => {
                let (lo, hi) = (lo.map(key_name), hi.map(key_name));
                fn bound(k: &Option<String>) -> Bound<&[u8]> {
                    k.as_ref()
                        .map_or(Bound::Unbounded, |k| Bound::Included(k.as_bytes()))
                }
                block_on(db.compact_range(bound(&lo), bound(&hi)))?;
                full_check = true;
            }
            Op::WaitForCompactions => {
                block_on(db.wait_for_compactions())?;
                full_check = true;
            }
            Op::Reopen => {
                let found = self.reopen_and_compare()?;
                self.reopen_violations.extend(found);
                full_check = true;
            }
        }
        Ok(full_check)
    }

    /// Settles the database so nothing changes its files during the close, closes
    /// it, reopens it and compares the files before and after.
    pub(super) fn reopen_and_compare(&mut self) -> anyhow::Result<Vec<String>> {
        let db = self.db()?.clone();
        block_on(db.flush())?;
        block_on(db.wait_for_compactions())?;
        block_on(db.wait_for_uploads())?;
        let before = block_on(db.live_files())?;
        drop(db);
        self.reopen()?;
        self.reopens += 1;
        self.moves_seen = 0;
        self.moves_counted = 0;
        let after = block_on(self.db()?.live_files())?;
        Ok(check_reopen(&before, &after))
    }

    fn deleted(&mut self, k: u32) {
        self.model.delete(0, key_name(k).as_bytes());
        if self.recent_deletes.len() == RECENT_DELETES {
            self.recent_deletes.pop_front();
        }
        self.recent_deletes.push_back(k);
    }

    /// One check: the layout, then sampled keys or (`full`) the whole table.
    /// Returns the violations found.
    pub(super) fn check(&mut self, full: bool) -> anyhow::Result<Vec<String>> {
        self.checks += 1;
        let db = self.db()?.clone();
        let files = block_on(db.live_files())?;
        for f in &files {
            self.files_seen.insert((f.shard, f.id));
        }
        let moves = block_on(db.stats())?.total().trivial_moves;
        self.moves_seen += moves.saturating_sub(self.moves_counted);
        self.moves_counted = moves;
        let mut out = std::mem::take(&mut self.reopen_violations);
        out.extend(check_layout(&files, &self.layout));
        if full {
            let got =
                block_on(db.scan(self.table, Bound::Unbounded, Bound::Unbounded, usize::MAX))?;
            let want = self
                .model
                .scan(0, Bound::Unbounded, Bound::Unbounded, usize::MAX);
            if got != want {
                out.push(full_scan_difference(&got, &want));
            }
        } else {
            let mut keys: Vec<u32> = (0..self.sample_keys)
                .map(|_| self.rng.gen_range(0..self.key_space))
                .collect();
            keys.extend(self.recent_deletes.iter().rev().take(self.sample_keys));
            let names: Vec<String> = keys.iter().map(|&k| key_name(k)).collect();
            let got = block_on(db.multi_get(self.table, &names))?;
            for (name, v) in names.iter().zip(got) {
                let want = self.model.get(0, name.as_bytes());
                if v.as_ref() != want {
                    out.push(format!(
                        "key {name}: db has {}, model has {}",
                        describe(v.as_deref()),
                        describe(want.map(Vec::as_slice))
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Closes and reopens the database.
    fn reopen(&mut self) -> anyhow::Result<()> {
        self.note_engine_stats();
        let db = self.db.take().context("database is not open")?;
        block_on(db.close()).context("closing")?;
        let db = block_on(Db::open(self.opts.clone())).context("reopening")?;
        self.table = db.table("default")?;
        self.db = Some(db);
        Ok(())
    }
}

/// Engine counters summed over sessions.
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)] // the engine's counters of the same names
pub(super) struct EngineTotals {
    pub(super) flushes: u64,
    pub(super) compactions: u64,
    pub(super) trivial_moves: u64,
    pub(super) uploads: u64,
    pub(super) upload_failures: u64,
    pub(super) local_drops: u64,
    pub(super) remote_reads: u64,
    pub(super) faults: u64,
}

impl Checker {
    /// Adds the open session's counters to the totals (call before closing).
    pub(super) fn note_engine_stats(&mut self) {
        let Some(Ok(s)) = self.db.as_ref().map(|db| block_on(db.stats())) else {
            return;
        };
        let (t, e) = (s.total(), &mut self.engine);
        e.flushes += t.flushes;
        e.compactions += t.compactions;
        e.trivial_moves += t.trivial_moves;
        e.uploads += t.uploads;
        e.upload_failures += t.upload_failures;
        e.local_drops += t.local_drops;
        e.remote_reads += s.tier().remote_reads.requests;
        e.faults += s.faults_injected;
    }
}

/// "the value of put #12 to k000003" / "nothing" / raw bytes.
fn describe(v: Option<&[u8]>) -> String {
    match v {
        None => "nothing".into(),
        Some(v) => match crate::stress::crash::workload::parse_header(v) {
            Some((op, key)) => format!("the value of put #{op} to {key} ({} bytes)", v.len()),
            None => format!("{} foreign bytes", v.len()),
        },
    }
}

fn full_scan_difference(got: &[(Vec<u8>, Vec<u8>)], want: &[(Vec<u8>, Vec<u8>)]) -> String {
    let i = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let entry = |e: Option<&(Vec<u8>, Vec<u8>)>| {
        e.map_or("the end".into(), |(k, v)| {
            format!("{} = {}", String::from_utf8_lossy(k), describe(Some(v)))
        })
    };
    format!(
        "full scan: db has {} keys, model {}; first difference at entry {i}: db {}, model {}",
        got.len(),
        want.len(),
        entry(got.get(i)),
        entry(want.get(i))
    )
}
