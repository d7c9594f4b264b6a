//! `terrace-stress compaction` overwrites and deletes on tiny levels (L0 trigger 2)
//! with a faulty object store; every level stays sorted and non-overlapping, no
//! deleted key comes back, and sampled and full reads match the model — also after
//! `compact_range`, `wait_for_compactions` and reopens (which must bring back the
//! same files at the same levels). The report line's numbers are asserted.

mod support;

use std::time::Duration;

use terrace_tools::stress::report::CompactionReport;

const DEADLINE: Duration = Duration::from_secs(150);

#[test]
fn twelve_thousand_ops_break_no_invariant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let run = support::run_stress(
        &[
            "compaction",
            "--ops=12000",
            "--seed=4242",
            "--check_every=300",
            &format!("--db={}", db.display()),
        ],
        DEADLINE,
    );
    let report = CompactionReport::find(&run.stdout)
        .unwrap_or_else(|| panic!("no report line\n{}", run.both()));
    assert!(run.status.success(), "{}", run.both());
    assert_eq!(report.ops, 12000, "{}", run.both());
    assert_eq!(report.violations, 0, "{}", run.both());
    // 40 periodic checks, the ones after compact_range / wait_for_compactions /
    // reopens, and the three at the end.
    assert!(report.checks >= 43, "{report:?}\n{}", run.both());
    assert!(report.files_seen > 50, "{report:?}\n{}", run.both());
    assert!(
        run.stdout.contains("compactions"),
        "no engine summary\n{}",
        run.both()
    );
}
