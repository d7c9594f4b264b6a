//! Judges what a database recovered after a kill, against what the killed child may
//! have written. Pure: the caller reads the database and hands over what it found.
//!
//! The state of a key is the operation whose value it holds (`Some(op)`) or `None`
//! when it is absent. A round is the life of one child: it started at operation
//! `start` from the verified state `model`, issued nothing at or beyond `end`, and
//! saw `Db::flush` return last at operation `durable`.
//!
//! Two checks:
//! - **per key**: the key holds its durable state (after the last operation on it at
//!   or before `durable`, else its state in `model`) or the state after an operation
//!   on it later than `durable`. Anything else is *lost* (an older value, a
//!   resurrected delete, a missing value) or *corrupt* (bytes that no operation wrote
//!   to this key).
//! - **per shard, a prefix**: with no WAL, memtables are flushed whole and in order,
//!   and the child issues one operation at a time, so a shard must come back exactly
//!   as it was after some prefix `ops < cut` with `durable < cut <= end`. A sweep over
//!   the round's operations counts, for each cut, the keys of the shard whose found
//!   state differs from the state after that prefix; the shard is consistent iff some
//!   allowed cut has no difference.

use std::fmt;

use super::workload::{key_name, parse_header, CrashOp, Workload};

/// What a round of the crash run did, as far as the parent knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Round {
    /// First operation the child was told to issue.
    pub start: u64,
    /// The highest flush operation the child reported durable, if any.
    pub durable: Option<u64>,
    /// No operation at or beyond this index was issued.
    pub end: u64,
}

impl Round {
    /// Smallest cut allowed: every operation up to the durable flush is applied.
    fn lowest_cut(&self) -> u64 {
        self.durable.map_or(self.start, |d| d + 1).max(self.start)
    }
}

/// What kind of wrong a key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrong {
    /// A durable write is missing, or an older value or a deleted key came back.
    Lost,
    /// The key holds bytes no operation wrote to it.
    Corrupt,
}

/// One thing the checker found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Lost or corrupt.
    pub wrong: Wrong,
    /// The key (index into the key space), or `None` for a whole-shard problem.
    pub key: Option<u32>,
    /// The shard.
    pub shard: u32,
    /// What the key may hold.
    pub expected: String,
    /// What it holds.
    pub found: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.wrong {
            Wrong::Lost => "LOST",
            Wrong::Corrupt => "CORRUPT",
        };
        match self.key {
            Some(k) => write!(
                f,
                "{what}: key {} (#{k}, shard {}): expected {}; found {}",
                key_name(k),
                self.shard,
                self.expected,
                self.found
            ),
            None => write!(
                f,
                "{what}: shard {}: expected {}; found {}",
                self.shard, self.expected, self.found
            ),
        }
    }
}

/// The outcome of checking one round.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// State of every key as recovered (corrupt keys read as absent).
    pub recovered: Vec<Option<u64>>,
    /// Everything wrong, keys first.
    pub problems: Vec<Problem>,
    /// Per shard, the lowest and highest cut that explains its state (`None` when none
    /// does, or when a corrupt key made the question moot).
    pub cuts: Vec<Option<(u64, u64)>>,
}

impl Verdict {
    /// Lost keys plus shards no prefix explains.
    pub fn lost(&self) -> u64 {
        self.count(Wrong::Lost)
    }

    /// Corrupt keys.
    pub fn corrupt(&self) -> u64 {
        self.count(Wrong::Corrupt)
    }

    fn count(&self, w: Wrong) -> u64 {
        self.problems.iter().filter(|p| p.wrong == w).count() as u64
    }
}

fn show(state: Option<u64>) -> String {
    match state {
        Some(op) => format!("the value of put #{op}"),
        None => "nothing".into(),
    }
}

/// Decodes what a key holds into a state, or says why no operation wrote it there.
pub fn decode(
    workload: &Workload,
    key: u32,
    end: u64,
    found: Option<&[u8]>,
) -> Result<Option<u64>, String> {
    let Some(bytes) = found else { return Ok(None) };
    let short = || {
        let n = bytes.len().min(48);
        format!(
            "{} bytes starting {:?}",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..n])
        )
    };
    let Some((op, name)) = parse_header(bytes) else {
        return Err(format!("{} (not a value this workload writes)", short()));
    };
    if name != key_name(key) {
        return Err(format!("the value put #{op} wrote to another key, {name}"));
    }
    if op >= end {
        return Err(format!(
            "a value claiming put #{op}, but no operation at or past #{end} was issued"
        ));
    }
    match workload.value_of(op) {
        Some(v) if v == bytes => Ok(Some(op)),
        Some(v) => Err(format!(
            "{} claiming put #{op}, which wrote {} different bytes",
            short(),
            v.len()
        )),
        None => Err(format!(
            "{} claiming put #{op}, which is not a put",
            short()
        )),
    }
}

/// Checks one round. `model[k]` is key `k`'s state before the round, `found[k]` what
/// the database holds now, `shard_of[k]` its shard.
pub fn check(
    workload: &Workload,
    model: &[Option<u64>],
    round: &Round,
    found: &[Option<Vec<u8>>],
    shard_of: &[u32],
    shards: u32,
) -> Verdict {
    let keys = model.len();
    let ops: Vec<(u64, CrashOp)> = (round.start..round.end)
        .map(|i| (i, workload.op(i)))
        .collect();
    // Per key, (operation, state after it) in order.
    let mut history: Vec<Vec<(u64, Option<u64>)>> = vec![Vec::new(); keys];
    for (i, op) in &ops {
        match op {
            CrashOp::Put { key, .. } => history[*key as usize].push((*i, Some(*i))),
            CrashOp::Delete { key } => history[*key as usize].push((*i, None)),
            CrashOp::Flush => {}
        }
    }
    let lowest_cut = round.lowest_cut();

    let mut verdict = Verdict {
        recovered: vec![None; keys],
        ..Verdict::default()
    };
    let mut states: Vec<Option<Option<u64>>> = vec![None; keys];
    let mut shard_has_problem = vec![false; shards as usize];
    for k in 0..keys {
        let key = k as u32;
        let shard = shard_of[k];
        let state = match decode(workload, key, round.end, found[k].as_deref()) {
            Ok(s) => s,
            Err(why) => {
                shard_has_problem[shard as usize] = true;
                verdict.problems.push(Problem {
                    wrong: Wrong::Corrupt,
                    key: Some(key),
                    shard,
                    expected: allowed_text(model[k], &history[k], lowest_cut),
                    found: why,
                });
                continue;
            }
        };
        states[k] = Some(state);
        verdict.recovered[k] = state;
        let durable = history[k]
            .iter()
            .take_while(|(i, _)| *i < lowest_cut)
            .last()
            .map_or(model[k], |(_, s)| *s);
        let ok = state == durable
            || history[k]
                .iter()
                .any(|(i, s)| *i >= lowest_cut && *s == state);
        if !ok {
            shard_has_problem[shard as usize] = true;
            verdict.problems.push(Problem {
                wrong: Wrong::Lost,
                key: Some(key),
                shard,
                expected: allowed_text(model[k], &history[k], lowest_cut),
                found: show(state),
            });
        }
    }

    for shard in 0..shards {
        let cut = if shard_has_problem[shard as usize] {
            None
        } else {
            let cut = prefix_cut(model, &states, &ops, shard_of, shard, round, lowest_cut);
            if let Err(detail) = &cut {
                verdict.problems.push(Problem {
                    wrong: Wrong::Lost,
                    key: None,
                    shard,
                    expected: format!(
                        "the state after a prefix of its operations, cut in #{lowest_cut}..=#{}",
                        round.end
                    ),
                    found: detail.clone(),
                });
            }
            cut.ok()
        };
        verdict.cuts.push(cut);
    }
    verdict
}

/// "durable: X; or after a later operation: Y, Z".
fn allowed_text(model: Option<u64>, history: &[(u64, Option<u64>)], lowest_cut: u64) -> String {
    let durable = history.iter().take_while(|(i, _)| *i < lowest_cut).last();
    let mut s = match durable {
        Some((i, state)) => format!("{} (durable since #{i})", show(*state)),
        None => format!("{} (its state before this round)", show(model)),
    };
    let later: Vec<String> = history
        .iter()
        .filter(|(i, _)| *i >= lowest_cut)
        .take(6)
        .map(|(i, state)| match state {
            Some(_) => format!("put #{i}"),
            None => format!("delete #{i}"),
        })
        .collect();
    if !later.is_empty() {
        s.push_str(&format!(", or the outcome of a later {}", later.join(", ")));
    }
    s
}

/// The lowest and highest cut `c` (`lowest_cut <= c <= end`) such that the shard's
/// keys hold exactly the state after operations `< c`; or a description of the
/// closest cut.
fn prefix_cut(
    model: &[Option<u64>],
    states: &[Option<Option<u64>>],
    ops: &[(u64, CrashOp)],
    shard_of: &[u32],
    shard: u32,
    round: &Round,
    lowest_cut: u64,
) -> Result<(u64, u64), String> {
    let found = |k: usize| states[k].unwrap_or(None);
    let mut cur: Vec<Option<u64>> = model.to_vec();
    let mut differ = (0..model.len())
        .filter(|&k| shard_of[k] == shard && cur[k] != found(k))
        .count();
    let mut valid: Option<(u64, u64)> = None;
    let mut best: (usize, u64) = (usize::MAX, round.start);
    let mut consider = |cut: u64, differ: usize| {
        if cut < lowest_cut {
            return;
        }
        if differ == 0 {
            valid = Some(valid.map_or((cut, cut), |(lo, _)| (lo, cut)));
        }
        if differ < best.0 {
            best = (differ, cut);
        }
    };
    consider(round.start, differ);
    for (i, op) in ops {
        if let Some(key) = op.key() {
            let k = key as usize;
            if shard_of[k] == shard {
                let before = cur[k] != found(k);
                cur[k] = match op {
                    CrashOp::Put { .. } => Some(*i),
                    _ => None,
                };
                let after = cur[k] != found(k);
                differ = differ + usize::from(after) - usize::from(before);
            }
        }
        consider(i + 1, differ);
    }
    if let Some(v) = valid {
        return Ok(v);
    }
    // Explain the closest cut: which keys differ there.
    let (n, cut) = best;
    let mut at: Vec<Option<u64>> = model.to_vec();
    for (i, op) in ops.iter().take_while(|(i, _)| *i < cut) {
        match op {
            CrashOp::Put { key, .. } => at[*key as usize] = Some(*i),
            CrashOp::Delete { key } => at[*key as usize] = None,
            CrashOp::Flush => {}
        }
    }
    let keys: Vec<String> = (0..model.len())
        .filter(|&k| shard_of[k] == shard && at[k] != found(k))
        .take(4)
        .map(|k| {
            format!(
                "{} holds {} but {}",
                key_name(k as u32),
                show(found(k)),
                show(at[k])
            )
        })
        .collect();
    Err(format!(
        "no prefix explains it; the closest, ops < #{cut}, differs in {n} keys: {}",
        keys.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workload small enough to reason about, and the operations it draws: the
    /// first seed whose 400 operations hold flushes both before and after #200.
    fn setup() -> (Workload, Vec<CrashOp>) {
        (0..)
            .map(|seed| {
                let w = Workload {
                    seed,
                    key_space: 8,
                    max_value_bytes: 64,
                };
                (w, (0..400).map(|i| w.op(i)).collect::<Vec<_>>())
            })
            .find(|(_, ops)| {
                let flush = |r: std::ops::Range<usize>| ops[r].contains(&CrashOp::Flush);
                flush(0..200) && flush(200..250)
            })
            .expect("some seed")
    }

    /// The state of every key after operations `< cut`.
    fn state_after(ops: &[CrashOp], cut: u64, keys: usize) -> Vec<Option<u64>> {
        let mut s = vec![None; keys];
        for (i, op) in ops.iter().enumerate().take(cut as usize) {
            match op {
                CrashOp::Put { key, .. } => s[*key as usize] = Some(i as u64),
                CrashOp::Delete { key } => s[*key as usize] = None,
                CrashOp::Flush => {}
            }
        }
        s
    }

    fn bytes_of(w: &Workload, s: &[Option<u64>]) -> Vec<Option<Vec<u8>>> {
        s.iter().map(|o| o.and_then(|op| w.value_of(op))).collect()
    }

    fn last_flush_before(ops: &[CrashOp], cut: u64) -> Option<u64> {
        (0..cut).rev().find(|&i| ops[i as usize] == CrashOp::Flush)
    }

    #[test]
    fn every_prefix_at_or_after_the_durable_point_passes() {
        let (w, ops) = setup();
        let model = vec![None; 8];
        let shard_of: Vec<u32> = (0..8).map(|k| k % 2).collect();
        let durable = last_flush_before(&ops, 200);
        let round = Round {
            start: 0,
            durable,
            end: 300,
        };
        for cut in round.lowest_cut()..=300 {
            let found = bytes_of(&w, &state_after(&ops, cut, 8));
            let v = check(&w, &model, &round, &found, &shard_of, 2);
            assert!(v.problems.is_empty(), "cut {cut}: {:?}", v.problems);
            assert_eq!(v.recovered, state_after(&ops, cut, 8));
        }
    }

    #[test]
    fn shards_may_stop_at_different_cuts() {
        let (w, ops) = setup();
        let model = vec![None; 8];
        let shard_of: Vec<u32> = (0..8).map(|k| k % 2).collect();
        let round = Round {
            start: 0,
            durable: None,
            end: 300,
        };
        let (a, b) = (state_after(&ops, 120, 8), state_after(&ops, 290, 8));
        let mixed: Vec<Option<u64>> = (0..8)
            .map(|k| if k % 2 == 0 { a[k] } else { b[k] })
            .collect();
        let v = check(&w, &model, &round, &bytes_of(&w, &mixed), &shard_of, 2);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }

    #[test]
    fn a_missing_durable_write_is_lost() {
        let (w, ops) = setup();
        let model = vec![None; 8];
        let shard_of = vec![0; 8];
        let durable = last_flush_before(&ops, 250).expect("a flush");
        // A few operations after the durable point, which may or may not be there.
        let end = durable + 4;
        let round = Round {
            start: 0,
            durable: Some(durable),
            end,
        };
        let mut s = state_after(&ops, durable + 1, 8);
        // Forget the durable put of a key that the later operations leave alone.
        let later = &ops[durable as usize..end as usize];
        let k = (0..8)
            .find(|&k| s[k].is_some() && !later.iter().any(|o| o.key() == Some(k as u32)))
            .expect("an untouched live key");
        s[k] = None;
        let v = check(&w, &model, &round, &bytes_of(&w, &s), &shard_of, 1);
        assert_eq!((v.lost(), v.corrupt()), (1, 0), "{:?}", v.problems);
        assert_eq!(v.problems[0].key, Some(k as u32));
    }

    #[test]
    fn an_older_value_is_lost_and_foreign_bytes_are_corrupt() {
        let (w, ops) = setup();
        let model = vec![None; 8];
        let shard_of = vec![0; 8];
        let round = Round {
            start: 0,
            durable: None,
            end: 400,
        };
        let mut found = bytes_of(&w, &state_after(&ops, 400, 8));
        // Key 0 gets a value of another key; key 1 an older value of its own.
        let other = (0..400u64)
            .find(|&i| matches!(ops[i as usize], CrashOp::Put { key, .. } if key != 0))
            .expect("a put");
        found[0] = w.value_of(other);
        let puts_of_1: Vec<u64> = (0..400u64)
            .filter(|&i| matches!(ops[i as usize], CrashOp::Put { key: 1, .. }))
            .collect();
        assert!(puts_of_1.len() >= 2);
        found[1] = w.value_of(puts_of_1[0]);
        let v = check(&w, &model, &round, &found, &shard_of, 1);
        // Key 1's old value is allowed per key (a cut right after it) but the shard
        // as a whole is not a prefix; key 0 is corrupt, which settles the shard.
        assert_eq!(v.corrupt(), 1, "{:?}", v.problems);
        found[0] = bytes_of(&w, &state_after(&ops, 400, 8))[0].clone();
        let v = check(&w, &model, &round, &found, &shard_of, 1);
        assert_eq!((v.lost(), v.corrupt()), (1, 0), "{:?}", v.problems);
        assert_eq!(v.problems[0].key, None, "the prefix check caught it");
    }

    #[test]
    fn values_from_beyond_the_reservation_are_corrupt() {
        let (w, ops) = setup();
        let round = Round {
            start: 0,
            durable: None,
            end: 100,
        };
        let late = (100..400u64)
            .find(|&i| matches!(ops[i as usize], CrashOp::Put { .. }))
            .expect("a put");
        let key = ops[late as usize].key().expect("key");
        let got = decode(&w, key, round.end, w.value_of(late).as_deref());
        assert!(got.is_err());
    }
}
