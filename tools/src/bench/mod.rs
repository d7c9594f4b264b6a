//! `terrace-bench`: a db_bench-like benchmark of the Terrace engine.
//!
//! Data flows one way: [`flags`] parse the command line; for each entry of
//! `--benchmarks` the binary builds a [`workload::Plan`] (keys from [`keys`], values
//! from [`values`]), [`driver`] runs its workers in embedded or thread mode, each
//! worker counting into its own [`stats::OpStats`], and [`report`] prints the merged
//! result as db_bench's line (plus [`histogram`] and the JSON summary).
//! [`progress`] shows long phases on stderr. [`zipf`] skews read keys
//! (`--key_dist=zipf`); [`cpu`] measures the process's CPU time for ops per
//! CPU-second. [`checkpoints`] takes checkpoints (`checkpoint`,
//! `--checkpoint_every_secs`), [`restore`] opens the database from one
//! (`--restore_from`) and times its first read and warming, and [`timeline`]
//! samples every second of the run for [`plot`] (`--plot`).

pub mod benchmark;
pub mod checkpoints;
pub mod cpu;
pub mod driver;
pub mod engine_stats;
pub mod flags;
pub mod histogram;
pub mod keys;
pub mod plot;
pub mod progress;
pub mod report;
pub mod restore;
pub mod stats;
pub mod store;
pub mod timeline;
pub mod values;
pub mod workload;
pub mod zipf;
