//! Key groups and the internal key format.
//!
//! Every user key belongs to a *key group*: `xxh3_64(user_key) % max_key_groups`.
//! The number of key groups is fixed for the life of a database (like Flink's max
//! parallelism); a shard owns a contiguous range of them.
//!
//! An *internal key* is what the LSM stores and orders:
//!
//! ```text
//! [key group: u16 BE][table id: u16 BE][user key bytes ...][trailer: u64 LE]
//! |<-------------------- state key ----------------------->|
//! trailer = (seqno << 8) | kind
//! ```
//!
//! The *state key* (everything but the trailer) is compared bytewise; among equal
//! state keys the higher seqno sorts first, so a forward scan meets the newest
//! version of each key first. Because the key group leads the key, one shard's data
//! and any key-group range of it form one contiguous key range, which is what makes
//! rescaling by trimming files possible.

use std::cmp::Ordering;

use xxhash_rust::xxh3::xxh3_64;

/// Bytes of key group + table id in front of the user key.
pub const STATE_KEY_PREFIX_LEN: usize = 4;
/// Bytes of the seqno/kind trailer after the state key.
pub const TRAILER_LEN: usize = 8;
/// The largest sequence number (56 bits).
pub const MAX_SEQNO: u64 = (1 << 56) - 1;

/// Identifies a state table (a Flink named state) inside the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId(pub u16);

/// What an internal key records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ValueKind {
    /// A deletion marker (tombstone).
    Delete = 0,
    /// A value.
    Put = 1,
    /// A merge operand ([`crate::merge`]): combined with older versions of the key
    /// by the table's merge operator when read, flushed or compacted. Files written
    /// before merge operators existed never hold it.
    Merge = 2,
}

impl ValueKind {
    /// Decodes a kind byte; `None` for a byte no version of the format wrote.
    pub fn from_u8(b: u8) -> Option<ValueKind> {
        match b {
            0 => Some(ValueKind::Delete),
            1 => Some(ValueKind::Put),
            2 => Some(ValueKind::Merge),
            _ => None,
        }
    }
}

/// The key group of a user key.
#[inline]
pub fn key_group(user_key: &[u8], max_key_groups: u16) -> u16 {
    (xxh3_64(user_key) % u64::from(max_key_groups)) as u16
}

/// A contiguous range of key groups, both ends included: what one database owns of a
/// job's `max_key_groups` (Flink's `KeyGroupRange` of one subtask), and what each of
/// its shards owns of that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyGroupRange {
    /// First key group.
    pub first: u16,
    /// Last key group (inclusive).
    pub last: u16,
}

impl KeyGroupRange {
    /// `[first, last]`; `first <= last` is checked where options are validated.
    pub const fn new(first: u16, last: u16) -> KeyGroupRange {
        KeyGroupRange { first, last }
    }

    /// Every key group of a job with `max_key_groups` of them.
    pub const fn all(max_key_groups: u16) -> KeyGroupRange {
        KeyGroupRange {
            first: 0,
            last: max_key_groups.saturating_sub(1),
        }
    }

    /// Whether `kg` is in the range.
    #[inline]
    pub fn contains(&self, kg: u16) -> bool {
        (self.first..=self.last).contains(&kg)
    }

    /// Number of key groups (at least 1 for a valid range).
    pub fn len(&self) -> u32 {
        u32::from(self.last) + 1 - u32::from(self.first)
    }

    /// Never empty: a range holds at least its first group.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Parses `LO-HI` (as the tools spell it).
    pub fn parse(s: &str) -> Option<KeyGroupRange> {
        let (a, b) = s.split_once('-')?;
        let (first, last) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (first <= last).then_some(KeyGroupRange { first, last })
    }
}

impl std::fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The key groups shard `shard` of `shards` owns of the database's `range`: Flink's
/// range assignment applied inside the range (with the whole job's range, exactly
/// Flink's `KeyGroupRangeAssignment`).
pub fn shard_key_groups(shard: u32, shards: u32, range: KeyGroupRange) -> KeyGroupRange {
    // The inverse of `shard_for_key_group`.
    let (n, s, i) = (u64::from(range.len()), u64::from(shards), u64::from(shard));
    let first = (i * n).div_ceil(s);
    let last = ((i + 1) * n - 1) / s;
    KeyGroupRange {
        first: range.first + first as u16,
        last: range.first + last as u16,
    }
}

/// The shard owning key group `kg` among `shards` shards splitting the database's
/// `range`. A group outside the range (which requests are refused for) maps to the
/// nearest end's shard.
#[inline]
pub fn shard_for_key_group(kg: u16, shards: u32, range: KeyGroupRange) -> u32 {
    let kg = kg.clamp(range.first, range.last);
    (u64::from(kg - range.first) * u64::from(shards) / u64::from(range.len())) as u32
}

/// Packs a seqno and kind into a trailer.
#[inline]
pub fn pack_trailer(seqno: u64, kind: ValueKind) -> u64 {
    debug_assert!(seqno <= MAX_SEQNO);
    (seqno << 8) | kind as u64
}

/// Splits a trailer into seqno and raw kind byte.
#[inline]
pub fn unpack_trailer(trailer: u64) -> (u64, u8) {
    (trailer >> 8, (trailer & 0xff) as u8)
}

/// Appends the state key of (`kg`, `table`, `user_key`) to `out`.
pub fn encode_state_key(out: &mut Vec<u8>, kg: u16, table: TableId, user_key: &[u8]) {
    out.reserve(STATE_KEY_PREFIX_LEN + user_key.len() + TRAILER_LEN);
    out.extend_from_slice(&kg.to_be_bytes());
    out.extend_from_slice(&table.0.to_be_bytes());
    out.extend_from_slice(user_key);
}

/// Builds a full internal key.
pub fn make_internal_key(state_key: &[u8], seqno: u64, kind: ValueKind) -> Vec<u8> {
    let mut k = Vec::with_capacity(state_key.len() + TRAILER_LEN);
    set_internal_key(&mut k, state_key, seqno, kind);
    k
}

/// Replaces the contents of `buf` with the internal key of (`state_key`, `seqno`,
/// `kind`), reusing its allocation.
pub fn set_internal_key(buf: &mut Vec<u8>, state_key: &[u8], seqno: u64, kind: ValueKind) {
    buf.clear();
    buf.extend_from_slice(state_key);
    buf.extend_from_slice(&pack_trailer(seqno, kind).to_le_bytes());
}

/// The key group of a state key (its first two bytes).
#[inline]
pub fn state_key_group(state_key: &[u8]) -> u16 {
    u16::from_be_bytes([state_key[0], state_key[1]])
}

/// The table id of a state key.
#[inline]
pub fn state_key_table(state_key: &[u8]) -> TableId {
    TableId(u16::from_be_bytes([state_key[2], state_key[3]]))
}

/// A borrowed, already validated internal key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InternalKey<'a> {
    /// Key group + table id + user key.
    pub state_key: &'a [u8],
    /// Sequence number.
    pub seqno: u64,
    /// Raw kind byte (see [`ValueKind::from_u8`]).
    pub kind: u8,
}

impl<'a> InternalKey<'a> {
    /// Splits an encoded internal key; `None` if it is too short to be one.
    #[inline]
    pub fn decode(ikey: &'a [u8]) -> Option<InternalKey<'a>> {
        if ikey.len() < STATE_KEY_PREFIX_LEN + TRAILER_LEN {
            return None;
        }
        let (state_key, t) = ikey.split_at(ikey.len() - TRAILER_LEN);
        let trailer = u64::from_le_bytes(t.try_into().ok()?);
        let (seqno, kind) = unpack_trailer(trailer);
        Some(InternalKey {
            state_key,
            seqno,
            kind,
        })
    }
}

/// The state-key part of an encoded internal key (no validation beyond length).
#[inline]
pub fn state_key_of(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len().saturating_sub(TRAILER_LEN)]
}

/// The trailer of an encoded internal key (0 if the key is too short).
#[inline]
pub fn trailer_of(ikey: &[u8]) -> u64 {
    if ikey.len() < TRAILER_LEN {
        return 0;
    }
    let mut t = [0u8; TRAILER_LEN];
    t.copy_from_slice(&ikey[ikey.len() - TRAILER_LEN..]);
    u64::from_le_bytes(t)
}

/// Orders encoded internal keys: state key ascending, then seqno descending.
#[inline]
pub fn compare_internal(a: &[u8], b: &[u8]) -> Ordering {
    match state_key_of(a).cmp(state_key_of(b)) {
        Ordering::Equal => trailer_of(b).cmp(&trailer_of(a)),
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_all_groups_without_overlap() {
        let ranges = [
            KeyGroupRange::all(32768),
            KeyGroupRange::new(100, 199),
            KeyGroupRange::new(5, 11),
            KeyGroupRange::new(32767, 32767),
        ];
        for range in ranges {
            for shards in (1..=7u32).filter(|&s| s <= range.len()) {
                let mut next = u32::from(range.first);
                for s in 0..shards {
                    let r = shard_key_groups(s, shards, range);
                    assert_eq!(u32::from(r.first), next, "{range} / {shards}");
                    assert!(r.last >= r.first);
                    for kg in [r.first, r.last, r.first + (r.last - r.first) / 2] {
                        assert_eq!(shard_for_key_group(kg, shards, range), s);
                    }
                    next = u32::from(r.last) + 1;
                }
                assert_eq!(next, u32::from(range.last) + 1, "{range} / {shards}");
            }
        }
    }

    #[test]
    fn the_whole_range_is_flinks_assignment() {
        // Flink: operator index = kg * parallelism / maxParallelism.
        for kg in [0u16, 1, 8191, 8192, 16383, 32767] {
            assert_eq!(
                shard_for_key_group(kg, 4, KeyGroupRange::all(32768)),
                u32::from(kg) * 4 / 32768
            );
        }
    }

    #[test]
    fn ranges_parse_as_lo_dash_hi() {
        assert_eq!(
            KeyGroupRange::parse("0-127"),
            Some(KeyGroupRange::new(0, 127))
        );
        assert_eq!(KeyGroupRange::parse("9-9"), Some(KeyGroupRange::new(9, 9)));
        assert_eq!(KeyGroupRange::parse("9-8"), None);
        assert_eq!(KeyGroupRange::parse("x-8"), None);
        assert_eq!(KeyGroupRange::new(3, 7).to_string(), "3-7");
    }

    #[test]
    fn newer_versions_sort_first_and_prefixes_sort_before_extensions() {
        let a1 = make_internal_key(b"\0\0\0\0a", 1, ValueKind::Put);
        let a9 = make_internal_key(b"\0\0\0\0a", 9, ValueKind::Put);
        let ab = make_internal_key(b"\0\0\0\0ab", 100, ValueKind::Put);
        assert_eq!(compare_internal(&a9, &a1), Ordering::Less);
        assert_eq!(compare_internal(&a1, &ab), Ordering::Less);
        let k = InternalKey::decode(&a9).unwrap();
        assert_eq!((k.state_key, k.seqno, k.kind), (&b"\0\0\0\0a"[..], 9, 1));
    }
}
