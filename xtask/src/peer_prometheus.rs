//! Prometheus and promtool (Debian's `prometheus` package), for the test
//! where a real Prometheus scrapes `ledger serve` and for `promtool test
//! rules` over deploy/prometheus/ (api/tests/prometheus.rs). Installed with
//! apt-get when missing and this runs as root; otherwise reported missing
//! (a skip, or an error under CI).

use std::process::Command;
use std::time::Instant;

use crate::report::{Missing, duration};
use crate::run::quiet;

const REMEDY: &str = "Debian: apt-get install --no-install-recommends prometheus";

/// Whether `program` is on `PATH` (prometheus and promtool print their
/// version with `--version`).
fn present(program: &str) -> bool {
    quiet(Command::new(program).arg("--version")).is_ok()
}

/// Installs the `prometheus` package when `prometheus` or `promtool` is
/// missing; records what is still missing.
pub fn install(missing: &mut Vec<Missing>) {
    if present("prometheus") && present("promtool") {
        println!("  prometheus, promtool: present");
        return;
    }
    let root = quiet(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0");
    if !root {
        missing.push(Missing {
            peer: "prometheus",
            why: "not installed, and not root to install it".into(),
            remedy: REMEDY.into(),
        });
        return;
    }
    let started = Instant::now();
    let installed = quiet(Command::new("apt-get").arg("update").arg("-qq")).and_then(|_| {
        quiet(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends", "prometheus"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    });
    match installed {
        Ok(_) if present("prometheus") && present("promtool") => {
            println!("  prometheus: installed with apt-get ({})", duration(started.elapsed()));
        }
        Ok(_) => missing.push(Missing {
            peer: "prometheus",
            why: "apt-get installed the package but prometheus or promtool is not on PATH".into(),
            remedy: REMEDY.into(),
        }),
        Err(why) => missing.push(Missing { peer: "prometheus", why, remedy: REMEDY.into() }),
    }
}
