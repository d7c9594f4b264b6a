//! The in-memory block cache: an LRU bounded in bytes, one per shard.
//!
//! Keys are (file id, block offset); values are the block bytes as the reader wants
//! them (already checked and decompressed), shared by `Rc` so a hit costs no copy.
//! The SSD tier will later sit under this same LRU.

use std::cell::RefCell;

use lru::LruCache;

use crate::Bytes;

/// Identifies a cached block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// Database-unique file id.
    pub file_id: u64,
    /// Offset of the block in the file.
    pub offset: u64,
}

/// Hit and miss counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found the block.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Blocks evicted to stay within capacity.
    pub evictions: u64,
    /// Bytes held now.
    pub used_bytes: u64,
}

/// A byte-bounded LRU of blocks. Capacity 0 disables caching.
pub struct BlockCache {
    inner: RefCell<Inner>,
    capacity_bytes: u64,
}

struct Inner {
    lru: LruCache<BlockKey, Bytes>,
    stats: CacheStats,
}

/// Bookkeeping charged per entry on top of the block bytes.
const ENTRY_OVERHEAD_BYTES: u64 = 64;

impl BlockCache {
    /// A cache holding at most `capacity_bytes` of blocks.
    pub fn new(capacity_bytes: u64) -> BlockCache {
        BlockCache {
            inner: RefCell::new(Inner {
                lru: LruCache::unbounded(),
                stats: CacheStats::default(),
            }),
            capacity_bytes,
        }
    }

    /// Capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Looks a block up, marking it most recently used.
    pub fn get(&self, key: &BlockKey) -> Option<Bytes> {
        let mut inner = self.inner.borrow_mut();
        match inner.lru.get(key).cloned() {
            Some(b) => {
                inner.stats.hits += 1;
                Some(b)
            }
            None => {
                inner.stats.misses += 1;
                None
            }
        }
    }

    /// Inserts a block, evicting least recently used ones to stay within capacity.
    pub fn insert(&self, key: BlockKey, block: Bytes) {
        let charge = block.len() as u64 + ENTRY_OVERHEAD_BYTES;
        if charge > self.capacity_bytes {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        if let Some(old) = inner.lru.put(key, block) {
            inner.stats.used_bytes -= old.len() as u64 + ENTRY_OVERHEAD_BYTES;
        }
        inner.stats.used_bytes += charge;
        while inner.stats.used_bytes > self.capacity_bytes {
            match inner.lru.pop_lru() {
                Some((_, b)) => {
                    inner.stats.used_bytes -= b.len() as u64 + ENTRY_OVERHEAD_BYTES;
                    inner.stats.evictions += 1;
                }
                None => break,
            }
        }
    }

    /// Drops every block of `file_id` (the file was deleted).
    pub fn evict_file(&self, file_id: u64) {
        let mut inner = self.inner.borrow_mut();
        let keys: Vec<BlockKey> = inner
            .lru
            .iter()
            .filter(|(k, _)| k.file_id == file_id)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(b) = inner.lru.pop(&k) {
                inner.stats.used_bytes -= b.len() as u64 + ENTRY_OVERHEAD_BYTES;
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        self.inner.borrow().stats
    }
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache::new(0)
    }
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

    #[test]
    fn evicts_least_recently_used_within_byte_capacity() {
        let c = BlockCache::new(3 * (100 + ENTRY_OVERHEAD_BYTES));
        for i in 0..3 {
            c.insert(key(1, i), Rc::from(vec![0u8; 100]));
        }
        assert!(c.get(&key(1, 0)).is_some()); // 0 becomes most recent
        c.insert(key(1, 3), Rc::from(vec![0u8; 100]));
        assert!(c.get(&key(1, 1)).is_none(), "1 was least recently used");
        assert!(c.get(&key(1, 0)).is_some());
        assert_eq!(c.stats().evictions, 1);
        assert!(c.stats().used_bytes <= c.capacity_bytes());
        c.evict_file(1);
        assert_eq!(c.stats().used_bytes, 0);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let c = BlockCache::new(0);
        c.insert(key(1, 0), Rc::from(vec![0u8; 10]));
        assert!(c.get(&key(1, 0)).is_none());
    }
}
