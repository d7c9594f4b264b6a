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
//! With `--key_group_range=LO-HI` the database owns only some key groups, so key
//! index `i` is spelled as the first number `j` in `i*stride .. (i+1)*stride` whose
//! key falls in the range ([`KeySpace`]): the workload draws only keys the database
//! owns, `--num` of them, still in index order (`j` grows with `i`).

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

/// Keys restricted to the key groups a database owns (`--key_group_range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupFilter {
    /// The groups keys must fall in.
    pub range: terrace::KeyGroupRange,
    /// The job's key groups (`--max_key_groups`).
    pub max_key_groups: u16,
    /// `--key_group_prefix_bytes`: the bytes of a key that decide its group.
    pub prefix_bytes: Option<usize>,
}

impl GroupFilter {
    /// Candidate numbers per key index: enough that missing the range `stride` times
    /// in a row has a chance below e^-40 (the key group is a hash of the key).
    pub fn stride(&self) -> u64 {
        let fraction = f64::from(self.range.len()) / f64::from(self.max_key_groups);
        (40.0 / fraction).ceil() as u64
    }

    fn owns(&self, key: &[u8]) -> bool {
        let part = match self.prefix_bytes {
            Some(n) => &key[..key.len().min(n)],
            None => key,
        };
        self.range
            .contains(terrace::key::key_group(part, self.max_key_groups))
    }
}

/// How key indexes become keys: `--key_size` and, with `--key_group_range`, the
/// groups keys must fall in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpace {
    /// Key width in bytes.
    pub width: usize,
    /// Restriction to a key-group range.
    pub filter: Option<GroupFilter>,
}

impl KeySpace {
    /// Every key of `width` bytes.
    pub fn plain(width: usize) -> KeySpace {
        KeySpace {
            width,
            filter: None,
        }
    }

    /// The largest number spelled for indexes `0..num` (for the width check).
    pub fn max_number(&self, num: u64) -> u64 {
        let stride = self.filter.map_or(1, |f| f.stride());
        num.max(1).saturating_mul(stride) - 1
    }

    /// The key for `index` as an owned vector.
    pub fn key_of(&self, index: u64) -> Vec<u8> {
        let mut k = KeyBuf::for_space(*self);
        k.set(index).to_vec()
    }
}

/// A reusable key buffer of `--key_size` bytes.
#[derive(Clone, Debug)]
pub struct KeyBuf {
    buf: Vec<u8>,
    width: usize,
    /// The range filter and its stride (computed once, not per key).
    filter: Option<(GroupFilter, u64)>,
}

impl KeyBuf {
    /// A buffer for keys `width` bytes wide (`width` must fit every index used).
    pub fn new(width: usize) -> KeyBuf {
        KeyBuf::for_space(KeySpace::plain(width))
    }

    /// A buffer spelling the keys of `space`.
    pub fn for_space(space: KeySpace) -> KeyBuf {
        KeyBuf {
            buf: vec![b'0'; space.width + 1],
            width: space.width,
            filter: space.filter.map(|f| (f, f.stride())),
        }
    }

    /// Spells `index` and returns the key.
    #[inline]
    pub fn set(&mut self, index: u64) -> &[u8] {
        self.spell(index, false);
        &self.buf[..self.width]
    }

    /// Spells a key that no benchmark writes: `index` followed by `.`.
    #[inline]
    pub fn set_missing(&mut self, index: u64) -> &[u8] {
        self.spell(index, true);
        &self.buf[..]
    }

    fn spell(&mut self, index: u64, missing: bool) {
        if missing {
            self.buf[self.width] = b'.';
        }
        let end = if missing { self.width + 1 } else { self.width };
        let Some((f, stride)) = self.filter else {
            write_padded(&mut self.buf[..self.width], index);
            return;
        };
        let base = index.saturating_mul(stride);
        for t in 0..stride {
            write_padded(&mut self.buf[..self.width], base + t);
            if f.owns(&self.buf[..end]) {
                return;
            }
        }
        // Out of luck (p < e^-40): the key stays outside and the database refuses it.
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
    KeySpace::plain(width).key_of(index)
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
    fn a_key_group_range_spells_only_owned_keys_in_index_order() {
        let f = GroupFilter {
            range: terrace::KeyGroupRange::new(100, 163),
            max_key_groups: 256,
            prefix_bytes: None,
        };
        let space = KeySpace {
            width: 16,
            filter: Some(f),
        };
        let mut k = KeyBuf::for_space(space);
        let mut last = Vec::new();
        for i in 0..2000 {
            let key = k.set(i).to_vec();
            let kg = terrace::key::key_group(&key, 256);
            assert!((100..=163).contains(&kg), "{i}: group {kg}");
            assert!(key > last, "keys grow with the index");
            assert_eq!(space.key_of(i), key, "deterministic");
            last = key;
            let missing = k.set_missing(i).to_vec();
            assert!((100..=163).contains(&terrace::key::key_group(&missing, 256)));
            assert_eq!(missing.last(), Some(&b'.'));
        }
        assert!(space.max_number(2000) < 10u64.pow(16));
        // Without a filter, the plain spelling.
        assert_eq!(KeySpace::plain(16).key_of(42), b"0000000000000042");
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
