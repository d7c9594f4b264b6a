//! [`HybridCache`]: one shard's block cache over memory and SSD segments.
//!
//! Data flow:
//! - `get_or_load` looks in memory (a hit is a hash probe, an `Rc` clone or a zstd
//!   decompression), then in the SSD tier (one O_DIRECT read, checked), then calls the
//!   caller's load; concurrent misses of one block share one SSD read or load
//!   ([`super::flight`]). What was loaded is offered to the cache with the caller's
//!   [`AdmissionHint`].
//! - Replacement ([`Eviction`], `cfg.eviction`): LRU, or S3-FIFO where data blocks a
//!   read admits start in a small FIFO in memory (`small_queue_ratio` of the block
//!   budget), leave it for the main queue if hit while there and leave the cache
//!   otherwise (never written to the SSD, their key kept in a ghost queue that sends a
//!   re-missed block straight to main); main is memory's LRU pool followed by the SSD
//!   lists, which are FIFOs whose oldest blocks are requeued while their 2-bit
//!   frequency is above 0 ([`policy::main_exit`]). "Least recently used" below means
//!   "next to leave" under S3-FIFO.
//! - Memory over its block budget (`memory_bytes` less the write buffer reservation
//!   while the SSD tier is in use; less only the buffers still in flight otherwise)
//!   gives up its least recently used blocks (data before index/filter,
//!   [`policy::memory_victim_pool`]). A block without an SSD copy is demoted: appended,
//!   as stored in memory, to the write buffer of the active segment of its level's class.
//!   Full buffers go to the background writer task, which writes them with O_DIRECT;
//!   until then reads are served from the buffer. Past `max_writes_in_flight`, demoted
//!   blocks are dropped instead (back-pressure never blocks a read).
//! - SSD live bytes over `ssd_fill_ratio * ssd_bytes` evict the least recently used
//!   SSD blocks (filters first), leaving holes. Segments whose live fraction falls below
//!   their class threshold are moved (live blocks rewritten, file deleted) by a
//!   background task; when a new segment is needed and the SSD budget has no free slot,
//!   one is dropped with its blocks ([`policy::choose_reclaim`]). While fewer than
//!   `RESERVE_SLOTS` slots are free, LRU SSD blocks are evicted until a segment becomes
//!   movable, so space normally comes back through moves, not drops.
//! - `open` loads the index file of the last clean close, or scans the segments;
//!   `close` writes memory-only blocks to the SSD (coldest first), flushes, syncs and
//!   writes the index file. No background task outlives the cache.
//!
//! Invariants: memory blocks plus write buffers ≤ `memory_bytes` after every public
//! call; segment files ≤ `ssd_bytes / segment_bytes`, each ≤ `segment_bytes` (a
//! dropped segment's file is deleted by the writer before any later segment file is
//! created); a block is served only after its checksum and key were checked; no block
//! of a file is served or admitted after `evict_file` of that file (flights in progress
//! are poisoned). All state is `!Send` behind one `RefCell`, never borrowed across an
//! `.await`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::rc::{Rc, Weak};

use futures_util::future::join_all;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::io::DmaFile;
use glommio::TaskQueueHandle;

use super::config::{HybridConfig, MEMORY_ENTRY_OVERHEAD_BYTES};
use super::flight::{self, FlightRef, Flights, SharedError, Wait};
use super::format::{
    decode_index, encode_entry, encode_segment_header, entry_span, parse_segment_file_name,
    write_index, BlockKind, Codec, IndexEntry, IndexFile, IndexSegment, SegmentHeader,
    ENTRY_HEADER_BYTES, INDEX_FILE_NAME, MAX_PAYLOAD_BYTES, SEGMENT_HEADER_BYTES,
};
use super::index::{DiskLoc, Index, ListId, MemCopy};
use super::policy::{
    self, AdmissionHint, Admit, CacheMode, DataQueue, DiskList, Eviction, GhostQueue, MainExit,
    MemPool, Reclaim, SegmentView, SmallExit,
};
use super::segment::{self, ReadError, Unusable};
use super::stats::{FifoStats, HybridStats, ReclaimStats, TierStats};
use crate::{BlockKey, Bytes};

/// Reads of a segment being moved that are in flight at once.
const MOVE_READ_BATCH: usize = 32;
/// SSD evictions between two looks at whether a segment can be reclaimed.
const RECLAIM_CHECK_EVERY: u32 = 32;
/// Free segment slots the background reclaim tries to keep, so demotions rarely find
/// the SSD budget full (and a segment dropped).
const RESERVE_SLOTS: u64 = 2;
/// zstd level for memory copies of data blocks (fast; decompression dominates hits).
const MEMORY_ZSTD_LEVEL: i32 = -1;
/// The ghost queue remembers at least this many keys (else as many as the cache can
/// hold blocks), and at most this many (about 50 bytes each).
const GHOST_MIN_ENTRIES: usize = 1024;
const GHOST_MAX_ENTRIES: usize = 16 << 20;
/// Smallest block size assumed when sizing the ghost queue (an SSD entry's alignment).
const ENTRY_ALIGN_BYTES: u64 = super::format::ENTRY_ALIGN;

/// One shard's hybrid memory + SSD block cache. `!Send`: one per shard executor.
pub struct HybridCache {
    shared: Rc<Shared>,
}

struct Shared {
    cfg: HybridConfig,
    state: RefCell<State>,
    background: Option<TaskQueueHandle>,
    /// False once the `HybridCache` handle is gone: background tasks stop (a dropped
    /// cache is a crashed one; it must not write segments a reopened cache may use).
    alive: std::cell::Cell<bool>,
}

fn spawn_background(
    queue: Option<TaskQueueHandle>,
    task: impl Future<Output = ()> + 'static,
) -> io::Result<()> {
    match queue {
        None => glommio::spawn_local(task).detach(),
        Some(q) => glommio::spawn_local_into(task, q)
            .map_err(|e| io::Error::other(format!("hybrid cache: spawn background task: {e}")))?
            .detach(),
    };
    Ok(())
}

enum Job {
    Write {
        seq: u64,
        offset: u64,
        data: Rc<Vec<u8>>,
    },
    Delete {
        seq: u64,
    },
    Move {
        seq: u64,
    },
    Barrier(LocalSender<()>),
}

struct Segment {
    class: usize,
    file: Option<Rc<DmaFile>>,
    /// Entry bytes appended (aligned spans), live or not.
    written_bytes: u64,
    /// Entry bytes still indexed.
    live_bytes: u64,
    sealed: bool,
    reclaiming: bool,
    /// Buffers handed to the writer and not yet written: (file offset, bytes).
    pending: Vec<(u64, Rc<Vec<u8>>)>,
}

struct Active {
    seq: u64,
    /// The filling buffer; its first byte goes to `buf_offset` of the segment.
    buf: Vec<u8>,
    buf_offset: u64,
    /// Whether `buf` is allocated (and charged to memory).
    has_buf: bool,
}

struct State {
    index: Index,
    flights: Flights,
    segments: BTreeMap<u64, Segment>,
    active: Vec<Option<Active>>,
    next_seq: u64,
    mode: CacheMode,
    /// Write buffers allocated (filling or in flight), charged to memory.
    buffer_bytes: u64,
    writes_in_flight: u32,
    moving: bool,
    /// Set by `close`: no new segment moves start.
    closing: bool,
    max_writes_in_flight: u32,
    ssd_evictions_since_check: u32,
    stats: HybridStats,
    /// The replacement policy (`cfg.eviction`).
    eviction: Eviction,
    /// S3-FIFO's ghost queue (empty under LRU).
    ghost: GhostQueue<BlockKey>,
    /// The SSD tier evicted blocks for room since it was last (nearly) empty.
    ssd_has_been_full: bool,
    /// Memory evicted a block since it last fell below 7/8 of its budget
    /// ([`policy::memory_pressed`]): data blocks enter it compressed.
    memory_pressed: bool,
    /// The segment classes with the reclaim thresholds of `eviction`
    /// ([`policy::reclaim_classes`]).
    reclaim_classes: Vec<policy::SegmentClass>,
    jobs: LocalSender<Job>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    decompressor: zstd::bulk::Decompressor<'static>,
}

impl HybridCache {
    /// Opens the cache in `cfg.dir`, rebuilding the SSD index from the segment files
    /// there (segments of another owner, of another segment size or with a bad header
    /// are deleted). Entries of files for which `is_live(file_id)` is false are not
    /// indexed, so blocks of files deleted while the cache was closed are never served.
    /// Runs [`crate::probe_direct_io`] in `cfg.dir` first. Must run on the shard's
    /// glommio executor; background writes run as tasks of the current task queue.
    pub async fn open(cfg: HybridConfig, is_live: impl Fn(u64) -> bool) -> io::Result<HybridCache> {
        HybridCache::open_in(cfg, is_live, None).await
    }

    /// [`Self::open`], with the background work (segment writes, deletes and moves)
    /// running in task queue `background` (the engine passes its flush or compaction
    /// queue, so demotions never compete with foreground reads at equal shares).
    pub async fn open_in(
        cfg: HybridConfig,
        is_live: impl Fn(u64) -> bool,
        background: Option<TaskQueueHandle>,
    ) -> io::Result<HybridCache> {
        cfg.validate()?;
        std::fs::create_dir_all(&cfg.dir)
            .map_err(|e| segment::with_path("create directory", &cfg.dir, e))?;
        crate::probe_direct_io(&cfg.dir).await?;
        let (tx, rx) = local_channel::new_unbounded();
        let compressor = if cfg.compress_memory {
            Some(zstd::bulk::Compressor::new(MEMORY_ZSTD_LEVEL)?)
        } else {
            None
        };
        let mut state = State {
            index: Index::default(),
            flights: Flights::default(),
            segments: BTreeMap::new(),
            active: (0..cfg.classes.len()).map(|_| None).collect(),
            next_seq: 1,
            mode: cfg.initial_mode,
            buffer_bytes: 0,
            writes_in_flight: 0,
            moving: false,
            closing: false,
            max_writes_in_flight: cfg.max_writes_in_flight,
            ssd_evictions_since_check: 0,
            stats: HybridStats {
                mode: cfg.initial_mode,
                mode_switches: 0,
                memory: TierStats::default(),
                ssd: TierStats::default(),
                loads: 0,
                coalesced: 0,
                not_admitted: 0,
                memory_used_bytes: 0,
                memory_capacity_bytes: cfg.memory_bytes,
                ssd_used_bytes: 0,
                ssd_live_bytes: 0,
                ssd_capacity_bytes: cfg.ssd_bytes,
                segments: 0,
                demotions_dropped: 0,
                segment_writes: 0,
                segment_write_bytes: 0,
                write_errors: 0,
                read_errors: 0,
                corruptions: 0,
                reclaim: ReclaimStats::default(),
                index_loaded: false,
                rebuilt_entries: 0,
                stale_entries_skipped: 0,
                invalidated_blocks: 0,
                indexed_blocks: 0,
                index_bytes: 0,
                compressed_blocks: 0,
                decompressed_in_memory: 0,
                eviction: cfg.eviction,
                s3fifo: FifoStats::default(),
            },
            eviction: cfg.eviction,
            ghost: GhostQueue::default(),
            ssd_has_been_full: false,
            memory_pressed: false,
            reclaim_classes: policy::reclaim_classes(&cfg.classes, cfg.eviction),
            jobs: tx,
            compressor,
            decompressor: zstd::bulk::Decompressor::new()?,
        };
        rebuild(&cfg, &mut state, &is_live).await?;
        let shared = Rc::new(Shared {
            cfg,
            state: RefCell::new(state),
            background,
            alive: std::cell::Cell::new(true),
        });
        spawn_background(background, run_writer(Rc::downgrade(&shared), rx))?;
        {
            let mut st = shared.state.borrow_mut();
            if st.mode == CacheMode::WholeFile {
                st.clear_ssd(&shared.cfg);
            }
            st.enforce_ssd_live(&shared.cfg);
            st.maybe_reclaim(&shared.cfg, false);
        }
        Ok(HybridCache { shared })
    }

    /// The memory fast path: the block if memory holds it (promoted, counted as a
    /// memory hit or miss). Use either this or [`Self::get_or_load`] for one lookup,
    /// not both, or the miss is counted twice.
    pub fn get(&self, key: &BlockKey) -> Option<Bytes> {
        let mut st = self.shared.state.borrow_mut();
        st.memory_hit(key, true, &self.shared.cfg)
            .transpose()
            .ok()
            .flatten()
    }

    /// The block `key` from memory, else from the SSD tier, else from `load` (awaited
    /// only if this call leads the load; concurrent calls for the same block share one
    /// SSD read or load and get the same bytes or error). What `load` returns is offered
    /// to the cache with `hint`. A corrupt SSD copy is dropped, counted, and the block
    /// loaded instead. `kind` and `level` describe the block for admission, stats and
    /// segment class.
    pub async fn get_or_load<F>(
        &self,
        key: BlockKey,
        kind: BlockKind,
        level: u8,
        hint: AdmissionHint,
        load: F,
    ) -> io::Result<Bytes>
    where
        F: Future<Output = io::Result<Bytes>>,
    {
        let promote = policy::promotes_on_hit(hint);
        let mut load = Some(load);
        let mut first = true;
        loop {
            let step = {
                let mut st = self.shared.state.borrow_mut();
                if let Some(hit) = st.memory_hit(&key, promote, &self.shared.cfg) {
                    return hit;
                }
                if first {
                    st.stats.memory.kind_mut(kind).misses += 1;
                    first = false;
                }
                if let Some(f) = st.flights.get(&key) {
                    st.stats.coalesced += 1;
                    Err(f)
                } else {
                    let disk = st.index.get(&key).and_then(|s| st.index.node(s).disk);
                    Ok((st.flights.lead(key), disk))
                }
            };
            let (flight, disk) = match step {
                Ok(lead) => lead,
                Err(f) => match Wait(f).await {
                    Some(r) => return r.map_err(|e| e.to_io()),
                    None => continue, // the leader was cancelled: retry
                },
            };
            let mut guard = LeaderGuard {
                shared: &self.shared,
                key,
                flight,
                done: false,
            };
            if let Some(loc) = disk {
                if let Some(bytes) = self.read_ssd(key, kind, loc, promote, &guard.flight).await {
                    guard.finish(Ok(Rc::clone(&bytes)));
                    return Ok(bytes);
                }
            } else {
                self.shared
                    .state
                    .borrow_mut()
                    .stats
                    .ssd
                    .kind_mut(kind)
                    .misses += 1;
            }
            self.shared.state.borrow_mut().stats.loads += 1;
            let Some(load) = load.take() else {
                // Unreachable: a call leads at most once (it returns after leading).
                let e = io::Error::other("hybrid cache: load future used twice");
                guard.finish(Err(SharedError::new(&e)));
                return Err(e);
            };
            match load.await {
                Ok(bytes) => {
                    let poisoned = guard.flight.borrow().poisoned;
                    if !poisoned {
                        self.insert(key, Rc::clone(&bytes), kind, level, hint);
                    }
                    guard.finish(Ok(Rc::clone(&bytes)));
                    return Ok(bytes);
                }
                Err(e) => {
                    guard.finish(Err(SharedError::new(&e)));
                    return Err(e);
                }
            }
        }
    }

    /// Reads `loc` for the leader of `key`'s flight; `None` when the SSD copy cannot
    /// be used (it is then forgotten and the block loaded from the source).
    async fn read_ssd(
        &self,
        key: BlockKey,
        kind: BlockKind,
        loc: DiskLoc,
        promote: bool,
        flight: &FlightRef,
    ) -> Option<Bytes> {
        let source = self.shared.state.borrow().buffered_entry(&key, &loc);
        let payload = match source {
            Source::Buffered(r) => r,
            Source::File(file) => {
                segment::read_entry(&file, loc.offset, &key, loc.stored_len, loc.crc)
                    .await
                    .map(|(p, _)| p)
            }
            Source::Missing => Err(ReadError::Io),
        };
        let mut st = self.shared.state.borrow_mut();
        let stored: Bytes = match payload {
            Ok(p) => p,
            Err(e) => {
                match e {
                    ReadError::Corrupt => st.stats.corruptions += 1,
                    ReadError::Io => st.stats.read_errors += 1,
                }
                st.forget_disk_copy(&key, &loc);
                st.stats.ssd.kind_mut(kind).misses += 1;
                return None;
            }
        };
        let copy = MemCopy {
            bytes: stored,
            codec: loc.codec,
            raw_len: loc.raw_len,
        };
        let Ok(raw) = st.decode(&copy) else {
            st.stats.corruptions += 1;
            st.forget_disk_copy(&key, &loc);
            st.stats.ssd.kind_mut(kind).misses += 1;
            return None;
        };
        let c = st.stats.ssd.kind_mut(kind);
        c.hits += 1;
        c.hit_bytes += raw.len() as u64;
        if promote && !flight.borrow().poisoned {
            if let Some(slot) = st.index.get(&key) {
                // A block on the SSD is in the main queue. Its memory copy joins the
                // hot end of its pool under LRU; under S3-FIFO a data block's copy goes
                // on probation (the small queue) and stays in memory only if hit there:
                // one SSD hit must not push memory's hot blocks out.
                st.promote(slot);
                if st.index.node(slot).mem.is_none() && st.mode_allows_memory(&self.shared.cfg) {
                    let pool = policy::memory_pool_for_ssd_hit(kind, st.eviction);
                    st.index.set_hit_on_probation(slot, false);
                    st.mem_attach(slot, copy, pool, true);
                }
                st.enforce_memory(&self.shared.cfg);
            }
        }
        Some(raw)
    }

    /// Offers a block to the cache (see [`AdmissionHint`]). Data blocks are compressed
    /// in memory when `compress_memory` is set and it saves at least an eighth.
    pub fn insert(
        &self,
        key: BlockKey,
        bytes: Bytes,
        kind: BlockKind,
        level: u8,
        hint: AdmissionHint,
    ) {
        let cfg = &self.shared.cfg;
        let mut st = self.shared.state.borrow_mut();
        let ghost_hit = st.eviction == Eviction::S3Fifo && st.ghost.contains(&key);
        let ssd_tier = st.ssd_enabled(cfg);
        let admit = policy::admit_with(hint, st.eviction, kind, ghost_hit, ssd_tier);
        if admit == Admit::Skip
            || bytes.len() as u64 > u64::from(MAX_PAYLOAD_BYTES)
            || !st.mode_allows_memory(cfg)
        {
            st.stats.not_admitted += 1;
            return;
        }
        let existing = st.index.get(&key);
        let replaced = existing
            .and_then(|s| st.index.node(s).mem.as_ref().map(MemCopy::charge))
            .unwrap_or(0);
        let budget = st.block_budget(cfg);
        let used = st.block_bytes().saturating_sub(replaced);
        let pressed = st.memory_pressure(used, budget);
        let compress = policy::compress_in_memory(pressed, used, bytes.len() as u64, budget);
        let copy = st.encode(kind, bytes, compress);
        if copy.charge() * 4 > budget {
            st.stats.not_admitted += 1;
            return;
        }
        let slot = match existing {
            Some(s) => {
                st.mem_detach(s);
                s
            }
            None => st.index.insert(key, kind, level),
        };
        if ghost_hit && st.ghost.remove(&key) {
            st.stats.s3fifo.ghost_hits += 1;
        }
        // A block with an SSD copy is in the main queue already: never on probation.
        let on_ssd = st.index.node(slot).disk.is_some();
        let (pool, hot) = match admit {
            Admit::Small if !on_ssd => {
                st.stats.s3fifo.small_admissions += 1;
                (MemPool::Small, true)
            }
            Admit::Small | Admit::Hot | Admit::Skip => (policy::memory_pool(kind), true),
            Admit::Cold => (policy::memory_pool(kind), false),
        };
        let c = st.stats.memory.kind_mut(kind);
        c.admissions += 1;
        c.admitted_bytes += copy.bytes.len() as u64;
        st.index.set_hit_on_probation(slot, false);
        st.mem_attach(slot, copy, pool, hot);
        st.enforce_memory(cfg);
    }

    /// Whether either tier holds `key` (no promotion, not counted). For preload
    /// decisions: a compaction asks this of its input blocks.
    pub fn contains(&self, key: &BlockKey) -> bool {
        self.shared.state.borrow().index.get(key).is_some()
    }

    /// Forgets every block of `file_id` in both tiers, and makes loads of it in flight
    /// not admit their result. The engine calls this when the file is deleted (no
    /// version or snapshot reads it any more).
    pub fn evict_file(&self, file_id: u64) {
        let cfg = &self.shared.cfg;
        let mut st = self.shared.state.borrow_mut();
        st.flights.poison_file(file_id);
        for slot in st.index.file_slots(file_id) {
            st.mem_detach(slot);
            st.disk_detach(slot);
            st.index.remove_if_empty(slot);
            st.stats.invalidated_blocks += 1;
        }
        st.maybe_reclaim(cfg, false);
    }

    /// Feeds the adaptive switch: `local_budget_bytes` is the shard's share of the local
    /// disk budget, `live_sst_bytes` the bytes of its live SSTs. Returns the mode now in
    /// force. Switching to whole files drops the SSD tier (its space goes to files);
    /// switching to hybrid starts demoting again.
    pub fn update_mode(&self, local_budget_bytes: u64, live_sst_bytes: u64) -> CacheMode {
        let cfg = &self.shared.cfg;
        let mut st = self.shared.state.borrow_mut();
        let next = policy::choose_mode(
            local_budget_bytes,
            live_sst_bytes,
            st.mode,
            &cfg.mode_policy,
        );
        if next != st.mode {
            st.mode = next;
            st.stats.mode = next;
            st.stats.mode_switches += 1;
            if next == CacheMode::WholeFile {
                st.clear_ssd(cfg);
            } else {
                // The write buffer reservation comes back out of the block budget.
                st.enforce_memory(cfg);
            }
        }
        st.mode
    }

    /// The mode in force.
    pub fn mode(&self) -> CacheMode {
        self.shared.state.borrow().mode
    }

    /// Counters and current sizes.
    pub fn stats(&self) -> HybridStats {
        let st = self.shared.state.borrow();
        let mut s = st.stats;
        s.memory_used_bytes = st.memory_used();
        s.ssd_live_bytes = st.ssd_live();
        s.segments = st.segments.len() as u64;
        s.ssd_used_bytes = s.segments * self.shared.cfg.segment_bytes;
        s.indexed_blocks = st.index.len() as u64;
        s.index_bytes = st.index.approx_bytes() + st.ghost.approx_bytes();
        s.s3fifo.ghost_entries = st.ghost.len() as u64;
        s
    }

    /// Writes every demoted block still in a buffer to its segment and waits for the
    /// writes (not for segment moves in progress).
    pub async fn flush(&self) -> io::Result<()> {
        let (tx, rx) = local_channel::new_bounded(1);
        {
            let mut st = self.shared.state.borrow_mut();
            for class in 0..st.active.len() {
                st.submit(class, true);
            }
            st.send(Job::Barrier(tx));
        }
        rx.recv().await;
        Ok(())
    }

    /// Waits for segment moves in progress, writes the blocks only memory holds to the
    /// SSD tier (when it is enabled), flushes, syncs the segment files, writes the index
    /// file and closes the cache. The next [`Self::open`] of the directory starts warm
    /// without scanning the segments.
    pub async fn close(self) -> io::Result<()> {
        // No background work may outlive the cache: a move still running after close
        // would write segments a reopened cache also uses.
        self.shared.state.borrow_mut().closing = true;
        while self.shared.state.borrow().moving {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        self.demote_memory().await?;
        self.flush().await?;
        let files: Vec<Rc<DmaFile>> = {
            let st = self.shared.state.borrow();
            st.segments
                .values()
                .filter_map(|s| s.file.clone())
                .collect()
        };
        for f in files {
            f.fdatasync().await.map_err(io::Error::from)?;
        }
        let st = self.shared.state.borrow();
        if st.ssd_enabled(&self.shared.cfg) {
            write_index_file(&self.shared.cfg, &st)?;
        }
        Ok(())
    }

    /// Writes every block that only memory holds to the SSD tier, coldest first (so
    /// the hottest are the newest entries, and the most recent after a rebuild), and
    /// empties memory. Used by `close` so a reopened cache starts warm.
    async fn demote_memory(&self) -> io::Result<()> {
        let cfg = &self.shared.cfg;
        let mut stalls = 0;
        loop {
            let stalled = {
                let mut st = self.shared.state.borrow_mut();
                if !st.ssd_enabled(cfg) {
                    return Ok(());
                }
                let mut stalled = false;
                loop {
                    let tail = st
                        .index
                        .tail(ListId::Mem(MemPool::Low))
                        .or_else(|| st.index.tail(ListId::Mem(MemPool::Small)))
                        .or_else(|| st.index.tail(ListId::Mem(MemPool::High)));
                    let Some(slot) = tail else {
                        break;
                    };
                    // S3-FIFO: a block on probation never hit again would have left
                    // without reaching the SSD; it does not reach it at close either.
                    let one_hit = {
                        let n = st.index.node(slot);
                        n.pool == MemPool::Small
                            && policy::small_exit(n.hit_on_probation) == SmallExit::Evict
                    };
                    let Some(copy) = st.mem_detach(slot) else {
                        break;
                    };
                    if one_hit {
                        st.index.remove_if_empty(slot);
                        continue;
                    }
                    if st.index.node(slot).disk.is_none() && !st.append(cfg, slot, &copy) {
                        if stalls < 2 {
                            // Writes in flight are full: wait for them, then go on.
                            let pool = st.index.node(slot).pool;
                            st.mem_attach(slot, copy, pool, false);
                            stalled = true;
                            break;
                        }
                        st.stats.demotions_dropped += 1;
                    }
                    stalls = 0;
                    st.index.remove_if_empty(slot);
                }
                stalled
            };
            if !stalled {
                return Ok(());
            }
            stalls += 1;
            self.flush().await?;
        }
    }

    /// The configuration the cache runs with.
    pub fn config(&self) -> &HybridConfig {
        &self.shared.cfg
    }
}

impl Drop for HybridCache {
    fn drop(&mut self) {
        self.shared.alive.set(false);
    }
}

struct LeaderGuard<'a> {
    shared: &'a Shared,
    key: BlockKey,
    flight: FlightRef,
    done: bool,
}

impl LeaderGuard<'_> {
    fn finish(&mut self, result: Result<Bytes, SharedError>) {
        self.done = true;
        self.shared
            .state
            .borrow_mut()
            .flights
            .remove(&self.key, &self.flight);
        flight::finish(&self.flight, result);
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Ok(mut st) = self.shared.state.try_borrow_mut() {
                st.flights.remove(&self.key, &self.flight);
            }
            flight::abandon(&self.flight);
        }
    }
}

enum Source {
    Buffered(Result<Bytes, ReadError>),
    File(Rc<DmaFile>),
    Missing,
}

impl State {
    fn send(&self, job: Job) {
        // Unbounded: never full; it fails only once the writer is gone, and then the
        // cache is being dropped.
        let _ = self.jobs.try_send(job);
    }

    /// Memory held now: blocks (with their per-entry charge) and write buffers.
    fn memory_used(&self) -> u64 {
        self.block_bytes() + self.buffer_bytes
    }

    fn block_bytes(&self) -> u64 {
        self.index.list_bytes(ListId::Mem(MemPool::High))
            + self.index.list_bytes(ListId::Mem(MemPool::Low))
            + self.index.list_bytes(ListId::Mem(MemPool::Small))
    }

    fn ssd_live(&self) -> u64 {
        self.index.list_bytes(ListId::Disk(DiskList::Filter))
            + self.index.list_bytes(ListId::Disk(DiskList::Other))
    }

    /// Memory blocks may use: `memory_bytes` less the write buffer reservation while
    /// the SSD tier is in use; otherwise (whole-file mode, or no SSD tier) all of it
    /// less the buffers still being written, so an idle SSD tier costs no memory.
    fn block_budget(&self, cfg: &HybridConfig) -> u64 {
        if self.ssd_enabled(cfg) {
            cfg.block_memory_bytes()
        } else {
            cfg.memory_bytes.saturating_sub(self.buffer_bytes)
        }
    }

    /// Whether memory is under pressure (see [`policy::memory_pressed`]), given that
    /// it holds `used` of `budget`; forgets the pressure once memory has room.
    fn memory_pressure(&mut self, used: u64, budget: u64) -> bool {
        self.memory_pressed = policy::memory_pressed(self.memory_pressed, used, budget);
        self.memory_pressed
    }

    fn mode_allows_memory(&self, cfg: &HybridConfig) -> bool {
        cfg.memory_bytes > 0
    }

    fn ssd_enabled(&self, cfg: &HybridConfig) -> bool {
        self.mode == CacheMode::Hybrid && cfg.ssd_bytes > 0
    }

    /// `Some(result)` if memory holds `key` (a hit), `None` on a miss.
    fn memory_hit(
        &mut self,
        key: &BlockKey,
        promote: bool,
        cfg: &HybridConfig,
    ) -> Option<io::Result<Bytes>> {
        let slot = self.index.get(key)?;
        let node = self.index.node(slot);
        let copy = node.mem.clone()?;
        let kind = node.kind;
        let Ok(bytes) = self.decode(&copy) else {
            // Cannot happen short of memory corruption; never serve it.
            self.stats.corruptions += 1;
            self.mem_detach(slot);
            self.index.remove_if_empty(slot);
            return None;
        };
        let pool = self.index.node(slot).pool;
        if promote && copy.codec == Codec::Zstd && pool != MemPool::Small {
            // A hot compressed block stays raw from now on if memory has room for it
            // (see `policy::compress_in_memory`): its next hits cost no decompression.
            let budget = self.block_budget(cfg);
            let held = self.block_bytes();
            let used = held.saturating_sub(copy.charge());
            let pressed = self.memory_pressure(held, budget);
            let raw = MemCopy {
                bytes: Rc::clone(&bytes),
                codec: Codec::Raw,
                raw_len: copy.raw_len,
            };
            if !policy::compress_in_memory(pressed, used, raw.charge(), budget) {
                self.mem_detach(slot);
                self.mem_attach(slot, raw, pool, true);
                self.stats.decompressed_in_memory += 1;
            }
        }
        if promote {
            self.promote(slot);
        }
        let c = self.stats.memory.kind_mut(kind);
        c.hits += 1;
        c.hit_bytes += bytes.len() as u64;
        Some(Ok(bytes))
    }

    /// A promoting hit on `slot` (in either medium). LRU: to the hot end of its memory
    /// and SSD lists. S3-FIFO: frequency bumped; to the hot end of its memory pool
    /// unless on probation (the small queue is a FIFO); the SSD lists are FIFOs.
    fn promote(&mut self, slot: u32) {
        match self.eviction {
            Eviction::Lru => self.index.touch(slot),
            Eviction::S3Fifo => {
                let n = self.index.node(slot);
                let (freq, pool, in_mem) = (n.freq, n.pool, n.mem.is_some());
                self.index.set_freq(slot, policy::bump_freq(freq));
                if in_mem && pool != MemPool::Small {
                    self.index.touch_mem(slot);
                } else if in_mem {
                    self.index.set_hit_on_probation(slot, true);
                }
            }
        }
    }

    /// Remembers an evicted block's key (S3-FIFO), as many as the cache can hold
    /// blocks (its budgets over the average block admitted so far): sized by what is
    /// cached instead, a cold SSD tier would keep the ghost queue, the only way into
    /// main besides a hit in the small queue, too short to ever fill it.
    fn remember_ghost(&mut self, cfg: &HybridConfig, key: BlockKey) {
        if self.eviction != Eviction::S3Fifo {
            return;
        }
        let mem = self.stats.memory.total();
        let avg = mem
            .admitted_bytes
            .checked_div(mem.admissions)
            .unwrap_or(4096)
            .max(ENTRY_ALIGN_BYTES)
            + MEMORY_ENTRY_OVERHEAD_BYTES;
        let ssd = if self.ssd_enabled(cfg) {
            (cfg.ssd_bytes as f64 * cfg.ssd_fill_ratio) as u64
        } else {
            0
        };
        let capacity = ((self.block_budget(cfg) + ssd) / avg) as usize;
        self.ghost
            .insert(key, capacity.clamp(GHOST_MIN_ENTRIES, GHOST_MAX_ENTRIES));
    }

    /// The SSD block of `list` to evict next: its oldest under LRU (the list is in
    /// recency order); under S3-FIFO the oldest with frequency 0, older ones with a
    /// higher frequency being requeued with one less on the way.
    fn ssd_victim(&mut self, list: DiskList) -> Option<u32> {
        let id = ListId::Disk(list);
        if self.eviction == Eviction::Lru {
            return self.index.tail(id);
        }
        // Each requeue lowers a frequency: after this many every block is at 0.
        let bound = self.index.list_len(id) * u64::from(policy::MAX_FREQ) + 1;
        for _ in 0..bound {
            let slot = self.index.tail(id)?;
            match policy::main_exit(self.index.node(slot).freq) {
                MainExit::Evict => return Some(slot),
                MainExit::Reinsert(freq) => {
                    self.index.set_freq(slot, freq);
                    self.index.requeue_disk(slot);
                    self.stats.s3fifo.ssd_reinsertions += 1;
                }
            }
        }
        self.index.tail(id)
    }

    /// Evicts `slot`'s SSD copy (a hole in its segment), counted; a block left in no
    /// medium is forgotten and (S3-FIFO) becomes a ghost.
    fn ssd_evict(&mut self, cfg: &HybridConfig, slot: u32) -> Option<DiskLoc> {
        let loc = self.disk_detach(slot)?;
        self.ssd_has_been_full = true;
        let (kind, key) = {
            let n = self.index.node(slot);
            (n.kind, n.key)
        };
        self.stats.ssd.kind_mut(kind).evictions += 1;
        if self.index.remove_if_empty(slot) {
            self.remember_ghost(cfg, key);
        }
        Some(loc)
    }

    /// The memory copy of a block: compressed when `compress` (and it is a data block
    /// and compression saves enough), else raw.
    fn encode(&mut self, kind: BlockKind, bytes: Bytes, compress: bool) -> MemCopy {
        let raw_len = bytes.len() as u32;
        if compress && kind == BlockKind::Data {
            if let Some(c) = self.compressor.as_mut() {
                if let Ok(z) = c.compress(&bytes) {
                    if policy::keep_compressed(bytes.len(), z.len()) {
                        return MemCopy {
                            bytes: Rc::from(z),
                            codec: Codec::Zstd,
                            raw_len,
                        };
                    }
                }
            }
        }
        MemCopy {
            bytes,
            codec: Codec::Raw,
            raw_len,
        }
    }

    fn decode(&mut self, copy: &MemCopy) -> io::Result<Bytes> {
        match copy.codec {
            Codec::Raw => Ok(Rc::clone(&copy.bytes)),
            Codec::Zstd => {
                let v = self
                    .decompressor
                    .decompress(&copy.bytes, copy.raw_len as usize)?;
                if v.len() != copy.raw_len as usize {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "hybrid cache: block decoded to {} bytes, expected {}",
                            v.len(),
                            copy.raw_len
                        ),
                    ));
                }
                Ok(Rc::from(v))
            }
        }
    }

    fn mem_attach(&mut self, slot: u32, copy: MemCopy, pool: MemPool, hot: bool) {
        let kind = self.index.node(slot).kind;
        let c = self.stats.memory.kind_mut(kind);
        c.resident_blocks += 1;
        c.resident_bytes += copy.bytes.len() as u64;
        if copy.codec == Codec::Zstd {
            self.stats.compressed_blocks += 1;
        }
        self.index.set_mem(slot, copy, pool, hot);
    }

    fn mem_detach(&mut self, slot: u32) -> Option<MemCopy> {
        let copy = self.index.take_mem(slot)?;
        let kind = self.index.node(slot).kind;
        let c = self.stats.memory.kind_mut(kind);
        c.resident_blocks -= 1;
        c.resident_bytes -= copy.bytes.len() as u64;
        if copy.codec == Codec::Zstd {
            self.stats.compressed_blocks -= 1;
        }
        Some(copy)
    }

    fn disk_attach(&mut self, slot: u32, loc: DiskLoc) {
        let kind = self.index.node(slot).kind;
        if let Some(seg) = self.segments.get_mut(&loc.seg) {
            seg.live_bytes += loc.span();
        }
        let c = self.stats.ssd.kind_mut(kind);
        c.resident_blocks += 1;
        c.resident_bytes += loc.span();
        self.index.set_disk(slot, loc);
    }

    fn disk_detach(&mut self, slot: u32) -> Option<DiskLoc> {
        let loc = self.index.take_disk(slot)?;
        let kind = self.index.node(slot).kind;
        if let Some(seg) = self.segments.get_mut(&loc.seg) {
            seg.live_bytes -= loc.span();
        }
        let c = self.stats.ssd.kind_mut(kind);
        c.resident_blocks -= 1;
        c.resident_bytes -= loc.span();
        Some(loc)
    }

    /// Forgets the SSD copy of `key` if it is still the one at `loc`.
    fn forget_disk_copy(&mut self, key: &BlockKey, loc: &DiskLoc) {
        if let Some(slot) = self.index.get(key) {
            if self.index.node(slot).disk.as_ref() == Some(loc) {
                self.disk_detach(slot);
                self.index.remove_if_empty(slot);
            }
        }
    }

    /// The entry at `loc` if it is still in a write buffer, else the segment's file.
    fn buffered_entry(&self, key: &BlockKey, loc: &DiskLoc) -> Source {
        let Some(seg) = self.segments.get(&loc.seg) else {
            return Source::Missing;
        };
        let check = |bytes: &[u8], start: u64| -> Source {
            let at = (loc.offset - start) as usize;
            Source::Buffered(
                bytes
                    .get(at..)
                    .ok_or(ReadError::Corrupt)
                    .and_then(|b| Ok(super::format::check_entry(b, key, loc.stored_len, loc.crc)?))
                    .map(|(p, _)| Rc::from(p)),
            )
        };
        if let Some(Some(a)) = self.active.get(seg.class) {
            if a.seq == loc.seg && loc.offset >= a.buf_offset {
                return check(&a.buf, a.buf_offset);
            }
        }
        for (start, data) in &seg.pending {
            if loc.offset >= *start && loc.offset < start + data.len() as u64 {
                return check(data, *start);
            }
        }
        match &seg.file {
            Some(f) => Source::File(Rc::clone(f)),
            None => Source::Missing,
        }
    }

    /// Brings memory back within budget, demoting blocks without an SSD copy.
    ///
    /// Blocks are kept within [`State::block_budget`] ([`HybridConfig::block_memory_bytes`]
    /// while the SSD tier is in use); write buffers live in the reservation beside it, so a demotion frees its block's memory at once
    /// (charging buffers as they are allocated would make each new buffer evict more
    /// blocks than it can hold, a cascade that ends in dropped demotions).
    fn enforce_memory(&mut self, cfg: &HybridConfig) {
        let budget = self.block_budget(cfg);
        let high_cap = (budget as f64 * cfg.high_priority_ratio) as u64;
        let small_cap = policy::small_capacity_bytes(budget, cfg.small_queue_ratio);
        while self.block_bytes() > budget {
            self.memory_pressed = true;
            let high = self.index.list_bytes(ListId::Mem(MemPool::High));
            let low = self.index.list_bytes(ListId::Mem(MemPool::Low));
            let small = self.index.list_bytes(ListId::Mem(MemPool::Small));
            let pool = match policy::memory_victim_pool(high, low + small, high_cap) {
                None => break,
                Some(MemPool::High) => MemPool::High,
                Some(MemPool::Low | MemPool::Small) => {
                    match policy::data_victim_queue(small, low, small_cap) {
                        Some(DataQueue::Small) => MemPool::Small,
                        Some(DataQueue::Main) => MemPool::Low,
                        None => break,
                    }
                }
            };
            let Some(slot) = self.index.tail(ListId::Mem(pool)) else {
                break;
            };
            let (kind, key, hit_on_probation) = {
                let n = self.index.node(slot);
                (n.kind, n.key, n.hit_on_probation)
            };
            let Some(copy) = self.mem_detach(slot) else {
                break;
            };
            if pool == MemPool::Small {
                match policy::small_exit(hit_on_probation) {
                    SmallExit::ToMain => {
                        // Memory stays the same; the next victim is older.
                        self.stats.s3fifo.small_to_main += 1;
                        self.mem_attach(slot, copy, MemPool::Low, true);
                    }
                    SmallExit::Evict => {
                        self.stats.memory.kind_mut(kind).evictions += 1;
                        let room = policy::warm_ssd_takes_small_exits(
                            self.ssd_live(),
                            ssd_target_bytes(cfg),
                            self.ssd_has_been_full,
                        );
                        if room {
                            self.ssd_has_been_full = false;
                        }
                        let to_ssd =
                            room && self.ssd_enabled(cfg) && self.index.node(slot).disk.is_none();
                        if to_ssd && self.append(cfg, slot, &copy) {
                            self.stats.s3fifo.small_to_cold_ssd += 1;
                        } else {
                            self.stats.s3fifo.small_evictions += 1;
                        }
                        if self.index.remove_if_empty(slot) {
                            self.remember_ghost(cfg, key);
                        }
                    }
                }
                continue;
            }
            self.stats.memory.kind_mut(kind).evictions += 1;
            if self.index.node(slot).disk.is_none()
                && self.ssd_enabled(cfg)
                && !self.append(cfg, slot, &copy)
            {
                self.stats.demotions_dropped += 1;
            }
            if self.index.remove_if_empty(slot) {
                self.remember_ghost(cfg, key);
            }
        }
        self.enforce_ssd_live(cfg);
    }

    /// Appends `copy` as the SSD entry of `slot` to the active segment of its class.
    /// False when it cannot be written now (no room, too many writes in flight).
    fn append(&mut self, cfg: &HybridConfig, slot: u32, copy: &MemCopy) -> bool {
        let (key, kind, level) = {
            let n = self.index.node(slot);
            (n.key, n.kind, n.level)
        };
        // A data block held raw while memory had room goes to the SSD compressed
        // (when compression is on and saves enough), like one that entered
        // compressed: the SSD tier's room is what compression buys most.
        let packed;
        let copy = if copy.codec == Codec::Raw && kind == BlockKind::Data {
            packed = self.encode(kind, Rc::clone(&copy.bytes), true);
            &packed
        } else {
            copy
        };
        let span = entry_span(copy.bytes.len() as u32);
        if span + SEGMENT_HEADER_BYTES > cfg.write_buffer_bytes {
            return false;
        }
        let class = policy::segment_class(level, &cfg.classes);
        for _ in 0..4 {
            let Some(a) = self.active.get(class).and_then(Option::as_ref) else {
                if !self.open_segment(cfg, class) {
                    return false;
                }
                continue;
            };
            let end = a.buf_offset + a.buf.len() as u64;
            if end + span > cfg.segment_bytes {
                if !self.seal(cfg, class) {
                    return false;
                }
                continue;
            }
            if a.buf.len() as u64 + span > cfg.write_buffer_bytes {
                if !self.submit(class, false) {
                    return false;
                }
                continue;
            }
            let mut newly_charged = false;
            let Some(a) = self.active.get_mut(class).and_then(Option::as_mut) else {
                return false;
            };
            if !a.has_buf {
                if self.buffer_bytes + cfg.write_buffer_bytes > cfg.write_buffer_reservation_bytes()
                {
                    return false; // buffers forced out by a flush are still in flight
                }
                a.buf = Vec::with_capacity(cfg.write_buffer_bytes as usize);
                a.has_buf = true;
                newly_charged = true;
            }
            let pos = a.buf.len() as u64;
            let header = encode_entry(
                &mut a.buf,
                key,
                kind,
                level,
                copy.codec,
                copy.raw_len,
                &copy.bytes,
            );
            let loc = DiskLoc {
                seg: a.seq,
                offset: a.buf_offset + pos,
                stored_len: copy.bytes.len() as u32,
                crc: header.payload_crc,
                codec: copy.codec,
                raw_len: copy.raw_len,
            };
            if newly_charged {
                self.buffer_bytes += cfg.write_buffer_bytes;
            }
            if let Some(seg) = self.segments.get_mut(&loc.seg) {
                seg.written_bytes += span;
            }
            self.disk_attach(slot, loc);
            let c = self.stats.ssd.kind_mut(kind);
            c.admissions += 1;
            c.admitted_bytes += span;
            return true;
        }
        false
    }

    /// Starts a new segment for `class`; false if the SSD budget has no slot for it.
    fn open_segment(&mut self, cfg: &HybridConfig, class: usize) -> bool {
        if !self.ssd_enabled(cfg) {
            return false;
        }
        if self.buffer_bytes + cfg.write_buffer_bytes > cfg.write_buffer_reservation_bytes() {
            return false;
        }
        if self.segments.len() as u64 >= cfg.segment_slots() && !self.maybe_reclaim(cfg, true) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut buf = Vec::with_capacity(cfg.write_buffer_bytes as usize);
        buf.extend_from_slice(&encode_segment_header(&SegmentHeader {
            seq,
            owner_id: cfg.owner_id,
            segment_bytes: cfg.segment_bytes,
            class: class as u8,
        }));
        self.buffer_bytes += cfg.write_buffer_bytes;
        self.segments.insert(
            seq,
            Segment {
                class,
                file: None,
                written_bytes: 0,
                live_bytes: 0,
                sealed: false,
                reclaiming: false,
                pending: Vec::new(),
            },
        );
        if let Some(a) = self.active.get_mut(class) {
            *a = Some(Active {
                seq,
                buf,
                buf_offset: 0,
                has_buf: true,
            });
        }
        self.maybe_reclaim(cfg, false);
        true
    }

    /// Hands the filling buffer of `class` to the writer. Without `force`, refused
    /// while `max_writes_in_flight` buffers are in flight. The buffer's memory charge
    /// stays until the write completes.
    fn submit(&mut self, class: usize, force: bool) -> bool {
        let full = self.writes_in_flight >= self.max_writes_in_flight;
        let Some(Some(a)) = self.active.get_mut(class) else {
            return true;
        };
        if a.buf.is_empty() {
            return true;
        }
        if !force && full {
            return false;
        }
        let mut data = std::mem::take(&mut a.buf);
        a.has_buf = false;
        let padded = data.len().div_ceil(4096) * 4096;
        data.resize(padded, 0);
        let (seq, offset) = (a.seq, a.buf_offset);
        a.buf_offset += padded as u64;
        let data = Rc::new(data);
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.pending.push((offset, Rc::clone(&data)));
        }
        self.writes_in_flight += 1;
        self.send(Job::Write { seq, offset, data });
        true
    }

    /// Closes the active segment of `class` to appends.
    fn seal(&mut self, cfg: &HybridConfig, class: usize) -> bool {
        if !self.submit(class, false) {
            return false;
        }
        if let Some(a) = self.active.get_mut(class).and_then(Option::take) {
            if a.has_buf {
                self.buffer_bytes -= cfg.write_buffer_bytes;
            }
            if let Some(seg) = self.segments.get_mut(&a.seq) {
                seg.sealed = true;
            }
        }
        self.maybe_reclaim(cfg, false);
        true
    }

    /// Evicts least recently used SSD blocks (filters first) while live bytes exceed
    /// the fill target.
    fn enforce_ssd_live(&mut self, cfg: &HybridConfig) {
        let target = ssd_target_bytes(cfg);
        let mut evicted = 0u32;
        while self.ssd_live() > target {
            let filters = self.index.list_len(ListId::Disk(DiskList::Filter));
            let others = self.index.list_len(ListId::Disk(DiskList::Other));
            let Some(list) = policy::disk_victim_list(filters, others) else {
                break;
            };
            let Some(slot) = self.ssd_victim(list) else {
                break;
            };
            if self.ssd_evict(cfg, slot).is_none() {
                break;
            }
            evicted += 1;
        }
        if evicted > 0 {
            self.ssd_evictions_since_check += evicted;
            if self.ssd_evictions_since_check >= RECLAIM_CHECK_EVERY {
                self.ssd_evictions_since_check = 0;
                self.maybe_reclaim(cfg, false);
            }
        }
    }

    /// Applies the reclaim policy. Returns true if a segment slot was freed.
    ///
    /// With `need_slot` (a new segment is needed now and the budget has no free slot),
    /// a segment is dropped. Otherwise a segment below its class threshold is moved in
    /// the background; and while fewer than [`RESERVE_SLOTS`] slots are free, least
    /// recently used SSD blocks are evicted until some segment becomes movable, so that
    /// space comes back through the one LRU order rather than by dropping segments.
    fn maybe_reclaim(&mut self, cfg: &HybridConfig, need_slot: bool) -> bool {
        if self.moving && !need_slot {
            return false;
        }
        match policy::choose_reclaim(&self.segment_views(), &self.reclaim_classes, need_slot) {
            // Under pressure a segment below its threshold is mostly holes: drop it
            // now rather than wait for a move.
            Reclaim::Move(seq) | Reclaim::Drop(seq) if need_slot => {
                self.drop_segment(cfg, seq);
                true
            }
            Reclaim::Move(seq) => {
                self.start_move(seq);
                false
            }
            Reclaim::Drop(seq) => {
                self.drop_segment(cfg, seq);
                true
            }
            Reclaim::None => {
                let free = cfg
                    .segment_slots()
                    .saturating_sub(self.segments.len() as u64);
                if free < RESERVE_SLOTS && self.ssd_enabled(cfg) {
                    self.evict_until_movable(cfg);
                }
                false
            }
        }
    }

    fn segment_views(&self) -> Vec<SegmentView> {
        self.segments
            .iter()
            .map(|(&seq, s)| SegmentView {
                seq,
                class: s.class,
                live_bytes: s.live_bytes,
                written_bytes: s.written_bytes,
                reclaimable: s.sealed && !s.reclaiming && s.pending.is_empty(),
            })
            .collect()
    }

    fn start_move(&mut self, seq: u64) {
        if self.closing {
            return;
        }
        if let Some(s) = self.segments.get_mut(&seq) {
            s.reclaiming = true;
            self.moving = true;
            self.send(Job::Move { seq });
        }
    }

    /// Evicts least recently used SSD blocks (filters first), at most a segment's worth,
    /// until the segment of an evicted block falls below its class threshold; then
    /// moves that segment.
    fn evict_until_movable(&mut self, cfg: &HybridConfig) {
        let mut evicted_bytes = 0;
        while evicted_bytes < cfg.segment_bytes {
            let filters = self.index.list_len(ListId::Disk(DiskList::Filter));
            let others = self.index.list_len(ListId::Disk(DiskList::Other));
            let Some(list) = policy::disk_victim_list(filters, others) else {
                return;
            };
            let Some(slot) = self.ssd_victim(list) else {
                return;
            };
            let Some(loc) = self.ssd_evict(cfg, slot) else {
                return;
            };
            evicted_bytes += loc.span();
            if let Some(seg) = self.segments.get(&loc.seg) {
                let reclaimable = seg.sealed && !seg.reclaiming && seg.pending.is_empty();
                let below = self.reclaim_classes.get(seg.class).is_some_and(|c| {
                    (seg.live_bytes as f64) < c.reclaim_below_live_ratio * seg.written_bytes as f64
                });
                if reclaimable && below {
                    self.start_move(loc.seg);
                    return;
                }
            }
        }
    }

    /// Forgets segment `seq` and its blocks; the writer deletes its file.
    fn drop_segment(&mut self, cfg: &HybridConfig, seq: u64) {
        for slot in self.index.segment_slots(seq) {
            self.disk_detach(slot);
            self.index.remove_if_empty(slot);
            self.stats.reclaim.blocks_dropped += 1;
        }
        if let Some(seg) = self.segments.remove(&seq) {
            if let Some(Some(a)) = self.active.get(seg.class) {
                if a.seq == seq {
                    if a.has_buf {
                        self.buffer_bytes -= cfg.write_buffer_bytes;
                    }
                    self.active[seg.class] = None;
                }
            }
            self.stats.reclaim.segments_dropped += 1;
        }
        self.send(Job::Delete { seq });
    }

    /// Drops the whole SSD tier (switch to whole files).
    fn clear_ssd(&mut self, cfg: &HybridConfig) {
        let seqs: Vec<u64> = self.segments.keys().copied().collect();
        for seq in seqs {
            self.drop_segment(cfg, seq);
        }
    }
}

/// Live SSD bytes the tier evicts down to.
fn ssd_target_bytes(cfg: &HybridConfig) -> u64 {
    (cfg.ssd_bytes as f64 * cfg.ssd_fill_ratio) as u64
}

/// The background writer: writes buffers, deletes segments, starts moves, in order.
async fn run_writer(weak: Weak<Shared>, rx: LocalReceiver<Job>) {
    while let Some(job) = rx.recv().await {
        let Some(shared) = weak.upgrade() else {
            break;
        };
        if !shared.alive.get() {
            if let Job::Barrier(tx) = job {
                let _ = tx.try_send(());
            }
            continue;
        }
        match job {
            Job::Write { seq, offset, data } => shared.write(seq, offset, data).await,
            Job::Delete { seq } => {
                let path = segment::segment_path(&shared.cfg.dir, seq);
                if let Err(e) = glommio::io::remove(&path).await {
                    let e = io::Error::from(e);
                    if e.kind() != io::ErrorKind::NotFound {
                        shared.state.borrow_mut().stats.write_errors += 1;
                    }
                }
            }
            Job::Move { seq } => {
                if spawn_background(shared.background, run_move(Rc::clone(&shared), seq)).is_err() {
                    let mut st = shared.state.borrow_mut();
                    st.moving = false;
                    if let Some(s) = st.segments.get_mut(&seq) {
                        s.reclaiming = false;
                    }
                }
            }
            Job::Barrier(tx) => {
                let _ = tx.try_send(());
            }
        }
    }
}

impl Shared {
    async fn write(&self, seq: u64, offset: u64, data: Rc<Vec<u8>>) {
        let existing = {
            let st = self.state.borrow();
            st.segments.get(&seq).map(|s| s.file.clone())
        };
        let result = match existing {
            // Dropped before its write: nothing to do.
            None => Ok(()),
            Some(file) => {
                let file = match file {
                    Some(f) => Ok(f),
                    None => segment::create_segment(&self.cfg.dir, seq)
                        .await
                        .inspect(|f| {
                            let mut st = self.state.borrow_mut();
                            if let Some(s) = st.segments.get_mut(&seq) {
                                s.file = Some(Rc::clone(f));
                            }
                        }),
                };
                match file {
                    Ok(f) => segment::write_buffer(&f, offset, &data).await,
                    Err(e) => Err(e),
                }
            }
        };
        let mut st = self.state.borrow_mut();
        st.writes_in_flight -= 1;
        st.buffer_bytes -= self.cfg.write_buffer_bytes;
        if let Some(s) = st.segments.get_mut(&seq) {
            s.pending.retain(|(o, _)| *o != offset);
        }
        match result {
            Ok(()) => {
                st.stats.segment_writes += 1;
                st.stats.segment_write_bytes += data.len() as u64;
            }
            Err(_) => {
                st.stats.write_errors += 1;
                let end = offset + data.len() as u64;
                for slot in st.index.segment_slots(seq) {
                    if st
                        .index
                        .node(slot)
                        .disk
                        .is_some_and(|l| l.offset >= offset && l.offset < end)
                    {
                        st.disk_detach(slot);
                        st.index.remove_if_empty(slot);
                    }
                }
            }
        }
    }
}

/// Rewrites one block of a segment being moved. Returns the copy back when it could
/// not be written only because writes in flight are full and `may_wait` (the caller
/// waits and retries); otherwise the block is moved or dropped.
fn move_one(
    st: &mut State,
    cfg: &HybridConfig,
    key: BlockKey,
    loc: DiskLoc,
    copy: Result<MemCopy, ReadError>,
    may_wait: bool,
) -> Option<MemCopy> {
    let slot = st.index.get(&key)?;
    if st.index.node(slot).disk != Some(loc) {
        return None; // evicted or replaced meanwhile
    }
    let copy = match copy {
        Ok(c) => c,
        Err(e) => {
            match e {
                ReadError::Corrupt => st.stats.corruptions += 1,
                ReadError::Io => st.stats.read_errors += 1,
            }
            st.disk_detach(slot);
            st.index.remove_if_empty(slot);
            return None;
        }
    };
    st.disk_detach(slot);
    if st.ssd_enabled(cfg) && st.append(cfg, slot, &copy) {
        st.stats.reclaim.blocks_moved += 1;
        st.stats.reclaim.bytes_moved += loc.span();
        return None;
    }
    if may_wait && st.ssd_enabled(cfg) && st.writes_in_flight >= st.max_writes_in_flight {
        st.disk_attach(slot, loc); // still readable where it is
        return Some(copy);
    }
    st.stats.reclaim.blocks_dropped += 1;
    st.index.remove_if_empty(slot);
    None
}

/// Moves the live blocks of segment `seq` to the active segments, then deletes it.
async fn run_move(shared: Rc<Shared>, seq: u64) {
    let cfg = &shared.cfg;
    let (file, items) = {
        let st = shared.state.borrow();
        let file = st.segments.get(&seq).and_then(|s| s.file.clone());
        let items: Vec<(BlockKey, DiskLoc, Option<MemCopy>)> = st
            .index
            .segment_slots(seq)
            .into_iter()
            .filter_map(|slot| {
                let n = st.index.node(slot);
                n.disk.map(|d| (n.key, d, n.mem.clone()))
            })
            .collect();
        (file, items)
    };
    let mut moved: Vec<(BlockKey, DiskLoc, Result<MemCopy, ReadError>)> =
        Vec::with_capacity(items.len());
    for chunk in items.chunks(MOVE_READ_BATCH) {
        let reads = chunk.iter().map(|(key, loc, mem)| {
            let file = file.clone();
            async move {
                // A memory copy holds exactly the bytes stored on the SSD.
                let copy = match (mem, file) {
                    (Some(m), _) => Ok(m.clone()),
                    (None, Some(f)) => {
                        segment::read_entry(&f, loc.offset, key, loc.stored_len, loc.crc)
                            .await
                            .map(|(p, _)| MemCopy {
                                bytes: p,
                                codec: loc.codec,
                                raw_len: loc.raw_len,
                            })
                    }
                    (None, None) => Err(ReadError::Io),
                };
                (*key, *loc, copy)
            }
        });
        moved.extend(join_all(reads).await);
        if !shared.alive.get() {
            return;
        }
    }
    let mut queue: std::collections::VecDeque<_> = moved.into();
    let mut stalls = 0;
    while let Some((key, loc, copy)) = queue.pop_front() {
        let wait = {
            let mut st = shared.state.borrow_mut();
            move_one(&mut st, cfg, key, loc, copy, stalls < 3)
                .map(|c| queue.push_front((key, loc, Ok(c))))
        };
        if wait.is_some() {
            // Writes in flight are full: wait until the writer has caught up.
            stalls += 1;
            let (tx, rx) = local_channel::new_bounded(1);
            shared.state.borrow().send(Job::Barrier(tx));
            rx.recv().await;
            if !shared.alive.get() {
                return;
            }
        } else {
            stalls = 0;
        }
    }
    let file = {
        let mut st = shared.state.borrow_mut();
        st.enforce_memory(cfg);
        // Anything still pointing here (nothing should) is dropped with the segment.
        for slot in st.index.segment_slots(seq) {
            st.disk_detach(slot);
            st.index.remove_if_empty(slot);
            st.stats.reclaim.blocks_dropped += 1;
        }
        st.segments.get_mut(&seq).and_then(|s| s.file.take())
    };
    drop(file);
    if !shared.alive.get() {
        return;
    }
    let path = segment::segment_path(&cfg.dir, seq);
    let removed = glommio::io::remove(&path).await.map_err(io::Error::from);
    let mut st = shared.state.borrow_mut();
    // NotFound: the segment was dropped (e.g. a switch to whole files) during the move.
    if removed.is_err_and(|e| e.kind() != io::ErrorKind::NotFound) {
        st.stats.write_errors += 1;
    }
    st.segments.remove(&seq);
    st.moving = false;
    st.stats.reclaim.segments_moved += 1;
    // Moved blocks may have opened write buffers: memory is back within budget
    // before this task yields.
    st.enforce_memory(cfg);
    st.maybe_reclaim(cfg, false);
}

/// Rebuilds the SSD index from the segment files in `cfg.dir`.
async fn rebuild(
    cfg: &HybridConfig,
    st: &mut State,
    is_live: &dyn Fn(u64) -> bool,
) -> io::Result<()> {
    let index_path = cfg.dir.join(INDEX_FILE_NAME);
    if let Ok(bytes) = std::fs::read(&index_path) {
        // Gone before anything changes: after a crash the segments are scanned.
        remove_quietly(&index_path);
        match decode_index(&bytes) {
            Ok(index) => {
                if load_index(cfg, st, index, is_live).await? {
                    return Ok(());
                }
            }
            Err(_) => st.stats.corruptions += 1,
        }
    }
    let mut seqs: Vec<(u64, PathBuf)> = Vec::new();
    let rd = std::fs::read_dir(&cfg.dir).map_err(|e| segment::with_path("list", &cfg.dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| segment::with_path("list", &cfg.dir, e))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            seqs.push((seq, entry.path()));
        }
    }
    seqs.sort();
    // Newest segments first, so a shrunken SSD budget keeps the newest.
    let mut kept = Vec::new();
    for (seq, path) in seqs.into_iter().rev() {
        let found = match segment::scan_segment(&path).await {
            Ok(f) => f,
            Err(Unusable::Invalid) => {
                st.stats.corruptions += 1;
                remove_quietly(&path);
                continue;
            }
            Err(Unusable::Io(e)) => return Err(segment::with_path("scan segment", &path, e)),
        };
        let h = found.header;
        let fits = (kept.len() as u64) < cfg.segment_slots() && cfg.ssd_bytes > 0;
        if h.seq != seq
            || h.owner_id != cfg.owner_id
            || h.segment_bytes != cfg.segment_bytes
            || h.class as usize >= cfg.classes.len()
            || !fits
        {
            drop(found);
            remove_quietly(&path);
            continue;
        }
        kept.push(found);
    }
    kept.reverse();
    for found in kept {
        let seq = found.header.seq;
        st.next_seq = st.next_seq.max(seq + 1);
        st.stats.corruptions += found.scan.corrupt_entries;
        let written: u64 = found
            .scan
            .entries
            .iter()
            .map(|e| entry_span(e.header.stored_len))
            .sum();
        st.segments.insert(
            seq,
            Segment {
                class: found.header.class as usize,
                file: Some(found.file),
                written_bytes: written,
                live_bytes: 0,
                sealed: true,
                reclaiming: false,
                pending: Vec::new(),
            },
        );
        for e in found.scan.entries {
            let h = e.header;
            if !is_live(h.key.file_id) {
                st.stats.stale_entries_skipped += 1;
                continue;
            }
            let slot = match st.index.get(&h.key) {
                Some(s) => {
                    st.disk_detach(s); // an older copy: the newest wins
                    s
                }
                None => {
                    st.stats.rebuilt_entries += 1;
                    st.index.insert(h.key, h.kind, h.level)
                }
            };
            st.disk_attach(
                slot,
                DiskLoc {
                    seg: seq,
                    offset: e.offset,
                    stored_len: h.stored_len,
                    crc: h.payload_crc,
                    codec: h.codec,
                    raw_len: h.raw_len,
                },
            );
        }
    }
    debug_assert!(ENTRY_HEADER_BYTES < SEGMENT_HEADER_BYTES as usize);
    Ok(())
}

/// Rebuilds the index from the index file of the last clean close. False (with `st`
/// untouched) when the file does not describe the segments found, which are then
/// scanned instead.
async fn load_index(
    cfg: &HybridConfig,
    st: &mut State,
    index: IndexFile,
    is_live: &dyn Fn(u64) -> bool,
) -> io::Result<bool> {
    if index.owner_id != cfg.owner_id
        || index.segment_bytes != cfg.segment_bytes
        || cfg.ssd_bytes == 0
        || index.segments.len() as u64 > cfg.segment_slots()
    {
        return Ok(false);
    }
    let mut on_disk: Vec<u64> = Vec::new();
    let rd = std::fs::read_dir(&cfg.dir).map_err(|e| segment::with_path("list", &cfg.dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| segment::with_path("list", &cfg.dir, e))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            on_disk.push(seq);
        }
    }
    on_disk.sort_unstable();
    let mut listed: Vec<u64> = index.segments.iter().map(|s| s.seq).collect();
    listed.sort_unstable();
    if on_disk != listed {
        return Ok(false);
    }
    let mut opened = BTreeMap::new();
    for s in &index.segments {
        let path = segment::segment_path(&cfg.dir, s.seq);
        let ok = match segment::open_segment(&path).await {
            Ok((file, h)) => {
                let fits = h.seq == s.seq
                    && h.owner_id == cfg.owner_id
                    && h.segment_bytes == cfg.segment_bytes
                    && h.class == s.class
                    && (h.class as usize) < cfg.classes.len();
                if fits {
                    opened.insert(s.seq, (file, *s));
                }
                fits
            }
            Err(_) => false,
        };
        if !ok {
            return Ok(false);
        }
    }
    for (seq, (file, s)) in opened {
        st.next_seq = st.next_seq.max(seq + 1);
        st.segments.insert(
            seq,
            Segment {
                class: s.class as usize,
                file: Some(file),
                written_bytes: s.written_bytes,
                live_bytes: 0,
                sealed: true,
                reclaiming: false,
                pending: Vec::new(),
            },
        );
    }
    for e in index.entries {
        if !st.segments.contains_key(&e.seq) {
            st.stats.corruptions += 1;
            continue;
        }
        if !is_live(e.key.file_id) {
            st.stats.stale_entries_skipped += 1;
            continue;
        }
        let slot = match st.index.get(&e.key) {
            Some(s) => {
                st.disk_detach(s);
                s
            }
            None => {
                st.stats.rebuilt_entries += 1;
                st.index.insert(e.key, e.kind, e.level)
            }
        };
        st.disk_attach(
            slot,
            DiskLoc {
                seg: e.seq,
                offset: e.offset,
                stored_len: e.stored_len,
                crc: e.payload_crc,
                codec: e.codec,
                raw_len: e.raw_len,
            },
        );
    }
    st.stats.index_loaded = true;
    Ok(true)
}

/// Writes the index file (segments and entries, least recently used first) so the
/// next open need not scan the segments: to a temporary file, synced, then renamed.
fn write_index_file(cfg: &HybridConfig, st: &State) -> io::Result<()> {
    let segments: Vec<IndexSegment> = st
        .segments
        .iter()
        .filter(|(_, s)| s.file.is_some())
        .map(|(&seq, s)| IndexSegment {
            seq,
            written_bytes: s.written_bytes,
            class: s.class as u8,
        })
        .collect();
    let entries: Vec<IndexEntry> = st
        .index
        .cold_first(ListId::Disk(DiskList::Filter))
        .chain(st.index.cold_first(ListId::Disk(DiskList::Other)))
        .filter_map(|slot| {
            let n = st.index.node(slot);
            let d = n.disk?;
            segments
                .iter()
                .any(|s| s.seq == d.seg)
                .then_some(IndexEntry {
                    key: n.key,
                    seq: d.seg,
                    offset: d.offset,
                    stored_len: d.stored_len,
                    payload_crc: d.crc,
                    raw_len: d.raw_len,
                    kind: n.kind,
                    level: n.level,
                    codec: d.codec,
                })
        })
        .collect();
    let tmp = cfg.dir.join(format!("{INDEX_FILE_NAME}.tmp"));
    let path = cfg.dir.join(INDEX_FILE_NAME);
    let context = |e: io::Error| segment::with_path("write index", &tmp, e);
    let file = std::fs::File::create(&tmp).map_err(context)?;
    let mut w = std::io::BufWriter::new(file);
    write_index(
        &mut w,
        cfg.owner_id,
        cfg.segment_bytes,
        &segments,
        entries.len() as u64,
        entries.into_iter(),
    )
    .map_err(context)?;
    let file = w.into_inner().map_err(|e| context(e.into_error()))?;
    file.sync_all().map_err(context)?;
    std::fs::rename(&tmp, &path).map_err(context)?;
    std::fs::File::open(&cfg.dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| segment::with_path("sync", &cfg.dir, e))
}

fn remove_quietly(path: &std::path::Path) {
    // A cache file we will not use; if it cannot be removed the next open tries again.
    let _ = std::fs::remove_file(path);
}
