//! Reads back what a database holds after a kill: opens it (the child is dead),
//! reads every key of the key space with `multi_get`, scans the whole table, and
//! lets pending compactions finish, lists its live files, and closes it. Disagreements between the two read paths and keys outside the key
//! space are corrupt here already; judging the values is [`verify`](super::verify)'s.

use std::collections::HashMap;
use std::ops::Bound;

use futures_lite::future::block_on;
use terrace::{Db, Options};

use super::verify::{Problem, Wrong};
use super::workload::key_name;

/// Keys per `multi_get`.
const BATCH: usize = 256;

/// What the database held.
#[derive(Debug)]
pub struct ReadBack {
    /// Per key index, its value.
    pub found: Vec<Option<Vec<u8>>>,
    /// Per key index, its shard.
    pub shard_of: Vec<u32>,
    /// Scan results that disagree with `multi_get` or name unknown keys.
    pub problems: Vec<Problem>,
    /// The live files after the reads.
    pub files: Vec<terrace::LiveFile>,
}

/// Opens `opts`, reads keys `0..key_space`, closes. An error of the engine is
/// returned as is (the caller counts a Corruption error as corrupt).
pub fn read_back(opts: &Options, key_space: u32) -> Result<ReadBack, terrace::Error> {
    let db = block_on(Db::open(opts.clone()))?;
    let result = read_open(&db, key_space);
    let closed = block_on(db.close());
    let r = result?;
    closed?;
    Ok(r)
}

/// Reads keys `0..key_space` of an open database (and lets its compactions
/// settle); the caller closes it.
pub fn read_open(db: &Db, key_space: u32) -> Result<ReadBack, terrace::Error> {
    let table = db.table("default")?;
    let names: Vec<String> = (0..key_space).map(key_name).collect();
    let shard_of: Vec<u32> = names.iter().map(|n| db.shard_of(n.as_bytes())).collect();
    let mut found = Vec::with_capacity(names.len());
    for chunk in names.chunks(BATCH) {
        found.extend(block_on(db.multi_get(table, chunk))?);
    }

    let scanned = block_on(db.scan(table, Bound::Unbounded, Bound::Unbounded, usize::MAX))?;
    let index: HashMap<&[u8], usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_bytes(), i))
        .collect();
    let mut problems = Vec::new();
    let mut seen = vec![false; names.len()];
    let short = |v: Option<&[u8]>| match v {
        None => "nothing".to_string(),
        Some(v) => {
            let n = v.len().min(40);
            format!("{} bytes {:?}", v.len(), String::from_utf8_lossy(&v[..n]))
        }
    };
    for (key, value) in &scanned {
        let Some(&i) = index.get(key.as_slice()) else {
            problems.push(Problem {
                wrong: Wrong::Corrupt,
                key: None,
                shard: db.shard_of(key),
                expected: "only keys of the key space".into(),
                found: format!(
                    "the scan returned key {:?} ({})",
                    String::from_utf8_lossy(key),
                    short(Some(value))
                ),
            });
            continue;
        };
        seen[i] = true;
        if found[i].as_deref() != Some(value.as_slice()) {
            problems.push(Problem {
                wrong: Wrong::Corrupt,
                key: Some(i as u32),
                shard: shard_of[i],
                expected: format!(
                    "the scan to agree with multi_get ({})",
                    short(found[i].as_deref())
                ),
                found: format!("the scan returned {}", short(Some(value))),
            });
        }
    }
    for (i, f) in found.iter().enumerate() {
        if f.is_some() && !seen[i] {
            problems.push(Problem {
                wrong: Wrong::Corrupt,
                key: Some(i as u32),
                shard: shard_of[i],
                expected: format!("the scan to return it ({})", short(f.as_deref())),
                found: "the scan skipped it".into(),
            });
        }
    }
    Ok(ReadBack {
        found,
        shard_of,
        problems,
        files: {
            // Settled first, so that no compaction deletes a listed file (and its
            // object) before the close: the store audit relies on the list.
            block_on(db.wait_for_compactions())?;
            block_on(db.live_files())?
        },
    })
}
