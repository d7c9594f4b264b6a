//! Modules shared by Terrace's command-line tools (`terrace-bench`, `terrace-ctl`,
//! `terrace-stress`, `terrace-nexmark`) and their integration tests.
//!
//! This library exists so the binaries stay thin and the flag parser and report
//! formats can be tested directly; it is not an API for other crates.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod bench;
pub mod ctl;
pub mod join;
pub mod nexmark;
pub mod stress;
