//! The leveled compaction policy, as a pure function over a version.
//!
//! Every level has a score: L0 by file count against `l0_compaction_trigger`, Ln by
//! bytes against its target size (`level1_bytes * multiplier^(n-1)`). The level
//! with the highest score of at least 1 is compacted into the next one. Within Ln a
//! compaction pointer rotates through the key space so every file gets its turn. A
//! file that overlaps nothing below moves down by a manifest edit alone.

use std::collections::BTreeMap;

use crate::version::FileDesc;

/// Anything that carries a file description.
pub(crate) trait HasDesc {
    fn desc(&self) -> &FileDesc;
}

impl HasDesc for FileDesc {
    fn desc(&self) -> &FileDesc {
        self
    }
}

impl HasDesc for std::rc::Rc<crate::version::FileMeta> {
    fn desc(&self) -> &FileDesc {
        &self.desc
    }
}

/// The knobs the policy reads.
#[derive(Clone, Debug)]
pub(crate) struct CompactionConfig {
    pub(crate) l0_trigger: usize,
    pub(crate) level1_bytes: u64,
    pub(crate) multiplier: u32,
}

impl CompactionConfig {
    pub(crate) fn from_options(o: &crate::Options) -> CompactionConfig {
        CompactionConfig {
            l0_trigger: o.l0_compaction_trigger,
            level1_bytes: o.level1_bytes,
            multiplier: o.level_size_multiplier,
        }
    }

    /// Target size of level `n` (n ≥ 1).
    pub(crate) fn target_bytes(&self, level: usize) -> u64 {
        let mut t = self.level1_bytes;
        for _ in 1..level {
            t = t.saturating_mul(u64::from(self.multiplier));
        }
        t
    }
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Nothing is over its target.
    Nothing,
    /// Merge `inputs` (in `level`) with `next_inputs` (in `output_level`).
    Merge {
        level: u32,
        inputs: Vec<u64>,
        output_level: u32,
        next_inputs: Vec<u64>,
        /// No level below `output_level` holds keys in the inputs' range, so
        /// tombstones can be dropped.
        bottommost: bool,
        /// Where this level's next compaction starts (a state key).
        pointer: Option<Vec<u8>>,
    },
    /// Re-link one file one level down; nothing below overlaps it.
    Move {
        level: u32,
        file: u64,
        pointer: Option<Vec<u8>>,
    },
}

/// The state-key range `[lo, hi]` covered by `files`.
pub(crate) fn key_range<F: HasDesc>(files: &[&F]) -> Option<(Vec<u8>, Vec<u8>)> {
    // Effective bounds (a clipped reference's upper bound may be generous: the
    // range then takes in at most a neighbour more, which is safe).
    let lo = files.iter().map(|f| f.desc().lower()).min()?;
    let hi = files.iter().map(|f| f.desc().upper()).max()?;
    Some((lo.to_vec(), hi.to_vec()))
}

fn overlapping<'a, F: HasDesc>(files: &'a [F], lo: &[u8], hi: &[u8]) -> Vec<&'a F> {
    files
        .iter()
        .filter(|f| f.desc().overlaps(Some(lo), Some(hi)))
        .collect()
}

/// Whether any level below `output_level` holds keys in `[lo, hi]`.
pub(crate) fn is_bottommost<F: HasDesc>(
    levels: &[Vec<F>],
    output_level: usize,
    lo: &[u8],
    hi: &[u8],
) -> bool {
    levels
        .iter()
        .skip(output_level + 1)
        .all(|files| overlapping(files, lo, hi).is_empty())
}

/// Picks the next compaction for `levels` (L0 first, newest file first).
#[cfg(test)]
pub(crate) fn choose<F: HasDesc>(
    levels: &[Vec<F>],
    cfg: &CompactionConfig,
    pointers: &BTreeMap<u32, Vec<u8>>,
) -> Choice {
    choose_with_trims(levels, cfg, pointers, &|_| true)
}

/// Like `choose`; a clipped file is picked for trimming only if `may_trim` says so
/// (the shard holds back trims of remote files for a while after a rescale).
pub(crate) fn choose_with_trims<F: HasDesc>(
    levels: &[Vec<F>],
    cfg: &CompactionConfig,
    pointers: &BTreeMap<u32, Vec<u8>>,
    may_trim: &dyn Fn(&F) -> bool,
) -> Choice {
    let last = levels.len() - 1;
    let mut best: Option<(f64, usize)> = None;
    for (level, files) in levels.iter().enumerate().take(last) {
        let score = if level == 0 {
            files.len() as f64 / cfg.l0_trigger as f64
        } else {
            let bytes: u64 = files.iter().map(|f| f.desc().size_bytes).sum();
            bytes as f64 / cfg.target_bytes(level) as f64
        };
        if score >= 1.0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, level));
        }
    }
    let Some((_, level)) = best else {
        return choose_trim(levels, may_trim);
    };
    let files = &levels[level];
    let picked: Vec<&F> = if level == 0 {
        files.iter().collect()
    } else {
        // The first file past the pointer, wrapping around.
        let after = pointers.get(&(level as u32));
        let f = files
            .iter()
            .find(|f| after.is_none_or(|p| f.desc().above(p)))
            .or_else(|| files.first());
        f.into_iter().collect()
    };
    let Some((lo, hi)) = key_range(&picked) else {
        return Choice::Nothing;
    };
    let next = overlapping(&levels[level + 1], &lo, &hi);
    let pointer = (level > 0).then(|| hi.clone());
    if level > 0 && next.is_empty() && picked.len() == 1 {
        return Choice::Move {
            level: level as u32,
            file: picked[0].desc().id,
            pointer,
        };
    }
    // Widen to every next-level file's range is not needed: inputs of the next level
    // are whole files, and the outputs replace exactly them.
    let (wlo, whi) = {
        let all: Vec<&F> = picked.iter().copied().chain(next.iter().copied()).collect();
        key_range(&all).unwrap_or((lo.clone(), hi.clone()))
    };
    Choice::Merge {
        level: level as u32,
        inputs: picked.iter().map(|f| f.desc().id).collect(),
        output_level: level as u32 + 1,
        next_inputs: next.iter().map(|f| f.desc().id).collect(),
        bottommost: is_bottommost(levels, level + 1, &wlo, &whi),
        pointer,
    }
}

/// With no level over its target: the first clipped file reference (one that still
/// holds other shards' keys, after a rescale), so trims finish in the background.
/// An L0 one compacts L0 into L1 as usual; one in a sorted level is rewritten in
/// place (output range within its own, so the level stays non-overlapping), and
/// its outputs hold only its clip's keys.
fn choose_trim<F: HasDesc>(levels: &[Vec<F>], may_trim: &dyn Fn(&F) -> bool) -> Choice {
    let Some((level, f)) = levels.iter().enumerate().find_map(|(l, files)| {
        files
            .iter()
            .find(|f| f.desc().clip.is_some() && may_trim(f))
            .map(|f| (l, f))
    }) else {
        return Choice::Nothing;
    };
    if level == 0 {
        let picked: Vec<&F> = levels[0].iter().collect();
        let Some((lo, hi)) = key_range(&picked) else {
            return Choice::Nothing;
        };
        let next = levels
            .get(1)
            .map(|l| overlapping(l, &lo, &hi))
            .unwrap_or_default();
        let all: Vec<&F> = picked.iter().copied().chain(next.iter().copied()).collect();
        let (wlo, whi) = key_range(&all).unwrap_or((lo, hi));
        return Choice::Merge {
            level: 0,
            inputs: picked.iter().map(|f| f.desc().id).collect(),
            output_level: 1,
            next_inputs: next.iter().map(|f| f.desc().id).collect(),
            bottommost: is_bottommost(levels, 1, &wlo, &whi),
            pointer: None,
        };
    }
    let (lo, hi) = (f.desc().lower().to_vec(), f.desc().upper().to_vec());
    Choice::Merge {
        level: level as u32,
        inputs: vec![f.desc().id],
        output_level: level as u32,
        next_inputs: Vec::new(),
        bottommost: is_bottommost(levels, level, &lo, &hi),
        pointer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{make_internal_key, ValueKind};

    fn file(id: u64, lo: &str, hi: &str, mb: u64) -> FileDesc {
        let sk = |s: &str| {
            let mut k = vec![0, 0, 0, 0];
            k.extend_from_slice(s.as_bytes());
            k
        };
        FileDesc {
            id,
            object: crate::version::ObjectId::legacy(id),
            size_bytes: mb << 20,
            smallest: make_internal_key(&sk(lo), 1, ValueKind::Put),
            largest: make_internal_key(&sk(hi), 1, ValueKind::Put),
            entries: 1,
            deletions: 0,
            min_seqno: id,
            max_seqno: id,
            clip: None,
            home: String::new(),
            meta_bytes: 0,
        }
    }

    #[test]
    fn a_clipped_file_held_back_is_not_trimmed_but_another_is() {
        let mut held = file(7, "a", "b", 1);
        held.clip = Some(crate::key::KeyGroupRange::new(0, 0));
        let mut ready = file(8, "c", "d", 1);
        ready.clip = Some(crate::key::KeyGroupRange::new(0, 0));
        let levels = vec![vec![], vec![], vec![held.clone(), ready.clone()], vec![]];
        let none = choose_with_trims(&levels, &cfg(), &BTreeMap::new(), &|_| false);
        assert_eq!(none, Choice::Nothing);
        let only_8 = choose_with_trims(&levels, &cfg(), &BTreeMap::new(), &|f| f.id == 8);
        match only_8 {
            Choice::Merge { inputs, .. } => assert_eq!(inputs, vec![8]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clipped_files_are_trimmed_when_nothing_else_is_due() {
        let mut clipped = file(7, "a", "b", 1);
        clipped.clip = Some(crate::key::KeyGroupRange::new(0, 0));
        let levels = vec![vec![], vec![], vec![clipped.clone()], vec![]];
        match choose(&levels, &cfg(), &BTreeMap::new()) {
            Choice::Merge {
                level,
                inputs,
                output_level,
                next_inputs,
                ..
            } => {
                assert_eq!((level, output_level), (2, 2), "rewritten in place");
                assert_eq!(inputs, vec![7]);
                assert!(next_inputs.is_empty());
            }
            c => panic!("{c:?}"),
        }
        // A clipped L0 file compacts L0 into L1.
        let levels = vec![vec![clipped], vec![file(1, "a", "c", 1)], vec![]];
        match choose(&levels, &cfg(), &BTreeMap::new()) {
            Choice::Merge {
                level,
                output_level,
                next_inputs,
                ..
            } => {
                assert_eq!((level, output_level), (0, 1));
                assert_eq!(next_inputs, vec![1]);
            }
            c => panic!("{c:?}"),
        }
    }

    fn cfg() -> CompactionConfig {
        CompactionConfig {
            l0_trigger: 4,
            level1_bytes: 10 << 20,
            multiplier: 10,
        }
    }

    #[test]
    fn quiet_tree_needs_nothing() {
        let levels: Vec<Vec<FileDesc>> = vec![vec![file(1, "a", "z", 1)], vec![], vec![]];
        assert_eq!(choose(&levels, &cfg(), &BTreeMap::new()), Choice::Nothing);
    }

    #[test]
    fn l0_over_trigger_merges_all_l0_with_overlapping_l1() {
        let levels = vec![
            (1..=4).map(|i| file(10 + i, "c", "f", 1)).collect(),
            vec![
                file(1, "a", "b", 1),
                file(2, "d", "e", 1),
                file(3, "x", "y", 1),
            ],
            vec![],
        ];
        match choose(&levels, &cfg(), &BTreeMap::new()) {
            Choice::Merge {
                level,
                inputs,
                output_level,
                next_inputs,
                bottommost,
                ..
            } => {
                assert_eq!((level, output_level), (0, 1));
                assert_eq!(inputs.len(), 4);
                assert_eq!(next_inputs, vec![2]);
                assert!(bottommost);
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn oversized_level_rotates_and_moves_files_without_overlap() {
        let levels = vec![
            vec![],
            vec![file(1, "a", "b", 6), file(2, "m", "n", 6)],
            vec![file(3, "a", "c", 1)],
            vec![file(4, "a", "a", 1)],
        ];
        let mut ptrs = BTreeMap::new();
        match choose(&levels, &cfg(), &ptrs) {
            Choice::Merge {
                inputs,
                next_inputs,
                bottommost,
                pointer,
                ..
            } => {
                assert_eq!((inputs, next_inputs), (vec![1], vec![3]));
                assert!(!bottommost, "L3 holds key a");
                ptrs.insert(1, pointer.unwrap());
            }
            c => panic!("{c:?}"),
        }
        // The pointer moved past file 1: file 2 overlaps nothing below, so it moves.
        assert_eq!(
            choose(&levels, &cfg(), &ptrs),
            Choice::Move {
                level: 1,
                file: 2,
                pointer: Some(vec![0, 0, 0, 0, b'n'])
            }
        );
    }
}
