//! Checkpoints during a benchmark run: the `checkpoint` pseudo-benchmark and
//! `--checkpoint_every_secs`.
//!
//! [`Checkpoints`] owns the id sequence and the log of checkpoints taken. Ids are
//! handed out under a lock held for the whole `Db::checkpoint` call, so the engine
//! sees them strictly increasing even when the background [`Checkpointer`] and the
//! `checkpoint` benchmark take one at the same moment. The checkpointer is one OS
//! thread that takes a checkpoint every interval (counted from the previous start;
//! a checkpoint that overruns it is followed at once by the next) until stopped; a
//! failed checkpoint stops it and the run reports the error after the benchmark.
//!
//! Lines, in db_bench's style:
//!
//! ```text
//! checkpoint   :     412.345 ms/op; 1 checkpoints; 68.2 MB uploaded (64.1 MB memtables, 4.1 MB SSTs); state 1.02 GB in 30 files; 2 merges bypassed
//! checkpoints  : 6 taken, P50 310.2 ms P99 402.1 ms, 65.3 MB uploaded per checkpoint
//! ```

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_lite::future::block_on;
use serde::Serialize;
use terrace::{CheckpointInfo, Db};

use super::report::size_text;
use super::timeline::{EventKind, Timeline};

/// One checkpoint taken during the run.
#[derive(Clone, Debug)]
pub struct Taken {
    /// When the call began.
    pub started: Instant,
    /// Whether the background checkpointer took it (not the `checkpoint` benchmark).
    pub background: bool,
    /// What the engine reported.
    pub info: CheckpointInfo,
}

/// Ids and the log of checkpoints of one run.
pub struct Checkpoints {
    db: Db,
    next_id: Mutex<u64>,
    taken: Mutex<Vec<Taken>>,
    timeline: Option<Arc<Timeline>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Checkpoints {
    /// Ids continue after the newest checkpoint of `db` in its store (at least
    /// `after`, e.g. the checkpoint a restored database came from).
    pub fn new(db: &Db, after: u64, timeline: Option<Arc<Timeline>>) -> anyhow::Result<Self> {
        let newest = block_on(db.checkpoints())
            .context("listing the database's checkpoints")?
            .iter()
            .map(|c| c.id)
            .max()
            .unwrap_or(0);
        Ok(Checkpoints {
            db: db.clone(),
            next_id: Mutex::new(newest.max(after) + 1),
            taken: Mutex::new(Vec::new()),
            timeline,
        })
    }

    /// Takes the next checkpoint.
    pub fn take(&self, background: bool) -> anyhow::Result<Taken> {
        let mut next = lock(&self.next_id);
        let id = *next;
        let started = terrace_tiering::clock::now();
        if let Some(t) = &self.timeline {
            t.event_at(started, EventKind::Checkpoint(id));
        }
        let info = block_on(self.db.checkpoint(id)).with_context(|| format!("checkpoint {id}"))?;
        *next = id + 1;
        drop(next);
        let taken = Taken {
            started,
            background,
            info,
        };
        lock(&self.taken).push(taken.clone());
        Ok(taken)
    }

    /// Checkpoints taken so far, in order.
    pub fn taken(&self) -> Vec<Taken> {
        lock(&self.taken).clone()
    }
}

/// The background thread of `--checkpoint_every_secs`.
pub struct Checkpointer {
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl Checkpointer {
    /// Starts taking a checkpoint of `checkpoints` every `every`, the first one
    /// `every` from now.
    pub fn start(checkpoints: Arc<Checkpoints>, every: Duration) -> anyhow::Result<Checkpointer> {
        let (stop, stopped) = flume::bounded::<()>(1);
        let failed = Arc::new(Mutex::new(None));
        let failed_in = failed.clone();
        let thread = std::thread::Builder::new()
            .name("bench-checkpointer".into())
            .spawn(move || {
                let mut due = terrace_tiering::clock::now() + every;
                loop {
                    // Anything but a timeout (a message, or the sender dropped) stops.
                    match stopped.recv_deadline(due) {
                        Err(flume::RecvTimeoutError::Timeout) => {}
                        _ => return Ok(()),
                    }
                    let started = terrace_tiering::clock::now();
                    if let Err(e) = checkpoints.take(true) {
                        *lock(&failed_in) = Some(format!("{e:#}"));
                        return Err(e);
                    }
                    due = (started + every).max(terrace_tiering::clock::now());
                }
            })
            .context("starting the checkpointer thread")?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
            failed,
        })
    }

    /// The error that stopped the checkpointer, if one did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }

    /// Stops the thread (a checkpoint in progress completes first).
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop.take();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(p)) => std::panic::resume_unwind(p),
            None => Ok(()),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checkpoint figures of one benchmark, for the report and the JSON summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CheckpointStats {
    /// Checkpoints counted.
    pub count: u64,
    /// Median duration.
    pub duration_ms_p50: f64,
    /// 99th percentile duration (nearest rank).
    pub duration_ms_p99: f64,
    /// Bytes uploaded per checkpoint (memtable snapshots + SSTs), on average.
    pub uploaded_bytes_per_checkpoint: u64,
    /// Of which memtable snapshots.
    pub memtable_bytes_per_checkpoint: u64,
    /// Bytes the newest checkpoint names (the state's size).
    pub state_bytes: u64,
}

impl CheckpointStats {
    /// Figures of `taken`.
    pub fn of(taken: &[Taken]) -> CheckpointStats {
        if taken.is_empty() {
            return CheckpointStats::default();
        }
        let mut ms: Vec<f64> = taken
            .iter()
            .map(|t| t.info.duration.as_secs_f64() * 1e3)
            .collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        let n = taken.len() as u64;
        let uploaded: u64 = taken.iter().map(|t| t.info.uploaded_bytes()).sum();
        let memtables: u64 = taken.iter().map(|t| t.info.memtable_bytes).sum();
        CheckpointStats {
            count: n,
            duration_ms_p50: rank(0.50),
            duration_ms_p99: rank(0.99),
            uploaded_bytes_per_checkpoint: uploaded / n,
            memtable_bytes_per_checkpoint: memtables / n,
            state_bytes: taken.last().map_or(0, |t| t.info.state_bytes),
        }
    }

    /// The per-benchmark line of `--checkpoint_every_secs`.
    pub fn line(&self) -> String {
        if self.count == 0 {
            return format!("{:<12} : 0 taken", "checkpoints");
        }
        format!(
            "{:<12} : {} taken, P50 {:.1} ms P99 {:.1} ms, {} uploaded per checkpoint",
            "checkpoints",
            self.count,
            self.duration_ms_p50,
            self.duration_ms_p99,
            size_text(self.uploaded_bytes_per_checkpoint)
        )
    }
}

/// The result line of the `checkpoint` benchmark, then where its time went (the
/// slowest shard's phases; the snapshot runs beside the wait for other files).
pub fn checkpoint_line(info: &CheckpointInfo) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = &info.phases;
    format!(
        "{:<12} : {:11.3} ms/op; 1 checkpoints; {} uploaded ({} memtables, {} SSTs); state {} in {} files; {} merges bypassed; \
         snapshot write {:.1} ms + upload {:.1} ms, files awaited {:.1} ms, shard object {:.1} ms, commit {:.1} ms, release {:.1} ms",
        "checkpoint",
        ms(info.duration),
        size_text(info.uploaded_bytes()),
        size_text(info.memtable_bytes),
        size_text(info.sst_uploaded_bytes),
        size_text(info.state_bytes),
        info.files,
        info.merges_bypassed,
        ms(p.snapshot_write),
        ms(p.snapshot_upload),
        ms(p.files_awaited),
        ms(p.shard_object),
        ms(p.commit),
        ms(p.release),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(ms: u64, memtables: u64, ssts: u64) -> Taken {
        Taken {
            started: terrace_tiering::clock::now(),
            background: true,
            info: CheckpointInfo {
                id: 1,
                duration: Duration::from_millis(ms),
                memtable_bytes: memtables,
                sst_uploaded_bytes: ssts,
                state_bytes: 1 << 30,
                files: 3,
                merges_bypassed: 0,
                released: Vec::new(),
                phases: terrace::CheckpointPhases {
                    snapshot_write: Duration::from_millis(150),
                    snapshot_upload: Duration::from_millis(95),
                    files_awaited: Duration::from_millis(310),
                    shard_object: Duration::from_millis(31),
                    commit: Duration::from_millis(30),
                    release: Duration::from_millis(62),
                },
            },
        }
    }

    #[test]
    fn lines_read_like_the_issue_says() {
        let all: Vec<Taken> = [300, 310, 320, 330, 340, 402]
            .iter()
            .map(|&ms| taken(ms, 64 << 20, 1 << 20))
            .collect();
        let s = CheckpointStats::of(&all);
        assert_eq!(
            s.line(),
            "checkpoints  : 6 taken, P50 320.0 ms P99 402.0 ms, 65.0 MB uploaded per checkpoint"
        );
        assert_eq!(CheckpointStats::of(&[]).line(), "checkpoints  : 0 taken");
        let one = checkpoint_line(&taken(412, 64 << 20, 4 << 20).info);
        assert_eq!(
            one,
            "checkpoint   :     412.000 ms/op; 1 checkpoints; 68.0 MB uploaded (64.0 MB memtables, 4.0 MB SSTs); state 1.00 GB in 3 files; 0 merges bypassed; \
             snapshot write 150.0 ms + upload 95.0 ms, files awaited 310.0 ms, shard object 31.0 ms, commit 30.0 ms, release 62.0 ms"
        );
    }
}
