//! The fixed parameters of an existing database, read from its `TERRACE-META`.
//!
//! `Db::open` refuses options whose shard count, key-group count or key-group prefix
//! differ from those the database was created with, and a table must be declared to
//! be used. A tool that opens someone else's database therefore reads them first.
//! The layout (all integers little-endian) is the engine's `meta.rs`:
//!
//! ```text
//! magic "TRCMETA\0" | version u32 | shards u32 | max_key_groups u16 |
//! key_group_prefix_bytes u32 (0 = whole key) | table count u16 |
//! per table: id u16, name (u32 length + bytes) | crc32 u32
//! ```
//! The checksum is left to the engine, which verifies the file again when it opens.

use std::path::Path;

use anyhow::{bail, Context};

/// What a database was created with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbParams {
    /// Shard count.
    pub shards: u32,
    /// Key-group count.
    pub max_key_groups: u16,
    /// Key-group prefix, if any.
    pub key_group_prefix_bytes: Option<u32>,
    /// Table names, in id order.
    pub tables: Vec<String>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            bail!("metadata ends inside a field at offset {}", self.pos);
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> anyhow::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> anyhow::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parses the bytes of a `TERRACE-META` file.
pub fn parse(bytes: &[u8]) -> anyhow::Result<DbParams> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(8)? != b"TRCMETA\0" {
        bail!("not a Terrace metadata file (bad magic)");
    }
    let version = r.u32()?;
    if version != 1 {
        bail!("metadata format version {version}; this tool reads version 1");
    }
    let shards = r.u32()?;
    let max_key_groups = r.u16()?;
    let prefix = r.u32()?;
    let n = r.u16()?;
    let mut tables = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let id = r.u16()?;
        let len = r.u32()? as usize;
        let name = String::from_utf8(r.take(len)?.to_vec()).context("table name is not UTF-8")?;
        tables.push((id, name));
    }
    tables.sort();
    Ok(DbParams {
        shards,
        max_key_groups,
        key_group_prefix_bytes: (prefix != 0).then_some(prefix),
        tables: tables.into_iter().map(|(_, n)| n).collect(),
    })
}

/// Reads the parameters of the database in `dir`.
pub fn load(dir: &Path) -> anyhow::Result<DbParams> {
    let path = dir.join("TERRACE-META");
    let bytes = std::fs::read(&path)
        .with_context(|| format!("reading {} (is this a Terrace database?)", path.display()))?;
    parse(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Options that open the database in `dir` as it was created.
pub fn options_for(dir: &Path) -> anyhow::Result<terrace::Options> {
    let p = load(dir)?;
    let mut opts = terrace::Options::new(dir);
    opts.create_if_missing = false;
    opts.shards = p.shards;
    opts.max_key_groups = p.max_key_groups;
    opts.key_group_prefix_bytes = p.key_group_prefix_bytes;
    opts.tables = p.tables;
    opts.pin_shards = false;
    Ok(opts)
}
