//! Running commands: quietly for the setup steps, and `cargo test` with its
//! output passed through and read line by line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::report::Tally;

/// How long the tests get to end after an interrupt before they are killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// Set by SIGINT, SIGTERM and SIGHUP: the run stops and cleans up.
pub fn interrupt_flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// Runs `command` with its output captured: `Ok(stdout)` on success,
/// `Err` with the command line and its last output lines otherwise.
pub fn quiet(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}").replace('"', "");
    let output = command.stdin(Stdio::null()).output().map_err(|e| format!("`{shown}`: {e}"))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let tail: Vec<&str> = text.lines().rev().take(12).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!("`{shown}` failed ({}):\n        {}", output.status, tail.join("\n        ")))
}

/// Whether `program --version` runs.
pub fn exists(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cargo test ARGS` in `root`, passing its output (stdout and stderr
/// merged, in order) through to ours and into `tally`; the time to its
/// first suite is the build's. It runs in its own process group, so an
/// interrupt reaches all of it (the servers the tests start too) through
/// `interrupted`, and never leaves the throw-away database to a half-dead run.
pub fn cargo_test(
    root: &Path,
    args: &[String],
    env: &[(&str, String)],
    interrupted: &Arc<AtomicBool>,
    tally: &mut Tally,
) -> std::io::Result<(ExitStatus, Option<Duration>)> {
    let (reader, writer) = std::io::pipe()?;
    let mut child = {
        // The command holds the pipe's writing ends until it is dropped:
        // dropped here, so the reader sees the end of the output.
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.current_dir(root).arg("test").arg("--no-fail-fast").args(args);
        // `cargo run` gave xtask its package's variables; build scripts
        // that watch them (ring's) would rebuild for every switch between
        // `cargo xtask test` and plain `cargo test`.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(set_by_cargo_run) {
                command.env_remove(key);
            }
        }
        for (key, value) in env {
            command.env(key, value);
        }
        command.stdin(Stdio::null()).stdout(writer.try_clone()?).stderr(writer).process_group(0);
        command.spawn()?
    };
    let finished = Arc::new(AtomicBool::new(false));
    let watcher = watch(child.id(), Arc::clone(interrupted), Arc::clone(&finished));
    let started = Instant::now();
    let mut build = None;
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    let mut out = std::io::stdout();
    while reader.read_until(b'\n', &mut line)? > 0 {
        let _ = out.write_all(&line);
        let _ = out.flush();
        let text = String::from_utf8_lossy(&line);
        if build.is_none() && text.trim_start().starts_with("Running ") {
            build = Some(started.elapsed());
        }
        tally.line(&text);
        line.clear();
    }
    let status = child.wait()?;
    finished.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    tally.finish();
    Ok((status, build))
}

/// The variables `cargo run` sets for the program it runs (xtask), which
/// are not ours to pass on.
fn set_by_cargo_run(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
        )
}

/// Forwards an interrupt to the process group `pid` leads: SIGINT, then
/// SIGKILL after [`INTERRUPT_GRACE`].
fn watch(pid: u32, interrupted: Arc<AtomicBool>, finished: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let group = -(pid as libc::pid_t);
        let mut since: Option<Instant> = None;
        while !finished.load(Ordering::SeqCst) {
            if interrupted.load(Ordering::SeqCst) {
                match since {
                    None => {
                        // SAFETY: kill(2) with a process group id; no memory is shared.
                        unsafe { libc::kill(group, libc::SIGINT) };
                        since = Some(Instant::now());
                    }
                    Some(at) if at.elapsed() > INTERRUPT_GRACE => {
                        // SAFETY: as above.
                        unsafe { libc::kill(group, libc::SIGKILL) };
                    }
                    Some(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}
