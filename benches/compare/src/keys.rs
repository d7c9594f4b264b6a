//! Key generation: which key index operation `i` of a benchmark touches, and how a
//! key index is spelled.
//!
//! Keys are db_bench's: the key index in decimal, zero-padded to `--key_size` bytes
//! (`0000000000000042`). Missing keys (readmissing) append `.` to an existing key, so
//! they sort next to real keys but can never have been written.
//!
//! Random choices are a pure function of `(seed, salt, i)` (splitmix64), not a
//! stateful RNG: operation `i` touches the same key however many shards, threads or
//! in-flight operations share the work. The salt differs per benchmark in the list,
//! so fillrandom and a later readrandom draw different sequences.
//!
//! Copied from `terrace-tools/src/bench/keys.rs`: the harness must draw exactly the
//! keys `terrace-bench` draws.

/// Number of decimal digits of `n` (1 for 0).
pub fn decimal_digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// splitmix64: a fast, well-mixed 64-bit permutation.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Deterministic random draws for one benchmark.
#[derive(Clone, Copy, Debug)]
pub struct KeyDraw {
    base: u64,
    num: u64,
}

impl KeyDraw {
    /// Draws over the key space `0..num` for the benchmark salted with `salt`.
    pub fn new(seed: u64, salt: u64, num: u64) -> KeyDraw {
        KeyDraw {
            base: mix64(seed ^ mix64(salt.wrapping_add(0x5eed))),
            num: num.max(1),
        }
    }

    /// A random 64-bit word for operation `i` (also used to pick values).
    #[inline]
    pub fn word(&self, i: u64) -> u64 {
        mix64(self.base ^ i.wrapping_mul(0xd134_2543_de82_ef95))
    }

    /// The key index operation `i` touches, uniform over `0..num`.
    #[inline]
    pub fn index(&self, i: u64) -> u64 {
        ((u128::from(self.word(i)) * u128::from(self.num)) >> 64) as u64
    }
}

/// A reusable key buffer of `--key_size` bytes.
#[derive(Clone, Debug)]
pub struct KeyBuf {
    buf: Vec<u8>,
    width: usize,
}

impl KeyBuf {
    /// A buffer for keys `width` bytes wide (`width` must fit every index used).
    pub fn new(width: usize) -> KeyBuf {
        KeyBuf {
            buf: vec![b'0'; width + 1],
            width,
        }
    }

    /// Spells `index` and returns the key.
    #[inline]
    pub fn set(&mut self, index: u64) -> &[u8] {
        write_padded(&mut self.buf[..self.width], index);
        &self.buf[..self.width]
    }

    /// Spells a key that no benchmark writes: `index` followed by `.`.
    #[inline]
    pub fn set_missing(&mut self, index: u64) -> &[u8] {
        write_padded(&mut self.buf[..self.width], index);
        self.buf[self.width] = b'.';
        &self.buf[..]
    }

    /// The last key spelled by [`KeyBuf::set`].
    pub fn get(&self) -> &[u8] {
        &self.buf[..self.width]
    }
}

/// Writes `n` right-aligned in `out`, zero-padded; digits that do not fit are lost
/// (callers check `decimal_digits(num - 1) <= width` up front).
fn write_padded(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The key for `index` as an owned vector.
pub fn key_of(index: u64, width: usize) -> Vec<u8> {
    let mut k = KeyBuf::new(width);
    k.set(index).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded_decimal() {
        let mut k = KeyBuf::new(16);
        assert_eq!(k.set(42), b"0000000000000042");
        assert_eq!(k.set_missing(7), b"0000000000000007.");
        assert_eq!(k.get(), b"0000000000000007");
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(999_999), 6);
        assert_eq!(decimal_digits(1_000_000), 7);
    }

    #[test]
    fn draws_are_deterministic_and_in_range() {
        let a = KeyDraw::new(1, 2, 1000);
        let b = KeyDraw::new(1, 2, 1000);
        let c = KeyDraw::new(1, 3, 1000);
        let mut differ = 0;
        for i in 0..10_000 {
            assert_eq!(a.index(i), b.index(i));
            assert!(a.index(i) < 1000);
            if a.index(i) != c.index(i) {
                differ += 1;
            }
        }
        assert!(differ > 9_000);
    }
}
