//! Random operations of the stress workload.
//!
//! The mix leans on writes (so memtables fill and flush often) with reads of every
//! kind after them, and rare whole-database events: flush, compaction and
//! close-and-reopen. Keys come from a small space with shared prefixes so updates,
//! deletes of live keys and scans across many keys all happen.

use std::fmt;

use rand::rngs::SmallRng;
use rand::Rng;

/// One step of the workload. Fields name themselves: `table` is an index into the
/// workload's tables, `shard` the shard whose `LocalDb` issues the call.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Put through the cross-thread handle.
    Put {
        table: usize,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Put through the `LocalDb` of a shard (forwarded when it does not own the key).
    LocalPut {
        shard: u32,
        table: usize,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Delete.
    Delete { table: usize, key: Vec<u8> },
    /// Point read.
    Get { table: usize, key: Vec<u8> },
    /// Point read through a shard's `LocalDb`.
    LocalGet {
        shard: u32,
        table: usize,
        key: Vec<u8>,
    },
    /// Several point reads at once.
    MultiGet { table: usize, keys: Vec<Vec<u8>> },
    /// Range read `[from, to)` (either end may be open).
    Scan {
        table: usize,
        from: Option<Vec<u8>>,
        to: Option<Vec<u8>>,
        limit: usize,
    },
    /// Flush every memtable.
    Flush,
    /// Compact everything.
    Compact,
    /// Close the database and open it again.
    Reopen,
}

/// Shape of the random workload.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Distinct keys per table.
    pub key_space: u32,
    /// Largest value in bytes.
    pub max_value_bytes: usize,
    /// Number of tables.
    pub tables: usize,
    /// Number of shards (for local operations).
    pub shards: u32,
}

fn key(rng: &mut SmallRng, mix: &Mix) -> Vec<u8> {
    let n = rng.gen_range(0..mix.key_space.max(1));
    // Three shapes: plain, with a suffix (so some keys prefix others), and grouped
    // under shared prefixes.
    match n % 3 {
        0 => format!("k{n:06}").into_bytes(),
        1 => format!("k{n:06}-x").into_bytes(),
        _ => format!("p{:03}/{n}", n % 17).into_bytes(),
    }
}

fn value(rng: &mut SmallRng, mix: &Mix) -> Vec<u8> {
    let len = match rng.gen_range(0..100) {
        0..=4 => 0,
        5 => rng.gen_range(0..=mix.max_value_bytes),
        _ => rng.gen_range(1..=64.min(mix.max_value_bytes.max(1))),
    };
    (0..len).map(|_| rng.gen()).collect()
}

/// Draws the next operation.
pub fn draw(rng: &mut SmallRng, mix: &Mix) -> Op {
    let table = rng.gen_range(0..mix.tables.max(1));
    match rng.gen_range(0..1000) {
        0..=399 => Op::Put {
            table,
            key: key(rng, mix),
            value: value(rng, mix),
        },
        400..=449 => Op::LocalPut {
            shard: rng.gen_range(0..mix.shards.max(1)),
            table,
            key: key(rng, mix),
            value: value(rng, mix),
        },
        450..=569 => Op::Delete {
            table,
            key: key(rng, mix),
        },
        570..=769 => Op::Get {
            table,
            key: key(rng, mix),
        },
        770..=809 => Op::LocalGet {
            shard: rng.gen_range(0..mix.shards.max(1)),
            table,
            key: key(rng, mix),
        },
        810..=869 => {
            let n = rng.gen_range(1..20);
            Op::MultiGet {
                table,
                keys: (0..n).map(|_| key(rng, mix)).collect(),
            }
        }
        870..=989 => {
            let a = rng.gen_bool(0.8).then(|| key(rng, mix));
            let b = rng.gen_bool(0.8).then(|| key(rng, mix));
            let (from, to) = match (a, b) {
                (Some(a), Some(b)) if a > b => (Some(b), Some(a)),
                other => other,
            };
            Op::Scan {
                table,
                from,
                to,
                limit: rng.gen_range(1..200),
            }
        }
        990..=994 => Op::Flush,
        995..=997 => Op::Compact,
        _ => Op::Reopen,
    }
}

fn k(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { table, key, value } => {
                write!(f, "put t{table} {} ({} bytes)", k(key), value.len())
            }
            Op::LocalPut {
                shard,
                table,
                key,
                value,
            } => {
                write!(
                    f,
                    "local put via shard {shard} t{table} {} ({} bytes)",
                    k(key),
                    value.len()
                )
            }
            Op::Delete { table, key } => write!(f, "delete t{table} {}", k(key)),
            Op::Get { table, key } => write!(f, "get t{table} {}", k(key)),
            Op::LocalGet { shard, table, key } => {
                write!(f, "local get via shard {shard} t{table} {}", k(key))
            }
            Op::MultiGet { table, keys } => write!(f, "multi_get t{table} of {} keys", keys.len()),
            Op::Scan {
                table,
                from,
                to,
                limit,
            } => write!(
                f,
                "scan t{table} [{}, {}) limit {limit}",
                from.as_deref().map_or("-inf".into(), k),
                to.as_deref().map_or("+inf".into(), k)
            ),
            Op::Flush => f.write_str("flush"),
            Op::Compact => f.write_str("compact"),
            Op::Reopen => f.write_str("close and reopen"),
        }
    }
}
