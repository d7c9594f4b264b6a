//! Per-key completion order.
//!
//! Operations take effect when they are submitted (a write is applied, a read captures
//! its snapshot) but may finish later: a read can wait on disk while a later write to
//! the same key is already applied. Callers such as Flink's async state API need the
//! completions of one key in submission order. Each operation takes a ticket in its
//! key's lane at submission and, before reporting completion, waits until every
//! earlier ticket of the lane has completed.
//!
//! Lanes are keyed by a 64-bit hash of the state key; a collision only orders two
//! unrelated keys, which is safe. A lane is removed when its last ticket completes,
//! so memory is bounded by the number of operations in flight.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use xxhash_rust::xxh3::xxh3_64;

#[derive(Default)]
struct Lane {
    next_ticket: u64,
    /// Tickets below this have completed.
    done_upto: u64,
    /// Completed tickets at or above `done_upto` (cancelled operations release
    /// their ticket out of turn).
    done_early: BTreeSet<u64>,
    waiters: Vec<Waker>,
}

/// Hashes a key that is already an xxh3 hash (a lane's, a keyed pipeline's) by
/// taking it as is.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; fold anything else in for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// All lanes of one shard.
#[derive(Default)]
pub(crate) struct KeyLanes {
    lanes: RefCell<HashMap<u64, Lane, BuildHasherDefault<PassThrough>>>,
}

/// A place in a key's lane, taken at submission.
pub(crate) struct Ticket {
    lanes: Rc<KeyLanes>,
    hash: u64,
    ticket: u64,
    finished: bool,
}

impl KeyLanes {
    /// Takes the next ticket in the lane of `state_key`.
    pub(crate) fn enter(self: &Rc<Self>, state_key: &[u8]) -> Ticket {
        let hash = xxh3_64(state_key);
        let mut lanes = self.lanes.borrow_mut();
        let lane = lanes.entry(hash).or_default();
        let ticket = lane.next_ticket;
        lane.next_ticket += 1;
        Ticket {
            lanes: self.clone(),
            hash,
            ticket,
            finished: false,
        }
    }

    /// Whether no operation on `state_key` is in flight.
    pub(crate) fn is_idle(&self, state_key: &[u8]) -> bool {
        !self.lanes.borrow().contains_key(&xxh3_64(state_key))
    }

    /// Number of keys with operations in flight.
    #[cfg(test)]
    pub(crate) fn busy_keys(&self) -> usize {
        self.lanes.borrow().len()
    }
}

impl Ticket {
    /// Waits for every earlier operation on the key to complete, then marks this one
    /// complete.
    pub(crate) async fn finish(mut self) {
        TurnOf { t: &self }.await;
        self.release();
    }

    fn release(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut lanes = self.lanes.lanes.borrow_mut();
        if let Some(lane) = lanes.get_mut(&self.hash) {
            // A dropped ticket (a cancelled operation) may complete out of turn: it is
            // remembered, and `done_upto` only ever moves over a contiguous run.
            if self.ticket == lane.done_upto {
                lane.done_upto += 1;
                while !lane.done_early.is_empty() && lane.done_early.remove(&lane.done_upto) {
                    lane.done_upto += 1;
                }
            } else {
                lane.done_early.insert(self.ticket);
            }
            if lane.done_upto >= lane.next_ticket {
                lanes.remove(&self.hash);
            } else {
                for w in lane.waiters.drain(..) {
                    w.wake();
                }
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A cancelled operation must not block its successors forever.
        self.release();
    }
}

struct TurnOf<'a> {
    t: &'a Ticket,
}

impl Future for TurnOf<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut lanes = self.t.lanes.lanes.borrow_mut();
        match lanes.get_mut(&self.t.hash) {
            Some(lane) if lane.done_upto < self.t.ticket => {
                lane.waiters.push(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn completions_follow_submission_order_per_key() {
        futures_lite::future::block_on(async {
            let lanes = Rc::new(KeyLanes::default());
            let log = Rc::new(RefCell::new(Vec::new()));
            let a1 = lanes.enter(b"a");
            let b1 = lanes.enter(b"b");
            let a2 = lanes.enter(b"a");
            // a2 tries to finish first but must wait for a1; b1 is independent.
            let l = log.clone();
            let f2 = async move {
                a2.finish().await;
                l.borrow_mut().push("a2");
            };
            let l = log.clone();
            let f1 = async move {
                futures_lite::future::yield_now().await;
                a1.finish().await;
                l.borrow_mut().push("a1");
            };
            let l = log.clone();
            let fb = async move {
                b1.finish().await;
                l.borrow_mut().push("b1");
            };
            futures_lite::future::zip(f2, futures_lite::future::zip(f1, fb)).await;
            let log = log.borrow();
            let pos = |s| log.iter().position(|x| *x == s).unwrap();
            assert!(pos("a1") < pos("a2"), "{log:?}");
            assert_eq!(lanes.busy_keys(), 0);
        });
    }

    #[test]
    fn a_cancelled_operation_does_not_release_later_waiters_early_or_strand_them() {
        futures_lite::future::block_on(async {
            let lanes = Rc::new(KeyLanes::default());
            let t0 = lanes.enter(b"k");
            let t1 = lanes.enter(b"k");
            let t2 = lanes.enter(b"k");
            drop(t2); // cancelled out of turn
            let mut f1 = Box::pin(t1.finish());
            // t1 must still wait for t0.
            assert!(futures_lite::future::poll_once(&mut f1).await.is_none());
            t0.finish().await;
            f1.await;
            assert_eq!(lanes.busy_keys(), 0);
        });
    }
}
