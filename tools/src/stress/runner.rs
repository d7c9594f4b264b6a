//! Applies operations to the database and the model and compares every answer.

use std::collections::VecDeque;
use std::ops::Bound;

use anyhow::{bail, Context};
use futures_lite::future::block_on;
use terrace::{Db, Options, TableId};

use super::model::Model;
use super::op::Op;

/// Operations kept for the failure report.
const RECENT_OPS: usize = 20;

/// Counts of what ran, for progress lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    /// Operations applied.
    pub ops: u64,
    /// Reads whose answer was checked.
    pub checked_reads: u64,
    /// Close-and-reopen cycles.
    pub reopens: u64,
}

/// The database under test, its model, and the recent history.
pub struct Runner {
    db: Option<Db>,
    opts: Options,
    tables: Vec<TableId>,
    model: Model,
    recent: VecDeque<String>,
    /// What ran so far.
    pub tally: Tally,
}

fn open(opts: &Options) -> anyhow::Result<(Db, Vec<TableId>)> {
    let db = block_on(Db::open(opts.clone()))
        .with_context(|| format!("opening {}", opts.path.display()))?;
    let tables = opts
        .tables
        .iter()
        .map(|t| db.table(t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((db, tables))
}

fn show(v: Option<&[u8]>) -> String {
    match v {
        None => "<none>".into(),
        Some(v) if v.len() > 32 => format!("{:?}... ({} bytes)", &v[..32], v.len()),
        Some(v) => format!("{v:?}"),
    }
}

impl Runner {
    /// Opens a fresh database with `opts` (whose `tables` lists every table used).
    pub fn new(opts: Options) -> anyhow::Result<Runner> {
        let (db, tables) = open(&opts)?;
        Ok(Runner {
            db: Some(db),
            model: Model::new(tables.len()),
            tables,
            opts,
            recent: VecDeque::new(),
            tally: Tally::default(),
        })
    }

    fn db(&self) -> anyhow::Result<&Db> {
        self.db.as_ref().context("database is not open")
    }

    /// Applies operation number `index`; a wrong answer is an error naming it.
    pub fn apply(&mut self, index: u64, op: &Op) -> anyhow::Result<()> {
        if self.recent.len() == RECENT_OPS {
            self.recent.pop_front();
        }
        self.recent.push_back(format!("#{index}: {op}"));
        if let Err(e) = self.step(op) {
            let history: Vec<&str> = self.recent.iter().map(String::as_str).collect();
            bail!(
                "operation #{index} ({op}): {e:#}\nlast operations:\n  {}",
                history.join("\n  ")
            );
        }
        self.tally.ops += 1;
        Ok(())
    }

    fn step(&mut self, op: &Op) -> anyhow::Result<()> {
        match op {
            Op::Put { table, key, value } => {
                block_on(self.db()?.put(self.tables[*table], key, value))?;
                self.model.put(*table, key, value);
            }
            Op::LocalPut {
                shard,
                table,
                key,
                value,
            } => {
                let (t, k, v) = (self.tables[*table], key.clone(), value.clone());
                block_on(self.db()?.on_shard(*shard, move |local| async move {
                    local.put(t, &k, &v).await
                }))??;
                self.model.put(*table, key, value);
            }
            Op::Delete { table, key } => {
                block_on(self.db()?.delete(self.tables[*table], key))?;
                self.model.delete(*table, key);
            }
            Op::Get { table, key } => {
                let got = block_on(self.db()?.get(self.tables[*table], key))?;
                self.check_value(*table, key, got.as_deref())?;
            }
            Op::LocalGet { shard, table, key } => {
                let (t, k) = (self.tables[*table], key.clone());
                let got = block_on(
                    self.db()?
                        .on_shard(*shard, move |local| async move { local.get(t, &k).await }),
                )??;
                self.check_value(*table, key, got.as_deref())?;
            }
            Op::MultiGet { table, keys } => {
                let got = block_on(self.db()?.multi_get(self.tables[*table], keys))?;
                if got.len() != keys.len() {
                    bail!(
                        "multi_get of {} keys returned {} answers",
                        keys.len(),
                        got.len()
                    );
                }
                for (k, v) in keys.iter().zip(&got) {
                    self.check_value(*table, k, v.as_deref())?;
                }
            }
            Op::Scan {
                table,
                from,
                to,
                limit,
            } => {
                let lower = from.as_deref().map_or(Bound::Unbounded, Bound::Included);
                let upper = to.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let got = block_on(self.db()?.scan(self.tables[*table], lower, upper, *limit))?;
                let want = self.model.scan(*table, lower, upper, *limit);
                if got != want {
                    let first_diff = got
                        .iter()
                        .zip(&want)
                        .position(|(a, b)| a != b)
                        .unwrap_or(got.len().min(want.len()));
                    bail!(
                        "DIVERGENCE: scan returned {} entries, model has {}; first difference at \
                         entry {first_diff}: db {:?} model {:?}",
                        got.len(),
                        want.len(),
                        got.get(first_diff)
                            .map(|e| String::from_utf8_lossy(&e.0).into_owned()),
                        want.get(first_diff)
                            .map(|e| String::from_utf8_lossy(&e.0).into_owned()),
                    );
                }
                self.tally.checked_reads += 1;
            }
            Op::Flush => block_on(self.db()?.flush())?,
            Op::Compact => block_on(self.db()?.compact_range(Bound::Unbounded, Bound::Unbounded))?,
            Op::Reopen => {
                let db = self.db.take().context("database is not open")?;
                block_on(db.close()).context("closing")?;
                let (db, tables) = open(&self.opts)?;
                self.db = Some(db);
                self.tables = tables;
                self.tally.reopens += 1;
            }
        }
        Ok(())
    }

    fn check_value(&mut self, table: usize, key: &[u8], got: Option<&[u8]>) -> anyhow::Result<()> {
        let want = self.model.get(table, key).map(Vec::as_slice);
        if got != want {
            bail!(
                "DIVERGENCE: key {:?} in table {table}: db has {}, model has {}",
                String::from_utf8_lossy(key),
                show(got),
                show(want)
            );
        }
        self.tally.checked_reads += 1;
        Ok(())
    }

    /// Reads every table in full and compares it with the model.
    pub fn verify_all(&mut self) -> anyhow::Result<()> {
        for table in 0..self.tables.len() {
            let got = block_on(self.db()?.scan(
                self.tables[table],
                Bound::Unbounded,
                Bound::Unbounded,
                usize::MAX,
            ))?;
            let want = self
                .model
                .scan(table, Bound::Unbounded, Bound::Unbounded, usize::MAX);
            if got != want {
                bail!(
                    "DIVERGENCE in full scan of table {table}: db has {} entries, model {}",
                    got.len(),
                    want.len()
                );
            }
        }
        Ok(())
    }

    /// Live keys in the model.
    pub fn model_keys(&self) -> usize {
        self.model.len()
    }

    /// Closes the database.
    pub fn close(mut self) -> anyhow::Result<()> {
        if let Some(db) = self.db.take() {
            block_on(db.close()).context("closing")?;
        }
        Ok(())
    }
}
