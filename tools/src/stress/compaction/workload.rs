//! The compaction run's workload: overwrites and deletes over a key space (values
//! name the operation that wrote them, as in the crash run), with the calls that
//! make compactions and reopens happen mixed in.

use rand::rngs::SmallRng;
use rand::Rng;

use crate::stress::crash::workload::{key_name, value};

/// One step of the workload. Keys are indices into the key space.
#[derive(Clone, Debug)]
pub enum Op {
    /// Sets a key.
    Put(u32, Vec<u8>),
    /// Deletes a key.
    Delete(u32),
    /// Deletes `len` consecutive key indices from the first.
    DeleteRun(u32, u32),
    /// `Db::flush`.
    Flush,
    /// `Db::compact_range` between two keys (open ends when `None`).
    CompactRange(Option<u32>, Option<u32>),
    /// `Db::wait_for_compactions`.
    WaitForCompactions,
    /// Settle (flush, compactions, uploads), close, reopen, compare the files.
    Reopen,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let range = |k: &Option<u32>| k.map_or("-".into(), key_name);
        match self {
            Op::Put(k, v) => write!(f, "put {} ({} bytes)", key_name(*k), v.len()),
            Op::Delete(k) => write!(f, "delete {}", key_name(*k)),
            Op::DeleteRun(k, n) => write!(f, "delete key indices {k}..{}", k + n),
            Op::Flush => f.write_str("flush"),
            Op::CompactRange(a, b) => write!(f, "compact_range [{}, {}]", range(a), range(b)),
            Op::WaitForCompactions => f.write_str("wait_for_compactions"),
            Op::Reopen => f.write_str("settle, close and reopen"),
        }
    }
}

/// Draws operation `index`: mostly puts and deletes (some of whole runs of keys),
/// now and then a flush, a compaction, a wait for compactions or a reopen.
pub fn draw(rng: &mut SmallRng, index: u64, key_space: u32, max_value_bytes: usize) -> Op {
    let key = rng.gen_range(0..key_space.max(1));
    match rng.gen_range(0..10_000u32) {
        0..=5999 => {
            let room = max_value_bytes.saturating_sub(32);
            let padding = match rng.gen_range(0..100u32) {
                0 => rng.gen_range(room / 4..=room),
                1..=9 => rng.gen_range(0..=room.min(4096)),
                _ => rng.gen_range(0..=room.min(800)),
            };
            Op::Put(key, value(index, key, padding))
        }
        6000..=9919 => Op::Delete(key),
        9920..=9969 => Op::DeleteRun(key, rng.gen_range(4..32)),
        9970..=9989 => Op::Flush,
        9990..=9993 => {
            let other = rng.gen_range(0..key_space.max(1));
            let (a, b) = (key.min(other), key.max(other));
            Op::CompactRange(
                rng.gen_bool(0.7).then_some(a),
                rng.gen_bool(0.7).then_some(b),
            )
        }
        9994..=9996 => Op::WaitForCompactions,
        _ => Op::Reopen,
    }
}
