//! The real browser the portal's and the console's tests drive: Debian's
//! chromium over WebDriver (chromium-driver, `fantoccini`), axe-core (npm)
//! on every page, and the real aiosmtpd catching the server's e-mail
//! (`tests/smtp_sink.py`). Included with `mod browser;` by the browser
//! suites; without chromium, chromedriver, axe-core or aiosmtpd they skip
//! with a notice (in CI, a failure).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Backend, Server};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common;

pub const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn axe_script() -> PathBuf {
    let peers = std::env::var_os("LEDGER_PEERS").map_or_else(|| root().join("target/peers"), PathBuf::from);
    peers.join("node/node_modules/axe-core/axe.min.js")
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether the browser, its driver, axe-core and aiosmtpd are here.
pub fn peers_available(test: &str) -> bool {
    let missing = [
        (!on_path("chromium"), "chromium is not installed"),
        (!on_path("chromedriver"), "chromium-driver is not installed"),
        (!axe_script().is_file(), "axe-core is not in target/peers/node"),
    ];
    if let Some((_, why)) = missing.iter().find(|(gone, _)| *gone) {
        store::testing::skip(test, store::testing::Peer::Browser, why);
        return false;
    }
    let aiosmtpd = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .env("PYTHONPATH", root().join("target/python"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !aiosmtpd {
        store::testing::skip(test, store::testing::Peer::Aiosmtpd, "python3 cannot import aiosmtpd from target/python");
    }
    aiosmtpd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// aiosmtpd writing each message as a JSON file (api/tests/smtp_sink.py).
pub struct Mailbox {
    dir: tempfile::TempDir,
    pub port: u16,
    _sink: Child,
}

impl Mailbox {
    pub async fn start() -> Self {
        let (dir, port) = (tempfile::tempdir().unwrap(), free_port());
        let mut sink = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py"))
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .env("PYTHONPATH", root().join("target/python"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let mut lines = BufReader::new(sink.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        assert!(matches!(&ready, Ok(Ok(Some(l))) if l == "smtp sink ready"), "the SMTP sink did not start: {ready:?}");
        Self { dir, port, _sink: sink }
    }

    pub fn to(&self, address: &str, subject: &str) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| serde_json::from_slice::<Value>(&std::fs::read(self.dir.path().join(n)).unwrap()).unwrap())
            .filter(|m| m["rcpt_tos"].as_array().unwrap().iter().any(|r| r == address))
            .filter(|m| m["subject"].as_str().unwrap().contains(subject))
            .collect()
    }

    /// Waits for the `nth` (from 1) message to `address` about `subject`;
    /// returns the portal path of the sign-in link in it.
    pub async fn link(&self, address: &str, subject: &str, nth: usize) -> String {
        self.link_at(address, subject, nth, "/portal/link?token=").await
    }

    /// Waits for the `nth` (from 1) message to `address` about `subject`;
    /// returns the path of the link in it that contains `marker`.
    pub async fn link_at(&self, address: &str, subject: &str, nth: usize, marker: &str) -> String {
        let deadline = Instant::now() + MAIL_TIMEOUT;
        loop {
            if let Some(mail) = self.to(address, subject).get(nth - 1) {
                let body = mail["body"].as_str().unwrap();
                let url = body.split_whitespace().find(|w| w.contains(marker)).expect("a link");
                let path = marker.split('?').next().unwrap_or(marker);
                return url[url.find(path).unwrap()..].to_owned();
            }
            assert!(Instant::now() < deadline, "no e-mail {nth} to {address} about {subject:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// chromium-driver and a headless chromium session.
pub struct Browser {
    pub client: Client,
    _driver: Child,
    pub base: String,
    axe: String,
    /// Where screenshots go: the SQLite run's only (docs/portal/ or
    /// docs/console/), so the
    /// two backends' runs never write the same file at once.
    shots: Option<PathBuf>,
}

impl Browser {
    /// A browser whose screenshots go to docs/portal/.
    pub async fn start(base: &str, backend: &Backend) -> Self {
        Self::start_with_shots(base, backend, "portal").await
    }

    /// A browser whose screenshots go to docs/{shots}/.
    pub async fn start_with_shots(base: &str, backend: &Backend, shots: &str) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut capabilities = serde_json::Map::new();
        let args =
            ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900"];
        capabilities.insert("goog:chromeOptions".into(), json!({ "args": args }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        let shots = backend.database_url().is_none().then(|| root().join("docs").join(shots));
        if let Some(shots) = &shots {
            std::fs::create_dir_all(shots).unwrap();
        }
        let axe = std::fs::read_to_string(axe_script()).unwrap();
        Self { client, _driver: driver, base: base.to_owned(), axe, shots }
    }

    pub async fn go(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// The element, waiting for it a little (a click's navigation may
    /// still be loading).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let wait = self.client.wait().at_most(Duration::from_secs(5));
        let found = wait.for_element(Locator::Css(css)).await;
        match found {
            Ok(element) => element,
            Err(e) => {
                panic!("{css} on {:?}: {e}\n{}", self.client.current_url().await, self.client.source().await.unwrap())
            }
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    pub async fn fill(&self, css: &str, value: &str) {
        self.client.find(Locator::Css(css)).await.unwrap().send_keys(value).await.unwrap();
    }

    /// Runs axe-core on the page: no serious or critical violation.
    pub async fn accessible(&self, page: &str) {
        self.client.execute(&self.axe, vec![]).await.unwrap();
        let run = "const done = arguments[arguments.length - 1];
            axe.run(document).then(r => done(r.violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => v.id + ': ' + v.help + ' ' + v.nodes.map(n => n.html).join(' | '))))
              .catch(e => done(['axe failed: ' + e]));";
        let violations = self.client.execute_async(run, vec![]).await.unwrap();
        assert_eq!(violations, json!([]), "axe on {page}");
    }

    pub async fn screenshot(&self, name: &str) {
        let Some(shots) = &self.shots else { return };
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(shots.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn session_cookie(&self) -> String {
        self.cookie("ledger_portal_session").await
    }

    pub async fn cookie(&self, name: &str) -> String {
        self.client.get_named_cookie(name).await.expect("a session cookie").value().to_owned()
    }

    /// Signs in through the sign-in form and the e-mailed link.
    pub async fn sign_in(&self, mailbox: &Mailbox, email: &str, nth: usize) {
        self.request_link(email).await;
        let link = mailbox.link(email, "sign-in link", nth).await;
        self.go(&link).await;
        self.click("#use-link").await;
    }

    pub async fn request_link(&self, email: &str) {
        self.go("/portal/signin").await;
        self.fill("#email", email).await;
        self.click("main form button").await;
        assert!(self.text("#sent").await.contains("If this address belongs to a user"));
    }
}

/// Plain HTTP beside the browser, to look at statuses and forge requests.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The server's public URL: a port the test holds and forwards to the
/// server's own, as a reverse proxy in front of it would. The server and
/// the issuer are told this URL before the server's own port is known,
/// and the browser follows the issuer's redirect back to it.
pub struct Front {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    pub fn bind() -> (tokio::net::TcpListener, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        (tokio::net::TcpListener::from_std(listener).unwrap(), url)
    }

    pub fn forward(listener: tokio::net::TcpListener, url: String, server: &Server) -> Self {
        let target = server.base.strip_prefix("http://").unwrap().to_owned();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { url, task }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}
