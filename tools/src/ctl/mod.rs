//! `terrace-ctl`: look inside a Terrace database or one of its SST files.
//!
//! Databases are opened with `terrace::Options::for_existing`, so the tool needs no
//! shard count or table list; [`sst`] opens one SST read-only on a private glommio
//! executor and describes it; [`text`] spells keys and values for a terminal and
//! parses keys from the command line.

pub mod sst;
pub mod text;
