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
//! must not stall its own shard), and not after a spin of the shard's callers
//! missed, for the next [`SKIP_AFTER_MISS`] calls: on a machine where the caller
//! and the shard compete for cores (or the answers need disk reads) spinning only
//! burns the CPU the shard needs, so the cost of probing stays below 1 call in 16.
//! A spin also gives up as soon as its thread was descheduled between two polls
//! ([`PREEMPTED`]): the core is contended, and parking is the better bet.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
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
}

impl CallerSide {
    /// Counts a request in until the returned guard drops (after its answer is
    /// sent, or with the request if it never runs), and says whether the caller
    /// may spin on the answer.
    pub(crate) fn enter(self: &Arc<Self>) -> (InFlightGuard, bool) {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlightGuard(self.clone());
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
        rx: &flume::Receiver<T>,
        spin: Duration,
    ) -> Option<Result<T, flume::RecvError>> {
        if spin.is_zero() {
            return None;
        }
        let got = poll_until(rx, spin);
        if got.is_some() {
            self.spins_answered.fetch_add(1, Ordering::Relaxed);
            self.spin_credit.store(0, Ordering::Relaxed);
        } else {
            self.spins_missed.fetch_add(1, Ordering::Relaxed);
            self.spin_credit.store(-SKIP_AFTER_MISS, Ordering::Relaxed);
        }
        got
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
pub(crate) struct InFlightGuard(Arc<CallerSide>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Polls `rx` until it answers, `spin` has passed or the thread was descheduled.
fn poll_until<T>(rx: &flume::Receiver<T>, spin: Duration) -> Option<Result<T, flume::RecvError>> {
    let start = clock::now();
    let mut last = start;
    loop {
        match rx.try_recv() {
            Ok(v) => return Some(Ok(v)),
            Err(flume::TryRecvError::Disconnected) => {
                return Some(Err(flume::RecvError::Disconnected))
            }
            Err(flume::TryRecvError::Empty) => std::hint::spin_loop(),
        }
        let now = clock::now();
        if now.duration_since(start) >= spin || now.duration_since(last) >= PREEMPTED {
            return None;
        }
        last = now;
    }
}
