//! `terrace-stress`: seeded random workloads checked against models.
//!
//! Three runs share this module:
//! - the *model run* (no subcommand): [`op`] draws operations from a seeded RNG,
//!   [`model`] is the expected state (a `BTreeMap` per table), and [`runner`] applies
//!   each operation to the database and the model and compares every answer, failing
//!   with the operation index, the operation and the last operations before it;
//! - [`crash`]: a child process writes and is SIGKILLed at random moments; the parent
//!   reopens the database after each kill and checks that every durable write
//!   survived, nothing unwritten appeared, and each shard is a prefix of its history
//!   (with `--checkpoints`: that restoring the newest checkpoint gives exactly its
//!   state, and that retained checkpoints still restore);
//! - [`compaction`]: heavy overwrites and deletes on tiny levels, checking the LSM
//!   layout (`Db::live_files`) and the answers as compactions run.
//!
//! [`small_db`] builds the tiny, fault-injected database the last two torture,
//! [`store_audit`] compares its embedded object store with its live files,
//! [`report`] holds their one-line reports, [`watchdog`] turns hangs into failures.

pub mod compaction;
pub mod crash;
pub mod model;
pub mod op;
pub mod report;
pub mod runner;
pub mod small_db;
pub mod store_audit;
pub mod watchdog;
