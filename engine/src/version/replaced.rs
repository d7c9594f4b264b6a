//! What a compaction replaced, kept until its outputs are in the object store, so a
//! checkpoint need not wait for those uploads: it can name the inputs instead.
//!
//! A checkpoint may only name files whose objects exist. Right after a burst of
//! writes the upload queue holds compaction outputs, and a checkpoint that waited
//! for them would take as long as the backlog takes to drain, which grows with the
//! state. But a compaction only rewrites data: its inputs, already in the store,
//! answer every read exactly as its outputs do. So each merge records its inputs
//! (levels, descriptions, whether each was uploaded) on its outputs, and a
//! checkpoint whose version holds an output not yet uploaded names the inputs in
//! its place ([`plan_checkpoint`]) — when that keeps the level invariants.
//!
//! Why the swap is sound. Put back at their levels, the inputs must not overlap any
//! other file of those levels below L0 (checked); then no file of the plan holds a
//! newer version of an input's key at a deeper level: newer data of such a key can
//! reach the output level only by merging with the outputs, which removes them from
//! the version (and from the plan, unless that later compaction was swapped back
//! first, which brings its upper-level inputs back too and fails the overlap check
//! if they clash). L0 needs no check: it is ordered by sequence number.
//!
//! The record holds descriptions, not open files: the inputs' local copies go as
//! before. Their objects stay because the garbage collector keeps every object a
//! record names ([`Replaced::objects`]). A record lives until every output of its
//! compaction is uploaded (or dropped), so its memory follows the upload backlog.

use std::rc::Rc;

use super::{FileDesc, FileMeta, ObjectId};

/// Most swaps one plan makes; a plan needing more waits for the uploads instead.
const MAX_SWAPS: usize = 4096;

/// A merge's inputs and outputs, kept on each output until it is uploaded.
#[derive(Debug)]
pub(crate) struct Replaced {
    pub(crate) inputs: Vec<ReplacedInput>,
    /// Every output of the merge, `(level, file id)`.
    pub(crate) outputs: Vec<(u32, u64)>,
}

/// One input of a recorded merge.
#[derive(Debug)]
pub(crate) struct ReplacedInput {
    pub(crate) level: u32,
    pub(crate) desc: FileDesc,
    /// In the object store when the merge was installed.
    pub(crate) uploaded: bool,
    /// Not uploaded, but itself a merge output with a record.
    pub(crate) replaced: Option<Rc<Replaced>>,
}

impl Replaced {
    /// The record of merging `inputs` into `outputs`; `None` when some input is
    /// neither uploaded nor replaceable in turn (a checkpoint then waits for the
    /// outputs, as it would without records).
    pub(crate) fn of_merge(
        inputs: &[(u32, Rc<FileMeta>)],
        outputs: &[(u32, Rc<FileMeta>)],
    ) -> Option<Rc<Replaced>> {
        let inputs = inputs
            .iter()
            .map(|(level, f)| {
                let uploaded = f.is_uploaded();
                let replaced = if uploaded {
                    None
                } else {
                    Some(f.replaced.borrow().clone()?)
                };
                Some(ReplacedInput {
                    level: *level,
                    desc: f.desc.clone(),
                    uploaded,
                    replaced,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Rc::new(Replaced {
            inputs,
            outputs: outputs.iter().map(|(l, f)| (*l, f.desc.id)).collect(),
        }))
    }

    /// Appends the objects of every uploaded input, through the whole chain of
    /// records (the garbage collector keeps them).
    pub(crate) fn objects(&self, out: &mut Vec<ObjectId>) {
        for input in &self.inputs {
            if input.uploaded {
                out.push(input.desc.object);
            }
            if let Some(r) = &input.replaced {
                r.objects(out);
            }
        }
    }
}

/// One file a checkpoint plans to name.
#[derive(Clone, Debug)]
pub(crate) struct PlannedFile {
    pub(crate) level: u32,
    pub(crate) desc: FileDesc,
    pub(crate) uploaded: bool,
    pub(crate) replaced: Option<Rc<Replaced>>,
    /// A file of the checkpoint's version (its upload can be waited for); swapped-in
    /// inputs are not.
    pub(crate) in_version: bool,
}

impl PlannedFile {
    /// A file of the version as it stands.
    pub(crate) fn of_version(level: u32, f: &FileMeta) -> PlannedFile {
        PlannedFile {
            level,
            desc: f.desc.clone(),
            uploaded: f.is_uploaded(),
            replaced: f.replaced.borrow().clone(),
            in_version: true,
        }
    }
}

/// The files a checkpoint names, and how many merges it swapped back.
#[derive(Debug)]
pub(crate) struct CheckpointPlan {
    pub(crate) files: Vec<PlannedFile>,
    pub(crate) swaps: usize,
}

/// Replaces, while it can, a merge whose outputs are not all uploaded by its inputs.
/// Every file of the result not yet uploaded is a file of the version (so its upload
/// is under way and can be waited for); if swapping cannot achieve that, the version
/// is returned as it is. Files come out by level, each level in version order.
pub(crate) fn plan_checkpoint(version: Vec<PlannedFile>) -> CheckpointPlan {
    let mut files = version.clone();
    let mut swaps = 0;
    while swaps < MAX_SWAPS {
        let swap = files
            .iter()
            .filter(|f| !f.uploaded)
            .filter_map(|f| f.replaced.as_ref())
            .find(|r| can_swap(&files, r))
            .cloned();
        let Some(r) = swap else { break };
        files.retain(|f| !r.outputs.contains(&(f.level, f.desc.id)));
        files.extend(r.inputs.iter().map(|i| PlannedFile {
            level: i.level,
            desc: i.desc.clone(),
            uploaded: i.uploaded,
            replaced: i.replaced.clone(),
            in_version: false,
        }));
        swaps += 1;
    }
    if files.iter().any(|f| !f.uploaded && !f.in_version) {
        files = version;
        swaps = 0;
    }
    files.sort_by(|a, b| {
        a.level.cmp(&b.level).then_with(|| {
            if a.level == 0 {
                b.desc.max_seqno.cmp(&a.desc.max_seqno)
            } else {
                crate::key::compare_internal(&a.desc.smallest, &b.desc.smallest)
            }
        })
    });
    CheckpointPlan { files, swaps }
}

/// Whether `r`'s inputs can take its outputs' place in `files`: every output is
/// still there at its level, and below L0 no input overlaps a file that stays.
fn can_swap(files: &[PlannedFile], r: &Replaced) -> bool {
    let present =
        |(level, id): &(u32, u64)| files.iter().any(|f| f.level == *level && f.desc.id == *id);
    if !r.outputs.iter().all(present) {
        return false;
    }
    r.inputs.iter().filter(|i| i.level > 0).all(|i| {
        let lo = crate::key::state_key_of(&i.desc.smallest);
        let hi = crate::key::state_key_of(&i.desc.largest);
        !files.iter().any(|f| {
            f.level == i.level
                && !r.outputs.contains(&(f.level, f.desc.id))
                && f.desc.overlaps(Some(lo), Some(hi))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{make_internal_key, ValueKind};

    fn desc(id: u64, lo: &str, hi: &str, seqno: u64) -> FileDesc {
        let mut d = FileDesc::empty(
            id,
            ObjectId {
                lineage: 7,
                number: id,
            },
        );
        for k in [lo, hi] {
            let ikey = make_internal_key(k.as_bytes(), seqno, ValueKind::Put);
            d.note_entry(&ikey, seqno, ValueKind::Put);
        }
        d.size_bytes = 100;
        d
    }

    fn file(level: u32, d: FileDesc, uploaded: bool) -> PlannedFile {
        PlannedFile {
            level,
            desc: d,
            uploaded,
            replaced: None,
            in_version: true,
        }
    }

    fn input(level: u32, d: FileDesc) -> ReplacedInput {
        ReplacedInput {
            level,
            desc: d,
            uploaded: true,
            replaced: None,
        }
    }

    fn ids(plan: &CheckpointPlan) -> Vec<(u32, u64)> {
        let mut v: Vec<(u32, u64)> = plan.files.iter().map(|f| (f.level, f.desc.id)).collect();
        v.sort();
        v
    }

    #[test]
    fn an_unuploaded_merge_output_is_replaced_by_its_inputs() {
        // L1 [b..d] (id 1) merged with L2 [a..c] (id 2) and [e..f] untouched (id 3)
        // into L2 outputs 10 [a..b], 11 [c..d], not uploaded.
        let r = Rc::new(Replaced {
            inputs: vec![
                input(1, desc(1, "b", "d", 5)),
                input(2, desc(2, "a", "c", 2)),
            ],
            outputs: vec![(2, 10), (2, 11)],
        });
        let mut o1 = file(2, desc(10, "a", "b", 5), false);
        o1.replaced = Some(r.clone());
        let mut o2 = file(2, desc(11, "c", "d", 5), false);
        o2.replaced = Some(r);
        let version = vec![
            file(0, desc(20, "a", "z", 9), true),
            o1,
            o2,
            file(2, desc(3, "e", "f", 1), true),
        ];
        let plan = plan_checkpoint(version);
        assert_eq!(plan.swaps, 1);
        assert_eq!(ids(&plan), vec![(0, 20), (1, 1), (2, 2), (2, 3)]);
        assert!(plan.files.iter().all(|f| f.uploaded));
    }

    #[test]
    fn a_swap_that_would_overlap_a_level_is_not_made() {
        // After the merge, a newer file [c..c] reached L1: putting input 1 [b..d]
        // back into L1 would overlap it (and it holds newer data for c).
        let r = Rc::new(Replaced {
            inputs: vec![
                input(1, desc(1, "b", "d", 5)),
                input(2, desc(2, "a", "c", 2)),
            ],
            outputs: vec![(2, 10)],
        });
        let mut out = file(2, desc(10, "a", "d", 5), false);
        out.replaced = Some(r);
        let version = vec![file(1, desc(30, "c", "c", 8), true), out];
        let plan = plan_checkpoint(version);
        assert_eq!(plan.swaps, 0);
        assert_eq!(ids(&plan), vec![(1, 30), (2, 10)]);
    }

    #[test]
    fn a_merge_whose_output_was_merged_again_is_swapped_only_after_the_later_one() {
        // Merge A: L1 id 1 [a..f] + L2 id 2 [a..g] -> L2 ids 10 [a..c], 11 [d..g],
        // not uploaded. Merge B: L1 id 4 [g..h] + L2 id 11 -> L2 id 12 [d..h], not
        // uploaded; 11 was not uploaded either, so B's record points at A's for it.
        let a = Rc::new(Replaced {
            inputs: vec![
                input(1, desc(1, "a", "f", 5)),
                input(2, desc(2, "a", "g", 2)),
            ],
            outputs: vec![(2, 10), (2, 11)],
        });
        let b = Rc::new(Replaced {
            inputs: vec![
                input(1, desc(4, "g", "h", 7)),
                ReplacedInput {
                    level: 2,
                    desc: desc(11, "d", "g", 5),
                    uploaded: false,
                    replaced: Some(a.clone()),
                },
            ],
            outputs: vec![(2, 12)],
        });
        let mut o10 = file(2, desc(10, "a", "c", 5), false);
        o10.replaced = Some(a);
        let mut o12 = file(2, desc(12, "d", "h", 7), false);
        o12.replaced = Some(b);
        let plan = plan_checkpoint(vec![o10, o12]);
        assert_eq!(plan.swaps, 2);
        assert_eq!(ids(&plan), vec![(1, 1), (1, 4), (2, 2)]);
        assert!(plan.files.iter().all(|f| f.uploaded));
    }

    #[test]
    fn inputs_that_would_need_a_dropped_upload_fall_back_to_the_version() {
        // The merge's input 11 is neither uploaded nor replaceable (its record is
        // gone): the plan must not name it, so nothing is swapped.
        let r = Rc::new(Replaced {
            inputs: vec![ReplacedInput {
                level: 1,
                desc: desc(11, "a", "b", 3),
                uploaded: false,
                replaced: Some(Rc::new(Replaced {
                    inputs: vec![input(0, desc(1, "a", "b", 3))],
                    // An output the version no longer holds: this record cannot swap.
                    outputs: vec![(1, 11), (1, 99)],
                })),
            }],
            outputs: vec![(2, 12)],
        });
        let mut out = file(2, desc(12, "a", "b", 3), false);
        out.replaced = Some(r);
        let plan = plan_checkpoint(vec![out]);
        assert_eq!(plan.swaps, 0);
        assert_eq!(ids(&plan), vec![(2, 12)]);
    }

    #[test]
    fn objects_lists_uploaded_inputs_through_the_chain() {
        let a = Rc::new(Replaced {
            inputs: vec![input(0, desc(1, "a", "b", 1))],
            outputs: vec![(1, 2)],
        });
        let b = Replaced {
            inputs: vec![
                ReplacedInput {
                    level: 1,
                    desc: desc(2, "a", "b", 1),
                    uploaded: false,
                    replaced: Some(a),
                },
                input(1, desc(3, "c", "d", 1)),
            ],
            outputs: vec![(2, 4)],
        };
        let mut objects = Vec::new();
        b.objects(&mut objects);
        let mut numbers: Vec<u64> = objects.iter().map(|o| o.number).collect();
        numbers.sort();
        assert_eq!(numbers, vec![1, 3]);
    }
}
