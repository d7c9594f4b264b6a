//! Keeping shard executors responsive: a per-database pulse thread that nudges a
//! shard whose executor sleeps while work waits for it.
//!
//! Why: glommio 0.9 on these machines sometimes puts an executor to sleep with no
//! timer armed in its rings, so neither its timers nor a message that arrived
//! without a wake-up get it going again (seen: a read-only shard asleep for
//! minutes with a request in its channel, its 1 ms timers silent, no completion
//! pending in any ring; writing its eventfd from outside woke it at once). A
//! foreign wake-up of a task in a latency-sensitive queue always writes the
//! executor's eventfd, and that path proved reliable.
//!
//! So each shard's request loop counts its wake-ups (its [`Pulse`]), and a doorbell
//! task of the shard, in its latency-sensitive foreground queue, publishes its
//! waker; when rung it wakes the request loop. (The loop itself lives in a queue
//! whose foreign wake-ups write the eventfd only when the executor is going to
//! sleep, which keeps messages to an awake shard free of syscalls.) The pulse thread looks every [`PULSE_PERIOD`]: a shard with
//! requests queued and no wake-up since the last look is nudged (its waker woken
//! from this thread); any shard is nudged after [`IDLE_NUDGE`] without a wake-up,
//! so expired timers of its background tasks run. A lost wake-up therefore costs at
//! most a period or two, not forever, and an idle shard is woken 20 times a second
//! at most.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the pulse thread looks at every shard.
pub(crate) const PULSE_PERIOD: Duration = Duration::from_millis(2);
/// Longest a shard goes without being woken, busy or not.
pub(crate) const IDLE_NUDGE: Duration = Duration::from_millis(50);

/// What a shard's request loop shares with the pulse thread.
#[derive(Default)]
pub(crate) struct Pulse {
    /// Times the request loop was polled.
    beats: AtomicU64,
    /// The doorbell's waker, as of its last poll.
    waker: Mutex<Option<Waker>>,
    /// Nudges sent (for stats and tests).
    nudges: AtomicU64,
}

impl Pulse {
    /// Called by the request loop each time it is polled.
    pub(crate) fn beat(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    /// Called by the doorbell each time it is polled.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        if let Ok(mut w) = self.waker.lock() {
            if !w.as_ref().is_some_and(|old| old.will_wake(waker)) {
                *w = Some(waker.clone());
            }
        }
    }

    fn beats(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }

    fn nudge(&self) {
        self.nudges.fetch_add(1, Ordering::Relaxed);
        self.nudge_here();
    }

    /// Rings the doorbell without counting a nudge (the shard, to stop it).
    pub(crate) fn nudge_here(&self) {
        if let Ok(w) = self.waker.lock() {
            if let Some(w) = w.as_ref() {
                w.wake_by_ref();
            }
        }
    }

    /// Nudges sent so far.
    pub(crate) fn nudges(&self) -> u64 {
        self.nudges.load(Ordering::Relaxed)
    }
}

/// One shard as the pulse thread sees it: its pulse and how much waits for it.
pub(crate) struct Watched {
    pub(crate) pulse: Arc<Pulse>,
    /// Requests queued for the shard (the channel's length).
    pub(crate) queued: Box<dyn Fn() -> usize + Send>,
}

/// The running pulse thread; stops when dropped.
pub(crate) struct PulseThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl PulseThread {
    /// Starts watching `shards`.
    pub(crate) fn start(shards: Vec<Watched>) -> std::io::Result<PulseThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("terrace-pulse".into())
            .spawn(move || watch(shards, &flag))?;
        Ok(PulseThread {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for PulseThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn watch(shards: Vec<Watched>, stop: &AtomicBool) {
    let idle_periods = (IDLE_NUDGE.as_micros() / PULSE_PERIOD.as_micros()).max(1) as u32;
    // Per shard: beats at the last look, and looks since the last beat.
    let mut seen: Vec<(u64, u32)> = shards.iter().map(|s| (s.pulse.beats(), 0)).collect();
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(PULSE_PERIOD);
        for (s, (last, quiet)) in shards.iter().zip(seen.iter_mut()) {
            let now = s.pulse.beats();
            if now != *last {
                *last = now;
                *quiet = 0;
                continue;
            }
            *quiet += 1;
            if (s.queued)() > 0 || *quiet >= idle_periods {
                s.pulse.nudge();
                *quiet = 0;
            }
        }
    }
}
