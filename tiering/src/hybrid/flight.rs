//! Loads in flight, so concurrent misses on one block share one load (or one SSD read).
//!
//! The first lookup of a missing block becomes the leader: it registers a [`Flight`],
//! does the work with its own load future and publishes the result. Later lookups of the
//! same block wait for that result instead of loading again. If the leader is dropped
//! before finishing (its caller was cancelled), the flight is abandoned and each waiter
//! retries, one of them becoming the new leader with its own load future.
//! `evict_file` marks flights of the file as poisoned: their result is returned to the
//! callers already waiting but never admitted to the cache.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::{BlockKey, Bytes};

/// An error shared by every caller of one load.
#[derive(Clone, Debug)]
pub(crate) struct SharedError {
    kind: io::ErrorKind,
    message: Rc<str>,
}

impl SharedError {
    pub fn new(e: &io::Error) -> SharedError {
        SharedError {
            kind: e.kind(),
            message: Rc::from(e.to_string()),
        }
    }

    pub fn to_io(&self) -> io::Error {
        io::Error::new(self.kind, self.message.to_string())
    }
}

#[derive(Default)]
pub(crate) struct Flight {
    result: Option<Result<Bytes, SharedError>>,
    abandoned: bool,
    pub poisoned: bool,
    waiters: Vec<Waker>,
}

pub(crate) type FlightRef = Rc<RefCell<Flight>>;

/// The flights of one cache.
#[derive(Default)]
pub(crate) struct Flights {
    map: HashMap<BlockKey, FlightRef>,
}

impl Flights {
    /// The flight of `key` still running, if any (an abandoned one is ignored, so a
    /// waiter never spins on it).
    pub fn get(&self, key: &BlockKey) -> Option<FlightRef> {
        self.map.get(key).filter(|f| !f.borrow().abandoned).cloned()
    }

    /// Registers a new flight for `key`; the returned guard abandons it if dropped
    /// before [`LeaderGuard::finish`].
    pub fn lead(&mut self, key: BlockKey) -> FlightRef {
        let f: FlightRef = Rc::default();
        self.map.insert(key, Rc::clone(&f));
        f
    }

    /// Removes `flight` from the map if it is still the one registered for `key`.
    pub fn remove(&mut self, key: &BlockKey, flight: &FlightRef) {
        if self.map.get(key).is_some_and(|f| Rc::ptr_eq(f, flight)) {
            self.map.remove(key);
        }
    }

    /// Poisons every flight of `file_id` and forgets them, so lookups that come later
    /// start their own.
    pub fn poison_file(&mut self, file_id: u64) {
        self.map.retain(|k, f| {
            if k.file_id == file_id {
                f.borrow_mut().poisoned = true;
                false
            } else {
                true
            }
        });
    }
}

/// Publishes `result` to the flight's waiters.
pub(crate) fn finish(flight: &FlightRef, result: Result<Bytes, SharedError>) {
    let waiters = {
        let mut f = flight.borrow_mut();
        f.result = Some(result);
        std::mem::take(&mut f.waiters)
    };
    for w in waiters {
        w.wake();
    }
}

/// Marks the flight abandoned (its leader went away) and wakes its waiters.
pub(crate) fn abandon(flight: &FlightRef) {
    let waiters = {
        let mut f = flight.borrow_mut();
        if f.result.is_some() {
            return;
        }
        f.abandoned = true;
        std::mem::take(&mut f.waiters)
    };
    for w in waiters {
        w.wake();
    }
}

/// Waits for a flight: `Some(result)` once published, `None` if abandoned.
pub(crate) struct Wait(pub FlightRef);

impl Future for Wait {
    type Output = Option<Result<Bytes, SharedError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut f = self.0.borrow_mut();
        if let Some(r) = &f.result {
            return Poll::Ready(Some(r.clone()));
        }
        if f.abandoned {
            return Poll::Ready(None);
        }
        if !f.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            f.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
