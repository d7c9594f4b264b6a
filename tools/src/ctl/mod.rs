//! `terrace-ctl`: look inside a Terrace database or one of its SST files.
//!
//! [`meta`] reads the database's fixed parameters so the tool can open a database
//! without being told its shard count; [`sst`] opens one SST read-only on a private
//! glommio executor and describes it; [`text`] spells keys and values for a terminal
//! and parses keys from the command line.

pub mod meta;
pub mod sst;
pub mod text;
