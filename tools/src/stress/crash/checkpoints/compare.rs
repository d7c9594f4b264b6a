//! Judges a restored checkpoint against the state it must hold: exactly, key by key.
//! Pure: the caller restores the checkpoint and reads it.
//!
//! A key holding an older value, or nothing where the checkpoint holds a value (or a
//! value where it holds nothing, from before the checkpoint) is *lost*; bytes no
//! operation wrote, or a value written at or after the checkpoint's operation, are
//! *corrupt*: the restore shows what the checkpoint never covered.

use std::collections::HashMap;

use super::super::verify::{decode, Problem, Wrong};
use super::super::workload::{key_name, Workload};
use super::book::Known;

fn show(state: Option<u64>) -> String {
    match state {
        Some(op) => format!("the value of put #{op}"),
        None => "nothing".into(),
    }
}

/// Compares what checkpoint `id` restored (`found[k]` for key `k`) with its state.
/// `end` bounds the operations ever issued.
pub fn compare(
    workload: &Workload,
    id: u64,
    known: &Known,
    found: &[Option<Vec<u8>>],
    shard_of: &[u32],
    end: u64,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (k, want) in known.state.iter().enumerate() {
        let key = k as u32;
        let expected = format!(
            "{} (checkpoint {id}, which covers operations below #{})",
            show(*want),
            known.op
        );
        match decode(workload, key, end, found[k].as_deref()) {
            Err(why) => problems.push(Problem {
                wrong: Wrong::Corrupt,
                key: Some(key),
                shard: shard_of[k],
                expected,
                found: why,
            }),
            Ok(got) if got == *want => {}
            Ok(got) => problems.push(Problem {
                wrong: if got.is_some_and(|op| op >= known.op) {
                    Wrong::Corrupt
                } else {
                    Wrong::Lost
                },
                key: Some(key),
                shard: shard_of[k],
                expected,
                found: show(got),
            }),
        }
    }
    problems
}

/// Turns a whole-table scan into per-key values; keys outside the key space are
/// corrupt.
pub fn from_scan(
    scanned: Vec<(Vec<u8>, Vec<u8>)>,
    key_space: u32,
    id: u64,
) -> (Vec<Option<Vec<u8>>>, Vec<Problem>) {
    let index: HashMap<String, usize> = (0..key_space).map(|k| (key_name(k), k as usize)).collect();
    let mut found = vec![None; key_space as usize];
    let mut problems = Vec::new();
    for (key, value) in scanned {
        match index.get(String::from_utf8_lossy(&key).as_ref()) {
            Some(&k) => found[k] = Some(value),
            None => problems.push(Problem {
                wrong: Wrong::Corrupt,
                key: None,
                shard: 0,
                expected: format!("only keys of the key space in checkpoint {id}"),
                found: format!("key {:?}", String::from_utf8_lossy(&key)),
            }),
        }
    }
    (found, problems)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::stress::crash::workload::CrashOp;

    #[test]
    fn only_the_exact_state_passes() {
        let w = Workload {
            seed: 11,
            key_space: 6,
            max_value_bytes: 64,
        };
        let mut state = vec![None; 6];
        for i in 0..200u64 {
            match w.op(i) {
                CrashOp::Put { key, .. } => state[key as usize] = Some(i),
                CrashOp::Delete { key } => state[key as usize] = None,
                CrashOp::Flush => {}
            }
        }
        let known = Known {
            generation: 0,
            op: 200,
            state: Arc::new(state.clone()),
        };
        let bytes = |s: &[Option<u64>]| -> Vec<Option<Vec<u8>>> {
            s.iter().map(|o| o.and_then(|op| w.value_of(op))).collect()
        };
        let shard_of = vec![0; 6];
        assert!(compare(&w, 1, &known, &bytes(&state), &shard_of, 400).is_empty());

        // A later put of a live key is corrupt (not covered); dropping it is lost.
        let k = (0..6).find(|&k| state[k].is_some()).expect("a live key");
        let later = (200..400u64)
            .find(|&i| matches!(w.op(i), CrashOp::Put { key, .. } if key as usize == k))
            .expect("a later put");
        let mut newer = state.clone();
        newer[k] = Some(later);
        let p = compare(&w, 1, &known, &bytes(&newer), &shard_of, 400);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].wrong, Wrong::Corrupt);
        let mut gone = state.clone();
        gone[k] = None;
        let p = compare(&w, 1, &known, &bytes(&gone), &shard_of, 400);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].wrong, Wrong::Lost);
    }
}
