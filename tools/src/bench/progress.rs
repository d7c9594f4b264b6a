//! Progress of a long benchmark on stderr, like db_bench's `... finished N ops`.
//!
//! Workers add their finished operations to one shared counter in steps of
//! [`REPORT_EVERY_OPS`] (so the counter's cache line is not bounced on every
//! operation). A reporter thread prints the counter: every second, rewriting one
//! line in place, when stderr is a terminal; otherwise every [`PIPE_INTERVAL`] on
//! a line of its own, so logs of short runs (and tests) stay clean.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Operations a worker counts locally before adding them to the shared counter.
pub const REPORT_EVERY_OPS: u64 = 64;
const TTY_INTERVAL: Duration = Duration::from_secs(1);
const PIPE_INTERVAL: Duration = Duration::from_secs(10);

/// The shared counter workers report to.
#[derive(Debug, Default)]
pub struct Progress {
    done_ops: AtomicU64,
}

impl Progress {
    /// Adds finished operations.
    #[inline]
    pub fn add(&self, ops: u64) {
        self.done_ops.fetch_add(ops, Ordering::Relaxed);
    }

    /// Operations reported so far.
    pub fn done(&self) -> u64 {
        self.done_ops.load(Ordering::Relaxed)
    }
}

/// Batches a worker's progress reports.
#[derive(Debug)]
pub struct LocalProgress {
    shared: Arc<Progress>,
    pending: u64,
}

impl LocalProgress {
    /// A local batcher in front of `shared`.
    pub fn new(shared: Arc<Progress>) -> LocalProgress {
        LocalProgress { shared, pending: 0 }
    }

    /// Counts `ops` finished operations.
    #[inline]
    pub fn add(&mut self, ops: u64) {
        self.pending += ops;
        if self.pending >= REPORT_EVERY_OPS {
            self.shared.add(self.pending);
            self.pending = 0;
        }
    }
}

impl Drop for LocalProgress {
    fn drop(&mut self) {
        self.shared.add(self.pending);
    }
}

/// A running reporter; stops (and clears its line) when dropped.
pub struct Reporter {
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    /// Starts reporting `progress` of benchmark `name` on stderr.
    pub fn start(name: &str, progress: Arc<Progress>) -> Reporter {
        let (stop, stopped) = flume::bounded::<()>(1);
        let tty = std::io::stderr().is_terminal();
        let name = name.to_string();
        let thread = std::thread::Builder::new()
            .name("bench-progress".into())
            .spawn(move || report_loop(&name, &progress, &stopped, tty))
            .ok();
        Reporter {
            stop: Some(stop),
            thread,
        }
    }
}

fn report_loop(name: &str, progress: &Progress, stopped: &flume::Receiver<()>, tty: bool) {
    let interval = if tty { TTY_INTERVAL } else { PIPE_INTERVAL };
    let start = terrace_tiering::clock::now();
    let mut printed = false;
    // Anything but a timeout (a message, or the sender dropped) means stop.
    while let Err(flume::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        let done = progress.done();
        let secs = start.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-9);
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(
                err,
                "\r{name}: ... finished {done} ops ({rate:.0} ops/sec){:10}",
                ""
            );
            printed = true;
        } else {
            let _ = writeln!(
                err,
                "{name}: ... finished {done} ops after {secs:.0} s ({rate:.0} ops/sec)"
            );
        }
        let _ = err.flush();
    }
    if printed {
        let _ = write!(std::io::stderr(), "\r{:80}\r", "");
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        // Dropping the sender wakes the reporter at once.
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
