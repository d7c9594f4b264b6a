//! Value generation, after db_bench's `RandomGenerator`.
//!
//! A pool of at least 1 MiB is filled from `--seed` with pieces of 100 bytes, each of
//! which is `compression_ratio * 100` random printable bytes repeated to fill the
//! piece — so a compressor shrinks values to about `compression_ratio` of their size.
//! A value is a `value_size` window of the pool at an offset drawn from the
//! operation's random word: deterministic for a given seed, and cheap (no copy).
//!
//! Copied from `terrace-tools/src/bench/values.rs`: same seed, same values as
//! `terrace-bench`.

use rand::{Rng, SeedableRng};

const POOL_MIN_BYTES: usize = 1 << 20;
const PIECE_BYTES: usize = 100;

/// Deterministic, compressible-ish values of one size.
#[derive(Debug)]
pub struct ValuePool {
    pool: Vec<u8>,
    value_size: usize,
}

impl ValuePool {
    /// A pool for values of `value_size` bytes compressing to about `ratio`.
    pub fn new(seed: u64, value_size: usize, ratio: f64) -> ValuePool {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ 0x7661_6c75_6573);
        let len = POOL_MIN_BYTES.max(value_size);
        let mut pool = Vec::with_capacity(len + PIECE_BYTES);
        while pool.len() < len {
            let raw = ((PIECE_BYTES as f64 * ratio) as usize).max(1);
            let piece: Vec<u8> = (0..raw).map(|_| rng.gen_range(b' '..=b'~')).collect();
            let start = pool.len();
            while pool.len() < start + PIECE_BYTES {
                let take = (start + PIECE_BYTES - pool.len()).min(piece.len());
                pool.extend_from_slice(&piece[..take]);
            }
        }
        pool.truncate(len);
        ValuePool { pool, value_size }
    }

    /// The value for an operation whose random word is `word`.
    #[inline]
    pub fn value(&self, word: u64) -> &[u8] {
        let span = (self.pool.len() - self.value_size) as u64 + 1;
        let off = (word % span) as usize;
        &self.pool[off..off + self.value_size]
    }

    /// Size of every value.
    pub fn value_size(&self) -> usize {
        self.value_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_size_and_are_deterministic() {
        let a = ValuePool::new(9, 100, 0.5);
        let b = ValuePool::new(9, 100, 0.5);
        for w in [0u64, 1, 12345, u64::MAX] {
            assert_eq!(a.value(w).len(), 100);
            assert_eq!(a.value(w), b.value(w));
        }
        let big = ValuePool::new(1, 3 << 20, 1.0);
        assert_eq!(big.value(77).len(), 3 << 20);
    }
}
