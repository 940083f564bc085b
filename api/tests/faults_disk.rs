//! A full disk under SQLite (issue #17): the data directory on a small
//! tmpfs of the test's own (mounted as root; skipped with a notice
//! otherwise), filled up mid-load. Commands answer 503 problem+json with
//! `Retry-After` (never 500, nothing half-written), and when space returns
//! the server carries on without a restart; afterwards `faults::check`.

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;
#[allow(dead_code)]
mod faults;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Backend;
use faults::Load;

const WORKERS: usize = 4;
/// The file system's size: the server's files and room for the load.
const DISK_BYTES: u64 = 64 << 20;
/// The longest the disk stays full waiting for a refusal.
const FULL_FOR_MAX: Duration = Duration::from_secs(60);

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Mount(tempfile::TempDir);

impl Mount {
    fn new(test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK_BYTES}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            store::testing::skip(test, store::testing::Peer::Postgres, "mounting a small tmpfs needs root");
            return None;
        }
        Some(Self(dir))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Fills the file system with `filler` until a write fails.
fn fill(filler: &std::path::Path) {
    let mut file = std::fs::File::create(filler).unwrap();
    let block = vec![0u8; 1 << 16];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_the_server_recovers_when_space_returns() {
    let test = "faults_disk::sqlite";
    let began = Instant::now();
    let Some(mount) = Mount::new(test) else { return };
    let backend = Backend::sqlite_in(mount.0.path());
    let server = backend.start().await;
    server.wait_ready().await;
    let load = Load::new(&server, "Disk").await;
    let filler = mount.0.path().join("filler");
    let fault = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        fill(&filler);
        let full = Instant::now();
        // SQLite reuses the space its WAL and free pages already hold, so
        // commands may succeed for a while on a full disk: keep it full
        // until one is refused (at most FULL_FOR_MAX), then 3 s more.
        while load.tally().refused == 0 && full.elapsed() < FULL_FOR_MAX {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        std::fs::remove_file(&filler).unwrap();
        let freed = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        load.stop();
        (full, freed)
    };
    let ((), (full, freed)) = tokio::join!(load.run(WORKERS), fault);
    let tally = load.tally();
    eprintln!("{test}: disk full for {:?}; {}", freed - full, tally.summary());
    assert!(tally.refused > 0, "commands on a full disk were refused with 503: {}", tally.summary());
    assert_eq!(tally.unanswered, 0, "every request answered: {}", tally.summary());
    let recovered = tally.last_failure.map_or(Duration::ZERO, |last| last.saturating_duration_since(freed));
    eprintln!("{test}: commands succeed again {recovered:?} after space returned");
    faults::check(test, &server, &backend, &load).await;
    eprintln!("{test}: {:?} in all", began.elapsed());
}
