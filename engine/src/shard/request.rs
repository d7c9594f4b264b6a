//! The caller's side of a cross-thread request: counting requests in flight per
//! shard and waiting for the answer, spinning briefly before parking.
//!
//! Why spin: a one-off call from a foreign thread (`block_on(db.get(..))`) used to
//! park its thread right after sending, so every answer paid a futex wake-up and a
//! thread switch (tens of µs in a VM) although the shard answers a cached read in
//! a few µs. The caller now polls the reply channel for up to
//! `Options::caller_spin_us` first (without registering a waker, so the shard's
//! answer wakes nobody) and parks only when the answer takes longer.
//!
//! When it spins: only when the request is the only one in flight on its shard
//! (a caller driving many requests from one thread, say 32 futures under one
//! `block_on`, would otherwise serialize them behind each other's spins), never on
//! a shard's own executor thread (a `LocalDb` forwarding a key to another shard
//! must not stall its own shard), and not for a while after a spin of the shard's
//! callers missed. A spin gives up as soon as its thread was descheduled between
//! two polls ([`PREEMPTED`]): the caller and the shard compete for cores, spinning
//! only burns the CPU the shard needs, and the next [`SKIP_AFTER_MISS`] calls park
//! at once, so probing costs less than 1 call in 16. A spin that ran its full time
//! on its own core only met a slow answer (a flush or compaction step holding the
//! shard, a disk read): the calls after it skip the spin 1, 2, 4, ... up to
//! [`SKIP_AFTER_MISS`] times as such misses follow each other, and spin again at
//! once after an answered spin. An isolated slow answer (the shard busy flushing
//! for a moment) so costs one parked call, not sixteen; answers that all need the
//! disk still settle at one probe in 16 calls.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use terrace_tiering::clock;

thread_local! {
    /// Set on shard executor threads, which must never spin-wait.
    static ON_SHARD_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as a shard's executor thread.
pub(crate) fn mark_shard_thread() {
    ON_SHARD_THREAD.with(|c| c.set(true));
}

/// Calls that do not spin after a missed spin.
pub(crate) const SKIP_AFTER_MISS: i64 = 16;
/// A gap this long between two polls of a spin means the thread lost its core.
pub(crate) const PREEMPTED: Duration = Duration::from_micros(20);

/// The caller side of one shard's request path, shared by every caller: requests
/// in flight and how spinning on its answers fares.
#[derive(Default)]
pub(crate) struct CallerSide {
    /// Requests sent and not yet answered.
    in_flight: AtomicUsize,
    /// Below zero: calls left before callers spin again.
    spin_credit: AtomicI64,
    /// Spins that saw the answer.
    spins_answered: AtomicU64,
    /// Spins that gave up and parked.
    spins_missed: AtomicU64,
    /// Spins in a row that ran their full time without an answer.
    slow_streak: AtomicU64,
}

impl CallerSide {
    /// Counts a request in until the returned guard drops (on the caller's thread,
    /// once the answer came or the call was dropped), and says whether the caller
    /// may spin on the answer.
    pub(crate) fn enter(&self) -> (InFlightGuard<'_>, bool) {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlightGuard(self);
        if before != 0 || ON_SHARD_THREAD.with(|c| c.get()) {
            return (guard, false);
        }
        // Racy on purpose: the credit is a hint, not an invariant.
        let credit = self.spin_credit.load(Ordering::Relaxed);
        if credit < 0 {
            self.spin_credit.store(credit + 1, Ordering::Relaxed);
            return (guard, false);
        }
        (guard, true)
    }

    /// Waits for the answer on `rx` for up to `spin` without registering a waker.
    /// `Some` with the answer (or the disconnection) when it came in time, `None`
    /// to go and park.
    pub(crate) fn spin_for_reply<T>(
        &self,
        rx: &oneshot::Receiver<T>,
        spin: Duration,
    ) -> Option<Result<T, oneshot::RecvError>> {
        if spin.is_zero() {
            return None;
        }
        let (got, end) = match poll_until(rx, spin) {
            Ok(got) => (Some(got), SpinEnd::Answered),
            Err(end) => (None, end),
        };
        self.spun(end);
        got
    }

    /// Counts a spin that ended so, and sets how many calls skip the spin next.
    fn spun(&self, end: SpinEnd) {
        let skip = match end {
            SpinEnd::Answered => {
                self.spins_answered.fetch_add(1, Ordering::Relaxed);
                self.slow_streak.store(0, Ordering::Relaxed);
                0
            }
            SpinEnd::Slow => {
                self.spins_missed.fetch_add(1, Ordering::Relaxed);
                skip_after_slow(self.slow_streak.fetch_add(1, Ordering::Relaxed))
            }
            SpinEnd::Preempted => {
                self.spins_missed.fetch_add(1, Ordering::Relaxed);
                // Slow spins after this one skip the most too, until one is answered.
                self.slow_streak
                    .store(SLOW_STREAK_AT_MOST, Ordering::Relaxed);
                SKIP_AFTER_MISS
            }
        };
        self.spin_credit.store(-skip, Ordering::Relaxed);
    }

    /// Spins that saw the answer and spins that gave up.
    pub(crate) fn spin_counts(&self) -> (u64, u64) {
        (
            self.spins_answered.load(Ordering::Relaxed),
            self.spins_missed.load(Ordering::Relaxed),
        )
    }
}

/// One request in flight; leaves the count when dropped.
pub(crate) struct InFlightGuard<'a>(&'a CallerSide);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slow streak at which the skip is at its most.
const SLOW_STREAK_AT_MOST: u64 = SKIP_AFTER_MISS.ilog2() as u64;

/// Calls that skip the spin after the `streak`-th slow spin in a row (0-based):
/// 1, 2, 4, ... up to [`SKIP_AFTER_MISS`].
fn skip_after_slow(streak: u64) -> i64 {
    if streak >= SLOW_STREAK_AT_MOST {
        SKIP_AFTER_MISS
    } else {
        1i64 << streak
    }
}

/// How a spin ended, for the skip that follows it.
#[derive(Clone, Copy, Debug)]
enum SpinEnd {
    /// The answer (or the disconnection) came.
    Answered,
    /// The spin ran its full time on its core without an answer.
    Slow,
    /// The thread lost its core between two polls.
    Preempted,
}

/// Polls `rx` until it answers (`Ok`, with the answer or the disconnection), `spin`
/// has passed or the thread was descheduled (`Err` with how the spin ended).
fn poll_until<T>(
    rx: &oneshot::Receiver<T>,
    spin: Duration,
) -> Result<Result<T, oneshot::RecvError>, SpinEnd> {
    let start = clock::now();
    let mut last = start;
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(Ok(v)),
            Err(oneshot::TryRecvError::Disconnected) => return Ok(Err(oneshot::RecvError)),
            Err(oneshot::TryRecvError::Empty) => std::hint::spin_loop(),
        }
        let now = clock::now();
        if now.duration_since(last) >= PREEMPTED {
            return Err(SpinEnd::Preempted);
        }
        if now.duration_since(start) >= spin {
            return Err(SpinEnd::Slow);
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls that may spin among the next `n` (each counted in and out).
    fn spinning_calls(side: &CallerSide, n: usize) -> Vec<bool> {
        (0..n).map(|_| side.enter().1).collect()
    }

    #[test]
    fn slow_spins_in_a_row_skip_1_2_4_8_then_16_calls_and_an_answer_resets() {
        let side = CallerSide::default();
        assert_eq!(spinning_calls(&side, 3), vec![true; 3]);
        for skip in [1, 2, 4, 8, 16, 16] {
            side.spun(SpinEnd::Slow);
            let calls = spinning_calls(&side, skip + 1);
            assert!(calls[..skip].iter().all(|s| !s), "skip {skip}: {calls:?}");
            assert!(calls[skip], "spins again after {skip} calls");
        }
        side.spun(SpinEnd::Answered);
        assert_eq!(spinning_calls(&side, 2), vec![true; 2]);
        side.spun(SpinEnd::Slow);
        assert_eq!(
            spinning_calls(&side, 2),
            vec![false, true],
            "the streak restarted"
        );
        assert_eq!(side.spin_counts(), (1, 7));
    }

    #[test]
    fn a_preempted_spin_skips_16_calls_and_so_do_the_slow_ones_after_it() {
        let side = CallerSide::default();
        side.spun(SpinEnd::Preempted);
        let calls = spinning_calls(&side, 17);
        assert!(calls[..16].iter().all(|s| !s) && calls[16], "{calls:?}");
        side.spun(SpinEnd::Slow);
        let calls = spinning_calls(&side, 17);
        assert!(calls[..16].iter().all(|s| !s) && calls[16], "{calls:?}");
    }

    #[test]
    fn a_call_in_flight_keeps_the_next_from_spinning_until_its_guard_drops() {
        let side = CallerSide::default();
        let (first, spins) = side.enter();
        assert!(spins);
        assert!(
            !side.enter().1,
            "a second call while one is in flight waits"
        );
        drop(first);
        assert!(side.enter().1, "alone again");
    }

    #[test]
    fn a_spin_on_an_answered_channel_takes_the_answer() {
        let side = CallerSide::default();
        let (tx, rx) = oneshot::channel();
        tx.send(7).unwrap();
        let got = side.spin_for_reply(&rx, Duration::from_millis(1));
        assert_eq!(got, Some(Ok(7)));
        assert_eq!(side.spin_counts(), (1, 0));
        let (tx, rx) = oneshot::channel::<u32>();
        drop(tx);
        let got = side.spin_for_reply(&rx, Duration::from_millis(1));
        assert_eq!(got, Some(Err(oneshot::RecvError)));
    }
}
