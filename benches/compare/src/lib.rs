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
//! [`keys`], [`values`], [`stats`] and [`histogram`] are `terrace-tools`' own `bench`
//! modules, re-exported: every engine draws exactly the keys and values
//! `terrace-bench` draws. The flags and the result-line format are this crate's
//! (they carry engine-specific settings) and must stay in step with terrace-bench's.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod benchmark;
pub mod driver;
pub mod engine;
pub mod flags;
pub mod report;
pub mod run;

// Key and value generation, per-op statistics and histograms are terrace-bench's own
// code, so every engine draws exactly the keys and values terrace-bench draws.
pub use terrace_tools::bench::{histogram, keys, stats, values};
