//! Runs one crash child and SIGKILLs it at a chosen moment.
//!
//! The child's stdout is a pipe drained by a thread of its own (so the child never
//! blocks on a full pipe and lines are timestamped when they arrive); its stderr goes
//! to a file for diagnostics. After the kill the child is reaped (`wait`), then the
//! drain thread runs to the end of the pipe, so every line the child wrote before it
//! died is seen.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::protocol::ChildLine;

/// How a child ended.
#[derive(Clone, Copy, Debug)]
pub enum End {
    /// Killed by us after this long.
    Killed(Duration),
    /// Exited by itself (an error, a panic, or a crash of its own).
    Exited(ExitStatus),
}

/// A finished child: its lines, each with the time it arrived (since the spawn).
#[derive(Debug)]
pub struct ChildRun {
    /// Protocol lines in order.
    pub lines: Vec<(Duration, ChildLine)>,
    /// Lines that did not parse (there should be none).
    pub garbage: Vec<String>,
    /// How it ended.
    pub end: End,
}

/// Runs `exe args`, kills it `kill_after` after the spawn unless it exits first, and
/// collects what it said. Stderr is written to `stderr_path` (replaced).
pub fn run_and_kill(
    exe: &Path,
    args: &[String],
    kill_after: Duration,
    stderr_path: &Path,
) -> anyhow::Result<ChildRun> {
    let stderr = std::fs::File::create(stderr_path)
        .with_context(|| format!("creating {}", stderr_path.display()))?;
    let start = terrace_tiering::clock::now();
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .with_context(|| format!("spawning {}", exe.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let drain = std::thread::spawn(move || drain(stdout, start));

    let end = loop {
        if let Some(status) = child.try_wait().context("waiting for the child")? {
            break End::Exited(status);
        }
        let elapsed = start.elapsed();
        if elapsed >= kill_after {
            // SIGKILL. It may have exited in between; then `wait` tells how.
            let _ = child.kill();
            let status = child.wait().context("reaping the killed child")?;
            break if killed_by_signal(&status) {
                End::Killed(elapsed)
            } else {
                End::Exited(status)
            };
        }
        std::thread::sleep((kill_after - elapsed).min(Duration::from_millis(2)));
    };
    let (lines, garbage) = drain
        .join()
        .map_err(|_| anyhow::anyhow!("the thread reading the child's stdout panicked"))?;
    Ok(ChildRun {
        lines,
        garbage,
        end,
    })
}

type Drained = (Vec<(Duration, ChildLine)>, Vec<String>);

fn drain(stdout: std::process::ChildStdout, start: Instant) -> Drained {
    let mut lines = Vec::new();
    let mut garbage = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        match ChildLine::parse(&line) {
            Some(l) => lines.push((start.elapsed(), l)),
            None => garbage.push(line),
        }
    }
    (lines, garbage)
}

#[cfg(unix)]
fn killed_by_signal(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}

#[cfg(not(unix))]
fn killed_by_signal(status: &ExitStatus) -> bool {
    status.code().is_none()
}
