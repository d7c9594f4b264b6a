//! `terrace-bench`'s checkpoint and restore flags on tiny databases: the
//! `checkpoint` benchmark and `--checkpoint_every_secs` print their lines and
//! `--plot` writes an SVG; a database restored with `--restore_from` (lazily, and
//! by the download-first baseline) reads back every key the checkpoint holds; and
//! the flags refuse what they cannot do.

use std::path::Path;
use std::process::{Command, Output};

use terrace_tools::bench::report::{parse_line, ParsedLine};

const NUM: u64 = 3000;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_terrace-bench"))
        .args(args)
        .output()
        .expect("run terrace-bench")
}

fn bench(args: &[&str]) -> String {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "terrace-bench {args:?} failed:\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn result(stdout: &str, name: &str) -> ParsedLine {
    stdout
        .lines()
        .filter(|l| l.contains(" micros/op "))
        .filter_map(parse_line)
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no {name} line in\n{stdout}"))
}

/// A local object store outside the database directory.
fn store(dir: &Path) -> String {
    let root = dir.join("store");
    std::fs::create_dir_all(&root).expect("store dir");
    format!("file://{}", root.display())
}

fn taken(line: &str) -> u64 {
    line.split_once(" : ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

#[test]
fn checkpoints_during_benchmarks_are_reported_and_plotted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("run.svg");
    let stdout = bench(&[
        "--benchmarks=fillrandom,checkpoint,readrandom",
        "--num=20000",
        // Long enough (about a second of reads) for the background checkpoints
        // every 0.1 s to finish some: a short run may take none.
        "--reads=1500000",
        "--shards=2",
        "--concurrency=4",
        "--pin_shards=false",
        "--checkpoint_every_secs=0.1",
        &format!("--object_store={}", store(dir.path())),
        &format!("--db={}", dir.path().join("db").display()),
        &format!("--plot={}", svg.display()),
    ]);
    let checkpoint = stdout
        .lines()
        .find(|l| l.starts_with("checkpoint   : "))
        .unwrap_or_else(|| panic!("no checkpoint line in\n{stdout}"));
    assert!(
        checkpoint.contains(" ms/op; 1 checkpoints; "),
        "{checkpoint}"
    );
    assert!(checkpoint.contains(" uploaded (") && checkpoint.contains(" memtables, "));
    assert!(checkpoint.contains("; state "), "{checkpoint}");
    // One line per benchmark, plus one for checkpoints that finished after the last.
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("checkpoints  : "))
        .collect();
    assert!(lines.len() >= 3, "{stdout}");
    let total: u64 = lines.iter().map(|l| taken(l)).sum();
    assert!(total >= 1, "no background checkpoint in\n{stdout}");
    for l in lines.iter().filter(|l| taken(l) > 0) {
        assert!(l.contains(" taken, P50 ") && l.contains(" ms P99 "), "{l}");
        assert!(l.contains(" uploaded per checkpoint"), "{l}");
    }
    assert_eq!(result(&stdout, "fillrandom").ops, 20_000);
    let text = std::fs::read_to_string(&svg).expect("the plot exists");
    assert!(text.starts_with("<svg"), "not an SVG");
    for label in ["ops/s", "write P99", "checkpoint", "fillrandom"] {
        assert!(text.contains(label), "{label} missing from the plot");
    }
}

#[test]
fn a_restored_database_reads_back_every_key_lazily_and_after_downloading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let num = format!("--num={NUM}");
    let common = ["--shards=2", "--concurrency=4", "--pin_shards=false"];
    let mut fill = vec![
        "--benchmarks=fillseq,checkpoint",
        num.as_str(),
        // Small memtables: the checkpoint holds SSTs and a memtable snapshot.
        "--write_buffer_size=65536",
    ];
    fill.extend(common);
    let store_flag = format!("--object_store={store}");
    let source = format!("--db={}", dir.path().join("source").display());
    fill.extend([store_flag.as_str(), source.as_str()]);
    bench(&fill);

    for mode in ["lazy", "download_first"] {
        let target = format!("--db={}", dir.path().join(mode).display());
        let restore = format!("--restore_from={store}");
        let mode_flag = format!("--restore_mode={mode}");
        let mut args = vec![
            "--benchmarks=waitforwarmer,readseq,readrandom",
            num.as_str(),
            restore.as_str(),
            mode_flag.as_str(),
            "--checkpoint_id=1",
            target.as_str(),
        ];
        args.extend(common);
        let stdout = bench(&args);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("restore      : "))
            .unwrap_or_else(|| panic!("no restore line in\n{stdout}"));
        assert!(line.contains(" ms to first read (found); "), "{line}");
        assert!(
            line.contains(" downloaded before it; checkpoint 1 ("),
            "{line}"
        );
        assert!(line.contains(mode), "{line}");
        if mode == "lazy" {
            assert!(stdout.contains("  warmer: done "), "{stdout}");
        }
        assert_eq!(result(&stdout, "readseq").ops, NUM, "{stdout}");
        assert_eq!(result(&stdout, "readrandom").found, Some((NUM, NUM)));
    }
}

#[test]
fn restore_flags_refuse_what_they_cannot_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["--restore_from=file:///a,file:///b", "--num=10"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("restoring several databases is a rescale: give --object_store"),
        "{err}"
    );

    let out = run(&["--checkpoint_id=3", "--num=10"]);
    assert_eq!(out.status.code(), Some(2));

    let full = dir.path().join("full");
    std::fs::create_dir_all(&full).expect("dir");
    std::fs::write(full.join("something"), b"x").expect("file");
    let out = run(&[
        &format!("--restore_from={}", store(dir.path())),
        &format!("--db={}", full.display()),
        "--benchmarks=readrandom",
        "--num=10",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty or missing directory"), "{err}");
    assert!(full.join("something").exists(), "the directory was touched");
}

/// `--restore_from=A,B` rescales two databases (each owning half the key groups)
/// into one under the same job root, lazily, and every key of both reads back.
#[test]
fn two_databases_rescale_into_one_with_restore_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = dir.path().join("job");
    let prefix = |name: &str| {
        std::fs::create_dir_all(job.join(name)).expect("dir");
        format!("file://{}", job.join(name).display())
    };
    let num = format!("--num={NUM}");
    let common = [
        "--shards=2",
        "--concurrency=4",
        "--pin_shards=false",
        "--max_key_groups=128",
    ];
    for (name, range) in [("db-a", "0-63"), ("db-b", "64-127")] {
        let store_flag = format!("--object_store={}", prefix(name));
        let db = format!("--db={}", dir.path().join(name).display());
        let range = format!("--key_group_range={range}");
        let mut fill = vec![
            "--benchmarks=fillseq,checkpoint",
            num.as_str(),
            "--write_buffer_size=65536",
            store_flag.as_str(),
            db.as_str(),
            range.as_str(),
        ];
        fill.extend(common);
        bench(&fill);
    }
    let restore = format!("--restore_from={},{}", prefix("db-a"), prefix("db-b"));
    // Lazily, and as the download-then-clip baseline: every object of both
    // sources downloaded into the new shards, then opened (clipped as usual).
    for (mode, name) in [("lazy", "db-c"), ("download_first", "db-d")] {
        let store_flag = format!("--object_store={}", prefix(name));
        let target = format!("--db={}", dir.path().join(name).display());
        let mode_flag = format!("--restore_mode={mode}");
        let mut args = vec![
            "--benchmarks=readseq,waitfortrims,readseq",
            num.as_str(),
            restore.as_str(),
            store_flag.as_str(),
            target.as_str(),
            mode_flag.as_str(),
            "--shards=3",
        ];
        args.extend(common.iter().filter(|a| !a.starts_with("--shards")));
        let stdout = bench(&args);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("restore      : "))
            .unwrap_or_else(|| panic!("no restore line in\n{stdout}"));
        // Keys of the new range are spelled unlike the sources' fills: the first
        // probe key may be absent, a later one is found.
        assert!(line.contains(" ms to first read (found"), "{line}");
        assert!(line.contains(&format!(" files), {mode}")), "{line}");
        assert_eq!(result(&stdout, "readseq").ops, 2 * NUM, "{stdout}");
        // Three shards over two half-range sources: references are clipped until
        // compaction trims them; after that every key still reads back.
        let trims = stdout
            .lines()
            .find(|l| l.starts_with("  trims: "))
            .unwrap_or_else(|| panic!("no trims line in\n{stdout}"));
        if mode == "lazy" {
            // Watched from right after the restore: the clipped references were
            // there, and compaction trimmed them all.
            assert!(trims.starts_with("  trims: done "), "{trims}");
            assert!(!trims.contains("; 0 clipped"), "{trims}");
        }
        let scans: Vec<ParsedLine> = stdout
            .lines()
            .filter(|l| l.contains(" micros/op "))
            .filter_map(parse_line)
            .filter(|r| r.name == "readseq")
            .collect();
        assert_eq!(scans.len(), 2, "{stdout}");
        assert!(scans.iter().all(|r| r.ops == 2 * NUM), "{stdout}");
        if mode == "download_first" {
            // Every file of the new shards came from the sources' prefixes.
            assert!(line.contains(": download "), "{line}");
            let shard_files = (0..3)
                .map(|s| {
                    std::fs::read_dir(dir.path().join(name).join(format!("shard-{s:04}")))
                        .expect("shard dir")
                        .filter(|e| {
                            e.as_ref()
                                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".sst"))
                        })
                        .count()
                })
                .sum::<usize>();
            assert!(shard_files > 0, "no SST downloaded into the shards");
        }
    }
}
