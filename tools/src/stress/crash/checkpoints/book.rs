//! The parent's knowledge of checkpoints: which ones must be in the store after a
//! kill, which ones may be, and the exact state each one holds. Pure: the caller
//! lists the store and hands over the ids it found.
//!
//! A checkpoint is *committed* once its `CHECKPOINT` object exists; `Db::checkpoint`
//! returning proves it, but a call the kill interrupted may have committed too. So
//! after a round:
//! - **may exist**: every checkpoint committed at the last listing, plus every
//!   checkpoint this round began, minus those whose release returned (explicitly,
//!   or by retention as the returning `checkpoint` call reported);
//! - **must exist**: of those, the ones committed at the last listing or whose call
//!   returned this round, minus a release the kill interrupted and minus what the
//!   interrupted checkpoint's retention may have released: the oldest checkpoints
//!   of the child's database beyond `retained_checkpoints`.
//!
//! Whatever the store lists outside "may" is a forged or resurrected checkpoint;
//! whatever "must" holds that the store lacks is lost. The listing then settles
//! the question for the interrupted checkpoint: nothing can commit it any more.
//!
//! A checkpoint's state is the child's starting model with the operations below
//! its `op` applied, since the child issues one operation at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::super::heard::Heard;
use super::super::workload::{CrashOp, Workload};

/// A checkpoint the parent knows of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// The database generation that took it (a restore starts a new one; a
    /// reopen of the same directory keeps it): retention works per database.
    pub generation: u64,
    /// It covers the operations below this index.
    pub op: u64,
    /// Per key, the operation whose value it holds, or `None` if absent.
    pub state: Arc<Vec<Option<u64>>>,
}

/// What a round's child may have left in the store.
#[derive(Debug, Default)]
pub struct Expect {
    /// Checkpoints that may be committed, with their states.
    pub may: BTreeMap<u64, Known>,
    /// Checkpoints that must be committed.
    pub must: BTreeSet<u64>,
    /// Checkpoints whose release returned: they must not be committed.
    pub released: BTreeSet<u64>,
}

/// One wrong thing about the set of committed checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListingProblem {
    /// A checkpoint that must be committed is not.
    Missing(u64),
    /// A committed checkpoint that was released.
    Released(u64),
    /// A committed checkpoint no child began.
    Unknown(u64),
}

impl std::fmt::Display for ListingProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListingProblem::Missing(id) => write!(
                f,
                "LOST: checkpoint {id}: expected committed (its checkpoint call returned, \
                 no release of it began); found no CHECKPOINT object"
            ),
            ListingProblem::Released(id) => write!(
                f,
                "CORRUPT: checkpoint {id}: expected gone (its release returned); found it \
                 committed"
            ),
            ListingProblem::Unknown(id) => write!(
                f,
                "CORRUPT: checkpoint {id}: expected only checkpoints the children began; \
                 found it committed"
            ),
        }
    }
}

impl ListingProblem {
    /// Lost rather than corrupt.
    pub fn is_lost(&self) -> bool {
        matches!(self, ListingProblem::Missing(_))
    }
}

/// The committed checkpoints as of the last listing.
#[derive(Debug, Default)]
pub struct Book {
    /// Committed checkpoints, by id.
    pub committed: BTreeMap<u64, Known>,
    /// The next child's first checkpoint id: above every id ever begun.
    pub next_id: u64,
}

/// A round as the book needs it.
pub struct RoundFacts<'a> {
    /// The child's database generation.
    pub generation: u64,
    /// The state the child started from.
    pub model: &'a [Option<u64>],
    /// Its first operation.
    pub start: u64,
    /// What it said.
    pub heard: &'a Heard,
    /// `Options::retained_checkpoints` of its database.
    pub retained: usize,
}

impl Book {
    /// A book for a run whose first checkpoint id is 1.
    pub fn new() -> Book {
        Book {
            committed: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// What may and must be committed after the round.
    pub fn expect(&self, workload: &Workload, r: &RoundFacts<'_>) -> Expect {
        let h = r.heard;
        let mut may = self.committed.clone();
        // States of the checkpoints begun, by applying the round's operations once.
        let mut cur = r.model.to_vec();
        let mut at = r.start;
        for &(id, op) in &h.checkpoints_begun {
            while at < op {
                match workload.op(at) {
                    CrashOp::Put { key, .. } => cur[key as usize] = Some(at),
                    CrashOp::Delete { key } => cur[key as usize] = None,
                    CrashOp::Flush => {}
                }
                at += 1;
            }
            may.insert(
                id,
                Known {
                    generation: r.generation,
                    op,
                    state: Arc::new(cur.clone()),
                },
            );
        }
        let released: BTreeSet<u64> = h
            .checkpoints_done
            .iter()
            .flat_map(|(_, rel)| rel.iter().copied())
            .chain(h.releases_done.iter().copied())
            .collect();
        may.retain(|id, _| !released.contains(id));

        let mut must: BTreeSet<u64> = self
            .committed
            .keys()
            .copied()
            .chain(h.checkpoints_done.iter().map(|(id, _)| *id))
            .filter(|id| !released.contains(id))
            .collect();
        if let Some(id) = h.release_in_flight() {
            must.remove(&id);
        }
        if h.checkpoint_in_flight().is_some() {
            // Retention after a commit releases the oldest of the database's own.
            let own: Vec<u64> = must
                .iter()
                .copied()
                .filter(|id| may.get(id).is_some_and(|k| k.generation == r.generation))
                .collect();
            let over = (own.len() + 1).saturating_sub(r.retained);
            for id in own.into_iter().take(over) {
                must.remove(&id);
            }
        }
        Expect {
            may,
            must,
            released,
        }
    }

    /// Judges the committed ids the store lists, and takes them as the new book.
    pub fn settle(
        &mut self,
        expect: Expect,
        listed: &BTreeSet<u64>,
        begun: &[(u64, u64)],
    ) -> Vec<ListingProblem> {
        let mut problems = Vec::new();
        for id in listed {
            if expect.released.contains(id) {
                problems.push(ListingProblem::Released(*id));
            } else if !expect.may.contains_key(id) {
                problems.push(ListingProblem::Unknown(*id));
            }
        }
        for id in expect.must.difference(listed) {
            problems.push(ListingProblem::Missing(*id));
        }
        self.committed = expect
            .may
            .into_iter()
            .filter(|(id, _)| listed.contains(id))
            .collect();
        if let Some(max) = begun.iter().map(|(id, _)| *id).max() {
            self.next_id = self.next_id.max(max + 1);
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            seed: 3,
            key_space: 8,
            max_value_bytes: 64,
        }
    }

    fn heard(begun: &[(u64, u64)], done: &[(u64, &[u64])]) -> Heard {
        let mut h = Heard::default();
        h.checkpoints_begun = begun.to_vec();
        h.checkpoints_done = done.iter().map(|(id, r)| (*id, r.to_vec())).collect();
        h
    }

    fn facts<'a>(h: &'a Heard, model: &'a [Option<u64>], generation: u64) -> RoundFacts<'a> {
        RoundFacts {
            generation,
            model,
            start: 0,
            heard: h,
            retained: 3,
        }
    }

    fn ids(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn states_apply_the_operations_below_each_checkpoint() {
        let w = workload();
        let model = vec![None; 8];
        let h = heard(&[(1, 50), (2, 120)], &[(1, &[]), (2, &[])]);
        let e = Book::new().expect(&w, &facts(&h, &model, 0));
        for (id, op) in [(1u64, 50u64), (2, 120)] {
            let mut s = vec![None; 8];
            for i in 0..op {
                match w.op(i) {
                    CrashOp::Put { key, .. } => s[key as usize] = Some(i),
                    CrashOp::Delete { key } => s[key as usize] = None,
                    CrashOp::Flush => {}
                }
            }
            assert_eq!(*e.may[&id].state, s, "checkpoint {id}");
        }
        assert_eq!(e.must, ids(&[1, 2]));
    }

    #[test]
    fn an_interrupted_checkpoint_may_exist_and_may_have_released_the_oldest() {
        let w = workload();
        let model = vec![None; 8];
        let h = heard(
            &[(1, 10), (2, 20), (3, 30), (4, 40)],
            &[(1, &[]), (2, &[]), (3, &[])],
        );
        let e = Book::new().expect(&w, &facts(&h, &model, 0));
        assert_eq!(e.may.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        // Committing 4 would release 1 (3 retained).
        assert_eq!(e.must, ids(&[2, 3]));

        for listed in [ids(&[1, 2, 3]), ids(&[2, 3, 4]), ids(&[1, 2, 3, 4])] {
            let mut b = Book::new();
            let e = b.expect(&w, &facts(&h, &model, 0));
            assert_eq!(b.settle(e, &listed, &h.checkpoints_begun), vec![]);
            assert_eq!(b.committed.keys().copied().collect::<BTreeSet<_>>(), listed);
            assert_eq!(b.next_id, 5);
        }
    }

    #[test]
    fn missing_released_and_unknown_checkpoints_are_reported() {
        let w = workload();
        let model = vec![None; 8];
        let h = heard(&[(1, 10), (2, 20)], &[(1, &[]), (2, &[])]);
        let mut b = Book::new();
        let e = b.expect(&w, &facts(&h, &model, 0));
        assert_eq!(
            b.settle(e, &ids(&[2, 9]), &h.checkpoints_begun),
            vec![ListingProblem::Unknown(9), ListingProblem::Missing(1)]
        );

        let mut h = heard(&[(1, 10), (2, 20)], &[(1, &[]), (2, &[])]);
        h.releases_begun = vec![1];
        h.releases_done = vec![1];
        let mut b = Book::new();
        let e = b.expect(&w, &facts(&h, &model, 0));
        assert_eq!(
            b.settle(e, &ids(&[1, 2]), &h.checkpoints_begun),
            vec![ListingProblem::Released(1)]
        );
    }

    #[test]
    fn retention_of_an_interrupted_checkpoint_spares_other_databases() {
        let w = workload();
        let model = vec![None; 8];
        // Generation 0 left 1, 2, 3; generation 1 took 4 and was killed in 5.
        let mut b = Book::new();
        let h0 = heard(
            &[(1, 10), (2, 20), (3, 30)],
            &[(1, &[]), (2, &[]), (3, &[])],
        );
        let e = b.expect(&w, &facts(&h0, &model, 0));
        assert!(b
            .settle(e, &ids(&[1, 2, 3]), &h0.checkpoints_begun)
            .is_empty());
        let h1 = heard(&[(4, 5), (5, 9)], &[(4, &[])]);
        let e = b.expect(&w, &facts(&h1, &model, 1));
        assert_eq!(e.must, ids(&[1, 2, 3, 4]));
    }
}
