//! What a crash child tells its parent, one line at a time on its stdout.
//!
//! Each line is written with a single `write` of far less than `PIPE_BUF` bytes, so a
//! SIGKILL never leaves half a line in the pipe, and what the child wrote before it
//! died is still read by the parent. The order of lines is what matters:
//! - `reserve N` comes *before* the child issues any operation with index `< N`, so
//!   the parent knows an upper bound of what the child may have written.
//! - `durable N` comes *after* `Db::flush` (operation `N`) returned, so every
//!   operation `<= N` is durable. A kill between the two only makes the parent assume
//!   less than is true.
//! - In checkpoint mode (`--checkpoints`), `checkpoint-begin ID OP` comes *before*
//!   `Db::checkpoint(ID)` is called with operations `< OP` issued, and `checkpoint ID
//!   released=...` *after* it returned (naming the checkpoints it released). Likewise
//!   `release-begin`/`released` around `Db::release_checkpoint` and `gc-begin`/`gc`
//!   around `Db::gc`. A begin without its end is what the kill interrupted.

use std::fmt;
use std::io::Write;

/// One line of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildLine {
    /// `Db::open` returned; the first operation will be `start`.
    Opened {
        /// First operation index of this child.
        start: u64,
    },
    /// The child may issue operations with index below `end`.
    Reserve {
        /// Exclusive upper bound of issued operations.
        end: u64,
    },
    /// `Db::flush` of operation `op` returned: operations `<= op` are durable.
    Durable {
        /// Index of the flush operation.
        op: u64,
    },
    /// What the database was doing (sampled every few milliseconds), to tell which
    /// phase a kill interrupted.
    Phase(Phase),
    /// `Db::checkpoint(id)` is about to be called; it covers operations `< op`.
    CheckpointBegin {
        /// The checkpoint id.
        id: u64,
        /// Operations below this index were issued before the call.
        op: u64,
    },
    /// `Db::checkpoint(id)` returned: the checkpoint is committed.
    Checkpoint {
        /// The checkpoint id.
        id: u64,
        /// Older checkpoints the call released (retention).
        released: Vec<u64>,
    },
    /// `Db::release_checkpoint(id)` is about to be called.
    ReleaseBegin {
        /// The checkpoint id.
        id: u64,
    },
    /// `Db::release_checkpoint(id)` returned.
    Released {
        /// The checkpoint id.
        id: u64,
    },
    /// `Db::gc` is about to be called.
    GcBegin,
    /// `Db::gc` returned.
    Gc {
        /// SST objects it deleted.
        deleted: u64,
    },
    /// The deliberate damage of `--sabotage` was done (checker self-test).
    Sabotage {
        /// What was done, with the key and operation involved.
        what: String,
    },
    /// The child stopped on an error from the database.
    Error {
        /// `Error::kind()` (`corruption`, `I/O error`, ...).
        kind: String,
        /// The error's message.
        message: String,
    },
}

/// Background work in progress at one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phase {
    /// A memtable is frozen and waiting for, or in, its flush (or `Db::flush` runs).
    pub flush: bool,
    /// L0 is at its compaction trigger, or a compaction finished since the last sample.
    pub compaction: bool,
    /// Files wait for, or are in, their upload.
    pub upload: bool,
    /// Local copies were dropped since the last sample.
    pub drop: bool,
}

impl fmt::Display for ChildLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildLine::Opened { start } => write!(f, "opened {start}"),
            ChildLine::Reserve { end } => write!(f, "reserve {end}"),
            ChildLine::Durable { op } => write!(f, "durable {op}"),
            ChildLine::Phase(p) => write!(
                f,
                "phase flush={} compaction={} upload={} drop={}",
                u8::from(p.flush),
                u8::from(p.compaction),
                u8::from(p.upload),
                u8::from(p.drop)
            ),
            ChildLine::CheckpointBegin { id, op } => write!(f, "checkpoint-begin {id} {op}"),
            ChildLine::Checkpoint { id, released } => {
                let list: Vec<String> = released.iter().map(u64::to_string).collect();
                let list = if list.is_empty() {
                    "-".to_string()
                } else {
                    list.join(",")
                };
                write!(f, "checkpoint {id} released={list}")
            }
            ChildLine::ReleaseBegin { id } => write!(f, "release-begin {id}"),
            ChildLine::Released { id } => write!(f, "released {id}"),
            ChildLine::GcBegin => write!(f, "gc-begin -"),
            ChildLine::Gc { deleted } => write!(f, "gc {deleted}"),
            ChildLine::Sabotage { what } => write!(f, "sabotage {what}"),
            ChildLine::Error { kind, message } => {
                // One line: the message must not break the framing.
                write!(f, "error {kind}: {}", message.replace('\n', " | "))
            }
        }
    }
}

impl ChildLine {
    /// Parses a line (without its newline); `None` for anything else.
    pub fn parse(line: &str) -> Option<ChildLine> {
        let (word, rest) = line.split_once(' ')?;
        let number = || rest.trim().parse::<u64>().ok();
        Some(match word {
            "opened" => ChildLine::Opened { start: number()? },
            "reserve" => ChildLine::Reserve { end: number()? },
            "durable" => ChildLine::Durable { op: number()? },
            "checkpoint-begin" => {
                let (id, op) = rest.split_once(' ')?;
                ChildLine::CheckpointBegin {
                    id: id.parse().ok()?,
                    op: op.parse().ok()?,
                }
            }
            "checkpoint" => {
                let (id, released) = rest.split_once(" released=")?;
                ChildLine::Checkpoint {
                    id: id.parse().ok()?,
                    released: match released {
                        "-" => Vec::new(),
                        list => list
                            .split(',')
                            .map(|n| n.parse().ok())
                            .collect::<Option<Vec<u64>>>()?,
                    },
                }
            }
            "release-begin" => ChildLine::ReleaseBegin { id: number()? },
            "released" => ChildLine::Released { id: number()? },
            "gc-begin" => ChildLine::GcBegin,
            "gc" => ChildLine::Gc { deleted: number()? },
            "phase" => {
                let mut p = Phase::default();
                for field in rest.split(' ') {
                    let (name, v) = field.split_once('=')?;
                    let on = v == "1";
                    match name {
                        "flush" => p.flush = on,
                        "compaction" => p.compaction = on,
                        "upload" => p.upload = on,
                        "drop" => p.drop = on,
                        _ => return None,
                    }
                }
                ChildLine::Phase(p)
            }
            "sabotage" => ChildLine::Sabotage {
                what: rest.to_string(),
            },
            "error" => {
                let (kind, message) = rest.split_once(": ")?;
                ChildLine::Error {
                    kind: kind.to_string(),
                    message: message.to_string(),
                }
            }
            _ => return None,
        })
    }

    /// Writes the line to stdout in one `write` and flushes it. A failure means the
    /// parent is gone; the child then has nobody to work for and exits.
    pub fn send(&self) {
        let line = format!("{self}\n");
        let mut out = std::io::stdout().lock();
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            std::process::exit(3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for line in [
            ChildLine::Opened { start: 7 },
            ChildLine::Reserve { end: 1 << 40 },
            ChildLine::Durable { op: 0 },
            ChildLine::Phase(Phase {
                flush: true,
                compaction: false,
                upload: true,
                drop: false,
            }),
            ChildLine::Sabotage {
                what: "deleted k000001 (durable put #12)".into(),
            },
            ChildLine::CheckpointBegin { id: 3, op: 900 },
            ChildLine::Checkpoint {
                id: 3,
                released: vec![],
            },
            ChildLine::Checkpoint {
                id: 9,
                released: vec![5, 6],
            },
            ChildLine::ReleaseBegin { id: 4 },
            ChildLine::Released { id: 4 },
            ChildLine::GcBegin,
            ChildLine::Gc { deleted: 17 },
            ChildLine::Error {
                kind: "corruption".into(),
                message: "bad block: crc".into(),
            },
        ] {
            assert_eq!(ChildLine::parse(&line.to_string()), Some(line));
        }
        assert_eq!(ChildLine::parse("durable x"), None);
        assert_eq!(ChildLine::parse("hello"), None);
    }
}
