//! The flag parser accepts db_bench's spellings.

use clap::Parser;
use terrace_tools::bench::benchmark::Benchmark;
use terrace_tools::bench::flags::{CompressionType, Flags};

fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
    Flags::try_parse_from(std::iter::once("terrace-bench").chain(args.iter().copied()))
}

#[test]
fn defaults_are_documented_values() {
    let f = parse(&[]).expect("defaults parse");
    assert_eq!(f.num, 1_000_000);
    assert_eq!(f.reads(), 1_000_000);
    assert_eq!(f.value_size, 100);
    assert_eq!(f.key_size, 16);
    assert_eq!(f.threads, 0);
    assert_eq!(f.concurrency, 32);
    assert_eq!(f.batch_size, 32);
    assert_eq!(f.store.cache_size, 8 << 20);
    assert_eq!(f.store.bloom_bits, 10);
    assert_eq!(f.seek_nexts, 10);
    assert_eq!(f.store.compression_type, CompressionType::None);
    assert!(!f.histogram && !f.use_existing_db);
    assert_eq!(f.benchmarks.0[0], Benchmark::FillSeq);
    assert!(f.validate().is_ok());
}

#[test]
fn equals_and_space_forms_both_work() {
    let a = parse(&[
        "--num=5",
        "--value_size",
        "7",
        "--benchmarks=fillseq,readrandom",
    ])
    .expect("parse");
    assert_eq!((a.num, a.value_size), (5, 7));
    assert_eq!(
        a.benchmarks.0,
        vec![Benchmark::FillSeq, Benchmark::ReadRandom]
    );
    let b = parse(&["--reads", "-1", "--compression_type=zstd", "--json", "-"]).expect("parse");
    assert_eq!(b.reads, -1);
    assert_eq!(b.store.compression_type, CompressionType::Zstd);
    assert_eq!(b.json.as_deref(), Some("-"));
    let c = parse(&["--reads=10", "--num=100"]).expect("parse");
    assert_eq!(c.reads(), 10);
}

#[test]
fn booleans_take_db_bench_values() {
    assert!(parse(&["--histogram"]).expect("bare").histogram);
    assert!(parse(&["--histogram=1"]).expect("=1").histogram);
    assert!(parse(&["--histogram=true"]).expect("=true").histogram);
    assert!(!parse(&["--histogram=0"]).expect("=0").histogram);
    assert!(parse(&["--histogram=maybe"]).is_err());
    let f = parse(&["--use_existing_db=1", "--db=/tmp/x"]).expect("parse");
    assert!(f.use_existing_db && f.validate().is_ok());
}

#[test]
fn every_benchmark_name_parses_and_unknown_names_are_rejected() {
    let f = parse(&[
        "--benchmarks=fillseq,fillrandom,overwrite,readrandom,readseq,readmissing,\
seekrandom,updaterandom,multireadrandom,readwhilewriting,flush,compact,waitforcompaction,stats",
    ])
    .expect("parse");
    assert_eq!(f.benchmarks.0.len(), 14);
    assert!(f.benchmarks.0[10..].iter().all(|b| b.is_pseudo()));
    let err = parse(&["--benchmarks=fillseq,readrandomm"]).expect_err("unknown name");
    assert!(err.to_string().contains("readrandomm"), "{err}");
    assert!(parse(&["--no_such_flag=1"]).is_err());
}

#[test]
fn validate_rejects_inconsistent_flags() {
    let f = parse(&["--num=100000", "--key_size=4"]).expect("parse");
    assert!(f.validate().expect_err("too narrow").contains("--key_size"));
    assert!(parse(&["--use_existing_db"])
        .expect("parse")
        .validate()
        .is_err());
    assert!(parse(&["--concurrency=0"])
        .expect("parse")
        .validate()
        .is_err());
}
