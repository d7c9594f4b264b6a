//! The one-line reports of `terrace-stress crash` and `terrace-stress compaction`.
//! Scripts and tests parse these lines; change them only together with
//! [`CrashReport::parse`] and [`CompactionReport::parse`].

use std::fmt;

/// `terrace-stress crash: kills K reopens R keys verified V lost L corrupt C in T s`;
/// with `--checkpoints`, `... reopens R restores S checkpoints verified P keys
/// verified ...`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CrashReport {
    /// Children killed.
    pub kills: u64,
    /// Opens of the database directory after a kill (by the checking parent).
    pub reopens: u64,
    /// Checkpoint mode's counts.
    pub checkpoint: Option<CheckpointCounts>,
    /// Keys read back and judged, over all rounds.
    pub keys_verified: u64,
    /// Durable writes missing, older values or deleted keys back, shards that are no
    /// prefix of their history.
    pub lost: u64,
    /// Values no operation wrote, unknown keys, read paths that disagree, Corruption
    /// errors.
    pub corrupt: u64,
    /// Wall time of the run.
    pub seconds: f64,
}

/// What checkpoint mode adds to the crash report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CheckpointCounts {
    /// Restores of the newest checkpoint into a fresh directory, continued by the
    /// next child.
    pub restores: u64,
    /// Checkpoints restored and compared with their state in full (the restores
    /// above and read-only opens of retained checkpoints).
    pub checkpoints_verified: u64,
}

const CRASH_PREFIX: &str = "terrace-stress crash:";
const COMPACTION_PREFIX: &str = "terrace-stress compaction:";

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{CRASH_PREFIX} kills {} reopens {}",
            self.kills, self.reopens
        )?;
        if let Some(c) = &self.checkpoint {
            write!(
                f,
                " restores {} checkpoints verified {}",
                c.restores, c.checkpoints_verified
            )?;
        }
        write!(
            f,
            " keys verified {} lost {} corrupt {} in {:.1} s",
            self.keys_verified, self.lost, self.corrupt, self.seconds
        )
    }
}

impl CrashReport {
    /// Parses a report line.
    pub fn parse(line: &str) -> Option<CrashReport> {
        if let Some(n) = fields(
            line,
            CRASH_PREFIX,
            &[
                "kills",
                "reopens",
                "restores",
                "checkpoints verified",
                "keys verified",
                "lost",
                "corrupt",
                "in",
            ],
        ) {
            return Some(CrashReport {
                kills: n[0] as u64,
                reopens: n[1] as u64,
                checkpoint: Some(CheckpointCounts {
                    restores: n[2] as u64,
                    checkpoints_verified: n[3] as u64,
                }),
                keys_verified: n[4] as u64,
                lost: n[5] as u64,
                corrupt: n[6] as u64,
                seconds: n[7],
            });
        }
        let n = fields(
            line,
            CRASH_PREFIX,
            &["kills", "reopens", "keys verified", "lost", "corrupt", "in"],
        )?;
        Some(CrashReport {
            kills: n[0] as u64,
            reopens: n[1] as u64,
            checkpoint: None,
            keys_verified: n[2] as u64,
            lost: n[3] as u64,
            corrupt: n[4] as u64,
            seconds: n[5],
        })
    }

    /// The report line in a program's output.
    pub fn find(output: &str) -> Option<CrashReport> {
        output.lines().find_map(CrashReport::parse)
    }
}

/// `terrace-stress compaction: ops N checks M files seen F violations V in T s`
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CompactionReport {
    /// Operations applied.
    pub ops: u64,
    /// Invariant checks run (file layout and sampled or full reads).
    pub checks: u64,
    /// Distinct SSTs seen live.
    pub files_seen: u64,
    /// Broken invariants and wrong answers.
    pub violations: u64,
    /// Wall time of the run.
    pub seconds: f64,
}

impl fmt::Display for CompactionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{COMPACTION_PREFIX} ops {} checks {} files seen {} violations {} in {:.1} s",
            self.ops, self.checks, self.files_seen, self.violations, self.seconds
        )
    }
}

impl CompactionReport {
    /// Parses a report line.
    pub fn parse(line: &str) -> Option<CompactionReport> {
        let n = fields(
            line,
            COMPACTION_PREFIX,
            &["ops", "checks", "files seen", "violations", "in"],
        )?;
        Some(CompactionReport {
            ops: n[0] as u64,
            checks: n[1] as u64,
            files_seen: n[2] as u64,
            violations: n[3] as u64,
            seconds: n[4],
        })
    }

    /// The report line in a program's output.
    pub fn find(output: &str) -> Option<CompactionReport> {
        output.lines().find_map(CompactionReport::parse)
    }
}

/// The numbers after each label, in order, of `prefix label n label n ... s`.
fn fields(line: &str, prefix: &str, labels: &[&str]) -> Option<Vec<f64>> {
    let mut rest = line.trim().strip_prefix(prefix)?.trim_start();
    let mut out = Vec::with_capacity(labels.len());
    for label in labels {
        rest = rest.strip_prefix(label)?.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        out.push(rest[..end].parse().ok()?);
        rest = rest[end..].trim_start();
    }
    (rest == "s").then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse_back() {
        let c = CrashReport {
            kills: 1000,
            reopens: 1000,
            checkpoint: None,
            keys_verified: 3_000_000,
            lost: 0,
            corrupt: 2,
            seconds: 812.3,
        };
        let line = c.to_string();
        assert_eq!(
            line,
            "terrace-stress crash: kills 1000 reopens 1000 keys verified 3000000 lost 0 corrupt 2 in 812.3 s"
        );
        assert_eq!(CrashReport::parse(&line), Some(c));
        let k = CrashReport {
            checkpoint: Some(CheckpointCounts {
                restores: 150,
                checkpoints_verified: 390,
            }),
            ..c
        };
        let line = k.to_string();
        assert_eq!(
            line,
            "terrace-stress crash: kills 1000 reopens 1000 restores 150 checkpoints verified 390 keys verified 3000000 lost 0 corrupt 2 in 812.3 s"
        );
        assert_eq!(CrashReport::parse(&line), Some(k));
        let p = CompactionReport {
            ops: 5,
            checks: 6,
            files_seen: 7,
            violations: 0,
            seconds: 1.5,
        };
        assert_eq!(
            CompactionReport::find(&format!("noise\n{p}\nmore")),
            Some(p)
        );
        assert_eq!(CrashReport::parse("terrace-stress crash: kills x"), None);
    }
}
