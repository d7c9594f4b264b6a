//! The hybrid cache's in-memory index: one node per cached block, whatever medium holds
//! it, in a slab with intrusive doubly linked lists, so every operation is O(1)
//! (`evict_file` is O(blocks of the file), dropping a segment O(blocks in it)).
//!
//! Lists: three memory pools (high: index/filter, low: data, small: data blocks in
//! S3-FIFO's small queue) and two SSD lists (filter, other). A node is in at most one
//! memory list and one SSD list. Under LRU a hit moves it to the front of both, so both
//! media follow one recency order; under S3-FIFO the cache moves it only in memory
//! ([`Index::touch_mem`]) and bumps its frequency, and the SSD lists are FIFOs whose
//! oldest blocks are requeued ([`Index::requeue_disk`]). Invariant: a node is in the
//! map iff it holds a memory copy or an SSD location; list byte totals equal the charges
//! of their members. Membership vectors with back-pointers find the nodes of a file and
//! of a segment.

use std::collections::HashMap;

use super::config::MEMORY_ENTRY_OVERHEAD_BYTES;
use super::format::{entry_span, BlockKind, Codec};
use super::policy::{disk_list, memory_pool, DiskList, MemPool};
use crate::{BlockKey, Bytes};

const NIL: u32 = u32::MAX;

/// A list of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListId {
    Mem(MemPool),
    Disk(DiskList),
}

impl ListId {
    fn slot(self) -> usize {
        match self {
            ListId::Mem(MemPool::High) => 0,
            ListId::Mem(MemPool::Low) => 1,
            ListId::Mem(MemPool::Small) => 2,
            ListId::Disk(DiskList::Filter) => 3,
            ListId::Disk(DiskList::Other) => 4,
        }
    }
    fn is_mem(self) -> bool {
        matches!(self, ListId::Mem(_))
    }
}

/// A block held in memory, as stored (maybe compressed).
#[derive(Clone)]
pub(crate) struct MemCopy {
    pub bytes: Bytes,
    pub codec: Codec,
    pub raw_len: u32,
}

impl MemCopy {
    pub fn charge(&self) -> u64 {
        self.bytes.len() as u64 + MEMORY_ENTRY_OVERHEAD_BYTES
    }
}

/// Where a block's entry is in the SSD tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DiskLoc {
    pub seg: u64,
    pub offset: u64,
    pub stored_len: u32,
    /// crc32 of the stored payload: every read is checked against it.
    pub crc: u32,
    pub codec: Codec,
    pub raw_len: u32,
}

impl DiskLoc {
    pub fn span(&self) -> u64 {
        entry_span(self.stored_len)
    }
}

#[derive(Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
};

pub(crate) struct Node {
    pub key: BlockKey,
    pub kind: BlockKind,
    pub level: u8,
    pub mem: Option<MemCopy>,
    pub disk: Option<DiskLoc>,
    /// S3-FIFO frequency (0..=[`super::policy::MAX_FREQ`]); 0 under LRU.
    pub freq: u8,
    /// The memory pool holding `mem` (meaningless while `mem` is `None`).
    pub pool: MemPool,
    /// Hit since the memory copy entered the small queue (S3-FIFO probation); set
    /// false by the cache when a copy enters it (a copy detached and put back, as at
    /// a stalled close, keeps it).
    pub hit_on_probation: bool,
    mem_link: Link,
    disk_link: Link,
    file_pos: u32,
    seg_pos: u32,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: u64,
    bytes: u64,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
    len: 0,
    bytes: 0,
};

#[derive(Default)]
pub(crate) struct Index {
    nodes: Vec<Option<Node>>,
    free: Vec<u32>,
    map: HashMap<BlockKey, u32>,
    lists: [List; 5],
    files: HashMap<u64, Vec<u32>>,
    segs: HashMap<u64, Vec<u32>>,
}

impl Default for List {
    fn default() -> Self {
        EMPTY
    }
}

impl Index {
    pub fn get(&self, key: &BlockKey) -> Option<u32> {
        self.map.get(key).copied()
    }

    /// The node of a slot the caller got from this index and has not removed.
    pub fn node(&self, slot: u32) -> &Node {
        match self.nodes.get(slot as usize) {
            Some(Some(n)) => n,
            _ => panic_slot(slot),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn list_len(&self, list: ListId) -> u64 {
        self.lists[list.slot()].len
    }

    pub fn list_bytes(&self, list: ListId) -> u64 {
        self.lists[list.slot()].bytes
    }

    /// Least recently used member of `list`.
    pub fn tail(&self, list: ListId) -> Option<u32> {
        let t = self.lists[list.slot()].tail;
        (t != NIL).then_some(t)
    }

    /// A node for `key` with no medium yet (the caller gives it one right away).
    pub fn insert(&mut self, key: BlockKey, kind: BlockKind, level: u8) -> u32 {
        let files = self.files.entry(key.file_id).or_default();
        let node = Node {
            key,
            kind,
            level,
            mem: None,
            disk: None,
            freq: 0,
            pool: memory_pool(kind),
            hit_on_probation: false,
            mem_link: UNLINKED,
            disk_link: UNLINKED,
            file_pos: files.len() as u32,
            seg_pos: NIL,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.nodes[s as usize] = Some(node);
                s
            }
            None => {
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as u32
            }
        };
        files.push(slot);
        self.map.insert(key, slot);
        slot
    }

    /// Gives the node a memory copy in `pool`, at the hot (front) or cold (back) end.
    pub fn set_mem(&mut self, slot: u32, copy: MemCopy, pool: MemPool, hot: bool) {
        let list = ListId::Mem(pool);
        let charge = copy.charge();
        if let Some(old) = self.take_mem(slot) {
            drop(old);
        }
        let n = self.node_mut(slot);
        n.mem = Some(copy);
        n.pool = pool;
        self.link(list, slot, hot, charge);
    }

    pub fn take_mem(&mut self, slot: u32) -> Option<MemCopy> {
        let copy = self.node_mut(slot).mem.take()?;
        let list = ListId::Mem(self.node(slot).pool);
        self.unlink(list, slot, copy.charge());
        Some(copy)
    }

    /// Sets the node's S3-FIFO frequency.
    pub fn set_freq(&mut self, slot: u32, freq: u8) {
        self.node_mut(slot).freq = freq;
    }

    /// Whether the node's memory copy was hit while on probation.
    pub fn set_hit_on_probation(&mut self, slot: u32, hit: bool) {
        self.node_mut(slot).hit_on_probation = hit;
    }

    /// Gives the node an SSD location, at the front of its SSD list.
    pub fn set_disk(&mut self, slot: u32, loc: DiskLoc) {
        if self.node(slot).disk.is_some() {
            self.take_disk(slot);
        }
        let list = ListId::Disk(disk_list(self.node(slot).kind));
        let members = self.segs.entry(loc.seg).or_default();
        let pos = members.len() as u32;
        members.push(slot);
        let n = self.node_mut(slot);
        n.disk = Some(loc);
        n.seg_pos = pos;
        self.link(list, slot, true, loc.span());
    }

    pub fn take_disk(&mut self, slot: u32) -> Option<DiskLoc> {
        let loc = self.node_mut(slot).disk.take()?;
        let list = ListId::Disk(disk_list(self.node(slot).kind));
        self.unlink(list, slot, loc.span());
        let pos = std::mem::replace(&mut self.node_mut(slot).seg_pos, NIL);
        let mut moved = None;
        if let Some(members) = self.segs.get_mut(&loc.seg) {
            swap_remove_member(members, pos);
            moved = members.get(pos as usize).copied();
            if members.is_empty() {
                self.segs.remove(&loc.seg);
            }
        }
        if let Some(m) = moved {
            self.node_mut(m).seg_pos = pos;
        }
        Some(loc)
    }

    /// Moves the node to the front of its memory and SSD lists.
    pub fn touch(&mut self, slot: u32) {
        self.touch_mem(slot);
        self.requeue_disk(slot);
    }

    /// Moves the node to the front of its memory list (if it has a memory copy).
    pub fn touch_mem(&mut self, slot: u32) {
        let n = self.node(slot);
        if let Some(c) = n.mem.as_ref().map(MemCopy::charge) {
            let list = ListId::Mem(n.pool);
            self.unlink(list, slot, c);
            self.link(list, slot, true, c);
        }
    }

    /// Moves the node to the front of its SSD list (if it has an SSD location).
    pub fn requeue_disk(&mut self, slot: u32) {
        let n = self.node(slot);
        let kind = n.kind;
        if let Some(c) = n.disk.map(|d| d.span()) {
            let list = ListId::Disk(disk_list(kind));
            self.unlink(list, slot, c);
            self.link(list, slot, true, c);
        }
    }

    /// Forgets the node if it holds neither medium. Returns whether it did.
    pub fn remove_if_empty(&mut self, slot: u32) -> bool {
        let n = self.node(slot);
        if n.mem.is_some() || n.disk.is_some() {
            return false;
        }
        let (key, pos) = (n.key, n.file_pos);
        self.map.remove(&key);
        let mut moved = None;
        if let Some(members) = self.files.get_mut(&key.file_id) {
            swap_remove_member(members, pos);
            moved = members.get(pos as usize).copied();
            if members.is_empty() {
                self.files.remove(&key.file_id);
            }
        }
        if let Some(m) = moved {
            self.node_mut(m).file_pos = pos;
        }
        self.nodes[slot as usize] = None;
        self.free.push(slot);
        true
    }

    /// Approximate heap bytes of the index itself (nodes, hash map, membership
    /// vectors). Not charged to the memory budget: it grows with SSD entries too.
    pub fn approx_bytes(&self) -> u64 {
        let nodes = self.nodes.capacity() * std::mem::size_of::<Option<Node>>();
        let map = self.map.capacity() * (std::mem::size_of::<(BlockKey, u32)>() + 1);
        let members = |m: &HashMap<u64, Vec<u32>>| {
            m.capacity() * (std::mem::size_of::<(u64, Vec<u32>)>() + 1)
                + m.values().map(|v| v.capacity() * 4).sum::<usize>()
        };
        (nodes + map + members(&self.files) + members(&self.segs) + self.free.capacity() * 4) as u64
    }

    /// Members of `list`, least recently used first.
    pub fn cold_first(&self, list: ListId) -> impl Iterator<Item = u32> + '_ {
        let mut at = self.lists[list.slot()].tail;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let slot = at;
            let n = self.node(slot);
            at = if list.is_mem() {
                n.mem_link.prev
            } else {
                n.disk_link.prev
            };
            Some(slot)
        })
    }

    pub fn file_slots(&self, file_id: u64) -> Vec<u32> {
        self.files.get(&file_id).cloned().unwrap_or_default()
    }

    pub fn segment_slots(&self, seg: u64) -> Vec<u32> {
        self.segs.get(&seg).cloned().unwrap_or_default()
    }

    fn node_mut(&mut self, slot: u32) -> &mut Node {
        match self.nodes.get_mut(slot as usize) {
            Some(Some(n)) => n,
            _ => panic_slot(slot),
        }
    }

    fn link_of(&mut self, list: ListId, slot: u32) -> &mut Link {
        let n = self.node_mut(slot);
        if list.is_mem() {
            &mut n.mem_link
        } else {
            &mut n.disk_link
        }
    }

    fn link(&mut self, list: ListId, slot: u32, front: bool, charge: u64) {
        let l = self.lists[list.slot()];
        if front {
            *self.link_of(list, slot) = Link {
                prev: NIL,
                next: l.head,
            };
            if l.head != NIL {
                self.link_of(list, l.head).prev = slot;
            }
        } else {
            *self.link_of(list, slot) = Link {
                prev: l.tail,
                next: NIL,
            };
            if l.tail != NIL {
                self.link_of(list, l.tail).next = slot;
            }
        }
        let l = &mut self.lists[list.slot()];
        if l.head == NIL {
            l.head = slot;
            l.tail = slot;
        } else if front {
            l.head = slot;
        } else {
            l.tail = slot;
        }
        l.len += 1;
        l.bytes += charge;
    }

    fn unlink(&mut self, list: ListId, slot: u32, charge: u64) {
        let Link { prev, next } = std::mem::replace(self.link_of(list, slot), UNLINKED);
        if prev != NIL {
            self.link_of(list, prev).next = next;
        } else {
            self.lists[list.slot()].head = next;
        }
        if next != NIL {
            self.link_of(list, next).prev = prev;
        } else {
            self.lists[list.slot()].tail = prev;
        }
        let l = &mut self.lists[list.slot()];
        l.len -= 1;
        l.bytes -= charge;
    }
}

fn swap_remove_member(members: &mut Vec<u32>, pos: u32) {
    if (pos as usize) < members.len() {
        members.swap_remove(pos as usize);
    }
}

#[cold]
fn panic_slot(slot: u32) -> ! {
    // An index bug, not an I/O condition: a slot handed out by this index was used after
    // it was freed. Continuing could serve the wrong block.
    panic!("hybrid cache index: slot {slot} is not in use")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn key(f: u64, o: u64) -> BlockKey {
        BlockKey {
            file_id: f,
            offset: o,
        }
    }

    fn mem(n: usize) -> MemCopy {
        MemCopy {
            bytes: Rc::from(vec![0u8; n]),
            codec: Codec::Raw,
            raw_len: n as u32,
        }
    }

    fn loc(seg: u64, offset: u64) -> DiskLoc {
        DiskLoc {
            seg,
            offset,
            stored_len: 100,
            crc: 0,
            codec: Codec::Raw,
            raw_len: 100,
        }
    }

    const LOW: ListId = ListId::Mem(MemPool::Low);
    const OTHER: ListId = ListId::Disk(DiskList::Other);

    #[test]
    fn lists_keep_recency_and_byte_totals() {
        let mut ix = Index::default();
        let a = ix.insert(key(1, 0), BlockKind::Data, 0);
        ix.set_mem(a, mem(10), MemPool::Low, true);
        let b = ix.insert(key(1, 1), BlockKind::Data, 0);
        ix.set_mem(b, mem(10), MemPool::Low, true);
        let c = ix.insert(key(2, 0), BlockKind::Data, 0);
        ix.set_mem(c, mem(10), MemPool::Low, false); // cold end
        assert_eq!(ix.tail(LOW), Some(c));
        ix.touch(c);
        assert_eq!(ix.tail(LOW), Some(a));
        assert_eq!(ix.list_bytes(LOW), 3 * (10 + MEMORY_ENTRY_OVERHEAD_BYTES));
        ix.set_disk(a, loc(7, 4096));
        ix.set_disk(b, loc(7, 4608));
        assert_eq!(ix.list_len(OTHER), 2);
        assert_eq!(ix.tail(OTHER), Some(a));
        ix.touch(a);
        assert_eq!(ix.tail(OTHER), Some(b), "a hit moves both media");
        assert_eq!(ix.cold_first(OTHER).collect::<Vec<_>>(), vec![b, a]);
        assert_eq!(ix.cold_first(LOW).collect::<Vec<_>>(), vec![b, c, a]);
        assert_eq!(ix.tail(LOW), Some(b));
        let mut segs = ix.segment_slots(7);
        segs.sort();
        assert_eq!(segs, vec![a, b]);
        assert!(ix.take_mem(a).is_some());
        assert!(!ix.remove_if_empty(a));
        assert!(ix.take_disk(a).is_some());
        assert!(ix.remove_if_empty(a));
        assert_eq!(ix.segment_slots(7), vec![b]);
        assert_eq!(ix.file_slots(1), vec![b]);
        assert_eq!(ix.get(&key(1, 0)), None);
        assert_eq!(ix.list_bytes(OTHER), loc(0, 0).span());
        // S3-FIFO moves: memory only, or the SSD list only; the small pool is a list
        // of its own.
        ix.set_disk(c, loc(8, 4096));
        assert_eq!(ix.tail(OTHER), Some(b));
        ix.requeue_disk(b);
        assert_eq!(ix.tail(OTHER), Some(c), "requeued to the young end");
        ix.touch_mem(c);
        assert_eq!(
            ix.tail(OTHER),
            Some(c),
            "a memory move leaves the SSD order"
        );
        assert_eq!(ix.tail(LOW), Some(b));
        ix.set_mem(b, mem(20), MemPool::Small, true);
        assert_eq!(ix.tail(LOW), Some(c));
        assert_eq!(ix.tail(ListId::Mem(MemPool::Small)), Some(b));
        assert_eq!(
            ix.list_bytes(ListId::Mem(MemPool::Small)),
            20 + MEMORY_ENTRY_OVERHEAD_BYTES
        );
        assert!(ix.take_mem(b).is_some());
        assert_eq!(ix.list_len(ListId::Mem(MemPool::Small)), 0);
        ix.set_freq(b, 2);
        assert_eq!(ix.node(b).freq, 2);
        assert!(ix.take_disk(c).is_some());
        let d = ix.insert(key(3, 0), BlockKind::Filter, 0);
        assert_eq!(d, a, "slots are reused");
        assert_eq!(ix.len(), 3);
        assert!(ix.approx_bytes() > 3 * std::mem::size_of::<Node>() as u64);
        // Per-block cost of the index, for sizing (see HybridStats::index_bytes).
        eprintln!("index node {} bytes", std::mem::size_of::<Option<Node>>());
    }
}
