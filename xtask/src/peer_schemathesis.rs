//! Schemathesis (PyPI, pinned) in its own virtual environment in
//! `target/peers/schemathesis`: `api/tests/schemathesis.rs` runs it against
//! the real server's OpenAPI document.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::report::{Missing, duration};
use crate::run::{exists, quiet};

/// The property-based API tester (its dependencies, Hypothesis among them,
/// are pinned by its own release and seen by no other peer).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// Installs Schemathesis unless present; a failure is named in `missing`.
pub fn install(peers: &Path, missing: &mut Vec<Missing>) {
    let remedy = "Debian: apt-get install python3 python3-venv";
    if !exists("python3") {
        missing.push(Missing { peer: "schemathesis", why: "python3 is not installed".into(), remedy: remedy.into() });
        return;
    }
    let venv = peers.join("schemathesis");
    if venv.join("bin/schemathesis").is_file() {
        println!("  schemathesis: present in {}", venv.display());
        return;
    }
    let started = Instant::now();
    let made = quiet(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .map_err(|why| Missing { peer: "schemathesis", why, remedy: remedy.into() })
        .and_then(|_| {
            let mut pip = Command::new(venv.join("bin/python"));
            pip.args(["-m", "pip", "install", "--quiet", SCHEMATHESIS]).env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
            let remedy = format!("{}/bin/python -m pip install {SCHEMATHESIS}", venv.display());
            quiet(&mut pip).map_err(|why| Missing { peer: "schemathesis", why, remedy })
        });
    match made {
        Ok(_) => println!("  {SCHEMATHESIS}: installed into {} ({})", venv.display(), duration(started.elapsed())),
        Err(m) => missing.push(m),
    }
}
