//! The memtable: the newest writes of a shard, in memory, in internal-key order.
//!
//! A memtable holds every version written to it (state key ascending, seqno
//! descending), so a read that captured an older seqno still finds the version it
//! is entitled to while newer writes land. Once frozen (made immutable) it is only
//! read: by gets, by scans, and by the flush that turns it into an L0 SST.
//!
//! Keys and values live in an arena: one bump allocation per write holds both, and
//! nothing is freed until the whole memtable is dropped, so a `Node` (pointers into
//! the arena) stays valid for as long as its memtable lives. The order is kept by
//! a `BTreeMap` of those pointers; its entries are small and `Copy`, and reads probe
//! it without allocating. Each entry also holds its key's first 16 bytes (key group,
//! table id, 12 bytes of the user key), so a search compares most keys without
//! reading the arena: ~10% more keyed-execution events/s on 1M keys. (Boxed keys and values cost two allocations and two frees
//! per write, ~20% of fillrandom's CPU. An arena skip list was tried as well: at 64
//! MiB memtables its pointer chasing made inserts ~10% slower than the B-tree.)

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::ptr::{self, NonNull};

use crate::key::ValueKind;

/// Arena chunk size; larger entries get a chunk of their own.
const CHUNK_BYTES: usize = 1 << 20;
/// Bookkeeping charged per entry on top of its key and value bytes (its map entry:
/// a 40-byte key with its prefix, a 24-byte value reference).
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// One version found in a memtable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MemValue {
    Put(Vec<u8>),
    Delete,
}

/// What a memtable read of one key found, newest first (see [`Memtable::collect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Collected {
    /// No version at the snapshot, or only merge operands (appended to the list).
    Operands,
    /// A put or a tombstone ends the search: the key's base.
    Base(MemValue),
}

/// A version in a memtable: pointers to its key and value in the memtable's arena.
/// Valid while the memtable lives; only pass it back to the memtable that returned
/// it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node {
    key: KeyRef,
    value: ValueRef,
}

/// Map key: (state key, seqno), ordered by state key ascending, then seqno
/// descending. The bytes are in the arena (or, for a probe, borrowed for the call);
/// their first [`PREFIX_BYTES`] are also held in the entry, so that most comparisons
/// of a B-tree search end without reading the arena (a cache miss per key).
#[derive(Clone, Copy, Debug)]
struct KeyRef {
    /// The first [`PREFIX_BYTES`] of the key, zero-padded, as big-endian words.
    prefix: [u64; 2],
    ptr: *const u8,
    len: usize,
    seqno: u64,
}

/// Bytes of a key held in its map entry: the key group and table id (4 bytes) and
/// the first 12 bytes of the user key.
const PREFIX_BYTES: usize = 16;

/// The first [`PREFIX_BYTES`] of `key`, zero-padded, as big-endian words: two keys
/// whose prefixes differ are ordered as their prefixes (the first differing byte is
/// a real byte of both, or padding of the shorter, which then is a prefix of the
/// other and sorts first).
#[inline]
fn key_prefix(key: &[u8]) -> [u64; 2] {
    let mut b = [0u8; PREFIX_BYTES];
    let n = key.len().min(PREFIX_BYTES);
    b[..n].copy_from_slice(&key[..n]);
    let (hi, lo) = b.split_at(8);
    [
        u64::from_be_bytes(hi.try_into().expect("8 bytes")),
        u64::from_be_bytes(lo.try_into().expect("8 bytes")),
    ]
}

/// Map value: the value bytes in the arena (empty for a tombstone) and the kind.
#[derive(Clone, Copy, Debug)]
struct ValueRef {
    ptr: *const u8,
    len: usize,
    kind: ValueKind,
}

/// How many entries ahead of the one in hand an in-order walk asks the CPU to fetch.
/// A walk over a memtable filled in random order visits its arena in random order, so
/// without this every key and value is a cache miss waiting for the one before it: a
/// flush or a checkpoint's snapshot spent most of its time in those misses.
pub(crate) const PREFETCH_DISTANCE: usize = 8;

/// Asks the CPU to start fetching an entry's key and value (adjacent in the arena;
/// at most 4 cache lines) into its caches. A hint: no effect on what is read.
#[inline]
fn prefetch_entry(key: &KeyRef, value: &ValueRef) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        let start = key.ptr as usize;
        let end = start + (key.len + value.len).min(4 * LINE);
        let mut line = start & !(LINE - 1);
        while line < end {
            // SAFETY: a prefetch never faults and reads nothing the program sees; the
            // address is inside the arena chunk that holds the entry anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
            line += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (key, value);
}

impl KeyRef {
    #[inline]
    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr`/`len` point into the arena, which outlives every map entry
        // (fields drop in order: the map before the arena), or at a probe borrowed
        // for the duration of the map call that uses it.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl PartialEq for KeyRef {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KeyRef {}

impl Ord for KeyRef {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        let by_key = match self.prefix.cmp(&other.prefix) {
            Ordering::Equal => {
                // The bytes both keys have within the prefix are equal.
                let (a, b) = (self.bytes(), other.bytes());
                let k = PREFIX_BYTES.min(a.len()).min(b.len());
                compare_keys(&a[k..], &b[k..])
            }
            o => o,
        };
        by_key.then(other.seqno.cmp(&self.seqno))
    }
}

impl PartialOrd for KeyRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A node's contents, borrowed from the memtable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub(crate) state_key: &'a [u8],
    pub(crate) seqno: u64,
    pub(crate) kind: ValueKind,
    /// Empty for a tombstone.
    pub(crate) value: &'a [u8],
}

/// Append-only memory: chunks that never move and are freed together.
struct Arena {
    /// Every chunk, as allocated (words, for 8-byte alignment).
    chunks: Vec<(NonNull<u64>, usize)>,
    /// Next free byte of the current chunk, and how many bytes remain in it.
    cursor: *mut u8,
    remaining: usize,
}

impl Arena {
    fn new() -> Arena {
        Arena {
            chunks: Vec::new(),
            cursor: ptr::null_mut(),
            remaining: 0,
        }
    }

    /// `bytes` bytes (dangling when 0).
    fn alloc(&mut self, bytes: usize) -> NonNull<u8> {
        if bytes == 0 {
            return NonNull::dangling();
        }
        if bytes > self.remaining {
            if bytes > CHUNK_BYTES / 4 {
                // A large entry gets its own chunk; the current one keeps serving
                // small entries.
                return self.new_chunk(bytes);
            }
            self.cursor = self.new_chunk(CHUNK_BYTES).as_ptr();
            self.remaining = CHUNK_BYTES;
        }
        let p = self.cursor;
        // SAFETY: `bytes <= remaining`, so `p + bytes` stays inside the chunk.
        self.cursor = unsafe { p.add(bytes) };
        self.remaining -= bytes;
        // SAFETY: `cursor` is never null once a chunk exists, and one does here.
        unsafe { NonNull::new_unchecked(p) }
    }

    fn new_chunk(&mut self, bytes: usize) -> NonNull<u8> {
        let words = bytes.div_ceil(8);
        let chunk: Box<[u64]> = vec![0u64; words].into_boxed_slice();
        let raw = NonNull::new(Box::into_raw(chunk) as *mut u64).expect("Box is never null");
        self.chunks.push((raw, words));
        raw.cast()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for &(p, words) in &self.chunks {
            // SAFETY: each chunk came from `Box::<[u64]>::into_raw` with this length
            // and is freed once, here.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p.as_ptr(), words)) });
        }
    }
}

/// A frozen memtable's contents, borrowed.
pub(crate) struct Frozen<'a>(std::cell::Ref<'a, BTreeMap<KeyRef, ValueRef>>);

impl Frozen<'_> {
    /// Every entry in order; the arena bytes of the entries [`PREFETCH_DISTANCE`]
    /// ahead are fetched while the caller works on the current one.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        let mut ahead = self.0.iter();
        for (k, v) in ahead.by_ref().take(PREFETCH_DISTANCE) {
            prefetch_entry(k, v);
        }
        self.0.iter().map(move |(k, v)| {
            if let Some((k, v)) = ahead.next() {
                prefetch_entry(k, v);
            }
            Memtable::entry_of(k, v)
        })
    }
}

/// An in-memory sorted run of writes.
pub(crate) struct Memtable {
    // Declared before `arena`: the map's entries point into it, so it drops first.
    map: RefCell<BTreeMap<KeyRef, ValueRef>>,
    arena: RefCell<Arena>,
    approximate_bytes: Cell<usize>,
    max_seqno: Cell<u64>,
    /// Where its flush stands (set by the flush task, read by checkpoints).
    flush: RefCell<FlushState>,
}

/// Where a frozen memtable's flush stands.
#[derive(Clone, Default)]
pub(crate) enum FlushState {
    /// Not started (or waiting for upload room).
    #[default]
    Queued,
    /// Writing its L0 file.
    Writing,
    /// Installed in the version as this L0 file (`None`: it held nothing).
    Installed(Option<std::rc::Rc<crate::version::FileMeta>>),
}

/// Byte-wise order of two keys, eight bytes at a time.
#[inline]
fn compare_keys(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    a[i..n].cmp(&b[i..n]).then(a.len().cmp(&b.len()))
}

impl Memtable {
    pub(crate) fn new() -> Memtable {
        Memtable {
            map: RefCell::new(BTreeMap::new()),
            arena: RefCell::new(Arena::new()),
            approximate_bytes: Cell::new(0),
            max_seqno: Cell::new(0),
            flush: RefCell::new(FlushState::Queued),
        }
    }

    /// Where its flush stands.
    pub(crate) fn flush_state(&self) -> FlushState {
        self.flush.borrow().clone()
    }

    pub(crate) fn set_flush_state(&self, state: FlushState) {
        *self.flush.borrow_mut() = state;
    }

    /// Adds a put or a tombstone. Seqnos must be unique within the shard.
    #[cfg(test)]
    pub(crate) fn insert(&self, state_key: &[u8], seqno: u64, value: Option<&[u8]>) {
        match value {
            Some(v) => self.insert_kind(state_key, seqno, ValueKind::Put, v),
            None => self.insert_kind(state_key, seqno, ValueKind::Delete, &[]),
        }
    }

    /// Adds a version (`val` empty for a tombstone). Seqnos must be unique within
    /// the shard.
    pub(crate) fn insert_kind(&self, state_key: &[u8], seqno: u64, kind: ValueKind, val: &[u8]) {
        let p = self.arena.borrow_mut().alloc(state_key.len() + val.len());
        // SAFETY: `p` is a fresh allocation of `state_key.len() + val.len()` bytes
        // that nothing else points at yet.
        let (key, value_ptr) = unsafe {
            let p = p.as_ptr();
            ptr::copy_nonoverlapping(state_key.as_ptr(), p, state_key.len());
            let v = p.add(state_key.len());
            ptr::copy_nonoverlapping(val.as_ptr(), v, val.len());
            (p as *const u8, v as *const u8)
        };
        let key = KeyRef {
            prefix: key_prefix(state_key),
            ptr: key,
            len: state_key.len(),
            seqno,
        };
        let value = ValueRef {
            ptr: value_ptr,
            len: val.len(),
            kind,
        };
        let old = self.map.borrow_mut().insert(key, value);
        debug_assert!(old.is_none(), "duplicate (key, seqno) in a memtable");
        self.approximate_bytes
            .set(self.approximate_bytes.get() + state_key.len() + val.len() + ENTRY_OVERHEAD_BYTES);
        self.max_seqno.set(self.max_seqno.get().max(seqno));
    }

    fn probe(state_key: &[u8], seqno: u64) -> KeyRef {
        KeyRef {
            prefix: key_prefix(state_key),
            ptr: state_key.as_ptr(),
            len: state_key.len(),
            seqno,
        }
    }

    /// The newest version of `state_key` with seqno ≤ `snapshot` (an operand reads
    /// as a put).
    #[cfg(test)]
    pub(crate) fn get(&self, state_key: &[u8], snapshot: u64) -> Option<MemValue> {
        let n = self.seek(state_key, snapshot)?;
        let e = self.entry(n);
        (e.state_key == state_key).then(|| match e.kind {
            ValueKind::Put | ValueKind::Merge => MemValue::Put(e.value.to_vec()),
            ValueKind::Delete => MemValue::Delete,
        })
    }

    /// The versions of `state_key` with seqno ≤ `snapshot`, newest first: merge
    /// operands are appended to `operands` until a put or tombstone (the base,
    /// returned) or the memtable's last version of the key.
    pub(crate) fn collect(
        &self,
        state_key: &[u8],
        snapshot: u64,
        operands: &mut Vec<Vec<u8>>,
    ) -> Collected {
        let mut next = self.seek(state_key, snapshot);
        while let Some(n) = next {
            let e = self.entry(n);
            if e.state_key != state_key {
                break;
            }
            match e.kind {
                ValueKind::Put => return Collected::Base(MemValue::Put(e.value.to_vec())),
                ValueKind::Delete => return Collected::Base(MemValue::Delete),
                ValueKind::Merge => operands.push(e.value.to_vec()),
            }
            next = self.next(n);
        }
        Collected::Operands
    }

    /// The first version at or after (`state_key`, `seqno`) in internal order.
    pub(crate) fn seek(&self, state_key: &[u8], seqno: u64) -> Option<Node> {
        let map = self.map.borrow();
        let (&key, &value) = map.range(Self::probe(state_key, seqno)..).next()?;
        Some(Node { key, value })
    }

    /// The first version.
    #[cfg(test)]
    pub(crate) fn first(&self) -> Option<Node> {
        let map = self.map.borrow();
        let (&key, &value) = map.iter().next()?;
        Some(Node { key, value })
    }

    /// The version after `n`, including any inserted since `n` was returned.
    pub(crate) fn next(&self, n: Node) -> Option<Node> {
        let map = self.map.borrow();
        let (&key, &value) = map
            .range((Bound::Excluded(n.key), Bound::Unbounded))
            .next()?;
        Some(Node { key, value })
    }

    /// Appends to `out` up to `max` nodes in internal order: from the first
    /// (`from` = `None`), or from the first at or after (`state_key`, `seqno`).
    pub(crate) fn nodes_from(
        &self,
        from: Option<(&[u8], u64)>,
        out: &mut VecDeque<Node>,
        max: usize,
    ) {
        let map = self.map.borrow();
        let nodes = |(&key, &value): (&KeyRef, &ValueRef)| Node { key, value };
        match from {
            None => out.extend(map.iter().take(max).map(nodes)),
            Some((state_key, seqno)) => out.extend(
                map.range(Self::probe(state_key, seqno)..)
                    .take(max)
                    .map(nodes),
            ),
        }
    }

    /// Appends to `out` up to `max` nodes following `n`: one search of the map
    /// for many steps of a cursor.
    pub(crate) fn nodes_after(&self, n: Node, out: &mut VecDeque<Node>, max: usize) {
        let map = self.map.borrow();
        out.extend(
            map.range((Bound::Excluded(n.key), Bound::Unbounded))
                .take(max)
                .map(|(&key, &value)| Node { key, value }),
        );
    }

    /// Starts fetching `n`'s key and value into the CPU's caches (a cursor that
    /// reads ahead calls this for the node it will reach a few steps later).
    pub(crate) fn prefetch(&self, n: Node) {
        prefetch_entry(&n.key, &n.value);
    }

    /// What `n` holds.
    pub(crate) fn entry(&self, n: Node) -> Entry<'_> {
        Self::entry_of(&n.key, &n.value)
    }

    fn entry_of<'a>(key: &KeyRef, value: &ValueRef) -> Entry<'a> {
        // SAFETY: both point into the arena of the memtable borrowed for 'a (the
        // contract of `Node`; map entries likewise), which frees nothing while alive.
        unsafe {
            Entry {
                state_key: std::slice::from_raw_parts(key.ptr, key.len),
                seqno: key.seqno,
                kind: value.kind,
                value: if value.len == 0 {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(value.ptr, value.len)
                },
            }
        }
    }

    /// Every version in internal order, for a frozen memtable: the map stays
    /// borrowed while the returned view lives (a flush holds it across its writes;
    /// nothing writes to a frozen memtable).
    pub(crate) fn frozen(&self) -> Frozen<'_> {
        Frozen(self.map.borrow())
    }

    /// Bytes charged against `memtable_bytes`: keys, values and per-entry overhead.
    pub(crate) fn approximate_bytes(&self) -> usize {
        self.approximate_bytes.get()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Highest seqno written (0 when empty).
    pub(crate) fn max_seqno(&self) -> u64 {
        self.max_seqno.get()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn reads_see_the_newest_version_at_their_snapshot() {
        let m = Memtable::new();
        m.insert(b"k", 1, Some(b"v1"));
        m.insert(b"k", 5, None);
        m.insert(b"k", 9, Some(b"v9"));
        m.insert(b"j", 3, Some(b"j"));
        assert_eq!(m.get(b"k", 0), None);
        assert_eq!(m.get(b"k", 4), Some(MemValue::Put(b"v1".to_vec())));
        assert_eq!(m.get(b"k", 5), Some(MemValue::Delete));
        assert_eq!(m.get(b"k", 100), Some(MemValue::Put(b"v9".to_vec())));
        assert_eq!(m.get(b"kk", 100), None);
        assert_eq!(m.entry(m.first().unwrap()).state_key, b"j");
        let k = m.seek(b"k", 6).unwrap();
        let e = m.entry(k);
        assert_eq!((e.seqno, e.kind, e.value), (5, ValueKind::Delete, &b""[..]));
        assert_eq!(m.max_seqno(), 9);
    }

    #[test]
    fn a_cursor_sees_entries_inserted_after_it() {
        let m = Memtable::new();
        m.insert(b"a", 1, Some(b"1"));
        m.insert(b"c", 2, Some(b"2"));
        let a = m.first().unwrap();
        m.insert(b"b", 3, Some(b"3"));
        let b = m.next(a).unwrap();
        assert_eq!(m.entry(b).state_key, b"b");
        assert_eq!(m.entry(m.next(b).unwrap()).state_key, b"c");
    }

    #[test]
    fn key_order_is_bytewise() {
        let keys: [&[u8]; 7] = [
            b"",
            b"\x00",
            b"abcdefgh",
            b"abcdefgh\x00",
            b"abcdefghi",
            b"abcdefgi",
            b"\xff",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(compare_keys(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn map_keys_order_as_their_bytes_then_seqno_descending() {
        // Lengths around the inline prefix, bytes that collide with its zero padding.
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        let alphabet = [0u8, 1, b'a', 0xfe, 0xff];
        let keys: Vec<(Vec<u8>, u64)> = (0..400)
            .map(|_| {
                let len = rng.gen_range(0..=PREFIX_BYTES + 6);
                let key = (0..len).map(|_| alphabet[rng.gen_range(0..5)]).collect();
                (key, rng.gen_range(0..3))
            })
            .collect();
        for (a, sa) in &keys {
            for (b, sb) in &keys {
                let want = a.cmp(b).then(sb.cmp(sa));
                let got = Memtable::probe(a, *sa).cmp(&Memtable::probe(b, *sb));
                assert_eq!(got, want, "{a:?}@{sa} vs {b:?}@{sb}");
            }
        }
    }

    /// (key, Reverse(seqno)) → value; `None` is a tombstone.
    type Model = BTreeMap<(Vec<u8>, std::cmp::Reverse<u64>), Option<Vec<u8>>>;

    /// Random writes (short keys sharing prefixes, empty to 3 KiB values, tombstones,
    /// the odd entry larger than an arena chunk) against a BTreeMap of every version:
    /// gets at random snapshots, seeks and full iteration must agree.
    #[test]
    fn matches_a_model_of_every_version() {
        for seed in 0..4u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let m = Memtable::new();
            let mut model: Model = BTreeMap::new();
            let mut seqno = 0u64;
            let mut bytes = 0usize;
            for _ in 0..20_000 {
                let key_len = rng.gen_range(0..20);
                let key: Vec<u8> = (0..key_len).map(|_| rng.gen_range(b'a'..b'e')).collect();
                seqno += rng.gen_range(1..3);
                let value = match rng.gen_range(0..100) {
                    0..=9 => None,
                    10 => Some(vec![7u8; CHUNK_BYTES / 2]),
                    _ => Some((0..rng.gen_range(0..3000)).map(|_| rng.gen()).collect()),
                };
                bytes += key.len() + value.as_ref().map_or(0, Vec::len);
                m.insert(&key, seqno, value.as_deref());
                model.insert((key, std::cmp::Reverse(seqno)), value);
            }
            assert!(m.approximate_bytes() >= bytes);
            let frozen = m.frozen();
            let all: Vec<_> = frozen.iter().collect();
            assert_eq!(all.len(), model.len());
            for (e, ((k, s), v)) in all.iter().zip(&model) {
                assert_eq!((e.state_key, e.seqno), (&k[..], s.0));
                assert_eq!(e.kind == ValueKind::Put, v.is_some());
                assert_eq!(e.value, v.as_deref().unwrap_or(&[]));
            }
            for _ in 0..5_000 {
                let key_len = rng.gen_range(0..20);
                let key: Vec<u8> = (0..key_len).map(|_| rng.gen_range(b'a'..b'e')).collect();
                let snapshot = rng.gen_range(0..=seqno + 1);
                let want = model
                    .range((key.clone(), std::cmp::Reverse(snapshot))..)
                    .next()
                    .filter(|((k, _), _)| *k == key)
                    .map(|(_, v)| match v {
                        Some(v) => MemValue::Put(v.clone()),
                        None => MemValue::Delete,
                    });
                assert_eq!(m.get(&key, snapshot), want, "get {key:?} at {snapshot}");
                let want = model
                    .range((key.clone(), std::cmp::Reverse(snapshot))..)
                    .next()
                    .map(|((k, s), _)| (k.clone(), s.0));
                let got = m.seek(&key, snapshot).map(|n| {
                    let e = m.entry(n);
                    (e.state_key.to_vec(), e.seqno)
                });
                assert_eq!(got, want, "seek {key:?} at {snapshot}");
            }
        }
    }

    #[test]
    fn a_frozen_walk_yields_every_version_in_order_however_short_or_long() {
        // Around the prefetch distance: shorter walks never fetch ahead of the end,
        // longer ones fetch while they go; large values span several cache lines.
        for n in [
            0usize,
            1,
            PREFETCH_DISTANCE - 1,
            PREFETCH_DISTANCE,
            PREFETCH_DISTANCE + 1,
            1000,
        ] {
            let m = Memtable::new();
            let mut want = Vec::new();
            for i in 0..n {
                let key = format!("key{:05}", (i * 7919) % 100_000).into_bytes();
                let value = vec![i as u8; i % 300];
                m.insert(&key, i as u64 + 1, Some(&value));
                want.push((key, i as u64 + 1, value));
            }
            want.sort();
            let got: Vec<_> = m
                .frozen()
                .iter()
                .map(|e| (e.state_key.to_vec(), e.seqno, e.value.to_vec()))
                .collect();
            assert_eq!(got, want, "{n} entries");
        }
    }
}
