//! Compaction: a pure policy that picks work from a version, and a worker that
//! carries it out.
//!
//! The policy ([`policy::choose`]) sees only file descriptions and sizes, so it is
//! tested and simulated with no I/O. The worker ([`run`]) merges the chosen inputs
//! into new SSTs, drops shadowed versions (and tombstones at the bottom), and returns
//! the version edit that the shard logs and installs.

pub(crate) mod policy;
pub(crate) mod run;

pub(crate) use policy::{choose, Choice, CompactionConfig};
