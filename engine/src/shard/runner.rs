//! The body of a shard's executor thread: open the shard, start its background
//! tasks, then serve requests from other threads until told to close.
//!
//! Requests arrive as [`Msg`]s over a bounded channel, read by the request loop (in
//! a `requests` queue of its own, so a message to an awake shard costs no eventfd
//! write; see below); each runs as a task in the foreground queue, holding one of
//! `max_pending_requests_per_shard` permits until it completes. The loop takes every
//! queued message before it yields. A pinned shard's loop then polls the channel
//! for up to `request_spin_us` per visit of the executor ([`spin_for_request`]) before
//! it waits the usual way, so back-to-back requests skip the executor's pass.
//! With `TERRACE_DEBUG_WATCHDOG=1` the shard prints its state every 5 s.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use glommio::{Latency, Shares};

use super::pulse::Pulse;
use super::{Queues, Shard};
use crate::error::Result;
use crate::options::Options;
use crate::remote::Remote;

/// A request: runs on the shard thread and spawns the request's task, which holds
/// the permit until it completes.
pub(crate) type Job = Box<dyn FnOnce(&Rc<Shard>, glommio::sync::StaticPermit) + Send>;

/// Runs a request's future on the request loop at once, and only when it must wait
/// (I/O, a lane, a stall) spawns the rest as a task in `queue`. A request answered
/// from memory thus costs no task and no pass of the executor's loop between the
/// request queue and the foreground queue (measured in docs/BENCHMARKS.md,
/// "Cross-thread calls"). The first poll uses a waker that does nothing: the
/// spawned task is polled as soon as it starts and registers its own.
pub(crate) fn run_inline_or_spawn(
    mut fut: std::pin::Pin<Box<dyn Future<Output = ()>>>,
    queue: glommio::TaskQueueHandle,
) {
    let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
    if fut.as_mut().poll(&mut cx).is_pending() {
        match glommio::spawn_local_into(fut, queue) {
            Ok(t) => {
                t.detach();
            }
            // The future drops with its answer channel: the caller sees the shard gone.
            Err(e) => tracing::error!(error = %e, "could not start a request's task"),
        }
    }
}

/// What other threads send a shard.
pub(crate) enum Msg {
    Run(Job),
    Close(flume::Sender<Result<()>>),
}

/// The body of a shard's executor thread.
pub(crate) async fn shard_main(
    id: u32,
    opts: Options,
    remote: Option<Arc<Remote>>,
    new_db: bool,
    pulse: Arc<Pulse>,
    rx: flume::Receiver<Msg>,
    ready: flume::Sender<Result<()>>,
) {
    super::request::mark_shard_thread();
    let ex = glommio::executor();
    let queues = Queues {
        foreground: ex.create_task_queue(
            Shares::Static(opts.foreground_shares),
            Latency::Matters(Duration::from_micros(opts.foreground_latency_us)),
            "foreground",
        ),
        flush: ex.create_task_queue(
            Shares::Static(opts.flush_shares),
            Latency::NotImportant,
            "flush",
        ),
        compaction: ex.create_task_queue(
            Shares::Static(opts.compaction_shares),
            Latency::NotImportant,
            "compaction",
        ),
    };
    let max_inflight = opts.max_pending_requests_per_shard;
    let shard = match Shard::open(id, opts, queues, remote, new_db).await {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // A read-only shard changes nothing: no flushes, compactions, uploads or drops.
    let background: Vec<_> = if shard.read_only {
        Vec::new()
    } else {
        [
            glommio::spawn_local_into(shard.clone().flush_loop(), queues.flush),
            glommio::spawn_local_into(shard.clone().compaction_loop(), queues.compaction),
            glommio::spawn_local_into(shard.clone().upload_loop(), queues.flush),
            glommio::spawn_local_into(shard.clone().local_copies_loop(), queues.compaction),
            glommio::spawn_local_into(shard.clone().warm_loop(), queues.compaction),
        ]
        .into_iter()
        .filter_map(|t| t.ok())
        .collect()
    };
    let _ = ready.send(Ok(()));
    if std::env::var_os("TERRACE_DEBUG_WATCHDOG").is_some() {
        let s = shard.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_secs(5)).await;
                let m = s.mem.borrow();
                eprintln!(
                    "[watchdog shard {}] flush {} compaction {} mem {} imms {} L0 {} poisoned {:?} closing {} changed_gen {} flush_gen {} compaction_gen {} lock_avail {} stats {:?}",
                    s.id,
                    s.signals.flush_stage.get(),
                    s.signals.compaction_stage.get(),
                    m.active.approximate_bytes(),
                    m.frozen.len(),
                    s.versions.current().levels[0].len(),
                    s.health.poisoned.borrow(),
                    s.health.closing.get(),
                    s.signals.changed.generation(),
                    s.signals.flush_wake.generation(),
                    s.signals.compaction_wake.generation(),
                    s.compaction_lock.available(),
                    s.counters.borrow(),
                );
            }
        })
        .detach();
    }

    // Bound the jobs in flight: when full, stop taking messages, so senders wait on
    // the bounded channel. Every poll of the loop beats its pulse, which the pulse
    // thread watches to nudge an executor that fell asleep with work queued.
    //
    // The loop runs in a queue of its own whose latency does not matter to glommio:
    // a foreign wake-up of such a task writes the executor's eventfd only when the
    // executor is going to sleep (glommio's `should_notify` flag, made safe by a
    // membarrier), not on every message. That write (an io_uring completion and an
    // IPI to the shard's core) cost ~19 µs of every round trip in a VM while the
    // shard was awake and spinning. Nudges take the forced path instead: the pulse
    // thread wakes the doorbell, a task in the (latency-sensitive) foreground queue,
    // which wakes the loop.
    let inflight = Rc::new(glommio::sync::Semaphore::new(max_inflight as u64));
    let requests = ex.create_task_queue(
        Shares::Static(shard.opts.foreground_shares),
        Latency::NotImportant,
        "requests",
    );
    let loop_waker: Rc<RefCell<Option<Waker>>> = Rc::default();
    let request_spin = if shard.opts.pin_shards {
        Duration::from_micros(shard.opts.request_spin_us)
    } else {
        Duration::ZERO
    };
    let loop_done = Rc::new(Cell::new(false));
    let doorbell = {
        let (pulse, loop_waker, loop_done) = (pulse.clone(), loop_waker.clone(), loop_done.clone());
        glommio::spawn_local_into(
            std::future::poll_fn(move |cx| {
                if loop_done.get() {
                    return Poll::Ready(());
                }
                pulse.set_waker(cx.waker());
                if let Some(w) = loop_waker.borrow().as_ref() {
                    w.wake_by_ref();
                }
                Poll::Pending
            }),
            queues.foreground,
        )
    };
    let receiver = {
        let shard = shard.clone();
        let (pulse, loop_waker) = (pulse.clone(), loop_waker.clone());
        glommio::spawn_local_into(
            async move {
                // Idle polling left in this visit of the executor.
                let mut spin_left = request_spin;
                loop {
                    let spun = if !request_spin.is_zero()
                        && inflight.available() == max_inflight as u64
                        && !shard.background_busy()
                    {
                        spin_for_request(&rx, &mut spin_left)
                    } else {
                        None
                    };
                    let next = if let Some(next) = spun {
                        pulse.beat();
                        shard.counters.borrow_mut().requests_spun += 1;
                        next
                    } else {
                        let (next, parked) = await_request(&rx, &pulse, &loop_waker).await;
                        if parked {
                            // The executor ran in between: a new visit, a new budget.
                            spin_left = request_spin;
                        }
                        next
                    };
                    let Ok(msg) = next else { break };
                    match msg {
                        Msg::Run(job) => {
                            let Ok(permit) = inflight.acquire_static_permit(1).await else {
                                break;
                            };
                            job(&shard, permit);
                            // Requests answered inline keep this loop busy: let the
                            // reactor and the other queues run when glommio asks.
                            glommio::yield_if_needed().await;
                        }
                        Msg::Close(reply) => return Some(reply),
                    }
                }
                None
            },
            requests,
        )
    };
    let close_reply = match receiver {
        Ok(task) => task.await,
        Err(e) => {
            tracing::error!(shard = id, error = %e, "could not start the request loop");
            None
        }
    };
    loop_done.set(true);
    pulse.nudge_here();
    if let Ok(task) = doorbell {
        task.await;
    }
    let r = shard.close().await;
    for t in background {
        t.await;
    }
    release_files(shard).await;
    if let Some(reply) = close_reply {
        let _ = reply.send(r);
    } else if let Err(e) = r {
        tracing::error!(shard = id, error = %e, "closing the shard failed");
    }
}

/// Waits for the next message the usual way: registers the loop's waker with the
/// channel and lets the executor run everything else until a sender wakes it. Says
/// whether the loop had to wait (the executor ran in between).
async fn await_request(
    rx: &flume::Receiver<Msg>,
    pulse: &Pulse,
    loop_waker: &RefCell<Option<Waker>>,
) -> (std::result::Result<Msg, flume::RecvError>, bool) {
    let mut parked = false;
    let mut recv = std::pin::pin!(rx.recv_async());
    let next = std::future::poll_fn(|cx| {
        pulse.beat();
        let mut w = loop_waker.borrow_mut();
        if !w.as_ref().is_some_and(|old| old.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        drop(w);
        let p = recv.as_mut().poll(cx);
        parked |= p.is_pending();
        p
    })
    .await;
    (next, parked)
}

/// Polls the channel for a message without leaving the task, for at most the
/// `spin_left` of this visit of the executor (spent here). `None` when it is spent
/// or glommio wants the queue preempted (a timer or a latency-ring completion).
fn spin_for_request(
    rx: &flume::Receiver<Msg>,
    spin_left: &mut Duration,
) -> Option<std::result::Result<Msg, flume::RecvError>> {
    let start = terrace_tiering::clock::now();
    let got = loop {
        match rx.try_recv() {
            Ok(m) => break Some(Ok(m)),
            Err(flume::TryRecvError::Disconnected) => {
                break Some(Err(flume::RecvError::Disconnected))
            }
            Err(flume::TryRecvError::Empty) => {
                if glommio::executor().need_preempt()
                    || terrace_tiering::clock::now().duration_since(start) >= *spin_left
                {
                    break None;
                }
                std::hint::spin_loop();
            }
        }
    };
    *spin_left = spin_left.saturating_sub(terrace_tiering::clock::now().duration_since(start));
    got
}

/// Drops the shard and lets the reactor run once more, so its files' descriptors
/// are closed before the close is acknowledged.
///
/// glommio closes a `DmaFile` dropped without `close()` asynchronously, on the
/// reactor's next I/O cycle. Once `shard_main` returns the executor ends and that
/// cycle never comes: every SST descriptor (and the inodes of deleted files) would
/// leak with each open and close of a database in one process.
async fn release_files(shard: Rc<Shard>) {
    drop(shard);
    glommio::timer::sleep(Duration::from_millis(1)).await;
}
