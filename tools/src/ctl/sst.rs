//! Describes one SST file: its properties and, on request, its first entries.
//!
//! The file is opened read-only through the same seam the engine uses
//! (`terrace_tiering::LocalFile`, O_DIRECT reads on glommio's reactor) on a private
//! single-thread executor. glommio decides once per executor whether the device
//! supports polled I/O by probing the first DMA file opened, so
//! `terrace_tiering::probe_direct_io` runs first, on the SST's own directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, Context};
use glommio::{LocalExecutorBuilder, Placement};
use terrace::key::InternalKey;
use terrace::sst::{TableProperties, TableReader};
use terrace_tiering::{probe_direct_io, BlockCache, LocalFile};

use super::text::escape;

/// Block cache of the inspecting executor (only `--entries` reads data blocks).
const INSPECT_CACHE_BYTES: u64 = 8 << 20;
/// Bytes of a value shown per entry.
const VALUE_SHOWN_BYTES: usize = 64;

/// The file id an SST's name encodes (`000123.sst` is 123), 0 if none.
fn file_id(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// An internal key spelled `kg=3 table=0 "user-key" @seq put`.
pub fn describe_internal_key(ikey: &[u8]) -> String {
    let Some(k) = InternalKey::decode(ikey) else {
        return format!("<malformed internal key {}>", escape(ikey, 64));
    };
    let sk = k.state_key;
    if sk.len() < 4 {
        return format!("<malformed state key {}>", escape(sk, 64));
    }
    let kg = u16::from_be_bytes([sk[0], sk[1]]);
    let table = u16::from_be_bytes([sk[2], sk[3]]);
    let kind = match k.kind {
        0 => "del".to_string(),
        1 => "put".to_string(),
        other => format!("kind{other}"),
    };
    format!(
        "kg={kg} table={table} \"{}\" @{} {kind}",
        escape(&sk[4..], 128),
        k.seqno
    )
}

fn describe_properties(path: &Path, p: &TableProperties) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "file:          {}", path.display());
    let _ = writeln!(s, "size:          {} bytes", p.file_size);
    let _ = writeln!(
        s,
        "entries:       {} ({} deletions)",
        p.entry_count, p.deletion_count
    );
    let _ = writeln!(s, "data blocks:   {}", p.data_block_count);
    let _ = writeln!(s, "seqnos:        {}..={}", p.min_seqno, p.max_seqno);
    let _ = writeln!(
        s,
        "key groups:    {}..={}",
        p.first_key_group, p.last_key_group
    );
    let _ = writeln!(
        s,
        "raw bytes:     keys {} values {}",
        p.raw_key_bytes, p.raw_value_bytes
    );
    let _ = writeln!(s, "compression:   {:?}", p.compression);
    let _ = writeln!(
        s,
        "smallest key:  {}",
        describe_internal_key(&p.smallest_key)
    );
    let _ = write!(
        s,
        "largest key:   {}",
        describe_internal_key(&p.largest_key)
    );
    s
}

async fn inspect_on_executor(path: PathBuf, entries: usize) -> anyhow::Result<String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    probe_direct_io(dir)
        .await
        .with_context(|| format!("probing direct I/O in {}", dir.display()))?;
    let file = LocalFile::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let reader = Rc::new(
        TableReader::open(file_id(&path), path.clone(), Rc::new(file))
            .await
            .with_context(|| format!("reading {}", path.display()))?,
    );
    let mut out = describe_properties(&path, reader.properties());
    if entries > 0 {
        let mut it = reader.iter(Rc::new(BlockCache::new(INSPECT_CACHE_BYTES)));
        it.seek_to_first().await?;
        let mut shown = 0;
        while it.valid() && shown < entries {
            let _ = write!(
                out,
                "\n{}  =>  {}",
                describe_internal_key(it.key()),
                escape(it.value(), VALUE_SHOWN_BYTES)
            );
            shown += 1;
            it.next().await?;
        }
    }
    Ok(out)
}

/// Describes the SST at `path`, with its first `entries` entries.
pub fn inspect(path: &Path, entries: usize) -> anyhow::Result<String> {
    let path = path.to_path_buf();
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("terrace-ctl")
        .spawn(move || inspect_on_executor(path, entries))
        .map_err(|e| anyhow!("starting a glommio executor: {e}"))?
        .join()
        .map_err(|e| anyhow!("glommio executor failed: {e}"))?
}
