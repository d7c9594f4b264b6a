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
}

impl ValueKind {
    /// Decodes a kind byte; `None` for a byte no version of the format wrote.
    pub fn from_u8(b: u8) -> Option<ValueKind> {
        match b {
            0 => Some(ValueKind::Delete),
            1 => Some(ValueKind::Put),
            _ => None,
        }
    }
}

/// The key group of a user key.
#[inline]
pub fn key_group(user_key: &[u8], max_key_groups: u16) -> u16 {
    (xxh3_64(user_key) % u64::from(max_key_groups)) as u16
}

/// The key-group range `[first, last]` (inclusive) owned by shard `shard` of `shards`,
/// following Flink's range assignment.
pub fn shard_key_groups(shard: u32, shards: u32, max_key_groups: u16) -> (u16, u16) {
    // Flink's KeyGroupRangeAssignment: the inverse of `shard_for_key_group`.
    let (max, n, i) = (
        u64::from(max_key_groups),
        u64::from(shards),
        u64::from(shard),
    );
    let first = (i * max).div_ceil(n);
    let last = ((i + 1) * max - 1) / n;
    (first as u16, last as u16)
}

/// The shard owning key group `kg` under Flink's range assignment.
#[inline]
pub fn shard_for_key_group(kg: u16, shards: u32, max_key_groups: u16) -> u32 {
    (u64::from(kg) * u64::from(shards) / u64::from(max_key_groups)) as u32
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
        for shards in 1..=7u32 {
            let mut next = 0u32;
            for s in 0..shards {
                let (a, b) = shard_key_groups(s, shards, 32768);
                assert_eq!(u32::from(a), next);
                assert!(b >= a);
                for kg in [a, b, a + (b - a) / 2] {
                    assert_eq!(shard_for_key_group(kg, shards, 32768), s);
                }
                next = u32::from(b) + 1;
            }
            assert_eq!(next, 32768);
        }
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
