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

use terrace::DbStats;

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
