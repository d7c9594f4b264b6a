//! Terrace: an embeddable, sharded LSM state engine for stream processors.
//!
//! See `docs/ARCHITECTURE.md` for the design.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod error;
pub mod key;
pub mod options;
pub mod sst;

pub use error::{Error, ErrorDetail, ErrorKind, Result};
pub use key::TableId;
pub use options::{Compression, Options};
