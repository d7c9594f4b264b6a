//! Shared pieces of the side-by-side harness: `rocksdb-bench` and `cobble-bench` run
//! the same db_bench-style workloads as `terrace-bench`, with the same flags, keys,
//! values and result lines, so `run.sh` can compare them line for line.
//!
//! Data flows one way: [`flags`] parse the command line; for each entry of
//! `--benchmarks` [`driver`] runs the workload over an [`engine::Engine`] from
//! `--threads` OS threads (keys from [`keys`], values from [`values`]), each thread
//! counting into its own [`stats::OpStats`]; [`report`] prints the merged result as
//! db_bench's line. [`run`] is the `main` both binaries share.
//!
//! The library exists only to share code between the two binaries, so it uses
//! `anyhow` as a binary would.
//!
//! This crate deliberately depends on nothing in the Terrace workspace. [`keys`],
//! [`values`] and the result-line format are copies of `terrace-tools`' `bench`
//! modules (drift would show as a different `found` count in `run.sh`'s output),
//! so keep them in step by hand.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod benchmark;
pub mod driver;
pub mod engine;
pub mod flags;
pub mod histogram;
pub mod keys;
pub mod report;
pub mod run;
pub mod stats;
pub mod values;
