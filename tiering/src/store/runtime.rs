//! The background I/O runtime: a tokio runtime on threads of its own.
//!
//! The S3 SDK is tokio-based and a glommio shard must never block, so every
//! object-store call runs here. A shard hands a `Send` future to [`IoHandle::spawn`]
//! and awaits the returned [`IoTask`], which is a plain future (a tokio oneshot
//! receiver works under any executor): the shard's thread never enters tokio.
//!
//! At most `max_in_flight` spawned futures run at once; the rest wait for a permit in
//! arrival order. Callers bound how many they queue (reads by the shard's request
//! limits, uploads by the upload queue), so the wait list is bounded too.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{oneshot, Semaphore};

/// How the runtime is built.
#[derive(Clone, Debug)]
pub struct IoRuntimeConfig {
    /// tokio worker threads.
    pub threads: usize,
    /// Spawned futures running at once; the rest wait.
    pub max_in_flight: usize,
}

impl Default for IoRuntimeConfig {
    fn default() -> Self {
        IoRuntimeConfig {
            threads: 2,
            max_in_flight: 1024,
        }
    }
}

/// Owns the tokio runtime. Dropping it stops the runtime without waiting: tasks in
/// flight are dropped and their [`IoTask`]s resolve to [`TaskCancelled`].
pub struct IoRuntime {
    rt: Option<tokio::runtime::Runtime>,
    handle: IoHandle,
}

impl std::fmt::Debug for IoRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoRuntime").finish_non_exhaustive()
    }
}

impl IoRuntime {
    /// Starts the runtime's threads.
    pub fn start(cfg: &IoRuntimeConfig) -> std::io::Result<IoRuntime> {
        if cfg.threads == 0 || cfg.max_in_flight == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "I/O runtime needs at least one thread and one request in flight",
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .thread_name("terrace-io")
            .enable_all()
            .build()?;
        let handle = IoHandle {
            inner: Arc::new(Inner {
                handle: rt.handle().clone(),
                permits: Arc::new(Semaphore::new(cfg.max_in_flight)),
                waiting: AtomicU64::new(0),
                running: AtomicU64::new(0),
            }),
        };
        Ok(IoRuntime {
            rt: Some(rt),
            handle,
        })
    }

    /// A handle for spawning work; cheap to clone and `Send`.
    pub fn handle(&self) -> IoHandle {
        self.handle.clone()
    }

    /// Stops the runtime now: work in flight is abandoned mid-request (as a crash
    /// would), and every pending [`IoTask`] resolves to [`TaskCancelled`].
    pub fn shutdown_now(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

struct Inner {
    handle: tokio::runtime::Handle,
    permits: Arc<Semaphore>,
    waiting: AtomicU64,
    running: AtomicU64,
}

/// Spawns work on the I/O runtime from any thread.
#[derive(Clone)]
pub struct IoHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoHandle")
            .field("waiting", &self.waiting())
            .field("running", &self.running())
            .finish()
    }
}

impl IoHandle {
    /// Runs `fut` on the runtime once a permit is free; the result comes back through
    /// the returned task, which any executor can await.
    pub fn spawn<F, T>(&self, fut: F) -> IoTask<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let inner = self.inner.clone();
        inner.waiting.fetch_add(1, Ordering::Relaxed);
        self.inner.handle.spawn(async move {
            let permit = inner.permits.clone().acquire_owned().await;
            inner.waiting.fetch_sub(1, Ordering::Relaxed);
            // The semaphore is never closed, so a permit always comes.
            let Ok(permit) = permit else { return };
            inner.running.fetch_add(1, Ordering::Relaxed);
            let running = RunningGuard(&inner.running);
            let out = fut.await;
            // Not running any more once the caller can see the result (the guard also
            // covers a future that panics or is cancelled).
            drop(running);
            drop(permit);
            // The receiver may be gone (the caller stopped waiting): nothing to do.
            let _ = tx.send(out);
        });
        IoTask { rx }
    }

    /// Runs `fut` without a permit (for work that must not queue behind requests,
    /// such as timers of the uploader itself).
    pub fn spawn_unlimited<F, T>(&self, fut: F) -> IoTask<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.inner.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        IoTask { rx }
    }

    /// Spawned futures waiting for a permit.
    pub fn waiting(&self) -> u64 {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Spawned futures running now.
    pub fn running(&self) -> u64 {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// The tokio handle, for code that already runs on the I/O runtime.
    pub fn tokio(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }
}

struct RunningGuard<'a>(&'a AtomicU64);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The runtime stopped before the task finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskCancelled;

impl std::fmt::Display for TaskCancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the I/O runtime stopped before the request finished")
    }
}

impl std::error::Error for TaskCancelled {}

/// The result of work spawned on the I/O runtime; await it from any executor.
pub struct IoTask<T> {
    rx: oneshot::Receiver<T>,
}

impl<T> IoTask<T> {
    /// A task that is already done, with `value`.
    pub fn done(value: T) -> IoTask<T> {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(value);
        IoTask { rx }
    }
}

impl<T> Future for IoTask<T> {
    type Output = Result<T, TaskCancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map_err(|_| TaskCancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_bounded_and_results_come_back_to_another_executor() {
        let rt = IoRuntime::start(&IoRuntimeConfig {
            threads: 2,
            max_in_flight: 3,
        })
        .expect("runtime");
        let io = rt.handle();
        let peak = Arc::new(AtomicU64::new(0));
        let now = Arc::new(AtomicU64::new(0));
        let tasks: Vec<IoTask<u64>> = (0..20u64)
            .map(|i| {
                let (peak, now) = (peak.clone(), now.clone());
                io.spawn(async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    i * 2
                })
            })
            .collect();
        // Await from a glommio executor: the shard side of the bridge.
        let got = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.expect("not cancelled"));
                }
                out
            })
            .expect("executor")
            .join()
            .expect("join");
        assert_eq!(got, (0..20u64).map(|i| i * 2).collect::<Vec<_>>());
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "more than max_in_flight ran"
        );
        assert_eq!(io.running(), 0);
    }

    #[test]
    fn shutdown_cancels_work_in_flight() {
        let rt = IoRuntime::start(&IoRuntimeConfig::default()).expect("runtime");
        let task = rt.handle().spawn(async {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            1
        });
        rt.shutdown_now();
        let got = futures_lite::future::block_on(task);
        assert_eq!(got, Err(TaskCancelled));
    }
}
