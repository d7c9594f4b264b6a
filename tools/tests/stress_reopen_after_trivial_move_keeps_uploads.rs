//! Regression test for an engine bug found by `terrace-stress compaction`: a
//! trivial move (one manifest edit that deletes a file from level N and adds it to
//! level N+1) makes manifest replay forget that the file was uploaded
//! (`ManifestState::apply` removes deleted ids from `uploaded` and the re-add does
//! not restore it). Once the local copy of that file was dropped for the local disk
//! budget, the next open fails: "the manifest names this file but it is missing",
//! although the object store holds it.
//!
//! Fixed in the engine (a move keeps the file's upload record; unit test
//! `version::state::tests::a_trivial_move_keeps_the_file_uploaded`). One shard,
//! 20000 keys and values up to 1 MiB give level 2 gaps, so old, uploaded L1 files
//! move down; before the fix seed 2 failed at operation #6738 (a few seconds).

mod support;

use std::time::Duration;

use terrace_tools::stress::report::CompactionReport;

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn reopen_after_a_trivial_move_finds_every_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let run = support::run_stress(
        &[
            "compaction",
            "--ops=8000",
            "--seed=2",
            "--shards=1",
            "--key_space=20000",
            "--max_value_bytes=1048576",
            &format!("--db={}", db.display()),
        ],
        DEADLINE,
    );
    let report = CompactionReport::find(&run.stdout)
        .unwrap_or_else(|| panic!("no report line\n{}", run.both()));
    assert_eq!(report.violations, 0, "{}", run.both());
    assert!(run.status.success(), "{}", run.both());
}
