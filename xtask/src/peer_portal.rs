//! The customer portal's browser-test peers (api/tests/portal.rs):
//! Debian's `chromium` and `chromium-driver` (apt, as root), and axe-core
//! (npm, pinned) in `target/peers/node`, whose script the tests inject.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::report::{Missing, duration};
use crate::run::{exists, quiet};

/// The accessibility checker the tests run on every page.
const AXE_CORE: &str = "axe-core@4.14.1";

/// Installs what is missing; a peer that cannot be provided is named in `missing`.
pub fn install(peers: &Path, missing: &mut Vec<Missing>) {
    browser(missing);
    axe(peers, missing);
}

fn browser(missing: &mut Vec<Missing>) {
    if exists("chromium") && exists("chromedriver") {
        println!("  chromium, chromium-driver: present");
        return;
    }
    let remedy = "Debian, as root: apt-get install chromium chromium-driver";
    if !exists("apt-get") {
        missing.push(Missing {
            peer: "browser",
            why: "chromium is not installed and there is no apt-get".into(),
            remedy: remedy.into(),
        });
        return;
    }
    let started = Instant::now();
    let mut apt = Command::new("apt-get");
    apt.args(["install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]);
    apt.env("DEBIAN_FRONTEND", "noninteractive");
    match quiet(&mut apt) {
        Ok(_) => println!("  chromium, chromium-driver: installed ({})", duration(started.elapsed())),
        Err(why) => missing.push(Missing { peer: "browser", why, remedy: remedy.into() }),
    }
}

fn axe(peers: &Path, missing: &mut Vec<Missing>) {
    let dir = peers.join("node");
    if dir.join("node_modules/axe-core/axe.min.js").is_file() {
        println!("  axe-core (npm): present in {}", dir.display());
        return;
    }
    if !exists("npm") {
        let remedy = "Debian: apt-get install nodejs npm".into();
        missing.push(Missing { peer: "browser", why: "`npm` is not installed (for axe-core)".into(), remedy });
        return;
    }
    let started = Instant::now();
    let _ = std::fs::create_dir_all(&dir);
    let mut npm = Command::new("npm");
    npm.args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"]).arg(&dir).arg(AXE_CORE);
    match quiet(&mut npm) {
        Ok(_) => println!("  {AXE_CORE}: installed into {} ({})", dir.display(), duration(started.elapsed())),
        Err(why) => {
            let remedy = format!("npm install --prefix {} {AXE_CORE}", dir.display());
            missing.push(Missing { peer: "browser", why, remedy });
        }
    }
}
