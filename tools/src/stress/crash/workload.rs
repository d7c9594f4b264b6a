//! The crash run's workload: a pure function from (seed, operation index) to an
//! operation, and values that name the operation that wrote them.
//!
//! Because operation `i` depends only on the seed and `i`, the parent process knows
//! every operation a child may have issued without being told: the child reports
//! only how far it may go (`reserve`) and which prefix is durable (`durable`). Op
//! indices keep growing across children, so every value ever written is unique, and
//! a value found in the database says exactly which operation wrote it:
//!
//! ```text
//! tv1 <op index> <key>|<padding>     padding byte i = b'a' + (op * 31 + i) % 26
//! ```
//!
//! The checker regenerates operation `<op index>` and compares the whole value, so a
//! value that was never written (or a torn or mixed-up one) cannot pass.

use rand::Rng;
use terrace_tiering::clock::seeded_rng;

/// One operation of the crash workload. Keys are indices into the key space
/// ([`key_name`] spells them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashOp {
    /// Sets the key to [`value`]`(index, key, padding_bytes)`.
    Put {
        /// Key index.
        key: u32,
        /// Bytes of padding after the header.
        padding_bytes: usize,
    },
    /// Deletes the key.
    Delete {
        /// Key index.
        key: u32,
    },
    /// `Db::flush`: every earlier operation is durable once it returns.
    Flush,
}

impl CrashOp {
    /// The key the operation writes, if any.
    pub fn key(&self) -> Option<u32> {
        match self {
            CrashOp::Put { key, .. } | CrashOp::Delete { key } => Some(*key),
            CrashOp::Flush => None,
        }
    }
}

/// Chance of a flush, per thousand operations.
const FLUSH_PER_MILLE: u32 = 5;
/// Chance of a delete, per thousand operations.
const DELETE_PER_MILLE: u32 = 250;

/// The operation stream of one run.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Master seed of the run.
    pub seed: u64,
    /// Distinct keys.
    pub key_space: u32,
    /// Largest value in bytes (header included).
    pub max_value_bytes: usize,
}

impl Workload {
    /// Operation number `index`: the same for every process that asks.
    pub fn op(&self, index: u64) -> CrashOp {
        let mut rng = seeded_rng(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let roll = rng.gen_range(0..1000u32);
        if roll < FLUSH_PER_MILLE {
            return CrashOp::Flush;
        }
        let key = rng.gen_range(0..self.key_space.max(1));
        if roll < FLUSH_PER_MILLE + DELETE_PER_MILLE {
            return CrashOp::Delete { key };
        }
        let room = self
            .max_value_bytes
            .saturating_sub(header(index, key).len());
        let padding_bytes = match rng.gen_range(0..100u32) {
            // Rare large values: a few of them fill a 64 KiB memtable.
            0 => rng.gen_range(room / 4..=room),
            1..=9 => rng.gen_range(0..=room.min(4096)),
            _ => rng.gen_range(0..=room.min(96)),
        };
        CrashOp::Put { key, padding_bytes }
    }

    /// The bytes operation `index` writes, if it is a put.
    pub fn value_of(&self, index: u64) -> Option<Vec<u8>> {
        match self.op(index) {
            CrashOp::Put { key, padding_bytes } => Some(value(index, key, padding_bytes)),
            _ => None,
        }
    }
}

/// The user key of key index `n`. Three shapes, so that some keys are prefixes of
/// others and some share a prefix: scans and block boundaries see both.
pub fn key_name(n: u32) -> String {
    match n % 3 {
        0 => format!("k{n:06}"),
        1 => format!("k{n:06}-x"),
        _ => format!("p{:03}/{n}", n % 17),
    }
}

fn header(index: u64, key: u32) -> String {
    format!("tv1 {index} {}|", key_name(key))
}

/// The value operation `index` writes to `key`.
pub fn value(index: u64, key: u32, padding_bytes: usize) -> Vec<u8> {
    let mut v = header(index, key).into_bytes();
    let start = index.wrapping_mul(31);
    v.extend((0..padding_bytes as u64).map(|i| b'a' + (start.wrapping_add(i) % 26) as u8));
    v
}

/// The operation index and key name a value claims in its header; `None` if it has
/// no header of this workload's form. The claim still has to be checked against the
/// operation it names.
pub fn parse_header(value: &[u8]) -> Option<(u64, &str)> {
    let end = value.iter().position(|&b| b == b'|')?;
    let head = std::str::from_utf8(&value[..end]).ok()?;
    let mut parts = head.splitn(3, ' ');
    if parts.next()? != "tv1" {
        return None;
    }
    let index = parts.next()?.parse().ok()?;
    Some((index, parts.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            seed: 5,
            key_space: 100,
            max_value_bytes: 1000,
        }
    }

    #[test]
    fn operations_depend_only_on_seed_and_index() {
        let w = workload();
        let a: Vec<CrashOp> = (0..500).map(|i| w.op(i)).collect();
        let b: Vec<CrashOp> = (0..500).rev().map(|i| w.op(i)).rev().collect();
        assert_eq!(a, b);
        let other = Workload { seed: 6, ..w };
        assert_ne!(a, (0..500).map(|i| other.op(i)).collect::<Vec<_>>());
    }

    #[test]
    fn values_name_their_operation_and_fit_the_limit() {
        let w = workload();
        let mut puts = 0;
        for i in 0..5000 {
            if let CrashOp::Put { key, .. } = w.op(i) {
                let v = w.value_of(i).expect("a put has a value");
                assert!(v.len() <= w.max_value_bytes, "{} bytes", v.len());
                let name = key_name(key);
                assert_eq!(parse_header(&v), Some((i, name.as_str())));
                puts += 1;
            }
        }
        assert!(puts > 3000, "{puts} puts");
        assert_eq!(parse_header(b"tv1 x k1|"), None);
        assert_eq!(parse_header(b"garbage"), None);
    }

    #[test]
    fn the_mix_has_flushes_deletes_and_large_values() {
        let w = workload();
        let ops: Vec<CrashOp> = (0..20_000).map(|i| w.op(i)).collect();
        let flushes = ops.iter().filter(|o| **o == CrashOp::Flush).count();
        let deletes = ops
            .iter()
            .filter(|o| matches!(o, CrashOp::Delete { .. }))
            .count();
        let large = ops
            .iter()
            .filter(|o| matches!(o, CrashOp::Put { padding_bytes, .. } if *padding_bytes > 500))
            .count();
        assert!((50..200).contains(&flushes), "{flushes} flushes");
        assert!((4000..6000).contains(&deletes), "{deletes} deletes");
        assert!(large > 50, "{large} large values");
    }
}
