//! `terrace-stress`: a seeded random workload checked against an in-memory model.
//!
//! [`op`] draws operations from a seeded RNG (a pure function of the seed and the
//! operation index, so a failure replays with `--seed`); [`model`] is the expected
//! state, a `BTreeMap` per table; [`runner`] applies each operation to the database
//! and to the model and compares every answer, failing with the operation index, the
//! operation and the last operations before it.

pub mod model;
pub mod op;
pub mod runner;
