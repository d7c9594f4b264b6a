//! A single-threaded "something changed" signal for tasks on one shard.
//!
//! Waiters remember the generation they saw; [`Notify::notify_all`] bumps it and
//! wakes them. A waiter that registers after a bump sees the new generation and
//! returns at once, so no wake-up is lost between checking a condition and waiting.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every waiting task when notified.
#[derive(Default)]
pub(crate) struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    /// The current generation, to pass to [`Notify::changed_since`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Wakes every task waiting now.
    pub(crate) fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Completes once the generation differs from `seen`, or after `recheck` at the
    /// latest. Waiters re-check their condition either way; the timeout only bounds
    /// the damage of a wake-up lost below us (glommio 0.9 has lost some).
    pub(crate) async fn changed_or_after(&self, seen: u64, recheck: std::time::Duration) {
        futures_lite::future::or(self.changed_since(seen), glommio::timer::sleep(recheck)).await;
    }

    /// Completes once the generation differs from `seen`.
    pub(crate) fn changed_since(&self, seen: u64) -> Changed<'_> {
        Changed { notify: self, seen }
    }
}

/// Future returned by [`Notify::changed_since`].
pub(crate) struct Changed<'a> {
    notify: &'a Notify,
    seen: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.seen {
            return Poll::Ready(());
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
