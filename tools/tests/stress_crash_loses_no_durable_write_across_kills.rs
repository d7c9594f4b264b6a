//! `terrace-stress crash` SIGKILLs a writing child 20 times; after every kill the
//! reopened database holds every durable write, nothing that was never written, and
//! per shard a prefix of its history. The report line is parsed and its numbers
//! asserted, not just the exit status.

mod support;

use std::time::Duration;

use terrace_tools::stress::report::CrashReport;

const DEADLINE: Duration = Duration::from_secs(150);

#[test]
fn twenty_kills_lose_and_corrupt_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let run = support::run_stress(
        &[
            "crash",
            "--kills=20",
            "--seed=20240601",
            &format!("--db={}", db.display()),
            "--progress_every=5",
        ],
        DEADLINE,
    );
    let report =
        CrashReport::find(&run.stdout).unwrap_or_else(|| panic!("no report line\n{}", run.both()));
    assert!(run.status.success(), "{}", run.both());
    assert!(report.kills >= 20, "{report:?}\n{}", run.both());
    assert_eq!(report.reopens, report.kills, "{}", run.both());
    assert_eq!(report.keys_verified, 20 * 3000, "{}", run.both());
    assert_eq!((report.lost, report.corrupt), (0, 0), "{}", run.both());
}
