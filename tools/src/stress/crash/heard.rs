//! What the parent learns from a child's lines: per child ([`Heard`]) how far it
//! got and what it was doing when killed, and over the run ([`Observed`]) which
//! phases the kills interrupted, how long opening took, and the longest a child
//! went without progress (a hang the kill would otherwise hide).

use std::fmt;
use std::time::Duration;

use super::protocol::{ChildLine, Phase};
use super::supervise::ChildRun;

/// A kill this soon after the child reported `opened` counts as "just opened".
const JUST_OPENED: Duration = Duration::from_millis(100);

/// What the parent heard from one child.
#[derive(Debug, Default)]
pub struct Heard {
    /// When `opened` arrived (since the spawn).
    pub opened_at: Option<Duration>,
    /// The highest `reserve` bound: no operation at or past it was issued.
    pub end: Option<u64>,
    /// The highest flush operation reported durable.
    pub durable: Option<u64>,
    /// `durable` lines.
    pub durable_acks: u64,
    /// The last phase sampled.
    pub phase: Option<Phase>,
    /// What `--sabotage` did.
    pub sabotage: Vec<String>,
    /// Errors the child reported before exiting.
    pub errors: Vec<String>,
    /// Of those, Corruption errors.
    pub corruption_errors: u64,
    /// `checkpoint-begin` lines: (id, operations below this index covered).
    pub checkpoints_begun: Vec<(u64, u64)>,
    /// `checkpoint` lines: (id, the checkpoints its call released).
    pub checkpoints_done: Vec<(u64, Vec<u64>)>,
    /// `release-begin` lines.
    pub releases_begun: Vec<u64>,
    /// `released` lines.
    pub releases_done: Vec<u64>,
    /// `gc-begin` lines.
    pub gc_begun: u64,
    /// `gc` lines.
    pub gc_done: u64,
    /// Objects those collections deleted.
    pub gc_deleted: u64,
    /// Time of the last sign of progress (open, a reservation, a durable flush).
    progress_at: Option<Duration>,
    /// The longest gap between two signs of progress.
    longest_gap: Duration,
}

impl Heard {
    /// Reads a finished child's lines.
    pub fn from(run: &ChildRun) -> Heard {
        let mut h = Heard::default();
        for (at, line) in &run.lines {
            if matches!(
                line,
                ChildLine::Opened { .. }
                    | ChildLine::Reserve { .. }
                    | ChildLine::Durable { .. }
                    | ChildLine::Checkpoint { .. }
                    | ChildLine::Released { .. }
                    | ChildLine::Gc { .. }
            ) {
                if let Some(prev) = h.progress_at {
                    h.longest_gap = h.longest_gap.max(at.saturating_sub(prev));
                }
                h.progress_at = Some(*at);
            }
            match line {
                ChildLine::Opened { .. } => h.opened_at = Some(*at),
                ChildLine::Reserve { end } => h.end = Some(h.end.map_or(*end, |e| e.max(*end))),
                ChildLine::Durable { op } => {
                    h.durable = Some(h.durable.map_or(*op, |d| d.max(*op)));
                    h.durable_acks += 1;
                }
                ChildLine::Phase(p) => h.phase = Some(*p),
                ChildLine::CheckpointBegin { id, op } => h.checkpoints_begun.push((*id, *op)),
                ChildLine::Checkpoint { id, released } => {
                    h.checkpoints_done.push((*id, released.clone()));
                }
                ChildLine::ReleaseBegin { id } => h.releases_begun.push(*id),
                ChildLine::Released { id } => h.releases_done.push(*id),
                ChildLine::GcBegin => h.gc_begun += 1,
                ChildLine::Gc { deleted } => {
                    h.gc_done += 1;
                    h.gc_deleted += deleted;
                }
                ChildLine::Sabotage { what } => h.sabotage.push(what.clone()),
                ChildLine::Error { kind, message } => {
                    if kind == "corruption" {
                        h.corruption_errors += 1;
                    }
                    h.errors.push(format!("{kind}: {message}"));
                }
            }
        }
        h
    }

    /// The checkpoint whose `Db::checkpoint` call the kill interrupted: (id, the
    /// operations below this index it covers). It may or may not have committed.
    pub fn checkpoint_in_flight(&self) -> Option<(u64, u64)> {
        self.checkpoints_begun
            .last()
            .filter(|(id, _)| !self.checkpoints_done.iter().any(|(d, _)| d == id))
            .copied()
    }

    /// The checkpoint whose `Db::release_checkpoint` call the kill interrupted.
    pub fn release_in_flight(&self) -> Option<u64> {
        self.releases_begun
            .last()
            .filter(|id| !self.releases_done.contains(id))
            .copied()
    }

    /// Whether the kill interrupted `Db::gc`.
    pub fn gc_in_flight(&self) -> bool {
        self.gc_begun > self.gc_done
    }

    /// The longest the child went without progress once open, the stretch up to
    /// the kill included.
    fn longest_stall(&self, killed_at: Duration) -> Duration {
        self.progress_at
            .map_or(Duration::ZERO, |last| killed_at.saturating_sub(last))
            .max(self.longest_gap)
    }
}

/// Which phases kills interrupted (a kill may count in several).
#[derive(Debug, Default)]
struct PhaseTally {
    opening: u64,
    just_opened: u64,
    flush: u64,
    compaction: u64,
    upload: u64,
    local_drop: u64,
    checkpoint: u64,
    release: u64,
    gc: u64,
    writes_only: u64,
}

impl PhaseTally {
    /// Counts a kill at `killed_at`; returns the phases' names.
    fn add(&mut self, heard: &Heard, killed_at: Duration) -> String {
        let Some(opened) = heard.opened_at else {
            self.opening += 1;
            return "opening".into();
        };
        let mut names = Vec::new();
        if killed_at.saturating_sub(opened) < JUST_OPENED {
            self.just_opened += 1;
            names.push("just opened");
        }
        let p = heard.phase.unwrap_or_default();
        for (on, count, name) in [
            (p.flush, &mut self.flush, "flush"),
            (p.compaction, &mut self.compaction, "compaction"),
            (p.upload, &mut self.upload, "upload"),
            (p.drop, &mut self.local_drop, "local drop"),
            (
                heard.checkpoint_in_flight().is_some(),
                &mut self.checkpoint,
                "checkpoint",
            ),
            (
                heard.release_in_flight().is_some(),
                &mut self.release,
                "release",
            ),
            (heard.gc_in_flight(), &mut self.gc, "gc"),
        ] {
            if on {
                *count += 1;
                names.push(name);
            }
        }
        if names.is_empty() {
            self.writes_only += 1;
            names.push("writes only");
        }
        names.join("+")
    }
}

/// What the kills of a run looked like.
#[derive(Debug, Default)]
pub struct Observed {
    phases: PhaseTally,
    open_ms: Vec<u64>,
    /// (stall, round, kill time)
    longest_stall: (Duration, u64, Duration),
    /// `durable` lines over all children.
    pub durable_acks: u64,
    /// Checkpoint mode: checkpoints taken, releases and collections done, objects
    /// deleted (printed only in that mode).
    pub checkpoints: Option<CheckpointTally>,
}

/// What the children of a checkpoint run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckpointTally {
    /// `Db::checkpoint` calls that returned.
    pub taken: u64,
    /// `Db::release_checkpoint` calls that returned.
    pub released: u64,
    /// `Db::gc` calls that returned.
    pub gcs: u64,
    /// SST objects they deleted.
    pub gc_deleted: u64,
}

impl Observed {
    /// Nothing observed yet; `checkpoints` for a run in checkpoint mode.
    pub fn new(checkpoints: bool) -> Observed {
        Observed {
            checkpoints: checkpoints.then(CheckpointTally::default),
            ..Observed::default()
        }
    }

    /// Records the kill of round `round` at `killed_at`; returns the phases it
    /// interrupted.
    pub fn kill(&mut self, round: u64, heard: &Heard, killed_at: Duration) -> String {
        self.durable_acks += heard.durable_acks;
        if let Some(t) = &mut self.checkpoints {
            t.taken += heard.checkpoints_done.len() as u64;
            t.released += heard.releases_done.len() as u64;
            t.gcs += heard.gc_done;
            t.gc_deleted += heard.gc_deleted;
        }
        self.open_ms
            .extend(heard.opened_at.map(|d| d.as_millis() as u64));
        let stall = heard.longest_stall(killed_at);
        if stall > self.longest_stall.0 {
            self.longest_stall = (stall, round, killed_at);
        }
        self.phases.add(heard, killed_at)
    }
}

impl fmt::Display for Observed {
    /// Summary lines, each starting with `terrace-stress crash:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.phases;
        write!(
            f,
            "terrace-stress crash: kills by phase: opening {}, just opened {}, flush {}, \
             compaction {}, upload {}, local drop {}, writes only {}",
            p.opening, p.just_opened, p.flush, p.compaction, p.upload, p.local_drop, p.writes_only
        )?;
        if let Some(t) = &self.checkpoints {
            write!(
                f,
                "\nterrace-stress crash: kills during a checkpoint {}, a release {}, a gc {}; \
                 the children took {} checkpoints, released {} by hand, collected garbage {} \
                 times ({} objects deleted)",
                p.checkpoint, p.release, p.gc, t.taken, t.released, t.gcs, t.gc_deleted
            )?;
        }
        let mut open = self.open_ms.clone();
        open.sort_unstable();
        if let (Some(first), Some(last)) = (open.first(), open.last()) {
            let (stall, round, killed) = self.longest_stall;
            write!(
                f,
                "\nterrace-stress crash: {} children opened the database, in {first}..{last} ms \
                 (median {} ms) after their spawn\n\
                 terrace-stress crash: the longest a child went without progress once open: \
                 {} ms (round {round}, killed at {} ms)",
                open.len(),
                open[open.len() / 2],
                stall.as_millis(),
                killed.as_millis()
            )?;
        }
        Ok(())
    }
}
