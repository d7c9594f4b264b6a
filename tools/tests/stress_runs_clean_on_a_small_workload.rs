//! A short `terrace-stress` run finishes and reports success. It runs under a
//! deadline so that an engine hang shows up as a failure rather than a stuck build.

use std::process::{Command, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(90);

#[test]
fn short_seeded_stress_run_matches_the_model() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_terrace-stress"))
        .args([
            "--ops=400",
            "--seed=11",
            "--key_space=300",
            "--verify_every=200",
            "--progress_every=0",
            "--max_value_bytes=5000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn terrace-stress");
    let start = terrace_tiering::clock::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("terrace-stress did not finish within {DEADLINE:?} (engine hang?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("terrace-stress: OK: 400 ops"), "{stdout}");
}
