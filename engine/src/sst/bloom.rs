//! The full-file bloom filter over state keys.
//!
//! Lookups ask "may this file hold any version of state key K?", so the filter is
//! built over state keys (internal keys without their trailer), each distinct state
//! key once. Hashing is xxh3-64 of the state key, expanded into `k` probe positions
//! by double hashing: `h_i = h + i * delta (mod bits)` with `delta = h.rotate_right(33)`.
//!
//! Block contents: `[bit array: n bytes][probe count k: u8]`, with `bits = 8 * n`.
//! Bit `b` is bit `b % 8` of byte `b / 8`. An empty filter (no block) means "no filter":
//! every query answers "maybe".

use xxhash_rust::xxh3::xxh3_64;

use crate::encoding::{DecodeResult, Malformed};

/// Probe counts outside this range are rejected as damage.
const MAX_PROBES: u8 = 30;

/// The hash a state key enters the filter with.
#[inline]
pub(crate) fn bloom_hash(state_key: &[u8]) -> u64 {
    xxh3_64(state_key)
}

/// Collects hashes while the file is written and builds the filter at the end.
pub(crate) struct BloomBuilder {
    bits_per_key: u32,
    hashes: Vec<u64>,
}

impl BloomBuilder {
    pub(crate) fn new(bits_per_key: u32) -> BloomBuilder {
        BloomBuilder {
            bits_per_key,
            hashes: Vec::new(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.bits_per_key > 0
    }

    /// Records one distinct state key (the writer skips repeats of the previous one).
    pub(crate) fn add_hash(&mut self, h: u64) {
        if self.enabled() {
            self.hashes.push(h);
        }
    }

    /// Approximate size of the finished filter.
    pub(crate) fn size_estimate(&self) -> u64 {
        (self.hashes.len() as u64 * u64::from(self.bits_per_key)).div_ceil(8) + 1
    }

    /// The filter block contents, or `None` when filters are disabled.
    pub(crate) fn finish(&self) -> Option<Vec<u8>> {
        if !self.enabled() {
            return None;
        }
        // At least 64 bits so tiny files still get a useful filter.
        let bits = (self.hashes.len() as u64 * u64::from(self.bits_per_key)).max(64);
        let bytes = bits.div_ceil(8) as usize;
        let bits = bytes as u64 * 8;
        // k = bits_per_key * ln 2 minimises the false-positive rate.
        let k = ((f64::from(self.bits_per_key) * 0.69) as u8).clamp(1, MAX_PROBES);
        let mut out = vec![0u8; bytes + 1];
        for &h in &self.hashes {
            for pos in probes(h, k, bits) {
                out[(pos / 8) as usize] |= 1 << (pos % 8);
            }
        }
        out[bytes] = k;
        Some(out)
    }
}

fn probes(h: u64, k: u8, bits: u64) -> impl Iterator<Item = u64> {
    let delta = h.rotate_right(33);
    (0..u64::from(k)).map(move |i| h.wrapping_add(i.wrapping_mul(delta)) % bits)
}

/// A decoded filter.
pub(crate) struct BloomFilter {
    bits: Vec<u8>,
    k: u8,
}

impl BloomFilter {
    pub(crate) fn decode(contents: &[u8]) -> DecodeResult<BloomFilter> {
        let (&k, bits) = contents
            .split_last()
            .ok_or_else(|| Malformed::new("empty filter block"))?;
        if bits.is_empty() {
            return Err(Malformed::new("filter block has no bits"));
        }
        if k == 0 || k > MAX_PROBES {
            return Err(Malformed::new(format!("filter probe count {k}")));
        }
        Ok(BloomFilter {
            bits: bits.to_vec(),
            k,
        })
    }

    /// False means the state key is certainly absent.
    pub(crate) fn may_contain_hash(&self, h: u64) -> bool {
        let nbits = self.bits.len() as u64 * 8;
        probes(h, self.k, nbits).all(|pos| {
            self.bits
                .get((pos / 8) as usize)
                .is_some_and(|b| b & (1 << (pos % 8)) != 0)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut b = BloomBuilder::new(10);
        for i in 0..10_000u32 {
            b.add_hash(bloom_hash(&i.to_le_bytes()));
        }
        let f = BloomFilter::decode(&b.finish().unwrap()).unwrap();
        for i in 0..10_000u32 {
            assert!(f.may_contain_hash(bloom_hash(&i.to_le_bytes())));
        }
        let fp = (10_000..110_000u32)
            .filter(|i| f.may_contain_hash(bloom_hash(&i.to_le_bytes())))
            .count();
        assert!(fp < 2_000, "false positive rate {fp} / 100000");
    }
}
