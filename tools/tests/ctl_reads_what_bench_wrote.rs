//! `terrace-ctl` reads a database that `terrace-bench` wrote: point reads, scans,
//! statistics, and the properties of its SST files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run tool")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ssts(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).expect("read db dir").flatten() {
        if let Ok(files) = std::fs::read_dir(shard.path()) {
            out.extend(
                files
                    .flatten()
                    .map(|f| f.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "sst")),
            );
        }
    }
    out
}

#[test]
fn ctl_gets_scans_and_describes_ssts_of_a_bench_database() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("db");
    let db_s = db.to_str().expect("utf-8 path");
    ok(run(
        env!("CARGO_BIN_EXE_terrace-bench"),
        &[
            "--benchmarks=fillseq,flush",
            "--num=300",
            "--shards=2",
            "--pin_shards=false",
            &format!("--db={db_s}"),
        ],
    ));
    let ctl = env!("CARGO_BIN_EXE_terrace-ctl");

    let value = ok(run(ctl, &["get", "--db", db_s, "0000000000000042"]));
    assert!(value.trim_end().len() >= 100, "{value:?}");
    let missing = run(ctl, &["get", "--db", db_s, "0000000000000042."]);
    assert!(!missing.status.success());

    let scan = ok(run(
        ctl,
        &[
            "scan",
            "--db",
            db_s,
            "--from",
            "0000000000000010",
            "--to",
            "0000000000000020",
        ],
    ));
    let keys: Vec<&str> = scan.lines().map(|l| &l[..16]).collect();
    let want: Vec<String> = (10..20).map(|i| format!("{i:016}")).collect();
    assert_eq!(keys, want);

    let stats = ok(run(ctl, &["stats", "--db", db_s]));
    assert!(stats.contains("levels:"), "{stats}");

    let files = ssts(&db);
    assert!(!files.is_empty(), "flush left no SST in {}", db.display());
    let mut entries = 0u64;
    for f in &files {
        let text = ok(run(
            ctl,
            &["sst", f.to_str().expect("utf-8"), "--entries", "2"],
        ));
        let line = text
            .lines()
            .find(|l| l.starts_with("entries:"))
            .unwrap_or_else(|| panic!("no entries line in {text}"));
        entries += line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .expect("entry count");
        assert!(text.contains("smallest key:  kg="), "{text}");
    }
    assert_eq!(entries, 300);
}

#[test]
fn ctl_reads_a_database_whose_ssts_are_only_in_the_object_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("db");
    let db_s = db.to_str().expect("utf-8 path");
    // A named store must exist (as a bucket must); only the embedded one is created.
    std::fs::create_dir(tmp.path().join("store")).expect("create store dir");
    let store = format!("file://{}", tmp.path().join("store").display());
    ok(run(
        env!("CARGO_BIN_EXE_terrace-bench"),
        &[
            "--benchmarks=fillseq,waitforuploads",
            "--num=300",
            "--shards=2",
            "--pin_shards=false",
            &format!("--db={db_s}"),
            &format!("--object_store={store}"),
        ],
    ));
    let local = ssts(&db);
    assert!(!local.is_empty());
    for f in &local {
        std::fs::remove_file(f).expect("remove local SST");
    }
    let ctl = env!("CARGO_BIN_EXE_terrace-ctl");
    let value = ok(run(
        ctl,
        &[
            "get",
            "--db",
            db_s,
            "--object_store",
            &store,
            "0000000000000042",
        ],
    ));
    assert!(value.trim_end().len() >= 100, "{value:?}");
    let stats = ok(run(ctl, &["stats", "--db", db_s, "--object_store", &store]));
    assert!(stats.contains("0 local"), "{stats}");

    // Without the store the files are nowhere: a clear error, not a panic.
    let out = run(
        ctl,
        &[
            "get",
            "--db",
            db_s,
            "--object_store",
            "none",
            "0000000000000042",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no object store is configured"), "{err}");
}
