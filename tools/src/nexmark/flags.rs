//! Command-line flags of `terrace-nexmark` (and of its RocksDB twin): the query,
//! mode and event count, plus `terrace-bench`'s store flags.

use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;

use super::{Mode, QueryName};
use crate::bench::flags::StoreFlags;

/// `--query`: one query or `all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuerySelection(pub Vec<QueryName>);

impl FromStr for QuerySelection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(QuerySelection(QueryName::ALL.to_vec()));
        }
        s.split(',')
            .map(|q| q.trim().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(QuerySelection)
    }
}

/// Largest `--batch_events`.
pub const MAX_BATCH_EVENTS: usize = terrace::MAX_KEYED_BATCH_RECORDS;

/// Every flag of `terrace-nexmark`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "terrace-nexmark",
    about = "Nexmark queries (q5 q7 q18 q19 q20) on Terrace's keyed execution",
    rename_all = "snake_case"
)]
pub struct NexmarkFlags {
    /// `q5`, `q7`, `q18`, `q19`, `q20`, a comma-separated list, or `all`.
    #[arg(long, default_value = "all")]
    pub query: QuerySelection,

    /// `per-event` (one state call at a time), `batched` (pre-aggregate per
    /// micro-batch, one multi_get, then the writes), both on the shards through keyed
    /// execution, or `per-event-db` (one call at a time through `Db` from the
    /// driver's thread; Terrace only).
    #[arg(long, value_enum, default_value_t = Mode::PerEvent)]
    pub mode: Mode,

    /// Events generated per query (persons, auctions and bids, 1:3:46).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,

    /// Records per keyed batch (one cross-thread hop), which is also the
    /// micro-batch of `--mode=batched`.
    #[arg(long, default_value_t = 1024)]
    pub batch_events: usize,

    /// Micro-batches one shard runs at once in `--mode=batched` (Terrace's
    /// `Db::keyed_concurrent`: a batch waiting on the object store does not hold up
    /// batches of other keys; records of one key stay in order). 1 runs them one at a
    /// time. RocksDB's reads block their thread, so rocksdb-nexmark ignores it.
    #[arg(long, default_value_t = 16)]
    pub concurrent_batches: usize,

    /// Generate every event before the clock starts (default). The generator
    /// makes ~2M events/s on one thread: generating inside the timed loop bounds the
    /// cheap queries of every engine by it, and takes a core from the shards.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pregenerate: bool,

    /// Directory under which each query's database is made (and removed after);
    /// default the system's temporary directory.
    #[arg(long)]
    pub db: Option<PathBuf>,

    /// Seed of the injected object-store faults.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Store, cache and LSM flags, as terrace-bench's.
    #[command(flatten)]
    pub store: StoreFlags,
}

impl NexmarkFlags {
    /// Checks ranges clap cannot express; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.events == 0 {
            return Err("--events must be at least 1".into());
        }
        if self.batch_events == 0 || self.batch_events > MAX_BATCH_EVENTS {
            return Err(format!(
                "--batch_events must be within 1..={MAX_BATCH_EVENTS}"
            ));
        }
        if self.concurrent_batches == 0
            || self.concurrent_batches > terrace::MAX_KEYED_CONCURRENT_BATCHES
        {
            return Err(format!(
                "--concurrent_batches must be within 1..={}",
                terrace::MAX_KEYED_CONCURRENT_BATCHES
            ));
        }
        self.store.validate()
    }
}

/// One result line: `q18          : 123456 events/s 2000000 events 8.1 cpu-s/M events 310.2 MB state`.
pub fn result_line(
    query: QueryName,
    events: u64,
    elapsed_secs: f64,
    cpu_secs: f64,
    state_bytes: u64,
) -> String {
    let rate = events as f64 / elapsed_secs.max(1e-9);
    let cpu_per_m = cpu_secs / (events as f64 / 1e6);
    format!(
        "{:<12} : {:.0} events/s {} events {:.1} cpu-s/M events {:.1} MB state",
        query.name(),
        rate,
        events,
        cpu_per_m,
        state_bytes as f64 / 1e6
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_the_documented_shape() {
        let line = result_line(QueryName::Q18, 2_000_000, 16.2, 16.2, 310_200_000);
        assert_eq!(
            line,
            "q18          : 123457 events/s 2000000 events 8.1 cpu-s/M events 310.2 MB state"
        );
    }

    #[test]
    fn flags_parse_queries_modes_and_store_flags() {
        let f = NexmarkFlags::try_parse_from([
            "terrace-nexmark",
            "--query=q18",
            "--mode=batched",
            "--events=5",
            "--object_store_latency_ms=30",
            "--local_disk_budget=1000",
            "--cache_size=65536",
        ])
        .unwrap();
        assert_eq!(f.query.0, vec![QueryName::Q18]);
        assert_eq!(f.mode, Mode::Batched);
        assert_eq!(f.events, 5);
        assert_eq!(f.store.object_store_latency_ms, 30.0);
        assert_eq!(f.store.local_disk_budget, Some(1000));
        assert_eq!(f.store.cache_size, 65536);
        let all = NexmarkFlags::try_parse_from(["terrace-nexmark", "--query=all"]).unwrap();
        assert_eq!(all.query.0, QueryName::ALL.to_vec());
        assert!(NexmarkFlags::try_parse_from(["terrace-nexmark", "--query=q6"]).is_err());
        assert!(NexmarkFlags::try_parse_from(["terrace-nexmark", "--mode=fast"]).is_err());
        for (arg, mode) in [
            ("--mode=per-event", Mode::PerEvent),
            ("--mode=per-event-db", Mode::PerEventDb),
        ] {
            let f = NexmarkFlags::try_parse_from(["terrace-nexmark", arg]).unwrap();
            assert_eq!(f.mode, mode);
        }
    }
}
