//! `terrace-ctl stats` while `terrace-bench` fills the same database in another
//! process: inspection is read-only, so the writer never loses a file; a second
//! writer process is refused with the directory named and changes nothing.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use terrace_tiering::clock::now;

const DEADLINE: Duration = Duration::from_secs(240);

fn bench(db: &str, num: u64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_terrace-bench"));
    c.args([
        "--benchmarks=fillrandom,flush",
        &format!("--num={num}"),
        "--shards=2",
        "--pin_shards=false",
        // Small memtables and files: flushes, compactions and uploads all the time.
        "--write_buffer_size=262144",
        "--target_file_size_base=262144",
        &format!("--db={db}"),
    ]);
    c
}

fn wait(mut child: Child) -> Output {
    let start = now();
    while child.try_wait().expect("wait").is_none() {
        if now().duration_since(start) > DEADLINE {
            let _ = child.kill();
            panic!("terrace-bench did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn ctl_stats_during_a_fill_never_breaks_the_writer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("db");
    let db_s = db.to_str().expect("utf-8 path");
    let writer = bench(db_s, 600_000)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn terrace-bench");

    // Wait for the database to exist, then inspect it over and over while it fills.
    let start = now();
    while !db.join("TERRACE-META").exists() {
        assert!(
            now().duration_since(start) < DEADLINE,
            "no database appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut inspections = 0;
    let mut second_writer_refused = false;
    let mut writer = Some(writer);
    while let Some(w) = writer.as_mut() {
        if w.try_wait().expect("wait").is_some() {
            break;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_terrace-ctl"))
            .args(["stats", "--db", db_s])
            .output()
            .expect("run terrace-ctl");
        assert!(
            out.status.success(),
            "terrace-ctl stats failed:\n{}",
            text(&out)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("levels:"));
        inspections += 1;
        if !second_writer_refused {
            let out = bench(db_s, 1000)
                .arg("--use_existing_db=1")
                .output()
                .expect("run a second terrace-bench");
            if w.try_wait().expect("wait").is_some() {
                // The first writer may have finished before the second started.
                break;
            }
            let all = text(&out);
            assert!(
                !out.status.success(),
                "a second writer ran alongside the first:\n{all}"
            );
            assert!(all.contains("in use"), "{all}");
            assert!(all.contains(db_s), "{all}");
            second_writer_refused = true;
        }
    }
    let out = wait(writer.take().expect("writer"));
    assert!(out.status.success(), "the writer failed:\n{}", text(&out));
    assert!(
        inspections >= 3,
        "only {inspections} inspections ran during the fill; the test proves little"
    );
    assert!(
        second_writer_refused,
        "no second writer was tried while the first ran"
    );

    // And the filled database is whole.
    let out = Command::new(env!("CARGO_BIN_EXE_terrace-ctl"))
        .args(["stats", "--db", db_s])
        .output()
        .expect("run terrace-ctl");
    assert!(out.status.success(), "{}", text(&out));
    assert!(Path::new(&db).join("shard-0000/CURRENT").exists());
}
