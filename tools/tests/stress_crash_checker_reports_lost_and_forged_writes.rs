//! The crash checker can fail. A hidden `--sabotage` makes each child damage the
//! database right after a durable flush — delete a key whose put is durable, or
//! write bytes no operation wrote — and the parent must report it as lost or corrupt,
//! exit non-zero, and name the key.

mod support;

use std::time::Duration;

use terrace_tools::stress::report::CrashReport;

const DEADLINE: Duration = Duration::from_secs(90);

fn sabotaged_run(how: &str) -> (CrashReport, support::Run) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let run = support::run_stress(
        &[
            "crash",
            "--kills=5",
            "--seed=77",
            &format!("--db={}", db.display()),
            &format!("--sabotage={how}"),
            // Late enough that a child has flushed, sabotaged and flushed again.
            "--min_kill_ms=700",
            "--max_kill_ms=900",
        ],
        DEADLINE,
    );
    let report =
        CrashReport::find(&run.stdout).unwrap_or_else(|| panic!("no report line\n{}", run.both()));
    assert!(
        !run.status.success(),
        "sabotage went unnoticed\n{}",
        run.both()
    );
    assert!(
        run.stdout.contains("FAILED: seed 77 round"),
        "{}",
        run.both()
    );
    (report, run)
}

#[test]
fn a_deleted_durable_write_is_reported_lost() {
    let (report, run) = sabotaged_run("lose-durable");
    assert!(report.lost > 0, "{report:?}\n{}", run.both());
    assert_eq!(report.corrupt, 0, "{}", run.both());
    assert!(run.stdout.contains("LOST: key "), "{}", run.both());
}

#[test]
fn a_value_never_written_is_reported_corrupt() {
    let (report, run) = sabotaged_run("forge-value");
    assert!(report.corrupt > 0, "{report:?}\n{}", run.both());
    assert!(run.stdout.contains("CORRUPT: key "), "{}", run.both());
}
