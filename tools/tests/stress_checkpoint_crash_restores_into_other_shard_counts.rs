//! `terrace-stress crash --checkpoints --rescale_one_in=1`: after every kill the
//! parent either restores the newest checkpoint into another shard count (N -> M,
//! `Db::restore` taking the rescale path) or reopens the killed child's directory
//! with another count (`Options::resplit_on_open`), and requires exactly the
//! state it required before (the checkpoint's state, or a prefix of every old
//! shard's history); the next child continues with the new count. The report
//! line and the rescale line are parsed and their numbers asserted.

mod support;

use std::time::Duration;

use terrace_tools::stress::crash::checkpoints::Rescales;
use terrace_tools::stress::report::CrashReport;

const DEADLINE: Duration = Duration::from_secs(180);
const KILLS: u64 = 12;

#[test]
fn every_round_rescales_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run_dir = dir.path().join("run");
    let run = support::run_stress(
        &[
            "crash",
            "--checkpoints",
            &format!("--kills={KILLS}"),
            "--seed=20261126",
            "--rescale_one_in=1",
            "--rescale_max_shards=4",
            &format!("--db={}", run_dir.display()),
            "--progress_every=1",
        ],
        DEADLINE,
    );
    let report =
        CrashReport::find(&run.stdout).unwrap_or_else(|| panic!("no report line\n{}", run.both()));
    assert!(run.status.success(), "{}", run.both());
    assert_eq!((report.lost, report.corrupt), (0, 0), "{}", run.both());
    assert_eq!(report.kills, KILLS, "{}", run.both());
    let counts = report
        .checkpoint
        .unwrap_or_else(|| panic!("no checkpoint counts\n{}", run.both()));
    let rescales =
        Rescales::find(&run.stdout).unwrap_or_else(|| panic!("no rescale line\n{}", run.both()));
    // Every restore went into another shard count, every reopen re-split.
    assert_eq!(rescales.restores, counts.restores, "{}", run.both());
    assert_eq!(rescales.resplits, report.reopens, "{}", run.both());
    assert_eq!(
        rescales.restores + rescales.resplits,
        KILLS,
        "{}",
        run.both()
    );
    assert!(rescales.restores >= 3, "{rescales:?}\n{}", run.both());
    assert!(rescales.resplits >= 1, "{rescales:?}\n{}", run.both());
    // The run went through at least three different shard counts.
    assert!(rescales.counts.len() >= 3, "{rescales:?}\n{}", run.both());
    assert!(
        rescales.counts.iter().all(|n| (1..=4).contains(n)),
        "{rescales:?}"
    );
    assert!(
        run.stdout.contains(" shards)"),
        "no progress line names a rescale\n{}",
        run.both()
    );
}
