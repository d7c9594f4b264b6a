//! Turns a hang into a failure: if a guarded step does not finish in time, the
//! process reports what hung and exits with status 2 (the directory stays for
//! inspection, since nothing cleans up after `exit`).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Exit status of a run stopped by the watchdog.
pub const HANG_EXIT_CODE: i32 = 2;

/// Guards one step; dropping it disarms it.
pub struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Exits the process unless dropped within `limit`; `what` names the step.
    pub fn arm(limit: Duration, what: String) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                let msg = format!("terrace-stress: HANG: {what} did not finish within {limit:?}");
                println!("{msg}");
                eprintln!("{msg}");
                std::process::exit(HANG_EXIT_CODE);
            }
        });
        Watchdog {
            disarm: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
