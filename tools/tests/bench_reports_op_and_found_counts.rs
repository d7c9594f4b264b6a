//! Runs the `terrace-bench` binary on tiny databases and checks what it reports:
//! every result line parses as db_bench's format, operation counts match the flags,
//! and found counts match what the database must hold.

use std::path::Path;
use std::process::{Command, Output};

use terrace_tools::bench::report::{parse_line, ParsedLine};

const NUM: u64 = 2000;

fn bench(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_terrace-bench"))
        .args(args)
        .output()
        .expect("run terrace-bench");
    assert!(
        out.status.success(),
        "terrace-bench {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn results(out: &Output) -> Vec<ParsedLine> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" micros/op "))
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("unparsable result line {l:?}")))
        .collect()
}

fn find<'a>(results: &'a [ParsedLine], name: &str) -> &'a ParsedLine {
    results
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no {name} line in {results:?}"))
}

fn db_arg(dir: &Path) -> String {
    format!("--db={}", dir.join("db").display())
}

/// After fillseq every key exists: reads find all, missing keys find none, readseq
/// sees each key once.
fn check_after_fillseq(r: &[ParsedLine]) {
    assert_eq!(find(r, "fillseq").ops, NUM);
    assert_eq!(find(r, "readrandom").found, Some((NUM, NUM)));
    assert_eq!(find(r, "readmissing").found, Some((0, NUM)));
    assert_eq!(find(r, "readseq").ops, NUM);
    assert_eq!(find(r, "seekrandom").found, Some((NUM, NUM)));
    assert_eq!(find(r, "multireadrandom").found, Some((NUM, NUM)));
    assert_eq!(find(r, "updaterandom").found, Some((NUM, NUM)));
    assert_eq!(find(r, "readwhilewriting").found, Some((NUM, NUM)));
    for line in r {
        assert!(line.seconds >= 0.0 && line.ops > 0, "{line:?}");
    }
}

const ALL_WORKLOADS: &str = "--benchmarks=fillseq,readrandom,readmissing,readseq,seekrandom,\
multireadrandom,updaterandom,readwhilewriting,flush,compact,waitforcompaction,stats";

#[test]
fn embedded_mode_finds_every_filled_key_and_no_missing_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bench(&[
        ALL_WORKLOADS,
        "--num=2000",
        "--shards=2",
        "--concurrency=4",
        "--histogram",
        "--pin_shards=false",
        &db_arg(dir.path()),
    ]);
    let r = results(&out);
    check_after_fillseq(&r);
    assert_eq!(find(&r, "compact").ops, 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Microseconds per read:"), "{stdout}");
    assert!(stdout.contains("Percentiles: P50: "), "{stdout}");
    assert!(stdout.starts_with("Keys:       16 bytes each"), "{stdout}");
}

#[test]
fn thread_mode_finds_every_filled_key_and_no_missing_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bench(&[
        ALL_WORKLOADS,
        "--num=2000",
        "--shards=2",
        "--threads=2",
        "--concurrency=3",
        "--batch_size=7",
        "--pin_shards=false",
        &db_arg(dir.path()),
    ]);
    check_after_fillseq(&results(&out));
}

#[test]
fn fillrandom_writes_num_ops_and_reads_find_a_deterministic_subset() {
    let run = |threads: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = bench(&[
            "--benchmarks=fillrandom,readrandom,readseq",
            "--num=2000",
            "--shards=2",
            "--seed=7",
            threads,
            "--pin_shards=false",
            &db_arg(dir.path()),
        ]);
        let r = results(&out);
        assert_eq!(find(&r, "fillrandom").ops, NUM);
        let distinct = find(&r, "readseq").ops;
        // Drawing NUM keys out of NUM with repetition leaves about 63% distinct.
        assert!((1100..1450).contains(&distinct), "{distinct} distinct keys");
        (distinct, find(&r, "readrandom").found)
    };
    // Keys depend on the seed only, not on how the work is split.
    assert_eq!(run("--threads=0"), run("--threads=3"));
}

#[test]
fn json_to_stdout_moves_the_report_to_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bench(&[
        "--benchmarks=fillseq,readrandom",
        "--num=500",
        "--shards=2",
        "--json=-",
        "--pin_shards=false",
        &db_arg(dir.path()),
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let benches = doc["benchmarks"].as_array().expect("benchmarks array");
    assert_eq!(benches.len(), 2);
    assert_eq!(benches[0]["name"], "fillseq");
    assert_eq!(benches[0]["ops"], 500);
    assert_eq!(benches[1]["found"], serde_json::json!([500, 500]));
    assert!(benches[1]["latency"]["p99_us"].as_f64().is_some());
    assert!(String::from_utf8_lossy(&out.stderr).contains("readrandom   :"));
}

#[test]
fn use_existing_db_reads_what_an_earlier_run_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_arg(dir.path());
    bench(&[
        "--benchmarks=fillseq",
        "--num=1000",
        "--shards=2",
        "--pin_shards=false",
        &db,
    ]);
    let out = bench(&[
        "--benchmarks=readrandom",
        "--num=1000",
        "--shards=2",
        "--use_existing_db",
        "--pin_shards=false",
        &db,
    ]);
    assert_eq!(find(&results(&out), "readrandom").found, Some((1000, 1000)));
    // Without --use_existing_db the database starts empty again.
    let out = bench(&[
        "--benchmarks=readrandom",
        "--num=1000",
        "--shards=2",
        "--pin_shards=false",
        &db,
    ]);
    assert_eq!(find(&results(&out), "readrandom").found, Some((0, 1000)));
}

#[test]
fn refuses_to_wipe_a_directory_that_is_not_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("precious.txt"), b"keep me").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_terrace-bench"))
        .args(["--benchmarks=fillseq", "--num=10"])
        .arg(format!("--db={}", dir.path().display()))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(dir.path().join("precious.txt").exists());
}

/// With `--key_group_range` the database owns part of the key groups and the
/// workload draws only keys in them: every benchmark finds every filled key, and
/// nothing is refused (a key outside the range would fail the run).
#[test]
fn a_key_group_range_draws_only_owned_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        ALL_WORKLOADS,
        "--num=2000",
        "--shards=2",
        "--pin_shards=false",
        "--max_key_groups=128",
        "--key_group_range=32-79",
        &db_arg(dir.path()),
    ];
    let out = bench(&args);
    check_after_fillseq(&results(&out));
    // The database recorded its range: reopening it with another is refused.
    let refused = Command::new(env!("CARGO_BIN_EXE_terrace-bench"))
        .args([
            "--benchmarks=readrandom",
            "--num=2000",
            "--use_existing_db=1",
            "--max_key_groups=128",
            "--key_group_range=0-63",
            &db_arg(dir.path()),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("key_group_range"), "{err}");
}
