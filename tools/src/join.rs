//! A runtime-agnostic `join_all`: drives a fixed set of futures to completion on the
//! current task and returns their outputs in order.
//!
//! The tools poll futures from plain OS threads (`futures_lite::future::block_on`) and
//! from glommio executors alike, so they cannot lean on one runtime's join helpers.
//! Every wake-up polls each unfinished future once; with the few dozen futures in
//! flight a benchmark uses, that is cheaper than per-future wakers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Waits for every future in `futures`; outputs come back in the input order.
pub fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> JoinAll<F> {
    JoinAll {
        slots: futures
            .into_iter()
            .map(|f| Slot::Pending(Box::pin(f)))
            .collect(),
    }
}

enum Slot<F: Future> {
    Pending(Pin<Box<F>>),
    Done(Option<F::Output>),
}

/// Future returned by [`join_all`].
pub struct JoinAll<F: Future> {
    slots: Vec<Slot<F>>,
}

// The futures are boxed, so moving `JoinAll` never moves them.
impl<F: Future> Unpin for JoinAll<F> {}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut all_done = true;
        for slot in self.slots.iter_mut() {
            if let Slot::Pending(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(out) => *slot = Slot::Done(Some(out)),
                    Poll::Pending => all_done = false,
                }
            }
        }
        if !all_done {
            return Poll::Pending;
        }
        let outputs = self
            .slots
            .iter_mut()
            .filter_map(|slot| match slot {
                Slot::Done(out) => out.take(),
                Slot::Pending(_) => None,
            })
            .collect();
        Poll::Ready(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_keep_input_order() {
        let futs = (0..5u32).map(|i| async move {
            for _ in 0..(5 - i) {
                futures_lite::future::yield_now().await;
            }
            i
        });
        let out = futures_lite::future::block_on(join_all(futs));
        assert_eq!(out, vec![0, 1, 2, 3, 4]);
    }
}
