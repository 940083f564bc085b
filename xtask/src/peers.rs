//! The test peers that need no root, installed into `target/` from PyPI and
//! npm (pinned), each only when it is not there yet.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::report::{Missing, duration};
use crate::run::{exists, quiet};

/// The SMTP server of the notification tests (api/tests/notify.rs).
const AIOSMTPD: &str = "aiosmtpd==1.4.6";
/// BLAKE3 for the independent record-format verifier (tools/verify_vectors.py).
const BLAKE3: &str = "blake3==1.0.11";
/// The Stripe API stand-in of the Stripe tests (api/tests/stripe.rs).
const LOCALSTRIPE: &str = "localstripe==1.15.10";
/// Stripe's own Node library, which signs the Stripe tests' webhooks.
const STRIPE_NODE: &str = "stripe@23.1.0";

const PYTHON: &str = "Debian: apt-get install python3 python3-pip python3-venv";

/// Installs what is missing; returns what could not be provided.
pub fn install(root: &Path, peers: &Path) -> Vec<Missing> {
    let mut missing = Vec::new();
    if exists("python3") {
        python_packages(&root.join("target/python"), &mut missing);
        localstripe(peers, &mut missing);
    } else {
        for peer in ["aiosmtpd", "blake3", "localstripe"] {
            missing.push(Missing { peer, why: "python3 is not installed".into(), remedy: PYTHON.into() });
        }
    }
    stripe_node(peers, &mut missing);
    crate::peer_tsclient::install(root, &mut missing);
    crate::peer_prometheus::install(&mut missing);
    crate::peer_portal::install(peers, &mut missing);
    crate::peer_oidc::install(peers, &mut missing);
    crate::peer_fuzz::install(&mut missing);
    crate::peer_schemathesis::install(peers, &mut missing);
    missing
}

/// Whether `python3` imports `module` with `dir` on its path.
pub fn imports(dir: &Path, module: &str) -> bool {
    quiet(Command::new("python3").args(["-c", &format!("import {module}")]).env("PYTHONPATH", dir)).is_ok()
}

/// aiosmtpd and blake3, with pip, into `dir` (the tests' `target/python`).
fn python_packages(dir: &Path, missing: &mut Vec<Missing>) {
    let wanted: Vec<(&'static str, &str)> =
        [("aiosmtpd", AIOSMTPD), ("blake3", BLAKE3)].into_iter().filter(|(module, _)| !imports(dir, module)).collect();
    if wanted.is_empty() {
        println!("  aiosmtpd, blake3: present in {}", dir.display());
        return;
    }
    let started = Instant::now();
    let outcome = if quiet(Command::new("python3").args(["-m", "pip", "--version"])).is_err() {
        Err(("python3 has no pip".to_owned(), PYTHON.to_owned()))
    } else {
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "install", "--quiet", "--target"]).arg(dir);
        pip.args(wanted.iter().map(|(_, spec)| spec));
        // Environment, not flags: older pips do not know the flags.
        pip.env("PIP_ROOT_USER_ACTION", "ignore").env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
        quiet(&mut pip).map(drop).map_err(|why| (why, format!("python3 -m pip install --target {} …", dir.display())))
    };
    for (peer, spec) in wanted {
        match &outcome {
            Ok(()) => println!("  {spec}: installed into {} ({})", dir.display(), duration(started.elapsed())),
            Err((why, remedy)) => missing.push(Missing { peer, why: why.clone(), remedy: remedy.clone() }),
        }
    }
}

/// localstripe in its own virtual environment (its dependencies are pinned
/// to versions no other peer should see).
fn localstripe(peers: &Path, missing: &mut Vec<Missing>) {
    let venv = peers.join("localstripe");
    if venv.join("bin/localstripe").is_file() {
        println!("  localstripe: present in {}", venv.display());
        return;
    }
    let started = Instant::now();
    let made = quiet(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .map_err(|why| Missing { peer: "localstripe", why, remedy: PYTHON.into() })
        .and_then(|_| {
            let mut pip = Command::new(venv.join("bin/python"));
            pip.args(["-m", "pip", "install", "--quiet", LOCALSTRIPE]).env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
            let remedy = format!("{}/bin/python -m pip install {LOCALSTRIPE}", venv.display());
            quiet(&mut pip).map_err(|why| Missing { peer: "localstripe", why, remedy })
        });
    match made {
        Ok(_) => println!("  {LOCALSTRIPE}: installed into {} ({})", venv.display(), duration(started.elapsed())),
        Err(m) => missing.push(m),
    }
}

/// Stripe's Node library with npm; and `node` itself, which runs it and
/// the seed's TypeScript client.
fn stripe_node(peers: &Path, missing: &mut Vec<Missing>) {
    let nodejs = "Debian: apt-get install nodejs npm";
    if !exists("node") {
        for peer in ["node", "stripe-node"] {
            missing.push(Missing { peer, why: "`node` is not installed".into(), remedy: nodejs.into() });
        }
        return;
    }
    let dir = peers.join("node");
    if dir.join("node_modules/stripe/package.json").is_file() {
        println!("  stripe (npm): present in {}", dir.display());
        return;
    }
    if !exists("npm") {
        missing.push(Missing { peer: "stripe-node", why: "`npm` is not installed".into(), remedy: nodejs.into() });
        return;
    }
    let started = Instant::now();
    let _ = std::fs::create_dir_all(&dir);
    let mut npm = Command::new("npm");
    npm.args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"]).arg(&dir).arg(STRIPE_NODE);
    match quiet(&mut npm) {
        Ok(_) => println!("  {STRIPE_NODE}: installed into {} ({})", dir.display(), duration(started.elapsed())),
        Err(why) => {
            let remedy = format!("npm install --prefix {} {STRIPE_NODE}", dir.display());
            missing.push(Missing { peer: "stripe-node", why, remedy });
        }
    }
}
