//! Per-second samples of a whole run, for `--plot`: operations completed and write
//! latency in each wall-clock second, and the events to mark on the chart
//! (benchmark starts, checkpoints, restores).
//!
//! Workers never share a counter on the hot path: each keeps a [`SecondRecorder`]
//! for the second it is in and hands that second's counts to the [`Timeline`] when
//! it moves on to the next one (and when it is dropped). Seconds count from the
//! timeline's creation, so every benchmark of a run and the restore before them lie
//! on one axis. At most [`MAX_SECONDS`] are kept; later samples are dropped (and
//! counted), so a run of any length holds bounded memory.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Seconds of samples kept (four hours).
pub const MAX_SECONDS: usize = 4 * 3600;

/// Significant digits of the per-second latency histograms: two keep each one small
/// (a P99 within 1%), there can be thousands of them.
const SECOND_HISTOGRAM_DIGITS: u8 = 2;

/// What happened in one second of the run.
#[derive(Clone, Debug)]
pub struct Second {
    /// Operations completed (keys, for multireadrandom).
    pub ops: u64,
    /// Latency of the timed write calls that completed, in nanoseconds.
    pub write_latency_ns: Histogram<u64>,
}

impl Second {
    fn new() -> Second {
        Second {
            ops: 0,
            write_latency_ns: new_histogram(),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // Two significant digits always fit an auto-resizing histogram.
    Histogram::new(SECOND_HISTOGRAM_DIGITS).unwrap_or_else(|_| unreachable!())
}

/// A moment of the run worth marking on the chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A benchmark of `--benchmarks` started.
    Benchmark(String),
    /// A checkpoint started (its id).
    Checkpoint(u64),
    /// A restore started.
    Restore,
    /// The restored database served its first read.
    FirstRead,
    /// The restored database's warmer finished.
    WarmerDone,
}

/// An event and when it happened, from the timeline's start.
#[derive(Clone, Debug)]
pub struct Event {
    /// Time since the timeline started.
    pub at: Duration,
    /// What happened.
    pub kind: EventKind,
}

/// The samples and events of one run.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    seconds: Mutex<Vec<Second>>,
    events: Mutex<Vec<Event>>,
    dropped_samples: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data is counters: a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Timeline {
    /// A timeline whose second 0 starts now.
    pub fn new() -> Timeline {
        Timeline::starting_at(terrace_tiering::clock::now())
    }

    /// A timeline whose second 0 starts at `start`.
    pub fn starting_at(start: Instant) -> Timeline {
        Timeline {
            start,
            seconds: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            dropped_samples: Mutex::new(0),
        }
    }

    /// When second 0 began.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// A recorder for one worker; `latency` says whether its calls are writes whose
    /// latency the chart shows.
    pub fn recorder(self: &Arc<Self>, latency: bool) -> SecondRecorder {
        SecondRecorder {
            timeline: self.clone(),
            latency,
            second: 0,
            ops: 0,
            latency_ns: None,
        }
    }

    /// Marks `kind` as happening at `at`.
    pub fn event_at(&self, at: Instant, kind: EventKind) {
        let at = at.saturating_duration_since(self.start);
        lock(&self.events).push(Event { at, kind });
    }

    /// Marks `kind` as happening now.
    pub fn event(&self, kind: EventKind) {
        self.event_at(terrace_tiering::clock::now(), kind);
    }

    /// The seconds so far (index = second since the start).
    pub fn seconds(&self) -> Vec<Second> {
        lock(&self.seconds).clone()
    }

    /// The events so far, in time order.
    pub fn events(&self) -> Vec<Event> {
        let mut e = lock(&self.events).clone();
        e.sort_by_key(|e| e.at);
        e
    }

    /// Samples dropped because the run outlasted [`MAX_SECONDS`].
    pub fn dropped_samples(&self) -> u64 {
        *lock(&self.dropped_samples)
    }

    fn add(&self, second: u64, ops: u64, latency_ns: Option<&Histogram<u64>>) {
        let Ok(i) = usize::try_from(second) else {
            return;
        };
        if i >= MAX_SECONDS {
            *lock(&self.dropped_samples) += ops;
            return;
        }
        let mut seconds = lock(&self.seconds);
        if seconds.len() <= i {
            seconds.resize_with(i + 1, Second::new);
        }
        let s = &mut seconds[i];
        s.ops += ops;
        if let Some(h) = latency_ns {
            // Both histograms auto-resize: adding cannot fail.
            let _ = s.write_latency_ns.add(h);
        }
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

/// One worker's counts for the second it is in.
#[derive(Debug)]
pub struct SecondRecorder {
    timeline: Arc<Timeline>,
    latency: bool,
    second: u64,
    ops: u64,
    latency_ns: Option<Histogram<u64>>,
}

impl SecondRecorder {
    /// Records a call that finished at `now`, took `elapsed` and did `ops` operations.
    #[inline]
    pub fn record(&mut self, now: Instant, elapsed: Duration, ops: u64) {
        let second = now.saturating_duration_since(self.timeline.start).as_secs();
        if second != self.second {
            self.flush();
            self.second = second;
        }
        self.ops += ops;
        if self.latency {
            let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1);
            let _ = self.latency_ns.get_or_insert_with(new_histogram).record(ns);
        }
    }

    fn flush(&mut self) {
        if self.ops == 0 && self.latency_ns.is_none() {
            return;
        }
        let h = self.latency_ns.take();
        self.timeline.add(self.second, self.ops, h.as_ref());
        self.ops = 0;
    }
}

impl Clone for SecondRecorder {
    /// A clone records into the same timeline but starts empty, so no count is ever
    /// handed over twice.
    fn clone(&self) -> Self {
        SecondRecorder {
            timeline: self.timeline.clone(),
            latency: self.latency,
            second: self.second,
            ops: 0,
            latency_ns: None,
        }
    }
}

impl Drop for SecondRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_counts_land_in_their_seconds() {
        let start = terrace_tiering::clock::now();
        let t = Arc::new(Timeline::starting_at(start));
        let mut a = t.recorder(true);
        let mut b = t.recorder(false);
        a.record(
            start + Duration::from_millis(100),
            Duration::from_micros(5),
            1,
        );
        b.record(
            start + Duration::from_millis(200),
            Duration::from_micros(5),
            10,
        );
        a.record(
            start + Duration::from_millis(2100),
            Duration::from_micros(50),
            1,
        );
        let copy = a.clone();
        drop((a, b, copy));
        let s = t.seconds();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].ops, s[1].ops, s[2].ops), (11, 0, 1));
        assert_eq!(s[0].write_latency_ns.len(), 1);
        assert!(s[2].write_latency_ns.max() >= 49_000);
    }
}
