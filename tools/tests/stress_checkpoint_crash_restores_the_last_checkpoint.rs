//! `terrace-stress crash --checkpoints` SIGKILLs a child that writes, checkpoints,
//! releases checkpoints and collects garbage, 12 times; after every kill the store
//! holds exactly the checkpoints that may have committed, restoring the newest (or
//! reading it from the reopened directory) yields exactly its state, an older
//! retained checkpoint still restores, and the next child continues from the
//! restored database. The report line is parsed and its numbers asserted.

mod support;

use std::time::Duration;

use terrace_tools::stress::report::CrashReport;

const DEADLINE: Duration = Duration::from_secs(150);

#[test]
fn twelve_kills_restore_exactly_the_last_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run_dir = dir.path().join("run");
    let run = support::run_stress(
        &[
            "crash",
            "--checkpoints",
            "--kills=12",
            "--seed=20241201",
            &format!("--db={}", run_dir.display()),
            "--progress_every=4",
        ],
        DEADLINE,
    );
    let report =
        CrashReport::find(&run.stdout).unwrap_or_else(|| panic!("no report line\n{}", run.both()));
    assert!(run.status.success(), "{}", run.both());
    let counts = report
        .checkpoint
        .unwrap_or_else(|| panic!("no checkpoint counts\n{}", run.both()));
    assert_eq!(report.kills, 12, "{}", run.both());
    // Every round either restored the newest checkpoint or reopened the directory.
    assert_eq!(report.reopens + counts.restores, 12, "{}", run.both());
    assert!(counts.restores >= 3, "{report:?}\n{}", run.both());
    // Restores, plus the newest after a reopen, plus an older one per round.
    assert!(
        counts.checkpoints_verified > counts.restores,
        "{report:?}\n{}",
        run.both()
    );
    assert_eq!((report.lost, report.corrupt), (0, 0), "{}", run.both());
    assert!(
        run.stdout.contains("the children took"),
        "no checkpoint summary\n{}",
        run.both()
    );
}
