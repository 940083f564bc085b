//! Enterprise SSO's test peer (api/tests/portal_sso.rs): a real OpenID
//! Connect issuer, npm's `oidc-provider` (pinned 8.x), run on the
//! machine's Node by `api/tests/oidc/issuer.js`; installed into
//! `target/peers/oidc`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::report::{Missing, duration};
use crate::run::{exists, quiet};

/// The issuer the SSO test signs in with.
pub const OIDC_PROVIDER: &str = "oidc-provider@8.8.1";

/// Installs what is missing; a peer that cannot be provided is named in `missing`.
pub fn install(peers: &Path, missing: &mut Vec<Missing>) {
    let dir = peers.join("oidc");
    if dir.join("node_modules/oidc-provider/package.json").is_file() {
        println!("  oidc-provider (npm): present in {}", dir.display());
        return;
    }
    if !exists("npm") {
        let remedy = "Debian: apt-get install nodejs npm".into();
        missing.push(Missing { peer: "node", why: "`npm` is not installed (for oidc-provider)".into(), remedy });
        return;
    }
    let started = Instant::now();
    let _ = std::fs::create_dir_all(&dir);
    let mut npm = Command::new("npm");
    npm.args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"]).arg(&dir).arg(OIDC_PROVIDER);
    match quiet(&mut npm) {
        Ok(_) => println!("  {OIDC_PROVIDER}: installed into {} ({})", dir.display(), duration(started.elapsed())),
        Err(why) => {
            let remedy = format!("npm install --prefix {} {OIDC_PROVIDER}", dir.display());
            missing.push(Missing { peer: "node", why, remedy });
        }
    }
}
