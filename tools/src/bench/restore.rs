//! `--restore_from`: opening the benchmark's database from a checkpoint, and
//! measuring how soon it serves.
//!
//! Two modes, timed from the same point (the start of the restore call):
//!
//! - **lazy** (Terrace's restore): `Db::restore` reads the checkpoint's metadata and
//!   opens; blocks come on demand and the warmer downloads files in the background.
//!   Reported: time to the first served read (one `get` of a key the fill wrote), the
//!   object-store GET bytes up to that moment (metadata included), and, from a
//!   [`WarmWatch`] polling the statistics, when the warmer is done.
//! - **download_first** (the baseline): restore the metadata with warming off, close,
//!   then download every object the checkpoint names (with several sources: every
//!   object of every source the rescaled database references, from the source's
//!   prefix; the open after it clips and trims as usual: download-then-clip, the
//!   RocksDB way) into the shard directories
//!   through the same store stack (same injected latency and retries) with the
//!   uploader's parallelism (`max_parallel_uploads` files at once, each in
//!   `part_bytes` ranged GETs with `max_parallel_parts` in flight), then open the
//!   database, now all local, and read. Its time to first read counts the download,
//!   the open and the read, not the metadata step (the lazy restore does that step
//!   too, so leaving it out only flatters the baseline).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_lite::future::block_on;
use terrace::{Db, LiveFile, Options, WarmOrder};
use terrace_tiering::store::uri::{open_uri, stack, StoreUri};
use terrace_tiering::store::{IoRuntime, IoRuntimeConfig, ObjectStore};

use super::report::size_text;
use super::timeline::{EventKind, Timeline};

/// How the restore is done (`--restore_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreMode {
    /// Serve at once from the store; warm in the background.
    Lazy,
    /// Baseline: download everything, then open.
    DownloadFirst,
}

/// What the restore did and how soon the database served.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The mode used.
    pub mode: RestoreMode,
    /// Checkpoint restored.
    pub checkpoint: u64,
    /// SSTs and snapshots the database reads.
    pub files: usize,
    /// Their bytes.
    pub state_bytes: u64,
    /// `Db::restore` until it returned (lazy: serving; baseline: metadata only).
    pub restore_duration: Duration,
    /// From the start to the first read's answer (baseline: from the download's start).
    pub first_read: Duration,
    /// Which probe key the first found read read (0: the first; reads of the
    /// keys before it were answered "not found"), or `None` if no probe key was
    /// found.
    pub first_read_found: Option<usize>,
    /// Object-store GET bytes until the first read (checkpoint metadata included).
    pub downloaded_before_first_read: u64,
    /// Baseline only: time and bytes of the download, and of the open after it.
    pub baseline: Option<(Duration, u64, Duration)>,
}

impl RestoreReport {
    /// The `restore` line.
    pub fn line(&self) -> String {
        let mode = match self.mode {
            RestoreMode::Lazy => "lazy",
            RestoreMode::DownloadFirst => "download_first",
        };
        let mut s = format!(
            "{:<12} : {:11.3} ms to first read ({}); {} downloaded before it; checkpoint {} ({} in {} files), {mode}",
            "restore",
            self.first_read.as_secs_f64() * 1e3,
            match self.first_read_found {
                Some(0) => "found".to_string(),
                Some(i) => format!("found at probe key {}, after {i} not found", i + 1),
                None => "not found".to_string(),
            },
            size_text(self.downloaded_before_first_read),
            self.checkpoint,
            size_text(self.state_bytes),
            self.files,
        );
        match self.baseline {
            None => s.push_str(&format!(
                ", restore call {:.3} ms",
                self.restore_duration.as_secs_f64() * 1e3
            )),
            Some((download, bytes, open)) => s.push_str(&format!(
                ": download {:.3} s ({}), open {:.3} ms; metadata restore before it {:.3} ms (not counted)",
                download.as_secs_f64(),
                size_text(bytes),
                open.as_secs_f64() * 1e3,
                self.restore_duration.as_secs_f64() * 1e3
            )),
        }
        s
    }
}

/// Restores `opts.path` from checkpoint `id` (or the newest) of `opts.object_store`
/// — or, with several `sources`, rescales them into it (`Db::restore_from`, every
/// source's checkpoint `id` or newest) — and reads `probe_keys` from table `table`
/// in order until one is found (a rescale into another key-group range spells
/// keys differently from its sources' fills, so the first may be absent).
pub fn restore(
    opts: Options,
    sources: &[String],
    id: Option<u64>,
    mode: RestoreMode,
    table: &str,
    probe_keys: &[Vec<u8>],
    timeline: Option<&Arc<Timeline>>,
) -> anyhow::Result<(Db, RestoreReport)> {
    let start = terrace_tiering::clock::now();
    if let Some(t) = timeline {
        t.event_at(start, EventKind::Restore);
    }
    let report = match mode {
        RestoreMode::Lazy => {
            let (db, info) = restore_metadata(opts, sources, id)?;
            let found = probe(&db, table, probe_keys)?;
            let first_read = start.elapsed();
            let stats = block_on(db.stats()).context("reading statistics")?;
            // A rescaled database reads its sources' objects under their prefixes.
            let gets = stats.object_store.map_or(0, |s| s.get.bytes)
                + stats
                    .job_prefixes
                    .iter()
                    .map(|(_, s)| s.get.bytes)
                    .sum::<u64>();
            let report = RestoreReport {
                mode,
                checkpoint: info.checkpoint,
                files: info.files,
                state_bytes: info.state_bytes,
                restore_duration: info.duration,
                first_read,
                first_read_found: found,
                downloaded_before_first_read: gets + info.metadata_bytes,
                baseline: None,
            };
            (db, report)
        }
        RestoreMode::DownloadFirst => {
            let mut cold = opts.clone();
            cold.warm_order = WarmOrder::Off;
            let (db, info) = restore_metadata(cold, sources, id)?;
            let files = block_on(db.live_files()).context("listing the restored files")?;
            block_on(db.close()).context("closing after the metadata restore")?;
            let download_start = terrace_tiering::clock::now();
            let bytes = download_all(&opts, &files).context("downloading the checkpoint")?;
            let downloaded = download_start.elapsed();
            let open_start = terrace_tiering::clock::now();
            let db = block_on(Db::open(opts)).context("opening the downloaded database")?;
            let opened = open_start.elapsed();
            let found = probe(&db, table, probe_keys)?;
            let report = RestoreReport {
                mode,
                checkpoint: info.checkpoint,
                files: info.files,
                state_bytes: info.state_bytes,
                restore_duration: info.duration,
                first_read: download_start.elapsed(),
                first_read_found: found,
                downloaded_before_first_read: bytes + info.metadata_bytes,
                baseline: Some((downloaded, bytes, opened)),
            };
            (db, report)
        }
    };
    if let Some(t) = timeline {
        t.event(EventKind::FirstRead);
    }
    Ok(report)
}

/// `Db::restore` of checkpoint `id` (or the newest) of `opts.object_store`, or with
/// several `sources` (or one that is not `opts.object_store`), `Db::restore_from`
/// of each one's checkpoint `id` or newest.
fn restore_metadata(
    opts: Options,
    sources: &[String],
    id: Option<u64>,
) -> anyhow::Result<(Db, terrace::RestoreInfo)> {
    let own_prefix = |uri: &String| match &opts.object_store {
        terrace::ObjectStoreSpec::Uri(own) => own == uri,
        _ => false,
    };
    if sources.len() > 1 || sources.first().is_some_and(|s| !own_prefix(s)) {
        let sources: Vec<terrace::RestoreSource> = sources
            .iter()
            .map(|uri| terrace::RestoreSource {
                uri: uri.clone(),
                checkpoint: id,
            })
            .collect();
        block_on(Db::restore_from(opts, &sources)).context("rescaling")
    } else {
        block_on(Db::restore(opts, id)).context("restoring")
    }
}

/// The store of a file's `home` (empty: the database's own store `own`; else the
/// job prefix `home` next to it, as `LiveFile::home` names it).
fn home_uri(own: &StoreUri, home: &str) -> anyhow::Result<StoreUri> {
    if home.is_empty() {
        return Ok(own.clone());
    }
    Ok(match own {
        StoreUri::Local(path) => {
            let root = path
                .parent()
                .with_context(|| format!("{} has no parent prefix", path.display()))?;
            StoreUri::Local(root.join(home))
        }
        StoreUri::S3 { bucket, prefix } => StoreUri::S3 {
            bucket: bucket.clone(),
            prefix: match prefix.rsplit_once('/') {
                Some((root, _)) => format!("{root}/{home}"),
                None => home.to_owned(),
            },
        },
    })
}

/// Reads `keys` in order until one is found; returns its index.
fn probe(db: &Db, table: &str, keys: &[Vec<u8>]) -> anyhow::Result<Option<usize>> {
    let t = db
        .table(table)
        .with_context(|| format!("opening table {table:?}"))?;
    for (i, key) in keys.iter().enumerate() {
        if block_on(db.get(t, key))
            .context("the first read")?
            .is_some()
        {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Downloads the objects of `files` into their shard directories under
/// `opts.path`, as the uploader would upload them; returns the bytes.
fn download_all(opts: &Options, files: &[LiveFile]) -> anyhow::Result<u64> {
    let terrace::ObjectStoreSpec::Uri(uri) = &opts.object_store else {
        bail!("the download-first baseline needs a store URI");
    };
    let uri = StoreUri::parse(uri).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The engine's own I/O runtime settings, so requests are bounded alike.
    let runtime = IoRuntime::start(&IoRuntimeConfig {
        threads: opts.io_threads,
        max_in_flight: opts.max_remote_requests,
    })
    .context("starting the I/O runtime")?;
    let retry = opts.object_store_retry.clone();
    let faults = opts.object_store_faults.clone();
    let files_at_once = opts.uploader.max_parallel_uploads.max(1);
    let parts_at_once = opts.uploader.max_parallel_parts.max(1);
    let part_bytes = opts.uploader.part_bytes.max(1);
    // Every store the files live in (a rescaled database reads its sources'
    // prefixes), by the index the jobs below name.
    let mut homes: Vec<(String, StoreUri)> = Vec::new();
    let mut jobs: Vec<(usize, String, PathBuf, u64)> = Vec::with_capacity(files.len());
    for f in files {
        let store = match homes.iter().position(|(h, _)| *h == f.home) {
            Some(i) => i,
            None => {
                homes.push((f.home.clone(), home_uri(&uri, &f.home)?));
                homes.len() - 1
            }
        };
        // The engine's layout (`<db>/shard-NNNN/<id:016x>.sst`): the open that
        // follows finds the files local.
        let dir = opts.path.join(format!("shard-{:04}", f.shard));
        jobs.push((
            store,
            f.object_key.clone(),
            dir.join(format!("{:016x}.sst", f.id)),
            f.size_bytes,
        ));
    }
    let total: u64 = jobs.iter().map(|j| j.3).sum();
    let handle = runtime.handle();
    let task = handle.spawn(async move {
        let mut stores = Vec::with_capacity(homes.len());
        for (_, uri) in &homes {
            let base = open_uri(uri, false).await.map_err(|e| e.to_string())?;
            stores.push(stack(base, faults.clone(), retry.clone()).store());
        }
        let files = Arc::new(tokio::sync::Semaphore::new(files_at_once));
        let mut tasks = Vec::new();
        for (store, key, path, size) in jobs {
            let permit = files
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| e.to_string())?;
            let store = stores[store].clone();
            tasks.push(tokio::spawn(async move {
                let r = download_one(store, key, path, size, part_bytes, parts_at_once).await;
                drop(permit);
                r
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok::<(), String>(())
    });
    block_on(task)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    runtime.shutdown_now();
    Ok(total)
}

async fn download_one(
    store: Arc<dyn ObjectStore>,
    key: String,
    path: PathBuf,
    size: u64,
    part_bytes: u64,
    parts_at_once: usize,
) -> Result<(), String> {
    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.set_len(size)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let file = Arc::new(file);
    let parts = Arc::new(tokio::sync::Semaphore::new(parts_at_once));
    let mut tasks = Vec::new();
    let mut at = 0u64;
    while at < size {
        let end = (at + part_bytes).min(size);
        let permit = parts
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (store, key, file) = (store.clone(), key.clone(), file.clone());
        tasks.push(tokio::spawn(async move {
            let bytes = store
                .get_range(&key, at..end)
                .await
                .map_err(|e| e.to_string())?;
            if bytes.len() as u64 != end - at {
                return Err(format!(
                    "ranged GET of {key} at {at} returned {} bytes",
                    bytes.len()
                ));
            }
            tokio::task::spawn_blocking(move || file.write_all_at(&bytes, at))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("writing {key}: {e}"))?;
            drop(permit);
            Ok::<(), String>(())
        }));
        at = end;
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// When the warmer finished, as the [`WarmWatch`] saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmDone {
    /// From the restore's start.
    pub after: Duration,
    /// Files and bytes the warmer downloaded.
    pub files: u64,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Files still only in the store (the warmer stopped at the disk budget or the
    /// hybrid cache keeps blocks instead).
    pub remote_only_files: u64,
}

/// How often the watch reads the statistics.
const WARM_POLL: Duration = Duration::from_millis(20);
/// A warmer with an empty queue and files still remote is done once nothing has
/// changed for this long (it stopped at the budget); its end is the last change.
const WARM_SETTLE: Duration = Duration::from_secs(1);

/// Polls until the warmer of `db` is done: its queue is empty and every file is
/// local, or its queue is empty and nothing changed for [`WARM_SETTLE`]. Returns
/// `None` when `stop` fires or the database closes first.
pub fn wait_for_warmer(
    db: &Db,
    since: Instant,
    stop: Option<&flume::Receiver<()>>,
) -> Option<WarmDone> {
    let mut last: Option<(u64, u64, u64)> = None;
    let mut changed_at = terrace_tiering::clock::now();
    loop {
        let tier = block_on(db.stats()).ok()?.tier();
        let now = terrace_tiering::clock::now();
        let state = (tier.warm_queue, tier.warmed_files, tier.remote_only_files);
        if last != Some(state) {
            last = Some(state);
            changed_at = now;
        }
        let done = WarmDone {
            after: changed_at.saturating_duration_since(since),
            files: tier.warmed_files,
            bytes: tier.warmed_bytes,
            remote_only_files: tier.remote_only_files,
        };
        if tier.warm_queue == 0
            && (tier.remote_only_files == 0
                || now.saturating_duration_since(changed_at) >= WARM_SETTLE)
        {
            return Some(done);
        }
        match stop {
            Some(rx) => match rx.recv_timeout(WARM_POLL) {
                Err(flume::RecvTimeoutError::Timeout) => {}
                _ => return None,
            },
            None => std::thread::sleep(WARM_POLL),
        }
    }
}

/// A thread watching a restored database's warmer.
pub struct WarmWatch {
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    done: Arc<Mutex<Option<WarmDone>>>,
    since: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WarmWatch {
    /// Starts watching `db`, timing from `since` (the restore's start).
    pub fn start(db: &Db, since: Instant, timeline: Option<Arc<Timeline>>) -> WarmWatch {
        let (stop, stopped) = flume::bounded::<()>(1);
        let done = Arc::new(Mutex::new(None));
        let (db, done_in) = (db.clone(), done.clone());
        let thread = std::thread::Builder::new()
            .name("bench-warm-watch".into())
            .spawn(move || {
                if let Some(d) = wait_for_warmer(&db, since, Some(&stopped)) {
                    if let Some(t) = &timeline {
                        t.event_at(since + d.after, EventKind::WarmerDone);
                    }
                    *lock(&done_in) = Some(d);
                }
            })
            .ok();
        WarmWatch {
            stop: Some(stop),
            thread,
            done,
            since,
        }
    }

    /// The warmer's end, once seen.
    pub fn done(&self) -> Option<WarmDone> {
        *lock(&self.done)
    }

    /// Time since the restore started.
    pub fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }
}

impl Drop for WarmWatch {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `warmer:` line.
pub fn warm_line(done: &WarmDone) -> String {
    let mut s = format!(
        "  warmer: done {:.3} s after the restore began: {} files, {} downloaded",
        done.after.as_secs_f64(),
        done.files,
        size_text(done.bytes)
    );
    if done.remote_only_files > 0 {
        s.push_str(&format!(
            "; {} files left in the store (disk budget or hybrid cache)",
            done.remote_only_files
        ));
    }
    s
}

/// When a rescaled database had trimmed every clipped file reference, as the
/// [`TrimWatch`] saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrimsDone {
    /// From the restore's start to the first look that found none left.
    pub after: Duration,
    /// Clipped references at the watch's first look (right after the restore).
    pub clipped_at_start: usize,
}

/// How often the [`TrimWatch`] reads the statistics.
const TRIM_POLL: Duration = Duration::from_millis(50);

/// A thread polling `DbStats::clipped_files` from right after a restore until it
/// is 0: compaction has trimmed every key a rescale left outside its shard's
/// range.
pub struct TrimWatch {
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    done: Arc<Mutex<Option<TrimsDone>>>,
}

impl TrimWatch {
    /// Starts watching `db`, timing from `since` (the restore's start).
    pub fn start(db: &Db, since: Instant) -> TrimWatch {
        let (stop, stopped) = flume::bounded::<()>(1);
        let done = Arc::new(Mutex::new(None));
        let (db, done_in) = (db.clone(), done.clone());
        let thread = std::thread::Builder::new()
            .name("bench-trim-watch".into())
            .spawn(move || {
                let mut at_start = None;
                loop {
                    let Ok(stats) = block_on(db.stats()) else {
                        return;
                    };
                    let clipped = stats.clipped_files();
                    let first = *at_start.get_or_insert(clipped);
                    if clipped == 0 {
                        *lock(&done_in) = Some(TrimsDone {
                            after: since.elapsed(),
                            clipped_at_start: first,
                        });
                        return;
                    }
                    match stopped.recv_timeout(TRIM_POLL) {
                        Err(flume::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .ok();
        TrimWatch {
            stop: Some(stop),
            thread,
            done,
        }
    }

    /// The end of the trims, once seen.
    pub fn done(&self) -> Option<TrimsDone> {
        *lock(&self.done)
    }

    /// Waits up to `max` for the end of the trims.
    pub fn wait(&self, max: Duration) -> Option<TrimsDone> {
        let start = terrace_tiering::clock::now();
        loop {
            if let Some(d) = self.done() {
                return Some(d);
            }
            if start.elapsed() > max || self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return self.done();
            }
            std::thread::sleep(TRIM_POLL);
        }
    }
}

impl Drop for TrimWatch {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `trims:` line.
pub fn trims_line(done: &TrimsDone) -> String {
    if done.clipped_at_start == 0 {
        return format!(
            "  trims: none to do (no clipped file reference {:.3} s after the restore began)",
            done.after.as_secs_f64()
        );
    }
    format!(
        "  trims: done {:.3} s after the restore began; {} clipped file references at the first look",
        done.after.as_secs_f64(),
        done.clipped_at_start
    )
}
