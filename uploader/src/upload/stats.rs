//! Upload accounting: what is queued, running, done, and how long it took.
//!
//! Every job holds a [`JobTicket`] from `upload()` until it ends. The ticket adds the
//! job to the counters when it is made and takes it out when it is finished *or
//! dropped*, so a job whose task the runtime drops (shutdown) still leaves
//! `pending_bytes` exact. All counters sit behind one mutex (uploads are per file,
//! so it is taken a few times per file) and a snapshot is always consistent.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;

/// A snapshot of the uploader's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UploadStats {
    /// Files waiting for an upload slot.
    pub queued_files: u64,
    /// Files uploading now.
    pub in_progress_files: u64,
    /// Bytes of queued and uploading files.
    pub pending_bytes: u64,
    /// Files uploaded (and verified, if configured).
    pub completed_files: u64,
    /// Bytes of the completed files.
    pub completed_bytes: u64,
    /// Uploads that ended with an error other than cancellation.
    pub failed: u64,
    /// Uploads cancelled: the uploader closed or the runtime stopped.
    pub cancelled: u64,
    /// Median time from `upload()` to completion (queue wait included), successful
    /// uploads only.
    pub latency_p50_ms: f64,
    /// 99th percentile of the same.
    pub latency_p99_ms: f64,
    /// Slowest successful upload.
    pub latency_max_ms: f64,
}

impl UploadStats {
    /// One line for logs and the stress tool.
    pub fn summary_line(&self) -> String {
        format!(
            "uploads: {} queued, {} running, {:.1} MiB pending; {} done ({:.1} MiB), \
             {} failed, {} cancelled; latency ms p50 {:.1} p99 {:.1} max {:.1}",
            self.queued_files,
            self.in_progress_files,
            mib(self.pending_bytes),
            self.completed_files,
            mib(self.completed_bytes),
            self.failed,
            self.cancelled,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
        )
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// How a job ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Failed,
    Cancelled,
}

/// The shared counters.
#[derive(Debug)]
pub(crate) struct Counters {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    stats: UploadStats,
    /// Microseconds from `upload()` to completion, successful uploads.
    latency_us: Histogram<u64>,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        // Auto-resizing histogram; 3 significant figures is always a valid precision.
        let latency_us = Histogram::new(3).unwrap_or_else(|_| unreachable!("sigfig 3 is valid"));
        Counters {
            state: Mutex::new(State {
                stats: UploadStats::default(),
                latency_us,
            }),
        }
    }

    /// A consistent snapshot.
    pub(crate) fn snapshot(&self) -> UploadStats {
        let state = self.lock();
        let h = &state.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        UploadStats {
            latency_p50_ms: ms(h.value_at_quantile(0.5)),
            latency_p99_ms: ms(h.value_at_quantile(0.99)),
            latency_max_ms: ms(h.max()),
            ..state.stats.clone()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The counters stay meaningful after a panic elsewhere while holding the lock:
        // every update is a few integer adds.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One job's place in the counters, from `upload()` until it ends.
#[derive(Debug)]
pub(crate) struct JobTicket {
    counters: Arc<Counters>,
    size: u64,
    running: bool,
    ended: bool,
}

impl JobTicket {
    /// Counts a new queued job of `size` bytes.
    pub(crate) fn queued(counters: Arc<Counters>, size: u64) -> JobTicket {
        {
            let mut state = counters.lock();
            state.stats.queued_files += 1;
            state.stats.pending_bytes += size;
        }
        JobTicket {
            counters,
            size,
            running: false,
            ended: false,
        }
    }

    /// The job got an upload slot.
    pub(crate) fn start(&mut self) {
        if self.running || self.ended {
            return;
        }
        let mut state = self.counters.lock();
        state.stats.queued_files -= 1;
        state.stats.in_progress_files += 1;
        self.running = true;
    }

    /// The job ended; `elapsed` counts from `upload()`.
    pub(crate) fn end(mut self, outcome: Outcome, elapsed: Duration) {
        self.close(outcome, Some(elapsed));
    }

    fn close(&mut self, outcome: Outcome, elapsed: Option<Duration>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let mut state = self.counters.lock();
        let stats = &mut state.stats;
        if self.running {
            stats.in_progress_files -= 1;
        } else {
            stats.queued_files -= 1;
        }
        stats.pending_bytes -= self.size;
        match outcome {
            Outcome::Completed => {
                stats.completed_files += 1;
                stats.completed_bytes += self.size;
            }
            Outcome::Failed => stats.failed += 1,
            Outcome::Cancelled => stats.cancelled += 1,
        }
        if let (Outcome::Completed, Some(elapsed)) = (outcome, elapsed) {
            let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            // The histogram grows to fit; only a value beyond its absolute limit clamps.
            if state.latency_us.record(us.max(1)).is_err() {
                state.latency_us.saturating_record(us);
            }
        }
    }
}

impl Drop for JobTicket {
    /// A ticket dropped without [`JobTicket::end`] belongs to a task the runtime
    /// dropped (shutdown) or that panicked: it counts as cancelled.
    fn drop(&mut self) {
        self.close(Outcome::Cancelled, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_balance_whether_ended_or_dropped() {
        let c = Arc::new(Counters::new());
        let mut a = JobTicket::queued(c.clone(), 100);
        let b = JobTicket::queued(c.clone(), 50);
        let mut d = JobTicket::queued(c.clone(), 7);
        a.start();
        d.start();
        let s = c.snapshot();
        assert_eq!(
            (s.queued_files, s.in_progress_files, s.pending_bytes),
            (1, 2, 157)
        );
        a.end(Outcome::Completed, Duration::from_millis(20));
        drop(b);
        d.end(Outcome::Failed, Duration::from_millis(1));
        let s = c.snapshot();
        assert_eq!(
            (s.queued_files, s.in_progress_files, s.pending_bytes),
            (0, 0, 0)
        );
        assert_eq!((s.completed_files, s.completed_bytes), (1, 100));
        assert_eq!((s.failed, s.cancelled), (1, 1));
        assert!(
            (s.latency_max_ms - 20.0).abs() < 0.1,
            "{}",
            s.summary_line()
        );
    }
}
