//! The one-line engine summary printed after each benchmark.
//!
//! Levels are the database's shape now; flush, compaction, stall and block-cache
//! counters are the change since the previous summary, so each line tells what that
//! benchmark cost the engine:
//!
//! ```text
//! L0 2f/7.9MiB L1 4f/30.1MiB | flushes 3 (11.8MiB) compactions 1+0 moves (r 23.6MiB w 22.0MiB) | stalls 0 (0.000s) | cache 1200 hits 345 misses
//! ```

use std::fmt::Write as _;

use terrace::stats::{BlockKind, DiskMode, KindCounters};
use terrace::{BlockCacheStats, DbStats};

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

/// Summarizes `now`; counters are relative to `before` (zero if `None`).
pub fn one_line(before: Option<&DbStats>, now: &DbStats) -> String {
    let mut s = String::new();
    for (level, l) in now.levels().iter().enumerate() {
        if l.files > 0 {
            let _ = write!(s, "L{level} {}f/{:.1}MiB ", l.files, mib(l.bytes));
        }
    }
    if s.is_empty() {
        s.push_str("no SSTs ");
    }
    let t = now.total();
    let b = before.map(DbStats::total).unwrap_or_default();
    let cache = |stats: &DbStats| {
        stats.shards.iter().fold((0u64, 0u64), |(h, m), s| {
            (h + s.cache.hits, m + s.cache.misses)
        })
    };
    let (hits, misses) = cache(now);
    let (hits0, misses0) = before.map(cache).unwrap_or((0, 0));
    let _ = write!(
        s,
        "| flushes {} ({:.1}MiB) compactions {}+{} moves (r {:.1}MiB w {:.1}MiB) | stalls {} ({:.3}s) | cache {} hits {} misses",
        t.flushes.saturating_sub(b.flushes),
        mib(t.flush_bytes.saturating_sub(b.flush_bytes)),
        t.compactions.saturating_sub(b.compactions),
        t.trivial_moves.saturating_sub(b.trivial_moves),
        mib(t.compaction_read_bytes.saturating_sub(b.compaction_read_bytes)),
        mib(t.compaction_write_bytes.saturating_sub(b.compaction_write_bytes)),
        t.stalls.saturating_sub(b.stalls),
        t.stall_micros.saturating_sub(b.stall_micros) as f64 / 1e6,
        hits.saturating_sub(hits0),
        misses.saturating_sub(misses0),
    );
    for shard in &now.shards {
        if let Some(p) = &shard.poisoned {
            let _ = write!(s, " | shard {} STOPPED: {p}", shard.shard);
        }
    }
    s
}

/// Object-store traffic and tiering since `before`, or `None` without a store:
///
/// ```text
/// files 12 local 30 remote | uploads 8 (31.9MiB) queue 0 (0.0MiB) p99 41ms | GET 5120 (20.0MiB, 1203 coalesced) PUT 8 | retries 0
/// ```
pub fn remote_line(before: Option<&DbStats>, now: &DbStats) -> Option<String> {
    let store = now.object_store.as_ref()?;
    let up = now.uploads.clone().unwrap_or_default();
    let tier = now.tier();
    let t = now.total();
    let b = before.map(DbStats::total).unwrap_or_default();
    let bt = before.map(DbStats::tier).unwrap_or_default();
    let bs = before
        .and_then(|b| b.object_store.clone())
        .unwrap_or_default();
    let puts = store.put.count + store.put_part.count;
    let puts0 = bs.put.count + bs.put_part.count;
    let mut s = String::new();
    let _ = write!(
        s,
        "files {} local {} remote | uploads {} ({:.1}MiB) queue {} ({:.1}MiB) p99 {:.0}ms | GET {} ({:.1}MiB, {} coalesced) PUT {} | retries {} drops {}",
        tier.local_files,
        tier.remote_only_files,
        t.uploads.saturating_sub(b.uploads),
        mib(t.upload_bytes.saturating_sub(b.upload_bytes)),
        tier.pending_uploads,
        mib(tier.pending_upload_bytes),
        up.latency_p99_ms,
        tier.remote_reads.requests.saturating_sub(bt.remote_reads.requests),
        mib(tier.remote_reads.bytes.saturating_sub(bt.remote_reads.bytes)),
        tier.remote_reads.coalesced.saturating_sub(bt.remote_reads.coalesced),
        puts.saturating_sub(puts0),
        now.store_retries
            .saturating_sub(before.map_or(0, |b| b.store_retries)),
        t.local_drops.saturating_sub(b.local_drops),
    );
    Some(s)
}

fn kind_delta(now: &KindCounters, before: &KindCounters) -> KindCounters {
    KindCounters {
        hits: now.hits.saturating_sub(before.hits),
        misses: now.misses.saturating_sub(before.misses),
        hit_bytes: now.hit_bytes.saturating_sub(before.hit_bytes),
        admissions: now.admissions.saturating_sub(before.admissions),
        admitted_bytes: now.admitted_bytes.saturating_sub(before.admitted_bytes),
        evictions: now.evictions.saturating_sub(before.evictions),
        resident_blocks: now.resident_blocks,
        resident_bytes: now.resident_bytes,
    }
}

/// Block lookups since `before`, as fractions: served by memory, by the SSD tier,
/// joined a read or load already in flight, and loaded from the file (local copy or
/// object store); and the number of lookups. `None` without a hybrid cache.
pub fn cache_ratios(before: Option<&DbStats>, now: &DbStats) -> Option<(f64, f64, f64, f64, u64)> {
    let c = now.block_cache()?;
    let b = before.and_then(DbStats::block_cache);
    let m = c.totals.memory.total();
    let s = c.totals.ssd.total();
    let (m0, s0, loads0) = b.map_or((KindCounters::default(), KindCounters::default(), 0), |b| {
        (
            b.totals.memory.total(),
            b.totals.ssd.total(),
            b.totals.loads,
        )
    });
    let lookups = (m.hits + m.misses).saturating_sub(m0.hits + m0.misses);
    let mem = m.hits.saturating_sub(m0.hits);
    let ssd = s.hits.saturating_sub(s0.hits);
    let loads = c.totals.loads.saturating_sub(loads0).min(lookups);
    if lookups == 0 {
        return Some((0.0, 0.0, 0.0, 0.0, 0));
    }
    let l = lookups as f64;
    let joined = lookups.saturating_sub(mem + ssd + loads);
    Some((
        mem as f64 / l,
        ssd as f64 / l,
        joined as f64 / l,
        loads as f64 / l,
        lookups,
    ))
}

/// The block cache since `before`, or `None` without a hybrid cache: mode, hit ratios
/// per tier, per tier and block kind hits / misses / admissions / evictions, and
/// segment reclaim work.
///
/// ```text
/// mode hybrid (0 switches) | 81920 lookups: memory 41.2% ssd 38.0% joined 0.4% loaded 20.4% | memory 7.9/8.0MiB data h 33751 m 48169 adm 48169 ev 47000 | ssd 98.1/128.0MiB data h 31130 m 17039 adm 45000 ev 40000 | segments 8 writes 120 (119.8MiB) reclaim moved 3 (2.1MiB) dropped 0 | corrupt 0
/// ```
pub fn cache_line(before: Option<&DbStats>, now: &DbStats) -> Option<String> {
    let c: BlockCacheStats = now.block_cache()?;
    let b = before.and_then(DbStats::block_cache);
    let t = &c.totals;
    let mode = match c.mode() {
        Some(DiskMode::WholeFile) => "whole-file".to_string(),
        Some(DiskMode::Hybrid) => "hybrid".to_string(),
        None => format!("{}wf/{}hy", c.whole_file_shards, c.hybrid_shards),
    };
    let (mem, ssd, joined, loaded, lookups) = cache_ratios(before, now).unwrap_or_default();
    let mut s = format!(
        "mode {mode} ({} switches) | {lookups} lookups: memory {:.1}% ssd {:.1}% joined {:.1}% loaded {:.1}%",
        t.mode_switches,
        mem * 100.0,
        ssd * 100.0,
        joined * 100.0,
        loaded * 100.0,
    );
    let tiers = [
        (
            "memory",
            t.memory,
            b.map(|b| b.totals.memory),
            t.memory_used_bytes,
            t.memory_capacity_bytes,
        ),
        (
            "ssd",
            t.ssd,
            b.map(|b| b.totals.ssd),
            t.ssd_used_bytes,
            t.ssd_capacity_bytes,
        ),
    ];
    for (name, now_tier, before_tier, used, cap) in tiers {
        let _ = write!(s, " | {name} {:.1}/{:.1}MiB", mib(used), mib(cap));
        for (kind, label) in [
            (BlockKind::Data, "data"),
            (BlockKind::Index, "index"),
            (BlockKind::Filter, "filter"),
        ] {
            let k0 = before_tier.map(|bt| *bt.kind(kind)).unwrap_or_default();
            let d = kind_delta(now_tier.kind(kind), &k0);
            if d.hits + d.misses + d.admissions + d.evictions == 0 {
                continue;
            }
            let _ = write!(
                s,
                " {label} h {} m {} adm {} ev {}",
                d.hits, d.misses, d.admissions, d.evictions
            );
        }
    }
    let r0 = b.map(|b| b.totals.reclaim).unwrap_or_default();
    let r = &t.reclaim;
    let sw0 = b.map_or(0, |b| b.totals.segment_writes);
    let swb0 = b.map_or(0, |b| b.totals.segment_write_bytes);
    let _ = write!(
        s,
        " | segments {} writes {} ({:.1}MiB) reclaim moved {} ({:.1}MiB) dropped {} | demotions dropped {} corrupt {}",
        t.segments,
        t.segment_writes.saturating_sub(sw0),
        mib(t.segment_write_bytes.saturating_sub(swb0)),
        r.segments_moved.saturating_sub(r0.segments_moved),
        mib(r.bytes_moved.saturating_sub(r0.bytes_moved)),
        r.segments_dropped.saturating_sub(r0.segments_dropped),
        t.demotions_dropped
            .saturating_sub(b.map_or(0, |b| b.totals.demotions_dropped)),
        t.corruptions.saturating_sub(b.map_or(0, |b| b.totals.corruptions)),
    );
    Some(s)
}
