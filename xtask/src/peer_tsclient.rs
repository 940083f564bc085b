//! The TypeScript client's build (clients/typescript): `npm ci` from its
//! committed package-lock.json (only when node_modules is missing or older
//! than the lock), then `tsc`, every run, so the shared cases
//! (api/tests/client_cases.rs) never run a stale build.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::report::{Missing, duration};
use crate::run::{exists, quiet};

const NODEJS: &str = "Debian: apt-get install nodejs npm";

/// Installs the package's dev dependencies and compiles it; what could not
/// be done is added to `missing` (peer `node`, as the skip lines name it).
pub fn install(root: &Path, missing: &mut Vec<Missing>) {
    let package = root.join("clients/typescript");
    if !exists("node") || !exists("npm") {
        let why = "`node` and `npm` are needed to build clients/typescript".to_owned();
        missing.push(Missing { peer: "node", why, remedy: NODEJS.into() });
        return;
    }
    let started = Instant::now();
    let installed = package.join("node_modules/.package-lock.json");
    let stale = match (std::fs::metadata(&installed), std::fs::metadata(package.join("package-lock.json"))) {
        (Ok(have), Ok(lock)) => have.modified().ok() < lock.modified().ok(),
        _ => true,
    };
    if stale {
        let mut npm = Command::new("npm");
        npm.args(["ci", "--silent", "--no-audit", "--no-fund"]).current_dir(&package);
        if let Err(why) = quiet(&mut npm) {
            missing.push(Missing { peer: "node", why, remedy: format!("cd {} && npm ci", package.display()) });
            return;
        }
    }
    let mut tsc = Command::new("npx");
    tsc.args(["--no-install", "tsc", "-p", "."]).current_dir(&package);
    match quiet(&mut tsc) {
        Ok(_) => println!("  clients/typescript: built with tsc ({})", duration(started.elapsed())),
        Err(why) => {
            missing.push(Missing { peer: "node", why, remedy: format!("cd {} && npx tsc -p .", package.display()) })
        }
    }
}
