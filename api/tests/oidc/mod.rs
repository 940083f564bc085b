//! The real OpenID Connect issuer the console's and the portal's SSO tests
//! sign in with:
//! npm's oidc-provider (installed by `cargo xtask test` into
//! target/peers/oidc) running `tests/oidc/issuer.mjs` on a loopback port.
//! Included with `mod oidc;` by `console.rs` and `portal_sso.rs` (over
//! HTTP) and `console_browser.rs` and `portal_sso_browser.rs` (in
//! chromium); without node or oidc-provider they skip with a notice.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The console's client at the issuer.
pub const CLIENT_ID: &str = "ledger-console";
pub const CLIENT_SECRET: &str = "client-secret-of-the-vendor-9a8b7c6d5e4f";
/// How long the issuer may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn modules() -> PathBuf {
    let peers = std::env::var_os("LEDGER_PEERS").map_or_else(|| root().join("target/peers"), PathBuf::from);
    peers.join("oidc/node_modules")
}

/// Whether node and oidc-provider are here (a skip notice if not).
pub fn peers_available(test: &str) -> bool {
    let node = std::process::Command::new("node").arg("--version").stdout(Stdio::null()).status();
    if !node.is_ok_and(|s| s.success()) {
        store::testing::skip(test, store::testing::Peer::Node, "node is not installed");
        return false;
    }
    if !modules().join("oidc-provider/package.json").is_file() {
        store::testing::skip(test, store::testing::Peer::Node, "oidc-provider is not in target/peers/oidc");
        return false;
    }
    true
}

/// oidc-provider with one client, on a loopback port.
pub struct Issuer {
    pub url: String,
    node: Child,
    port: u16,
    client: (String, String),
    redirect: String,
}

impl Issuer {
    /// The console's issuer, sending staff back to
    /// `{portal}/console/oidc/callback`.
    pub async fn start(portal: &str) -> Self {
        Self::start_for(CLIENT_ID, CLIENT_SECRET, &format!("{portal}/console/oidc/callback")).await
    }

    /// An issuer with the client `client_id`, sending users back to
    /// `redirect` (an organization's issuer for the portal's SSO).
    pub async fn start_for(client_id: &str, secret: &str, redirect: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(port, (client_id.to_owned(), secret.to_owned()), redirect.to_owned(), 1).await
    }

    /// The same issuer restarted with a new signing key (a new key id).
    pub async fn restart_with_a_new_key(mut self) -> Self {
        self.node.kill().await.unwrap();
        Self::start_on(self.port, self.client.clone(), self.redirect.clone(), 2).await
    }

    async fn start_on(port: u16, client: (String, String), redirect: String, generation: u32) -> Self {
        let mut node = Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/issuer.mjs"))
            .env("OIDC_MODULES", modules())
            .env("PORT", port.to_string())
            .env("CLIENT_ID", &client.0)
            .env("CLIENT_SECRET", &client.1)
            .env("REDIRECT_URI", &redirect)
            .env("KEY_ID", format!("key-{port}-{generation}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
        assert!(matches!(&ready, Ok(Ok(Some(l))) if l == "oidc issuer ready"), "the issuer did not start: {ready:?}");
        Self { url: format!("http://127.0.0.1:{port}"), node, port, client, redirect }
    }

    /// The server's environment that makes this issuer the console's
    /// provider.
    pub fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("LEDGER_CONSOLE_OIDC_ISSUER", self.url.as_str()),
            ("LEDGER_CONSOLE_OIDC_CLIENT_ID", CLIENT_ID),
            ("LEDGER_CONSOLE_OIDC_CLIENT_SECRET", CLIENT_SECRET),
        ]
    }

    /// The account the issuer's interaction signs in next.
    pub async fn account(&self, sub: &str, email: &str, verified: bool) {
        let body = json!({ "sub": sub, "email": email, "email_verified": verified });
        let answer =
            reqwest::Client::new().post(format!("{}/test/account", self.url)).json(&body).send().await.unwrap();
        assert!(answer.status().is_success());
    }
}
