//! The checkpoint crash checker can fail. A hidden `--sabotage` makes each child
//! damage every checkpoint it takes behind the engine's back — delete its
//! `CHECKPOINT` object (a release the engine did not do), or delete a shard's part
//! (committed, but it cannot restore) — and the parent must report the checkpoint
//! as lost and exit non-zero.

mod support;

use std::time::Duration;

use terrace_tools::stress::report::CrashReport;

const DEADLINE: Duration = Duration::from_secs(90);

fn sabotaged_run(how: &str) -> (CrashReport, support::Run) {
    let dir = tempfile::tempdir().expect("tempdir");
    let run_dir = dir.path().join("run");
    let run = support::run_stress(
        &[
            "crash",
            "--checkpoints",
            "--kills=5",
            "--seed=77",
            &format!("--db={}", run_dir.display()),
            &format!("--sabotage={how}"),
            // Late enough that a child has taken checkpoints.
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
    assert!(report.lost > 0, "{report:?}\n{}", run.both());
    (report, run)
}

#[test]
fn a_checkpoint_released_behind_the_engines_back_is_reported_lost() {
    let (_, run) = sabotaged_run("drop-checkpoint");
    assert!(
        run.stdout
            .contains("expected committed (its checkpoint call returned"),
        "{}",
        run.both()
    );
}

#[test]
fn a_committed_checkpoint_that_does_not_restore_is_reported_lost() {
    let (_, run) = sabotaged_run("drop-checkpoint-part");
    assert!(
        run.stdout
            .contains("expected a committed checkpoint to restore")
            || run
                .stdout
                .contains("expected the newest committed checkpoint to restore"),
        "{}",
        run.both()
    );
}
